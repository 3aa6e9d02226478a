"""How long the command line takes to answer when it runs no model, against a bare Python.

    python benchmarks/startup.py [--repeats 10]

Times, as separate processes on a warm disk (one untimed call of each first), `python -c pass`,
`magvit --help`, every `magvit COMMAND --help` and `magvit info` on an example clip, and reports
the median and range of each in seconds and the median minus the bare interpreter's. These
commands never import PyTorch (tests/test_cli.py checks it), so the difference is the cost of
the CLI's own imports (typer, rich, PyAV for `info`). Writes benchmarks/results/startup-cpu.json
with the CPU model, flags and load average.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

from cpu_common import cpu, spread, stamp

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results"
COMMANDS = ("predict", "interpolate", "outpaint", "inpaint", "generate", "reconstruct", "eval", "train", "convert",
            "download", "info")


def timed(command: list[str], repeats: int) -> dict:
    subprocess.run(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)  # warm
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
        times.append(time.perf_counter() - start)
    return spread(times, 3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--out", help="JSON file (default benchmarks/results/startup-cpu.json)")
    args = parser.parse_args()
    magvit = shutil.which("magvit") or str(Path(sys.executable).parent / "magvit")
    cases = {"python -c pass": [sys.executable, "-c", "pass"], "magvit --help": [magvit, "--help"]}
    cases.update({f"magvit {c} --help": [magvit, c, "--help"] for c in COMMANDS})
    cases["magvit info examples/city.mp4"] = [magvit, "info", "examples/city.mp4"]
    record = {"benchmark": "startup", "machine": cpu(), "started": stamp(), "repeats": args.repeats, "rows": {}}
    for name, command in cases.items():
        record["rows"][name] = timed(command, args.repeats)
        print(f"{name:40} {record['rows'][name]['median']:.3f} s", flush=True)
    bare = record["rows"]["python -c pass"]["median"]
    for row in record["rows"].values():
        row["over_bare_python_s"] = round(row["median"] - bare, 3)
    record["finished"] = stamp()
    path = Path(args.out) if args.out else RESULTS / "startup-cpu.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
