"""Training both MAGVIT stages (spec §9), on one CPU or many GPUs under torchrun.

Stage 1 trains the 3D-VQ tokenizer as a VQGAN (`videogvt/trainers/vqgan_trainer.py`):
L2 reconstruction + quantizer losses + 0.1 · non-saturating GAN loss against the 3D
StyleGAN discriminator, R1 penalty (γ = 10), optional LeCam and perceptual losses,
Adam(β1 = 0, β2 = 0.99) for both networks updated from the same forward pass, an EMA
of the generator (0.999) whose weights are the tokenizer that gets saved.

Stage 2 trains the transformer with COMMIT (`videogvt/trainers/maskgvt_trainer.py`):
per step one task of a fixed permutation, condition video and tokens on the fly from
the frozen tokenizer, one cosine mask ratio per step, `cond->input` corruption,
label-smoothed cross-entropy on every latent position, AdamW(0.9, 0.96) with weight
decay 0.045 on Linear weights only, gradient clipping at 1.0, warm-up + cosine LR.

How this file reads, top to bottom: the two entry points; `_train`, the one training loop
both stages share; `summary_lines`; each stage as an object that owns its networks and
optimisers (`TokenizerStage`, `TransformerStage`: one training step, the checkpoint, the
previews, the summary); then the mechanics (schedule, processes, data order, run folder,
progress). The settings and presets are in `train_config.py`.

A run folder holds the model in the project format (model.safetensors + config.json,
loadable with `magvit ... --model DIR`), `training_state.pt` (weights, optimiser
states, EMA, step: everything needed to resume exactly), `metrics.jsonl` and `previews/`.
No random-generator state needs saving: all randomness of step s (data order, clip
windows, crops, flips, mask ratio and scores, dropout) is derived from (seed, s), so a
resumed run repeats the uninterrupted one step for step.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import hashlib
import inspect
import json
import math
import os
import pickle
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset, Sampler, Subset

from . import tasks as task_lib
from .checkpoint import check_sizes, save_model
from .config import ModelConfig, TransformerConfig
from .data import TokenCache, VideoClipDataset, seed_for, worker_init
from .discriminator import DiscriminatorConfig, StyleGANDiscriminator
from .errors import Interrupted, ModelError, OutputError, UsageError
from .metrics import psnr
from .model import Magvit
from .tokenizer import VQTokenizer
from .train_config import MAX_BATCH_VOXELS, TokenizerTrainConfig, TransformerTrainConfig, validate

STATE_FILE = "training_state.pt"
METRICS_FILE = "metrics.jsonl"
PREVIEW_CLIPS = 4  # fixed clips (the first videos' centre clips) for previews, PSNR and the eval loss


# =============================================================== entry points

def _no_empty_run_folder(train_fn):
    """A run that fails before writing anything leaves no empty run folder behind."""
    signature = inspect.signature(train_fn)

    @functools.wraps(train_fn)
    def run(*args, **kwargs):
        out_dir = Path(signature.bind(*args, **kwargs).arguments["out_dir"])
        existed = out_dir.exists()
        try:
            return train_fn(*args, **kwargs)
        except BaseException:
            if not existed and out_dir.is_dir() and not any(out_dir.iterdir()):
                out_dir.rmdir()
            raise

    return run


@_no_empty_run_folder
def train_tokenizer(config: TokenizerTrainConfig, data: str | Path | Dataset, out_dir: str | Path, *,
                    resume: bool = False, quiet: bool = False, device: str | torch.device | None = None,
                    init: str | Path | None = None, stop_at: int | None = None) -> dict:
    """Train the tokenizer (stage 1) on `data` (folder, manifest or Dataset) into `out_dir`;
    with `init` (a model folder), start from that model's tokenizer to fine-tune it.
    `stop_at`: save and return at this step, as if interrupted there (the learning-rate
    schedule still runs to config.steps); resume to go on.

    Returns a summary: steps done, last logged losses, reconstruction PSNR of the EMA
    tokenizer on a few fixed clips at the start and at the end (and of the raw
    generator, which leads the EMA early on), clips/s.
    """
    runtime = _runtime(config, device)
    out_dir = Path(out_dir)
    saved = _open_run(out_dir, "tokenizer", config, resume, init, runtime)
    stage = TokenizerStage(config, data, runtime, saved, init)
    return _train(stage, out_dir, saved, quiet, stop_at)


@_no_empty_run_folder
def train_transformer(config: TransformerTrainConfig, data: str | Path | Dataset, tokenizer_dir: str | Path,
                      out_dir: str | Path, *, resume: bool = False, quiet: bool = False,
                      token_cache: str | Path | None = None, device: str | torch.device | None = None,
                      init: str | Path | None = None) -> dict:
    """Train the transformer (stage 2) on top of the frozen tokenizer of the model
    folder `tokenizer_dir`; writes a complete model (tokenizer + transformer, tasks
    and class names in config.json) into `out_dir`.

    `init`: a model folder whose transformer the new run starts from instead of random
    weights (fine-tuning); it must have the same tokenizer, transformer shape, tasks and classes.

    `token_cache`: a folder for tokens of fixed clips, computed once (see data.TokenCache).
    Returns a summary: steps, logged losses, masked-token loss on fixed clips at the
    start and the end, and, when frame prediction is trained, the PSNR of predicted
    frames next to the PSNR of repeating the last known frame.
    """
    from .checkpoint import load_model

    runtime = _runtime(config, device)
    out_dir, tokenizer_dir = Path(out_dir), Path(tokenizer_dir)
    source = load_model(tokenizer_dir, device=runtime.device)
    saved = _open_run(out_dir, "transformer", config, resume, init, runtime)
    stage = TransformerStage(config, data, source, tokenizer_dir, runtime, saved, init,
                             Path(token_cache) if token_cache is not None else None)
    del source  # the stage holds its own copy of the tokenizer
    return _train(stage, out_dir, saved, quiet)


def _runtime(config, device) -> Runtime:
    validate(config)
    runtime = setup_runtime(config.precision, device)
    if config.batch_size % runtime.world_size:
        raise UsageError(f"batch_size {config.batch_size} is not divisible by the {runtime.world_size} processes")
    return runtime


def _open_run(out_dir: Path, stage: str, config, resume: bool, init, runtime: Runtime) -> dict | None:
    """The checkpoint to resume from (None for a new run), checked against this run's settings."""
    saved = _prepare_run_folder(out_dir, resume, runtime)
    if saved is not None:
        if saved.get("stage") != stage:
            raise UsageError(f"{out_dir} holds a {saved.get('stage')} run, not a {stage} run")
        _check_resume_config(saved["config"], config)
        if init is not None:
            raise UsageError("--init starts a new run from a model; a resumed run continues from its checkpoint",
                             "drop --init when you pass --resume")
    return saved


# =============================================================== the training loop

def _train(stage: TokenizerStage | TransformerStage, out_dir: Path, saved: dict | None, quiet: bool,
           stop_at: int | None = None) -> dict:
    """Train `stage` from its checkpoint's step (or 0) to config.steps (or `stop_at`, when
    earlier); returns its summary.

    Every step: the learning rate, the stage's forward and backward pass, the losses
    averaged over processes, a guard against non-finite values (the step is then not
    applied), the optimiser step, then logging, previews and periodic checkpoints.
    SIGINT/SIGTERM finish the current step, save and stop (every process agrees on
    stopping through the same all-reduce that averages the losses).

    A stage has `name`, `headline` (losses shown while training), `config`, `runtime`,
    `dataset` (the training clips), `batch_source` (what batches are drawn from: the clips
    or their token cache), `optimizers`, `model` (what the run folder holds) and the
    methods forward_backward, optimizer_step, state_dict, evaluate, preview and summary.
    """
    config, runtime = stage.config, stage.runtime
    start = saved["step"] if saved is not None else 0
    score_at_start = stage.evaluate()

    def save(step: int) -> None:
        if runtime.main:
            save_model(out_dir, stage.model)
            _save_state(out_dir, {"stage": stage.name, "step": step, "config": _config_dict(config),
                                  **stage.state_dict()})

    def preview(step: int) -> None:
        if runtime.main:
            stage.preview(out_dir / "previews", step)

    end = config.steps if stop_at is None else min(stop_at, config.steps)
    reporter = _Reporter(out_dir, runtime, quiet, end, start, config.log_every, stage.name, stage.headline)
    videos = _base_dataset(stage.dataset)
    if isinstance(videos, VideoClipDataset) and videos.unreadable:
        reporter.message(f"[yellow]skipped {len(videos.unreadable)} unreadable videos:\n{videos.unreadable_report()}")
    batches = _batches(stage.batch_source, config, runtime, start)
    step = start
    try:
        with _Stop() as stop:
            while step < end:
                batch = _next_batch(batches, stop, lambda: save(step))
                lr = learning_rate(step, config.lr, config.warmup_steps, config.steps)
                for optimizer in stage.optimizers:
                    for group in optimizer.param_groups:
                        group["lr"] = lr
                out = stage.forward_backward(batch, step)
                # Tensors are averaged over processes; this process's vote to stop rides along.
                averaged = [k for k, v in out.items() if isinstance(v, torch.Tensor)]
                stopping = torch.tensor(float(stop.signal is not None), device=runtime.device)
                reduced = runtime.all_mean(torch.stack([out[k].float() for k in averaged] + [stopping]))
                means = dict(zip(averaged, reduced.tolist()))
                values = {k: means.get(k, v) for k, v in out.items()}
                if not all(math.isfinite(v) for v in values.values()):
                    raise _nonfinite(values, step, out_dir)
                stage.optimizer_step(values)
                step += 1

                reporter.update(step, lr, values, config.batch_size)
                if config.preview_every and step % config.preview_every == 0:
                    preview(step)
                if reduced[-1] > 0:
                    save(step)
                    raise stop.error()
                if config.save_every and step % config.save_every == 0 and step < end:
                    save(step)
        reporter.flush(step, learning_rate(step, config.lr, config.warmup_steps, config.steps))
        save(step)
        if config.preview_every:
            preview(step)
    finally:
        reporter.close()
    return stage.summary(step, out_dir, reporter.last, score_at_start, reporter.started)


def summary_lines(summary: dict) -> list[str]:
    """A few lines for people about a finished run (the summary of train_tokenizer or
    train_transformer): steps, final losses, and what the model does on the fixed clips
    at the start and the end of the run."""
    clips = min(PREVIEW_CLIPS, summary["clips"])
    where = "on the training clip" if clips == 1 else f"on {clips} fixed training clips"
    lines = [f"{summary['stage']}: {summary['steps']:,} steps, {summary['seconds']:.0f} s, {summary['precision']}, "
             f"{summary['clips']:,} clip{'s' if summary['clips'] != 1 else ''}, {summary['parameters']:,} parameters"]
    names = (("reconstruction", "perceptual", "g_loss", "d_loss") if summary["stage"] == "tokenizer"
             else ("loss", "grad_norm"))
    losses = summary.get("losses") or {}
    shown = [f"{name} {losses[name]:.3g}" for name in names if name in losses]
    lines.append(f"final losses: {', '.join(shown)}" if shown else "final losses: none (no step in this run)")
    if summary["stage"] == "tokenizer":
        lines.append(f"{where}: PSNR {summary['psnr_start']:.2f} -> {summary['psnr_end']:.2f} dB (EMA), "
                     f"{summary['psnr_end_raw']:.2f} dB (raw generator)")
    else:
        lines.append(f"{where}: masked-token loss {summary['eval_loss_start']:.3g} -> {summary['eval_loss_end']:.3g}")
        if "frame_prediction_psnr" in summary:
            lines.append(f"frame prediction PSNR: model {summary['frame_prediction_psnr']:.2f} dB, "
                         f"copying the last frame {summary['copy_last_frame_psnr']:.2f} dB")
    return lines


# =============================================================== stage 1

class TokenizerStage:
    """Stage 1: the generator (the tokenizer being trained), the discriminator, their Adam
    optimisers, and the EMA of the generator, which is the model the run folder holds."""

    name = "tokenizer"
    headline = ("reconstruction", "g_loss", "d_loss")  # shown next to the progress bar

    def __init__(self, config: TokenizerTrainConfig, data: str | Path | Dataset, runtime: Runtime,
                 saved: dict | None, init: str | Path | None):
        self.config, self.runtime = config, runtime
        dataset = _open_dataset(data, num_frames=config.num_frames, resolution=config.resolution, config=config)
        if config.overfit_one_clip:
            dataset = _one_clip(dataset)
        self.dataset = self.batch_source = dataset
        self.class_names = list(getattr(dataset, "class_names",
                                        getattr(getattr(dataset, "dataset", None), "class_names", [])))

        torch.manual_seed(config.seed)
        model_config = ModelConfig(tokenizer=config.tokenizer, num_frames=config.num_frames,
                                   resolution=tuple(config.resolution), fps=_dataset_fps(dataset),
                                   training_data=str(data) if not isinstance(data, Dataset) else "")
        model_config.check()
        self.generator = VQTokenizer(config.tokenizer).to(runtime.device)
        if init is not None:
            _start_tokenizer_from(self.generator, Path(init), model_config, runtime)
        if config.decoder_only:
            self.generator.encoder.requires_grad_(False)
            self.generator.quantizer.requires_grad_(False)
        self.trainable = [p for p in self.generator.parameters() if p.requires_grad]
        self.disc_config = DiscriminatorConfig.for_tokenizer(config.discriminator_filters or config.tokenizer.filters,
                                                             config.num_frames, tuple(config.resolution))
        if config.discriminator_multipliers:
            self.disc_config = dataclasses.replace(self.disc_config,
                                                   channel_multipliers=config.discriminator_multipliers)
        self.discriminator = StyleGANDiscriminator(self.disc_config).to(runtime.device)
        self.model = Magvit(model_config).to(runtime.device)  # the saved model: EMA of the generator
        self.model.tokenizer.load_state_dict(self.generator.state_dict())
        self.model.requires_grad_(False).eval()
        adam = dict(lr=config.lr, betas=(config.beta1, config.beta2), eps=config.eps, weight_decay=0.0)
        self.g_opt = torch.optim.Adam(self.trainable, **adam)
        self.d_opt = torch.optim.Adam(self.discriminator.parameters(), **adam)
        self.optimizers = [self.g_opt, self.d_opt]
        self.lecam_ema = torch.zeros(2, device=runtime.device)  # (real, fake) mean logits
        self.perceptual = PerceptualLoss(config.perceptual_model, runtime.device) if config.perceptual_model else None
        self.use_gan = config.adversarial_weight > 0  # without the GAN term the discriminator cannot matter
        if saved is not None:
            self.load_state_dict(saved)
        for module in (self.generator, self.discriminator, self.model):
            _broadcast_parameters(module, runtime)

        self.preview_real = _preview_clips(dataset, PREVIEW_CLIPS)[0].to(runtime.device)
        self.generator.train()
        self.discriminator.train()

    # ------------------------------------------------------------ checkpoint

    def state_dict(self) -> dict:
        """The stage's part of training_state.pt (the same keys as before train.py was split)."""
        return {"generator": self.generator.state_dict(), "discriminator": self.discriminator.state_dict(),
                "ema": self.model.tokenizer.state_dict(), "g_optimizer": self.g_opt.state_dict(),
                "d_optimizer": self.d_opt.state_dict(), "lecam_ema": self.lecam_ema.cpu(),
                "discriminator_config": self.disc_config.to_dict()}

    def load_state_dict(self, saved: dict) -> None:
        self.generator.load_state_dict(saved["generator"])
        self.discriminator.load_state_dict(saved["discriminator"])
        self.model.tokenizer.load_state_dict(saved["ema"])
        self.g_opt.load_state_dict(saved["g_optimizer"])
        self.d_opt.load_state_dict(saved["d_optimizer"])
        self.lecam_ema.copy_(saved["lecam_ema"])

    # ------------------------------------------------------------ one step

    def forward_backward(self, batch, step: int) -> dict[str, torch.Tensor]:
        """Losses and gradients of one step (vqgan_trainer.train_g_d): the discriminator loss
        differentiated w.r.t. D only, the generator loss w.r.t. G only, from one forward.
        Without a GAN term (adversarial_weight = 0) only the generator is trained."""
        config, runtime = self.config, self.runtime
        discriminator = self.discriminator if self.use_gan else None
        losses: dict[str, torch.Tensor] = {}
        use_r1 = discriminator is not None and config.r1_weight > 0
        real = batch[0].to(runtime.device, non_blocking=True).detach().requires_grad_(use_r1)
        with runtime.autocast():
            recon, quantizer_losses = self.generator(real.detach())
        losses["reconstruction"] = F.mse_loss(recon.float(), real.detach())
        losses["quantizer"] = quantizer_losses["quantizer"]
        losses["entropy"] = quantizer_losses["entropy"].detach()
        g_loss = losses["reconstruction"] + losses["quantizer"]
        if self.perceptual is not None:
            with runtime.autocast():
                losses["perceptual"] = config.perceptual_weight * self.perceptual(real.detach(), recon)
            g_loss = g_loss + losses["perceptual"]

        d_params = list(discriminator.parameters()) if discriminator is not None else []
        d_grads: tuple[torch.Tensor, ...] = ()
        if discriminator is not None:
            with runtime.autocast():
                real_logit = discriminator(real).float()
                fake_logit = discriminator(recon).float()
            if use_r1:
                # R1: squared gradient norm of Σ D(real) w.r.t. the real videos, per example, batch mean.
                grad, = torch.autograd.grad(real_logit.sum(), real, create_graph=True)
                losses["r1"] = grad.float().pow(2).flatten(1).sum(1).mean() * config.r1_weight
            real_mean, fake_mean = real_logit.mean(), fake_logit.mean()
            losses["d_adversarial"] = F.softplus(-real_logit).mean() + F.softplus(fake_logit).mean()
            if config.lecam_weight > 0:
                losses["lecam"] = config.lecam_weight * (F.relu(real_mean - self.lecam_ema[1]).pow(2)
                                                         + F.relu(self.lecam_ema[0] - fake_mean).pow(2))
            d_loss = sum(losses[k] for k in ("d_adversarial", "r1", "lecam") if k in losses)
            losses["g_adversarial"] = config.adversarial_weight * F.softplus(-fake_logit).mean()
            g_loss = g_loss + losses["g_adversarial"]
            d_grads = torch.autograd.grad(d_loss, d_params, retain_graph=True, allow_unused=True,
                                          materialize_grads=True)
            losses["d_loss"], losses["real_logit"], losses["fake_logit"] = d_loss, real_mean, fake_mean

        g_grads = torch.autograd.grad(g_loss, self.trainable, allow_unused=True, materialize_grads=True)
        for p, g in zip(d_params + self.trainable, d_grads + g_grads):
            p.grad = g
        losses["g_loss"] = g_loss
        # Two gradients from one forward and an R1 double backward: DistributedDataParallel
        # does not support that, so the gradients are averaged by hand.
        _average_gradients(d_params + self.trainable, runtime)
        return {k: losses[k].detach() for k in sorted(losses)}

    def optimizer_step(self, values: dict[str, float]) -> None:
        self.g_opt.step()
        self.g_opt.zero_grad(set_to_none=True)
        if self.use_gan:
            self.d_opt.step()
            self.d_opt.zero_grad(set_to_none=True)
        ema_update(self.model.tokenizer, self.generator, self.config.ema_decay)
        if self.use_gan and self.config.lecam_weight > 0:
            observed = torch.tensor([values["real_logit"], values["fake_logit"]], device=self.runtime.device)
            self.lecam_ema.lerp_(observed, 1 - self.config.lecam_decay)

    # ------------------------------------------------------------ fixed clips

    def _psnr(self, tokenizer: VQTokenizer) -> float:
        with torch.no_grad(), self.runtime.autocast():
            recon = tokenizer.decode(tokenizer.encode(self.preview_real)).float().clamp(0, 1)
        return float(psnr(recon, self.preview_real).mean())

    def evaluate(self) -> float:
        """Reconstruction PSNR of the EMA tokenizer on the fixed clips."""
        return self._psnr(self.model.tokenizer)

    def preview(self, folder: Path, step: int) -> None:
        """Fixed clips next to the EMA tokenizer's reconstructions."""
        with torch.no_grad(), self.runtime.autocast():
            recon = self.model.tokenizer.decode(self.model.tokenizer.encode(self.preview_real))
        rows = [clip for pair in zip(self.preview_real, recon) for clip in pair]
        _save_grid(folder / f"step_{step:07d}.png", rows)

    def summary(self, steps: int, out_dir: Path, losses: dict, psnr_start: float, started: float) -> dict:
        return {
            "stage": self.name, "steps": steps, "out_dir": str(out_dir), "losses": losses,
            "psnr_start": psnr_start, "psnr_end": self.evaluate(), "psnr_end_raw": self._psnr(self.generator),
            "parameters": sum(p.numel() for p in self.generator.parameters()),
            "weights_sha256": weights_digest(self.model),
            "discriminator_parameters": sum(p.numel() for p in self.discriminator.parameters()),
            "clips": len(self.dataset), "class_names": self.class_names,
            "precision": self.runtime.precision,
            "seconds": round(time.perf_counter() - started, 2),
        }


class PerceptualLoss(nn.Module):
    """Official perceptual loss on logits (losses.calculate_perceptual_loss_on_pretrained):
    every frame resized bilinearly to 224², fed without normalisation to an image
    classifier, MSE between its outputs on real and reconstructed frames. The
    classifier (the official code expects an ImageNet ResNet-50 that it does not ship)
    comes from a file given by the user: a `torch.export` program (.pt2, exported with
    a dynamic batch dimension) or a TorchScript module (torch.jit.save)."""

    def __init__(self, path: str, device: torch.device):
        super().__init__()
        try:
            if Path(path).suffix == ".pt2":
                self.net = torch.export.load(path).module().to(device)
            else:
                self.net = torch.jit.load(path, map_location=device).eval()
        except (OSError, RuntimeError, ValueError) as error:
            raise ModelError(f"cannot load the perceptual-loss network {path}: {error}",
                             "give an image classifier saved with torch.export.save (.pt2) or torch.jit.save") from None
        for param in self.net.parameters():
            param.requires_grad_(False)

    @staticmethod
    def _frames(video: torch.Tensor) -> torch.Tensor:
        frames = video.transpose(1, 2).flatten(0, 1)  # [B*T, 3, H, W]
        return F.interpolate(frames, size=(224, 224), mode="bilinear", align_corners=False, antialias=True)

    def forward(self, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            target = self.net(self._frames(real)).float()
        return F.mse_loss(self.net(self._frames(fake)).float(), target)


def _start_tokenizer_from(tokenizer: VQTokenizer, init: Path, model_config: ModelConfig, runtime: Runtime) -> None:
    """Copy the tokenizer of the model folder `init` into `tokenizer` (fine-tuning); its
    layout and clip size must be this run's."""
    from .checkpoint import load_model

    base = load_model(init, device=runtime.device)
    mismatch = [what for what, same in (
        ("tokenizer shape", base.config.tokenizer == model_config.tokenizer),
        ("clip length", base.config.num_frames == model_config.num_frames),
        ("resolution", tuple(base.config.resolution) == tuple(model_config.resolution))) if not same]
    if mismatch:
        raise UsageError(f"cannot start from {init}: its {', '.join(mismatch)} differ from this run's",
                         "set the tokenizer, num_frames and resolution settings to the model's")
    tokenizer.load_state_dict(base.tokenizer.state_dict())


# =============================================================== stage 2

class TransformerStage:
    """Stage 2: the transformer and its AdamW optimiser, trained on tokens of the frozen
    tokenizer (made on the fly, or read from a token cache); the model the run folder
    holds is the complete one (tokenizer + transformer)."""

    name = "transformer"
    headline = ("loss",)

    def __init__(self, config: TransformerTrainConfig, data: str | Path | Dataset, source: Magvit,
                 tokenizer_dir: Path, runtime: Runtime, saved: dict | None, init: str | Path | None,
                 token_cache: Path | None):
        self.config, self.runtime = config, runtime
        frames, resolution = source.config.num_frames, tuple(source.config.resolution)
        if config.batch_size * frames * resolution[0] * resolution[1] > MAX_BATCH_VOXELS:
            raise UsageError(f"batch_size {config.batch_size} of {frames}x{resolution[0]}x{resolution[1]} clips is "
                             f"more than the {MAX_BATCH_VOXELS:,} voxels a batch may hold", "use a smaller batch_size")
        needs_classes = any(task_lib.get_task(t).class_conditional for t in config.tasks)
        dataset = _open_dataset(data, num_frames=frames, resolution=resolution, config=config,
                                class_names=saved["class_names"] if saved is not None and saved["class_names"] else None)
        self.class_names = list(getattr(_base_dataset(dataset), "class_names", [])) if needs_classes else []
        if needs_classes and not self.class_names:
            raise UsageError(f"tasks {', '.join(config.tasks)} need class labels, but the training data has none",
                             "put the videos in class sub-folders or give labels in a manifest")
        if config.overfit_one_clip:
            dataset = _one_clip(dataset)
        self.dataset = dataset

        self.latent_shape = source.tokenizer.latent_shape(frames, *resolution)
        self.tconfig = dataclasses.replace(config.transformer, codebook_size=source.config.tokenizer.codebook_size,
                                           num_classes=len(self.class_names), multi_task=len(config.tasks) > 1,
                                           latent_shape=self.latent_shape)
        model_config = ModelConfig(tokenizer=source.config.tokenizer, transformer=self.tconfig, num_frames=frames,
                                   resolution=resolution, tasks=list(config.tasks), class_names=self.class_names,
                                   fps=_dataset_fps(dataset, source.config.fps),
                                   training_data=str(data) if not isinstance(data, Dataset) else "")
        model_config.check()
        check_sizes(model_config, "the transformer settings")
        torch.manual_seed(config.seed)
        self.model = Magvit(model_config).to(runtime.device)
        self.model.tokenizer.load_state_dict(source.tokenizer.state_dict())
        self.model.tokenizer.requires_grad_(False).eval()
        self.tokenizer, self.transformer = self.model.tokenizer, self.model.transformer
        self.optimizer = torch.optim.AdamW(weight_decay_groups(self.transformer, config.weight_decay), lr=config.lr,
                                           betas=(config.beta1, config.beta2), eps=config.eps)
        self.optimizers = [self.optimizer]
        if saved is not None:
            self.load_state_dict(saved)
        elif init is not None:
            _start_transformer_from(self.model, Path(init), runtime)
        # What the training step calls: under torchrun, wrapped to average the gradients.
        self.net = self.transformer
        if runtime.distributed:
            self.net = nn.parallel.DistributedDataParallel(
                self.transformer, device_ids=[runtime.device] if runtime.device.type == "cuda" else None)

        videos, labels = _preview_clips(dataset, PREVIEW_CLIPS)
        self.preview_videos, self.preview_labels = videos.to(runtime.device), labels.to(runtime.device)
        self.cache = None
        if token_cache is not None:
            self.cache = _token_cache(token_cache, dataset, self.tokenizer, tokenizer_dir, config, model_config,
                                      runtime)
            if config.overfit_one_clip:
                self.cache = Subset(self.cache, [0])
        self.batch_source = self.cache if self.cache is not None else dataset
        self.latent_masks = _latent_masks(config, model_config, runtime.device)
        self.schedule = task_lib.TaskSchedule.create(config.tasks, config.task_weights or None, seed=config.seed)
        self.transformer.train()

    # ------------------------------------------------------------ checkpoint

    def state_dict(self) -> dict:
        """The stage's part of training_state.pt (the same keys as before train.py was split)."""
        return {"transformer": self.transformer.state_dict(), "optimizer": self.optimizer.state_dict(),
                "class_names": self.class_names}

    def load_state_dict(self, saved: dict) -> None:
        self.transformer.load_state_dict(saved["transformer"])
        self.optimizer.load_state_dict(saved["optimizer"])

    # ------------------------------------------------------------ one step

    def forward_backward(self, batch, step: int) -> dict[str, torch.Tensor | float]:
        """Loss and gradients of one step: this step's task, its condition, one mask ratio."""
        config, runtime = self.config, self.runtime
        task = self.schedule.task_for_step(step)
        labels = batch[-1].to(runtime.device)
        if self.cache is not None:
            local = config.batch_size // runtime.world_size
            tokens = batch[0].to(runtime.device).reshape(local, -1)
            cond = batch[1][task].to(runtime.device).reshape(local, -1) if task in self.latent_masks else None
            mask = self.latent_masks.get(task)
        else:
            tokens, cond, mask = tokenize_with_condition(self.tokenizer, batch[0].to(runtime.device), task,
                                                         self.latent_shape, config.cond_frames,
                                                         config.cond_latent_frames)
        # One mask ratio per step and scores drawn for the global batch (rank r holds
        # examples r, r + W, ...), so N processes compute what one process would.
        bits = _bits(config.seed, "mask", step)
        ratio = task_lib.sample_mask_ratio(bits)
        scores = torch.rand(config.batch_size, tokens.shape[1], generator=bits)
        scores = scores[runtime.rank::runtime.world_size].to(runtime.device)
        torch.manual_seed(seed_for(config.seed, "dropout", step, runtime.rank))
        loss = _transformer_loss(self.net, self.tconfig, task, tokens, cond, mask, labels, ratio, scores, config,
                                 runtime)
        loss.backward()
        grad_norm = clip_grad_norm(list(self.transformer.parameters()), config.grad_clip)
        return {"loss": loss.detach(), "grad_norm": grad_norm, "mask_ratio": ratio}

    def optimizer_step(self, values: dict[str, float]) -> None:
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)

    # ------------------------------------------------------------ fixed clips

    @torch.no_grad()
    def evaluate(self) -> float:
        """Masked-token loss on the fixed clips, every task, mask ratio 0.5, fixed scores."""
        config = self.config
        self.transformer.eval()
        total = 0.0
        for task in config.tasks:
            tokens, cond, mask = tokenize_with_condition(self.tokenizer, self.preview_videos, task, self.latent_shape,
                                                         config.cond_frames, config.cond_latent_frames)
            scores = torch.rand(tokens.shape, generator=_bits(config.seed, "eval", task)).to(self.runtime.device)
            total += float(_transformer_loss(self.transformer, self.tconfig, task, tokens, cond, mask,
                                             self.preview_labels, 0.5, scores, config, self.runtime))
        self.transformer.train()
        return total / len(config.tasks)

    def _generate(self, task: str) -> torch.Tensor:
        from .decoding import DecodeOptions

        self.model.eval()
        labels = self.preview_labels if task_lib.get_task(task).class_conditional else None
        video = None if task == "full_generation" else self.preview_videos
        out = self.model.run_task(task, video, labels, DecodeOptions(seed=self.config.seed),
                                  cond_frames=self.config.cond_frames)
        self.transformer.train()
        return out

    def _condition(self, task: str) -> torch.Tensor:
        """The condition video of `task` for the fixed clips (what the model is shown)."""
        return task_lib.condition(task, self.preview_videos, self.latent_shape, self.config.cond_frames,
                                  self.config.cond_latent_frames).video

    def preview(self, folder: Path, step: int) -> None:
        """Fixed clips, their condition and the model's output, for one task in turn."""
        config = self.config
        task = config.tasks[(step // max(1, config.preview_every)) % len(config.tasks)]
        out = self._generate(task)
        cond = self._condition(task).expand_as(self.preview_videos)
        rows = [clip for triple in zip(self.preview_videos, cond, out) for clip in triple]
        _save_grid(folder / f"step_{step:07d}_{task}.png", rows)

    def summary(self, steps: int, out_dir: Path, losses: dict, loss_start: float, started: float) -> dict:
        config = self.config
        summary = {"stage": self.name, "steps": steps, "out_dir": str(out_dir), "losses": losses,
                   "eval_loss_start": loss_start, "eval_loss_end": self.evaluate(),
                   "parameters": sum(p.numel() for p in self.transformer.parameters()), "tasks": list(config.tasks),
                   "weights_sha256": weights_digest(self.model),
                   "class_names": self.class_names, "clips": len(self.dataset),
                   "precision": self.runtime.precision,
                   "seconds": round(time.perf_counter() - started, 2)}
        if "frame_prediction" in config.tasks:
            # The model's predicted frames against repeating the last known frame.
            cut = config.cond_frames
            real = self.preview_videos[:, :, cut:]
            predicted = self._generate("frame_prediction")[:, :, cut:]
            copied = self._condition("frame_prediction")[:, :, cut:]
            summary["frame_prediction_psnr"] = float(psnr(predicted, real).mean())
            summary["copy_last_frame_psnr"] = float(psnr(copied, real).mean())
        return summary


@torch.no_grad()
def tokenize_with_condition(tokenizer: VQTokenizer, videos: torch.Tensor, task: str,
                            latent_shape: tuple[int, int, int], cond_frames: int = 1,
                            cond_latent_frames: int = 1) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """(tokens [B, N], condition tokens [B, N] or None, latent mask [1, N] or None) of a
    batch for `task`; clip and condition video go through the tokenizer as one batch
    (maskgvt_train_lib.tokenize_with_cond), in float32."""
    batch = videos.shape[0]
    with torch.autocast(videos.device.type, enabled=False):
        if not task_lib.get_task(task).has_condition:
            return tokenizer.encode(videos.float()).reshape(batch, -1), None, None
        cond = task_lib.condition(task, videos, latent_shape, cond_frames, cond_latent_frames)
        codes = tokenizer.encode(torch.cat([videos, cond.video]).float()).reshape(2 * batch, -1)
    return codes[:batch], codes[batch:], cond.latent_mask.reshape(1, -1)


def _latent_masks(config: TransformerTrainConfig, model_config: ModelConfig, device) -> dict[str, torch.Tensor]:
    """[1, N] condition-token mask of every task with a condition (geometry only)."""
    blank = torch.zeros(1, 3, model_config.num_frames, *model_config.resolution, device=device)
    return {task: task_lib.condition(task, blank, model_config.latent_shape, config.cond_frames,
                                     config.cond_latent_frames).latent_mask.reshape(1, -1)
            for task in config.tasks if task_lib.get_task(task).has_condition}


def _token_cache(folder: Path, dataset: Dataset, tokenizer: VQTokenizer, tokenizer_dir: Path,
                 config: TransformerTrainConfig, model_config: ModelConfig, runtime: Runtime) -> TokenCache:
    base = _base_dataset(dataset)
    if not isinstance(base, VideoClipDataset):
        raise UsageError("a token cache needs training data given as a folder or a manifest")
    digest = hashlib.sha256()
    for name in ("model.safetensors", "config.json"):
        path = tokenizer_dir / name
        digest.update(path.read_bytes() if path.is_file() else name.encode())
    conditions = [t for t in config.tasks if task_lib.get_task(t).has_condition]
    meta = {"tokenizer": digest.hexdigest(), "videos": [(i.path, i.first_frame, i.num_frames) for i in base.items],
            "num_frames": model_config.num_frames, "resolution": list(model_config.resolution),
            "stride": base.stride, "cond_frames": config.cond_frames, "cond_latent_frames": config.cond_latent_frames,
            "conditions": conditions}
    if runtime.main and not TokenCache.matches(folder, meta):
        fixed = copy.copy(base)
        fixed.train = False  # fixed clips: centre window, centre crop
        loader = DataLoader(fixed, batch_size=8, num_workers=config.num_workers, worker_init_fn=worker_init)

        def encode(videos: torch.Tensor) -> dict[str, torch.Tensor]:
            videos = videos.to(runtime.device)
            out = {"tokens": tokenizer.encode(videos).cpu()}
            for task in conditions:
                _, cond, _ = tokenize_with_condition(tokenizer, videos, task, model_config.latent_shape,
                                                     config.cond_frames, config.cond_latent_frames)
                out[task] = cond.reshape(-1, *model_config.latent_shape).cpu()
            return out

        with torch.no_grad():
            TokenCache.build(folder, iter(loader), encode, meta)
    if runtime.distributed:
        dist.barrier()
    return TokenCache(folder)


def _start_transformer_from(magvit: Magvit, init: Path, runtime: Runtime) -> None:
    """Copy the transformer of the model folder `init` into `magvit` (fine-tuning). The
    model must match: same tokenizer weights (codes mean the same pictures), transformer
    shape, tasks and classes; anything else would silently train a different model."""
    from .checkpoint import load_model

    base = load_model(init, device=runtime.device)
    mismatch = [what for what, same in (
        ("transformer shape", base.config.transformer == magvit.config.transformer),
        ("tasks", list(base.config.tasks) == list(magvit.config.tasks)),
        ("class names", list(base.config.class_names) == list(magvit.config.class_names)),
        ("tokenizer", base.config.tokenizer == magvit.config.tokenizer and all(
            torch.equal(a, b) for a, b in zip(base.tokenizer.state_dict().values(),
                                              magvit.tokenizer.state_dict().values()))))
        if not same]
    if mismatch:
        raise UsageError(f"cannot start from {init}: its {', '.join(mismatch)} differ from this run's",
                         "fine-tune with the model's own tokenizer (--tokenizer), tasks and class folders")
    magvit.transformer.load_state_dict(base.transformer.state_dict())


def _transformer_loss(model: nn.Module, tconfig: TransformerConfig, task: str, tokens: torch.Tensor,
                      cond_tokens: torch.Tensor | None, latent_mask: torch.Tensor | None, labels: torch.Tensor,
                      ratio: float, scores: torch.Tensor, config: TransformerTrainConfig, runtime: Runtime) -> torch.Tensor:
    masked = task_lib.mask_tokens(tconfig, task, tokens, cond_tokens, latent_mask, labels, ratio, scores=scores,
                                  model_tasks=config.tasks)
    with runtime.autocast():
        logits = model(masked.inputs)
    prefix = tconfig.num_prefix
    return masked_token_loss(logits[:, prefix:], masked.targets[:, prefix:], masked.weights[:, prefix:],
                             tconfig.codebook_size, config.label_smoothing)


# ================================================================== mechanics

def learning_rate(step: int, base: float, warmup: int, total: int) -> float:
    """Scenic's compound "constant * cosine_decay * linear_warmup" (spec §9.1):
    base · min(1, s/W) · ½(1 + cos(π · clamp((s − W)/(S − W), 0, 1)))."""
    warm = min(1.0, step / warmup) if warmup > 0 else 1.0
    progress = min(1.0, max(0.0, (step - warmup) / (total - warmup))) if total > warmup else 0.0
    return base * warm * 0.5 * (1.0 + math.cos(math.pi * progress))


@torch.no_grad()
def ema_update(ema: nn.Module, model: nn.Module, decay: float) -> None:
    """ema ← decay · ema + (1 − decay) · model (vqgan_train_lib.compute_ema_params)."""
    ema_params = [p for p in ema.parameters()]
    params = [p.detach() for p in model.parameters()]
    torch._foreach_lerp_(ema_params, params, 1.0 - decay)


def weight_decay_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """AdamW groups: decay on Linear weights only (official: paths containing 'kernel');
    no decay on biases, LayerNorms, embeddings and the output bias."""
    decay_ids = {id(m.weight) for m in model.modules() if isinstance(m, nn.Linear)}
    decay, no_decay = [], []
    for param in model.parameters():
        if param.requires_grad:
            (decay if id(param) in decay_ids else no_decay).append(param)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


@torch.no_grad()
def clip_grad_norm(params: Sequence[torch.Tensor], max_norm: float) -> torch.Tensor:
    """Scale gradients so their global L2 norm is at most `max_norm` (jax optimizers.clip_grads)."""
    grads = [p.grad for p in params if p.grad is not None]
    norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g.float()) for g in grads]))
    if max_norm > 0 and norm > max_norm:
        torch._foreach_mul_(grads, max_norm / norm)
    return norm


def masked_token_loss(logits: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor,
                      codebook_size: int, label_smoothing: float) -> torch.Tensor:
    """Label-smoothed cross-entropy over the code logits (Scenic convention:
    one_hot·(1 − ε) + ε/K), per example Σ(ce·w)/(Σw + 1e-8), mean over examples."""
    log_probs = logits[..., :codebook_size].float().log_softmax(-1)
    on_target = log_probs.gather(-1, targets.clamp(0, codebook_size - 1).unsqueeze(-1)).squeeze(-1)
    ce = -(1.0 - label_smoothing) * on_target - (label_smoothing / codebook_size) * log_probs.sum(-1)
    weights = weights.float()
    return ((ce * weights).sum(-1) / (weights.sum(-1) + 1e-8)).mean()


def _bits(seed: int, *parts) -> torch.Generator:
    return torch.Generator().manual_seed(seed_for(seed, *parts))


# ------------------------------------------------------------------ runtime

@dataclass
class Runtime:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    amp: torch.dtype | None = None

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def precision(self) -> str:
        return "bfloat16" if self.amp is not None else "float32"

    def autocast(self):
        return torch.autocast(self.device.type, dtype=self.amp or torch.float32, enabled=self.amp is not None)

    def all_mean(self, values: torch.Tensor) -> torch.Tensor:
        if self.distributed:
            values = values.clone()
            dist.all_reduce(values)
            values /= self.world_size
        return values


def setup_runtime(precision: str = "auto", device: str | torch.device | None = None) -> Runtime:
    """Single process, or one process of a torchrun job (RANK / WORLD_SIZE / LOCAL_RANK)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank, local_rank = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    if device is None:
        device = torch.device("cuda", local_rank) if torch.cuda.is_available() else torch.device("cpu")
    device = torch.device(device)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise UsageError("CUDA was asked for but no GPU is available")
        if device.index is None:
            device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    amp = None
    if precision == "bfloat16" or (precision == "auto" and device.type == "cuda" and torch.cuda.is_bf16_supported()):
        amp = torch.bfloat16
    return Runtime(rank, world_size, local_rank, device, amp)


@torch.no_grad()
def _broadcast_parameters(module: nn.Module, runtime: Runtime) -> None:
    if runtime.distributed:
        for tensor in list(module.parameters()) + list(module.buffers()):
            dist.broadcast(tensor, 0)


def _average_gradients(params: Sequence[torch.Tensor], runtime: Runtime) -> None:
    """Mean of the gradients over processes in one flat all-reduce (the official
    `jax.lax.pmean`). Stage 1 takes two gradients from one forward and an R1 double
    backward, which DistributedDataParallel does not support, so it reduces by hand."""
    if not runtime.distributed:
        return
    grads = [p.grad for p in params]
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= runtime.world_size
    offset = 0
    for g in grads:
        g.copy_(flat[offset:offset + g.numel()].view_as(g))
        offset += g.numel()


# ------------------------------------------------------------------ data order

class EpochSampler(Sampler[tuple[int, int]]):
    """Endless (epoch, index) pairs for this process, from `start_step` on.

    Each epoch is a seeded permutation (identity without shuffling), repeated when the
    data is smaller than one global batch and cut to whole global batches; process r of
    W takes every W-th entry, like DistributedSampler. Global batch k of the run is thus
    the same whatever the number of processes and whatever step the run restarted at.
    """

    def __init__(self, size: int, global_batch: int, runtime: Runtime, seed: int, shuffle: bool, start_step: int = 0):
        self.size, self.global_batch, self.runtime = size, global_batch, runtime
        self.seed, self.shuffle, self.start_step = seed, shuffle, start_step

    @property
    def steps_per_epoch(self) -> int:
        return max(1, self.size // self.global_batch)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        epoch, skip = divmod(self.start_step, self.steps_per_epoch)
        while True:
            if self.shuffle:
                order = torch.randperm(self.size, generator=_bits(self.seed, "order", epoch))
            else:
                order = torch.arange(self.size)
            order = order.repeat(math.ceil(self.global_batch / self.size))[: self.steps_per_epoch * self.global_batch]
            for index in order[skip * self.global_batch:][self.runtime.rank::self.runtime.world_size].tolist():
                yield epoch, index
            epoch, skip = epoch + 1, 0


class _ByEpoch(Dataset):
    """Items addressed as (epoch, index), so one persistent DataLoader serves every epoch
    while random clips still change from epoch to epoch."""

    def __init__(self, dataset: Dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int]):
        epoch, index = key
        if isinstance(self.dataset, VideoClipDataset):
            return self.dataset.get(index, epoch)
        return self.dataset[index]


def _batches(dataset: Dataset, config, runtime: Runtime, start_step: int) -> Iterator:
    """Endless local batches of the run from `start_step` on."""
    sampler = EpochSampler(len(dataset), config.batch_size, runtime, config.seed, shuffle=True, start_step=start_step)
    loader = DataLoader(_ByEpoch(dataset), batch_size=config.batch_size // runtime.world_size, sampler=sampler,
                        num_workers=config.num_workers, worker_init_fn=worker_init, drop_last=True,
                        pin_memory=runtime.device.type == "cuda")
    return iter(loader)


def _open_dataset(data, *, num_frames: int, resolution, config, class_names=None) -> Dataset:
    if isinstance(data, Dataset):
        return data
    return VideoClipDataset(data, num_frames=num_frames, resolution=tuple(resolution), stride=config.frame_stride,
                            train=not config.overfit_one_clip, flip=config.flip, seed=config.seed,
                            class_names=class_names)


def _one_clip(dataset: Dataset) -> Dataset:
    """Overfit mode: the first clip (fixed: centre window, centre crop), over and over."""
    if isinstance(dataset, VideoClipDataset):
        dataset.train = False
    return Subset(dataset, [0])


def _base_dataset(dataset: Dataset) -> Dataset:
    return dataset.dataset if isinstance(dataset, Subset) else dataset


def _dataset_fps(dataset: Dataset, default: float = 8.0) -> float:
    base = _base_dataset(dataset)
    rates = [item.fps for item in getattr(base, "items", [])]
    return float(np.median(rates)) if rates else default


# ------------------------------------------------------------------ run folder

class _Stop:
    """SIGINT/SIGTERM during training: finish the current step, save, then raise.
    A second Ctrl-C raises at once."""

    def __init__(self):
        self.signal: int | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, sig, frame):
        if self.signal is not None and sig == signal.SIGINT:
            raise KeyboardInterrupt
        self.signal = sig

    def __exit__(self, *exc):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    def error(self) -> BaseException:
        if self.signal == signal.SIGTERM:
            return Interrupted("training stopped by SIGTERM after saving a checkpoint", exit_code=143)
        return KeyboardInterrupt()


def _prepare_run_folder(out_dir: Path, resume: bool, runtime: Runtime) -> dict | None:
    """Load the state to resume from, or make sure a new run does not overwrite an old one."""
    state_path = out_dir / STATE_FILE
    if resume:
        if not state_path.is_file():
            raise UsageError(f"nothing to resume: {state_path} does not exist")
        try:
            return torch.load(state_path, map_location="cpu", weights_only=True)
        except Exception as error:  # corrupt or foreign file
            if isinstance(error, pickle.UnpicklingError) and "weights only" in str(error).lower():
                raise ModelError(f"{state_path} holds Python objects, not just tensors: refusing to load it "
                                 "(loading would run code from the file)",
                                 "resume only from a run folder this tool wrote") from None
            reason = (str(error).strip().splitlines() or [type(error).__name__])[0]
            raise ModelError(f"cannot read {state_path}: {reason}", "the file is damaged; start a new run") from None
    if state_path.exists():
        raise OutputError(f"{out_dir} already holds a training run",
                          "pass --resume to continue it, or choose another output folder")
    if runtime.main:
        try:
            out_dir.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise OutputError(f"cannot create {out_dir}: {error.strerror}") from None
    return None


def _check_resume_config(saved: dict, config) -> None:
    # Settings that may change between the interrupted run and its continuation. Precision is
    # a property of the machine (a CPU run continued on a GPU switches to bf16 under "auto").
    free = {"steps", "num_workers", "log_every", "save_every", "preview_every", "precision"}
    current = _config_dict(config)
    changed = sorted(k for k in current if k in saved and k not in free and current[k] != saved[k])
    if changed:
        raise UsageError(f"resume with different settings: {', '.join(changed)}",
                         "resume with the settings of the original run (only steps, precision, workers and logging may change)")


def _config_dict(config) -> dict:
    return json.loads(json.dumps(dataclasses.asdict(config)))


def _save_state(out_dir: Path, state: dict) -> None:
    temp = out_dir / f".{STATE_FILE}.tmp"
    try:
        torch.save(state, temp)
        os.replace(temp, out_dir / STATE_FILE)
    except OSError as error:
        temp.unlink(missing_ok=True)
        raise OutputError(f"cannot write {out_dir / STATE_FILE}: {error.strerror or error}") from None


class _Reporter:
    """Rank-0 output: a Rich progress bar, `metrics.jsonl`, one-line messages."""

    def __init__(self, out_dir: Path, runtime: Runtime, quiet: bool, total: int, start: int, every: int,
                 title: str, headline: Sequence[str]):
        self.enabled, self.every, self.headline = runtime.main, every, headline
        self.sums: dict[str, float] = {}
        self.count, self.clips = 0, 0
        self.last: dict[str, float] = {}
        self.started = time.perf_counter()
        self.tick = self.started
        self.progress = None
        self.log = None
        if not self.enabled:
            return
        path = out_dir / METRICS_FILE
        if start and path.exists():  # drop lines past the checkpoint we resume from
            lines = [l for l in path.read_text().splitlines() if l.strip() and json.loads(l).get("step", 0) <= start]
            path.write_text("".join(l + "\n" for l in lines))
        self.log = open(path, "a", encoding="utf-8")
        if not quiet:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self.progress = Progress(TextColumn(f"[bold]{title}"), BarColumn(), MofNCompleteColumn(),
                                     TextColumn("{task.fields[info]}"), TimeRemainingColumn())
            self.task = self.progress.add_task(title, total=total, completed=start, info="")
            self.progress.start()

    def message(self, text: str) -> None:
        if self.enabled and self.progress is not None:
            self.progress.console.print(text)

    def update(self, step: int, lr: float, values: dict[str, float], clips: int) -> None:
        """Called after step `step` (1-based count of finished steps)."""
        if not self.enabled:
            return
        for k, v in values.items():
            self.sums[k] = self.sums.get(k, 0.0) + v
        self.count += 1
        self.clips += clips
        if self.every and step % self.every == 0:
            self.flush(step, lr)
        if self.progress is not None:
            self.progress.update(self.task, completed=step)

    def flush(self, step: int, lr: float) -> None:
        """Write the averages since the last record (also at the end of a run)."""
        if self.enabled and self.count:
            now = time.perf_counter()
            self.last = {k: v / self.count for k, v in self.sums.items()}
            rate = self.count / max(now - self.tick, 1e-9)
            record = {"step": step, "lr": lr, **self.last, "steps_per_s": rate,
                      "clips_per_s": self.clips / max(now - self.tick, 1e-9), "time": round(now - self.started, 3)}
            self.log.write(json.dumps(record) + "\n")
            self.log.flush()
            self.sums, self.count, self.clips, self.tick = {}, 0, 0, now
            if self.progress is not None:
                shown = " ".join(f"{k} {self.last[k]:.4g}" for k in self.headline if k in self.last)
                self.progress.update(self.task, info=f"{shown} lr {lr:.2e} {rate:.2f} it/s")

    def close(self) -> None:
        if self.progress is not None:
            self.progress.stop()
        if self.log is not None:
            self.log.close()


def _next_batch(batches: Iterator, stop: _Stop, save: Callable[[], None]):
    try:
        return next(batches)
    except Exception:
        # Ctrl-C also reaches the DataLoader workers, which then exit: that is the stop, not an error.
        if stop.signal is None:
            raise
        save()
        raise stop.error() from None


def weights_digest(module: nn.Module) -> str:
    """SHA-256 of a module's weights: equal digests mean bit-identical models (e.g. across ranks)."""
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def _nonfinite(values: dict[str, float], step: int, out_dir: Path) -> ModelError:
    bad = ", ".join(f"{k} = {v}" for k, v in values.items() if not math.isfinite(v))
    return ModelError(f"training diverged at step {step}: {bad}; this step was not applied",
                      f"the last checkpoint in {out_dir} is intact: resume from it with a lower lr")


# ------------------------------------------------------------------ previews

def _save_grid(path: Path, rows: list[torch.Tensor], max_frames: int = 8) -> None:
    """PNG of rows of clips [3, T, H, W]: each row shows up to `max_frames` evenly spaced frames."""
    from PIL import Image

    strips = []
    for clip in rows:
        clip = clip.detach().float().clamp(0, 1).cpu()
        index = torch.linspace(0, clip.shape[1] - 1, min(max_frames, clip.shape[1])).round().long()
        frames = clip[:, index]  # [3, n, H, W]
        strips.append(torch.cat(list(frames.permute(1, 0, 2, 3)), dim=2))  # [3, H, n*W]
    width = max(s.shape[2] for s in strips)
    grid = torch.cat([F.pad(s, (0, width - s.shape[2])) for s in strips], dim=1)
    image = (grid.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.tmp.png")
    Image.fromarray(image).save(temp)
    os.replace(temp, path)


def _preview_clips(dataset: Dataset, count: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Fixed clips for previews and PSNR: centre clips of the first videos."""
    base = dataset.dataset if isinstance(dataset, Subset) else dataset
    indices = dataset.indices[:count] if isinstance(dataset, Subset) else range(min(count, len(dataset)))
    if isinstance(base, VideoClipDataset):
        items = [(base.clip(i), base.items[i].label) for i in indices]
    else:
        items = [base[i] for i in indices]
    return torch.stack([v for v, _ in items]), torch.tensor([int(l) for _, l in items])
