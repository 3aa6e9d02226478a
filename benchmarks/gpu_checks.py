"""Correctness checks that need the device itself, run by `gpu_session.sh` (any device; CUDA is
what they are for). Each subcommand prints what it found and writes one JSON file.

    python benchmarks/gpu_checks.py env --out env.json        # versions, GPU, driver
    python benchmarks/gpu_checks.py decoding --out decoding.json [--bundle .gpu_bundle]
    python benchmarks/gpu_checks.py oom --out oom.json        # CUDA only

decoding: the bundled model in bfloat16 gives sane output (finite, in [0, 1], not flat; frame
prediction on real clips within 1 dB of float32's PSNR) and the same seed gives the same output
twice on the same device, in both dtypes. oom: a deliberately oversized window (a random model
of 16 x 512 x 512 clips) run by the CLI in a child process that finds almost no free GPU memory
must end with exit code 7 and one line, no traceback and no output file.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parent.parent
PACKAGES = ("numpy", "safetensors", "huggingface_hub", "typer", "rich", "msgpack", "imageio", "av", "cv2", "pytest")


def write(path: Path, record: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=2, default=str) + "\n")
    print(json.dumps(record, indent=2, default=str), flush=True)


def env(args) -> dict:
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = getattr(importlib.import_module(name), "__version__", "?")
        except ImportError:
            versions[name] = None
    record = {"python": platform.python_version(), "torch": torch.__version__, "cuda": torch.version.cuda,
              "cudnn": torch.backends.cudnn.version(), "packages": versions, "cpu_count": os.cpu_count(),
              "cuda_available": torch.cuda.is_available()}
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        record.update(gpu=props.name, gpu_memory_gib=round(props.total_memory / 2**30, 1),
                      compute_capability=f"{props.major}.{props.minor}", bf16=torch.cuda.is_bf16_supported())
        try:
            smi = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total,clocks.max.sm",
                                  "--format=csv,noheader"], capture_output=True, text=True, timeout=30)
            record["nvidia_smi"] = smi.stdout.strip()
        except (OSError, subprocess.TimeoutExpired) as error:
            record["nvidia_smi"] = f"unavailable: {error}"
    return record


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(10 * torch.log10(1 / (a.float() - b.float()).pow(2).mean().clamp_min(1e-10)))


def decoding(args) -> dict:
    from magvit_cli.checkpoint import load_model
    from magvit_cli.decoding import DecodeOptions

    device = torch.device(args.device)
    model = load_model(None, device=device)
    model.eval()
    T = model.config.num_frames
    if (args.bundle / "train.json").is_file():
        from gpu_train import PackedClips

        real = PackedClips(args.bundle, limit=args.clips).clips.permute(0, 4, 1, 2, 3).float().div(255)
        source = "training clips of the bundle"
    else:  # smooth moving colour fields: a stand-in with some structure
        H, W = model.config.resolution
        t = torch.linspace(0, 1, T).view(1, 1, T, 1, 1)
        y = torch.linspace(0, 1, H).view(1, 1, 1, H, 1)
        x = torch.linspace(0, 1, W).view(1, 1, 1, 1, W)
        phase = torch.arange(args.clips).view(-1, 1, 1, 1, 1) * 0.7 + torch.arange(3).view(1, 3, 1, 1, 1)
        real = 0.5 + 0.4 * torch.sin(6 * x + 4 * y + 3 * t + phase)
        source = "synthetic moving gradients"
    real = real.to(device)
    record = {"device": str(device), "input": source, "checks": {}}
    outputs = {}
    for dtype in ("float32", "bfloat16"):
        options = DecodeOptions(steps=args.steps, seed=0, dtype=dtype)
        runs = []
        for _ in range(2):
            generated = model.run_task("full_generation", None, model.labels(0, args.clips), options)
            predicted = model.run_task("frame_prediction", real, options=options)
            runs.append((generated, predicted))
        (generated, predicted), (generated2, predicted2) = runs
        outputs[dtype] = predicted
        flat = min(float(generated.flatten(2).std(-1).min()), float(predicted.flatten(2).std(-1).min()))
        record["checks"][dtype] = {
            "finite": bool(torch.isfinite(generated).all() and torch.isfinite(predicted).all()),
            "in_range": bool(generated.min() >= 0 and generated.max() <= 1 and predicted.min() >= 0
                             and predicted.max() <= 1),
            "not_flat": flat > 0.01,
            "min_frame_std": round(flat, 4),
            "same_seed_same_output": bool(torch.equal(generated, generated2) and torch.equal(predicted, predicted2)),
            "prediction_psnr_db": round(psnr(predicted[:, :, 1:], real[:, :, 1:]), 3),
        }
    gap = record["checks"]["float32"]["prediction_psnr_db"] - record["checks"]["bfloat16"]["prediction_psnr_db"]
    record["bf16_psnr_gap_db"] = round(gap, 3)
    record["bf16_vs_fp32_psnr_db"] = round(psnr(outputs["bfloat16"], outputs["float32"]), 3)
    record["passed"] = all(all(v for k, v in c.items() if isinstance(v, bool)) for c in record["checks"].values()) \
        and abs(gap) <= 1.0
    return record


def oom(args) -> dict:
    from magvit_cli.checkpoint import save_model
    from magvit_cli.model import Magvit, ModelConfig
    from magvit_cli.tokenizer import TOKENIZER_PRESETS
    from magvit_cli.transformer import TransformerConfig

    if not torch.cuda.is_available():
        return {"skipped": "needs CUDA"}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        config = ModelConfig(tokenizer=TOKENIZER_PRESETS["bair-b"], num_frames=16, resolution=(512, 512),
                             tasks=["full_generation"], class_names=["a"])
        config.transformer = TransformerConfig(codebook_size=config.tokenizer.codebook_size, num_classes=1,
                                               latent_shape=config.latent_shape, hidden_size=256, num_layers=2,
                                               num_heads=4, mlp_dim=512)
        save_model(tmp / "big", Magvit(config))
        # Leave the child about 2 GiB: hold the rest of the free memory in this process.
        free, total = torch.cuda.mem_get_info()
        hold = torch.empty(max(0, free - 2 * 2**30), dtype=torch.uint8, device="cuda")
        output = tmp / "out.mp4"
        started = time.perf_counter()
        child = subprocess.run([sys.executable, "-m", "magvit_cli", "generate", "--class", "0", "--count", "8",
                                "--model", str(tmp / "big"), "--device", "cuda", "--seed", "0", "-o", str(output)],
                               capture_output=True, text=True, timeout=300, cwd=REPO,
                               env={**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])})
        del hold
        lines = [l for l in child.stderr.splitlines() if l.strip()]
        record = {"exit_code": child.returncode, "stderr": child.stderr[-2000:], "latent_shape": config.latent_shape,
                  "free_gib_left": 2, "seconds": round(time.perf_counter() - started, 1),
                  "output_left_behind": output.exists() or any(tmp.glob(".out*"))}
        record["passed"] = (child.returncode == 7 and "Traceback" not in child.stderr and len(lines) == 1
                            and not record["output_left_behind"])
    return record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("check", choices=["env", "decoding", "oom"])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--bundle", type=Path, default=REPO / ".gpu_bundle")
    parser.add_argument("--clips", type=int, default=8, help="clips per decoding check")
    parser.add_argument("--steps", type=int, default=12, help="COMMIT steps of the decoding check")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    record = {"env": env, "decoding": decoding, "oom": oom}[args.check](args)
    write(args.out, record)
    if record.get("passed") is False:
        sys.exit(1)


if __name__ == "__main__":
    main()
