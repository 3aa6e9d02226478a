"""Measure a model on the held-out clips: the numbers of the model card.

    python weights/recipe/evaluate.py --model weights --data /work/data --out /work/runs/eval

Everything is at the model's resolution, on clips of `num_frames` frames cut from
the held-out split (`<data>/heldout/<class>/*.mp4`, first frames of each file):

  * tokenizer: PSNR and SSIM (magvit_cli.metrics, the official protocol), codebook
    usage (% of codes used, perplexity of the code histogram), for the real clips (the
    held-out classes `camera` and `people`) and for the whole held-out split;
  * transformer: masked-token cross-entropy per task at mask ratio 0.5 (fixed masks);
  * each task against the baselines a user already has, PSNR of the edited region only
    (the pixels the model had to make up), real clips, by source:
      inpainting  vs mean-colour fill and edge-replicate fill,
      outpainting vs edge-replicate padding,
      interpolation vs linear blending of the two keyframes, FFmpeg's motion-compensated
        interpolation between them (minterpolate) and the nearest keyframe repeated,
      prediction (FP, and CFP with the class `camera`) vs repeating the last known frame
        (it knows one frame: blending and motion interpolation need two);
    the model decodes greedily (argmax tokens) and with the CLI's default sampling
    (4 samples, seeds 1-4: their mean PSNR, and for prediction also the best of 4 per clip,
    the paper's best-of-N protocol), and the tables say per source which one wins; with
    --i3d, also the FVD of the first sample and of the baselines against the true clips;
  * inpainting and outpainting at each clip's own resolution, through the editing layer
    users run (`magvit inpaint` / `magvit outpaint`: the model works at its size and the
    result is composited back, default sampling, seed 0): three 16-frame held-out windows of
    every real held-out source, read from its untouched file (`<data>/sources`, faces and
    talking heads included); for outpainting the input is the window's central part and the
    margins the model makes up are compared with the real ones. Edited region only,
    against the same fills computed at that resolution.

--tasks limits the run to some tasks (e.g. `--tasks frame_interpolation frame_prediction`).
Writes results.json, its tables as tables.md (markdown, for the model card) and one contact
sheet per task (input | mask | output | truth, three clips) into --out.
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from magvit_cli import masks
from magvit_cli import tasks as task_lib
from magvit_cli.tasks import mean_fill, nearest_fill
from magvit_cli import video as vio
from magvit_cli.checkpoint import load_model
from magvit_cli.data import decode_frames, resize_crop
from magvit_cli.edit import inpaint, outpaint
from magvit_cli.errors import UsageError
from magvit_cli.i3d import load_i3d
from magvit_cli.metrics import frechet_distance, psnr, region_psnr, ssim
from magvit_cli.decoding import DecodeOptions
from magvit_cli.train import masked_token_loss
from prepare_data import VIDEOS, paths

REAL_CLASSES = ("camera", "people")  # the held-out classes of real footage (prepare_data.py)
INPAINT = ("inpainting_c", "inpainting_dv")
OUTPAINT = ("outpainting_c", "outpainting_v", "outpainting_h", "outpainting_dv")
TEMPORAL = ("frame_interpolation", "frame_prediction", "frame_prediction_c")
GREEDY = dict(temperature=1e-6, choice_temperature=0.0)  # argmax tokens, most confident first
SAMPLES = 4
TRAIN_PER_CLASS = 8  # training clips per class for the frame-prediction-on-seen-data row


def load_clips(folder: Path, num_frames: int, resolution: tuple[int, int],
               per_class: int | None = None) -> tuple[torch.Tensor, list[str]]:
    """The first `num_frames` frames of every video under `folder` (or of the first
    `per_class` of each sub-folder), sorted by path, resized and centre-cropped to `resolution`."""
    paths = sorted(folder.rglob("*.mp4"))
    if per_class is not None:
        paths = [p for d in sorted({p.parent for p in paths}) for p in sorted(d.glob("*.mp4"))[:per_class]]
    clips = [resize_crop(read_window(path, 0, num_frames), resolution, (0.5, 0.5)) for path in paths]
    return torch.stack(clips), [p.relative_to(folder).as_posix() for p in paths]


def read_window(path: Path, start: int, length: int) -> torch.Tensor:
    """Frames [start, start + length) of a video as [3, T, H, W] in [0, 1] (fewer at its end),
    decoding only up to them."""
    return torch.from_numpy(decode_frames(str(path), start, length)).permute(3, 0, 1, 2).float() / 255


def nearest_known_frame(video: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """Every frame replaced by the nearest known one (ties: the earlier); `keep`
    ([1, 1, T, H|1, W|1]) marks the known frames."""
    known = keep.any(dim=(3, 4)).view(-1).nonzero()[:, 0]
    nearest = known[(torch.arange(video.shape[2])[:, None] - known[None]).abs().argmin(1)]
    return video[:, :, nearest]


def thumbnail(clips: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """Each frame of [B, 3, T, H, W] shrunk to `grid` and scaled back up, bicubic both ways:
    what a token grid of that size keeps without any learning."""
    B, C, T, H, W = clips.shape
    frames = clips.transpose(1, 2).reshape(B * T, C, H, W)
    small = F.interpolate(frames, size=grid, mode="bicubic", antialias=True, align_corners=False)
    back = F.interpolate(small, size=(H, W), mode="bicubic", align_corners=False).clamp(0, 1)
    return back.reshape(B, T, C, H, W).transpose(1, 2)


def batched(function, *tensors: torch.Tensor, size: int = 8) -> torch.Tensor:
    return torch.cat([function(*(t[i:i + size] for t in tensors)) for i in range(0, len(tensors[0]), size)])


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
    width = max(line.shape[2] for line in lines)  # clips of other sizes: pad short rows with white
    lines = [F.pad(line, (0, width - line.shape[2]), value=1.0) for line in lines]
    grid = torch.cat([x for line in lines for x in (line, torch.ones(3, 4, width))][:-1], dim=1)
    image = (grid.clamp(0, 1).permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(path)


def source_of(name: str) -> str:
    """The source video of a clip or segment name: the name without its window number."""
    return name.rsplit("_", 1)[0]


def summary(values: torch.Tensor) -> float:
    return round(float(values.mean()), 2)


def by_source(names: list[str], scores: dict[str, torch.Tensor]) -> dict[str, dict[str, float]]:
    """Each per-clip score ([len(names)]) averaged over the clips of each source video, to
    show where a task wins and where it loses."""
    sources = [source_of(name) for name in names]
    return {source: {key: summary(values[torch.tensor([s == source for s in sources])]) for key, values in scores.items()}
            for source in dict.fromkeys(sources)}


def against_best(scores: dict[str, float]) -> str:
    """'model / best baseline' of one source's scores."""
    return f"{scores['model_sampled']:.2f} / {max(v for k, v in scores.items() if not k.startswith('model')):.2f}"


def heldout_segments(data: Path, length: int, per_source: int = 3) -> list[tuple[str, torch.Tensor]]:
    """`per_source` evenly spaced held-out windows of every real held-out source, read from the
    untouched source file (`<data>/sources`) at its own resolution, cut to whole multiples of 4 px
    (at most 3 rows and columns): (name, [3, length, H, W]).
    The windows are the ones `prepare_data.py` cut (manifest.jsonl), so they never overlap training."""
    files = {video.name: Path(paths(video)[0]).name for video in VIDEOS}
    windows: dict[str, list[dict]] = {}
    for line in (data / "manifest.jsonl").read_text().splitlines():
        recipe = json.loads(line)
        if recipe["split"] == "heldout" and recipe["class"] in REAL_CLASSES:
            windows.setdefault(recipe["source"], []).append(recipe)
    out = []
    for source, recipes in windows.items():
        picks = sorted({round(i * (len(recipes) - 1) / max(per_source - 1, 1)) for i in range(per_source)})
        for number, recipe in enumerate(recipes[i] for i in picks):
            truth = read_window(data / "sources" / recipe.get("file", files[source]), recipe["start"], length)
            _, T, H, W = truth.shape  # whole multiples of 4 px: outpainting's central half grows back exactly
            if T == length:
                out.append((f"{source}_{number}", truth[:, :, :H - H % 4, :W - W % 4]))
    return out


def write_frames(folder: Path, video: torch.Tensor) -> Path:
    """A clip [3, T, H, W] as a folder of PNG frames (lossless input for the editing layer)."""
    with vio.VideoWriter(folder, vio.FRAME_FOLDER_FPS) as writer:
        for frame in vio.tensor_to_frames(video):
            writer.write(frame)
    return folder


def read_frames(folder: Path) -> torch.Tensor:
    return vio.frames_to_tensor(vio.read_video(folder)[0])


# Native-resolution edits: (task, how the editing layer is asked, the kept part of the
# original frame as fractions (top, bottom, left, right) for outpainting).
NATIVE = (("inpainting_c", "box", None), ("inpainting_dv", "dynamic-box", None),
          ("outpainting_c", "all", (0.25, 0.75, 0.25, 0.75)),
          ("outpainting_v", "horizontal", (0.0, 1.0, 0.25, 0.75)),
          ("outpainting_h", "vertical", (0.25, 0.75, 0.0, 1.0)))


def native_resolution(model, segments: list[tuple[str, torch.Tensor]], options: DecodeOptions, out: Path) -> dict:
    """Inpainting and outpainting of held-out videos at their own resolution, through
    magvit_cli.edit.inpaint / outpaint (what `magvit inpaint` / `outpaint` run), against the trivial fills;
    PSNR over the pixels the edit had to make up, averaged over segments."""
    rows: dict[str, dict[str, list[float]]] = {}
    sheets: dict[str, list] = {}
    skipped: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for name, truth in segments:
            clip = truth[None]
            _, T, H, W = truth.shape
            whole = write_frames(tmp / f"{name}_in", truth)
            for task, how, kept in NATIVE:
                if task not in model.config.tasks:
                    continue
                result = tmp / f"{name}_{task}"
                if kept is None:  # inpainting: the hole of --mask `how`
                    inpaint(model, whole, result, mask=how, options=options)
                    hole = masks.parse_mask(how, (H, W), T, vio.FRAME_FOLDER_FPS)
                    keep = ~torch.stack([hole.at(i) for i in range(T)])[None, None]
                    fills = {"mean_colour_fill": mean_fill(clip, keep), "edge_replicate_fill": nearest_fill(clip, keep)}
                else:  # outpainting: grow the central part back to the full frame
                    top, bottom, left, right = (round(kept[0] * H), round(kept[1] * H), round(kept[2] * W),
                                                round(kept[3] * W))
                    source = write_frames(tmp / f"{name}_{task}_in", truth[:, :, top:bottom, left:right])
                    try:
                        outpaint(model, source, result, direction=how, options=options)
                    except UsageError as error:  # e.g. a 640x136 strip is too thin for the model's view
                        skipped.append(f"{task} on {name}: {error.message}")
                        continue
                    keep = torch.zeros(1, 1, 1, H, W, dtype=torch.bool)
                    keep[..., top:bottom, left:right] = True
                    fills = {"edge_replicate_padding": nearest_fill(clip, keep)}
                output = read_frames(result)[None]
                if output.shape != clip.shape:
                    raise RuntimeError(f"{task} on {name}: output {list(output.shape)}, expected {list(clip.shape)}")
                edited = ~keep
                row = rows.setdefault(task, {"segments": []})
                row["segments"].append(name)
                row.setdefault("model_sampled", []).append(float(region_psnr(output, clip, edited)))
                for fill, video in fills.items():
                    row.setdefault(fill, []).append(float(region_psnr(video, clip, edited)))
                if name.endswith("_0"):  # one row per source
                    mask_view = torch.where(keep, clip, torch.full_like(clip, 0.5))[0]
                    sheets.setdefault(task, []).append((mask_view, output[0], truth))
    for task, picks in sheets.items():
        contact_sheet(out / f"sheet_native_{task}.png", picks)
    table = {}
    for task, row in rows.items():
        scores = {k: torch.tensor(v) for k, v in row.items() if k != "segments"}
        table[task] = {"segments": row["segments"], **{k: summary(v) for k, v in scores.items()},
                       "by_source": by_source(row["segments"], scores)}
    for task, row in table.items():
        print("native", task, row, flush=True)
    if skipped:
        table["skipped"] = sorted(set(skipped))
    return table


def prediction_on_training_clips(model, data: Path, seed: int) -> dict:
    """Frame prediction on clips the model was trained on (the training issue's bar): greedy
    against repeating the last frame, overall and per class."""
    config = model.config
    T, resolution, latent = config.num_frames, tuple(config.resolution), config.latent_shape
    seen, seen_names = load_clips(data / "train", T, resolution, per_class=TRAIN_PER_CLASS)
    ours = [i for i, name in enumerate(seen_names) if name.split("/")[0] in config.class_names]  # a newer build's classes
    seen, seen_names = seen[ours], [seen_names[i] for i in ours]
    seen_labels = torch.tensor([config.class_names.index(n.split("/")[0]) for n in seen_names])
    cond = task_lib.condition("frame_prediction", seen, latent)
    predicted = torch.cat([model.run_task("frame_prediction", seen[i:i + 8], None, DecodeOptions(seed=seed, **GREEDY))
                           for i in range(0, len(seen), 8)])
    edited = ~cond.video_mask
    per_class = {}
    for name in config.class_names:
        pick = seen_labels == config.class_names.index(name)
        per_class[name] = {"model_greedy": summary(region_psnr(predicted[pick], seen[pick], edited)),
                           "repeat_last_frame": summary(region_psnr(cond.video[pick], seen[pick], edited))}
    row = {"clips": len(seen), "model_greedy": summary(region_psnr(predicted, seen, edited)),
           "repeat_last_frame": summary(region_psnr(cond.video, seen, edited)), "per_class": per_class}
    print("frame prediction, training clips", row, flush=True)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="weights")
    parser.add_argument("--data", type=Path, default=Path("/work/data"))
    parser.add_argument("--out", type=Path, default=Path("/work/runs/eval"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--i3d", help="I3D weights (python -m magvit_cli.i3d) for FVD; no FVD without it")
    parser.add_argument("--tasks", nargs="+", choices=list(task_lib.TASKS),
                        help="measure only these tasks (default: all of the model's); the tokenizer is always measured")
    args = parser.parse_args()
    if not (args.data / "heldout").is_dir() or not (args.data / "manifest.jsonl").is_file():
        parser.error(f"no held-out split in {args.data}: build it with weights/recipe/prepare_data.py --out {args.data}")
    measured = set(args.tasks or task_lib.TASKS)
    started = time.perf_counter()

    model = load_model(args.model, device="cpu").eval()
    config = model.config
    T, resolution, latent = config.num_frames, tuple(config.resolution), config.latent_shape
    results: dict = {"model": str(args.model), "num_frames": T, "resolution": list(resolution)}

    heldout = args.data / "heldout"
    real_folders = [heldout / name for name in REAL_CLASSES if (heldout / name).is_dir()]
    loaded = [load_clips(folder, T, resolution) for folder in real_folders]
    real = torch.cat([clips for clips, _ in loaded])
    real_names = [f"{folder.name}/{name}" for folder, (_, names) in zip(real_folders, loaded) for name in names]
    every, every_names = load_clips(heldout, T, resolution)
    results["clips"] = {"real": len(real), "all_heldout": len(every), "real_names": real_names}

    i3d = load_i3d(args.i3d, device="cpu") if args.i3d else None
    truth_features = batched(i3d.features, real) if i3d else None

    def fvd(video: torch.Tensor) -> float:
        return round(frechet_distance(truth_features, batched(i3d.features, video)), 1)

    # Tokenizer, next to the bicubic thumbnail of its own token grid (the bar it must clear).
    grid = tuple(latent[1:])
    for name, clips, names in (("real", real, real_names), ("all_heldout", every, every_names)):
        codes = batched(model.encode, clips)
        recon = batched(model.decode, codes)
        small = thumbnail(clips, grid)
        scores = {"psnr": psnr(recon, clips), "ssim": ssim(recon, clips),
                  "thumbnail_psnr": psnr(small, clips), "thumbnail_ssim": ssim(small, clips)}
        row = {key: round(float(values.mean()), 2 if key.endswith("psnr") else 4) for key, values in scores.items()}
        row |= codebook_stats(codes, config.tokenizer.codebook_size)
        if i3d and name == "real":
            row["fvd"], row["thumbnail_fvd"] = fvd(recon), fvd(small)
        row["by_source"] = by_source(names, scores)
        results[f"tokenizer_{name}"] = row
        print(name, {k: v for k, v in row.items() if k != "by_source"}, flush=True)
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
    for task in INPAINT + OUTPAINT + TEMPORAL:
        if task not in config.tasks or task not in measured:
            continue
        cond = task_lib.condition(task, real, latent)
        keep = cond.video_mask
        edited = ~keep
        greedy = run(task, DecodeOptions(seed=args.seed, **GREEDY))
        samples = [run(task, DecodeOptions(seed=args.seed + 1 + s)) for s in range(SAMPLES)]
        sample_psnr = torch.stack([region_psnr(s, real, edited) for s in samples])
        row = {"model_greedy": summary(region_psnr(greedy, real, edited)),
               "model_sampled": summary(sample_psnr.mean(0))}
        if task.startswith("frame_prediction"):
            row[f"model_best_of_{SAMPLES}"] = summary(sample_psnr.max(0).values)
        baselines = task_lib.baselines(task, real, cond)
        if task == "frame_interpolation":
            baselines["nearest_known_frame"] = nearest_known_frame(real, keep)
        per_clip = {"model_sampled": sample_psnr.mean(0), "model_greedy": region_psnr(greedy, real, edited)}
        for name, video in baselines.items():
            per_clip[name] = region_psnr(video, real, edited)
            row[name] = summary(per_clip[name])
        row["by_source"] = by_source(real_names, per_clip)
        if i3d:
            row["fvd"] = {"model_sampled": fvd(samples[0]), **{name: fvd(video) for name, video in baselines.items()}}
        table[task] = row
        print(task, row, flush=True)
        mask_view = torch.where(keep, real, torch.full_like(real, 0.5)).expand_as(real)
        picks = [0, len(real) // 2, len(real) - 1]
        sheets[task] = [(cond.video[i], mask_view[i], samples[0][i], real[i]) for i in picks]
    results["tasks_psnr_edited_region"] = table
    for task, rows in sheets.items():
        contact_sheet(args.out / f"sheet_{task}.png", rows)

    if "frame_prediction" in config.tasks and "frame_prediction" in measured:
        results["frame_prediction_training_clips"] = prediction_on_training_clips(model, args.data, args.seed)

    if measured & set(INPAINT + OUTPAINT):
        results["native_resolution_psnr_edited_region"] = native_resolution(
            model, heldout_segments(args.data, T), DecodeOptions(seed=args.seed), args.out)

    # Class-conditional generation: one clip per class, for a look, no score.
    if "full_generation" in config.tasks and "full_generation" in measured:
        generated = [model.run_task("full_generation", None, model.labels(c, 1), DecodeOptions(seed=args.seed))[0]
                     for c in range(tconfig.num_classes)]
        contact_sheet(args.out / "sheet_full_generation.png", [(g,) for g in generated], frames=8)
    results["seconds"] = round(time.perf_counter() - started, 1)
    write(args.out, results)


def label(key: str) -> str:
    return key.replace("_", " ").replace("colour fill", "colour").replace("replicate fill", "replicate")


def listing(baselines: dict[str, float]) -> str:
    return ", ".join(f"{label(k)} {v:.2f}" for k, v in baselines.items())


def verdict(model: float, baselines: dict[str, float]) -> str:
    lost = [label(name) for name, value in baselines.items() if value >= model]
    return "beats " + ("it" if len(baselines) == 1 else "both") if not lost else "**loses** to " + ", ".join(lost)


def tokenizer_tables(results: dict) -> list[str]:
    """Reconstruction against the thumbnail of the token grid: overall, then per source with
    the gap the model card's bar is about (no source more than 1 dB below its thumbnail)."""
    real = results["tokenizer_real"]
    fvd = "fvd" in real
    lines = ["| Clips | PSNR model / thumbnail | SSIM model / thumbnail | Codes used | Perplexity |"
             + (" FVD model / thumbnail |" if fvd else ""), "|---|---:|---:|---:|---:|" + ("---:|" if fvd else "")]
    for key, clips in (("tokenizer_real", f"real ({results['clips']['real']})"),
                       ("tokenizer_all_heldout", f"all held-out ({results['clips']['all_heldout']})")):
        r = results[key]
        lines.append(f"| {clips} | {r['psnr']:.2f} / {r['thumbnail_psnr']:.2f} dB | {r['ssim']:.3f} / "
                     f"{r['thumbnail_ssim']:.3f} | {r['codes_used_pct']:.1f} % | {r['perplexity']:.0f} |"
                     + (f" {r['fvd']:.0f} / {r['thumbnail_fvd']:.0f} |" if fvd and "fvd" in r else (" — |" if fvd else "")))
    lines += ["", "| Source | PSNR model / thumbnail | Gap | SSIM model / thumbnail |", "|---|---:|---:|---:|"]
    for source, s in results["tokenizer_all_heldout"]["by_source"].items():
        gap = s["psnr"] - s["thumbnail_psnr"]
        lines.append(f"| {source} | {s['psnr']:.2f} / {s['thumbnail_psnr']:.2f} | "
                     f"{'**' if gap < -1 else ''}{gap:+.2f}{'**' if gap < -1 else ''} | "
                     f"{s['ssim']:.2f} / {s['thumbnail_ssim']:.2f} |")
    return lines


def tables(results: dict) -> str:
    """The model card's tables (markdown) from `results`."""
    lines = tokenizer_tables(results)
    if "masked_token_loss" not in results:
        return "\n".join(lines) + "\n"
    losses = results["masked_token_loss"]
    lines += ["", "Masked-token cross-entropy at mask ratio 0.5 (uniform guess: "
              f"{results['uniform_loss']:.2f}): " + ", ".join(f"{task_lib.get_task(t).short} {v:.2f}" for t, v in losses.items()) + ".",
              "", f"| Task | Model, sampled (mean of {SAMPLES}) | Model, greedy | Baseline(s) | Verdict (sampled) | FVD model / baseline(s) |",
              "|---|---:|---:|---|---|---|"]
    for task, row in results["tasks_psnr_edited_region"].items():
        base = {k: v for k, v in row.items() if not k.startswith("model") and k not in ("fvd", "by_source")}
        best = row.get(f"model_best_of_{SAMPLES}")
        sampled = f"{row['model_sampled']:.2f}" + (f" (best of {SAMPLES}: {best:.2f})" if best is not None else "")
        fvd = row.get("fvd")
        fvd_text = " / ".join(f"{v:.0f}" for v in fvd.values()) if fvd else "—"
        lines.append(f"| {task_lib.get_task(task).short} | {sampled} | {row['model_greedy']:.2f} | {listing(base)} "
                     f"| {verdict(row['model_sampled'], base)} | {fvd_text} |")
    counts = Counter(map(source_of, results["clips"]["real_names"]))
    lines += ["", "| Task | " + " | ".join(f"{source} ({count})" for source, count in counts.items()) + " |",
              "|---|" + "---:|" * len(counts)]
    for task, row in results["tasks_psnr_edited_region"].items():
        cells = [against_best(row["by_source"][source]) for source in counts]
        lines.append(f"| {task_lib.get_task(task).short} | " + " | ".join(cells) + " |")
    temporal = {task: row for task, row in results["tasks_psnr_edited_region"].items() if task in TEMPORAL}
    if temporal:
        lines += ["", "| Task | Source | Greedy | Sampled | Baselines | Best |", "|---|---|---:|---:|---|---|"]
        for task, row in temporal.items():
            for source, scores in row["by_source"].items():
                base = {k: v for k, v in scores.items() if not k.startswith("model")}
                best = max(scores, key=scores.get)
                lines.append(f"| {task_lib.get_task(task).short} | {source} | {scores['model_greedy']:.2f} | "
                             f"{scores['model_sampled']:.2f} | {listing(base)} | {label(best)} |")
    native = results.get("native_resolution_psnr_edited_region", {})
    if native:
        lines += ["", "| Task | Model, sampled | Baseline(s) | Verdict | Segments | By video (model / best fill) |",
                  "|---|---:|---|---|---:|---|"]
        for task, row in native.items():
            if task == "skipped":
                continue
            base = {k: v for k, v in row.items() if k not in ("segments", "model_sampled", "by_source")}
            videos = ", ".join(f"{video} {against_best(scores)}" for video, scores in row["by_source"].items())
            lines.append(f"| {task_lib.get_task(task).short} | {row['model_sampled']:.2f} | {listing(base)} "
                         f"| {verdict(row['model_sampled'], base)} | {len(row['segments'])} | {videos} |")
    return "\n".join(lines) + "\n"


def write(out: Path, results: dict) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=1))
    (out / "tables.md").write_text(tables(results))
    print(json.dumps({k: v for k, v in results.items() if k != "clips"}, indent=1))


if __name__ == "__main__":
    main()
