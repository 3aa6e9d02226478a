"""The editing engine: the tasks on videos of any length, resolution, aspect ratio and
frame rate (`magvit_cli.edit` is its public face).

The model edits T frames at H x W. Here a video streams through it:

* inpainting and outpainting (`ClipJob`): the video is cut into windows of `window`
  frames, consecutive windows sharing `overlap` frames. Each window is seen through a
  `View` (geometry.py) at the model's size, the edit is snapped to the token grid, the
  model fills it (its output shifted to meet the known pixels, composite.seamless), and the
  result is pasted back at the source's resolution: only the
  hole (plus a feathered band of one cell around it) or the new margin is replaced,
  every other pixel is the input's, bit for bit. Frames two windows share are
  cross-faded.
* prediction (`PredictJob`): the input frames are copied, then windows chained on the
  last frames make the new ones, scaled back to the source's size.
* interpolation (`InterpolateJob`): every consecutive pair of frames is one model
  window; the input frames are kept and the new ones go in between.

Frames are read and written one at a time (video.iter_frames / VideoWriter), so memory
depends on the window and the frame size, never on the video's length. A tensor goes the
same way (`Source.from_tensor`, `Output` without a path), so the Python API on tensors and
the command on files give the same pictures.
"""

from __future__ import annotations

import itertools
import math
import sys
import warnings
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from . import geometry as geo
from . import video as vio
from .composite import seamless
from .decoding import DecodeOptions, make_generator
from .errors import InputError, OutOfMemoryError, UsageError
from . import masks
from .config import ModelConfig
from .model import Magvit

MAX_NEW_FRAMES = 100_000  # frame prediction: past this a typo would run for days and fill the disk

# --direction -> official task: "horizontal" grows the canvas left and right, so the known
# region is the central vertical strip (outpainting_v), and so on.
OUTPAINT_TASK = {
    "all": "outpainting_c", "horizontal": "outpainting_v", "left": "outpainting_v", "right": "outpainting_v",
    "vertical": "outpainting_h", "up": "outpainting_h", "down": "outpainting_h", "dynamic": "outpainting_dv",
}

PREVIEW_HEIGHT = 360  # rows of each preview panel at most
Step = Callable[[int], None]  # progress: called with the number of window-steps done


@dataclass
class EditOptions:
    """How a video is cut and put back together around the model."""

    window: int | None = None  # source frames per model window (default: the model's clip length)
    overlap: int | None = None  # frames shared by consecutive windows (default: one latent frame)
    batch: int | None = None  # windows (or frame pairs) per model call (None: as many as fit)
    composite: bool = True  # False: the raw model output at the model's size
    start: float | None = None  # seconds: edit only this part of the video
    end: float | None = None
    preview: bool = False  # also write OUTPUT.preview.mp4: input | mask | output side by side
    fps: float | None = None  # frame rate of a tensor input (default: the model's)

    def __post_init__(self) -> None:
        if self.batch is not None and self.batch < 1:
            raise UsageError(f"--batch must be >= 1, got {self.batch}")


# ---------------------------------------------------------------------------- input


class Source:
    """An input video as the editing reads it: a constant frame rate (variable-rate
    input is resampled, with a note) and, with start/end, a segment of it."""

    def __init__(self, path: str | Path, start: float | None = None, end: float | None = None):
        self.path = Path(path)
        self.info = vio.probe(self.path)
        self.video: torch.Tensor | None = None
        self._cut(self.info.num_frames, start, end)

    @classmethod
    def from_tensor(cls, video: torch.Tensor, fps: float, start: float | None = None,
                    end: float | None = None) -> Source:
        """A video held as a float tensor [3, T, H, W] in [0, 1]."""
        if video.dim() != 4 or video.shape[0] != 3 or min(video.shape[1:]) < 1:
            raise UsageError(f"expected a video tensor [3, T, H, W] or [B, 3, T, H, W], got {list(video.shape)}")
        source = cls.__new__(cls)
        source.path = Path("<tensor>")
        T, H, W = video.shape[1:]
        rate = vio.as_fps(fps)
        source.info = vio.VideoInfo(path=source.path, container="tensor", codec="float32", width=W, height=H,
                                    num_frames=T, frames_counted=True, fps=rate, duration=float(T / rate),
                                    rotation=0, pix_fmt="rgb", bit_depth=8, variable_frame_rate=False,
                                    has_audio=False, audio_codec=None)
        source.video = video.detach().float().cpu()  # frames() clips to [0, 1]
        source._cut(T, start, end)
        return source

    def _cut(self, total: int, start: float | None, end: float | None) -> None:
        self.fps = self.info.fps
        self.size = (self.info.height, self.info.width)
        self.notes: list[str] = []
        if self.info.variable_frame_rate:  # the timeline's length at the average rate
            total = max(1, round(self.info.duration * self.fps))
            self.notes.append(f"{self.path.name} has a variable frame rate: resampled to a constant "
                              f"{float(self.fps):.3f} fps ({total} frames)")
        if start is not None and not (math.isfinite(start) and start >= 0):
            raise UsageError(f"--start must be a time in seconds >= 0, got {start}")
        if end is not None and not (math.isfinite(end) and end > (start or 0)):
            raise UsageError(f"--end must be after --start, got {end}")
        self.first = 0 if start is None else round(Fraction(start) * self.fps)
        self.stop = total if end is None else min(total, round(Fraction(end) * self.fps))
        if self.first >= total:
            raise UsageError(f"--start {start} s is past the end of {self.path.name} "
                             f"({self.info.duration:.3f} s)")
        self.stop = max(self.stop, self.first + 1)
        self.num_frames = self.stop - self.first
        self.total = total

    @property
    def audio_from(self) -> Path | None:
        return self.path if self.info.has_audio else None

    @property
    def audio_start(self) -> float:
        return float(self.first / self.fps)

    def frames(self) -> Iterator[np.ndarray]:
        """RGB uint8 [H, W, 3] frames of the segment, one at a time."""
        if self.video is not None:
            return (_to_uint8(self.video[:, i]) for i in range(self.first, self.stop))
        if not self.info.variable_frame_rate:
            return vio.iter_frames(self.path, self.first, self.stop)
        steady = _constant_rate(vio.iter_timed_frames(self.path), self.fps, self.total)
        return itertools.islice(steady, self.first, self.stop)

    def describe(self) -> dict:
        return {"path": str(self.path), "width": self.size[1], "height": self.size[0], "frames": self.num_frames,
                "fps": str(self.fps), "first_frame": self.first, "rotation": self.info.rotation,
                "variable_frame_rate": self.info.variable_frame_rate}


def _constant_rate(timed: Iterator[tuple[float, np.ndarray]], fps: Fraction, total: int) -> Iterator[np.ndarray]:
    """`total` frames at a constant rate from timestamped ones: output frame k shows the last
    input frame due by k + 1/2 frame periods (frames repeat over gaps, extra ones are
    dropped), as FFmpeg's fps filter does; the last frame holds to the end."""
    period = 1 / float(fps)
    first = None
    current = None
    k = 0
    for time, frame in timed:
        first = time if first is None else first
        while current is not None and k < total and time > first + (k + 0.5) * period:
            yield current
            k += 1
        current = frame
    while current is not None and k < total:
        yield current
        k += 1


# ---------------------------------------------------------------------------- shared parts


class Runner:
    """Model calls with one random generator per video, progress, and the out-of-memory
    policy: on a CUDA OOM, retry once with half the batch, then fail cleanly."""

    def __init__(self, model: Magvit, options: DecodeOptions, batch: int, progress: Step | None):
        self.model, self.options = model, options
        self.progress = progress or (lambda n: None)
        self.batch = max(1, batch or 1)
        self.generator = make_generator(model.device, options.seed)
        self.calls = 0
        self.notes: list[str] = []
        self.retried = False

    def __call__(self, fn: Callable[[torch.Generator, Callable], torch.Tensor], size: int) -> torch.Tensor:
        state = self.generator.get_state()
        try:
            return self._once(fn, size)
        except torch.OutOfMemoryError:
            if self.model.device.type == "cuda":
                torch.cuda.empty_cache()
            if self.retried or size == 1:
                raise OutOfMemoryError(f"out of memory on {self.model.device} with {size} window(s) per call",
                                       "use --batch 1, a smaller --window, or --device cpu") from None
        self.retried = True
        self.batch = max(1, size // 2)
        self.notes.append(f"out of memory with {size} windows per call: retried with {self.batch}")
        self.generator.set_state(state)
        try:
            return self._once(fn, size)
        except torch.OutOfMemoryError:
            raise OutOfMemoryError(f"out of memory on {self.model.device} even with {self.batch} window(s) per call",
                                   "use --batch 1, a smaller --window, or --device cpu") from None

    def _once(self, fn, size: int) -> torch.Tensor:
        """Run `fn(generator, items, on_step)` on slices of at most `self.batch` of the `size` items."""
        outs = []
        for lo in range(0, size, self.batch):
            hi = min(size, lo + self.batch)
            self.calls += 1
            outs.append(fn(self.generator, slice(lo, hi), lambda step, steps, n=hi - lo: self.progress(n)).cpu())
        return torch.cat(outs)


class Output:
    """The output video (and the preview), written as frames come; VideoWarnings become notes.
    Without a path the frames are kept in memory instead (`video()`)."""

    def __init__(self, path: Path | None, fps: Fraction, source: Source, edit: EditOptions):
        self.path, self.fps, self.notes = path, fps, []
        self.kept: list[np.ndarray] = []  # only without a path
        self.writer = None if path is None else vio.VideoWriter(
            path, fps, audio_from=source.audio_from, audio_start=source.audio_start, inputs=[source.path])
        self.preview = self.preview_path = None
        if edit.preview and path is not None:
            self.preview_path = preview_path(path)
            self.preview = vio.VideoWriter(self.preview_path, fps, inputs=[source.path, path])
        self.frames = 0
        self.size: tuple[int, int] | None = None

    def __enter__(self) -> Output:
        self._warnings = warnings.catch_warnings(record=True)
        self._caught = self._warnings.__enter__()
        warnings.simplefilter("always", vio.VideoWarning)
        if self.writer is None:
            return self
        self.writer.__enter__()
        if self.preview is not None:
            try:
                self.preview.__enter__()
            except BaseException:
                self.writer.__exit__(*sys.exc_info())
                raise
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            if self.preview is not None:
                self.preview.__exit__(exc_type, exc, tb)
        finally:
            try:
                if self.writer is not None:
                    self.writer.__exit__(exc_type, exc, tb)
            finally:
                self._warnings.__exit__(None, None, None)
                for w in self._caught:
                    if issubclass(w.category, vio.VideoWarning) and str(w.message) not in self.notes:
                        self.notes.append(str(w.message))

    def write(self, frame: np.ndarray, panels: tuple[np.ndarray, np.ndarray] | None = None) -> None:
        """Append an output frame; `panels` (input panel, mask panel), both at the frame's
        size, go into the preview beside it."""
        if self.writer is None:
            self.kept.append(frame)
        else:
            self.writer.write(frame)
        self.frames += 1
        self.size = frame.shape[:2]
        if self.preview is not None and panels is not None:
            self.preview.write(_side_by_side([panels[0], panels[1], frame]))


    def video(self) -> torch.Tensor:
        """The frames kept in memory as a float tensor [3, T, H, W] in [0, 1]."""
        return vio.frames_to_tensor(np.stack(self.kept))


def preview_path(output: Path) -> Path:
    """clip.inpaint.mp4 -> clip.inpaint.preview.mp4 (frame folders: out -> out.preview.mp4)."""
    return output.with_name(f"{output.stem}.preview.mp4")


def _side_by_side(panels: list[np.ndarray]) -> np.ndarray:
    """Panels of one size, scaled to at most PREVIEW_HEIGHT rows (even sizes), in a row."""
    height, width = panels[0].shape[:2]
    scale = min(1.0, PREVIEW_HEIGHT / height)
    size = (max(2, round(height * scale / 2) * 2), max(2, round(width * scale / 2) * 2))
    out = []
    for panel in panels:
        if panel.ndim == 2:
            panel = np.repeat(panel[:, :, None], 3, axis=2)
        t = torch.from_numpy(np.ascontiguousarray(panel)).permute(2, 0, 1)[None].float()
        t = F.interpolate(t, size=size, mode="bilinear", antialias=True, align_corners=False)
        out.append(t[0].round().byte().permute(1, 2, 0).numpy())  # a convex blend: stays in [0, 255]
    return np.concatenate(out, axis=1)


def _to_uint8(image: torch.Tensor) -> np.ndarray:
    """float [3, H, W] in [0, 1] -> uint8 [H, W, 3]."""
    return image.clamp(0, 1).mul(255).round().byte().permute(1, 2, 0).contiguous().numpy()


def _mask_panel(alpha: torch.Tensor) -> np.ndarray:
    return alpha.mul(255).round().byte().numpy()  # alpha is in [0, 1]


def _time_matrix(n_out: int, n_in: int) -> torch.Tensor:
    """Resampling of n_in frames onto n_out frames spanning the same time."""
    return geo.resample_matrix(n_out, n_in, 0, n_in)


# ---------------------------------------------------------------------------- jobs


class Job(ABC):
    """One task over one source: its schedule, its plan (--dry-run) and its run."""

    task: str

    def __init__(self, config: ModelConfig, source: Source, edit: EditOptions):
        self.config, self.source, self.edit = config, source, edit
        self.notes: list[str] = list(source.notes)

    @property
    def canvas(self) -> tuple[int, int]:
        """(height, width) of the output frames."""
        return self.source.size

    @property
    @abstractmethod
    def model_windows(self) -> int:
        """Model windows the run decodes."""

    def total_steps(self, options: DecodeOptions) -> int:
        return self.model_windows * options.steps

    @abstractmethod
    def held_frames(self, batch: int) -> int:
        """Source frames the run keeps in memory at once with `batch` windows per call."""

    @abstractmethod
    def settings(self) -> dict:
        """The job's own parameters, as reported with a result."""

    @abstractmethod
    def plan(self) -> dict:
        """What a run would do, without running the model."""

    @abstractmethod
    def run(self, model: Magvit, output: Path | None, options: DecodeOptions, progress: Step | None = None) -> dict:
        """Edit the source into `output` (None: keep the frames, returned as `video`)."""

    def _plan(self, view: geo.View, frames: int, fps: Fraction, calls: int, **extra) -> dict:
        T, H, W = self.config.num_frames, *self.config.resolution
        return {"task": self.task, "input": self.source.describe(),
                "output": {"width": self.canvas[1], "height": self.canvas[0], "frames": frames, "fps": str(fps)},
                "model_clip": f"{T}x{H}x{W}", "token_grid": "x".join(map(str, self.config.latent_shape)),
                "view": view.to_dict(), "padding": view.padding(self.canvas), **extra,
                "windows": self.model_windows, "batch": self.edit.batch or 1, "model_calls": calls}

    def _result(self, out: Output, runner: Runner, windows: int, **extra) -> dict:
        height, width = out.size
        result = {"frames": out.frames, "width": width, "height": height, "fps": str(out.fps),
                  "duration": round(float(out.frames / out.fps), 4), **extra,
                  "windows": windows, "model_calls": runner.calls, "notes": self.notes + runner.notes + out.notes}
        if out.path is None:
            return {**result, "video": out.video()}
        return {"output": str(out.path), **result, **({"preview": str(out.preview_path)} if out.preview else {})}


# ---------------------------------------------------------------------------- whole-clip tasks


@dataclass
class Window:
    start: int  # first frame (index within the segment)
    length: int  # real frames (the last window may be shorter than `window`: padded by its last frame)
    view: geo.View
    offsets: list[tuple[int, int]]  # where the source sits on the canvas, per window frame
    cells: torch.Tensor  # bool [t, h, w]: latent cells the model generates
    edit_cells: torch.Tensor  # bool [t, h, w]: those pasted back (not the ones only past the canvas)
    output: torch.Tensor | None = None  # float [3, T, H, W] at the model's size
    snapped: torch.Tensor | None = None  # bool [T, H, W]: the pixels of the cells pasted back
    feathered: torch.Tensor | None = None  # float [T, H, W]: how much of the model output each pixel takes

    @property
    def end(self) -> int:
        return self.start + self.length


@dataclass
class Layer:
    """One window's contribution to one output frame, on a region of the canvas."""

    region: tuple[int, int, int, int]  # x0, y0, x1, y1
    image: torch.Tensor  # float [3, h, w]
    alpha: torch.Tensor  # float [h, w]
    weight: float


class ClipJob(Job):
    """Inpainting and outpainting: every frame is edited in place, window by window."""

    padding: str
    paste_outside: bool  # whether generated cells past the input (margins) are pasted back

    def __init__(self, config: ModelConfig, source: Source, edit: EditOptions):
        super().__init__(config, source, edit)
        self.clip = (config.num_frames, *config.resolution)
        self.grid = config.latent_shape
        self.cell = geo.cell_size(self.clip, self.grid)
        T = config.num_frames
        self.window = T if edit.window is None else edit.window
        self.overlap = min(self.cell[0], self.window // 2) if edit.overlap is None else edit.overlap
        if not 2 <= self.window <= 8 * T:
            raise UsageError(f"--window must be in [2, {8 * T}] frames (the model sees {T}), got {self.window}")
        if not 0 <= self.overlap <= self.window // 2:
            raise UsageError(f"--overlap must be in [0, {self.window // 2}] frames for --window {self.window}, "
                             f"got {self.overlap}")
        self.stride = self.window - self.overlap
        self.to_model_time = _time_matrix(T, self.window)
        self.from_model_time = _time_matrix(self.window, T)
        self.time_cover = geo.coverage_matrix(T, self.window, 0, self.window)

    # -- what a subclass defines

    def offset(self, index: int) -> tuple[int, int]:
        return (0, 0)

    def hole(self, index: int) -> torch.Tensor | None:
        """bool [h, w] at the source's size: pixels to replace in frame `index` (segment index)."""
        return None

    def view(self, holes: list[torch.Tensor | None]) -> geo.View:
        return geo.letterbox(self.canvas, self.config.resolution)

    # -- the schedule

    def starts(self, total: int) -> list[tuple[int, int]]:
        return vio.window_starts(total, self.window, self.overlap)

    @property
    def model_windows(self) -> int:
        return len(self.starts(self.source.num_frames))

    def held_frames(self, batch: int) -> int:
        return self.window + (batch - 1) * self.stride + self.window  # one batch of windows and their overlap

    def settings(self) -> dict:
        return {"window": self.window, "overlap": self.overlap}

    # -- geometry of a window (no pixels needed: --show-mask and --dry-run use it too)

    def geometry(self, start: int, length: int, holes: list[torch.Tensor | None]) -> Window:
        frames = [min(i, length - 1) for i in range(self.window)]  # the last frame repeats to fill the window
        holes = [holes[i] for i in frames]
        view = self.view(holes)
        offsets = [self.offset(start + i) for i in frames]
        outside, inside_holes = [], []
        cache: dict = {}
        for hole, offset in zip(holes, offsets):
            key = (id(hole), offset)
            if key not in cache:
                sampler = self._sampler(view, offset)
                in_hole = sampler.mask_to_model(hole) if hole is not None else torch.zeros(self.clip[1:], dtype=bool)
                cache[key] = (~sampler.inside, in_hole)
            outside.append(cache[key][0])
            inside_holes.append(cache[key][1])

        def cells(masks: list[torch.Tensor]) -> torch.Tensor:
            """[window, H, W] per source frame -> latent cells with any True pixel."""
            in_time = self.time_cover.float() @ torch.stack(masks).flatten(1).float()
            return geo.snap(in_time.view(self.clip) > 0, self.grid)

        hole_cells, outside_cells = cells(inside_holes), cells(outside)
        generated = hole_cells | outside_cells
        return Window(start, length, view, offsets, generated, generated if self.paste_outside else hole_cells)

    def _sampler(self, view: geo.View, offset: tuple[int, int]) -> geo.Sampler:
        return geo.Sampler(view, self.source.size, offset)

    def model_input(self, window: Window, frames: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
        """The window at the model's size: video [3, T, H, W] and known pixels [1, T, H, W]."""
        samplers: dict = {}
        views = []
        for i in range(self.window):
            offset = window.offsets[i]
            if offset not in samplers:
                samplers[offset] = self._sampler(window.view, offset)
            views.append(samplers[offset].to_model(frames[min(i, window.length - 1)]))
        frames = torch.stack(views)  # [window, 3, H, W]
        video = (self.to_model_time @ frames.flatten(1)).view(-1, *frames.shape[1:]).transpose(0, 1)
        keep = ~geo.expand_cells(window.cells, self.clip)
        return video, keep.unsqueeze(0)

    # -- running

    def run(self, model: Magvit, output: Path, options: DecodeOptions, progress: Step | None = None) -> dict:
        runner = Runner(model, options, self.edit.batch, progress)
        self.summaries: list[dict] = []  # per window, in order
        feather_radius = max(1, self.cell[2] // 2)
        pending: dict[int, tuple[np.ndarray, torch.Tensor | None]] = {}  # frame index -> (frame, hole)
        queue: list[tuple[int, int]] = []
        windows: list[Window] = []  # processed, still covering frames not yet written
        emitted = 0
        count = 0
        with Output(output, self.source.fps, self.source, self.edit) as out:
            def process(batch: list[tuple[int, int]]) -> None:
                prepared = []
                for start, length in batch:
                    window = self.geometry(start, length, [pending[start + i][1] for i in range(length)])
                    self.summaries.append(self.summary(window))
                    if window.edit_cells.any() or not self.edit.composite:
                        prepared.append((window, self.model_input(window, [pending[start + i][0]
                                                                            for i in range(length)])))
                    else:
                        runner.progress(options.steps)  # nothing to edit in this window
                    windows.append(window)
                if prepared:
                    video = torch.stack([p[1][0] for p in prepared])
                    keep = torch.stack([p[1][1] for p in prepared])

                    def call(generator, part, on_step):
                        return model.run_task(self.task, video[part], options=options, on_step=on_step,
                                              composite=False, keep=keep[part], padding=self.padding,
                                              generator=generator)

                    result = runner(call, len(prepared))
                    for i, ((window, _), frames) in enumerate(zip(prepared, result)):
                        window.output = frames
                        if self.edit.composite:  # match the known pixels before blending them in
                            window.output = seamless(frames[None], video[i:i + 1], keep[i:i + 1])[0]
                        window.snapped = geo.expand_cells(window.edit_cells, self.clip)
                        window.feathered = geo.feather(window.snapped, feather_radius)

            def emit(until: int) -> None:
                nonlocal emitted
                while emitted < until:
                    frame, _ = pending.pop(emitted)
                    covering = [w for w in windows if w.start <= emitted < w.end]
                    self.write_frame(out, emitted, frame, covering)
                    emitted += 1
                windows[:] = [w for w in windows if w.end > emitted]

            next_start = 0  # of the next full window
            for count, frame in enumerate(self.source.frames(), start=1):
                index = count - 1
                if frame.shape[:2] != self.source.size:
                    raise InputError(f"{self.source.path}: frame {index} is {frame.shape[1]}x{frame.shape[0]}, "
                                     f"the video is {self.source.size[1]}x{self.source.size[0]}")
                pending[index] = (frame, self.hole(index))
                if index == next_start + self.window - 1:
                    queue.append((next_start, self.window))
                    next_start += self.stride
                    if len(queue) >= runner.batch:
                        process(queue)
                        queue = []
                        emit(next_start)  # no window left to run covers the frames before it
            if count == 0:
                raise InputError(f"{self.source.path} has no decodable video frames")
            queue += [(s, n) for s, n in self.starts(count) if s >= next_start]  # the short last window
            if queue:
                process(queue)
            emit(count)
        return self.result(out, runner, count)

    def write_frame(self, out: Output, index: int, frame: np.ndarray, covering: list[Window]) -> None:
        layers = self.layers(index, covering)
        if not self.edit.composite:
            window = max(layers, key=lambda layer: layer.weight).window  # raw: every window has run
            out.write(_to_uint8(self.model_frame(window, index - window.start)))
            return
        composed, alpha = self.compose(index, frame, [l.layer for l in layers], with_alpha=out.preview is not None)
        panels = None
        if out.preview is not None:
            panels = (self.input_panel(index, frame), _mask_panel(alpha))
        out.write(composed, panels)

    def layers(self, index: int, covering: list[Window]) -> list:
        """Windows holding model output for frame `index`, with their cross-fade weights."""
        ready = [w for w in covering if w.output is not None]  # in order of start
        weights = [1.0] * len(ready)
        if len(ready) == 2:
            a, b = ready
            overlap = min(a.end, b.end) - b.start
            wb = (index - b.start + 1) / (overlap + 1)
            weights = [1 - wb, wb]
        result = []
        for window, weight in zip(ready, weights):
            if not self.edit.composite:
                result.append(_Pick(window, weight, None))
                continue
            layer = self.layer(window, index - window.start, weight)
            if layer is not None:
                result.append(_Pick(window, weight, layer))
        return result

    def summary(self, window: Window) -> dict:
        first = self.source.first + window.start
        return {"frames": [first, first + window.length - 1], "view": window.view.to_dict(),
                "generated_cells": int(window.cells.sum()), "of_cells": window.cells.numel()}

    def model_frame(self, window: Window, i: int) -> torch.Tensor:
        """Window frame i at the model's size: the model's frames resampled in time."""
        return (window.output * self.from_model_time[i].view(1, -1, 1, 1)).sum(1)

    @abstractmethod
    def layer(self, window: Window, i: int, weight: float) -> Layer | None:
        """Window frame i pasted onto the canvas, with the alpha of what it replaces."""

    def compose(self, index: int, frame: np.ndarray, layers: list[Layer],
                with_alpha: bool) -> tuple[np.ndarray, torch.Tensor | None]:
        """The output frame: the base (the input, on the canvas) with the layers blended in
        where their alpha is above 0, elsewhere the base's own bytes; and, if asked, the
        alpha over the whole frame (for the preview)."""
        base = self.base(index, frame)
        alpha_full = torch.zeros(base.shape[:2]) if with_alpha else None
        if not layers:
            return base, alpha_full
        x0, y0 = min(l.region[0] for l in layers), min(l.region[1] for l in layers)
        x1, y1 = max(l.region[2] for l in layers), max(l.region[3] for l in layers)
        if len(layers) == 1:
            image, alpha = layers[0].image, layers[0].alpha
        else:  # cross-fade: weighted by each window's weight and alpha; alpha the largest
            numerator = torch.zeros(3, y1 - y0, x1 - x0)
            weight_sum = torch.zeros(y1 - y0, x1 - x0)
            alpha = torch.zeros(y1 - y0, x1 - x0)
            for l in layers:
                ys, xs = slice(l.region[1] - y0, l.region[3] - y0), slice(l.region[0] - x0, l.region[2] - x0)
                numerator[:, ys, xs] += l.weight * l.alpha * l.image
                weight_sum[ys, xs] += l.weight * l.alpha
                alpha[ys, xs] = torch.maximum(alpha[ys, xs], l.alpha)
            image = numerator / weight_sum.clamp_min(1e-12)
        patch = torch.from_numpy(base[y0:y1, x0:x1])  # uint8 [h, w, 3]
        weight = alpha.unsqueeze(-1)
        blended = torch.lerp(patch.float().div_(255), image.permute(1, 2, 0), weight)
        pixels = blended.mul_(255).round_().clamp_(0, 255).to(torch.uint8)
        result = base.copy()
        result[y0:y1, x0:x1] = torch.where(weight > 0, pixels, patch).numpy()
        if alpha_full is not None:
            alpha_full[y0:y1, x0:x1] = alpha
        return result, alpha_full

    def base(self, index: int, frame: np.ndarray) -> np.ndarray:
        return frame

    def input_panel(self, index: int, frame: np.ndarray) -> np.ndarray:
        return frame

    def result(self, out: Output, runner: Runner, count: int) -> dict:
        return self._result(out, runner, len(self.starts(count)))

    # -- the plan

    def plan(self) -> dict:
        start, length = self.starts(self.source.num_frames)[0]
        window = self.geometry(start, length, [self.hole(i) for i in range(length)])
        scale = window.view.scale
        return self._plan(
            window.view, self.source.num_frames, self.source.fps, math.ceil(self.model_windows / (self.edit.batch or 1)),
            cell_source_px={"frames": self.cell[0], "height": round(self.cell[1] * scale, 2),
                            "width": round(self.cell[2] * scale, 2)},
            window=self.window, overlap=self.overlap,
            generated_cells_first_window=int(window.cells.sum()), cells_per_window=window.cells.numel())


@dataclass
class _Pick:
    window: Window
    weight: float
    layer: Layer | None


class InpaintJob(ClipJob):
    """Fill a hole given by a mask; the rest of each frame stays the input's."""

    padding = "constant"  # the official inpainting padding
    paste_outside = False

    def __init__(self, config: ModelConfig, source: Source, edit: EditOptions, mask: str = "box", dilate: int = 0):
        super().__init__(config, source, edit)
        self.dilate = dilate
        self.mask = masks.parse_mask(mask, source.size, source.first + source.num_frames, source.fps, dilate)
        # Both inpainting tasks share one task token; the id only says which region the
        # paper's task had (and which one the model must have been trained for).
        self.task = "inpainting_c" if self.mask.static else "inpainting_dv"
        self.notes += self.mask.notes

    def hole(self, index: int) -> torch.Tensor | None:
        hole = self.mask.at(self.source.first + index)
        return hole if hole.any() else None

    def view(self, holes: list[torch.Tensor | None]) -> geo.View:
        """Around the union of the window's holes, twice its size (context_view)."""
        present = [h for h in holes if h is not None]
        if not present:
            return geo.letterbox(self.canvas, self.config.resolution)
        union = present[0]
        for h in present[1:]:
            if h is not union:
                union = union | h
        rows = union.any(1).nonzero()[:, 0]
        cols = union.any(0).nonzero()[:, 0]
        box = (int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1)
        return geo.context_view(self.canvas, box, self.config.resolution)

    def layer(self, window: Window, i: int, weight: float) -> Layer | None:
        weights = self.from_model_time[i]
        alpha_model = (window.feathered * weights.view(-1, 1, 1)).sum(0)
        if not (alpha_model > 0).any():
            return None
        view = window.view
        rows = (alpha_model > 0).any(1).nonzero()[:, 0]
        cols = (alpha_model > 0).any(0).nonzero()[:, 0]
        # One model pixel more on each side: bilinear resampling spreads alpha that far.
        height, width = self.canvas
        x0 = max(0, math.floor(view.x + (int(cols[0]) - 1) * view.scale))
        y0 = max(0, math.floor(view.y + (int(rows[0]) - 1) * view.scale))
        x1 = min(width, math.ceil(view.x + (int(cols[-1]) + 2) * view.scale))
        y1 = min(height, math.ceil(view.y + (int(rows[-1]) + 2) * view.scale))
        if x1 <= x0 or y1 <= y0:
            return None
        region = (x0, y0, x1, y1)
        image = geo.from_model(view, region, self.model_frame(window, i))
        alpha = geo.from_model(view, region, alpha_model).clamp(0, 1)
        nearest = int((i + 0.5) * self.clip[0] / self.window)  # < T for every i < window
        hole = geo.nearest_from_model(view, region, window.snapped[nearest])
        alpha = torch.maximum(alpha, hole.float())
        alpha[alpha < 1e-4] = 0  # float dust of the resampling: those pixels stay the input's
        return Layer(region, image, alpha, weight)

    def plan(self) -> dict:
        plan = super().plan()
        plan["mask"] = self.mask.describe()
        return plan

    def snapped_regions(self) -> list[dict]:
        """Per window: the view and the snapped hole (--show-mask; a run reports the same)."""
        return [self.summary(self.geometry(start, length, [self.hole(start + i) for i in range(length)]))
                for start, length in self.starts(self.source.num_frames)]

    def summary(self, window: Window) -> dict:
        """The window's frames and view, its hole's cells, and their box and frames in the source."""
        first = self.source.first + window.start
        entry = {"frames": [first, first + window.length - 1], "view": window.view.to_dict(),
                 "hole_cells": int(window.edit_cells.sum()), "generated_cells": int(window.cells.sum()),
                 "of_cells": window.cells.numel()}
        if window.edit_cells.any():
            snapped = geo.expand_cells(window.edit_cells, self.clip).any(0)
            rows = snapped.any(1).nonzero()[:, 0]
            cols = snapped.any(0).nonzero()[:, 0]
            v = window.view
            x0 = max(0, math.floor(v.x + int(cols[0]) * v.scale))
            y0 = max(0, math.floor(v.y + int(rows[0]) * v.scale))
            x1 = min(self.canvas[1], math.ceil(v.x + (int(cols[-1]) + 1) * v.scale))
            y1 = min(self.canvas[0], math.ceil(v.y + (int(rows[-1]) + 1) * v.scale))
            entry["hole_box"] = [x0, y0, x1 - x0, y1 - y0]
            cells = window.edit_cells.any(2).any(1).nonzero()[:, 0]
            per_cell = self.cell[0] * self.window / self.clip[0]  # source frames per latent frame
            last = min(window.length, math.ceil((int(cells[-1]) + 1) * per_cell)) - 1
            entry["hole_frames"] = [first + int(int(cells[0]) * per_cell), first + last]
        return entry

    def settings(self) -> dict:
        return {"mask": self.mask.spec, "dilate": self.dilate, **super().settings()}

    def result(self, out, runner, count) -> dict:
        return {**super().result(out, runner, count), "mask": {**self.mask.describe(), "windows": self.summaries}}


class OutpaintJob(ClipJob):
    """Grow the canvas: the input stays where it is, the margins are generated."""

    paste_outside = True

    def __init__(self, config: ModelConfig, source: Source, edit: EditOptions, direction: str,
                 amount: str | None = None):
        super().__init__(config, source, edit)
        if direction not in OUTPAINT_TASK:
            raise UsageError(f"unknown --direction {direction!r}", f"use one of {', '.join(OUTPAINT_TASK)}")
        self.direction, self.amount = direction, amount or "50%"
        self.task = OUTPAINT_TASK[direction]
        self.padding = "constant" if direction == "dynamic" else "edge"  # official OPD / OPC-OPV-OPH
        height, width = source.size
        grow_x = parse_amount(amount, width)
        grow_y = parse_amount(amount, height)
        sides = {
            "all": (grow_x, grow_y, grow_x, grow_y), "horizontal": (grow_x, 0, grow_x, 0),
            "vertical": (0, grow_y, 0, grow_y), "left": (grow_x, 0, 0, 0), "right": (0, 0, grow_x, 0),
            "up": (0, grow_y, 0, 0), "down": (0, 0, 0, grow_y), "dynamic": (grow_x, 0, grow_x, 0),
        }[direction]
        self.margins = dict(zip(("left", "top", "right", "bottom"), sides))
        self._canvas = (height + sides[1] + sides[3], width + sides[0] + sides[2])
        view = geo.letterbox(self._canvas, config.resolution)
        self.band = max(1.0, self.cell[2] * view.scale)  # the feathered seam: one cell, in canvas pixels
        known = geo.Sampler(view, source.size, (sides[0], sides[1])).inside
        if not geo.snap((~known).expand(self.clip), self.grid).logical_not().any():
            raise UsageError(f"the input would cover less than one token cell of the model's view with "
                             f"--amount {amount or '50%'}", "use a smaller --amount")

    @property
    def canvas(self) -> tuple[int, int]:
        return self._canvas

    def offset(self, index: int) -> tuple[int, int]:
        if self.direction != "dynamic":
            return (self.margins["left"], self.margins["top"])
        # OPD: the input slides from the left edge to the right edge of the canvas.
        span = self.canvas[1] - self.source.size[1]
        last = max(self.source.num_frames - 1, 1)
        return (round(index * span / last), 0)

    def source_box(self, index: int) -> tuple[int, int, int, int]:
        ox, oy = self.offset(index)
        return (ox, oy, ox + self.source.size[1], oy + self.source.size[0])

    def layer(self, window: Window, i: int, weight: float) -> Layer:
        region = (0, 0, self.canvas[1], self.canvas[0])
        image = geo.from_model(window.view, region, self.model_frame(window, i))
        distance = geo.box_distance(region, self.source_box(window.start + i))
        return Layer(region, image, (distance / self.band).clamp(max=1), weight)

    def base(self, index: int, frame: np.ndarray) -> np.ndarray:
        """The input on the canvas, its edges repeated into the margins (what the feathered
        seam blends from)."""
        ox, oy = self.offset(index)
        height, width = self.canvas
        rows = np.clip(np.arange(height) - oy, 0, frame.shape[0] - 1)
        cols = np.clip(np.arange(width) - ox, 0, frame.shape[1] - 1)
        return frame[rows][:, cols]

    def input_panel(self, index: int, frame: np.ndarray) -> np.ndarray:
        panel = np.full((*self.canvas, 3), 32, np.uint8)
        x0, y0, x1, y1 = self.source_box(index)
        panel[y0:y1, x0:x1] = frame
        return panel

    def plan(self) -> dict:
        plan = super().plan()
        plan["margins"] = self.margins
        return plan

    def settings(self) -> dict:
        return {"direction": self.direction, "amount": self.amount, **super().settings()}

    def result(self, out, runner, count) -> dict:
        return {**super().result(out, runner, count), "margins": self.margins, "views": self.summaries}


def parse_amount(amount: str | None, size: int) -> int:
    """--amount: pixels ('120') or percent of the input's size ('25%'), per grown side. Default 50%
    (the paper's geometry: the input fills the central half)."""
    text = "50%" if amount is None else str(amount).strip()
    try:
        value = float(text.rstrip("%"))
    except ValueError:
        raise UsageError(f"--amount {text!r} is not a size", "give pixels (120) or percent (25%)") from None
    pixels = value * size / 100 if text.endswith("%") else value
    if not math.isfinite(pixels) or pixels < 1:
        raise UsageError(f"--amount {text} is less than one pixel", "give pixels (120) or percent (25%)")
    if pixels > 2 * size:
        raise UsageError(f"--amount {text} grows a side by more than twice the input ({size} px)",
                         "outpaint in several passes")
    return round(pixels)


# ---------------------------------------------------------------------------- prediction


class PredictJob(Job):
    """Frame prediction: the input frames unchanged, then `frames` new ones, each model
    window conditioned on the last `cond_frames` frames so far."""

    def __init__(self, config: ModelConfig, source: Source, edit: EditOptions, frames: int | None = None,
                 cond_frames: int = 1, label: int | str | None = None):
        super().__init__(config, source, edit)
        T = config.num_frames
        if not 1 <= cond_frames < T:
            raise UsageError(f"--cond-frames must be in [1, {T - 1}] for this model, got {cond_frames}")
        self.per_window = T - cond_frames
        self.frames = self.per_window if frames is None else frames
        if not 1 <= self.frames <= MAX_NEW_FRAMES:
            raise UsageError(f"--frames must be in [1, {MAX_NEW_FRAMES}], got {self.frames}")
        if source.num_frames < cond_frames:
            raise UsageError(f"{source.path.name} has {source.num_frames} frames but --cond-frames {cond_frames} "
                             "were asked for")
        self.cond_frames, self.label = cond_frames, label
        self.task = "frame_prediction_c" if label is not None else "frame_prediction"
        self.view = geo.letterbox(source.size, config.resolution)

    @property
    def model_windows(self) -> int:
        return math.ceil(self.frames / self.per_window)

    def held_frames(self, batch: int) -> int:
        return self.cond_frames + 1

    def settings(self) -> dict:
        return {"frames": self.frames, "cond_frames": self.cond_frames, "class": self.label}

    def run(self, model: Magvit, output: Path | None, options: DecodeOptions, progress: Step | None = None) -> dict:
        runner = Runner(model, options, 1, progress)
        sampler = geo.Sampler(self.view, self.source.size)
        region = (0, 0, self.source.size[1], self.source.size[0])
        labels = model.labels(self.label, 1)
        history: list[np.ndarray] = []
        composite = self.edit.composite
        with Output(output, self.source.fps, self.source, self.edit) as out:
            count = 0
            for count, frame in enumerate(self.source.frames(), start=1):
                if composite:
                    out.write(frame, (frame, np.zeros(frame.shape[:2], np.uint8)))
                history = (history + [frame])[-self.cond_frames:]
            if count < self.cond_frames:
                raise InputError(f"{self.source.path} has {count} frames but --cond-frames {self.cond_frames} "
                                 "were asked for")
            seen = torch.stack([sampler.to_model(f) for f in history], dim=1).unsqueeze(0)  # [1, 3, c, H, W]
            blank = np.zeros((*self.source.size, 3), np.uint8)
            white = np.full(self.source.size, 255, np.uint8)
            left = self.frames
            while left > 0:  # each window: the last frames so far, then their last one repeated
                window = torch.cat([seen, seen[:, :, -1:].expand(-1, -1, self.per_window, -1, -1)], dim=2)
                new = model.run_task(self.task, window, labels, options, lambda step, steps: runner.progress(1),
                                     cond_frames=self.cond_frames, generator=runner.generator)[:, :, self.cond_frames:]
                runner.calls += 1
                seen = torch.cat([seen, new], dim=2)[:, :, -self.cond_frames:]
                for t in range(min(left, self.per_window)):
                    image = new[0, :, t].cpu()
                    if composite:
                        out.write(_to_uint8(geo.from_model(self.view, region, image)), (blank, white))
                    else:
                        out.write(_to_uint8(image))
                left -= self.per_window
        return self._result(out, runner, self.model_windows, new_frames=self.frames)

    def plan(self) -> dict:
        return self._plan(self.view, self.source.num_frames + self.frames, self.source.fps, self.model_windows,
                          cond_frames=self.cond_frames)


# ---------------------------------------------------------------------------- interpolation


class InterpolateJob(Job):
    """Frame interpolation: raise the frame rate by `factor` or to `fps`. Output frame k is at
    k / ratio input frames; input frames that land on the output timeline are kept as they
    are, the others come from the model window of their pair of input frames (the model's
    T - 2 in-between frames, the nearest one)."""

    task = "frame_interpolation"

    def __init__(self, config: ModelConfig, source: Source, edit: EditOptions, factor: int | None = None,
                 fps: str | Fraction | None = None):
        super().__init__(config, source, edit)
        T = config.num_frames
        if factor is not None and fps is not None:
            raise UsageError("give --factor or --fps, not both")
        if fps is not None:
            target = vio.as_fps(fps)
            ratio = target / source.fps
            if ratio <= 1:
                raise UsageError(f"--fps {fps} is not above the input's {float(source.fps):.3f} fps")
        else:
            factor = 2 if factor is None else factor
            if factor < 2:
                raise UsageError(f"--factor must be at least 2, got {factor}")
            ratio = Fraction(factor)
            target = source.fps * factor
        if ratio > T - 1:
            raise UsageError(f"the frame rate can grow at most {T - 1}x with this model ({T - 2} frames fit "
                             f"between two input frames), asked for {float(ratio):.3f}x")
        if source.num_frames < 2:
            raise InputError(f"{source.path} has a single frame: interpolation needs at least two")
        self.factor, self.target_fps = factor, fps
        self.ratio, self.fps = ratio, target
        self.view = geo.letterbox(source.size, config.resolution)
        pairs = [self.pair_outputs(i) for i in range(source.num_frames - 1)]
        self.model_pairs = sum(1 for p in pairs if self.needs_model(p))
        self.out_frames = math.floor((source.num_frames - 1) * ratio) + 1

    def pair_outputs(self, i: int) -> list[tuple[str, int]]:
        """Output frames at input-frame times in [i, i + 1): ('input', j) to copy input
        frame j, ('model', p) for position p of the pair's model window."""
        T = self.config.num_frames
        items = []
        for k in range(math.ceil(i * self.ratio), math.ceil((i + 1) * self.ratio)):
            x = Fraction(k) / self.ratio
            position = round((x - i) * (T - 1))  # half to even, exact on Fractions
            if position == 0:
                items.append(("input", i))
            elif position == T - 1:
                items.append(("input", i + 1))
            else:
                items.append(("model", position))
        return items

    def needs_model(self, items: list[tuple[str, int]]) -> bool:
        return not self.edit.composite or any(kind == "model" for kind, _ in items)

    @property
    def model_windows(self) -> int:
        return self.model_pairs

    def held_frames(self, batch: int) -> int:
        return 2 * (batch + 1)  # the pairs of one batch

    def settings(self) -> dict:
        return {"factor": self.factor, "fps": self.target_fps}

    def run(self, model: Magvit, output: Path | None, options: DecodeOptions, progress: Step | None = None) -> dict:
        runner = Runner(model, options, self.edit.batch, progress)
        sampler = geo.Sampler(self.view, self.source.size)
        region = (0, 0, self.source.size[1], self.source.size[0])
        composite = self.edit.composite
        T = self.config.num_frames
        queue: list[tuple[int, np.ndarray, np.ndarray, list]] = []

        with Output(output, self.fps, self.source, self.edit) as out:
            def flush() -> None:
                work = [q for q in queue if self.needs_model(q[3])]
                windows = {}
                if work:
                    firsts = torch.stack([sampler.to_model(q[1]) for q in work]).unsqueeze(2)
                    lasts = torch.stack([sampler.to_model(q[2]) for q in work]).unsqueeze(2)
                    # One model window per pair: the first keyframe, its copies, the last keyframe.
                    video = torch.cat([firsts, firsts.expand(-1, -1, T - 2, -1, -1), lasts], dim=2)

                    def call(generator, part, on_step):
                        return model.run_task(self.task, video[part], options=options, on_step=on_step,
                                              generator=generator)

                    for q, result in zip(work, runner(call, len(work))):
                        windows[q[0]] = result
                for i, first, last, items in queue:
                    for kind, value in items:
                        if not composite:
                            position = 0 if (kind == "input" and value == i) else (
                                T - 1 if kind == "input" else value)
                            out.write(_to_uint8(windows[i][:, position]))
                        elif kind == "input":
                            frame = first if value == i else last
                            out.write(frame, (frame, np.zeros(frame.shape[:2], np.uint8)))
                        else:
                            image = geo.from_model(self.view, region, windows[i][:, value])
                            white = np.full(self.source.size, 255, np.uint8)
                            out.write(_to_uint8(image), (first, white))
                queue.clear()

            previous = None
            count = 0
            for count, frame in enumerate(self.source.frames(), start=1):
                if previous is not None:
                    if sum(1 for q in queue if self.needs_model(q[3])) >= runner.batch:
                        flush()
                    i = count - 2
                    queue.append((i, previous, frame, self.pair_outputs(i)))
                previous = frame
            if count < 2:
                raise InputError(f"{self.source.path} has a single frame: interpolation needs at least two")
            if ((count - 1) * self.ratio).denominator == 1:  # the last input frame is on the timeline
                queue[-1][3].append(("input", count - 1))
            flush()
        return self._result(out, runner, self.model_pairs, factor=str(self.ratio))

    def plan(self) -> dict:
        return self._plan(self.view, self.out_frames, self.fps, math.ceil(self.model_pairs / (self.edit.batch or 1)),
                          factor=str(self.ratio))
