"""Where the model looks and how its output goes back.

The model sees a fixed clip (T frames at H x W). A real video is bigger, longer, of
another aspect: each model window looks at a `View`, a rectangle of the canvas with the
model's aspect ratio (it may reach past the canvas: letterbox bars), resampled to the
model's size. Every resampling here is a matrix per axis (`resample_matrix`), so the
way in (canvas -> model, antialiased) and the way back (model -> canvas, bilinear) use
one and the same pixel-centre mapping at any scale and offset, and resampling at the
same size is the identity.

Edits are snapped to the token grid: a latent cell (T/t frames x H/h x W/w pixels at the
model's size) is generated when any of its pixels is unknown, so condition tokens never
mix known pixels with padding. Seams are feathered over one cell.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

EPS = 1e-6


# ---------------------------------------------------------------- 1-D resampling

def resample_matrix(n_out: int, n_in: int, start: float, length: float) -> torch.Tensor:
    """[n_out, n_in] weights resampling the span [start, start + length) of an axis of
    n_in samples onto n_out samples.

    Pixel centres as F.interpolate with align_corners=False; a triangle filter (bilinear),
    widened by the scale when shrinking (antialias, like PIL and torch's antialias=True).
    Positions past either end read the end sample (replicate padding)."""
    scale = length / n_out  # input samples per output sample
    support = max(scale, 1.0)
    centres = start + (torch.arange(n_out, dtype=torch.float64) + 0.5) * scale - 0.5
    taps = int(math.ceil(2 * support)) + 1
    index = torch.floor(centres - support).long()[:, None] + 1 + torch.arange(taps)[None, :]
    weight = (1 - (index.double() - centres[:, None]).abs() / support).clamp_min(0)
    matrix = torch.zeros(n_out, n_in, dtype=torch.float64)
    matrix.scatter_add_(1, index.clamp(0, n_in - 1), weight)
    return (matrix / matrix.sum(1, keepdim=True)).float()


def coverage_matrix(n_out: int, n_in: int, start: float, length: float) -> torch.Tensor:
    """[n_out, n_in] bool: input sample j ([j, j+1)) overlaps output sample i's footprint
    [start + i*s, start + (i+1)*s), s = length / n_out."""
    scale = length / n_out
    lo = start + torch.arange(n_out, dtype=torch.float64) * scale
    j = torch.arange(n_in, dtype=torch.float64)
    return (j[None, :] < (lo + scale)[:, None] - EPS) & (j[None, :] + 1 > lo[:, None] + EPS)


def inside(n_out: int, n_in: int, start: float, length: float) -> torch.Tensor:
    """[n_out] bool: output sample i's footprint lies within [0, n_in]."""
    scale = length / n_out
    lo = start + torch.arange(n_out, dtype=torch.float64) * scale
    return (lo >= -EPS) & (lo + scale <= n_in + EPS)


def nearest_index(n_out: int, start: float, length: float, n_model: int) -> torch.Tensor:
    """For canvas samples start.. (n_out of them), the model sample whose footprint holds
    their centre, when the model's n_model samples span `length` canvas samples from 0."""
    centres = start + torch.arange(n_out, dtype=torch.float64) + 0.5
    return torch.floor(centres * n_model / length).long().clamp(0, n_model - 1)


# ---------------------------------------------------------------- views

@dataclass(frozen=True)
class View:
    """The rectangle [x, x + w) x [y, y + h) of the canvas (canvas pixels; it may extend
    past the canvas) that the model sees at its `size` (height, width)."""

    x: float
    y: float
    w: float
    h: float
    size: tuple[int, int]

    @property
    def scale(self) -> float:
        """Canvas pixels per model pixel."""
        return self.w / self.size[1]

    def padding(self, canvas: tuple[int, int]) -> dict[str, int]:
        """Canvas pixels of letterbox on each side (the part of the view past the canvas)."""
        height, width = canvas
        return {"left": max(0, round(-self.x)), "top": max(0, round(-self.y)),
                "right": max(0, round(self.x + self.w - width)), "bottom": max(0, round(self.y + self.h - height))}

    def to_dict(self) -> dict:
        return {"x": round(self.x, 2), "y": round(self.y, 2), "width": round(self.w, 2), "height": round(self.h, 2),
                "scale": round(self.scale, 4)}


def letterbox(canvas: tuple[int, int], model: tuple[int, int]) -> View:
    """The smallest view of the model's aspect holding the whole canvas, centred."""
    height, width = canvas
    scale = max(width / model[1], height / model[0])
    w, h = model[1] * scale, model[0] * scale
    return View((width - w) / 2, (height - h) / 2, w, h, model)


def context_view(canvas: tuple[int, int], box: tuple[float, float, float, float], model: tuple[int, int]) -> View:
    """A view around `box` (x0, y0, x1, y1): twice its size (the edit in the central half,
    as the model was trained), never finer than one canvas pixel per model pixel, never
    larger than the letterbox of the whole canvas; shifted to stay on the canvas."""
    height, width = canvas
    mh, mw = model
    x0, y0, x1, y1 = box
    full = letterbox(canvas, model)
    w = max(2 * (x1 - x0), 2 * (y1 - y0) * mw / mh, mw)
    w = min(w, full.w)
    h = w * mh / mw
    x = _clamp((x0 + x1) / 2 - w / 2, min(0.0, width - w), max(0.0, width - w))
    y = _clamp((y0 + y1) / 2 - h / 2, min(0.0, height - h), max(0.0, height - h))
    return View(x, y, w, h, model)


def _clamp(value: float, lo: float, hi: float) -> float:
    return min(max(value, lo), hi)


# ---------------------------------------------------------------- frames in and out

@dataclass
class Sampler:
    """Resamples frames of a source placed at `offset` (x, y) on the canvas into a view,
    and views back onto canvas regions."""

    view: View
    source: tuple[int, int]  # height, width of the source frames
    offset: tuple[int, int] = (0, 0)

    def __post_init__(self):
        (mh, mw), (sh, sw) = self.view.size, self.source
        ox, oy = self.offset
        self.rows = resample_matrix(mh, sh, self.view.y - oy, self.view.h)
        self.cols = resample_matrix(mw, sw, self.view.x - ox, self.view.w)
        # The source rows/columns any weight reads: only they are converted to float.
        self.row_span = _span(self.rows)
        self.col_span = _span(self.cols)
        self.inside = (inside(mh, sh, self.view.y - oy, self.view.h)[:, None]
                       & inside(mw, sw, self.view.x - ox, self.view.w)[None, :])

    def to_model(self, frame: np.ndarray) -> torch.Tensor:
        """uint8 [h, w, 3] source frame -> float [3, H, W] in [0, 1] at the model's size."""
        (r0, r1), (c0, c1) = self.row_span, self.col_span
        pixels = torch.from_numpy(np.ascontiguousarray(frame[r0:r1, c0:c1])).permute(2, 0, 1).float().div_(255)
        return (self.rows[:, r0:r1] @ pixels @ self.cols[:, c0:c1].T).clamp_(0, 1)

    def mask_to_model(self, mask: torch.Tensor) -> torch.Tensor:
        """bool [h, w] at the source's size -> bool [H, W]: model pixels whose footprint
        touches a True pixel."""
        (mh, mw), (sh, sw) = self.view.size, self.source
        if not mask.any():
            return torch.zeros(mh, mw, dtype=torch.bool)
        ox, oy = self.offset
        rows = coverage_matrix(mh, sh, self.view.y - oy, self.view.h).float()
        cols = coverage_matrix(mw, sw, self.view.x - ox, self.view.w).float()
        return (rows @ mask.float() @ cols.T) > 0


def _span(matrix: torch.Tensor) -> tuple[int, int]:
    used = (matrix != 0).any(0).nonzero()[:, 0]
    return int(used[0]), int(used[-1]) + 1


def from_model(view: View, region: tuple[int, int, int, int], images: torch.Tensor) -> torch.Tensor:
    """Bilinear resampling of model-size images [..., H, W] onto the canvas region
    (x0, y0, x1, y1) -> [..., y1 - y0, x1 - x0]."""
    x0, y0, x1, y1 = region
    mh, mw = view.size
    rows = resample_matrix(y1 - y0, mh, (y0 - view.y) / view.scale, (y1 - y0) / view.scale)
    cols = resample_matrix(x1 - x0, mw, (x0 - view.x) / view.scale, (x1 - x0) / view.scale)
    return rows @ images.float() @ cols.T


def nearest_from_model(view: View, region: tuple[int, int, int, int], image: torch.Tensor) -> torch.Tensor:
    """Nearest-neighbour version of `from_model` for masks [H, W]."""
    x0, y0, x1, y1 = region
    mh, mw = view.size
    rows = nearest_index(y1 - y0, y0 - view.y, view.h, mh)
    cols = nearest_index(x1 - x0, x0 - view.x, view.w, mw)
    return image[rows][:, cols]


def fit_center(video: torch.Tensor, size: tuple[int, int]) -> tuple[torch.Tensor, str | None]:
    """Frames of `video` [B, 3, T, h, w] resized (aspect kept, antialiased) to cover `size`
    (H, W) and centre-cropped to it; and a note saying what was done (None: nothing)."""
    H, W = size
    B, C, T, h, w = video.shape
    if (h, w) == (H, W):
        return video, None
    scale = max(H / h, W / w)
    rh, rw = max(H, round(h * scale)), max(W, round(w * scale))
    frames = video.permute(0, 2, 1, 3, 4).reshape(B * T, C, h, w).float()
    frames = F.interpolate(frames, size=(rh, rw), mode="bilinear", antialias=True, align_corners=False)
    top, left = (rh - H) // 2, (rw - W) // 2
    frames = frames[:, :, top:top + H, left:left + W].clamp(0, 1)
    note = f"resized {w}x{h} to {rw}x{rh}" + (f" and cropped to {W}x{H}" if (rh, rw) != (H, W) else "")
    return frames.reshape(B, T, C, H, W).permute(0, 2, 1, 3, 4), note


# ---------------------------------------------------------------- the token grid

def cell_size(clip: tuple[int, int, int], grid: tuple[int, int, int]) -> tuple[int, int, int]:
    """Pixels per latent cell: (frames, rows, columns)."""
    return tuple(c // g for c, g in zip(clip, grid))


def snap(unknown: torch.Tensor, grid: tuple[int, int, int]) -> torch.Tensor:
    """bool [T, H, W] -> bool [t, h, w]: a latent cell is unknown when any of its pixels is."""
    T, H, W = unknown.shape
    t, h, w = grid
    cells = unknown.reshape(t, T // t, h, H // h, w, W // w)
    return cells.any(dim=5).any(dim=3).any(dim=1)


def expand_cells(cells: torch.Tensor, clip: tuple[int, int, int]) -> torch.Tensor:
    """bool [t, h, w] -> bool [T, H, W], every cell filling its pixels."""
    t, h, w = cells.shape
    T, H, W = clip
    return cells.repeat_interleave(T // t, 0).repeat_interleave(H // h, 1).repeat_interleave(W // w, 2)


def feather(region: torch.Tensor, radius: int) -> torch.Tensor:
    """bool [N, H, W] -> float alpha: 1 on the region, falling linearly to 0 over the
    2*radius + 1 pixels around it (a dilation by `radius`, then a box blur of that width)."""
    if radius < 1:
        return region.float()
    x = region.float().unsqueeze(1)
    k = 2 * radius + 1
    x = F.max_pool2d(x, k, stride=1, padding=radius)
    x = F.avg_pool2d(x, k, stride=1, padding=radius, count_include_pad=False)
    return torch.maximum(x.squeeze(1), region.float())


def box_distance(canvas_region: tuple[int, int, int, int], box: tuple[int, int, int, int]) -> torch.Tensor:
    """Chebyshev distance (pixels) of each pixel of the canvas region (x0, y0, x1, y1) to
    the box (bx0, by0, bx1, by1); 0 inside it. -> float [y1 - y0, x1 - x0]."""
    x0, y0, x1, y1 = canvas_region
    bx0, by0, bx1, by1 = box
    xs = torch.arange(x0, x1, dtype=torch.float32)
    ys = torch.arange(y0, y1, dtype=torch.float32)
    dx = torch.clamp(torch.maximum(bx0 - xs, xs - (bx1 - 1)), min=0)
    dy = torch.clamp(torch.maximum(by0 - ys, ys - (by1 - 1)), min=0)
    return torch.maximum(dy[:, None], dx[None, :])
