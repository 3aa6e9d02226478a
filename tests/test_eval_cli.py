"""`magvit eval` on the command line: JSON result and exit codes."""

import json
import shutil
from pathlib import Path

from magvit_cli import errors
from magvit_cli.cli import main

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def test_eval_writes_the_json_result(tiny_model_dir, tmp_path, capsys):
    data = tmp_path / "clips" / "street"
    data.mkdir(parents=True)
    shutil.copy(EXAMPLES / "city.mp4", data)
    shutil.copy(EXAMPLES / "carphone.mp4", data)
    report = tmp_path / "result.json"
    code = main(["eval", "--task", "ipc", "--data", str(data.parent), "--model", str(tiny_model_dir),
                 "--metrics", "psnr,ssim", "--steps", "2", "--seed", "3", "-o", str(report), "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    printed = json.loads(out)
    assert printed == json.loads(report.read_text())
    assert printed["task_id"] == "inpainting_c" and printed["seed"] == 3
    psnr = printed["metrics"]["psnr"]
    assert 0 < psnr["value"] < 60 and psnr["samples"] == 2


def test_eval_bad_task_and_missing_data(tiny_model_dir, tmp_path, capsys):
    code = main(["eval", "--task", "teleport", "--data", str(EXAMPLES), "--model", str(tiny_model_dir)])
    assert code == errors.EXIT_USAGE, capsys.readouterr().err
    code = main(["eval", "--task", "fp", "--data", str(tmp_path / "none"), "--model", str(tiny_model_dir)])
    err = capsys.readouterr().err
    assert code == errors.EXIT_INPUT and "Traceback" not in err
