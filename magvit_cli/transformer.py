"""The MAGVIT transformer: the "simplified BERT" of the official code.

Post-LayerNorm BERT with learned absolute positions, tanh-GELU MLPs and an output
head tied to the token embedding (official `videogvt/models/simplified_bert.py`).

Vocabulary (official `maskgvt_train_lib.get_bert_model`):
    [0, K)                 visual codes (K = codebook_size)
    K + c                  class c
    K + num_classes        UNCOND, the "no class" token
    last 16 (or 1) rows    special tokens, official negative ids n live at row V + n
                           (MASK -1 -> V - 1, task tokens -3 ... -7, PAD -15)
Sequence: [task token (multi-task models only), class token, N latent tokens].
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

import torch
import torch.nn.functional as F
from torch import nn

from .errors import ModelError, UsageError

LAYER_NORM_EPS = 1e-12  # TF_LAYERNORM_EPSILON of the official BERT
INIT_STD = 0.02
NUM_TASK_SLOTS = 16  # special-token rows of a multi-task model (official get_num_special_tokens)
MASK_ID = -1  # official task_registry.SpecialTokens.MASK

# Sanity bounds for configs read from files: far above any real model, low enough to
# reject corrupt values before they allocate memory.
_INT_BOUNDS = {
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
        for key, (low, high) in _INT_BOUNDS.items():
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


class SelfAttention(nn.Module):
    def __init__(self, config: TransformerConfig):
        super().__init__()
        d = config.hidden_size
        self.num_heads = config.num_heads
        self.dropout = config.attention_dropout
        self.query = nn.Linear(d, d)
        self.key = nn.Linear(d, d)
        self.value = nn.Linear(d, d)
        self.out = nn.Linear(d, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, length, d = x.shape
        q, k, v = (proj(x).view(b, length, self.num_heads, -1).transpose(1, 2)
                   for proj in (self.query, self.key, self.value))
        if self.training and self.dropout > 0:
            # Flax's attention dropout shares one mask over batch and heads
            # (broadcast_dropout=True), which scaled_dot_product_attention cannot express.
            probs = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1]), dim=-1)
            keep = torch.rand(probs.shape[-2:], device=x.device) >= self.dropout
            y = (probs * keep / (1 - self.dropout)) @ v
        else:
            y = F.scaled_dot_product_attention(q, k, v)
        return self.out(y.transpose(1, 2).reshape(b, length, d))


class Layer(nn.Module):
    """Post-LN BERT layer: x = LN(x + Attn(x)); x = LN(x + MLP(x))."""

    def __init__(self, config: TransformerConfig):
        super().__init__()
        d = config.hidden_size
        self.attention = SelfAttention(config)
        self.attention_ln = nn.LayerNorm(d, eps=LAYER_NORM_EPS)
        self.mlp_in = nn.Linear(d, config.mlp_dim)
        self.mlp_out = nn.Linear(config.mlp_dim, d)
        self.mlp_ln = nn.LayerNorm(d, eps=LAYER_NORM_EPS)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.attention_ln(x + self.dropout(self.attention(x)))
        h = self.mlp_out(F.gelu(self.mlp_in(x), approximate="tanh"))
        return self.mlp_ln(x + self.dropout(h))


class Transformer(nn.Module):
    """Bidirectional transformer mapping token ids [B, L] to logits [B, L, V]."""

    def __init__(self, config: TransformerConfig):
        super().__init__()
        self.config = config
        d = config.hidden_size
        self.word_embeddings = nn.Embedding(config.vocab_size, d)
        self.position_embeddings = nn.Embedding(config.seq_length, d)
        self.embeddings_ln = nn.LayerNorm(d, eps=LAYER_NORM_EPS)
        self.dropout = nn.Dropout(config.dropout)
        self.layers = nn.ModuleList(Layer(config) for _ in range(config.num_layers))
        self.head_dense = nn.Linear(d, d)
        self.head_ln = nn.LayerNorm(d, eps=LAYER_NORM_EPS)
        self.head_bias = nn.Parameter(torch.zeros(config.vocab_size))
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """Official init: truncated normal (±2σ, σ = 0.02) kernels and embeddings, zero biases."""
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                nn.init.trunc_normal_(module.weight, std=INIT_STD, a=-2 * INIT_STD, b=2 * INIT_STD)
                if getattr(module, "bias", None) is not None:
                    module.bias.zero_()
            elif isinstance(module, nn.LayerNorm):
                module.reset_parameters()
        self.head_bias.zero_()

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        positions = torch.arange(tokens.shape[1], device=tokens.device)
        x = self.embeddings_ln(self.word_embeddings(tokens) + self.position_embeddings(positions))
        x = self.dropout(x)
        for layer in self.layers:
            x = layer(x)
        h = self.head_ln(F.gelu(self.head_dense(x), approximate="tanh"))
        return F.linear(h, self.word_embeddings.weight, self.head_bias)  # tied output weights
