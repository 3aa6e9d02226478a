"""Inpainting masks: which pixels of which frames to fill, at the source's resolution.

`parse_mask` reads every form `--mask` takes:
  box, dynamic-box        the paper's IPC / IPD holes (half the width and height, central;
                          dynamic: moving from the left edge to the right over the video)
  x,y,w,h                 a box in pixels, or in fractions of the frame (0.25,0.25,0.5,0.5),
                          or in percent (25%,25%,50%,50%)
  x,y,w,h@t0-t1;...       keyframed boxes: each box holds over its frames t0..t1 (frame
                          numbers, or seconds with an s: 1.5s) and moves linearly to the
                          next one in between; no hole before the first or after the last
                          (@t alone is one frame, @t0- runs to the end)
  mask.png                a static mask (white = fill)
  masks/                  a folder of PNG/JPEG masks, one per frame
  mask.mp4                a mask video, one frame per frame
`dilate` grows the hole by that many pixels on every side. A mask is asked for frame
after frame (`Mask.at`), so a mask video streams like the video itself.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from . import video as vio
from .errors import InputError, UsageError

PRESETS = ("box", "dynamic-box")
FORMS = ("box, dynamic-box, x,y,w,h (pixels, fractions like 0.25 or percent like 25%), "
         "x,y,w,h@t0-t1;... (keyframed boxes; t in frames or seconds like 1.5s), "
         "a PNG mask, a folder of PNG masks or a mask video")

Box = tuple[float, float, float, float]  # x, y, w, h in pixels


class Mask(ABC):
    """A hole per frame: bool [H, W] at the source's size, True = fill."""

    kind: str
    spec: str
    static: bool = False
    notes: list[str]

    @abstractmethod
    def at(self, index: int) -> torch.Tensor:
        """The hole in frame `index` (frames are asked for in increasing order)."""

    def describe(self) -> dict:
        return {"kind": self.kind, "spec": self.spec}


@dataclass
class Keyframe:
    first: int
    last: int  # inclusive; may be math.inf
    box: Box


class BoxMask(Mask):
    """Boxes on a timeline: keyframes hold their box, boxes move linearly between keyframes."""

    def __init__(self, kind: str, spec: str, keyframes: list[Keyframe], size: tuple[int, int], dilate: int):
        self.kind, self.spec, self.keyframes, self.size, self.dilate = kind, spec, keyframes, size, dilate
        self.static = len(keyframes) == 1 and keyframes[0].first == 0 and keyframes[0].last == math.inf
        self.notes = []
        self._cache: tuple[tuple[int, int, int, int] | None, torch.Tensor] | None = None

    def box_at(self, index: int) -> tuple[int, int, int, int] | None:
        """Pixel rectangle (x0, y0, x1, y1) of the hole in frame `index`, dilated and
        clipped to the frame, or None."""
        box = None
        for i, key in enumerate(self.keyframes):
            if key.first <= index <= key.last:
                box = key.box
                break
            if i + 1 < len(self.keyframes) and key.last < index < self.keyframes[i + 1].first:
                after = self.keyframes[i + 1]
                a = (index - key.last) / (after.first - key.last)
                box = tuple(p + a * (q - p) for p, q in zip(key.box, after.box))
                break
        if box is None:
            return None
        height, width = self.size
        x, y, w, h = box
        d = self.dilate
        x0, y0 = max(0, round(x) - d), max(0, round(y) - d)
        x1, y1 = min(width, round(x + w) + d), min(height, round(y + h) + d)
        return (x0, y0, x1, y1) if x1 > x0 and y1 > y0 else None

    def at(self, index: int) -> torch.Tensor:
        rect = self.box_at(index)
        if self._cache is None or self._cache[0] != rect:
            mask = torch.zeros(self.size, dtype=torch.bool)
            if rect is not None:
                x0, y0, x1, y1 = rect
                mask[y0:y1, x0:x1] = True
            self._cache = (rect, mask)
        return self._cache[1]


class ImageMask(Mask):
    """One mask for every frame."""

    def __init__(self, spec: str, mask: torch.Tensor, notes: list[str]):
        self.kind, self.spec, self.mask, self.notes = "image", spec, mask, notes
        self.static = True

    def at(self, index: int) -> torch.Tensor:
        return self.mask


class FrameMasks(Mask):
    """One mask per frame from a folder of images or a video, read forward as frames come."""

    def __init__(self, kind: str, spec: str, path: Path, size: tuple[int, int], dilate: int):
        self.kind, self.spec, self.path, self.size, self.dilate = kind, spec, path, size, dilate
        self.notes = []
        self._frames = None
        self._index = -1
        self._current: torch.Tensor | None = None

    def at(self, index: int) -> torch.Tensor:
        if index < self._index:  # a new pass (a second window schedule): start over
            self._frames, self._index = None, -1
        if self._frames is None:
            self._frames = vio.iter_frames(self.path)
        while self._index < index:
            frame = next(self._frames, None)
            if frame is None:
                raise InputError(f"the mask {self.path} has only {self._index + 1} frames but frame {index} "
                                 "of the video needs one", "give one mask per video frame")
            self._index += 1
            if self._index == index:
                self._current = _to_mask(frame, self.size, self.dilate, self.notes, self.path)
        return self._current


def parse_mask(spec: str, size: tuple[int, int], num_frames: int, fps: Fraction, dilate: int = 0) -> Mask:
    """A `Mask` from a --mask value for a video of `size` (height, width), `num_frames` frames at `fps`."""
    if dilate < 0:
        raise UsageError(f"--dilate must be >= 0 pixels, got {dilate}")
    text = spec.strip()
    if not text:
        raise UsageError("--mask is empty", "give box, dynamic-box, x,y,w,h, keyframed boxes, or a mask file/folder")
    height, width = size
    if text == "box":
        box = (width // 4, height // 4, width * 3 // 4 - width // 4, height * 3 // 4 - height // 4)
        return BoxMask("box", text, [Keyframe(0, math.inf, box)], size, dilate)
    if text == "dynamic-box":
        # IPD: the box's left edge moves from 0 to W/2 over the clip (official dynamic_central).
        x, y, w, h = 0, height // 4, width // 2, height * 3 // 4 - height // 4
        last = max(num_frames - 1, 1)
        return BoxMask("dynamic-box", text, [Keyframe(0, 0, (x, y, w, h)), Keyframe(last, last, (w, y, w, h))],
                       size, dilate)
    if _looks_like_boxes(text):
        return _parse_boxes(text, size, num_frames, fps, dilate)
    path = Path(text).expanduser()
    if not path.exists():
        if "/" in text or Path(text).suffix:
            raise InputError(f"the mask file {text} does not exist", "check the path")
        raise UsageError(f"--mask {text!r} is not a mask", f"use {FORMS}")
    if path.is_dir() or path.suffix.lower() not in vio.IMAGE_SUFFIXES:
        info = vio.probe(path)
        if info.num_frames < num_frames:
            raise InputError(f"the mask {path} has {info.num_frames} frames but the video has {num_frames}",
                             "give one mask per video frame")
        return FrameMasks("folder" if path.is_dir() else "video", text, path, size, dilate)
    frame = next(vio.iter_frames(path))
    notes: list[str] = []
    return ImageMask(text, _to_mask(frame, size, dilate, notes, path), notes)


def _to_mask(frame: np.ndarray, size: tuple[int, int], dilate: int, notes: list[str], path: Path) -> torch.Tensor:
    """RGB uint8 -> bool [H, W]: bright pixels (mean > 127) are the hole; resized to `size` if needed."""
    mask = torch.from_numpy(frame.astype(np.float32).mean(axis=2) > 127.5)
    if tuple(mask.shape) != tuple(size):
        note = f"mask {path.name} is {mask.shape[1]}x{mask.shape[0]}: resized to the video's {size[1]}x{size[0]}"
        if note not in notes:
            notes.append(note)
        mask = F.interpolate(mask[None, None].float(), size=size, mode="nearest")[0, 0] > 0.5
    return dilate_mask(mask, dilate)


def dilate_mask(mask: torch.Tensor, pixels: int) -> torch.Tensor:
    """Grow a bool mask [H, W] by `pixels` on every side (square structuring element)."""
    if pixels <= 0 or not mask.any():
        return mask
    k = 2 * pixels + 1
    x = mask[None, None].float()
    x = F.max_pool2d(x, (1, k), stride=1, padding=(0, pixels))
    x = F.max_pool2d(x, (k, 1), stride=1, padding=(pixels, 0))
    return x[0, 0] > 0


# ---------------------------------------------------------------- box specs

def _looks_like_boxes(text: str) -> bool:
    return "," in text and not Path(text).expanduser().exists()


def _parse_boxes(text: str, size: tuple[int, int], num_frames: int, fps: Fraction, dilate: int) -> BoxMask:
    parts = [p.strip() for p in text.split(";") if p.strip()]
    if not parts:
        raise UsageError(f"--mask {text!r} holds no box", f"use {FORMS}")
    if len(parts) == 1 and "@" not in parts[0]:
        box = _parse_box(parts[0], size, text)
        return BoxMask("box", text, [Keyframe(0, math.inf, box)], size, dilate)
    keyframes = []
    for part in parts:
        box_text, at, times = part.partition("@")
        if not at:
            raise UsageError(f"--mask {text!r}: keyframe {part!r} has no @time",
                             "write each keyframe as x,y,w,h@t0-t1 (frames, or seconds like 2.5s)")
        first, last = _parse_times(times, fps, text)
        keyframes.append(Keyframe(first, last, _parse_box(box_text, size, text)))
    for before, after in zip(keyframes, keyframes[1:]):
        if after.first <= before.last:
            raise UsageError(f"--mask {text!r}: keyframes must follow each other in time without overlap")
    if keyframes[0].first >= num_frames:
        raise UsageError(f"--mask {text!r} starts at frame {keyframes[0].first} but the video has {num_frames} frames")
    return BoxMask("keyframes", text, keyframes, size, dilate)


def _parse_box(box_text: str, size: tuple[int, int], spec: str) -> Box:
    fields = [f.strip() for f in box_text.split(",")]
    if len(fields) != 4:
        raise UsageError(f"--mask {spec!r}: a box needs four numbers x,y,w,h, got {box_text.strip()!r}")
    try:
        values = [float(f.rstrip("%")) for f in fields]
    except ValueError:
        raise UsageError(f"--mask {spec!r}: {box_text.strip()!r} is not four numbers x,y,w,h") from None
    if not all(math.isfinite(v) for v in values):
        raise UsageError(f"--mask {spec!r}: box values must be finite numbers")
    height, width = size
    percent = [f.endswith("%") for f in fields]
    if any(percent) and not all(percent):
        raise UsageError(f"--mask {spec!r}: give all four box values in percent or none")
    if all(percent):
        values = [v / 100 for v in values]
    # Fractions: every value in [0, 1] and one written with a decimal point (0,0,1,1 is pixels).
    fractional = all(percent) or (all(0 <= v <= 1 for v in values) and any("." in f for f in fields))
    if fractional:
        values = [values[0] * width, values[1] * height, values[2] * width, values[3] * height]
    x, y, w, h = values
    if w <= 0 or h <= 0:
        raise UsageError(f"--mask {spec!r}: the box width and height must be positive")
    if x >= width or y >= height or x + w <= 0 or y + h <= 0:
        raise UsageError(f"--mask {spec!r}: the box {box_text.strip()} lies outside the {width}x{height} frame")
    return (x, y, w, h)


def _parse_times(times: str, fps: Fraction, spec: str) -> tuple[int, float]:
    first_text, dash, last_text = times.strip().partition("-")
    first = _parse_time(first_text, fps, spec)
    if not dash:
        return first, first
    last = math.inf if not last_text.strip() else _parse_time(last_text, fps, spec)
    if last < first:
        raise UsageError(f"--mask {spec!r}: keyframe time range {times.strip()!r} ends before it starts")
    return first, last


def _parse_time(text: str, fps: Fraction, spec: str) -> int:
    text = text.strip()
    try:
        if text.endswith("s"):
            seconds = Fraction(text[:-1])
            if seconds < 0:
                raise ValueError
            return round(seconds * fps)
        frame = int(text)
        if frame < 0:
            raise ValueError
        return frame
    except (ValueError, ZeroDivisionError):
        raise UsageError(f"--mask {spec!r}: {text!r} is not a time",
                         "use a frame number (12) or seconds (1.5s)") from None
