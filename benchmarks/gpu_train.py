"""Training within a time budget, on the clips packed by `gpu_bundle.py`.

    python benchmarks/gpu_train.py decoder --bundle .gpu_bundle --out runs/decoder --seconds 150
    python benchmarks/gpu_train.py grid16 --bundle .gpu_bundle --out runs/grid16 --seconds 150 [--base runs/grid16]
    python benchmarks/gpu_train.py transformer --base runs/grid16 --out runs/transformer16 --seconds 150

Stages (`magvit_cli.train`; the tokenizer ones with L2 reconstruction only):

  * decoder: the bundled model's decoder trained on, its encoder and codebook frozen
    (decoder_only): the tokens do not change, so the bundled transformer still fits, and the
    returned decoder can be released with it if it reconstructs held-out clips better;
  * grid16: a 4 x 16 x 16 token grid with 1,024 codes (the `small` preset's layout), from
    scratch (or on from an earlier run): the candidate of the next default model, whose 4 x 8 x 8
    tokenizer is the bottleneck;
  * transformer: the `small` transformer on the ten tasks (inpainting weighted 3, as in the recipe)
    on the tokens of a tokenizer (--base); later decoder-only training leaves those tokens as they are.

A short calibration run measures the time per step first, so that the run's learning-rate
schedule ends when the time does. Writes `<out>/model.safetensors` + `config.json`, `metrics.jsonl`,
`<out>/summary.json` and, for the decoder and transformer stages, `<out>/<stage>.safetensors`: the
tensors the stage trained.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import shutil
import time
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch.utils.data import Dataset

from common import TINY_TOKENIZER
from magvit_cli import tasks, train, train_config
from magvit_cli.checkpoint import load_model, save_model
from magvit_cli.errors import Interrupted
from magvit_cli.model import Magvit, ModelConfig

REPO = Path(__file__).resolve().parent.parent


def read_sheets(path: Path, max_frames: int | None = None) -> np.ndarray:
    """The frames of the packed video (the first `max_frames`), [n, H, W, 3] RGB uint8. With
    PyAV when it is installed, else with OpenCV (the GPU image has OpenCV and no PyAV)."""
    frames = []
    try:
        import av
    except ImportError:
        import cv2

        capture = cv2.VideoCapture(str(path))
        while max_frames is None or len(frames) < max_frames:
            ok, frame = capture.read()
            if not ok:
                break
            frames.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
        capture.release()
    else:
        with av.open(str(path)) as container:
            for frame in container.decode(video=0):
                if max_frames is not None and len(frames) >= max_frames:
                    break
                frames.append(frame.to_ndarray(format="rgb24"))
    if not frames:
        raise SystemExit(f"no frames decoded from {path}")
    return np.stack(frames)


class PackedClips(Dataset):
    """The clips of `gpu_bundle.py`'s sheets, held in memory as uint8; items are
    (video [3, T, H, W] in [0, 1], label), left-right flipped at random."""

    def __init__(self, bundle: Path, limit: int | None = None):
        if not (bundle / "train.json").is_file():
            raise SystemExit(f"no packed clips in {bundle}: make them with benchmarks/gpu_bundle.py")
        index = json.loads((bundle / "train.json").read_text())
        (T, H, W), grid = index["clip"], index["grid"]
        count = index["clips"] if limit is None else min(limit, index["clips"])
        frames = read_sheets(bundle / "train.mp4", -(-count // grid**2) * T)
        tiles = frames.reshape(-1, T, grid, H, grid, W, 3).transpose(0, 2, 4, 1, 3, 5, 6).reshape(-1, T, H, W, 3)
        self.clips = torch.from_numpy(np.ascontiguousarray(tiles[:count]))
        self.labels = index["labels"][:count]
        self.class_names = index["classes"]

    def __len__(self) -> int:
        return len(self.clips)

    def __getitem__(self, index: int):
        video = self.clips[index].permute(3, 0, 1, 2).float() / 255
        if torch.rand(()) < 0.5:
            video = video.flip(-1)
        return video, self.labels[index]


def stage_config(stage: str, base: Path | None, batch: int, workers: int, tiny: bool):
    """The run's settings and the model folder it starts from (None: from scratch)."""
    common = dict(batch_size=batch, num_workers=workers, log_every=25, save_every=0, preview_every=0)
    if stage == "transformer":  # on the tokens of the model folder `base`
        config = train_config.preset("transformer", "tiny" if tiny else "small")
        weights = tuple(3 if task.startswith("inpainting") else 1 for task in tasks.TASKS)  # as train.sh
        return dataclasses.replace(config, tasks=tuple(tasks.TASKS), task_weights=weights, lr=1e-3,
                                   warmup_steps=100, **common), base
    common |= dict(num_frames=16, resolution=(64, 64), adversarial_weight=0.0, r1_weight=0.0, beta1=0.9)
    if tiny:  # the dry run: a tiny tokenizer, and a decoder stage that starts from a random one
        tokenizer = TINY_TOKENIZER
        if stage == "decoder":
            save_model(base, Magvit(ModelConfig(tokenizer=tokenizer, num_frames=16, resolution=(64, 64))))
    if stage == "decoder":
        tokenizer = load_model(base, device="cpu").config.tokenizer
        return train_config.TokenizerTrainConfig(tokenizer=tokenizer, decoder_only=True, lr=3e-4, warmup_steps=50,
                                                 ema_decay=0.99, **common), base
    if not tiny:
        tokenizer = dataclasses.replace(train_config.preset("tokenizer", "small").tokenizer, codebook_size=1024)
    # From scratch, or on from an earlier run of this stage (`base`) at half the learning rate.
    return train_config.TokenizerTrainConfig(tokenizer=tokenizer, lr=5e-4 if base else 1e-3, warmup_steps=100,
                                             ema_decay=0.995, **common), base


def train_stage(stage: str, config, dataset: Dataset, out: Path, device, init: Path | None) -> dict:
    if stage == "transformer":
        return train.train_transformer(config, dataset, init, out, quiet=True, device=device)
    return train.train_tokenizer(config, dataset, out, quiet=True, device=device, init=init)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("stage", choices=["decoder", "grid16", "transformer"])
    parser.add_argument("--bundle", type=Path, default=Path(".gpu_bundle"))
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seconds", type=float, required=True, help="training time, calibration included")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--base", type=Path, help="model folder to start from: the decoder stage's (default: the "
                        "bundled model), grid16's earlier run, the transformer stage's tokenizer (required)")
    parser.add_argument("--limit", type=int, help="use at most this many clips (a dry run)")
    parser.add_argument("--tiny", action="store_true", help="a tiny tokenizer (a dry run on a CPU)")
    parser.add_argument("--calibration-steps", type=int, default=20, help="steps timed to size the run")
    parser.add_argument("--workers", type=int, default=6, help="data loader processes (0 on a 2-core CPU)")
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()

    started = time.perf_counter()
    device = None if args.device == "auto" else args.device
    base = args.base
    if args.stage == "decoder" and base is None:
        base = args.out.with_name(args.out.name + ".base") if args.tiny else REPO / "weights"
    if args.stage == "transformer" and base is None:
        parser.error("the transformer stage trains on the tokens of --base (a model folder)")
    dataset = PackedClips(args.bundle, args.limit)
    if args.workers and shutil.disk_usage("/dev/shm").free < 4 * 2**30:
        args.workers = 0  # the workers pass batches through shared memory
        print("little shared memory: loading data in the main process", flush=True)
    print(f"{len(dataset)} clips loaded in {time.perf_counter() - started:.1f} s", flush=True)
    config, init = stage_config(args.stage, base, args.batch, args.workers, args.tiny)

    calibration = args.out.with_name(args.out.name + ".calibration")
    shutil.rmtree(calibration, ignore_errors=True)
    probe = dataclasses.replace(config, steps=args.calibration_steps, warmup_steps=1)
    if args.device != "cpu" and torch.cuda.is_available():  # warm-up: CUDA context, cuDNN autotuning
        train_stage(args.stage, dataclasses.replace(probe, steps=2), dataset, calibration, device, init)
        shutil.rmtree(calibration)
    first = train_stage(args.stage, probe, dataset, calibration, device, init)
    per_step = first["seconds"] / args.calibration_steps  # an upper bound: includes a save and two evaluations
    shutil.rmtree(calibration)
    left = args.seconds - (time.perf_counter() - started) - 10  # the final save and evaluation
    steps = max(args.calibration_steps, math.floor(left / per_step))
    print(f"{per_step * 1e3:.0f} ms per step (batch {args.batch}, {first['precision']}); training {steps} steps",
          flush=True)

    try:
        summary = train_stage(args.stage, dataclasses.replace(config, steps=steps), dataset, args.out, device, init)
    except Interrupted:  # stopped at the session's time limit: the checkpoint it saved is kept
        summary = {"interrupted": True}
    summary.update(stage=args.stage, batch=args.batch, seconds_per_step=per_step,
                   base=str(init) if init else None, config=dataclasses.asdict(config) | {"steps": steps})
    changed = {"decoder": "tokenizer.decoder.", "transformer": "transformer."}.get(args.stage)
    if changed:  # what this stage trained, small enough to come back from the GPU machine (16 MiB a file)
        weights = load_file(args.out / "model.safetensors")
        save_file({k: v for k, v in weights.items() if k.startswith(changed)}, args.out / f"{args.stage}.safetensors")
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
    measured = {k: round(summary[k], 3) for k in ("psnr_start", "psnr_end", "eval_loss_start", "eval_loss_end")
                if isinstance(summary.get(k), float)}
    print(f"{args.stage}: {steps} steps, {measured}, {time.perf_counter() - started:.0f} s", flush=True)


if __name__ == "__main__":
    main()
