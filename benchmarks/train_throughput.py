"""Training throughput of both stages: clips per second and peak memory.

Runs the real trainers (magvit_cli.train) for a few steps on random in-memory clips, so
the number covers the whole step (forward, backward, optimiser, EMA, logging) but not
video decoding. Each stage runs in its own process so peak memory is its own.

    python benchmarks/train_throughput.py                     # small presets, CPU
    python benchmarks/train_throughput.py --size b --device cuda --batch-size 8
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import resource
import sys
import tempfile
from pathlib import Path

import torch
from torch.utils.data import Dataset

PRESETS = {"small": ("small", "small"), "b": ("bair-b", "bair-b")}


class RandomClips(Dataset):
    def __init__(self, count: int, frames: int, resolution: tuple[int, int]):
        self.count, self.shape = count, (3, frames, *resolution)
        self.class_names: list[str] = []

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index: int):
        return torch.rand(self.shape, generator=torch.Generator().manual_seed(index)), 0


def _overrides(args) -> list[str]:
    out = [f"steps={args.steps}", "warmup_steps=1", "num_workers=0", "log_every=1", "save_every=0",
           "preview_every=0"]
    if args.batch_size:
        out.append(f"batch_size={args.batch_size}")
    return out + [f"precision={args.precision}"]


def _peak_memory(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux -> MiB


def _throughput(run_dir: Path, skip: int) -> float:
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    timed = records[skip:] or records[-1:]
    return sum(r["clips_per_s"] for r in timed) / len(timed)


def _stage(stage: str, args, queue) -> None:
    from magvit_cli import train, train_config
    from magvit_cli.checkpoint import save_model
    from magvit_cli.model import Magvit, ModelConfig

    device = torch.device(args.device)
    tokenizer_preset, transformer_preset = PRESETS[args.size]
    tok = train_config.apply_overrides(train_config.preset("tokenizer", tokenizer_preset), _overrides(args))
    data = RandomClips(max(64, tok.batch_size), tok.num_frames, tok.resolution)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if stage == "tokenizer":
            config = tok
            summary = train.train_tokenizer(config, data, tmp / "run", quiet=True, device=device)
            parameters = summary["parameters"] + summary["discriminator_parameters"]
        else:
            save_model(tmp / "tokenizer", Magvit(ModelConfig(tokenizer=tok.tokenizer, num_frames=tok.num_frames,
                                                             resolution=tok.resolution)))
            config = train_config.apply_overrides(train_config.preset("transformer", transformer_preset),
                                                  _overrides(args))
            summary = train.train_transformer(config, data, tmp / "tokenizer", tmp / "run", quiet=True, device=device)
            parameters = summary["parameters"]
        queue.put({"stage": stage, "preset": tokenizer_preset if stage == "tokenizer" else transformer_preset,
                   "device": str(device), "batch_size": config.batch_size, "steps": args.steps,
                   "parameters": parameters, "clips_per_s": round(_throughput(tmp / "run", args.warmup), 3),
                   "peak_memory_mib": round(_peak_memory(device), 1),
                   "precision": summary["precision"]})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=sorted(PRESETS), default=None,
                        help="small (CPU-sized presets) or b (official BAIR-B). Default: b on CUDA, small on CPU.")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--steps", type=int, default=6, help="training steps per stage")
    parser.add_argument("--warmup", type=int, default=2, help="first steps left out of the timing")
    parser.add_argument("--batch-size", type=int, default=0, help="global batch (default: the preset's)")
    parser.add_argument("--stages", default="tokenizer,transformer")
    parser.add_argument("--precision", choices=("auto", "float32", "bfloat16"), default="auto",
                        help="auto: bf16 autocast on GPUs that support it; bfloat16 also on a CPU")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args(argv)
    args.size = args.size or ("b" if args.device.startswith("cuda") else "small")
    if args.size == "b" and not args.batch_size:
        args.batch_size = 8  # the official 128/256 are global batches over 16-32 accelerators

    context = mp.get_context("spawn")
    results = []
    for stage in args.stages.split(","):
        queue = context.Queue()
        process = context.Process(target=_stage, args=(stage, args, queue))
        process.start()
        results.append(queue.get())
        process.join()
        if process.exitcode:
            print(f"{stage} stage failed (exit code {process.exitcode})", file=sys.stderr)
            return 1
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        print(f"{'stage':<12}{'preset':<9}{'device':<8}{'batch':>6}{'params':>13}{'clips/s':>10}{'peak MiB':>10}")
        for r in results:
            print(f"{r['stage']:<12}{r['preset']:<9}{r['device']:<8}{r['batch_size']:>6}{r['parameters']:>13,}"
                  f"{r['clips_per_s']:>10.3f}{r['peak_memory_mib']:>10.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
