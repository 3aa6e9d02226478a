"""What a model is, as data: the ten tasks, the layouts of the tokenizer and the transformer,
and a model folder's config.json (ModelConfig), each checked before anything is allocated.

Nothing here imports PyTorch, so that reading a model's config (`magvit info`, the checks
before a model loads) stays fast; the modules that build the networks import these.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields

from .errors import ModelError, UsageError


# ----------------------------------------------------------------- tasks (spec §6)

# Official negative task ids (task_registry.SpecialTokens; also MASK -1, SEP -2, PAD -15).
# TASK_INPAINTING (-7) is unused: the released config gives inpainting the OUTPAINTING token.
FULL_GENERATION = -3
FRAME_PREDICTION = -4
FRAME_INTERPOLATION = -5
OUTPAINTING = -6


@dataclass(frozen=True)
class Task:
    id: str  # official task id
    short: str  # paper name
    title: str
    token: int  # official negative task id
    class_conditional: bool
    region: str  # condition geometry, see _pixel_mask / _latent_mask
    padding: str | None  # how unknown pixels are filled: edge / interpolate / constant

    @property
    def has_condition(self) -> bool:
        return self.region != "none"


TASKS: dict[str, Task] = {t.id: t for t in (
    Task("frame_prediction", "FP", "frame prediction", FRAME_PREDICTION, False, "first_frames", "edge"),
    Task("frame_interpolation", "FI", "frame interpolation", FRAME_INTERPOLATION, False, "end_frames", "interpolate"),
    Task("outpainting_c", "OPC", "central outpainting", OUTPAINTING, False, "central", "edge"),
    Task("outpainting_v", "OPV", "vertical outpainting", OUTPAINTING, False, "vertical", "edge"),
    Task("outpainting_h", "OPH", "horizontal outpainting", OUTPAINTING, False, "horizontal", "edge"),
    Task("outpainting_dv", "OPD", "dynamic outpainting", OUTPAINTING, False, "moving_strip", "constant"),
    Task("inpainting_c", "IPC", "central inpainting", OUTPAINTING, False, "central_hole", "constant"),
    Task("inpainting_dv", "IPD", "dynamic inpainting", OUTPAINTING, False, "moving_hole", "constant"),
    Task("full_generation", "CG", "class-conditional generation", FULL_GENERATION, True, "none", None),
    Task("frame_prediction_c", "CFP", "class-conditional frame prediction", FRAME_PREDICTION, True, "first_frames",
         "edge"),
)}


def get_task(task: Task | str) -> Task:
    """A task from its official id or its paper short name (case-insensitive)."""
    if isinstance(task, Task):
        return task
    key = str(task).lower()
    for t in TASKS.values():
        if key in (t.id, t.short.lower()):
            return t
    raise UsageError(f"unknown task {task!r}", f"use one of {', '.join(TASKS)}")


# ----------------------------------------------------------------- tokenizer (spec §3)

GROUPS = 32  # Flax GroupNorm default
PADDING_MODES = ("zeros", "reflect")

# Upper bounds for configs read from files: generous for real models, small enough
# that a hostile config.json cannot make us allocate terabytes.
MAX_TOKENIZER_PARAMETERS = 2_000_000_000
_TOKENIZER_INT_BOUNDS = {
    "filters": (1, 1024),
    "num_enc_res_blocks": (1, 16),
    "num_dec_res_blocks": (1, 16),
    "embedding_dim": (1, 8192),
    "codebook_size": (1, 1 << 20),
}
MAX_LEVELS = 8
MAX_MULTIPLIER = 16


@dataclass
class TokenizerConfig:
    filters: int = 64
    channel_multipliers: tuple[int, ...] = (1, 2, 4)
    temporal_downsample: tuple[bool, ...] = (True, True, False)
    num_enc_res_blocks: int = 2
    num_dec_res_blocks: int = 2
    embedding_dim: int = 256
    codebook_size: int = 1024
    padding_mode: str = "zeros"

    def __post_init__(self):
        self.channel_multipliers = tuple(self.channel_multipliers)
        self.temporal_downsample = tuple(self.temporal_downsample)
        self._validate()

    @property
    def num_levels(self) -> int:
        return len(self.channel_multipliers)

    @property
    def used_temporal_downsample(self) -> tuple[bool, ...]:
        """One flag per down/up-sampling stage; extra flags are ignored, as officially."""
        return self.temporal_downsample[: self.num_levels - 1]

    def to_dict(self) -> dict:
        d = asdict(self)
        d["channel_multipliers"] = list(self.channel_multipliers)
        d["temporal_downsample"] = list(self.temporal_downsample)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "TokenizerConfig":
        if not isinstance(d, dict):
            raise ModelError(f"tokenizer config must be a JSON object, got {type(d).__name__}")
        known = {f.name for f in fields(cls)}
        for key in d:
            if key not in known:
                raise ModelError(f"tokenizer config: unknown key {key!r}", f"known keys: {', '.join(sorted(known))}")
        for key in ("channel_multipliers", "temporal_downsample"):
            if key in d and not isinstance(d[key], (list, tuple)):
                raise ModelError(f"tokenizer config: {key!r} must be a list, got {d[key]!r}")
        return cls(**d)

    def num_parameters(self) -> int:
        """Exact parameter count (encoder + decoder + codebook), computed without building the model."""
        return sum(_count(spec) for spec in _layer_specs(self))

    def _validate(self):
        for key, (low, high) in _TOKENIZER_INT_BOUNDS.items():
            value = getattr(self, key)
            if not isinstance(value, int) or isinstance(value, bool):
                raise ModelError(f"tokenizer config: {key!r} must be an integer, got {value!r}")
            if not low <= value <= high:
                raise ModelError(f"tokenizer config: {key!r} = {value} is out of range [{low}, {high}]")
        mults = self.channel_multipliers
        if not 1 <= len(mults) <= MAX_LEVELS:
            raise ModelError(f"tokenizer config: 'channel_multipliers' needs 1 to {MAX_LEVELS} entries, got {len(mults)}")
        for m in mults:
            if not isinstance(m, int) or isinstance(m, bool) or not 1 <= m <= MAX_MULTIPLIER:
                raise ModelError(
                    f"tokenizer config: 'channel_multipliers' entries must be integers in [1, {MAX_MULTIPLIER}], got {m!r}"
                )
        for flag in self.temporal_downsample:
            if not isinstance(flag, bool):
                raise ModelError(f"tokenizer config: 'temporal_downsample' entries must be true/false, got {flag!r}")
        if len(self.temporal_downsample) < len(mults) - 1:
            raise ModelError(
                f"tokenizer config: 'temporal_downsample' needs at least {len(mults) - 1} flags "
                f"(one per down-sampling stage), got {len(self.temporal_downsample)}"
            )
        # Every group-normalised channel count is filters x an integer multiplier.
        if self.filters % GROUPS:
            raise ModelError(
                f"tokenizer config: 'filters' = {self.filters} is not a multiple of {GROUPS}, "
                f"which GroupNorm({GROUPS}) needs for every channel count"
            )
        if self.padding_mode not in PADDING_MODES:
            raise ModelError(f"tokenizer config: 'padding_mode' must be one of {PADDING_MODES}, got {self.padding_mode!r}")
        if self.num_parameters() > MAX_TOKENIZER_PARAMETERS:
            raise ModelError(
                f"tokenizer config describes {self.num_parameters():,} parameters, more than the {MAX_TOKENIZER_PARAMETERS:,} allowed"
            )


# ---------------------------------------------------------------------------
# The tokenizer's layer plan, for its parameter count without building it.


def _layer_specs(config: TokenizerConfig):
    """(kind, in_channels, out_channels) of every parameterised layer; kind in conv3/conv3b/conv1b/res/norm/codebook."""
    F_, mults = config.filters, config.channel_multipliers
    specs = [("conv3", 3, F_)]
    channels = F_
    for m in mults:
        for _ in range(config.num_enc_res_blocks):
            specs.append(("res", channels, F_ * m))
            channels = F_ * m
    specs += [("res", channels, channels)] * config.num_enc_res_blocks
    specs += [("norm", channels, channels), ("conv1b", channels, config.embedding_dim)]

    channels = F_ * mults[-1]
    specs.append(("conv3b", config.embedding_dim, channels))
    specs += [("res", channels, channels)] * config.num_dec_res_blocks
    for level in reversed(range(len(mults))):
        for _ in range(config.num_dec_res_blocks):
            specs.append(("res", channels, F_ * mults[level]))
            channels = F_ * mults[level]
        if level > 0:
            specs.append(("conv3b", channels, channels))
    specs += [("norm", channels, channels), ("conv3b", channels, 3)]
    specs.append(("codebook", config.codebook_size, config.embedding_dim))
    return specs


def _count(spec) -> int:
    kind, cin, cout = spec
    if kind == "conv3":
        return 27 * cin * cout
    if kind == "conv3b":
        return 27 * cin * cout + cout
    if kind == "conv1b":
        return cin * cout + cout
    if kind == "norm":
        return 2 * cin
    if kind == "codebook":
        return cin * cout
    shortcut = cin * cout if cin != cout else 0
    return 2 * cin + 27 * cin * cout + 2 * cout + 27 * cout * cout + shortcut


# Official layouts (spec §3.1): 128² for UCF-101/K600/SSv2, 64² for BAIR.
TOKENIZER_PRESETS: dict[str, TokenizerConfig] = {
    "bair-b": TokenizerConfig(filters=64, channel_multipliers=(1, 2, 4)),
    "bair-l": TokenizerConfig(filters=128, channel_multipliers=(1, 2, 4)),
    "ucf-b": TokenizerConfig(filters=64, channel_multipliers=(1, 2, 2, 4)),
    "ucf-l": TokenizerConfig(filters=128, channel_multipliers=(1, 2, 2, 4)),
}


# ----------------------------------------------------------------- transformer (spec §4)

NUM_TASK_SLOTS = 16  # special-token rows of a multi-task model (official get_num_special_tokens)
MASK_ID = -1  # official task_registry.SpecialTokens.MASK

# Sanity bounds for configs read from files: far above any real model, low enough to
# reject corrupt values before they allocate memory.
_TRANSFORMER_INT_BOUNDS = {
    "codebook_size": (1, 1 << 20),
    "num_classes": (0, 1 << 20),
    "hidden_size": (1, 1 << 15),
    "num_layers": (1, 512),
    "num_heads": (1, 1024),
    "mlp_dim": (1, 1 << 17),
}
_MAX_LATENT_SIDE = 4096
_MAX_LATENTS = 1 << 20


@dataclass
class TransformerConfig:
    codebook_size: int = 1024
    num_classes: int = 0
    multi_task: bool = True
    latent_shape: tuple[int, int, int] = (4, 16, 16)
    hidden_size: int = 768
    num_layers: int = 12
    num_heads: int = 12
    mlp_dim: int = 3072
    dropout: float = 0.1
    attention_dropout: float = 0.1

    def __post_init__(self):
        if isinstance(self.latent_shape, list):
            self.latent_shape = tuple(self.latent_shape)
        self._validate()

    def _validate(self) -> None:
        for key, (low, high) in _TRANSFORMER_INT_BOUNDS.items():
            value = getattr(self, key)
            if not isinstance(value, int) or isinstance(value, bool):
                raise ModelError(f"transformer config: {key} must be an integer, got {value!r}")
            if not low <= value <= high:
                raise ModelError(f"transformer config: {key} = {value} is outside [{low}, {high}]")
        if not isinstance(self.multi_task, bool):
            raise ModelError(f"transformer config: multi_task must be true or false, got {self.multi_task!r}")
        shape = self.latent_shape
        if (not isinstance(shape, tuple) or len(shape) != 3
                or not all(isinstance(s, int) and not isinstance(s, bool) for s in shape)):
            raise ModelError(f"transformer config: latent_shape must be three integers [t, h, w], got {shape!r}")
        if not all(1 <= s <= _MAX_LATENT_SIDE for s in shape) or math.prod(shape) > _MAX_LATENTS:
            raise ModelError(f"transformer config: latent_shape {list(shape)} is out of range")
        for key in ("dropout", "attention_dropout"):
            value = getattr(self, key)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0.0 <= value < 1.0:
                raise ModelError(f"transformer config: {key} must be a number in [0, 1), got {value!r}")
        if self.hidden_size % self.num_heads:
            raise ModelError(
                f"transformer config: hidden_size {self.hidden_size} is not divisible by num_heads {self.num_heads}")

    @property
    def num_special_tokens(self) -> int:
        return NUM_TASK_SLOTS if self.multi_task else 1

    @property
    def vocab_size(self) -> int:
        return self.codebook_size + self.num_classes + 1 + self.num_special_tokens

    @property
    def num_latents(self) -> int:
        return math.prod(self.latent_shape)

    @property
    def num_prefix(self) -> int:
        """Task token (multi-task only) + class token."""
        return 2 if self.multi_task else 1

    @property
    def seq_length(self) -> int:
        return self.num_latents + self.num_prefix

    @property
    def uncond_token(self) -> int:
        return self.codebook_size + self.num_classes

    @property
    def mask_token(self) -> int:
        return self.special_token(MASK_ID)

    def class_token(self, c: int) -> int:
        if not 0 <= c < self.num_classes:
            raise UsageError(f"class id {c} is out of range: this model has {self.num_classes} classes")
        return self.codebook_size + c

    def special_token(self, n: int) -> int:
        """Row of the official negative special id `n` (Flax's embedding wraps negative ids)."""
        if not -self.num_special_tokens <= n < 0:
            raise ModelError(f"special id {n} does not exist in a model with {self.num_special_tokens} special slots")
        return self.vocab_size + n

    def to_dict(self) -> dict:
        d = asdict(self)
        d["latent_shape"] = list(self.latent_shape)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> TransformerConfig:
        if not isinstance(d, dict):
            raise ModelError(f"transformer config must be a JSON object, got {type(d).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ModelError(f"transformer config: unknown key {unknown[0]!r}")
        return cls(**d)


# Sizes of the official configs (maskgvt_ucf101_config.py); vocabulary and latent grid
# come from the tokenizer and the dataset.
TRANSFORMER_PRESETS: dict[str, TransformerConfig] = {
    "b": TransformerConfig(hidden_size=768, num_layers=12, num_heads=12, mlp_dim=3072),
    "l": TransformerConfig(hidden_size=1024, num_layers=24, num_heads=16, mlp_dim=4096),
}


# ----------------------------------------------------------------- a model folder's config.json

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
        bad = [t for t in task_list if t not in TASKS]
        if bad:
            raise ModelError(f"config.json: unknown task {bad[0]!r}", hint=f"known tasks: {', '.join(TASKS)}")
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
