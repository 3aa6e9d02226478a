"""C3D, the UCF-101 action classifier behind the Inception Score of video models.

The TGANv2 model (pfnet-research/tgan2) as ported by the official code
(videogvt/train_lib/inception_score.py, spec §10.2): RGB -> BGR, frames resized to 112x112
with align-corners bilinear interpolation, x255 plus a learned per-voxel offset (minus the
training mean), eight 3x3x3 convolutions with max pooling, three dense layers -> 101 logits.

Weights (see metric_weights.py for the formats): the official Flax file `c3d_ucf101.flax`, a
PyTorch state dict in this module's layout, or a .safetensors from
`python -m magvit_cli.c3d SOURCE OUTPUT.safetensors`.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from .errors import InputError, MagvitError, ModelError
from .i3d import check_video
from .metric_weights import as_tensor, load_state, read_weights, save_safetensors
from .tokenizer import Conv3d

NUM_CLASSES = 101
NUM_FRAMES = 16
RESOLUTION = 112
WEIGHTS_HINT = ("pass --c3d with the C3D UCF-101 weights: the official c3d_ucf101.flax, a PyTorch state dict "
                "in magvit's C3D layout, or a .safetensors from `python -m magvit_cli.c3d`")
CONVS = {  # name: (in, out); pooling after conv1a (1x2x2) and after conv2a, conv3b, conv4b, conv5b (2x2x2)
    "conv1a": (3, 64), "conv2a": (64, 128), "conv3a": (128, 256), "conv3b": (256, 256),
    "conv4a": (256, 512), "conv4b": (512, 512), "conv5a": (512, 512), "conv5b": (512, 512),
}
POOL_AFTER = {"conv1a": (1, 2, 2), "conv2a": (2, 2, 2), "conv3b": (2, 2, 2), "conv4b": (2, 2, 2)}


class C3D(nn.Module):
    """[B, 3, 16, H, W] RGB in [0, 1] -> class logits [B, 101]."""

    def __init__(self):
        super().__init__()
        for name, (c_in, c_out) in CONVS.items():
            setattr(self, name, Conv3d(c_in, c_out, 3, padding=1))  # oneDNN on CPUs
        self.fc6 = nn.Linear(512 * 1 * 4 * 4, 4096)
        self.fc7 = nn.Linear(4096, 4096)
        self.fc8 = nn.Linear(4096, NUM_CLASSES)
        # Minus the training mean, per voxel, in the BGR [0, 255] input space.
        self.register_buffer("x_offset", torch.zeros(3, NUM_FRAMES, RESOLUTION, RESOLUTION))

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        check_video(video, NUM_FRAMES)
        if video.shape[2] != NUM_FRAMES:
            raise InputError(f"C3D takes clips of exactly {NUM_FRAMES} frames, got {video.shape[2]}")
        x = video.to(self.x_offset.device, torch.float32).flip(1)  # trained on BGR
        x = resize_align_corners(resize_align_corners(x, RESOLUTION, -2), RESOLUTION, -1)
        x = x * 255.0 + self.x_offset
        for name in CONVS:
            x = F.relu(getattr(self, name)(x))
            if name in POOL_AFTER:
                x = F.max_pool3d(x, POOL_AFTER[name])
        x = F.max_pool3d(F.pad(x, (0, 1, 0, 1)), 2)  # pad H and W by one at the end, then pool
        x = F.relu(self.fc6(x.flatten(1)))  # channel-first flattening, as the official transpose
        x = F.relu(self.fc7(x))
        return self.fc8(x)

    @torch.inference_mode()
    def logits(self, video: torch.Tensor) -> torch.Tensor:
        return self(video).float()


def resize_align_corners(x: torch.Tensor, size: int, dim: int) -> torch.Tensor:
    """Chainer-style bilinear resize of one dim (corners aligned), by the official tent-weight matrix."""
    n = x.shape[dim]
    if n == size:
        return x
    scale = torch.tensor((size - 1) / (n - 1), dtype=torch.float32)
    sample = torch.arange(size, dtype=torch.float32) / scale
    weights = (1 - (sample[None, :] - torch.arange(n, dtype=torch.float32)[:, None]).abs()).clamp_min(0)
    out = torch.movedim(x, dim, -1) @ weights.to(x.device, x.dtype)
    return torch.movedim(out, -1, dim)


def state_dict_from_file(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    flat = read_weights(path, "C3D weights", WEIGHTS_HINT)
    if "fc8.weight" in flat:  # PyTorch layout
        return {k: as_tensor(v) for k, v in flat.items()}
    leaves = {name.removeprefix("params/"): value for name, value in flat.items()}
    state = {}
    for name, value in leaves.items():
        value = as_tensor(value)
        layer, _, leaf = name.rpartition("/")
        if name == "x_offset":
            state[name] = value.permute(3, 0, 1, 2)  # [T, H, W, C] -> [C, T, H, W]
        elif leaf == "kernel" and value.dim() == 5:
            state[f"{layer}.weight"] = value.permute(4, 3, 0, 1, 2)
        elif leaf == "kernel":
            state[f"{layer}.weight"] = value.t()
        elif leaf == "bias":
            state[f"{layer}.bias"] = value
        else:
            state[name] = value  # reported as unexpected by load_state
    return state


def load_c3d(path: str | os.PathLike | None, device: str | torch.device | None = None) -> C3D:
    if path is None:
        raise ModelError("the Inception Score needs the C3D UCF-101 weights and none were given", hint=WEIGHTS_HINT)
    model = C3D()
    load_state(model, state_dict_from_file(path), "C3D weights", WEIGHTS_HINT)
    return model.eval().requires_grad_(False).to(device or "cpu")


def convert(source: str | os.PathLike, output: str | os.PathLike) -> Path:
    model = C3D()
    load_state(model, state_dict_from_file(source), "C3D weights", WEIGHTS_HINT)
    return save_safetensors(model.state_dict(), output)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m magvit_cli.c3d",
                                     description="Convert C3D UCF-101 weights (official .flax or a PyTorch state "
                                                 "dict) to a .safetensors file for `magvit eval --c3d`.")
    parser.add_argument("source")
    parser.add_argument("output")
    args = parser.parse_args(argv)
    try:
        print(convert(args.source, args.output))
    except MagvitError as e:
        parser.exit(e.exit_code, f"error: {e}\n")
    return 0


if __name__ == "__main__":
    main()
