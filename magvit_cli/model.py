"""A MAGVIT model: the 3D-VQ tokenizer, the COMMIT transformer, and the ten
tasks as methods.

Every task runs the same pipeline (spec §1): condition pixels -> padded
condition video -> tokenizer -> condition tokens; prefix (task, class) plus a
canvas of condition tokens and MASKs -> 12 steps of non-autoregressive
decoding -> codes -> detokenizer -> frames clipped to [0, 1].

Methods take and return videos as float tensors [B, 3, T, H, W] in [0, 1].
Inputs of another size are resized to the model's resolution (aspect kept,
centre crop); `last_notices` says when that happened.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from typing import Callable, Iterator

import torch
import torch.nn as nn
import torch.nn.functional as F

from . import decoding, tasks
from .errors import ModelError, UnsupportedError, UsageError
from .tokenizer import TokenizerConfig, VQTokenizer
from .transformer import Transformer, TransformerConfig

FORMAT_VERSION = 1

OUTPAINT_DIRECTIONS = ("all", "horizontal", "vertical", "left", "right", "up", "down", "dynamic")
# direction -> official task: "horizontal" grows the canvas left and right, so the
# known region is the central vertical strip (outpainting_v), and so on.
OUTPAINT_TASK = {
    "all": "outpainting_c",
    "horizontal": "outpainting_v",
    "left": "outpainting_v",
    "right": "outpainting_v",
    "vertical": "outpainting_h",
    "up": "outpainting_h",
    "down": "outpainting_h",
    "dynamic": "outpainting_dv",
}
INPAINT_TASK = {"box": "inpainting_c", "dynamic-box": "inpainting_dv"}


@dataclass
class ModelConfig:
    tokenizer: TokenizerConfig
    transformer: TransformerConfig | None = None
    num_frames: int = 16
    resolution: tuple[int, int] = (64, 64)  # (height, width) of the training clips
    tasks: list[str] = field(default_factory=list)
    class_names: list[str] = field(default_factory=list)
    fps: float = 8.0  # frame rate of generated clips when there is no input video
    training_data: str = ""
    format_version: int = FORMAT_VERSION

    @property
    def latent_shape(self) -> tuple[int, int, int]:
        """Token grid of one clip: every tokenizer level but the last halves H and
        W, and T where its temporal flag is set."""
        t_factor, s_factor = self.downsampling
        height, width = self.resolution
        return self.num_frames // t_factor, height // s_factor, width // s_factor

    @property
    def downsampling(self) -> tuple[int, int]:
        """(temporal, spatial) down-sampling factors of the tokenizer."""
        levels = len(self.tokenizer.channel_multipliers) - 1
        return 2 ** sum(bool(f) for f in self.tokenizer.temporal_downsample[:levels]), 2 ** levels

    def to_dict(self) -> dict:
        return {
            "format_version": self.format_version,
            "num_frames": self.num_frames,
            "resolution": list(self.resolution),
            "fps": self.fps,
            "tasks": list(self.tasks),
            "class_names": list(self.class_names),
            "training_data": self.training_data,
            "tokenizer": self.tokenizer.to_dict(),
            "transformer": self.transformer.to_dict() if self.transformer is not None else None,
        }

    @classmethod
    def from_dict(cls, d: dict) -> "ModelConfig":
        """Build from config.json, checking every value before anything is allocated."""
        if not isinstance(d, dict):
            raise ModelError("config.json must hold a JSON object")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ModelError(f"config.json has unknown key {unknown[0]!r}")
        version = d.get("format_version", FORMAT_VERSION)
        if not isinstance(version, int) or version < 1:
            raise ModelError(f"config.json: format_version must be a positive integer, got {version!r}")
        if version > FORMAT_VERSION:
            raise ModelError(f"config.json has format version {version}; this magvit reads up to {FORMAT_VERSION}",
                             hint="upgrade magvit-cli")
        if not isinstance(d.get("tokenizer"), dict):
            raise ModelError("config.json: 'tokenizer' must be an object")
        tokenizer = TokenizerConfig.from_dict(d["tokenizer"])
        transformer = d.get("transformer")
        if transformer is not None and not isinstance(transformer, dict):
            raise ModelError("config.json: 'transformer' must be an object or null")
        transformer = TransformerConfig.from_dict(transformer) if transformer is not None else None

        num_frames = _int(d, "num_frames", 16, 1, 1024)
        resolution = d.get("resolution", [64, 64])
        if (not isinstance(resolution, (list, tuple)) or len(resolution) != 2
                or not all(isinstance(v, int) and not isinstance(v, bool) and 8 <= v <= 8192 for v in resolution)):
            raise ModelError(f"config.json: resolution must be [height, width] with 8..8192 each, got {resolution!r}")
        fps = d.get("fps", 8.0)
        if not isinstance(fps, (int, float)) or isinstance(fps, bool) or not 0 < fps <= 1000:
            raise ModelError(f"config.json: fps must be a number in (0, 1000], got {fps!r}")
        task_list = d.get("tasks", [])
        if not isinstance(task_list, list) or not all(isinstance(t, str) for t in task_list):
            raise ModelError("config.json: tasks must be a list of task names")
        bad = [t for t in task_list if t not in tasks.TASKS]
        if bad:
            raise ModelError(f"config.json: unknown task {bad[0]!r}", hint=f"known tasks: {', '.join(tasks.TASKS)}")
        class_names = d.get("class_names", [])
        if (not isinstance(class_names, list) or len(class_names) > 100_000
                or not all(isinstance(c, str) for c in class_names)):
            raise ModelError("config.json: class_names must be a list of strings")
        training_data = d.get("training_data", "")
        if not isinstance(training_data, str):
            raise ModelError("config.json: training_data must be a string")
        config = cls(tokenizer=tokenizer, transformer=transformer, num_frames=num_frames,
                     resolution=(resolution[0], resolution[1]), tasks=task_list, class_names=class_names,
                     fps=float(fps), training_data=training_data, format_version=version)
        config.check()
        return config

    def check(self) -> None:
        """Cross-checks between the two stages."""
        t, h, w = self.latent_shape
        height, width = self.resolution
        if t < 1 or h < 1 or w < 1:
            raise ModelError(f"clip {self.num_frames}x{height}x{width} is too small for the tokenizer")
        t_factor, s_factor = self.downsampling
        if self.num_frames % t_factor or height % s_factor or width % s_factor:
            raise ModelError(f"clip {self.num_frames}x{height}x{width} does not divide into the tokenizer's "
                             f"{t}x{h}x{w} grid", hint="use sizes divisible by the down-sampling factors")
        if self.transformer is None:
            if self.tasks:
                raise ModelError("config.json lists tasks but has no transformer")
            return
        if self.transformer.codebook_size != self.tokenizer.codebook_size:
            raise ModelError(f"transformer codebook_size {self.transformer.codebook_size} differs from the "
                             f"tokenizer's {self.tokenizer.codebook_size}")
        if tuple(self.transformer.latent_shape) != (t, h, w):
            raise ModelError(f"transformer latent_shape {list(self.transformer.latent_shape)} does not match "
                             f"the tokenizer's {[t, h, w]} for {self.num_frames}x{self.resolution[0]}x{self.resolution[1]} clips")
        if self.class_names and len(self.class_names) != self.transformer.num_classes:
            raise ModelError(f"config.json names {len(self.class_names)} classes but the transformer has "
                             f"{self.transformer.num_classes}")


def _int(d: dict, key: str, default: int, lo: int, hi: int) -> int:
    value = d.get(key, default)
    if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
        raise ModelError(f"config.json: {key} must be an integer in [{lo}, {hi}], got {value!r}")
    return value


@dataclass
class DecodeOptions:
    """Settings of COMMIT decoding (spec §8.4 defaults)."""

    steps: int = 12
    schedule: str = "cosine"
    choice_temperature: float = 4.5
    temperature: float = 1.0
    guidance: float = 0.0
    seed: int | None = None
    dtype: str = "auto"  # "auto" | "float32" | "bfloat16"

    def check(self) -> None:
        if not 1 <= self.steps <= 1024:
            raise UsageError(f"--steps must be in [1, 1024], got {self.steps}")
        if not math.isfinite(self.temperature) or self.temperature <= 0:
            raise UsageError(f"the sampling temperature must be a positive number, got {self.temperature}")
        if not math.isfinite(self.choice_temperature) or self.choice_temperature < 0:
            raise UsageError(f"--temperature (the choice temperature) must be a number >= 0, "
                             f"got {self.choice_temperature}")
        if self.seed is not None and not 0 <= self.seed < 2**63:
            raise UsageError(f"--seed must be in [0, 2**63), got {self.seed}")
        if not math.isfinite(self.guidance) or self.guidance < 0:
            raise UsageError(f"--guidance must be >= 0, got {self.guidance}")
        if self.dtype not in ("auto", "float32", "bfloat16"):
            raise UsageError(f"--dtype must be auto, float32 or bfloat16, got {self.dtype}")
        decoding.mask_ratio(self.schedule, 0.5, 16)  # raises on an unknown schedule


def seamless(output: torch.Tensor, video: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """`output` [B, 3, T, H, W] shifted, frame by frame, by the difference `video - output`
    over the known pixels (`keep`, broadcastable to [B, 1, T, H, W], True = known), carried
    smoothly into the unknown ones. The tokenizer never reproduces the known pixels exactly
    (a colour cast, a blur); without this, pasting them back leaves a seam and the pixels the
    model made up keep the cast. Frames with no known pixel are left as they are. Not in the
    official code, which only pastes the known pixels back (spec §8.5)."""
    B, C, T, H, W = output.shape
    known = keep.expand(B, 1, T, H, W).to(output.dtype)

    def per_frame(x: torch.Tensor) -> torch.Tensor:
        return x.transpose(1, 2).reshape(B * T, x.shape[1], H, W)

    shift = pull_push(per_frame((video - output) * known), per_frame(known))
    return (output + shift.view(B, T, C, H, W).transpose(1, 2)).clamp(0, 1)


def pad_frames(video: torch.Tensor, length: int) -> torch.Tensor:
    """`video` [B, C, T, H, W] padded to `length` frames by repeating its last frame (the
    last model window of a video)."""
    missing = length - video.shape[2]
    if missing <= 0:
        return video
    return torch.cat([video, video[:, :, -1:].expand(-1, -1, missing, -1, -1)], dim=2)


def pull_push(values: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Fill images [N, C, H, W] where `weights` [N, 1, H, W] (0 = unknown, 1 = known; `values`
    already multiplied by them) is 0, from a weight-normalised image pyramid: each unknown
    pixel takes the average of the nearest known ones at the finest scale that has any.
    Known pixels keep their value; an image with no known pixel comes back as zeros."""
    levels = [(values, weights)]
    while min(levels[-1][0].shape[-2:]) > 1:
        v, w = levels[-1]
        levels.append((F.avg_pool2d(v, 2, ceil_mode=True), F.avg_pool2d(w, 2, ceil_mode=True)))
    v, w = levels[-1]
    filled = v / w.clamp_min(1e-8)
    for v, w in reversed(levels[:-1]):
        coarse = F.interpolate(filled, size=v.shape[-2:], mode="bilinear", align_corners=False)
        filled = torch.where(w > 0, v + (1 - w) * coarse, coarse)  # v is the weighted value (own * w)
    return filled


class Magvit(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        self.tokenizer = VQTokenizer(config.tokenizer)
        self.transformer = Transformer(config.transformer) if config.transformer is not None else None
        self.source = "in memory"
        self.last_notices: list[str] = []

    @property
    def device(self) -> torch.device:
        return self.tokenizer.quantizer.codebook.device

    # ------------------------------------------------------------------ tasks

    def predict(self, video: torch.Tensor, frames: int | None = None, cond_frames: int = 1,
                label: int | str | None = None, options: DecodeOptions | None = None,
                on_step: Callable[[int, int], None] | None = None,
                generator: torch.Generator | None = None) -> torch.Tensor:
        """Frame prediction (FP; CFP with `label`): continue `video` by `frames`
        new frames, conditioning each model window on the last `cond_frames`
        frames seen so far. Returns only the new frames."""
        return torch.cat(list(self.predict_windows(video, frames, cond_frames, label, options, on_step,
                                                   generator)), dim=2)

    def predict_windows(self, video: torch.Tensor, frames: int | None = None, cond_frames: int = 1,
                        label: int | str | None = None, options: DecodeOptions | None = None,
                        on_step: Callable[[int, int], None] | None = None,
                        generator: torch.Generator | None = None) -> Iterator[torch.Tensor]:
        """`predict` one model window at a time: yields each window's new frames
        (the last window trimmed), so long predictions stream."""
        task = "frame_prediction_c" if label is not None else "frame_prediction"
        self._require(task)
        T = self.config.num_frames
        if not 1 <= cond_frames < T:
            raise UsageError(f"--cond-frames must be in [1, {T - 1}] for this model, got {cond_frames}")
        per_window = T - cond_frames
        frames = per_window if frames is None else frames
        if frames < 1:
            raise UsageError(f"--frames must be >= 1, got {frames}")
        video = self._fit(video)
        if video.shape[2] < cond_frames:
            raise UsageError(f"the clip has {video.shape[2]} frames but {cond_frames} condition frames were asked for")
        labels = self._labels(label, video.shape[0])
        generator = generator or self._generator(options)

        def windows() -> Iterator[torch.Tensor]:
            history = video[:, :, -cond_frames:]
            left = frames
            while left > 0:
                window = torch.cat([history, history[:, :, -1:].expand(-1, -1, per_window, -1, -1)], dim=2)
                out = self._run(task, window, labels, options, on_step, cond_frames=cond_frames, generator=generator)
                new = out[:, :, cond_frames:]
                history = torch.cat([history, new], dim=2)[:, :, -cond_frames:]
                yield new[:, :, :left]
                left -= per_window

        return windows()

    def interpolate(self, first: torch.Tensor, last: torch.Tensor, options: DecodeOptions | None = None,
                    on_step: Callable[[int, int], None] | None = None,
                    generator: torch.Generator | None = None) -> torch.Tensor:
        """Frame interpolation (FI): a full model window from keyframe `first`
        to keyframe `last` (each [B, 3, H, W]); the frames in between are new."""
        self._require("frame_interpolation")
        T = self.config.num_frames
        first, last = self._fit(first.unsqueeze(2)), self._fit(last.unsqueeze(2))
        window = torch.cat([first, first.expand(-1, -1, T - 2, -1, -1), last], dim=2)
        return self._run("frame_interpolation", window, None, options, on_step, generator=generator)

    def outpaint(self, video: torch.Tensor, direction: str = "all", options: DecodeOptions | None = None,
                 on_step: Callable[[int, int], None] | None = None) -> torch.Tensor:
        """Outpainting (OPC / OPV / OPH / OPD). The input fills the model's known
        region and the rest of the canvas is generated:
          all        -> OPC: input in the central half of both axes, canvas 2x wide and high
          horizontal -> OPV: input in the central vertical strip, canvas 2x wide
          vertical   -> OPH: input in the central horizontal band, canvas 2x high
          left/right -> OPV, keeping the input and only the new left/right margin (1.5x wide)
          up/down    -> OPH, keeping the input and only the new top/bottom margin (1.5x high)
          dynamic    -> OPD: input in a vertical strip that moves left to right
        Returns the canvas at the model's resolution (cropped for left/right/up/down)."""
        if direction not in OUTPAINT_TASK:
            raise UsageError(f"unknown outpainting direction {direction!r}",
                             hint=f"use one of {', '.join(OUTPAINT_DIRECTIONS)}")
        task = OUTPAINT_TASK[direction]
        self._require(task)
        H, W = self.config.resolution
        known_h = H // 2 if task == "outpainting_c" or task == "outpainting_h" else H
        known_w = W // 2 if task != "outpainting_h" else W
        clip = self._fit(video, (known_h, known_w))
        canvas = self._place(task, clip)
        out = self._windows(task, canvas, options, on_step)
        q_h, q_w = H // 4, W // 4
        crop = {
            "left": (slice(None), slice(0, W - q_w)),
            "right": (slice(None), slice(q_w, W)),
            "up": (slice(0, H - q_h), slice(None)),
            "down": (slice(q_h, H), slice(None)),
        }.get(direction)
        return out[..., crop[0], crop[1]] if crop else out

    def inpaint(self, video: torch.Tensor, mask: str = "box", options: DecodeOptions | None = None,
                on_step: Callable[[int, int], None] | None = None) -> torch.Tensor:
        """Inpainting (IPC `box`: a central hole of half the width and height;
        IPD `dynamic-box`: the same hole moving left to right)."""
        if mask not in INPAINT_TASK:
            raise UsageError(f"unknown inpainting mask {mask!r}", hint=f"use one of {', '.join(INPAINT_TASK)}")
        task = INPAINT_TASK[mask]
        self._require(task)
        return self._windows(task, self._fit(video), options, on_step)

    def generate(self, label: int | str, count: int = 1, options: DecodeOptions | None = None,
                 on_step: Callable[[int, int], None] | None = None) -> torch.Tensor:
        """Class-conditional generation (CG): `count` clips of class `label`."""
        self._require("full_generation")
        if not 1 <= count <= 10_000:
            raise UsageError(f"--count must be in [1, 10000], got {count}")
        labels = self._labels(label, count)
        return self._run("full_generation", None, labels, options, on_step)

    # -------------------------------------------------------------- pipeline

    def encode(self, video: torch.Tensor) -> torch.Tensor:
        """Video [B, 3, T, H, W] in [0, 1] -> token grid [B, t, h, w]."""
        with torch.inference_mode():
            return self.tokenizer.encode(video.to(self.device, torch.float32))

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """Token grid [B, t, h, w] -> video [B, 3, T, H, W] clipped to [0, 1]."""
        with torch.inference_mode():
            return self.tokenizer.decode(codes.to(self.device)).clamp(0, 1)

    def run_task(self, task: str, video: torch.Tensor | None, labels: torch.Tensor | None = None,
                 options: DecodeOptions | None = None, on_step: Callable[[int, int], None] | None = None,
                 cond_frames: int = 1, composite: bool = True, keep: torch.Tensor | None = None,
                 padding: str | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
        """One model window of `task` on `video` [B, 3, T, H, W] at exactly the
        model's clip size (None for generation). With `composite`, condition
        pixels are pasted back after decoding (spec §8.5) and the made-up ones
        shifted to meet them without a seam (`seamless`).

        `keep` ([B or 1, 1, T|1, H|1, W|1] bool, True = known) replaces the task's
        own condition region by any pixel mask: condition tokens where a latent
        cell holds a known pixel (tasks.condition_from_mask), unknown pixels filled
        by `padding` (default: the task's). `generator` carries the random state
        across calls (default: a fresh one from `options.seed`)."""
        self._require(task)
        return self._run(task, video, labels, options, on_step, cond_frames=cond_frames, composite=composite,
                         keep=keep, padding=padding, generator=generator)

    def condition(self, task: str, video: torch.Tensor, cond_frames: int = 1) -> tasks.Condition:
        """The condition `run_task` gives the model for `video` at the model's clip size:
        padded video, known pixels, condition-token positions."""
        latent = self.config.latent_shape
        return tasks.condition(task, video, latent, cond_frames=cond_frames,
                               cond_latent_frames=math.ceil(cond_frames * latent[0] / self.config.num_frames))

    def _generator(self, options: DecodeOptions | None) -> torch.Generator:
        generator = torch.Generator(device=self.device)
        if options is not None and options.seed is not None:
            generator.manual_seed(options.seed)
        else:
            generator.seed()
        return generator

    def _run(self, task, video, labels, options, on_step, cond_frames=1, composite=True, keep=None, padding=None,
             generator=None) -> torch.Tensor:
        options = options or DecodeOptions()
        options.check()
        config, transformer = self.config, self.transformer
        B = labels.shape[0] if video is None else video.shape[0]
        latent = config.latent_shape
        N = latent[0] * latent[1] * latent[2]
        generator = generator or self._generator(options)
        with torch.inference_mode():
            if video is not None:
                video = video.to(self.device, torch.float32)
                if keep is not None:
                    cond = tasks.condition_from_mask(video, keep, padding or tasks.TASKS[task].padding, latent)
                else:
                    cond = self.condition(task, video, cond_frames)
                cond_tokens = self.tokenizer.encode(cond.video).reshape(B, N)
                cond_mask = cond.latent_mask.expand(B, *latent).reshape(B, N)
            else:
                cond = None
                cond_tokens = torch.zeros(B, N, dtype=torch.long, device=self.device)
                cond_mask = torch.zeros(B, N, dtype=torch.bool, device=self.device)
            labels = labels.to(self.device) if labels is not None else None
            prefix = tasks.prefix_tokens(config.transformer, task, labels, batch_size=B)
            uncond = (tasks.uncond_prefix_tokens(config.transformer, task, config.tasks, B)
                      if options.guidance > 0 else None)
            codes = decoding.decode(transformer, prefix, cond_tokens, cond_mask, steps=options.steps,
                                    schedule=options.schedule, choice_temperature=options.choice_temperature,
                                    temperature=options.temperature, guidance=options.guidance,
                                    uncond_prefix=uncond, generator=generator, dtype=options.dtype,
                                    on_step=on_step)
            out = self.tokenizer.decode(codes.reshape(B, *latent)).float().clamp(0, 1)
            if composite and cond is not None:
                out = torch.where(cond.video_mask, video, seamless(out, video, cond.video_mask))
        return out

    def _windows(self, task, video, options, on_step) -> torch.Tensor:
        """Run a whole-clip task on consecutive model windows; the last window is
        padded by repeating its final frame and trimmed afterwards."""
        T = self.config.num_frames
        length = video.shape[2]
        generator = self._generator(options)
        outs = []
        for start in range(0, length, T):
            window = video[:, :, start:start + T]
            n = window.shape[2]
            outs.append(self._run(task, pad_frames(window, T), None, options, on_step, generator=generator)[:, :, :n])
        return torch.cat(outs, dim=2)

    def _place(self, task: str, clip: torch.Tensor) -> torch.Tensor:
        """Put `clip` where `task`'s known region is on a canvas of the model's size."""
        H, W = self.config.resolution
        B, C, T, h, w = clip.shape
        canvas = clip.new_zeros(B, C, T, H, W)
        known = tasks.condition(task, canvas[:, :, : self.config.num_frames], self.config.latent_shape).video_mask
        known = known.expand(1, 1, self.config.num_frames, H, W)[0, 0]
        for f in range(T):
            rows, cols = known[f % self.config.num_frames].nonzero(as_tuple=True)
            top, left = int(rows.min()), int(cols.min())
            canvas[:, :, f, top:top + h, left:left + w] = clip[:, :, f]
        return canvas

    # --------------------------------------------------------------- helpers

    def _require(self, task: str) -> None:
        if self.transformer is None:
            raise UnsupportedError(f"model {self.source} is tokenizer-only: it cannot run {tasks.TASKS[task].short}",
                                   hint="use a model with a transformer")
        if task not in self.config.tasks and not getattr(self, "force", False):
            trained = ", ".join(tasks.TASKS[t].short for t in self.config.tasks) or "none"
            raise UnsupportedError(f"model {self.source} was not trained for {tasks.TASKS[task].short} "
                                   f"({task}); it was trained for: {trained}",
                                   hint="use --force to try anyway")

    def class_id(self, label: int | str) -> int:
        """A class id from an integer, a numeric string or a class name."""
        num_classes = self.config.transformer.num_classes if self.config.transformer else 0
        if num_classes == 0:
            raise UnsupportedError(f"model {self.source} has no classes")
        names = self.config.class_names
        if isinstance(label, str) and not label.lstrip("-").isdigit():
            if label in names:
                return names.index(label)
            lowered = [n.lower() for n in names]
            if label.lower() in lowered:
                return lowered.index(label.lower())
            raise UsageError(f"unknown class {label!r}", hint=f"classes: {', '.join(names[:30])}")
        value = int(label)
        if not 0 <= value < num_classes:
            raise UsageError(f"class id {value} is out of range: this model has classes 0..{num_classes - 1}")
        return value

    def _labels(self, label, batch: int) -> torch.Tensor | None:
        if label is None:
            return None
        return torch.full((batch,), self.class_id(label), dtype=torch.long)

    def _fit(self, video: torch.Tensor, size: tuple[int, int] | None = None) -> torch.Tensor:
        """Resize (aspect kept) and centre-crop frames to `size` (default: the model's resolution)."""
        if video.dim() != 5 or video.shape[1] != 3:
            raise UsageError(f"expected a video tensor [B, 3, T, H, W], got shape {list(video.shape)}")
        H, W = size or self.config.resolution
        B, C, T, h, w = video.shape
        if (h, w) == (H, W):
            return video
        scale = max(H / h, W / w)
        rh, rw = max(H, round(h * scale)), max(W, round(w * scale))
        frames = video.permute(0, 2, 1, 3, 4).reshape(B * T, C, h, w).float()
        frames = F.interpolate(frames, size=(rh, rw), mode="bilinear", antialias=True, align_corners=False)
        top, left = (rh - H) // 2, (rw - W) // 2
        frames = frames[:, :, top:top + H, left:left + W].clamp(0, 1)
        note = f"resized {w}x{h} to {rw}x{rh}" + (f" and cropped to {W}x{H}" if (rh, rw) != (H, W) else "")
        if note not in self.last_notices:
            self.last_notices.append(note)
        return frames.reshape(B, T, C, H, W).permute(0, 2, 1, 3, 4)
