"""Every Python script of the recipe (weights/recipe) and of benchmarks/ imports: they run rarely
(a model release, a GPU session), so an API they use that moved or was renamed must fail here."""

import subprocess
import sys

from conftest import REPO

SCRIPTS = sorted([*REPO.glob("weights/recipe/*.py"), *REPO.glob("benchmarks/*.py")])

IMPORT_ALL = """
import importlib.util, sys
from pathlib import Path
for path in sys.argv[1:]:
    sys.path.insert(0, str(Path(path).parent))
    name = "script_" + path.replace("/", "_").replace(".", "_")
    spec = importlib.util.spec_from_file_location(name, path)
    sys.modules[name] = module = importlib.util.module_from_spec(spec)  # dataclasses look their module up
    spec.loader.exec_module(module)
    del sys.path[0]
print(len(sys.argv) - 1)
"""


def test_every_script_imports():
    assert len(SCRIPTS) >= 18  # the recipe's and the benchmarks' scripts, found where they live
    run = subprocess.run([sys.executable, "-c", IMPORT_ALL, *map(str, SCRIPTS)], cwd=REPO, capture_output=True,
                         text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.split() == [str(len(SCRIPTS))]
