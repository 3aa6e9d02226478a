"""A MAGVIT model: the 3D-VQ tokenizer and the COMMIT transformer, and one model window
of any of the ten tasks through both (`run_task`).

The pipeline (spec §1): condition pixels -> padded condition video -> tokenizer ->
condition tokens; prefix (task, class) plus a canvas of condition tokens and MASKs ->
12 steps of non-autoregressive decoding -> codes -> detokenizer -> frames in [0, 1].
Videos are float tensors [B, 3, T, H, W] in [0, 1] at exactly the model's clip size;
`magvit_cli.edit` runs the tasks on videos of any size and length.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from typing import Callable

import torch
import torch.nn as nn

from . import decoding, tasks
from .composite import paste_known
from .decoding import DecodeOptions
from .errors import ModelError, UnsupportedError, UsageError
from .tokenizer import TokenizerConfig, VQTokenizer
from .transformer import Transformer, TransformerConfig

FORMAT_VERSION = 1


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


class Magvit(nn.Module):
    def __init__(self, config: ModelConfig, source: str = "in memory"):
        super().__init__()
        self.config = config
        self.source = source  # where the weights came from, for messages
        self.tokenizer = VQTokenizer(config.tokenizer)
        self.transformer = Transformer(config.transformer) if config.transformer is not None else None

    @property
    def device(self) -> torch.device:
        return self.tokenizer.quantizer.codebook.device

    def encode(self, video: torch.Tensor, dtype: str = "auto") -> torch.Tensor:
        """Video [B, 3, T, H, W] in [0, 1] -> token grid [B, t, h, w]. `dtype` as in
        DecodeOptions ("auto": bfloat16 convolutions where the device runs them natively)."""
        with torch.inference_mode(), decoding.autocast(self.device, dtype):
            return self.tokenizer.encode(video.to(self.device, torch.float32))

    def decode(self, codes: torch.Tensor, dtype: str = "auto") -> torch.Tensor:
        """Token grid [B, t, h, w] -> video [B, 3, T, H, W] in float32, clipped to [0, 1]."""
        with torch.inference_mode(), decoding.autocast(self.device, dtype):
            return self.tokenizer.decode(codes.to(self.device)).float().clamp(0, 1)

    def run_task(self, task: str, video: torch.Tensor | None, labels: torch.Tensor | None = None,
                 options: DecodeOptions | None = None, on_step: Callable[[int, int], None] | None = None,
                 cond_frames: int = 1, composite: bool = True, keep: torch.Tensor | None = None,
                 padding: str | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
        """One model window of `task` on `video` [B, 3, T, H, W] at exactly the model's
        clip size (None for generation: `labels` gives the batch). With `composite`, the
        condition pixels are pasted back after decoding (spec §8.5) and the made-up ones
        shifted to meet them without a seam (composite.paste_known).

        `keep` ([B or 1, 1, T|1, H|1, W|1] bool, True = known) replaces the task's own
        condition region by any pixel mask: condition tokens where a latent cell holds a
        known pixel (tasks.condition_from_mask), unknown pixels filled by `padding`
        (default: the task's). `generator` carries the random state across calls
        (default: a fresh one from `options.seed`)."""
        self.check_task(task, force=True)  # a tokenizer-only model cannot run any task
        options = options or DecodeOptions()
        options.check()
        config = self.config
        B = labels.shape[0] if video is None else video.shape[0]
        latent = config.latent_shape
        N = latent[0] * latent[1] * latent[2]
        generator = generator or decoding.make_generator(self.device, options.seed)
        with torch.inference_mode():
            if video is not None:
                video = video.to(self.device, torch.float32)
                if keep is not None:
                    cond = tasks.condition_from_mask(video, keep, padding or tasks.TASKS[task].padding, latent)
                else:
                    cond = self.condition(task, video, cond_frames)
                cond_tokens = self.encode(cond.video, options.dtype).reshape(B, N)
                cond_mask = cond.latent_mask.expand(B, *latent).reshape(B, N)
            else:
                cond = None
                cond_tokens = torch.zeros(B, N, dtype=torch.long, device=self.device)
                cond_mask = torch.zeros(B, N, dtype=torch.bool, device=self.device)
            labels = labels.to(self.device) if labels is not None else None
            prefix = tasks.prefix_tokens(config.transformer, task, labels, batch_size=B)
            uncond = (tasks.uncond_prefix_tokens(config.transformer, task, config.tasks, B)
                      if options.guidance > 0 else None)
            codes = decoding.decode(self.transformer, prefix, cond_tokens, cond_mask, steps=options.steps,
                                    schedule=options.schedule, choice_temperature=options.choice_temperature,
                                    temperature=options.temperature, guidance=options.guidance,
                                    uncond_prefix=uncond, generator=generator, dtype=options.dtype,
                                    on_step=on_step)
            out = self.decode(codes.reshape(B, *latent), options.dtype)
            if composite and cond is not None:
                out = paste_known(out, video, cond.video_mask)
        return out

    def condition(self, task: str, video: torch.Tensor, cond_frames: int = 1) -> tasks.Condition:
        """The condition `run_task` gives the model for `video` at the model's clip size:
        padded video, known pixels, condition-token positions."""
        latent = self.config.latent_shape
        return tasks.condition(task, video, latent, cond_frames=cond_frames,
                               cond_latent_frames=math.ceil(cond_frames * latent[0] / self.config.num_frames))

    def check_task(self, task: str, force: bool = False) -> None:
        """Refuse a task this model cannot run, or (unless `force`) was not trained for."""
        if self.transformer is None:
            raise UnsupportedError(f"model {self.source} is tokenizer-only: it cannot run {tasks.TASKS[task].short}",
                                   hint="use a model with a transformer")
        if task not in self.config.tasks and not force:
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

    def labels(self, label: int | str | None, batch: int) -> torch.Tensor | None:
        """`batch` copies of the class id of `label` (None: no class)."""
        if label is None:
            return None
        return torch.full((batch,), self.class_id(label), dtype=torch.long)
