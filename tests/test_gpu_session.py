"""The prepared GPU session (benchmarks/gpu_session.sh) as a CPU dry run with tiny settings, so the
script cannot rot between the rare sessions that have a GPU: its bundle is made from a few clips,
every step runs (torch.compile traced with the eager backend) and leaves its results."""

import json
import os
import subprocess
import sys
import tarfile

import numpy as np
from safetensors.torch import load_file

from conftest import REPO, write_clip

STEPS = ["env", "parity", "decoding", "oom", "transformer", "decode-float32", "tokenizer", "generation",
         "generation-compiled", "transformer-compiled", "decode-compiled", "tokenizer-compiled",
         "train-decoder", "train-grid16", "train-transformer"]


def test_gpu_session_dry_run(tmp_path):
    rng = np.random.default_rng(0)
    for i, label in enumerate(["pan", "pan", "shapes", "zoom"]):
        base = rng.integers(0, 256, (1, 8, 8, 3)).repeat(8, 1).repeat(8, 2)  # blocky: survives the codec
        frames = np.stack([np.roll(base[0], t, axis=1) for t in range(20)]).astype(np.uint8)
        write_clip(tmp_path / "train" / label / f"clip{i}.mp4", frames)
    bundle = tmp_path / "bundle"
    subprocess.run([sys.executable, "benchmarks/gpu_bundle.py", "--data", str(tmp_path / "train"),
                    "--out", str(bundle)], cwd=REPO, check=True, capture_output=True)
    index = json.loads((bundle / "train.json").read_text())
    assert index["clips"] == 4 and index["classes"] == ["pan", "shapes", "zoom"] and index["labels"] == [0, 0, 1, 2]

    out = tmp_path / "out"
    env = {**os.environ, "DRY_RUN": "1", "BUNDLE": str(bundle), "PYTHON": sys.executable,
           "TRAIN_STAGES": "decoder grid16 transformer"}
    run = subprocess.run(["bash", "benchmarks/gpu_session.sh", str(out)], cwd=REPO, env=env,
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-3000:]

    with tarfile.open(out / "results.tar") as tar:
        def read(name):
            return json.loads(tar.extractfile(f"results/{name}").read())

        steps = [json.loads(line) for line in tar.extractfile("results/steps.jsonl").read().splitlines()]
        assert [s["step"] for s in steps] == STEPS and all(s["exit_code"] == 0 for s in steps)
        assert read("env.json")["torch"]
        decoding = read("decoding.json")
        assert decoding["passed"] and decoding["checks"]["float32"]["same_seed_same_output"]
        assert read("oom.json") == {"skipped": "needs CUDA"}
        generation = read("task_speed.json")["rows"]
        assert {(r["family"], r["batch"]) for r in generation} == {(f, b) for f in ("CG", "FP") for b in (1, 2)}
        assert {r["mode"] for r in read("task_speed-compiled.json")["rows"]} == {"compiled"}
        assert read("decoder/summary.json")["config"]["decoder_only"] is True
        assert read("grid16/summary.json")["steps"] >= 2
        assert read("transformer/summary.json")["tasks"][-1] == "frame_prediction_c"
    for stage, prefix in (("decoder", "tokenizer.decoder."), ("transformer", "transformer.")):
        weights = load_file(out / f"{stage}.safetensors")
        assert weights and all(k.startswith(prefix) for k in weights)
    assert (out / "grid16_model.safetensors").is_file() and (out / "session.log").stat().st_size > 0
