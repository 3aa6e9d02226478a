"""Make the bundle that `gpu_session.sh` takes to a GPU machine, on any CPU machine.

    python benchmarks/gpu_bundle.py [--data /work/data/train]
    # then, for the device tool: run(command="bash benchmarks/gpu_session.sh", carry=[".gpu_bundle"])

The GPU machine is fresh (PyTorch, no package registry) and everything sent with the repository
must fit in 64 MiB, the tracked files' 47 MiB included (the bundled model, the parity fixtures
of tests/fixtures, weights/recipe/grid16). The bundle (`.gpu_bundle/`, ignored by git) holds:

  * `train.mp4` + `train.json`: the training clips of `prepare_data.py`, 16 frames each, tiled
    8 x 8 into 512 x 512 sheets of one H.264 4:4:4 video (CRF 22: about 33 dB, 2.6 KB a clip,
    against 19 KB for the clips' own near-lossless files). The GPU machine has no PyAV (its
    36 MB wheel does not fit beside the model); `gpu_train.py` decodes this file with OpenCV;
  * `wheels/`: Python packages the GPU image lacks (--wheel; none are needed today: the
    package runs without PyAV as long as it reads and writes no video files).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
BUNDLE = REPO / ".gpu_bundle"
TRAVEL_LIMIT_MIB = 64
CLIP = (16, 64, 64)  # frames, height, width of a packed clip
GRID = 8  # clips per sheet side


def tracked_mib() -> float | None:
    """Size of what always travels: the files git tracks (None outside a git checkout)."""
    try:
        files = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    return sum((REPO / f).stat().st_size for f in files.decode().split("\0") if f and (REPO / f).is_file()) / 2**20


def read_clip(path: Path) -> np.ndarray:
    """The middle CLIP[0] frames of a training clip, [T, H, W, 3] uint8."""
    from magvit_cli.video import read_video

    frames, _ = read_video(path)
    first = max(0, (len(frames) - CLIP[0]) // 2)
    return np.stack(frames[first:first + CLIP[0]])


def pack_clips(data: Path, out: Path, crf: int, limit: int | None) -> dict:
    """Tile the clips of `data` (class folders of .mp4) into sheets of one video; returns its index."""
    import av

    files = sorted(data.glob("*/*.mp4"))
    if limit:
        files = files[:: max(1, len(files) // limit)][:limit]
    if not files:
        raise SystemExit(f"no clips in {data}")
    classes = sorted({f.parent.name for f in files})
    per_sheet = GRID * GRID
    sheets = -(-len(files) // per_sheet)
    T, H, W = CLIP
    with av.open(str(out), "w") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = W * GRID, H * GRID, "yuv444p"
        # A key frame at every sheet: sheets are unrelated, and any one decodes on its own.
        stream.options = {"crf": str(crf), "preset": "slow", "g": str(T), "keyint_min": str(T)}
        for s in range(sheets):
            batch = [read_clip(f) for f in files[s * per_sheet:(s + 1) * per_sheet]]
            batch += [np.zeros_like(batch[0])] * (per_sheet - len(batch))  # the last sheet's empty cells
            tiles = np.stack(batch).reshape(GRID, GRID, T, H, W, 3).transpose(2, 0, 3, 1, 4, 5)
            for frame in tiles.reshape(T, GRID * H, GRID * W, 3):
                for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")):
                    container.mux(packet)
            print(f"\rpacked {min((s + 1) * per_sheet, len(files))}/{len(files)} clips", end="", flush=True)
        for packet in stream.encode():
            container.mux(packet)
    print()
    return {"clip": list(CLIP), "grid": GRID, "clips": len(files), "crf": crf, "classes": classes,
            "labels": [classes.index(f.parent.name) for f in files],
            "names": [f"{f.parent.name}/{f.name}" for f in files]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path("/work/data/train"), help="training clips (prepare_data.py)")
    parser.add_argument("--out", type=Path, default=BUNDLE, help="bundle folder (replaced)")
    parser.add_argument("--crf", type=int, default=22, help="H.264 quality of the packed clips (lower: larger)")
    parser.add_argument("--limit", type=int, help="pack at most this many clips, evenly spread")
    parser.add_argument("--wheel", action="append", default=[], help="also bring this package (NAME==VERSION) "
                        "as a wheel for the GPU image's Python 3.12")
    args = parser.parse_args()

    if not args.data.is_dir():  # before the old bundle is replaced
        raise SystemExit(f"no training clips at {args.data}: make them with "
                         "python weights/recipe/prepare_data.py --out /work/data")
    bundle = args.out
    shutil.rmtree(bundle, ignore_errors=True)
    bundle.mkdir(parents=True)
    index = pack_clips(args.data, bundle / "train.mp4", args.crf, args.limit)
    (bundle / "train.json").write_text(json.dumps(index) + "\n")
    if args.wheel:
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
                        "--python-version", "3.12", "--implementation", "cp", "--platform", "manylinux_2_28_x86_64",
                        "--platform", "manylinux_2_17_x86_64", "--platform", "manylinux2014_x86_64",
                        "-d", str(bundle / "wheels"), *args.wheel], check=True)
    size = sum(f.stat().st_size for f in bundle.rglob("*") if f.is_file()) / 2**20
    tracked = tracked_mib()
    if tracked is None:
        print(f"bundle {size:.1f} MiB (not a git checkout: what else travels is unknown)")
        return
    total = size + tracked
    print(f"bundle {size:.1f} MiB; with the tracked files {total:.1f} MiB of the {TRAVEL_LIMIT_MIB} MiB that travel")
    if total > TRAVEL_LIMIT_MIB - 1:
        raise SystemExit("too large to travel: pack fewer clips (--limit) or at a higher --crf")


if __name__ == "__main__":
    main()
