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

import torch
import torch.nn.functional as F
from torch import nn

from .config import TRANSFORMER_PRESETS, TransformerConfig  # noqa: F401 (the presets, for importers)

LAYER_NORM_EPS = 1e-12  # TF_LAYERNORM_EPSILON of the official BERT
INIT_STD = 0.02


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
