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
from typing import Callable

import torch
import torch.nn as nn

from . import decoding, tasks
from .composite import paste_known
from .config import ModelConfig
from .decoding import DecodeOptions
from .errors import UnsupportedError, UsageError
from .tokenizer import VQTokenizer
from .transformer import Transformer


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
