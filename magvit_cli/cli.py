"""The `magvit` command: a thin shell over the Python API.

Every failure the user can act on is a `MagvitError`: one line on stderr, the
exit code of its class (see errors.py), a traceback only with --debug. Results
go to stdout (a JSON object with --json); progress and notices go to stderr.
"""

from __future__ import annotations

import json
import signal
import sys
import time
import traceback
from contextlib import contextmanager
from fractions import Fraction
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from . import errors
from .errors import InputError, MagvitError, OutputError, UnsupportedError, UsageError

app = typer.Typer(
    name="magvit",
    help="Video editing with MAGVIT, the Masked Generative Video Transformer: "
    "predict, interpolate, outpaint, inpaint and generate video from the shell.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)

stderr = Console(stderr=True)

# Options shared by the task commands.
OutputOpt = Annotated[Optional[Path], typer.Option("--output", "-o", help="Output file (.mp4 .mkv .mov .webm .gif) or a folder for PNG frames. Default: derived from the input, e.g. clip.predict.mp4.")]
ModelOpt = Annotated[Optional[str], typer.Option("--model", "-m", help="Model folder or Hub repo id (owner/name[@revision]). Default: the bundled model.")]
DeviceOpt = Annotated[str, typer.Option("--device", help="auto (CUDA if present, else CPU), cpu, cuda or cuda:N.")]
SeedOpt = Annotated[Optional[int], typer.Option("--seed", help="Random seed; the same seed gives the same output on the same device.")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress or notices; errors only.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print a machine-readable JSON result on stdout.")]
DebugOpt = Annotated[bool, typer.Option("--debug", help="Show tracebacks on errors.")]
StepsOpt = Annotated[int, typer.Option("--steps", help="Decoding steps (the paper uses 12).")]
ScheduleOpt = Annotated[str, typer.Option("--schedule", help="Mask schedule: cosine, uniform, exp, log or powX (e.g. pow2).")]
TemperatureOpt = Annotated[float, typer.Option("--temperature", help="Temperature of the Gumbel noise that picks which tokens to keep (choice temperature; paper 4.5).")]
GuidanceOpt = Annotated[float, typer.Option("--guidance", help="Classifier-free guidance scale (0 = off, as in the paper).")]
DtypeOpt = Annotated[str, typer.Option("--dtype", help="auto (bf16 on CUDA and on CPUs with native bf16), float32 or bfloat16.")]
ForceOpt = Annotated[bool, typer.Option("--force", help="Run a task the model was not trained for.")]
CompositeOpt = Annotated[bool, typer.Option("--composite/--no-composite", help="Paste the known input pixels back over the model output.")]


class Run:
    """What one command needs besides its own arguments: output mode, device,
    model loading, progress, and the JSON result."""

    def __init__(self, quiet: bool, as_json: bool, debug: bool):
        self.quiet, self.as_json, self.debug = quiet, as_json, debug
        self.result: dict = {}
        self.started = time.perf_counter()
        _STATE["debug"] = debug

    def note(self, message: str) -> None:
        if not self.quiet:
            stderr.print(message, style="dim", highlight=False, markup=False, soft_wrap=True)

    def load(self, model: str | None, device: str, force: bool = False):
        from .checkpoint import load_model

        dev = resolve_device(device)
        with self.status("loading model"):
            m = load_model(model, device=dev)
        m.force = force
        self.result.update(model=m.source, device=str(dev))
        return m

    @contextmanager
    def status(self, text: str):
        if self.quiet:
            yield
        else:
            with stderr.status(text):
                yield

    @contextmanager
    def progress(self, description: str, total: int):
        """A Rich progress bar; yields a callback `advance()`."""
        if self.quiet:
            yield lambda *_: None
            return
        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                      TimeElapsedColumn(), console=stderr, transient=True) as bar:
            task = bar.add_task(description, total=total)
            yield lambda *_: bar.advance(task)

    def finish(self, **result) -> None:
        self.result.update(result)
        self.result.setdefault("status", "ok")
        self.result["seconds"] = round(time.perf_counter() - self.started, 3)
        if self.as_json:
            print(json.dumps(self.result, default=str))
        elif not self.quiet and "output" in self.result:
            stderr.print(f"wrote {self.result['output']}", highlight=False)


_STATE = {"debug": False}


def resolve_device(name: str):
    import torch

    name = name.strip().lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as e:
        raise UsageError(f"unknown device {name!r}", hint="use auto, cpu, cuda or cuda:N") from e
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise UnsupportedError("--device cuda was asked for but no CUDA GPU is available",
                                   hint="use --device cpu (or auto)")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise UnsupportedError(f"--device {name}: only {torch.cuda.device_count()} CUDA device(s) present")
    elif device.type != "cpu":
        raise UnsupportedError(f"device type {device.type!r} is not supported", hint="use cpu or cuda")
    return device


def decode_options(steps, schedule, temperature, guidance, seed, dtype):
    from .model import DecodeOptions

    options = DecodeOptions(steps=steps, schedule=schedule, choice_temperature=temperature,
                            guidance=guidance, seed=seed, dtype=dtype)
    options.check()
    return options


def read_input(path: Path, run: Run):
    """Decode a whole input clip to a float tensor [1, 3, T, H, W]."""
    from . import video as vio

    frames, info = vio.read_video(path)
    if len(frames) == 0:
        raise InputError(f"{path} has no decodable video frames")
    run.result["input"] = str(path)
    return vio.frames_to_tensor(frames).unsqueeze(0), info


def output_path(output: Path | None, source: Path | None, task: str) -> Path:
    from . import video as vio

    if output is None:
        if source is None:
            return Path(f"magvit.{task}.mp4")
        return vio.default_output_path(source, task)
    if source is not None and output.expanduser().resolve() == source.expanduser().resolve():
        raise OutputError(f"the output {output} is the input file", hint="choose another --output path")
    return output


def write_output(run: Run, video, path: Path, fps: Fraction, audio_from: Path | None = None) -> None:
    from . import video as vio

    frames = vio.tensor_to_frames(video[0].cpu())
    vio.write_video(path, frames, fps, audio_from=audio_from)
    run.result.update(output=str(path), frames=int(frames.shape[0]), width=int(frames.shape[2]),
                      height=int(frames.shape[1]), fps=str(fps))


def report_notices(run: Run, model) -> None:
    for note in model.last_notices:
        run.note(f"note: {note} (the model works at {model.config.resolution[1]}x{model.config.resolution[0]})")
    if model.last_notices:
        run.result["notices"] = list(model.last_notices)


def step_callback(advance):
    return lambda step, steps: advance()


# ---------------------------------------------------------------- commands


@app.command()
def info(
    video: Annotated[Path, typer.Argument(help="A video file or a folder of PNG/JPEG frames.")],
    model: ModelOpt = None,
    as_json: JsonOpt = False,
    quiet: QuietOpt = False,
    debug: DebugOpt = False,
):
    """Show a video's metadata and how it would be cut into model windows."""
    import math

    from . import video as vio
    from .checkpoint import read_config, resolve_model

    run = Run(quiet, as_json, debug)
    meta = vio.probe(video)
    config = read_config(resolve_model(model))
    T = config.num_frames
    windows = max(1, math.ceil(meta.num_frames / T))
    t, h, w = config.latent_shape
    plan = {
        "model_clip": f"{T}x{config.resolution[0]}x{config.resolution[1]}",
        "windows": windows,
        "tokens_per_window": f"{t}x{h}x{w}",
    }
    data = {
        "path": str(meta.path), "container": meta.container, "codec": meta.codec,
        "width": meta.width, "height": meta.height, "frames": meta.num_frames,
        "fps": str(meta.fps), "fps_float": float(meta.fps), "duration": meta.duration,
        "rotation": meta.rotation, "pix_fmt": meta.pix_fmt, "audio": meta.has_audio,
        "audio_codec": meta.audio_codec, "plan": plan,
    }
    if as_json:
        print(json.dumps(data))
        return
    for key in ("path", "container", "codec", "width", "height", "frames", "fps", "duration",
                "rotation", "pix_fmt", "audio", "audio_codec"):
        value = data[key]
        if key == "fps":
            value = f"{meta.fps} ({float(meta.fps):.3f})"
        elif key == "duration":
            value = f"{meta.duration:.3f} s"
        print(f"{key:12} {value}")
    print(f"{'windows':12} {windows} model window(s) of {T} frames at "
          f"{config.resolution[1]}x{config.resolution[0]}, {t}x{h}x{w} tokens each")


@app.command()
def predict(
    video: Annotated[Path, typer.Argument(help="The clip to continue.")],
    frames: Annotated[Optional[int], typer.Option("--frames", "-n", help="Number of new frames (default: one model window's worth).")] = None,
    cond_frames: Annotated[int, typer.Option("--cond-frames", help="Condition frames taken from the end of the clip (the paper uses 1).")] = 1,
    class_: Annotated[Optional[str], typer.Option("--class", help="Class id or name: class-conditional frame prediction (CFP).")] = None,
    output: OutputOpt = None, model: ModelOpt = None, device: DeviceOpt = "auto", seed: SeedOpt = None,
    steps: StepsOpt = 12, schedule: ScheduleOpt = "cosine", temperature: TemperatureOpt = 4.5,
    guidance: GuidanceOpt = 0.0, dtype: DtypeOpt = "auto", force: ForceOpt = False,
    quiet: QuietOpt = False, as_json: JsonOpt = False, debug: DebugOpt = False,
):
    """Frame prediction (FP, or CFP with --class): continue a clip."""
    import torch

    run = Run(quiet, as_json, debug)
    options = decode_options(steps, schedule, temperature, guidance, seed, dtype)
    if frames is not None and frames < 1:
        raise UsageError(f"--frames must be >= 1, got {frames}")
    out_path = output_path(output, video, "predict")
    clip, meta = read_input(video, run)
    m = run.load(model, device, force)
    T = m.config.num_frames
    per_window = T - cond_frames
    total = (frames or per_window)
    windows = -(-total // max(per_window, 1))
    with run.progress("predicting", windows * options.steps) as advance:
        new = m.predict(clip, frames=frames, cond_frames=cond_frames, label=class_, options=options,
                        on_step=step_callback(advance))
    report_notices(run, m)
    result = torch.cat([m._fit(clip).cpu(), new.cpu()], dim=2)
    write_output(run, result, out_path, meta.fps, audio_from=video if meta.has_audio else None)
    run.finish(task="frame_prediction_c" if class_ is not None else "frame_prediction",
               new_frames=int(new.shape[2]), seed=seed)


@app.command()
def interpolate(
    video: Annotated[Path, typer.Argument(help="The clip whose frame rate to raise.")],
    factor: Annotated[int, typer.Option("--factor", help="Frame-rate multiplier: each gap between two frames gets factor-1 new frames. The model fills 14 frames between two keyframes; factors that divide 15 (3, 5, 15) hit them exactly, others take the nearest.")] = 2,
    output: OutputOpt = None, model: ModelOpt = None, device: DeviceOpt = "auto", seed: SeedOpt = None,
    steps: StepsOpt = 12, schedule: ScheduleOpt = "cosine", temperature: TemperatureOpt = 4.5,
    guidance: GuidanceOpt = 0.0, dtype: DtypeOpt = "auto", force: ForceOpt = False,
    composite: CompositeOpt = True,
    quiet: QuietOpt = False, as_json: JsonOpt = False, debug: DebugOpt = False,
):
    """Frame interpolation (FI): fill new frames between every pair of frames."""
    import torch

    run = Run(quiet, as_json, debug)
    options = decode_options(steps, schedule, temperature, guidance, seed, dtype)
    if factor < 2:
        raise UsageError(f"--factor must be at least 2, got {factor}")
    out_path = output_path(output, video, "interpolate")
    clip, meta = read_input(video, run)
    if clip.shape[2] < 2:
        raise InputError(f"{video} has a single frame: interpolation needs at least two")
    m = run.load(model, device, force)
    T = m.config.num_frames
    if factor > T - 1:
        raise UsageError(f"--factor must be at most {T - 1} with this model ({T - 2} frames fit between two keyframes)")
    clip = m._fit(clip).cpu()
    # positions of the kept in-between frames inside one model window
    picks = [round(j * (T - 1) / factor) for j in range(1, factor)]
    pairs = clip.shape[2] - 1
    pieces = []
    with run.progress("interpolating", pairs * options.steps) as advance:
        for i in range(pairs):
            window = m.interpolate(clip[:, :, i], clip[:, :, i + 1], options=options,
                                   on_step=step_callback(advance)).cpu().clone()
            if composite:
                window[:, :, 0], window[:, :, -1] = clip[:, :, i], clip[:, :, i + 1]
            pieces += [clip[:, :, i:i + 1], window[:, :, picks]]
    pieces.append(clip[:, :, -1:])
    report_notices(run, m)
    result = torch.cat(pieces, dim=2)
    fps = meta.fps * factor
    write_output(run, result, out_path, fps, audio_from=video if meta.has_audio else None)
    run.finish(task="frame_interpolation", factor=factor, seed=seed)


@app.command()
def outpaint(
    video: Annotated[Path, typer.Argument(help="The clip to extend.")],
    direction: Annotated[str, typer.Option("--direction", "-d", help="all (OPC: grow every side), horizontal (OPV: left and right), vertical (OPH: top and bottom), left/right (OPV, keeping the input and the new margin on that side), up/down (OPH likewise), dynamic (OPD: a moving known strip).")] = "all",
    output: OutputOpt = None, model: ModelOpt = None, device: DeviceOpt = "auto", seed: SeedOpt = None,
    steps: StepsOpt = 12, schedule: ScheduleOpt = "cosine", temperature: TemperatureOpt = 4.5,
    guidance: GuidanceOpt = 0.0, dtype: DtypeOpt = "auto", force: ForceOpt = False,
    quiet: QuietOpt = False, as_json: JsonOpt = False, debug: DebugOpt = False,
):
    """Outpainting (OPC, OPV, OPH, OPD): extend the canvas."""
    from .model import OUTPAINT_TASK

    run = Run(quiet, as_json, debug)
    options = decode_options(steps, schedule, temperature, guidance, seed, dtype)
    if direction not in OUTPAINT_TASK:
        raise UsageError(f"unknown --direction {direction!r}", hint=f"use one of {', '.join(OUTPAINT_TASK)}")
    out_path = output_path(output, video, "outpaint")
    clip, meta = read_input(video, run)
    m = run.load(model, device, force)
    windows = -(-clip.shape[2] // m.config.num_frames)
    with run.progress("outpainting", windows * options.steps) as advance:
        result = m.outpaint(clip, direction, options=options, on_step=step_callback(advance))
    report_notices(run, m)
    write_output(run, result.cpu(), out_path, meta.fps, audio_from=video if meta.has_audio else None)
    run.finish(task=OUTPAINT_TASK[direction], direction=direction, seed=seed)


@app.command()
def inpaint(
    video: Annotated[Path, typer.Argument(help="The clip with a region to fill.")],
    mask: Annotated[str, typer.Option("--mask", help="box (IPC: a central hole of half the width and height) or dynamic-box (IPD: the hole moves left to right).")] = "box",
    output: OutputOpt = None, model: ModelOpt = None, device: DeviceOpt = "auto", seed: SeedOpt = None,
    steps: StepsOpt = 12, schedule: ScheduleOpt = "cosine", temperature: TemperatureOpt = 4.5,
    guidance: GuidanceOpt = 0.0, dtype: DtypeOpt = "auto", force: ForceOpt = False,
    quiet: QuietOpt = False, as_json: JsonOpt = False, debug: DebugOpt = False,
):
    """Inpainting (IPC, IPD): fill a hole in every frame."""
    from .model import INPAINT_TASK

    run = Run(quiet, as_json, debug)
    options = decode_options(steps, schedule, temperature, guidance, seed, dtype)
    if mask not in INPAINT_TASK:
        raise UsageError(f"unknown --mask {mask!r}", hint=f"use one of {', '.join(INPAINT_TASK)}")
    out_path = output_path(output, video, "inpaint")
    clip, meta = read_input(video, run)
    m = run.load(model, device, force)
    windows = -(-clip.shape[2] // m.config.num_frames)
    with run.progress("inpainting", windows * options.steps) as advance:
        result = m.inpaint(clip, mask, options=options, on_step=step_callback(advance))
    report_notices(run, m)
    write_output(run, result.cpu(), out_path, meta.fps, audio_from=video if meta.has_audio else None)
    run.finish(task=INPAINT_TASK[mask], mask=mask, seed=seed)


@app.command()
def generate(
    class_: Annotated[str, typer.Option("--class", help="Class id or name.")],
    count: Annotated[int, typer.Option("--count", "-k", help="Number of clips.")] = 1,
    output: OutputOpt = None, model: ModelOpt = None, device: DeviceOpt = "auto", seed: SeedOpt = None,
    steps: StepsOpt = 12, schedule: ScheduleOpt = "cosine", temperature: TemperatureOpt = 4.5,
    guidance: GuidanceOpt = 0.0, dtype: DtypeOpt = "auto", force: ForceOpt = False,
    quiet: QuietOpt = False, as_json: JsonOpt = False, debug: DebugOpt = False,
):
    """Class-conditional generation (CG): make new clips of a class.
    With --count > 1 the outputs are numbered: NAME.0.mp4, NAME.1.mp4, ..."""
    run = Run(quiet, as_json, debug)
    options = decode_options(steps, schedule, temperature, guidance, seed, dtype)
    if not 1 <= count <= 1000:
        raise UsageError(f"--count must be in [1, 1000], got {count}")
    base = output_path(output, None, "generate")
    m = run.load(model, device, force)
    class_id = m.class_id(class_)
    with run.progress("generating", options.steps) as advance:
        clips = m.generate(class_id, count, options=options, on_step=step_callback(advance)).cpu()
    fps = Fraction(m.config.fps).limit_denominator(1001)
    paths = [base] if count == 1 else [base.with_name(f"{base.stem}.{i}{base.suffix}") for i in range(count)]
    for i, path in enumerate(paths):
        write_output(run, clips[i:i + 1], path, fps)
    names = m.config.class_names
    run.finish(task="full_generation", class_id=class_id, class_name=names[class_id] if names else None,
               outputs=[str(p) for p in paths], output=str(paths[0]) if count == 1 else str(paths[0].parent),
               seed=seed)


@app.command()
def reconstruct(
    source: Annotated[Path, typer.Argument(help="A video to encode and decode, or a token file (.npz) to decode.")],
    tokens: Annotated[Optional[Path], typer.Option("--tokens", help="Also save the token grid to this .npz file.")] = None,
    output: OutputOpt = None, model: ModelOpt = None, device: DeviceOpt = "auto",
    quiet: QuietOpt = False, as_json: JsonOpt = False, debug: DebugOpt = False,
):
    """Tokenizer round trip: video -> tokens -> video, with PSNR/SSIM and codebook usage."""
    import numpy as np
    import torch

    from . import metrics

    run = Run(quiet, as_json, debug)
    m = run.load(model, device)
    T = m.config.num_frames
    if source.suffix.lower() == ".npz":
        codes, num_frames = load_tokens(source)
        if tuple(codes.shape[1:]) != tuple(m.config.latent_shape):
            raise InputError(f"{source} holds {list(codes.shape[1:])} token grids but the model uses "
                             f"{list(m.config.latent_shape)}", hint="decode with the model that made them")
        if codes.min() < 0 or codes.max() >= m.config.tokenizer.codebook_size:
            raise InputError(f"{source} has token ids outside [0, {m.config.tokenizer.codebook_size})")
        out_path = output or source.with_suffix(".mp4")
        if out_path.suffix.lower() == ".npz":
            raise UsageError("--output must be a video path when decoding tokens")
        with run.status("decoding tokens"):
            video = torch.cat([m.decode(c.unsqueeze(0)) for c in codes], dim=2)[:, :, :num_frames]
        write_output(run, video.cpu(), out_path, Fraction(m.config.fps).limit_denominator(1001))
        run.finish(task="reconstruct", tokens=str(source))
        return
    out_path = output_path(output, source, "reconstruct")
    clip, meta = read_input(source, run)
    clip = m._fit(clip)
    length = clip.shape[2]
    grids, recon = [], []
    with run.progress("reconstructing", -(-length // T)) as advance:
        for start in range(0, length, T):
            window = clip[:, :, start:start + T]
            n = window.shape[2]
            if n < T:
                window = torch.cat([window, window[:, :, -1:].expand(-1, -1, T - n, -1, -1)], dim=2)
            codes = m.encode(window)
            grids.append(codes.cpu())
            recon.append(m.decode(codes).cpu()[:, :, :n])
            advance()
    report_notices(run, m)
    recon = torch.cat(recon, dim=2)
    codes = torch.cat(grids, dim=0)
    psnr = float(metrics.psnr(recon, clip.cpu()).mean())
    ssim = float(metrics.ssim(recon, clip.cpu()).mean())
    used = int(torch.unique(codes).numel())
    if tokens is not None:
        save_tokens(tokens, codes, m, num_frames=length)
        run.result["tokens"] = str(tokens)
    write_output(run, recon, out_path, meta.fps, audio_from=source if meta.has_audio else None)
    if not quiet and not as_json:
        print(f"PSNR {psnr:.2f} dB  SSIM {ssim:.4f}  codebook usage {used}/{m.config.tokenizer.codebook_size}")
    run.finish(task="reconstruct", psnr=round(psnr, 4), ssim=round(ssim, 5), codes_used=used,
               codebook_size=m.config.tokenizer.codebook_size)


def save_tokens(path: Path, codes, model, num_frames: int) -> None:
    """Token grids [n, t, h, w] of consecutive windows, and the clip's frame count
    (the last window may be padded)."""
    import numpy as np

    tmp = path.with_name(f".{path.name}.tmp.npz")
    try:
        np.savez_compressed(tmp, codes=codes.numpy().astype(np.int32), num_frames=np.array(num_frames),
                            latent_shape=np.array(model.config.latent_shape),
                            codebook_size=np.array(model.config.tokenizer.codebook_size))
        tmp.replace(path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise OutputError(f"cannot write {path}: {e.strerror or e}") from e


def load_tokens(path: Path):
    """-> (codes [n, t, h, w], frame count or None)."""
    import numpy as np
    import torch

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


@app.command()
def convert(
    config: Annotated[str, typer.Option("--config", help="JSON file with the official 'tokenizer_config' and 'transformer_config', or a preset name (bair-b, bair-l, ucf-b, ucf-l).")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Folder to write the converted model to.")],
    tokenizer: Annotated[Optional[Path], typer.Option("--tokenizer", help="Official tokenizer checkpoint (checkpoint_<step> file, Orbax folder, or a folder of them: the newest is used). Default: the config's vq_model_from.checkpoint_path.")] = None,
    transformer: Annotated[Optional[Path], typer.Option("--transformer", help="Official MaskGVT transformer checkpoint.")] = None,
    params: Annotated[str, typer.Option("--params", help="Tokenizer weights to read: ema_params (what the official code uses) or g_params.")] = "ema_params",
    quiet: QuietOpt = False, as_json: JsonOpt = False, debug: DebugOpt = False,
):
    """Convert checkpoints written by the official JAX/Flax code to a magvit model folder."""
    from . import convert as conv
    from .checkpoint import save_model

    run = Run(quiet, as_json, debug)
    if params not in ("ema_params", "g_params"):
        raise UsageError(f"--params must be ema_params or g_params, got {params!r}")
    with run.status("converting"):
        model = conv.convert(config, tokenizer_ckpt=tokenizer, transformer_ckpt=transformer, tokenizer_params=params)
        save_model(output, model)
    run.finish(output=str(output), tasks=model.config.tasks,
               tokenizer_parameters=sum(p.numel() for p in model.tokenizer.parameters()),
               transformer_parameters=sum(p.numel() for p in model.transformer.parameters()) if model.transformer else 0)


@app.command()
def download(
    repo: Annotated[str, typer.Argument(help="Hub repo id, owner/name[@revision].")],
    quiet: QuietOpt = False, as_json: JsonOpt = False, debug: DebugOpt = False,
):
    """Fetch a model from the Hugging Face Hub into the local cache for offline use."""
    from .checkpoint import download as fetch, read_config

    run = Run(quiet, as_json, debug)
    repo_id, _, revision = repo.partition("@")
    with run.status(f"downloading {repo}"):
        folder = fetch(repo_id, revision or None)
    read_config(folder)
    run.finish(repo=repo_id, revision=revision or None, path=str(folder))
    if not as_json and not quiet:
        print(folder)


train_app = typer.Typer(help="Train the tokenizer (stage 1) or the transformer (stage 2). "
                        "Runs single-process, or distributed under `torchrun --nproc-per-node N magvit train ...`.",
                        no_args_is_help=True, rich_markup_mode=None)
app.add_typer(train_app, name="train")

DataArg = Annotated[Path, typer.Argument(help="A folder of videos (class = sub-folder name) or a CSV/JSONL manifest (path, label, optional start/end).")]
PresetOpt = Annotated[str, typer.Option("--preset", help="Training preset: bair-b, bair-l, ucf-b, ucf-l, small, tiny (tokenizer); see --help of each stage.")]
ConfigFileOpt = Annotated[Optional[Path], typer.Option("--config", help="JSON or YAML file overriding preset values.")]
SetOpt = Annotated[Optional[list[str]], typer.Option("--set", help="Override one value, key=value (repeatable), e.g. --set steps=5000 --set tokenizer.codebook_size=512.")]
ResumeOpt = Annotated[bool, typer.Option("--resume", help="Continue the run in --output from its last checkpoint.")]
OverfitOpt = Annotated[bool, typer.Option("--overfit-one-clip", help="Sanity check: train on a single clip and report the loss and PSNR reached.")]


def train_config(stage: str, preset_name: str, config_file: Path | None, overrides: list[str] | None,
                 overfit: bool):
    from . import train

    config = train.preset(stage, preset_name)
    if config_file is not None:
        config = train.load_config_file(config, config_file)
    config = train.apply_overrides(config, list(overrides or []) + (["overfit_one_clip=true"] if overfit else []))
    train.validate(config)
    return config


@train_app.command("tokenizer")
def train_tokenizer_command(
    data: DataArg,
    output: Annotated[Path, typer.Option("--output", "-o", help="Run folder: checkpoints (a loadable model), metrics.jsonl, previews.")],
    preset: PresetOpt = "small", config: ConfigFileOpt = None, set_: SetOpt = None, resume: ResumeOpt = False,
    overfit_one_clip: OverfitOpt = False, device: DeviceOpt = "auto",
    quiet: QuietOpt = False, as_json: JsonOpt = False, debug: DebugOpt = False,
):
    """Stage 1: train the 3D-VQ tokenizer as a VQGAN (the saved weights are the EMA generator's)."""
    from . import train

    run = Run(quiet, as_json, debug)
    cfg = train_config("tokenizer", preset, config, set_, overfit_one_clip)
    summary = train.train_tokenizer(cfg, data, output, resume=resume, quiet=quiet or as_json,
                                    device=resolve_device(device))
    run.finish(output=str(output), **summary)


@train_app.command("transformer")
def train_transformer_command(
    data: DataArg,
    tokenizer: Annotated[str, typer.Option("--tokenizer", help="Model folder (or Hub id) whose frozen tokenizer makes the tokens.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Run folder: checkpoints (a complete model), metrics.jsonl, previews.")],
    preset: Annotated[str, typer.Option("--preset", help="Training preset (see magvit_cli.train.TRANSFORMER_TRAIN_PRESETS), e.g. small, bair-mt8-b, ucf-b.")] = "small",
    config: ConfigFileOpt = None, set_: SetOpt = None, resume: ResumeOpt = False,
    token_cache: Annotated[Optional[Path], typer.Option("--token-cache", help="Folder for tokens of fixed clips, computed once (faster on CPU; no augmentation).")] = None,
    overfit_one_clip: OverfitOpt = False, device: DeviceOpt = "auto",
    quiet: QuietOpt = False, as_json: JsonOpt = False, debug: DebugOpt = False,
):
    """Stage 2: train the transformer with COMMIT multi-task masking on a frozen tokenizer."""
    from . import train
    from .checkpoint import resolve_model

    run = Run(quiet, as_json, debug)
    cfg = train_config("transformer", preset, config, set_, overfit_one_clip)
    summary = train.train_transformer(cfg, data, resolve_model(tokenizer), output, resume=resume,
                                      quiet=quiet or as_json, token_cache=token_cache,
                                      device=resolve_device(device))
    run.finish(output=str(output), **summary)


# ------------------------------------------------------------------- entry


def _on_sigterm(signum, frame):
    raise errors.Interrupted("terminated (SIGTERM)", exit_code=143)


def main(argv: list[str] | None = None) -> int:
    """Run the CLI and turn every failure into a message and an exit code."""
    argv = sys.argv[1:] if argv is None else argv
    debug = "--debug" in argv
    signal.signal(signal.SIGTERM, _on_sigterm)
    code = 0
    try:
        # Typer reports usage errors itself (exit 2) and turns Ctrl-C into exit 130.
        app(args=argv, prog_name="magvit", standalone_mode=True)
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        if code == errors.EXIT_INTERRUPTED:
            stderr.print("magvit: interrupted", highlight=False, soft_wrap=True)
    except KeyboardInterrupt:
        stderr.print("magvit: interrupted", highlight=False, soft_wrap=True)
        code = errors.EXIT_INTERRUPTED
    except MagvitError as e:
        if debug:
            traceback.print_exc()
        stderr.print(f"magvit: error: {e}", highlight=False, markup=False, soft_wrap=True)
        code = e.exit_code
    except Exception as e:  # noqa: BLE001 - the last line of defence
        import torch

        if isinstance(e, torch.OutOfMemoryError):
            if debug:
                traceback.print_exc()
            stderr.print("magvit: error: out of memory (try a smaller input, --device cpu, or fewer clips)",
                         highlight=False, soft_wrap=True)
            code = errors.EXIT_MEMORY
        else:
            if debug:
                traceback.print_exc()
            stderr.print(f"magvit: internal error: {type(e).__name__}: {e} (rerun with --debug and report it)",
                         highlight=False, markup=False, soft_wrap=True)
            code = errors.EXIT_INTERNAL
    return code


def entry() -> None:
    sys.exit(main())
