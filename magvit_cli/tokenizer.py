"""The 3D-VQ tokenizer: a 3D-CNN VQ-VAE that turns a clip into a grid of code ids.

A faithful port of the official `videogvt/models/vqvae.py` (VQVAE, VectorQuantizer)
and `videogvt/models/enc_dec_3dcnn.py` (Encoder, Decoder, ResBlock). Layout is
PyTorch's [B, C, T, H, W]; pixels are in [0, 1] and are fed to the encoder as is.

Module names mirror the official ones so that the converter stays a simple table:
`encoder.res_blocks.k` is Flax `encoder/ResBlock_k`, `decoder.upsamples.j.conv` is
`decoder/Conv_{j+1}`, and so on (see magvit_cli/convert.py).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .config import GROUPS, TOKENIZER_PRESETS, TokenizerConfig  # noqa: F401 (the presets, for importers)
from .errors import InputError

# Quantizer loss weights of every official config (vqgan2d_ucf101_config.py).
COMMITMENT_COST = 0.25
CODEBOOK_COST = 1.0
ENTROPY_COST = 0.1
ENTROPY_TEMPERATURE = 0.01

NORM_EPS = 1e-6  # Flax GroupNorm default (PyTorch's is 1e-5)


# ---------------------------------------------------------------------------
# Building blocks (videogvt/models/model_utils.py, enc_dec_3dcnn.py).


class Conv3d(nn.Conv3d):
    """nn.Conv3d that runs oneDNN's kernel for CPU inference. PyTorch's heuristic sends a single
    clip with few channels x frames x rows (< 20480) to a slow im2col kernel, 2-6x slower at the
    tokenizer's low-resolution levels and at batch 1 (benchmarks/task_speed.py); the results
    agree to float32 rounding. Under autocast the plain path runs (F.conv3d is what autocast
    casts to bf16), and under torch.compile too: the compiler picks its own kernels and
    cannot trace this call."""

    def _conv_forward(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        if (x.device.type == "cpu" and x.dtype == torch.float32 and weight.dtype == torch.float32
                and not torch.is_autocast_enabled("cpu") and not torch.compiler.is_compiling()
                and self.padding_mode == "zeros" and not torch.is_grad_enabled()
                and torch.backends.mkldnn.is_available()):
            return torch.mkldnn_convolution(x, weight, bias, self.padding, self.stride, self.dilation, self.groups)
        return super()._conv_forward(x, weight, bias)


def _conv3(cin: int, cout: int, bias: bool, padding_mode: str) -> nn.Conv3d:
    # 'SAME' padding of a 3x3x3 kernel: one voxel on every side.
    return Conv3d(cin, cout, kernel_size=3, padding=1, bias=bias, padding_mode=padding_mode)


def _norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(GROUPS, channels, eps=NORM_EPS)


def downsample(x: torch.Tensor, temporal: bool) -> torch.Tensor:
    """Average pool by 2 in H, W (and T): TF 'SAME' pooling, padding excluded from the mean."""
    kernel = (2 if temporal else 1, 2, 2)
    return F.avg_pool3d(x, kernel, stride=kernel, ceil_mode=True)


class ResBlock(nn.Module):
    """GroupNorm -> swish -> conv3 -> GroupNorm -> swish -> conv3, plus a 1x1x1 shortcut when channels change."""

    def __init__(self, cin: int, cout: int, padding_mode: str):
        super().__init__()
        self.norm1 = _norm(cin)
        self.conv1 = _conv3(cin, cout, bias=False, padding_mode=padding_mode)
        self.norm2 = _norm(cout)
        self.conv2 = _conv3(cout, cout, bias=False, padding_mode=padding_mode)
        self.shortcut = Conv3d(cin, cout, kernel_size=1, bias=False) if cin != cout else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        return h + self.shortcut(x)


class Upsample(nn.Module):
    """Nearest-neighbour x2 in H, W (and T), then a 3x3x3 conv with bias ('nearest+conv')."""

    def __init__(self, channels: int, temporal: bool, padding_mode: str):
        super().__init__()
        self.temporal = temporal
        self.conv = _conv3(channels, channels, bias=True, padding_mode=padding_mode)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, scale_factor=(2 if self.temporal else 1, 2, 2), mode="nearest")
        return self.conv(x)


class Encoder(nn.Module):
    def __init__(self, config: TokenizerConfig):
        super().__init__()
        F_, mults, pad = config.filters, config.channel_multipliers, config.padding_mode
        self.blocks_per_level = config.num_enc_res_blocks
        self.temporal_downsample = config.used_temporal_downsample
        self.conv_in = _conv3(3, F_, bias=False, padding_mode=pad)
        # All ResBlocks in execution order: num_enc_res_blocks per level, then as many at the bottom.
        channels, blocks = F_, []
        for m in mults:
            for _ in range(config.num_enc_res_blocks):
                blocks.append(ResBlock(channels, F_ * m, pad))
                channels = F_ * m
        blocks += [ResBlock(channels, channels, pad) for _ in range(config.num_enc_res_blocks)]
        self.res_blocks = nn.ModuleList(blocks)
        self.norm_out = _norm(channels)
        self.conv_out = Conv3d(channels, config.embedding_dim, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv_in(x)
        blocks = iter(self.res_blocks)
        for temporal in [*self.temporal_downsample, None]:  # one entry per level; the last one keeps its size
            for _ in range(self.blocks_per_level):
                x = next(blocks)(x)
            if temporal is not None:
                x = downsample(x, temporal)
        for block in blocks:  # the bottom blocks
            x = block(x)
        return self.conv_out(F.silu(self.norm_out(x)))


class Decoder(nn.Module):
    def __init__(self, config: TokenizerConfig):
        super().__init__()
        F_, mults, pad = config.filters, config.channel_multipliers, config.padding_mode
        self.blocks_per_level = config.num_dec_res_blocks
        channels = F_ * mults[-1]
        self.conv_in = _conv3(config.embedding_dim, channels, bias=True, padding_mode=pad)
        blocks = [ResBlock(channels, channels, pad) for _ in range(config.num_dec_res_blocks)]
        upsamples = []
        for level in reversed(range(len(mults))):
            for _ in range(config.num_dec_res_blocks):
                blocks.append(ResBlock(channels, F_ * mults[level], pad))
                channels = F_ * mults[level]
            if level > 0:
                # The flags are consumed in reverse: level i up-samples with flag i-1.
                upsamples.append(Upsample(channels, config.temporal_downsample[level - 1], pad))
        self.res_blocks = nn.ModuleList(blocks)
        self.upsamples = nn.ModuleList(upsamples)
        self.norm_out = _norm(channels)
        self.conv_out = _conv3(channels, 3, bias=True, padding_mode=pad)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = self.conv_in(z)
        blocks = iter(self.res_blocks)
        for _ in range(self.blocks_per_level):  # the bottom blocks
            x = next(blocks)(x)
        for upsample in [*self.upsamples, None]:  # levels from the latent up to the pixels
            for _ in range(self.blocks_per_level):
                x = next(blocks)(x)
            if upsample is not None:
                x = upsample(x)
        return self.conv_out(F.silu(self.norm_out(x)))


class VectorQuantizer(nn.Module):
    """Nearest-code lookup in squared Euclidean distance (videogvt/models/vqvae.py VectorQuantizer)."""

    def __init__(self, codebook_size: int, embedding_dim: int):
        super().__init__()
        # Official init: variance scaling 1.0, fan_in (= codebook_size for a [K, D] array), uniform.
        bound = math.sqrt(3.0 / codebook_size)
        self.codebook = nn.Parameter(torch.empty(codebook_size, embedding_dim).uniform_(-bound, bound))

    def distances(self, z: torch.Tensor) -> torch.Tensor:
        """[B, D, t, h, w] -> [B*t*h*w, K]: ||z||² - 2 z·c + ||c||², always in float32."""
        with torch.autocast(device_type=z.device.type, enabled=False):
            flat = z.movedim(1, -1).reshape(-1, z.shape[1]).float()
            codebook = self.codebook.float()
            return (
                flat.pow(2).sum(1, keepdim=True)
                - 2 * flat @ codebook.t()
                + codebook.pow(2).sum(1)[None, :]
            )

    def lookup(self, codes: torch.Tensor) -> torch.Tensor:
        """[B, t, h, w] ids -> [B, D, t, h, w] code vectors."""
        return F.embedding(codes, self.codebook).movedim(-1, 1)

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Returns (codes [B,t,h,w], code vectors [B,D,t,h,w], distances [N, K])."""
        distances = self.distances(z)
        codes = distances.argmin(dim=1).view(z.shape[0], *z.shape[2:])  # first index on ties
        return codes, self.lookup(codes).to(z.dtype), distances


def entropy_loss(distances: torch.Tensor, temperature: float = ENTROPY_TEMPERATURE) -> torch.Tensor:
    """Per-vector entropy minus codebook-usage entropy (videogvt/train_lib/losses.py entropy_loss, 'softmax')."""
    affinity = -distances.float() / temperature
    probs = affinity.softmax(dim=-1)
    log_probs = affinity.log_softmax(dim=-1)  # the official "+ 1e-5" inside log_softmax is a no-op shift
    avg_probs = probs.mean(dim=0)
    usage_entropy = -(avg_probs * torch.log(avg_probs + 1e-5)).sum()
    sample_entropy = -(probs * log_probs).sum(dim=-1).mean()
    return sample_entropy - usage_entropy


class VQTokenizer(nn.Module):
    def __init__(self, config: TokenizerConfig):
        super().__init__()
        self.config = config
        self.encoder = Encoder(config)
        self.decoder = Decoder(config)
        self.quantizer = VectorQuantizer(config.codebook_size, config.embedding_dim)

    def latent_shape(self, T: int, H: int, W: int) -> tuple[int, int, int]:
        """Token grid (t, h, w) of a T x H x W clip."""
        return self.latent_shape_for(self.config, T, H, W)

    @staticmethod
    def latent_shape_for(config: TokenizerConfig, T: int, H: int, W: int) -> tuple[int, int, int]:
        for temporal in config.used_temporal_downsample:  # ceil: 'SAME' pooling keeps a partial window
            T, H, W = (-(-T // 2) if temporal else T), -(-H // 2), -(-W // 2)
        return T, H, W

    def encode_latents(self, video: torch.Tensor) -> torch.Tensor:
        """[B, 3, T, H, W] in [0, 1] -> raw encoder output [B, D, t, h, w]."""
        if video.dim() != 5 or video.shape[1] != 3:
            raise InputError(f"expected a video tensor [B, 3, T, H, W], got shape {tuple(video.shape)}")
        return self.encoder(video)

    def quantize(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        codes, quantized, _ = self.quantizer(z)
        return codes, quantized

    def encode(self, video: torch.Tensor) -> torch.Tensor:
        return self.quantize(self.encode_latents(video))[0]

    def decode_latents(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z)

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """[B, t, h, w] ids -> [B, 3, T, H, W], not clipped (clip to [0, 1] for display)."""
        if codes.dim() != 4:
            raise InputError(f"expected a token grid [B, t, h, w], got shape {tuple(codes.shape)}")
        if codes.numel() and (codes.min() < 0 or codes.max() >= self.config.codebook_size):
            raise InputError(
                f"token ids must lie in [0, {self.config.codebook_size}), got {int(codes.min())}..{int(codes.max())}"
            )
        return self.decoder(self.quantizer.lookup(codes.long()))

    def forward(self, video: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Training pass: reconstruction through the straight-through estimator, and the quantizer losses."""
        z = self.encode_latents(video)
        codes, quantized, distances = self.quantizer(z)
        commitment = COMMITMENT_COST * F.mse_loss(z.float(), quantized.detach().float())
        codebook = CODEBOOK_COST * F.mse_loss(quantized.float(), z.detach().float())
        entropy = ENTROPY_COST * entropy_loss(distances)
        recon = self.decoder(z + (quantized - z).detach())
        losses = {
            "commitment": commitment,
            "codebook": codebook,
            "entropy": entropy,
            "quantizer": commitment + codebook + entropy,
        }
        return recon, losses
