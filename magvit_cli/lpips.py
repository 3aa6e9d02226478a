"""LPIPS (Zhang et al. 2018) with VGG-16 features, the perceptual distance the paper reports on BAIR.

The official release cannot compute it (its TF-Hub LPIPS models are stripped, spec §10.3), so
this follows the reference `lpips` package (version 0.1, net='vgg'): inputs scaled to [-1, 1]
and normalised by its fixed shift/scale, the ReLU outputs of the five VGG-16 stages
unit-normalised over channels, squared differences weighted by learned 1x1 "lin" layers,
averaged over pixels and summed over stages. Videos are scored per frame and averaged over
frames, like PSNR and SSIM.

Weights: one file (see metric_weights.py for the formats) holding the VGG-16 convolutions,
named as in torchvision (`features.0.weight`, ...) or as in the lpips package
(`net.slice1.0.weight`, ...), and the five lin layers (`lin0.model.1.weight` as in the lpips
package's vgg.pth, or `lin0.weight`). Merging torchvision's vgg16 state dict with the lpips
package's vgg.pth gives such a file.
"""

from __future__ import annotations

import os
import re

import torch
from torch import nn

from .errors import ModelError
from .metric_weights import as_tensor, load_state, read_weights

WEIGHTS_HINT = ("pass --lpips with one file holding the VGG-16 features (torchvision names features.N.* or lpips "
                "names net.sliceK.N.*) and the LPIPS lin layers (lin0.model.1.weight ... lin4.model.1.weight)")
SHIFT = (-0.030, -0.088, -0.188)  # lpips ScalingLayer
SCALE = (0.458, 0.448, 0.450)
VGG16 = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512)
TAPS = (3, 8, 15, 22, 29)  # indices in `features` of relu1_2, relu2_2, relu3_3, relu4_3, relu5_3
CHANNELS = (64, 128, 256, 512, 512)
EPS = 1e-10


class LPIPS(nn.Module):
    """Frames [N, 3, H, W] in [0, 1] (two batches) -> distance per frame [N]."""

    def __init__(self):
        super().__init__()
        layers: list[nn.Module] = []
        channels = 3
        for item in VGG16:
            if item == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers += [nn.Conv2d(channels, item, 3, padding=1), nn.ReLU()]
                channels = item
        self.features = nn.Sequential(*layers)
        for i, c in enumerate(CHANNELS):
            setattr(self, f"lin{i}", nn.Conv2d(c, 1, 1, bias=False))
        self.register_buffer("shift", torch.tensor(SHIFT).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("scale", torch.tensor(SCALE).view(1, 3, 1, 1), persistent=False)

    def _taps(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = ((x * 2 - 1) - self.shift) / self.scale
        taps = []
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in TAPS:
                taps.append(x / (x.pow(2).sum(dim=1, keepdim=True).sqrt() + EPS))
        return taps

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        total = 0
        for i, (fa, fb) in enumerate(zip(self._taps(a), self._taps(b))):
            total = total + getattr(self, f"lin{i}")((fa - fb) ** 2).mean(dim=(1, 2, 3))
        return total

    @torch.inference_mode()
    def videos(self, a: torch.Tensor, b: torch.Tensor, chunk: int = 32) -> torch.Tensor:
        """Mean over frames of the per-frame distance, for videos [B, 3, T, H, W] in [0, 1] -> [B] float64."""
        if a.shape != b.shape or a.dim() != 5:
            raise ValueError(f"expected two videos [B, 3, T, H, W] of one shape, "
                             f"got {tuple(a.shape)} and {tuple(b.shape)}")
        device = self.lin0.weight.device
        frames_a = a.transpose(1, 2).flatten(0, 1)
        frames_b = b.transpose(1, 2).flatten(0, 1)
        scores = torch.cat([self(frames_a[i:i + chunk].to(device, torch.float32),
                                 frames_b[i:i + chunk].to(device, torch.float32))
                            for i in range(0, frames_a.shape[0], chunk)])
        return scores.double().view(a.shape[0], a.shape[2]).mean(dim=1).cpu()


_LPIPS_SLICE = re.compile(r"^net\.slice\d\.(\d+)\.(weight|bias)$")
_LIN = re.compile(r"^lin(\d)\.(?:model\.1\.)?weight$")


def state_dict_from_file(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    state = {}
    for name, value in read_weights(path, "LPIPS weights", WEIGHTS_HINT).items():
        name = name.replace("/", ".")
        if name.startswith(("classifier.", "scaling_layer.")):
            continue  # torchvision's VGG classifier and lpips' fixed constants are not used
        if m := _LPIPS_SLICE.match(name):
            name = f"features.{m.group(1)}.{m.group(2)}"
        elif m := _LIN.match(name):
            name = f"lin{m.group(1)}.weight"
        state[name] = as_tensor(value)
    return state


def load_lpips(path: str | os.PathLike | None, device: str | torch.device | None = None) -> LPIPS:
    if path is None:
        raise ModelError("LPIPS needs VGG-16 and LPIPS lin-layer weights and none were given", hint=WEIGHTS_HINT)
    model = LPIPS()
    load_state(model, state_dict_from_file(path), "LPIPS weights", WEIGHTS_HINT)
    return model.eval().requires_grad_(False).to(device or "cpu")
