"""Meeting the known pixels: the model's output shifted so that it joins the input without
a seam. Not in the official code, which only pastes the known pixels back (spec §8.5)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def seamless(output: torch.Tensor, video: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """`output` [B, 3, T, H, W] shifted, frame by frame, by the difference `video - output`
    over the known pixels (`keep`, broadcastable to [B, 1, T, H, W], True = known), carried
    smoothly into the unknown ones. The tokenizer never reproduces the known pixels exactly
    (a colour cast, a blur); without this, pasting them back leaves a seam and the pixels the
    model made up keep the cast. Frames with no known pixel are left as they are."""
    B, C, T, H, W = output.shape
    known = keep.expand(B, 1, T, H, W).to(output.dtype)

    def per_frame(x: torch.Tensor) -> torch.Tensor:
        return x.transpose(1, 2).reshape(B * T, x.shape[1], H, W)

    shift = pull_push(per_frame((video - output) * known), per_frame(known))
    return (output + shift.view(B, T, C, H, W).transpose(1, 2)).clamp(0, 1)


def paste_known(output: torch.Tensor, video: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """The known pixels of `video` pasted over `output`, the rest of `output` shifted to
    meet them (`seamless`)."""
    return torch.where(keep, video, seamless(output, video, keep))


def pull_push(values: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Fill images [N, C, H, W] where `weights` [N, 1, H, W] (0 = unknown, 1 = known; `values`
    already multiplied by them) is 0, from a weight-normalised image pyramid: each unknown
    pixel takes the average of the nearest known ones at the finest scale that has any.
    Known pixels keep their value; an image with no known pixel comes back as zeros."""
    levels = [(values, weights)]
    while min(levels[-1][0].shape[-2:]) > 1:
        v, w = levels[-1]
        levels.append((F.avg_pool2d(v, 2, ceil_mode=True), F.avg_pool2d(w, 2, ceil_mode=True)))
    v, w = levels[-1]
    filled = v / w.clamp_min(1e-8)
    for v, w in reversed(levels[:-1]):
        coarse = F.interpolate(filled, size=v.shape[-2:], mode="bilinear", align_corners=False)
        filled = torch.where(w > 0, v + (1 - w) * coarse, coarse)  # v is the weighted value (own * w)
    return filled
