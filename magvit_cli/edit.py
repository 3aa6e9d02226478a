"""The editing API: the ten tasks on video files and on tensors. The `magvit` command is a
thin shell over these functions.

    import magvit_cli
    from magvit_cli import edit

    model = magvit_cli.load_model()                        # the bundled model, a folder or a Hub id
    report = edit.predict(model, "clip.mp4", frames=11)    # writes clip.predict.mp4, returns a report
    filled = edit.inpaint(model, video, mask="box")        # video: tensor [B, 3, T, H, W] in [0, 1]

Every editing function takes a video file (or a folder of frames) or a float tensor
[3, T, H, W] / [B, 3, T, H, W] in [0, 1], of any size and length:

* a file: the result is written to `output` (default: next to the input, clip.TASK.mp4)
  as frames come, and a report (a dict: output, frames, size, notes, ...) is returned;
  `dry_run=True` returns the plan instead (sizes, windows, time and memory estimates);
* a tensor: the same edit, returned as a tensor of the same rank (8 bits per channel,
  as a file would hold it).

`options` (decoding.DecodeOptions) sets the sampling, `edit_options` (editing.EditOptions)
the windows, compositing and the part of the video; `progress(done, total)` is called
after every decoding step; `force` runs a task the model was not trained for.
"""

from __future__ import annotations

import random
from dataclasses import replace
from fractions import Fraction
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from . import metrics, planning
from . import video as vio
from .decoding import DecodeOptions
from .editing import EditOptions, InpaintJob, InterpolateJob, Job, OutpaintJob, PredictJob, Source
from .errors import InputError, OutputError, UsageError
from .geometry import fit_center
from .model import Magvit

Progress = Callable[[int, int], None]  # (steps done, steps in all)
Video = str | Path | torch.Tensor

GENERATE_BATCH = 8  # clips per transformer call in `generate`
MAX_CLIPS = 1000  # `generate`: past this a typo would run for hours


def predict(model: Magvit, video: Video, output: str | Path | None = None, *, frames: int | None = None,
            cond_frames: int = 1, label: int | str | None = None, options: DecodeOptions | None = None,
            edit_options: EditOptions | None = None, force: bool = False, dry_run: bool = False,
            progress: Progress | None = None):
    """Frame prediction (FP; CFP with a class `label`): the input, then `frames` new frames
    (default: one model window's worth), each window conditioned on the last `cond_frames`."""
    return _edit(model, video, output, "predict",
                 lambda source, how: PredictJob(model.config, source, how, frames, cond_frames, label),
                 options, edit_options, force, dry_run, progress)


def interpolate(model: Magvit, video: Video, output: str | Path | None = None, *, factor: int | None = None,
                fps: str | Fraction | None = None, options: DecodeOptions | None = None,
                edit_options: EditOptions | None = None, force: bool = False, dry_run: bool = False,
                progress: Progress | None = None):
    """Frame interpolation (FI): the frame rate times `factor` (default 2), or raised to `fps`."""
    return _edit(model, video, output, "interpolate",
                 lambda source, how: InterpolateJob(model.config, source, how, factor, fps),
                 options, edit_options, force, dry_run, progress)


def outpaint(model: Magvit, video: Video, output: str | Path | None = None, *, direction: str = "all",
             amount: str | None = None, options: DecodeOptions | None = None,
             edit_options: EditOptions | None = None, force: bool = False, dry_run: bool = False,
             progress: Progress | None = None):
    """Outpainting (OPC, OPV, OPH, OPD): grow the canvas towards `direction` (all, horizontal,
    vertical, left, right, up, down, dynamic) by `amount` per side (pixels "120" or percent
    "25%"; default 50%)."""
    return _edit(model, video, output, "outpaint",
                 lambda source, how: OutpaintJob(model.config, source, how, direction, amount),
                 options, edit_options, force, dry_run, progress)


def inpaint(model: Magvit, video: Video, output: str | Path | None = None, *, mask: str = "box",
            dilate: int = 0, options: DecodeOptions | None = None, edit_options: EditOptions | None = None,
            force: bool = False, dry_run: bool = False, progress: Progress | None = None):
    """Inpainting (IPC, IPD, any mask): fill `mask` (box, dynamic-box, x,y,w,h, keyframed
    boxes, a PNG, a folder of PNGs or a mask video; see masks.parse_mask), grown by `dilate` px."""
    return _edit(model, video, output, "inpaint",
                 lambda source, how: InpaintJob(model.config, source, how, mask, dilate),
                 options, edit_options, force, dry_run, progress)


def generate(model: Magvit, label: int | str, count: int = 1, output: str | Path | None = None, *,
             options: DecodeOptions | None = None, force: bool = False, progress: Progress | None = None):
    """Class-conditional generation (CG): `count` clips of class `label` (id or name).

    Clips are made GENERATE_BATCH at a time, batch i with seed + i, so a larger `count` only
    adds clips after the same first ones. Without `output`, returns them [count, 3, T, H, W];
    with it, writes each as it comes (numbered NAME.0.mp4, NAME.1.mp4, ... when count > 1)
    and returns a report."""
    check_count(count)
    options = _seeded(options)
    model.check_task("full_generation", force)
    class_id = model.class_id(label)
    paths = None
    if output is not None:
        base = output_path(output, None, "generate")
        paths = [base] if count == 1 else [base.with_name(f"{base.stem}.{i}{base.suffix}") for i in range(count)]
    fps = Fraction(model.config.fps).limit_denominator(1001)
    batches = range(0, count, GENERATE_BATCH)
    step = _counter(progress, options.steps * len(batches))
    clips, written = [], {}
    for i, first in enumerate(batches):
        size = min(GENERATE_BATCH, count - first)
        made = model.run_task("full_generation", None, model.labels(class_id, size),
                              replace(options, seed=options.seed + i), lambda s, n: step(1)).cpu()
        if paths is None:
            clips.append(made)
            continue
        for clip, path in zip(made, paths[first:first + size]):
            written = _write(clip, path, fps)
    if paths is None:
        return torch.cat(clips)
    names = model.config.class_names
    return {**written, "task": "full_generation", "class_id": class_id,
            "class_name": names[class_id] if names else None, "outputs": [str(p) for p in paths],
            "output": str(paths[0]) if count == 1 else str(paths[0].parent), "seed": options.seed}


def check_count(count: int) -> None:
    """Refuse a clip count `generate` will not make (the CLI asks before loading the model)."""
    if not 1 <= count <= MAX_CLIPS:
        raise UsageError(f"--count must be in [1, {MAX_CLIPS}], got {count}")


def reconstruct(model: Magvit, video: Video, output: str | Path | None = None, *, tokens: str | Path | None = None,
                progress: Progress | None = None):
    """The tokenizer round trip, video -> tokens -> video, at the model's resolution (each
    frame resized to cover it and centre-cropped), one model window at a time.

    A file: writes `output` (default clip.reconstruct.mp4) and returns a report with PSNR,
    SSIM and codebook usage; `tokens` also saves the token grids (.npz). A token file
    (.npz, as `tokens` writes) is decoded to `output` (default: beside it, .mp4). A tensor:
    returns the reconstruction."""
    if isinstance(video, torch.Tensor):
        batch = video if video.dim() == 5 else video.unsqueeze(0)
        if batch.dim() != 5 or batch.shape[1] != 3:
            raise UsageError(f"expected a video tensor [3, T, H, W] or [B, 3, T, H, W], got {list(video.shape)}")
        fitted, _ = fit_center(batch.float().clamp(0, 1), model.config.resolution)
        T = model.config.num_frames
        windows = [fitted[:, :, s:s + T] for s in range(0, fitted.shape[2], T)]
        recon = torch.cat([model.decode(model.encode(_pad_frames(w, T)))[:, :, :w.shape[2]].cpu() for w in windows],
                          dim=2)
        return recon if video.dim() == 5 else recon[0]
    source = Path(video)
    if source.suffix.lower() == ".npz":
        return _decode_tokens(model, source, output)
    out_path = output_path(output, source, "reconstruct")
    meta = vio.probe(source)
    T = model.config.num_frames
    step = _counter(progress, -(-meta.num_frames // T))
    grids, psnr_sum, ssim_sum, length, notes = [], 0.0, 0.0, 0, []
    # One window of T frames at a time, so memory does not grow with the video's length.
    with vio.VideoWriter(out_path, meta.fps, audio_from=source if meta.has_audio else None,
                         inputs=[source]) as writer:
        for _, frames in vio.iter_windows(source, T):
            window, note = fit_center(vio.frames_to_tensor(frames).unsqueeze(0), model.config.resolution)
            if note is not None and not notes:
                height, width = model.config.resolution
                notes.append(f"{note} (the model works at {width}x{height})")
            n = window.shape[2]  # the last window is padded; only its real frames are kept
            codes = model.encode(_pad_frames(window, T))
            grids.append(codes.cpu())
            recon, truth = model.decode(codes).cpu()[:, :, :n], window[:, :, :n]
            psnr_sum += n * float(metrics.psnr(recon, truth)[0])
            ssim_sum += n * float(metrics.ssim(recon, truth)[0])
            length += n
            for frame in vio.tensor_to_frames(recon[0]):
                writer.write(frame)
            step(1)
    codes = torch.cat(grids, dim=0)
    result = {"input": str(source), "output": str(out_path), "frames": length,
              "width": model.config.resolution[1], "height": model.config.resolution[0], "fps": str(meta.fps)}
    if tokens is not None:
        _save_tokens(Path(tokens), codes, model, num_frames=length)
        result["tokens"] = str(tokens)
    return {**result, "task": "reconstruct", "psnr": round(psnr_sum / length, 4), "ssim": round(ssim_sum / length, 5),
            "codes_used": int(torch.unique(codes).numel()), "codebook_size": model.config.tokenizer.codebook_size,
            **({"notices": notes} if notes else {})}


def inpaint_mask(config, video: str | Path, mask: str = "box", dilate: int = 0,
                 edit_options: EditOptions | None = None) -> dict:
    """The hole `inpaint` would fill, snapped to the token grid, per window; from the model's
    config alone (no weights needed)."""
    how = edit_options or EditOptions()
    job = InpaintJob(config, Source(video, how.start, how.end), how, mask, dilate)
    plan = job.plan()
    return {"input": str(video), "mask": plan["mask"], "token_grid": plan["token_grid"],
            "cell_source_px": plan["cell_source_px"], "windows": job.snapped_regions()}


# ---------------------------------------------------------------------------- shared


def _edit(model: Magvit, video: Video, output, tag: str, make_job: Callable[[Source, EditOptions], Job],
          options: DecodeOptions | None, edit_options: EditOptions | None, force: bool, dry_run: bool,
          progress: Progress | None):
    options = _seeded(options)
    how = edit_options or EditOptions()
    if isinstance(video, torch.Tensor):
        if output is not None or dry_run:
            raise UsageError("a tensor input gives a tensor back: no output path or dry run")
        batch = video if video.dim() == 5 else video.unsqueeze(0)
        fps = how.fps or model.config.fps
        results = []
        for clip in batch:
            job = make_job(Source.from_tensor(clip, fps, how.start, how.end), how)
            results.append(_run(model, job, None, options, force, progress)["video"])
        out = torch.stack(results)
        return out if video.dim() == 5 else out[0]
    source_path = Path(video)
    out = output_path(output, source_path, tag)
    job = make_job(Source(source_path, how.start, how.end), how)
    if dry_run:
        return {"input": str(source_path), **_dry_run(model, job, out, options)}
    return {"input": str(source_path), **_run(model, job, out, options, force, progress)}


def _run(model: Magvit, job: Job, out: Path | None, options: DecodeOptions, force: bool,
         progress: Progress | None) -> dict:
    model.check_task(job.task, force)
    need = _batch(model, job, options)
    planning.check_fits(need, model.device)
    result = job.run(model, out, options, _counter(progress, job.total_steps(options)))
    notes = result.pop("notes", [])
    return {**result, "task": job.task, "settings": _settings(job, options), "seed": options.seed,
            **({"notices": notes} if notes else {})}


def _dry_run(model: Magvit, job: Job, out: Path, options: DecodeOptions) -> dict:
    """The plan, with the time (one model call measured on the device) and memory estimates."""
    need = _batch(model, job, options)
    speed = planning.measure_speed(model, job.edit.batch, options)
    per_frame = planning.measure_frame_io(job.source.size, job.canvas, model.config.resolution)
    plan = job.plan()
    plan["estimate"] = {
        "device": str(model.device),
        "seconds": round(plan["model_calls"] * speed["seconds_per_call"] + plan["output"]["frames"] * per_frame, 1),
        "seconds_per_model_call": round(speed["seconds_per_call"], 3),
        "peak_memory_mb": round(need["peak_host"] / 2 ** 20),
        **({"peak_device_memory_mb": round(max(need["peak_device"], speed.get("device_peak", 0)) / 2 ** 20)}
           if model.device.type == "cuda" else {}),
    }
    plan["output"]["path"] = str(out)
    return {"plan": plan, "settings": _settings(job, options)}


def _batch(model: Magvit, job: Job, options: DecodeOptions) -> dict:
    """Fix the job's windows per call (the most that fit, unless given) and return the
    memory estimate for it."""
    guidance = options.guidance > 0
    batch = job.edit.batch or planning.auto_batch(job, model.config, model.device, guidance)
    job.edit = replace(job.edit, batch=batch)
    return planning.estimate_memory(job, model.config, batch, model.device, guidance)


def _settings(job: Job, options: DecodeOptions) -> dict:
    return {**job.settings(), "task": job.task, "batch": job.edit.batch, "seed": options.seed,
            "steps": options.steps, "schedule": options.schedule, "choice_temperature": options.choice_temperature,
            "temperature": options.temperature, "guidance": options.guidance, "dtype": options.dtype,
            "composite": job.edit.composite, "start": job.edit.start, "end": job.edit.end}


def _seeded(options: DecodeOptions | None) -> DecodeOptions:
    """The options, checked, with a seed drawn if none was given (so it can be reported)."""
    options = options or DecodeOptions()
    if options.seed is None:
        options = replace(options, seed=random.SystemRandom().randrange(2 ** 31))
    options.check()
    return options


def _counter(progress: Progress | None, total: int) -> Callable[[int], None]:
    """A callback adding n steps at a time, reported to `progress` as (done, total)."""
    done = 0

    def step(n: int) -> None:
        nonlocal done
        done += n
        if progress is not None:
            progress(done, total)

    return step


def output_path(output: str | Path | None, source: Path | None, task: str) -> Path:
    """Where `task` writes: `output` checked (a writable format, not the input itself), or by
    default next to the input, clip.TASK.mp4 (magvit.TASK.mp4 without an input)."""
    if output is None:
        return Path(f"magvit.{task}.mp4") if source is None else vio.default_output_path(source, task)
    output = Path(output)
    if source is not None and output.expanduser().resolve() == source.expanduser().resolve():
        raise OutputError(f"the output {output} is the input file", hint="choose another --output path")
    vio.check_output_format(output)
    return output


def _write(clip: torch.Tensor, path: Path, fps: Fraction) -> dict:
    frames = vio.tensor_to_frames(clip)
    vio.write_video(path, frames, fps)
    return {"frames": int(frames.shape[0]), "width": int(frames.shape[2]), "height": int(frames.shape[1]),
            "fps": str(fps)}


def _pad_frames(video: torch.Tensor, length: int) -> torch.Tensor:
    """`video` [B, C, T, H, W] padded to `length` frames by repeating its last frame."""
    missing = length - video.shape[2]
    if missing <= 0:
        return video
    return torch.cat([video, video[:, :, -1:].expand(-1, -1, missing, -1, -1)], dim=2)


# ---------------------------------------------------------------------------- token files


def _decode_tokens(model: Magvit, path: Path, output: str | Path | None) -> dict:
    codes, num_frames = _load_tokens(path)
    if tuple(codes.shape[1:]) != tuple(model.config.latent_shape):
        raise InputError(f"{path} holds {list(codes.shape[1:])} token grids but the model uses "
                         f"{list(model.config.latent_shape)}", hint="decode with the model that made them")
    if codes.min() < 0 or codes.max() >= model.config.tokenizer.codebook_size:
        raise InputError(f"{path} has token ids outside [0, {model.config.tokenizer.codebook_size})")
    out_path = Path(output) if output is not None else path.with_suffix(".mp4")
    if out_path.suffix.lower() == ".npz":
        raise UsageError("--output must be a video path when decoding tokens")
    video = torch.cat([model.decode(c.unsqueeze(0)) for c in codes], dim=2)[:, :, :num_frames]
    written = _write(video[0].cpu(), out_path, Fraction(model.config.fps).limit_denominator(1001))
    return {"output": str(out_path), **written, "task": "reconstruct", "tokens": str(path)}


def _load_tokens(path: Path) -> tuple[torch.Tensor, int | None]:
    """-> (codes [n, t, h, w], frame count or None)."""
    try:
        with np.load(path, allow_pickle=False) as data:
            codes = torch.from_numpy(data["codes"].astype(np.int64))
            num_frames = int(data["num_frames"]) if "num_frames" in data else None
    except FileNotFoundError as e:
        raise InputError(f"{path} does not exist") from e
    except (OSError, ValueError, KeyError) as e:
        raise InputError(f"{path} is not a magvit token file (expected an .npz with 'codes')") from e
    if codes.dim() not in (3, 4):
        raise InputError(f"{path}: token grid must be [t, h, w] or [n, t, h, w], got {list(codes.shape)}")
    return codes.reshape(-1, *codes.shape[-3:]), num_frames


def _save_tokens(path: Path, codes: torch.Tensor, model: Magvit, num_frames: int) -> None:
    """Token grids [n, t, h, w] of consecutive windows, and the clip's frame count (the last
    window may be padded)."""
    tmp = path.with_name(f".{path.name}.tmp.npz")
    try:
        np.savez_compressed(tmp, codes=codes.numpy().astype(np.int32), num_frames=np.array(num_frames),
                            latent_shape=np.array(model.config.latent_shape),
                            codebook_size=np.array(model.config.tokenizer.codebook_size))
        tmp.replace(path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise OutputError(f"cannot write {path}: {e.strerror or e}") from e
