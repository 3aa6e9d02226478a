"""Choose the token grid by measurement: short CPU training runs of equal length, one per
candidate tokenizer, each measured on the held-out clips against the bicubic thumbnail of its
own token grid, and timed on every task.

    python weights/recipe/choose_grid.py --data /work/data --data128 /work/data128 \\
        --minutes 15 --points 3 --out /work/runs/grids

Candidates: the `small` tokenizer preset's width (filters 32, one residual block per level,
64-dimensional codes) with 1,024 codes, trained from scratch without the GAN term:

  * 4x8x8@64    4 x 8 x 8 tokens for 16 x 64 x 64 clips (the bundled model's grid, 256 tokens);
  * 4x16x16@64  4 x 16 x 16 tokens for 16 x 64 x 64 clips (1,024 tokens);
  * 4x16x16@128 4 x 16 x 16 tokens for 16 x 128 x 128 clips (1,024 tokens; data from
    `prepare_data.py --size 128`).

Each run lasts --minutes of training (its step count comes from a timed calibration, so the
learning-rate schedule ends with the time) and is measured after every --minutes / --points:
reconstruction PSNR of the first 16 frames of every held-out clip, by source, next to the
thumbnail (each frame shrunk to the grid's size and scaled back up, both bicubic), and
codebook usage. At the end a model of the candidate with the small transformer (random
weights: speed does not depend on them) is timed on every task family, one 16-frame window
(`benchmarks/task_speed.py`). Writes results.json and table.md into --out; a run folder
that exists is resumed.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from common import TRANSFORMER_SIZES  # noqa: E402
from evaluate import batched, by_source, codebook_stats, load_clips, thumbnail  # noqa: E402
from task_speed import measure, with_random_transformer  # noqa: E402

from magvit_cli import train, train_config  # noqa: E402
from magvit_cli.checkpoint import load_model  # noqa: E402
from magvit_cli.data import VideoClipDataset  # noqa: E402
from magvit_cli.decoding import autocast_dtype  # noqa: E402
from magvit_cli.metrics import psnr  # noqa: E402
from magvit_cli.model import Magvit  # noqa: E402

CANDIDATES = {  # name: (channel multipliers, temporal downsampling per level, resolution)
    "4x8x8@64": ((1, 2, 2, 4), (True, True, False), 64),
    "4x16x16@64": ((1, 2, 2), (True, True), 64),
    "4x16x16@128": ((1, 2, 2, 4), (True, True, False), 128),
}
FRAMES = 16


def candidate_config(name: str, batch: int) -> train_config.TokenizerTrainConfig:
    multipliers, temporal, size = CANDIDATES[name]
    base = train_config.preset("tokenizer", "small")
    tokenizer = dataclasses.replace(base.tokenizer, channel_multipliers=multipliers, temporal_downsample=temporal,
                                    codebook_size=1024)
    # As the GPU session's grid16 run (benchmarks/gpu_train.py): L2 reconstruction only, Adam
    # with beta1 0.9, lr 1e-3; a shorter EMA for a run of minutes.
    # bf16 autocast where the CPU has native bf16 (about twice as fast), as inference's "auto".
    precision = "bfloat16" if autocast_dtype("cpu") == torch.bfloat16 else "float32"
    return dataclasses.replace(base, tokenizer=tokenizer, resolution=(size, size), num_frames=FRAMES,
                               batch_size=batch, lr=1e-3, beta1=0.9, warmup_steps=50, ema_decay=0.99,
                               adversarial_weight=0.0, r1_weight=0.0, precision=precision, num_workers=1,
                               log_every=10, save_every=100, preview_every=0)


def measure_tokenizer(model: Magvit, clips: torch.Tensor, names: list[str]) -> dict:
    with torch.inference_mode():
        codes = batched(model.encode, clips)
        recon = batched(model.decode, codes)
    scores = {"psnr": psnr(recon, clips)}
    return {"psnr": round(float(scores["psnr"].mean()), 2), "by_source": by_source(names, scores),
            **codebook_stats(codes, model.config.tokenizer.codebook_size)}


def task_seconds(model: Magvit) -> dict[str, float]:
    """Seconds per 16-frame window of each task family: the candidate's tokenizer with the small
    transformer (random weights) on its token grid."""
    timed = with_random_transformer(model.config.tokenizer, TRANSFORMER_SIZES["small"], model.config.resolution)
    timed.tokenizer.load_state_dict(model.tokenizer.state_dict())
    timed.force = True
    rows = measure(timed, ["FP", "FI", "OP", "IP", "CG"], 1, "auto", "eager", 1, torch.device("cpu"))
    return {row["family"]: row["seconds_per_clip"] for row in rows}


def training_data(name: str, data: Path, data128: Path) -> Path:
    return data128 if CANDIDATES[name][2] == 128 else data


def calibrate(name: str, data: Path, out: Path, minutes: float, points: int, batch: int) -> None:
    """Time 10 steps of the candidate and size its run to `minutes` (candidate.json)."""
    folder = out / name
    results_path = folder / "candidate.json"
    if results_path.is_file():
        return
    config = candidate_config(name, batch)
    dataset = VideoClipDataset(data / "train", num_frames=FRAMES, resolution=config.resolution, seed=config.seed)
    calibration = out / f"{name}.calibration"
    probe = dataclasses.replace(config, steps=10, warmup_steps=1, save_every=0)
    seconds = train.train_tokenizer(probe, dataset, calibration, quiet=True)["seconds"]
    shutil.rmtree(calibration)
    folder.mkdir(parents=True, exist_ok=True)
    results = {"seconds_per_step": round(seconds / 10, 3),  # an upper bound: includes two evaluations
               "steps": max(points, round(minutes * 60 * 10 / seconds)), "batch": batch,
               "precision": config.precision, "points": []}
    results_path.write_text(json.dumps(results, indent=1))
    print(f"{name}: {results['seconds_per_step']} s per step, {results['steps']} steps", flush=True)


def run_candidate(name: str, data: Path, out: Path, minutes: float, points: int, batch: int) -> dict:
    folder = out / name
    results_path = folder / "candidate.json"
    results = json.loads(results_path.read_text())
    config = dataclasses.replace(candidate_config(name, batch), steps=results["steps"])
    clips, names = load_clips(data / "heldout", FRAMES, config.resolution)
    # Opened once: each training call would otherwise probe every file again.
    dataset = VideoClipDataset(data / "train", num_frames=FRAMES, resolution=config.resolution, seed=config.seed)
    steps = results["steps"]
    for point in range(len(results["points"]) + 1, points + 1):
        stop = round(steps * point / points)
        started = time.perf_counter()
        train.train_tokenizer(config, dataset, folder / "run", quiet=True, stop_at=stop,
                              resume=(folder / "run" / train.STATE_FILE).is_file())
        seconds = time.perf_counter() - started
        model = load_model(folder / "run", device="cpu")
        row = {"step": stop, "minutes": round(minutes * point / points, 1), "train_seconds": round(seconds),
               **measure_tokenizer(model, clips, names)}
        results["points"].append(row)
        print(f"{name}: step {stop}/{steps}, {row['psnr']:.2f} dB, codes used {row['codes_used_pct']} %", flush=True)
        results_path.write_text(json.dumps(results, indent=1))
    if "task_seconds" not in results:
        model = load_model(folder / "run", device="cpu")
        grid = model.config.latent_shape[1:]
        scores = {"psnr": psnr(thumbnail(clips, grid), clips)}
        results["thumbnail"] = {"grid": list(grid), "psnr": round(float(scores["psnr"].mean()), 2),
                                "by_source": by_source(names, scores)}
        results["task_seconds"] = task_seconds(model)
        results["parameters"] = sum(p.numel() for p in model.tokenizer.parameters())
        results["clips"] = len(names)
        results_path.write_text(json.dumps(results, indent=1))
    return results


def table(all_results: dict[str, dict]) -> str:
    points = next(iter(all_results.values()))["points"]
    lines = ["| Candidate | Tokens | Steps (batch) | " + " | ".join(f"{p['minutes']:g} min" for p in points) +
             " | Thumbnail | Worst source vs thumbnail | Codes used | Slowest task s/window |",
             "|---|---:|---:|" + "---:|" * (len(points) + 4)]
    for name, r in all_results.items():
        last = r["points"][-1]
        gaps = {s: last["by_source"][s]["psnr"] - r["thumbnail"]["by_source"][s]["psnr"] for s in last["by_source"]}
        worst = min(gaps, key=gaps.get)
        grid = r["thumbnail"]["grid"]
        slowest = max(r["task_seconds"], key=r["task_seconds"].get)
        lines.append(f"| {name} | {4 * grid[0] * grid[1]:,} | {r['steps']:,} ({r['batch']}) | " +
                     " | ".join(f"{p['psnr']:.2f}" for p in r["points"]) +
                     f" | {r['thumbnail']['psnr']:.2f} | {worst} {gaps[worst]:+.2f} | {last['codes_used_pct']:g} % |"
                     f" {slowest} {r['task_seconds'][slowest]:.2f} |")
    lines += ["", "Per source, after the last point (model / thumbnail, dB):", "",
              "| Source | " + " | ".join(all_results) + " |", "|---|" + "---:|" * len(all_results)]
    for source in points[-1]["by_source"]:
        lines.append(f"| {source} | " + " | ".join(
            f"{r['points'][-1]['by_source'][source]['psnr']:.2f} / {r['thumbnail']['by_source'][source]['psnr']:.2f}"
            for r in all_results.values()) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path("/work/data"), help="the 64 x 64 build of prepare_data.py")
    parser.add_argument("--data128", type=Path, default=Path("/work/data128"), help="the 128 x 128 build")
    parser.add_argument("--out", type=Path, default=Path("/work/runs/grids"))
    parser.add_argument("--minutes", type=float, default=15.0, help="training minutes per candidate")
    parser.add_argument("--points", type=int, default=3, help="measurements per run, evenly spaced in time")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--candidates", nargs="+", choices=list(CANDIDATES), default=list(CANDIDATES))
    args = parser.parse_args()
    for name in args.candidates:
        data = training_data(name, args.data, args.data128)
        if not (data / "train").is_dir() or not (data / "heldout").is_dir():
            size = CANDIDATES[name][2]
            parser.error(f"{name} needs the {size} x {size} clips in {data}: build them with "
                         f"weights/recipe/prepare_data.py --out {data} --size {size}")
    args.out.mkdir(parents=True, exist_ok=True)
    for name in args.candidates:  # every calibration first, on a machine nothing else has warmed up yet
        calibrate(name, training_data(name, args.data, args.data128), args.out, args.minutes, args.points, args.batch)
    all_results = {name: run_candidate(name, training_data(name, args.data, args.data128), args.out, args.minutes,
                                       args.points, args.batch) for name in args.candidates}
    (args.out / "results.json").write_text(json.dumps(all_results, indent=1))
    (args.out / "table.md").write_text(table(all_results))
    print(table(all_results))


if __name__ == "__main__":
    main()
