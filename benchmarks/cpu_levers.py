"""The CPU levers, each measured for speed and for what it costs in quality.

Levers (each against float32 eager, the port's reference path):
  compile-transformer   torch.compile (inductor) of the transformer
  compile-tokenizer     torch.compile of the tokenizer's encode and decode
  int8-transformer      torch.ao dynamic int8 quantization of the transformer's nn.Linear layers
  bf16                  bfloat16 autocast of the transformer and of the tokenizer's 3D convolutions
                        (`--dtype bfloat16`, and what `--dtype auto` picks on CPUs with native bf16:
                        AVX512-BF16 or AMX); timed apart for the two (bf16-transformer, bf16-tokenizer),
                        judged for quality together, as a user gets it
  channels-last         channels_last_3d memory format of the tokenizer's weights and input (oneDNN)
  loop overhead         the 12-step COMMIT loop against 12 bare forward passes (what a leaner
                        decoding step could save at most)

Speed: MAGVIT-B in the UCF layout (random weights, batch 1, 16 x 128²), every variant timed once
per round, rounds interleaved, so each ratio to float32 eager is taken within a round (median and
range over the rounds). Compile time is reported apart.

Quality: the bundled model (`--model`, default weights/) on held-out clips (`--clips`: a folder
searched for videos, first 16 frames each, at the model's 64²): for transformer levers the logits
of a half-masked canvas of the clip's own tokens against float32 (max and mean absolute
difference, share of latent positions whose argmax changes); for tokenizer levers the encoder
latents and the tokens; for every lever the task PSNR of frame prediction (1 condition frame,
PSNR of the 15 new frames) and central inpainting (PSNR of the hole) with greedy decoding
(choice temperature 0, sampling temperature 1e-6) and a fixed seed, as the per-clip difference
with against without the lever (mean and 95% interval over the clips). A lever's quality cost is
measurable when that interval lies below 0 (`measurable_loss`).

    python benchmarks/cpu_levers.py                          # both parts (about 20 minutes on 2 cores)
    python benchmarks/cpu_levers.py --parts quality --max-clips 8
Writes benchmarks/results/cpu_levers-cpu.json with the CPU model, flags and load averages.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import math
import os
import statistics
import time
from pathlib import Path

import torch
import torch.nn as nn

from common import compiled
from cpu_common import cpu, spread, stamp, torch_environment, ucf_b

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results"
VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".mov", ".webm", ".mpg")
GREEDY = {"choice_temperature": 0.0, "temperature": 1e-6, "seed": 0}
TRANSFORMER_LEVERS = ("compile-transformer", "int8-transformer", "bf16")
TOKENIZER_LEVERS = ("compile-tokenizer", "channels-last", "bf16")
LEVERS = ("compile-transformer", "int8-transformer", "bf16", "compile-tokenizer", "channels-last")


# --------------------------------------------------------------------------- applying a lever


def int8(transformer: nn.Module) -> nn.Module:
    return torch.ao.quantization.quantize_dynamic(transformer, {nn.Linear}, dtype=torch.qint8)


@contextlib.contextmanager
def lever(model, name: str | None):
    """Apply `name` to `model` (a Magvit) for the block; yields the decoding dtype option and the
    autocast to wrap tokenizer calls in."""
    transformer, tokenizer = model.transformer, model.tokenizer
    dtype, tokenizer_amp = "float32", contextlib.nullcontext
    try:
        if name == "compile-transformer":
            model.transformer = compiled(transformer)
        elif name == "int8-transformer":
            model.transformer = int8(transformer)
        elif name == "bf16":
            dtype = "bfloat16"
            tokenizer_amp = functools.partial(torch.autocast, "cpu", dtype=torch.bfloat16)
        elif name == "compile-tokenizer":
            tokenizer.encode, tokenizer.decode = compiled(tokenizer.encode), compiled(tokenizer.decode)
        elif name == "channels-last":
            tokenizer.to(memory_format=torch.channels_last_3d)
        elif name is not None:
            raise ValueError(name)
        yield dtype, tokenizer_amp
    finally:
        model.transformer = transformer
        tokenizer.__dict__.pop("encode", None)
        tokenizer.__dict__.pop("decode", None)
        tokenizer.to(memory_format=torch.contiguous_format)


# --------------------------------------------------------------------------- speed


def speed(args) -> dict:
    from magvit_cli import decoding, tasks

    model = ucf_b()
    config = model.config.transformer
    tokenizer = model.tokenizer
    video = torch.rand(1, 3, 16, 128, 128, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        codes = tokenizer.encode(video)
    prefix = tasks.prefix_tokens(config, "full_generation", torch.full((1,), 7))
    tokens = torch.cat([prefix, codes.reshape(1, -1)], dim=1)
    int8_transformer = int8(model.transformer)
    compiled_transformer = compiled(model.transformer)
    compiled_bf16 = compiled(model.transformer)  # its own cache: the graph under autocast differs
    compiled_encode, compiled_decode = compiled(tokenizer.encode), compiled(tokenizer.decode)
    last = video.contiguous(memory_format=torch.channels_last_3d)

    def forward(net, amp=None):
        def run():
            with torch.inference_mode(), torch.autocast("cpu", dtype=amp or torch.float32, enabled=amp is not None):
                return net(tokens)
        return run

    def tokenizer_call(fn, x, channels_last=False, bf16=False):
        def run():
            if channels_last:
                tokenizer.to(memory_format=torch.channels_last_3d)
            try:
                with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                    return fn(x)
            finally:
                tokenizer.to(memory_format=torch.contiguous_format)
        return run

    groups = {
        "transformer_forward": {
            "fp32 eager": forward(model.transformer),
            "compile-transformer": forward(compiled_transformer),
            "int8-transformer": forward(int8_transformer),
            "bf16-transformer": forward(model.transformer, torch.bfloat16),
            "compile-transformer + bf16": forward(compiled_bf16, torch.bfloat16),
        },
        "tokenizer_encode": {
            "fp32 eager": tokenizer_call(tokenizer.encode, video),
            "compile-tokenizer": tokenizer_call(compiled_encode, video),
            "bf16-tokenizer": tokenizer_call(tokenizer.encode, video, bf16=True),
            "channels-last": tokenizer_call(tokenizer.encode, last, channels_last=True),
        },
        "tokenizer_decode": {
            "fp32 eager": tokenizer_call(tokenizer.decode, codes),
            "compile-tokenizer": tokenizer_call(compiled_decode, codes),
            "bf16-tokenizer": tokenizer_call(tokenizer.decode, codes, bf16=True),
            "channels-last": tokenizer_call(tokenizer.decode, codes, channels_last=True),
        },
    }
    rows, first = [], {}
    for group, variants in groups.items():
        for name, fn in variants.items():  # warm-up; for compiled variants this call compiles
            start = time.perf_counter()
            fn()
            first[(group, name)] = time.perf_counter() - start
            print(f"  warm-up {group} {name}: {first[(group, name)]:.1f} s", flush=True)
        times = {name: [] for name in variants}
        loads = []
        for _ in range(args.rounds):
            loads.append(stamp()["load_average"])
            for name, fn in variants.items():
                start = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - start)
        for name in variants:
            ratios = [b / t for b, t in zip(times["fp32 eager"], times[name])]
            rows.append({"operation": group, "variant": name, "seconds": spread(times[name], 3),
                         "speedup_vs_fp32_eager": spread(ratios, 3), "first_call_s": round(first[(group, name)], 1),
                         "load_average": loads})
            print(f"  {group} {name}: {statistics.median(times[name]):.2f} s, "
                  f"{statistics.median(ratios):.2f}x fp32 eager", flush=True)

    # Per-step overhead: the 12-step loop against 12 bare forward passes, interleaved.
    empty = torch.zeros(1, config.num_latents, dtype=torch.long)
    unconditioned = torch.zeros(1, config.num_latents, dtype=torch.bool)
    for option in ("float32", "auto"):
        amp = decoding.autocast_dtype("cpu", option)
        bare = forward(model.transformer, amp)

        def loop():
            decoding.decode(model.transformer, prefix, empty, unconditioned, steps=12,
                            generator=torch.Generator().manual_seed(7), dtype=option)

        loop_s, bare_s, loads = [], [], []
        for _ in range(args.loop_rounds):
            loads.append(stamp()["load_average"])
            start = time.perf_counter()
            loop()
            loop_s.append(time.perf_counter() - start)
            start = time.perf_counter()
            for _ in range(12):
                bare()
            bare_s.append(time.perf_counter() - start)
        overhead = [(lp - b) / 12 for lp, b in zip(loop_s, bare_s)]
        rows.append({"operation": "commit_loop_12_steps", "variant": f"loop vs 12 bare forwards ({option}, "
                     f"autocast {amp or 'off'})", "seconds": spread(loop_s, 3), "bare_12_forwards_s": spread(bare_s, 3),
                     "overhead_per_step_s": spread(overhead, 3),
                     "overhead_share": spread([1 - b / lp for lp, b in zip(loop_s, bare_s)], 4),
                     "load_average": loads})
        print(f"  loop {option}: {statistics.median(loop_s):.1f} s vs {statistics.median(bare_s):.1f} s for 12 "
              f"bare forwards", flush=True)
    return {"model": "MAGVIT-B, UCF layout (ucf-b tokenizer + B transformer), random weights, batch 1, 16x128x128",
            "rounds": args.rounds, "loop_rounds": args.loop_rounds, "rows": rows}


# --------------------------------------------------------------------------- quality


def load_clips(folder: Path, frames: int, limit: int | None) -> tuple[list[str], torch.Tensor]:
    from magvit_cli.video import frames_to_tensor, read_video

    paths = sorted(p for p in folder.rglob("*") if p.suffix.lower() in VIDEO_SUFFIXES)
    if limit:  # evenly over the sorted list, so every category folder is represented
        paths = [paths[round(i * len(paths) / limit)] for i in range(min(limit, len(paths)))]
    clips = []
    for path in paths:
        pixels, _ = read_video(path, max_frames=frames)
        if len(pixels) == frames:
            clips.append((str(path.relative_to(folder)), frames_to_tensor(pixels)))
    if not clips:
        raise SystemExit(f"no clip of {frames} frames under {folder}")
    return [n for n, _ in clips], torch.stack([c for _, c in clips])


def batches(videos: torch.Tensor, size: int):
    """Fixed-size batches (the last padded by repetition; callers drop the padding), so compiled
    variants see one shape."""
    for start in range(0, len(videos), size):
        batch = videos[start:start + size]
        count = len(batch)
        if count < size:
            batch = torch.cat([batch, batch[-1:].expand(size - count, *batch.shape[1:])])
        yield count, batch


def mean_interval(values: list[float]) -> dict:
    """Mean and 95% interval of the mean (normal approximation)."""
    finite = [v for v in values if math.isfinite(v)]
    mean = statistics.fmean(finite)
    half = 1.96 * statistics.stdev(finite) / math.sqrt(len(finite)) if len(finite) > 1 else float("nan")
    return {"mean": round(mean, 4), "ci95": [round(mean - half, 4), round(mean + half, 4)], "n": len(finite),
            "measurable_change": bool(half == half and (mean - half > 0 or mean + half < 0)),
            "measurable_loss": bool(half == half and mean + half < 0)}


def quality(args) -> dict:
    import magvit_cli
    from magvit_cli import DecodeOptions, tasks
    from magvit_cli.metrics import psnr, region_psnr

    model = magvit_cli.load_model(args.model, device="cpu").eval()
    config = model.config
    names, videos = load_clips(Path(args.clips), config.num_frames, args.max_clips)
    print(f"quality: {len(names)} clips from {args.clips}, model {args.model} "
          f"({config.num_frames}x{config.resolution[0]}x{config.resolution[1]})", flush=True)
    t_config = config.transformer
    k, num_prefix = t_config.codebook_size, t_config.num_prefix
    hole = ~model.condition("inpainting_c", videos[:1]).video_mask

    reference_codes: list[torch.Tensor] = []

    def evaluate(name: str | None) -> dict:
        mask_generator = torch.Generator().manual_seed(1)  # the same masks for every lever
        out = {"fp": [], "ipc": [], "logits": [], "latents": [], "codes": [], "fp_video": [], "ipc_video": []}
        with lever(model, name) as (dtype, tokenizer_amp):
            options = DecodeOptions(dtype=dtype, **GREEDY)
            for index, (count, batch) in enumerate(batches(videos, args.batch)):
                with torch.inference_mode(), tokenizer_amp():
                    latents = model.tokenizer.encode_latents(batch)
                    codes = model.tokenizer.encode(batch)
                out["latents"].append(latents.float()[:count])
                out["codes"].append(codes[:count])
                # Logits of a half-masked canvas of the clip's own tokens, as float32 makes them (a
                # lever that changes tokens would otherwise be judged on another input).
                if name is None and len(reference_codes) <= index:
                    reference_codes.append(codes)
                canvas = reference_codes[index].reshape(len(batch), -1).clone()
                masked = torch.rand(canvas.shape, generator=mask_generator) < 0.5
                canvas[masked] = t_config.mask_token
                tokens = torch.cat([tasks.prefix_tokens(t_config, "frame_prediction", batch_size=len(batch)), canvas], 1)
                amp = torch.bfloat16 if dtype == "bfloat16" else None
                with torch.inference_mode(), torch.autocast("cpu", dtype=amp or torch.float32, enabled=amp is not None):
                    out["logits"].append(model.transformer(tokens)[:count, num_prefix:, :k].float())
                with tokenizer_amp():
                    fp = model.run_task("frame_prediction", batch, options=options, cond_frames=1)
                    ipc = model.run_task("inpainting_c", batch, options=options)
                out["fp_video"].append(fp[:count])
                out["ipc_video"].append(ipc[:count])
                out["fp"] += psnr(fp[:count, :, 1:], batch[:count, :, 1:]).tolist()
                out["ipc"] += region_psnr(ipc[:count], batch[:count], hole).tolist()
        return {key: torch.cat(v) if key not in ("fp", "ipc") else v for key, v in out.items()}

    start = time.perf_counter()
    reference = evaluate(None)
    print(f"  fp32 eager: FP {statistics.fmean(reference['fp']):.2f} dB, IPC {statistics.fmean(reference['ipc']):.2f} dB "
          f"({time.perf_counter() - start:.0f} s)", flush=True)
    again = evaluate(None)
    rows = [{"lever": "fp32 eager (reference)", "fp_psnr_db": round(statistics.fmean(reference["fp"]), 3),
             "ipc_psnr_db": round(statistics.fmean(reference["ipc"]), 3),
             "repeat_identical": bool(torch.equal(again["fp_video"], reference["fp_video"])
                                      and torch.equal(again["ipc_video"], reference["ipc_video"]))}]
    for name in args.levers:
        start = time.perf_counter()
        result = evaluate(name)
        row = {"lever": name, **stamp()}
        if name in TRANSFORMER_LEVERS:
            diff = (result["logits"] - reference["logits"]).abs()
            row["logits_max_abs_diff"] = round(diff.max().item(), 5)
            row["logits_mean_abs_diff"] = round(diff.mean().item(), 6)
            row["logits_std"] = round(reference["logits"].std().item(), 4)
            row["argmax_change_pct"] = round(100 * (result["logits"].argmax(-1) != reference["logits"].argmax(-1))
                                             .float().mean().item(), 3)
        if name in TOKENIZER_LEVERS:  # (compiled, encode runs as one graph: its latents are not seen, only its tokens)
            diff = (result["latents"] - reference["latents"]).abs()
            seen = name != "compile-tokenizer"
            row["latents_max_abs_diff"] = round(diff.max().item(), 5) if seen else None
            row["latents_mean_abs_diff"] = round(diff.mean().item(), 6) if seen else None
            row["latents_std"] = round(reference["latents"].std().item(), 4)
            row["token_change_pct"] = round(100 * (result["codes"] != reference["codes"]).float().mean().item(), 3)
        for task in ("fp", "ipc"):
            row[f"{task}_psnr_db"] = round(statistics.fmean(result[task]), 3)
            row[f"{task}_psnr_delta_db"] = mean_interval([a - b for a, b in zip(result[task], reference[task])])
            row[f"{task}_clips_changed"] = int((result[f"{task}_video"] != reference[f"{task}_video"])
                                               .flatten(1).any(1).sum())
        row["seconds"] = round(time.perf_counter() - start, 1)
        rows.append(row)
        print(f"  {name}: " + ", ".join(f"{key} {value}" for key, value in row.items()
                                        if key not in ("lever", "time", "load_average")), flush=True)
    return {"model": args.model, "clips_folder": args.clips, "clips": names, "frames": config.num_frames,
            "decoding": GREEDY, "batch": args.batch, "rows": rows}


def markdown(record: dict) -> str:
    """The speed and quality tables of benchmarks/README.md."""
    def interval(stats: dict) -> str:
        return f"{stats['mean']:+.3f} [{stats['ci95'][0]:+.3f}, {stats['ci95'][1]:+.3f}]"

    lines = []
    if "speed" in record:
        lines += ["| operation | variant | seconds | speed-up vs fp32 eager | first call, s |", "|---|---|---:|---:|---:|"]
        for row in record["speed"]["rows"]:
            if "speedup_vs_fp32_eager" not in row:
                continue
            s, x = row["seconds"], row["speedup_vs_fp32_eager"]
            lines.append(f"| {row['operation'].replace('_', ' ')} | {row['variant']} | {s['median']:.3g} | "
                         f"{x['median']:.2f}× [{x['min']:.2f}–{x['max']:.2f}] | {row['first_call_s']} |")
        for row in record["speed"]["rows"]:
            if "overhead_share" in row:
                lines.append(f"\n{row['variant']}: loop {row['seconds']['median']:.2f} s against 12 bare forwards "
                             f"{row['bare_12_forwards_s']['median']:.2f} s (overhead "
                             f"{100 * row['overhead_share']['median']:+.1f} %).")
    if "quality" in record:
        lines += ["", "| lever | logits: max / mean abs diff (std) | argmax changed | latents: max / mean abs diff "
                  "(std) | tokens changed | FP PSNR Δ, dB [95% CI] | IPC PSNR Δ, dB [95% CI] | measurable loss |",
                  "|---|---|---:|---|---:|---|---|---|"]
        for row in record["quality"]["rows"][1:]:
            logits = (f"{row['logits_max_abs_diff']} / {row['logits_mean_abs_diff']} ({row['logits_std']})"
                      if "logits_std" in row else "-")
            latents = (f"{row['latents_max_abs_diff']} / {row['latents_mean_abs_diff']} ({row['latents_std']})"
                       if "latents_std" in row else "-")
            loss = row["fp_psnr_delta_db"]["measurable_loss"] or row["ipc_psnr_delta_db"]["measurable_loss"]
            argmax = f"{row['argmax_change_pct']} %" if "argmax_change_pct" in row else "-"
            tokens = f"{row['token_change_pct']} %" if "token_change_pct" in row else "-"
            lines.append(f"| {row['lever']} | {logits} | {argmax} | {latents} | {tokens} | "
                         f"{interval(row['fp_psnr_delta_db'])} | "
                         f"{interval(row['ipc_psnr_delta_db'])} | {'yes' if loss else 'no'} |")
        ref = record["quality"]["rows"][0]
        lines.append(f"\nReference (float32 eager): FP {ref['fp_psnr_db']} dB, IPC {ref['ipc_psnr_db']} dB on "
                     f"{len(record['quality']['clips'])} clips; a second float32 run identical: "
                     f"{ref['repeat_identical']}.")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--parts", nargs="+", choices=["speed", "quality"], default=["speed", "quality"])
    parser.add_argument("--threads", type=int, help="CPU threads (default: one per core)")
    parser.add_argument("--rounds", type=int, default=3, help="speed: interleaved rounds of every variant")
    parser.add_argument("--loop-rounds", type=int, default=1, help="speed: rounds of the loop-overhead check")
    parser.add_argument("--model", default=str(ROOT / "weights"), help="quality: model folder (default weights/)")
    parser.add_argument("--clips", default="/work/data/heldout", help="quality: folder of held-out clips")
    parser.add_argument("--max-clips", type=int, help="quality: at most this many clips, spread over the folder")
    parser.add_argument("--batch", type=int, default=8, help="quality: clips per batch")
    parser.add_argument("--levers", nargs="+", default=list(LEVERS), choices=LEVERS, help="quality: levers to check")
    parser.add_argument("--out", help="JSON file (default benchmarks/results/cpu_levers-cpu.json)")
    parser.add_argument("--markdown", action="store_true", help="only print the tables of the JSON file")
    args = parser.parse_args()
    torch.set_num_threads(args.threads or len(os.sched_getaffinity(0)))
    path = Path(args.out) if args.out else RESULTS / "cpu_levers-cpu.json"
    # A part that is not rerun keeps its earlier result (each part has its own stamps).
    record = json.loads(path.read_text()) if path.exists() else {}
    if args.markdown:
        print(markdown(record))
        return
    record.update({"benchmark": "cpu_levers", "machine": cpu(), "environment": torch_environment()})
    print(record["machine"], record["environment"], flush=True)
    for part in args.parts:
        started = stamp()
        record[part] = {"started": started, **(speed if part == "speed" else quality)(args), "finished": stamp(),
                        "environment": torch_environment()}
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(record, indent=2) + "\n")
    print(markdown(record))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
