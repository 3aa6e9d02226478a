"""Measure a model on the held-out clips: the numbers of the model card.

    python weights/recipe/evaluate.py --model weights --data /work/data --out /work/runs/eval

Everything is at the model's resolution, on clips of `num_frames` frames cut from
the held-out split (`<data>/heldout/<class>/*.mp4`, first frames of each file):

  * tokenizer: PSNR and SSIM (magvit_cli.metrics, the official protocol), codebook
    usage (% of codes used, perplexity of the code histogram), for the real camera
    clips and for the whole held-out split;
  * transformer: masked-token cross-entropy per task at mask ratio 0.5 (fixed masks);
  * each task against the baseline a user already has, PSNR of the edited region only
    (the pixels the model had to make up), real camera clips:
      inpainting  vs mean-colour fill and edge-replicate fill,
      outpainting vs edge-replicate padding,
      interpolation vs linear blending of the two keyframes,
      prediction  vs repeating the last known frame (greedy decoding, and the best of 4
      samples per clip, the paper's best-of-N protocol).

Writes results.json and one contact sheet per task (input | mask | output | truth,
three clips) into --out.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from magvit_cli import tasks as task_lib
from magvit_cli.checkpoint import load_model
from magvit_cli.data import decode_frames, resize_crop
from magvit_cli.metrics import psnr, ssim
from magvit_cli.model import DecodeOptions
from magvit_cli.train import masked_token_loss

INPAINT = ("inpainting_c", "inpainting_dv")
OUTPAINT = ("outpainting_c", "outpainting_v", "outpainting_h", "outpainting_dv")
GREEDY = dict(temperature=1e-6, choice_temperature=0.0)  # argmax tokens, most confident first
SAMPLES = 4


def load_clips(folder: Path, num_frames: int, resolution: tuple[int, int]) -> tuple[torch.Tensor, list[str]]:
    """The first `num_frames` frames of every video under `folder`, sorted by path, resized
    and centre-cropped to `resolution`."""
    paths = sorted(folder.rglob("*.mp4"))
    clips = []
    for path in paths:
        frames = torch.from_numpy(decode_frames(str(path), 0, num_frames)).permute(3, 0, 1, 2).float() / 255
        clips.append(resize_crop(frames, resolution, (0.5, 0.5)))
    return torch.stack(clips), [p.relative_to(folder).as_posix() for p in paths]


def batched(function, *tensors: torch.Tensor, size: int = 8) -> torch.Tensor:
    return torch.cat([function(*(t[i:i + size] for t in tensors)) for i in range(0, len(tensors[0]), size)])


def region_psnr(output: torch.Tensor, truth: torch.Tensor, edited: torch.Tensor) -> torch.Tensor:
    """Per-clip PSNR over the edited pixels only ([B or 1, 1, T, H, W] bool, True = made up)."""
    edited = edited.expand(truth.shape[0], 1, *truth.shape[2:]).double()
    squared = (output.double() - truth.double()).pow(2).mean(1, keepdim=True)
    mse = (squared * edited).flatten(1).sum(1) / edited.flatten(1).sum(1)
    return -10 * torch.log10(mse.clamp_min(1e-10))


def nearest_fill(video: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """Edge-replicate fill of every unknown pixel, frame by frame: outside a known box,
    clamp into it (outpainting); inside a box-shaped hole, copy the nearest known
    pixel just outside the hole's nearest side (inpainting)."""
    out = video.clone()
    _, _, length, height, width = video.shape
    keep = keep.expand(1, 1, length, height, width)[0, 0]
    rows, cols = torch.arange(height), torch.arange(width)
    for f in range(length):
        known = keep[f]
        if known.all():
            continue
        hole = ~known
        r = hole.any(1).nonzero()[:, 0]
        c = hole.any(0).nonzero()[:, 0]
        if known[r[0]:r[-1] + 1, c[0]:c[-1] + 1].any() or not known.any():
            # Known pixels form a box (outpainting): clamp coordinates into it.
            kr, kc = known.any(1).nonzero()[:, 0], known.any(0).nonzero()[:, 0]
            ri, ci = rows.clamp(int(kr[0]), int(kr[-1])), cols.clamp(int(kc[0]), int(kc[-1]))
            out[:, :, f] = video[:, :, f][:, :, ri][:, :, :, ci]
            continue
        top, bottom, left, right = int(r[0]), int(r[-1]), int(c[0]), int(c[-1])
        for y in range(top, bottom + 1):
            for x in range(left, right + 1):
                choices = [(y - top, max(top - 1, 0), x), (bottom - y, min(bottom + 1, height - 1), x),
                           (x - left, y, max(left - 1, 0)), (right - x, y, min(right + 1, width - 1))]
                _, sy, sx = min(c for c in choices if known[c[1], c[2]])
                out[:, :, f, y, x] = video[:, :, f, sy, sx]
    return out


def mean_fill(video: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """Unknown pixels take the clip's mean colour over its known pixels."""
    keep = keep.expand(video.shape[0], 1, *video.shape[2:]).to(video.dtype)
    mean = (video * keep).sum((2, 3, 4), keepdim=True) / keep.sum((2, 3, 4), keepdim=True)
    return torch.where(keep.bool(), video, mean)


def codebook_stats(codes: torch.Tensor, size: int) -> dict:
    counts = torch.bincount(codes.flatten(), minlength=size).double()
    probs = counts / counts.sum()
    entropy = -(probs[probs > 0] * probs[probs > 0].log()).sum()
    return {"codes_used_pct": round(100 * float((counts > 0).sum()) / size, 2),
            "perplexity": round(float(entropy.exp()), 1), "tokens": int(counts.sum())}


def contact_sheet(path: Path, rows: list[tuple[torch.Tensor, ...]], frames: int = 4) -> None:
    """PNG: per clip one row of `frames` evenly spaced frames of each of (input, mask, output, truth)."""
    from PIL import Image

    lines = []
    for videos in rows:
        index = torch.linspace(0, videos[0].shape[1] - 1, frames).round().long()
        panels = [torch.cat(list(v[:, index].permute(1, 0, 2, 3)), dim=2) for v in videos]  # [3, H, n*W]
        gap = torch.ones(3, panels[0].shape[1], 4)
        lines.append(torch.cat([x for p in panels for x in (p, gap)][:-1], dim=2))
    grid = torch.cat([x for line in lines for x in (line, torch.ones(3, 4, line.shape[2]))][:-1], dim=1)
    image = (grid.clamp(0, 1).permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(path)


def summary(values: torch.Tensor) -> float:
    return round(float(values.mean()), 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="weights")
    parser.add_argument("--data", type=Path, default=Path("/work/data"))
    parser.add_argument("--out", type=Path, default=Path("/work/runs/eval"))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    started = time.perf_counter()

    model = load_model(args.model, device="cpu").eval()
    config = model.config
    T, resolution, latent = config.num_frames, tuple(config.resolution), config.latent_shape
    results: dict = {"model": str(args.model), "num_frames": T, "resolution": list(resolution)}

    heldout = args.data / "heldout"
    real, real_names = load_clips(heldout / "camera", T, resolution)
    every, every_names = load_clips(heldout, T, resolution)
    results["clips"] = {"real": len(real), "all_heldout": len(every), "real_names": real_names}

    # Tokenizer.
    for name, clips in (("real", real), ("all_heldout", every)):
        codes = batched(model.encode, clips)
        recon = batched(model.decode, codes)
        results[f"tokenizer_{name}"] = {"psnr": summary(psnr(recon, clips)), "ssim": round(float(ssim(recon, clips).mean()), 4),
                                        **codebook_stats(codes, config.tokenizer.codebook_size)}
        print(name, results[f"tokenizer_{name}"], flush=True)
    if config.transformer is None:
        write(args.out, results)
        return

    tconfig = config.transformer
    labels = torch.full((len(real),), config.class_names.index("camera") if "camera" in config.class_names else 0)

    # Masked-token loss per task, ratio 0.5, fixed masks.
    losses = {}
    tokens_real = batched(model.encode, real).reshape(len(real), -1)
    with torch.inference_mode():
        for task in config.tasks:
            cond = task_lib.condition(task, real, latent)
            cond_tokens = batched(model.encode, cond.video).reshape(len(real), -1) if task_lib.get_task(task).has_condition else None
            scores = torch.rand(tokens_real.shape, generator=torch.Generator().manual_seed(args.seed))
            masked = task_lib.mask_tokens(tconfig, task, tokens_real, cond_tokens,
                                          cond.latent_mask.reshape(1, -1) if cond_tokens is not None else None,
                                          labels, 0.5, scores=scores, model_tasks=config.tasks)
            logits = batched(model.transformer, masked.inputs)
            prefix = tconfig.num_prefix
            losses[task] = round(float(masked_token_loss(logits[:, prefix:], masked.targets[:, prefix:],
                                                         masked.weights[:, prefix:], tconfig.codebook_size, 0.0)), 3)
    results["masked_token_loss"] = losses
    results["uniform_loss"] = round(math.log(tconfig.codebook_size), 3)
    print("masked-token loss", losses, flush=True)

    # Tasks against their free baselines, edited region only.
    def run(task: str, options: DecodeOptions, video: torch.Tensor = real) -> torch.Tensor:
        use = labels if task_lib.get_task(task).class_conditional else None
        return torch.cat([model.run_task(task, video[i:i + 8], None if use is None else use[i:i + 8], options)
                          for i in range(0, len(video), 8)])

    table = {}
    sheets = {}
    for task in INPAINT + OUTPAINT + ("frame_interpolation", "frame_prediction"):
        if task not in config.tasks:
            continue
        cond = task_lib.condition(task, real, latent)
        keep = cond.video_mask
        edited = ~keep
        greedy = run(task, DecodeOptions(seed=args.seed, **GREEDY))
        row = {"model_greedy": summary(region_psnr(greedy, real, edited))}
        if task in INPAINT:
            row["mean_colour_fill"] = summary(region_psnr(mean_fill(real, keep), real, edited))
            row["edge_replicate_fill"] = summary(region_psnr(nearest_fill(real, keep), real, edited))
        elif task in OUTPAINT:
            row["edge_replicate_padding"] = summary(region_psnr(nearest_fill(real, keep), real, edited))
        elif task == "frame_interpolation":
            row["linear_blend"] = summary(region_psnr(cond.video, real, edited))
        else:
            row["repeat_last_frame"] = summary(region_psnr(cond.video, real, edited))
            samples = torch.stack([region_psnr(run(task, DecodeOptions(seed=args.seed + 1 + s)), real, edited)
                                   for s in range(SAMPLES)])
            row[f"model_best_of_{SAMPLES}"] = summary(samples.max(0).values)
            row["model_sample_mean"] = summary(samples.mean())
        table[task] = row
        print(task, row, flush=True)
        mask_view = torch.where(keep, real, torch.full_like(real, 0.5)).expand_as(real)
        picks = [0, len(real) // 2, len(real) - 1]
        sheets[task] = [(cond.video[i], mask_view[i], greedy[i], real[i]) for i in picks]
    results["tasks_psnr_edited_region"] = table
    for task, rows in sheets.items():
        contact_sheet(args.out / f"sheet_{task}.png", rows)

    # Class-conditional generation: one clip per class, for a look, no score.
    if "full_generation" in config.tasks:
        generated = [model.generate(c, 1, DecodeOptions(seed=args.seed))[0] for c in range(tconfig.num_classes)]
        contact_sheet(args.out / "sheet_full_generation.png", [(g,) for g in generated], frames=8)
    results["seconds"] = round(time.perf_counter() - started, 1)
    write(args.out, results)


def write(out: Path, results: dict) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=1))
    print(json.dumps({k: v for k, v in results.items() if k != "clips"}, indent=1))


if __name__ == "__main__":
    main()
