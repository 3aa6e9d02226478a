"""What a training run is told to do: the settings of both stages, the named presets
(the official recipes and CPU-sized ones), `key=value` overrides and config files, and
the range checks every run passes before it starts (`magvit_cli.train` runs them).

    config = preset("tokenizer", "small")
    config = load_config_file(config, "run.yaml")        # optional
    config = apply_overrides(config, ["steps=5000", "tokenizer.codebook_size=512"])
"""

from __future__ import annotations

import dataclasses
import json
import math
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from . import tasks as task_lib
from .checkpoint import MAX_CLIP_VOXELS, MAX_PARAMETERS, transformer_parameters
from .errors import MagvitError, UsageError
from .config import TOKENIZER_PRESETS, TRANSFORMER_PRESETS, TokenizerConfig, TransformerConfig

PRECISIONS = ("auto", "float32", "bfloat16")
# Upper bounds of settings that size allocations (index lists, worker processes, batches),
# so a mistyped or hostile config file fails in `validate` rather than in malloc.
MAX_BATCH_SIZE = 1 << 16
MAX_WORKERS = 256
MAX_BATCH_VOXELS = 1 << 32  # batch_size x frames x height x width: 48 GiB of float32 RGB
MAX_DISCRIMINATOR_FILTERS = 4096


@dataclass
class TokenizerTrainConfig:
    """Stage 1. Defaults are the official BAIR-B recipe (vqgan3d_bair_config.py 'B')."""

    tokenizer: TokenizerConfig = field(default_factory=lambda: TOKENIZER_PRESETS["bair-b"])
    num_frames: int = 16
    resolution: tuple[int, int] = (64, 64)
    frame_stride: int = 1
    flip: bool = True
    discriminator_filters: int = 0  # 0: the tokenizer's filters (official)
    discriminator_multipliers: tuple[int, ...] = ()  # (): (2, 4, 4, ...) down to 4x4 pixels (official)
    batch_size: int = 128  # global, over all processes
    steps: int = 135_200  # 400 epochs of 338 steps
    warmup_steps: int = 338  # one epoch
    lr: float = 1e-4
    beta1: float = 0.0
    beta2: float = 0.99
    eps: float = 1e-8
    ema_decay: float = 0.999
    adversarial_weight: float = 0.1
    r1_weight: float = 10.0
    lecam_weight: float = 0.0  # off in every released config
    lecam_decay: float = 0.999
    perceptual_model: str = ""  # TorchScript image classifier; empty: no perceptual loss (as released)
    perceptual_weight: float = 0.1
    seed: int = 0
    num_workers: int = 4
    log_every: int = 10
    save_every: int = 1000
    preview_every: int = 1000
    precision: str = "auto"  # auto: bfloat16 autocast on CUDA GPUs that support it, float32 otherwise
    overfit_one_clip: bool = False
    # Train the decoder alone: encoder and codebook stay as they are, so the fine-tuned tokenizer
    # makes the same tokens and a transformer trained on them still fits (with --init).
    decoder_only: bool = False


@dataclass
class TransformerTrainConfig:
    """Stage 2. Defaults are the official BAIR frame-prediction B recipe (maskgvt_bair_config.py)."""

    transformer: TransformerConfig = field(default_factory=lambda: TRANSFORMER_PRESETS["b"])
    tasks: tuple[str, ...] = ("frame_prediction",)
    task_weights: tuple[float, ...] = ()  # one per task, how often it is trained (official <task>.weight); (): all 1
    cond_frames: int = 1
    cond_latent_frames: int = 1
    frame_stride: int = 1
    flip: bool = True
    batch_size: int = 256
    steps: int = 67_600
    warmup_steps: int = 5000
    lr: float = 1e-4
    beta1: float = 0.9
    beta2: float = 0.96
    eps: float = 1e-8
    weight_decay: float = 0.045
    grad_clip: float = 1.0
    label_smoothing: float = 1e-4
    seed: int = 0
    num_workers: int = 4
    log_every: int = 10
    save_every: int = 1000
    preview_every: int = 1000
    precision: str = "auto"
    overfit_one_clip: bool = False


# ------------------------------------------------------------------ presets

def _tokenizer_preset(name: str, batch: int, steps: int, warmup: int, resolution: int) -> TokenizerTrainConfig:
    return TokenizerTrainConfig(tokenizer=TOKENIZER_PRESETS[name], resolution=(resolution, resolution),
                                batch_size=batch, steps=steps, warmup_steps=warmup)


# Official runs (spec §9.1): epochs x steps/epoch, warm-up one epoch.
TOKENIZER_TRAIN_PRESETS: dict[str, Callable[[], TokenizerTrainConfig]] = {
    "bair-b": lambda: _tokenizer_preset("bair-b", 128, 135_200, 338, 64),
    "bair-l": lambda: _tokenizer_preset("bair-l", 256, 135_200, 169, 64),
    "ucf-b": lambda: _tokenizer_preset("ucf-b", 128, 37_000, 74, 128),
    "ucf-l": lambda: _tokenizer_preset("ucf-l", 256, 74_000, 37, 128),
    # CPU-sized: 1.8 M parameters, 16 x 64², trains visibly in minutes.
    "small": lambda: TokenizerTrainConfig(
        tokenizer=TokenizerConfig(filters=32, channel_multipliers=(1, 2, 2), num_enc_res_blocks=1,
                                  num_dec_res_blocks=1, embedding_dim=64, codebook_size=256),
        discriminator_filters=16, batch_size=4, steps=2000, warmup_steps=100, lr=3e-4, ema_decay=0.99,
        num_workers=2, log_every=10, save_every=500, preview_every=250),
    # 0.5 M parameters at 16 x 32²: smoke tests and demos.
    "tiny": lambda: TokenizerTrainConfig(
        tokenizer=TokenizerConfig(filters=32, channel_multipliers=(1, 1, 1), num_enc_res_blocks=1,
                                  num_dec_res_blocks=1, embedding_dim=16, codebook_size=64),
        resolution=(32, 32), discriminator_filters=8, batch_size=4, steps=500, warmup_steps=20, lr=3e-4,
        ema_decay=0.99, num_workers=2, log_every=10, save_every=250, preview_every=100),
}

MT8_TASKS = ("frame_prediction", "frame_interpolation", "outpainting_h", "outpainting_v", "outpainting_c",
             "outpainting_dv", "inpainting_c", "inpainting_dv")


def _transformer_preset(size: str, tasks: tuple[str, ...], steps: int) -> TransformerTrainConfig:
    return TransformerTrainConfig(transformer=TRANSFORMER_PRESETS[size], tasks=tasks, steps=steps)


# Official runs (spec §9.2): batch 256, warm-up 5000, 169 steps/epoch (BAIR), 37 (UCF).
TRANSFORMER_TRAIN_PRESETS: dict[str, Callable[[], TransformerTrainConfig]] = {
    "bair-b": lambda: _transformer_preset("b", ("frame_prediction",), 67_600),
    "bair-l": lambda: _transformer_preset("l", ("frame_prediction",), 135_200),
    "bair-mt8-b": lambda: _transformer_preset("b", MT8_TASKS, 202_800),
    "bair-mt8-l": lambda: _transformer_preset("l", MT8_TASKS, 270_400),
    "ucf-b": lambda: _transformer_preset("b", ("full_generation",), 74_000),
    "ucf-l": lambda: _transformer_preset("l", ("full_generation",), 74_000),
    "small": lambda: TransformerTrainConfig(
        transformer=TransformerConfig(hidden_size=256, num_layers=4, num_heads=4, mlp_dim=1024),
        batch_size=8, steps=2000, warmup_steps=100, lr=3e-4, num_workers=2, save_every=500, preview_every=250),
    "small-mt8": lambda: TransformerTrainConfig(
        transformer=TransformerConfig(hidden_size=256, num_layers=4, num_heads=4, mlp_dim=1024), tasks=MT8_TASKS,
        batch_size=8, steps=4000, warmup_steps=100, lr=3e-4, num_workers=2, save_every=500, preview_every=250),
    "tiny": lambda: TransformerTrainConfig(
        transformer=TransformerConfig(hidden_size=64, num_layers=2, num_heads=2, mlp_dim=128),
        batch_size=4, steps=500, warmup_steps=20, lr=3e-4, num_workers=2, save_every=250, preview_every=100),
}


def preset(stage: str, name: str) -> TokenizerTrainConfig | TransformerTrainConfig:
    """A fresh copy of a named preset of stage "tokenizer" or "transformer"."""
    table = TOKENIZER_TRAIN_PRESETS if stage == "tokenizer" else TRANSFORMER_TRAIN_PRESETS
    if name not in table:
        raise UsageError(f"unknown {stage} training preset {name!r}", f"choose one of {', '.join(table)}")
    return table[name]()


# ------------------------------------------------------------------ overrides

def apply_overrides(config, overrides: Sequence[str]):
    """Set `key=value` pairs (dotted keys reach nested configs, e.g. `tokenizer.filters=32`).
    Values are parsed by the field's type; returns a new validated config."""
    updates: dict[str, Any] = {}
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"override {item!r} is not of the form key=value")
        node = updates
        *parents, leaf = key.strip().split(".")
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise UsageError(f"override {item!r} conflicts with another override of {part!r}")
        node[leaf] = value.strip()
    return update_config(config, updates)


def load_config_file(config, path: str | Path):
    """Apply a JSON or YAML file of (nested) settings to `config`."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise UsageError(f"cannot read config file {path}: {error.strerror}") from None
    try:
        if path.suffix.lower() in (".yaml", ".yml"):
            import yaml

            values = yaml.safe_load(text)
        else:
            values = json.loads(text)
    except Exception as error:  # parser errors of either format
        raise UsageError(f"{path} is not valid {'YAML' if path.suffix.lower() in ('.yaml', '.yml') else 'JSON'}: {error}") from None
    if not isinstance(values, dict):
        raise UsageError(f"{path} must hold a mapping of settings")
    return update_config(config, values)


def update_config(config, values: dict, prefix: str = ""):
    hints = typing.get_type_hints(type(config))
    names = [f.name for f in dataclasses.fields(config)]
    changes = {}
    for key, value in values.items():
        if key not in names:
            raise UsageError(f"unknown setting {prefix + key!r}", f"settings of this section: {', '.join(names)}")
        current = getattr(config, key)
        if dataclasses.is_dataclass(current):
            if not isinstance(value, dict):
                raise UsageError(f"setting {prefix + key!r} is a section: set its keys, e.g. {prefix + key}.<name>=...")
            changes[key] = update_config(current, value, f"{prefix}{key}.")
        else:
            changes[key] = _coerce(value, hints[key], prefix + key)
    try:
        new = dataclasses.replace(config, **changes)
    except MagvitError as error:  # nested model configs validate themselves
        raise UsageError(str(error)) from None
    if isinstance(new, (TokenizerTrainConfig, TransformerTrainConfig)):
        validate(new)
    return new


def _coerce(value, kind, key: str):
    try:
        if typing.get_origin(kind) is tuple:
            if isinstance(value, str):  # "1,2,4" or "[1, 2, 4]" from the command line
                text = value.strip()
                value = json.loads(text) if text.startswith("[") else [v.strip() for v in text.split(",") if v.strip()]
            if not isinstance(value, (list, tuple)):
                raise ValueError
            args = typing.get_args(kind)
            if len(args) == 2 and args[1] is Ellipsis:
                return tuple(_coerce(v, args[0], key) for v in value)
            if len(value) != len(args):
                raise ValueError
            return tuple(_coerce(v, a, key) for v, a in zip(value, args))
        if kind is bool:
            if isinstance(value, bool):
                return value
            if isinstance(value, str) and value.lower() in ("true", "1", "yes", "on", "false", "0", "no", "off"):
                return value.lower() in ("true", "1", "yes", "on")
            raise ValueError
        if kind is int:
            if isinstance(value, bool):
                raise ValueError
            if isinstance(value, str):
                value = float(value) if any(c in value for c in ".eE") else int(value)
            if isinstance(value, float) and value.is_integer():
                value = int(value)
            if not isinstance(value, int):
                raise ValueError
            return value
        if kind is float:
            if isinstance(value, bool):
                raise ValueError
            return float(value)
        if kind is str:
            return str(value)
    except (ValueError, TypeError, json.JSONDecodeError):
        pass
    name = getattr(kind, "__name__", str(kind))
    raise UsageError(f"setting {key!r}: {value!r} is not a valid {name}")


# ------------------------------------------------------------------ checks

def validate(config) -> None:
    """Range checks shared by both stages; raises UsageError naming the setting."""
    def need(ok: bool, key: str, what: str):
        if not ok:
            raise UsageError(f"setting {key!r} = {getattr(config, key)!r}: {what}")

    need(1 <= config.batch_size <= MAX_BATCH_SIZE, "batch_size", f"must be in [1, {MAX_BATCH_SIZE}]")
    need(config.steps >= 1, "steps", "must be at least 1")
    need(config.warmup_steps >= 0, "warmup_steps", "must be >= 0")
    need(config.lr > 0 and math.isfinite(config.lr), "lr", "must be a positive number")
    need(0 <= config.beta1 < 1, "beta1", "must be in [0, 1)")
    need(0 <= config.beta2 < 1, "beta2", "must be in [0, 1)")
    need(config.eps > 0, "eps", "must be positive")
    need(config.frame_stride >= 1, "frame_stride", "must be at least 1")
    need(0 <= config.num_workers <= MAX_WORKERS, "num_workers", f"must be in [0, {MAX_WORKERS}]")
    for key in ("log_every", "save_every", "preview_every"):
        need(getattr(config, key) >= 0, key, "must be >= 0 (0 turns it off)")
    need(config.precision in PRECISIONS, "precision", f"must be one of {', '.join(PRECISIONS)}")
    if isinstance(config, TokenizerTrainConfig):
        need(1 <= config.num_frames <= 1024, "num_frames", "must be in [1, 1024]")
        need(len(config.resolution) == 2 and all(8 <= r <= 8192 for r in config.resolution), "resolution",
             "must be [height, width], each in [8, 8192]")
        voxels = config.num_frames * config.resolution[0] * config.resolution[1]
        need(voxels <= MAX_CLIP_VOXELS, "resolution", f"num_frames x height x width must be at most {MAX_CLIP_VOXELS:,}")
        need(config.batch_size * voxels <= MAX_BATCH_VOXELS, "batch_size",
             f"batch_size x num_frames x height x width must be at most {MAX_BATCH_VOXELS:,}")
        need(0 <= config.ema_decay < 1, "ema_decay", "must be in [0, 1)")
        need(0 <= config.lecam_decay < 1, "lecam_decay", "must be in [0, 1)")
        for key in ("adversarial_weight", "r1_weight", "lecam_weight", "perceptual_weight"):
            need(getattr(config, key) >= 0, key, "must be >= 0")
        need(0 <= config.discriminator_filters <= MAX_DISCRIMINATOR_FILTERS, "discriminator_filters",
             f"must be in [0, {MAX_DISCRIMINATOR_FILTERS}] (0: the tokenizer's)")
        need(len(config.discriminator_multipliers) <= 16 and all(1 <= m <= 64 for m in config.discriminator_multipliers),
             "discriminator_multipliers", "must be at most 16 values in [1, 64]")
    else:
        need(len(config.tasks) >= 1, "tasks", "name at least one task")
        unknown = [t for t in config.tasks if t not in task_lib.TASKS]
        need(not unknown, "tasks", f"unknown task {unknown[:1]}; known: {', '.join(task_lib.TASKS)}")
        need(len(set(config.tasks)) == len(config.tasks), "tasks", "lists a task twice")
        need(not config.task_weights or len(config.task_weights) == len(config.tasks), "task_weights",
             f"give one weight per task ({len(config.tasks)}), or none for equal weights")
        need(all(math.isfinite(w) and w > 0 for w in config.task_weights), "task_weights", "must be positive numbers")
        need(config.cond_frames >= 1, "cond_frames", "must be at least 1")
        need(config.cond_latent_frames >= 1, "cond_latent_frames", "must be at least 1")
        need(config.weight_decay >= 0, "weight_decay", "must be >= 0")
        need(config.grad_clip >= 0, "grad_clip", "must be >= 0 (0 turns clipping off)")
        need(0 <= config.label_smoothing < 1, "label_smoothing", "must be in [0, 1)")
        parameters = transformer_parameters(config.transformer)
        if parameters > MAX_PARAMETERS:
            raise UsageError(f"the transformer settings describe {parameters:,} parameters, more than the "
                             f"{MAX_PARAMETERS:,} allowed", "use a smaller hidden_size, mlp_dim or num_layers")
