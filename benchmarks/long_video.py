"""Editing long and large videos: seconds per output frame and peak memory vs resolution
and length, end to end (decoding, model windows, compositing at the input's size, encoding).

Each row is one `magvit TASK` command in a fresh process on a synthetic H.264 clip (moving
gradients plus noise; written once per size and length) with a small random model: the
tests' tiny config (16x32x32 clips, 4x8x8 tokens), or --model. Peak memory is the process's
peak resident set (ru_maxrss, including ~0.3 GB of Python, PyTorch and the model) and, on
CUDA, the allocator's peak as the run report gives it. "growth" compares each length with
the shortest one at the same size: streaming keeps it near zero once the clips are longer
than the H.264 encoder's look-ahead (libx264 holds up to ~40 frames: at 1080p a 2-second
clip peaks ~0.3 GB below a 6-second one, a 6-second one within ~40 MB of a 15-second one).

    python benchmarks/long_video.py [--tasks inpaint,interpolate] [--sizes 360,720,1080]
                                    [--seconds 6,18] [--fps 10] [--steps 12] [--device cpu]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from common import device_name, pick_device, print_table, write_json  # noqa: E402
from conftest import tiny_model_config  # noqa: E402
from magvit_cli import video as vio  # noqa: E402
from magvit_cli.checkpoint import save_model  # noqa: E402
from magvit_cli.model import Magvit  # noqa: E402

TASK_ARGS = {
    "inpaint": ["--mask", "box"],
    "outpaint": ["--direction", "right", "--amount", "25%"],
    "predict": ["--frames", "15"],
    "interpolate": ["--factor", "2"],
}
WIDTHS = {240: 426, 360: 640, 480: 854, 720: 1280, 1080: 1920}

RUNNER = """
import resource, sys
from magvit_cli.cli import main
code = main(sys.argv[1:])
print("PEAK_RSS", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, file=sys.stderr)
sys.exit(code)
"""


def synthetic(path: Path, height: int, seconds: float, fps: int) -> Path:
    width = WIDTHS.get(height, height * 16 // 9 // 2 * 2)
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([(x * 255 // width), (y * 255 // height), ((x + y) // 3) % 256], -1).astype(np.uint8)
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 24, (height, width, 3), dtype=np.uint8)

    def frames():
        for t in range(round(seconds * fps)):
            yield np.roll(base, 4 * t, axis=1) + noise

    vio.write_video(path, frames(), fps)
    return path


def run(task: str, clip: Path, model: Path, out_dir: Path, device: str, steps: int) -> dict:
    """One `magvit TASK CLIP --output-dir` run; its report row plus the process's peak RSS."""
    args = [task, str(clip), *TASK_ARGS[task], "--model", str(model), "--device", device, "--steps", str(steps),
            "--seed", "0", "--output-dir", str(out_dir), "--overwrite", "--json", "--quiet"]
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", RUNNER, *args], capture_output=True, text=True)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"magvit {' '.join(args)} failed:\n{done.stderr}")
    entry = json.loads(done.stdout)["files"][0]
    peak = int(done.stderr.rsplit("PEAK_RSS", 1)[1].split()[0])
    return {"entry": entry, "wall": wall, "peak_rss": peak}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", default="inpaint,interpolate", help=f"comma-separated, of {', '.join(TASK_ARGS)}")
    parser.add_argument("--sizes", default="360,720,1080", help="frame heights (16:9 frames)")
    parser.add_argument("--seconds", default="6,18", help="clip lengths in seconds")
    parser.add_argument("--fps", type=int, default=10)
    parser.add_argument("--steps", type=int, default=12, help="decoding steps (the paper's 12)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--model", help="model folder (default: a random model of the tests' tiny config)")
    parser.add_argument("--json", help="write the rows here (default benchmarks/results/long_video-<device>.json)")
    args = parser.parse_args()
    device = pick_device(args.device)
    tasks = args.tasks.split(",")
    sizes = [int(s) for s in args.sizes.split(",")]
    lengths = [float(s) for s in args.seconds.split(",")]
    os.environ.setdefault("OMP_NUM_THREADS", str(torch.get_num_threads()))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model = Path(args.model) if args.model else tmp / "tiny-model"
        if not args.model:
            torch.manual_seed(0)
            save_model(model, Magvit(tiny_model_config()))
        for height in sizes:
            baseline = {}
            for seconds in lengths:
                clip = synthetic(tmp / f"{height}p-{seconds:g}s.mp4", height, seconds, args.fps)
                info = vio.probe(clip)
                for task in tasks:
                    result = run(task, clip, model, tmp / "out", args.device, args.steps)
                    entry = result["entry"]
                    peak_mb = result["peak_rss"] / 2 ** 20
                    baseline.setdefault(task, peak_mb)
                    rows.append({
                        "task": task, "input": f"{info.width}x{info.height}", "seconds": seconds,
                        "frames_in": info.num_frames, "frames_out": entry["frames"],
                        "windows": entry["windows"], "batch": entry["settings"]["batch"],
                        "wall_s": round(result["wall"], 1),
                        "s_per_out_frame": round(entry["seconds"] / entry["frames"], 3),
                        "peak_rss_mb": round(peak_mb), "growth_mb": round(peak_mb - baseline[task]),
                        **({"cuda_peak_mb": entry["peak_memory_mb"]} if device.type == "cuda" else {}),
                    })
                    print(json.dumps(rows[-1]), flush=True)
    print()
    print_table(rows, f"long_video on {device_name(device)}: {args.steps} steps, {args.fps} fps clips")
    write_json("long_video", rows, device, args.json, steps=args.steps, fps=args.fps,
               model=args.model or "tiny random (tests/conftest.py)")


if __name__ == "__main__":
    main()
