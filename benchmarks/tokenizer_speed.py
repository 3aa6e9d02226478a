"""Tokenizer speed: encode and decode clips/s, model FLOPs utilisation and peak memory.

Measures an official layout (default bair-b: 16 x 64 x 64 clips; --preset ucf-b for the
16 x 128 x 128 one; random weights: speed does not depend on the values) and, with --model, a
model folder, Hub id or "default" (the bundled model) at its own clip size. Runs on the CPU,
and on CUDA when it is available.

    python benchmarks/tokenizer_speed.py [--preset ucf-b] [--model default] [--threads 1] [--json]

MFU = convolution FLOPs of the pass (PyTorch's FlopCounterMode) / seconds / the float32 peak
measured in the same run (see common.py; the tokenizer runs in float32). Peak memory is the CUDA
allocator's peak on a GPU, and the process's peak resident set (Linux VmHWM, reset before each
measurement; it includes the ~0.5 GB of the Python and PyTorch runtime) on the CPU.
"""

from __future__ import annotations

import argparse
import json

import torch

from common import TINY_TOKENIZER, PeakMemory, compiled, count_flops, dense_peak, device_name, pick_device, \
    print_table, timed, utilisation, write_json
from magvit_cli.tokenizer import TOKENIZER_PRESETS, VQTokenizer

PRESETS = {  # name: (layout, clip)
    "bair-b": (TOKENIZER_PRESETS["bair-b"], (16, 64, 64)), "bair-l": (TOKENIZER_PRESETS["bair-l"], (16, 64, 64)),
    "ucf-b": (TOKENIZER_PRESETS["ucf-b"], (16, 128, 128)), "ucf-l": (TOKENIZER_PRESETS["ucf-l"], (16, 128, 128)),
    "tiny": (TINY_TOKENIZER, (16, 32, 32)),
}


def measure(name: str, tokenizer: VQTokenizer, clip: tuple[int, int, int], device: torch.device,
            batch: int, warmup: int, iters: int, measured: dict, channels_last: bool, compile: bool = False) -> dict:
    layout = torch.channels_last_3d if channels_last else torch.contiguous_format
    tokenizer = tokenizer.to(device, memory_format=layout).eval()
    encode, decode = tokenizer.encode, tokenizer.decode
    if compile:
        encode, decode = compiled(encode), compiled(decode)
    video = torch.rand(batch, 3, *clip, device=device).contiguous(memory_format=layout)
    codes = torch.randint(0, tokenizer.config.codebook_size, (batch, *tokenizer.latent_shape(*clip)), device=device)
    row = {
        "model": name,
        "layout": "channels-last-3d" if channels_last else "NCDHW",
        "mode": "compiled" if compile else "eager",
        "device": device_name(device),
        "clip": "x".join(map(str, clip)),
        "batch": batch,
        "parameters_m": round(sum(p.numel() for p in tokenizer.parameters()) / 1e6, 1),
    }
    with torch.inference_mode():
        for stage, fn, eager in (("encode", lambda: encode(video), lambda: tokenizer.encode(video)),
                                 ("decode", lambda: decode(codes), lambda: tokenizer.decode(codes))):
            flops = count_flops(eager)  # FLOPs are counted on the eager module
            with PeakMemory(device) as memory:
                seconds = timed(fn, device, warmup + compile, iters)  # compiling is not timed
            row[f"{stage}_clips_per_s"] = round(batch / seconds, 3)
            row[f"{stage}_gflop_per_clip"] = round(flops / batch / 1e9, 1)
            row.update({f"{stage}_{k}": v for k, v in utilisation(flops, seconds, measured).items()})
            row[f"{stage}_peak_mb"] = None if memory.mib is None else round(memory.mib)
    row["matmul_gflops"], row["conv_gflops"] = measured["matmul_gflops"], measured["conv_gflops"]
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", choices=list(PRESETS), default="bair-b")
    parser.add_argument("--model", help="also measure this model folder, Hub id, or 'default' (the bundled model)")
    parser.add_argument("--device", choices=["all", "cpu", "cuda"], default="all")
    parser.add_argument("--threads", type=int, help="CPU threads (default: PyTorch's choice)")
    parser.add_argument("--channels-last", action="store_true",
                        help="weights and activations in channels-last-3d memory format (faster convolutions on CPUs)")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--compile", action="store_true", help="time torch.compile'd encode and decode instead")
    parser.add_argument("--warmup", type=int, default=0, help="untimed calls (the FLOP-counting call already warms up)")
    parser.add_argument("--iters", type=int, default=2)
    parser.add_argument("--json", action="store_true", help="print the rows as JSON instead of a table")
    parser.add_argument("--out", help="JSON file (default benchmarks/results/tokenizer_speed-<device>.json)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    # Full float32 on GPUs: TF32 convolutions change latents by ~4e-3 (fixture README §9).
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False

    devices = [torch.device("cpu")] if args.device in ("all", "cpu") else []
    if args.device in ("all", "cuda") and torch.cuda.is_available():
        devices.append(pick_device("cuda"))
    if not devices:
        parser.error("CUDA is not available")

    torch.manual_seed(0)
    layout, clip = PRESETS[args.preset]
    subjects = [(f"{args.preset} (random weights)", VQTokenizer(layout), clip)]
    if args.model:
        from magvit_cli.checkpoint import load_model

        model = load_model(None if args.model == "default" else args.model, device="cpu")
        clip = (model.config.num_frames, *model.config.resolution)
        subjects.append((args.model, model.tokenizer, clip))

    rows = []
    for device in devices:
        measured = dense_peak(device, torch.float32)
        for name, tokenizer, clip in subjects:
            rows.append(measure(name, tokenizer, clip, device, args.batch, args.warmup, args.iters, measured,
                                args.channels_last, args.compile))
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        print_table(rows, "tokenizer encode / decode")
    write_json("tokenizer_speed", rows, devices[-1], args.out)


if __name__ == "__main__":
    main()
