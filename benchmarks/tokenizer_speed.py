"""Tokenizer speed: encode and decode clips/s and peak memory.

Measures the official B layout (ucf-b: 16 x 128 x 128 clips, random weights: speed does not
depend on the values) and, with --model, a model folder, Hub id or "default" (the bundled
model) at its own clip size. Runs on the CPU, and on CUDA when it is available.

    python benchmarks/tokenizer_speed.py [--model default] [--iters 3] [--json]

Peak memory is the CUDA allocator's peak on a GPU, and the process's peak resident set
(Linux VmHWM, reset before each measurement; it includes the ~0.5 GB of the
Python and PyTorch runtime) on the CPU.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from magvit_cli.tokenizer import TOKENIZER_PRESETS, VQTokenizer

PRESET = "ucf-b"
PRESET_CLIP = (16, 128, 128)


def reset_peak_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    else:
        try:
            Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS
        except OSError:
            pass


def peak_memory_mb(device: torch.device) -> float | None:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def timed(fn, device: torch.device, warmup: int, iters: int) -> tuple[float, float | None]:
    """(seconds per call, peak memory in MB) of `fn` after `warmup` untimed calls."""
    for _ in range(warmup):
        fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    reset_peak_memory(device)
    start = time.perf_counter()
    for _ in range(iters):
        fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return (time.perf_counter() - start) / iters, peak_memory_mb(device)


def measure(name: str, tokenizer: VQTokenizer, clip: tuple[int, int, int], device: torch.device,
            batch: int, warmup: int, iters: int) -> dict:
    tokenizer = tokenizer.to(device).eval()
    video = torch.rand(batch, 3, *clip, device=device)
    codes = torch.randint(0, tokenizer.config.codebook_size, (batch, *tokenizer.latent_shape(*clip)), device=device)
    with torch.inference_mode():
        encode_s, encode_mb = timed(lambda: tokenizer.encode(video), device, warmup, iters)
        decode_s, decode_mb = timed(lambda: tokenizer.decode(codes), device, warmup, iters)
    return {
        "model": name,
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "clip": "x".join(map(str, clip)),
        "batch": batch,
        "parameters_m": round(sum(p.numel() for p in tokenizer.parameters()) / 1e6, 1),
        "encode_clips_per_s": round(batch / encode_s, 3),
        "decode_clips_per_s": round(batch / decode_s, 3),
        "encode_peak_mb": None if encode_mb is None else round(encode_mb),
        "decode_peak_mb": None if decode_mb is None else round(decode_mb),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="also measure this model folder, Hub id, or 'default' (the bundled model)")
    parser.add_argument("--device", choices=["all", "cpu", "cuda"], default="all")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--iters", type=int, default=3)
    parser.add_argument("--json", action="store_true", help="print the rows as JSON instead of a table")
    args = parser.parse_args()
    # Full float32 on GPUs: TF32 convolutions change latents by ~4e-3 (fixture README §9).
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False

    devices = [torch.device("cpu")] if args.device in ("all", "cpu") else []
    if args.device in ("all", "cuda") and torch.cuda.is_available():
        devices.append(torch.device("cuda"))
    if not devices:
        parser.error("CUDA is not available")

    torch.manual_seed(0)
    subjects = [(f"{PRESET} (random weights)", VQTokenizer(TOKENIZER_PRESETS[PRESET]), PRESET_CLIP)]
    if args.model:
        from magvit_cli.checkpoint import load_model

        model = load_model(None if args.model == "default" else args.model, device="cpu")
        clip = (model.config.num_frames, *model.config.resolution)
        subjects.append((args.model, model.tokenizer, clip))

    rows = [
        measure(name, tokenizer, clip, device, args.batch, args.warmup, args.iters)
        for name, tokenizer, clip in subjects
        for device in devices
    ]
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    columns = list(rows[0])
    widths = {c: max(len(c), *(len(str(r[c])) for r in rows)) for c in columns}
    print("  ".join(c.ljust(widths[c]) for c in columns))
    for row in rows:
        print("  ".join(str(row[c]).ljust(widths[c]) for c in columns))


if __name__ == "__main__":
    main()
