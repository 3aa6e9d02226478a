"""The 3D StyleGAN discriminator used to train the tokenizer as a VQGAN (spec §3.6).

Port of `videogvt/models/stylegan_discriminator_3d.py`: leaky ReLU 0.2, no
normalisation, residual blocks whose output is (shortcut + main) / sqrt(2), average
pooling with TensorFlow "SAME" semantics (a length-1 axis stays 1), flatten in
channels-last order, two dense layers. Module names map one-to-one onto the Flax tree
(`d_params`): conv_in = Conv_0, blocks.k = ResBlock_k (conv1 = Conv_0, shortcut = Conv_1,
conv2 = Conv_2), conv_out = Conv_1, dense = Dense_0, head = Dense_1.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from .errors import ModelError


@dataclass
class DiscriminatorConfig:
    filters: int = 64
    channel_multipliers: tuple[int, ...] = (2, 4, 4, 4)
    num_frames: int = 16
    resolution: tuple[int, int] = (64, 64)

    def __post_init__(self):
        self.channel_multipliers = tuple(int(m) for m in self.channel_multipliers)
        self.resolution = tuple(int(r) for r in self.resolution)
        if self.filters < 1 or not self.channel_multipliers or min(self.channel_multipliers) < 1:
            raise ModelError("discriminator filters and channel multipliers must be positive")
        if self.num_frames < 1 or min(self.resolution) < 1:
            raise ModelError("discriminator input size must be positive")

    @classmethod
    def for_tokenizer(cls, filters: int, num_frames: int, resolution: tuple[int, int]) -> "DiscriminatorConfig":
        """The official layout: the tokenizer's filters, multipliers (2, 4, 4, ...) with as many
        blocks as halve the short side down to 4 pixels: 4 blocks at 64², 5 at 128²."""
        blocks = max(1, int(math.log2(max(1, min(resolution) // 4))))
        return cls(filters, (2,) + (4,) * (blocks - 1), num_frames, tuple(resolution))

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def output_shape(self) -> tuple[int, int, int]:
        """(T, H, W) after the residual blocks: each halves every axis, rounding up."""
        t, (h, w) = self.num_frames, self.resolution
        for _ in self.channel_multipliers:
            t, h, w = -(-t // 2), -(-h // 2), -(-w // 2)
        return t, h, w


def avg_pool_same(x: torch.Tensor) -> torch.Tensor:
    """2×2×2 average pooling with TF 'SAME' padding: padding cells are not averaged in
    (`model_utils.tensorflow_style_avg_pooling`), so a length-1 axis is kept as is."""
    pads = []
    for size in reversed(x.shape[2:]):
        pads += [0, size % 2]
    if not any(pads):
        return F.avg_pool3d(x, 2, 2)
    ones = x.new_ones((1, 1, *x.shape[2:]))
    return F.avg_pool3d(F.pad(x, pads), 2, 2) / F.avg_pool3d(F.pad(ones, pads), 2, 2)


def _conv(cin: int, cout: int, kernel: int, bias: bool = True) -> nn.Conv3d:
    return nn.Conv3d(cin, cout, kernel, padding=kernel // 2, bias=bias)


class DiscriminatorBlock(nn.Module):
    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv1 = _conv(cin, cin, 3)
        self.shortcut = _conv(cin, cout, 1, bias=False)
        self.conv2 = _conv(cin, cout, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        main = avg_pool_same(F.leaky_relu(self.conv1(x), 0.2))
        main = F.leaky_relu(self.conv2(main), 0.2)
        shortcut = self.shortcut(avg_pool_same(x))
        return (shortcut + main) / math.sqrt(2)


class StyleGANDiscriminator(nn.Module):
    """Video [B, 3, T, H, W] in [0, 1] → realness logit [B, 1]."""

    def __init__(self, config: DiscriminatorConfig):
        super().__init__()
        self.config = config
        filters = config.filters
        self.conv_in = _conv(3, filters, 3)
        channels = [filters] + [filters * m for m in config.channel_multipliers]
        self.blocks = nn.ModuleList(DiscriminatorBlock(cin, cout) for cin, cout in zip(channels[:-1], channels[1:]))
        top = channels[-1]
        self.conv_out = _conv(top, top, 3)
        t, h, w = config.output_shape
        self.dense = nn.Linear(t * h * w * top, top)
        self.head = nn.Linear(top, 1)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # Flax default for this module: Xavier-uniform kernels, zero biases.
        for module in self.modules():
            if isinstance(module, (nn.Conv3d, nn.Linear)):
                nn.init.xavier_uniform_(module.weight)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        x = F.leaky_relu(self.conv_in(video), 0.2)
        for block in self.blocks:
            x = block(x)
        x = F.leaky_relu(self.conv_out(x), 0.2)
        x = x.permute(0, 2, 3, 4, 1).flatten(1)  # channels-last flatten, as the Flax Dense_0 expects
        x = F.leaky_relu(self.dense(x), 0.2)
        return self.head(x)
