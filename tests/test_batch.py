"""Many inputs in one call: expansion, skipping, failures, the JSON report, and the same
command sharded over two torchrun processes (gloo, CPU)."""

import json
import os
import shutil
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from magvit_cli import batch, errors, video as vio
from magvit_cli.cli import main
from magvit_cli.errors import UsageError


@pytest.fixture
def clips(tmp_path) -> Path:
    """A folder with two small clips, a broken file, an earlier output and a text file."""
    folder = tmp_path / "clips"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name in ("a.mp4", "b.mp4"):
        vio.write_video(folder / name, iter(rng.integers(0, 256, (6, 24, 32, 3), dtype=np.uint8)), Fraction(8))
    (folder / "broken.mp4").write_bytes(b"not a video at all")
    shutil.copy(folder / "a.mp4", folder / "a.inpaint.mp4")
    (folder / "notes.txt").write_text("not a video")
    return folder


def test_inputs_expand_from_paths_globs_and_folders(clips, tmp_path):
    paths, expanded = batch.expand_inputs([clips])
    assert [p.name for p in paths] == ["a.mp4", "b.mp4", "broken.mp4"] and expanded
    paths, expanded = batch.expand_inputs([str(clips / "[ab].mp4"), clips / "a.mp4"])
    assert [p.name for p in paths] == ["a.mp4", "b.mp4"]  # no duplicates
    paths, expanded = batch.expand_inputs([clips / "b.mp4"])
    assert [p.name for p in paths] == ["b.mp4"] and not expanded
    frames = tmp_path / "frames"
    vio.write_video(frames, iter(np.zeros((2, 8, 8, 3), np.uint8)), 8)
    assert batch.expand_inputs([frames]) == ([frames], False)  # a frame folder is one video
    with pytest.raises(UsageError, match="no file matches"):
        batch.expand_inputs([str(tmp_path / "*.mov")])
    assert batch.output_for(clips / "a.mp4", "inpaint", tmp_path / "out") == tmp_path / "out" / "a.inpaint.mp4"


def run(args, capsys):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def test_batch_goes_on_past_a_bad_file_skips_done_outputs_and_reports(clips, tiny_model_dir, tmp_path, capsys):
    out_dir = tmp_path / "out"
    args = ["inpaint", clips, "--model", tiny_model_dir, "--output-dir", out_dir, "--steps", "1", "--seed", "5",
            "--json"]
    code, out, err = run(args, capsys)
    assert code == errors.EXIT_INPUT  # the failing file's own exit code, at the end
    report = json.loads(out)
    assert (report["status"], report["ok"], report["failed"], report["skipped"]) == ("failed", 2, 1, 0)
    files = {Path(f["input"]).name: f for f in report["files"]}
    assert files["broken.mp4"]["status"] == "failed" and files["broken.mp4"]["exit_code"] == errors.EXIT_INPUT
    assert "broken.mp4" in files["broken.mp4"]["error"]
    good = files["a.mp4"]
    assert good["status"] == "ok" and Path(good["output"]) == out_dir / "a.inpaint.mp4"
    assert good["seed"] == 5 and good["model"] == str(tiny_model_dir)
    assert good["model_revision"].startswith("sha256:") and good["seconds"] > 0 and good["peak_memory_mb"] > 50
    assert good["settings"]["mask"] == "box" and good["settings"]["window"] == 16 and good["settings"]["steps"] == 1
    assert vio.probe(out_dir / "b.inpaint.mp4").num_frames == 6
    assert not (out_dir / "broken.inpaint.mp4").exists()

    code, out, err = run(args, capsys)  # resumed: the done outputs are kept
    report = json.loads(out)
    assert code == errors.EXIT_INPUT and (report["ok"], report["skipped"], report["failed"]) == (0, 2, 1)

    (clips / "broken.mp4").unlink()
    code, out, err = run(args + ["--overwrite"], capsys)
    assert code == 0 and json.loads(out)["ok"] == 2


def test_batch_dry_run_plans_every_file_and_writes_nothing(clips, tiny_model_dir, tmp_path, capsys):
    (clips / "broken.mp4").unlink()
    code, out, err = run(["predict", clips, "--model", tiny_model_dir, "--output-dir", tmp_path / "out",
                          "--dry-run", "--json"], capsys)
    assert code == 0, err
    report = json.loads(out)
    assert [f["plan"]["output"]["frames"] for f in report["files"]] == [6 + 15, 6 + 15]
    assert not any((tmp_path / "out").iterdir())


def test_torchrun_shards_the_inputs_and_rank_0_reports(clips, tiny_model_dir, tmp_path):
    """Two gloo processes on the CPU: each takes every other input, one merged report."""
    out_dir = tmp_path / "out"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    magvit = Path(sys.executable).with_name("magvit")
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                           "--no-python", str(magvit), "inpaint", str(clips), "--model", str(tiny_model_dir),
                           "--output-dir", str(out_dir), "--steps", "1", "--seed", "3", "--json", "--quiet"],
                          capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode != 0  # broken.mp4 failed
    reports = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    assert len(reports) == 1, done.stdout  # printed once, by rank 0
    report = reports[0]
    assert report["world_size"] == 2 and (report["ok"], report["failed"]) == (2, 1)
    assert [Path(f["input"]).name for f in report["files"]] == ["a.mp4", "b.mp4", "broken.mp4"]
    assert [f["rank"] for f in report["files"]] == [0, 1, 0]
    assert sorted(p.name for p in out_dir.iterdir()) == ["a.inpaint.mp4", "b.inpaint.mp4"]
