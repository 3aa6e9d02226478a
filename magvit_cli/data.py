"""Training data: random fixed-length clips from a folder of videos or a manifest.

A source is either
  * a folder of video files; files inside sub-folders get the sub-folder name as
    their class (the UCF-101 layout `root/ApplyEyeMakeup/v_*.avi`), files directly
    in the folder are unlabelled;
  * a CSV file with a header (`path,label[,start,end]`) or a JSONL file with one
    object per line (`{"path": ..., "label": ..., "start": ..., "end": ...}`);
    relative paths are relative to the manifest, `start`/`end` are in seconds.

Every file is probed once when the dataset is built: files that cannot be opened or
decoded are skipped, counted and listed in a warning (`dataset.unreadable`).
Clips are decoded inside DataLoader workers. All randomness of a clip (start frame,
crop, flip) comes from a generator seeded by (seed, epoch, index), so a clip does not
depend on the number of workers and a resumed run sees exactly the same data.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import signal
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from .errors import InputError
from .video import av, iter_frames, probe

VIDEO_SUFFIXES = {
    ".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".mpg", ".mpeg", ".gif",
    ".wmv", ".flv", ".ogv", ".3gp", ".ts", ".mts",
}
MANIFEST_SUFFIXES = {".csv", ".jsonl"}


@dataclass(frozen=True)
class VideoItem:
    """One readable video (or a time range of it) with its class index."""

    path: str
    label: int
    num_frames: int  # frames in [start, end), as far as the container tells
    fps: float
    first_frame: int = 0  # first frame index of the range


@dataclass(frozen=True)
class _Entry:
    path: Path
    label: str | int | None
    start: float | None = None
    end: float | None = None


def seed_for(*parts: int | str) -> int:
    """A 63-bit seed derived from any tuple of ints/strings (stable across processes)."""
    digest = hashlib.sha256("/".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


# ---------------------------------------------------------------- listing sources

def _scan_folder(root: Path) -> list[_Entry]:
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES)
    entries = []
    for path in files:
        parts = path.relative_to(root).parts
        entries.append(_Entry(path, parts[0] if len(parts) > 1 else None))
    labelled = {e.label is not None for e in entries}
    if len(labelled) > 1:
        loose = [str(e.path) for e in entries if e.label is None][:5]
        raise InputError(
            f"{root} mixes videos in class sub-folders with videos directly inside it (e.g. {', '.join(loose)})",
            "put every video in a class sub-folder, or use a flat folder for unlabelled data",
        )
    return entries


def _read_manifest(path: Path) -> list[_Entry]:
    rows: list[dict] = []
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise InputError(f"cannot read manifest {path}: {error.strerror}") from None
    if path.suffix.lower() == ".csv":
        reader = csv.DictReader(text.splitlines())
        if not reader.fieldnames or "path" not in reader.fieldnames:
            raise InputError(f"manifest {path} has no 'path' column", "the first line must be a header like path,label,start,end")
        rows = list(reader)
    else:
        for number, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as error:
                raise InputError(f"{path}:{number}: not valid JSON ({error.msg})") from None
            if not isinstance(row, dict) or "path" not in row:
                raise InputError(f"{path}:{number}: each line must be an object with a 'path' key")
            rows.append(row)

    def seconds(value, key: str, number: int) -> float | None:
        if value is None or value == "":
            return None
        try:
            value = float(value)
        except (TypeError, ValueError):
            raise InputError(f"{path}: entry {number} has a non-numeric {key!r}: {value!r}") from None
        if value < 0:
            raise InputError(f"{path}: entry {number} has a negative {key!r}")
        return value

    entries = []
    for number, row in enumerate(rows, 1):
        file = Path(str(row["path"])).expanduser()
        if not file.is_absolute():
            file = path.parent / file
        label = row.get("label")
        if label == "":
            label = None
        start, end = seconds(row.get("start"), "start", number), seconds(row.get("end"), "end", number)
        if start is not None and end is not None and end <= start:
            raise InputError(f"{path}: entry {number} has end <= start")
        entries.append(_Entry(file, label, start, end))
    return entries


def _class_names(entries: Sequence[_Entry], given: Sequence[str] | None) -> list[str]:
    labels = {e.label for e in entries if e.label is not None}
    if not labels:
        return list(given or [])
    if given:
        names = list(given)
        unknown = sorted(str(l) for l in labels if not isinstance(l, int) and str(l) not in names)
        if unknown:
            raise InputError(f"labels not among the model's classes: {', '.join(unknown[:10])}")
        return names
    if all(isinstance(l, int) or str(l).lstrip("-").isdigit() for l in labels):
        # Integer labels from a manifest: classes are 0..max, named by their index.
        top = max(int(l) for l in labels)
        return [f"class_{i}" for i in range(top + 1)]
    return sorted(str(l) for l in labels)


def _label_index(label, class_names: list[str]) -> int:
    if label is None:
        return 0
    if isinstance(label, int) or (str(label).lstrip("-").isdigit() and str(label) not in class_names):
        index = int(label)
        if not 0 <= index < max(1, len(class_names)):
            raise InputError(f"label {index} is out of range for {len(class_names)} classes")
        return index
    return class_names.index(str(label))


# ---------------------------------------------------------------- decoding

def _probe(entry: _Entry) -> tuple[int, float, int]:
    """(frames in range, fps, first frame index); raises InputError on unreadable files."""
    info = probe(entry.path)
    fps = float(info.fps)
    first = int(round(entry.start * fps)) if entry.start is not None else 0
    last = min(info.num_frames, int(round(entry.end * fps))) if entry.end is not None else info.num_frames
    if last <= first:
        raise ValueError(f"time range {entry.start}-{entry.end}s is outside the video ({info.duration:.2f}s)")
    return last - first, fps, first


def decode_frames(path: str, start: int, count: int) -> np.ndarray:
    """Frames [start, start + count) as uint8 [n, H, W, 3] (n < count if the video ends early)."""
    frames = list(iter_frames(path, start, start + count))
    if not frames:
        raise ValueError(f"no frame at index {start} or later")
    return np.stack(frames)


def resize_crop(clip: torch.Tensor, size: tuple[int, int], offset: tuple[float, float]) -> torch.Tensor:
    """Resize [3, T, H, W] so it covers `size`, then crop at relative offset (0.5, 0.5 = centre)."""
    _, _, height, width = clip.shape
    out_h, out_w = size
    scale = max(out_h / height, out_w / width)
    new_h, new_w = max(out_h, round(height * scale)), max(out_w, round(width * scale))
    if (new_h, new_w) != (height, width):
        frames = clip.permute(1, 0, 2, 3)  # [T, 3, H, W] for 2D interpolation
        frames = F.interpolate(frames, size=(new_h, new_w), mode="bilinear", antialias=True, align_corners=False)
        clip = frames.permute(1, 0, 2, 3)
    top = round((new_h - out_h) * offset[0])
    left = round((new_w - out_w) * offset[1])
    return clip[:, :, top:top + out_h, left:left + out_w].clamp(0, 1)


# ---------------------------------------------------------------- dataset

class VideoClipDataset(Dataset):
    """Clips of `num_frames` frames, every `stride`-th frame, as float [3, T, H, W] in [0, 1].

    `train=True`: random start, random crop, optional horizontal flip (p = 0.5).
    `train=False`: centre window, centre crop, no flip (fixed clips for evaluation and
    for the token cache). Videos shorter than a clip repeat their last frame.
    Items are `(video, label)` with `label` an int (0 for unlabelled data).
    """

    def __init__(self, source: str | Path, *, num_frames: int = 16, resolution: tuple[int, int] = (64, 64),
                 stride: int = 1, train: bool = True, flip: bool = True, seed: int = 0,
                 class_names: Sequence[str] | None = None, probe_threads: int | None = None):
        source = Path(source).expanduser()
        if not source.exists():
            raise InputError(f"data not found: {source}")
        if source.is_dir():
            entries = _scan_folder(source)
        elif source.suffix.lower() in MANIFEST_SUFFIXES:
            entries = _read_manifest(source)
        else:
            raise InputError(f"{source} is neither a folder of videos nor a .csv/.jsonl manifest")
        if not entries:
            raise InputError(f"no video files in {source}", f"expected files ending in {', '.join(sorted(VIDEO_SUFFIXES))}")
        if num_frames < 1 or stride < 1:
            raise InputError("num_frames and stride must be at least 1")

        self.source = source
        self.num_frames, self.resolution, self.stride = num_frames, tuple(resolution), stride
        self.train, self.flip, self.seed = train, flip, seed
        self.epoch = 0
        self.class_names = _class_names(entries, class_names)

        threads = probe_threads or min(16, (os.cpu_count() or 1) * 2)
        with ThreadPoolExecutor(threads) as pool:
            results = list(pool.map(_probe_or_error, entries))
        self.items: list[VideoItem] = []
        self.unreadable: list[tuple[str, str]] = []
        for entry, result in zip(entries, results):
            if isinstance(result, str):
                self.unreadable.append((str(entry.path), result))
            else:
                frames, fps, first = result
                label = _label_index(entry.label, self.class_names)
                self.items.append(VideoItem(str(entry.path), label, frames, fps, first))
        if self.unreadable:
            if not self.items:
                path, reason = self.unreadable[0]
                raise InputError(f"none of the {len(entries)} videos in {source} can be read; the first, {path}: "
                                 f"{reason}", "check that the folder holds playable videos")
            warnings.warn(f"skipping {len(self.unreadable)} of {len(entries)} videos that cannot be read:\n"
                          f"{self.unreadable_report()}", stacklevel=2)

    def unreadable_report(self, limit: int = 20) -> str:
        lines = [f"  {path}: {reason}" for path, reason in self.unreadable[:limit]]
        if len(self.unreadable) > limit:
            lines.append(f"  ... and {len(self.unreadable) - limit} more")
        return "\n".join(lines)

    def set_epoch(self, epoch: int) -> None:
        """Change the random clips drawn per video (call before iterating a new epoch)."""
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.items)

    def clip(self, index: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """The clip of item `index`: random if a generator is given, else the centre clip."""
        item = self.items[index]
        span = (self.num_frames - 1) * self.stride + 1
        room = max(0, item.num_frames - span)
        start = int(torch.randint(room + 1, (1,), generator=generator)) if generator is not None else room // 2
        frames = decode_frames(item.path, item.first_frame + start, span)
        if len(frames) < span:
            # Video shorter than a clip (or shorter than its header said): repeat the last frame.
            frames = np.concatenate([frames, np.repeat(frames[-1:], span - len(frames), axis=0)])
        frames = frames[::self.stride]
        clip = torch.from_numpy(frames).permute(3, 0, 1, 2).float().div_(255)
        if generator is not None:
            offset = tuple(float(v) for v in torch.rand(2, generator=generator))
            clip = resize_crop(clip, self.resolution, offset)
            if self.flip and bool(torch.rand((), generator=generator) < 0.5):
                clip = clip.flip(-1)
        else:
            clip = resize_crop(clip, self.resolution, (0.5, 0.5))
        return clip.contiguous()

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.get(index, self.epoch)

    def get(self, index: int, epoch: int) -> tuple[torch.Tensor, int]:
        """Item `index` as drawn in `epoch` (the trainer addresses items this way)."""
        # A file that probed fine can still fail mid-stream (truncated data): say so and use the next one.
        for attempt in range(min(len(self.items), 10)):
            current = (index + attempt) % len(self.items)
            generator = None
            if self.train:
                generator = torch.Generator().manual_seed(seed_for(self.seed, epoch, current))
            try:
                return self.clip(current, generator), self.items[current].label
            except (InputError, av.FFmpegError, ValueError, OSError) as error:
                warnings.warn(f"skipping unreadable clip {self.items[current].path}: {error}")
        raise InputError(f"10 videos in a row failed to decode (starting at {self.items[index].path})")


def _probe_or_error(entry: _Entry) -> tuple[int, float, int] | str:
    try:
        return _probe(entry)
    except InputError as error:
        return error.message.replace(f"{entry.path} ", "").replace(f"{entry.path}: ", "")
    except (av.FFmpegError, ValueError, OSError) as error:
        return str(error).strip() or type(error).__name__


def worker_init(worker_id: int) -> None:
    """DataLoader worker setup: one decoding thread per worker keeps the cores for the workers.

    Workers ignore SIGINT and SIGTERM: Ctrl-C, `timeout` and job schedulers signal the whole
    process group, and a worker that died of it would crash the main process before it
    could save its checkpoint. The main process stops them itself after saving (and they
    exit on their own if it dies: PyTorch's workers watch their parent)."""
    torch.set_num_threads(1)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


# ---------------------------------------------------------------- token cache

class TokenCache(Dataset):
    """Frozen-tokenizer tokens of fixed clips, computed once and kept in a folder.

    Stage 2 on a CPU spends most of its time in the tokenizer; the cache runs it once
    per clip (and once per task condition video) instead of every step. The price: each
    video contributes one fixed centre clip with no crop/flip augmentation, so use it for
    small data or CPU experiments, not for a full-scale run.

    Files: `tokens.npy` [N, t, h, w], `cond_<name>.npy` per condition, `labels.npy`,
    `meta.json` (what the tokens depend on; a mismatch rebuilds the cache).
    Items are `(tokens, {name: cond_tokens}, label)`.
    """

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        try:
            meta = json.loads((self.folder / "meta.json").read_text())
            self.tokens = _load_ids(self.folder / "tokens.npy")
            self.labels = _load_ids(self.folder / "labels.npy")
            self.cond = {name: _load_ids(self.folder / f"cond_{name}.npy") for name in meta["conditions"]}
        except (OSError, ValueError, RecursionError, KeyError, TypeError) as error:
            raise InputError(f"the token cache {self.folder} is damaged ({type(error).__name__}: {error})",
                             "delete the folder: it is rebuilt on the next run") from None
        self.meta = meta

    def __len__(self) -> int:
        return len(self.tokens)

    def __getitem__(self, index: int):
        return self.tokens[index], {name: t[index] for name, t in self.cond.items()}, int(self.labels[index])

    @staticmethod
    def matches(folder: str | Path, meta: dict) -> bool:
        path = Path(folder) / "meta.json"
        try:
            return json.loads(path.read_text()) == json.loads(json.dumps(meta))
        except (OSError, ValueError, RecursionError):  # unreadable: rebuilt
            return False

    @staticmethod
    def build(folder: str | Path, batches: Iterator[tuple[torch.Tensor, torch.Tensor]],
              encode: Callable[[torch.Tensor], dict[str, torch.Tensor]], meta: dict) -> "TokenCache":
        """Run `encode(videos) -> {"tokens": [B,t,h,w], <condition name>: [B,t,h,w], ...}` over
        the fixed-clip batches and write the arrays; `meta` must name the conditions."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        outputs: dict[str, list[np.ndarray]] = {}
        labels = []
        for videos, batch_labels in batches:
            for name, tokens in encode(videos).items():
                outputs.setdefault(name, []).append(tokens.cpu().numpy().astype(np.int32))
            labels.append(torch.as_tensor(batch_labels).numpy().astype(np.int32))
        (folder / "meta.json").unlink(missing_ok=True)  # invalid until every array is written
        for name, chunks in outputs.items():
            file = "tokens.npy" if name == "tokens" else f"cond_{name}.npy"
            _save_atomic(folder / file, np.concatenate(chunks))
        _save_atomic(folder / "labels.npy", np.concatenate(labels))
        temp = folder / ".meta.json.tmp"
        temp.write_text(json.dumps(meta, indent=1))
        os.replace(temp, folder / "meta.json")
        return TokenCache(folder)


def _load_ids(path: Path) -> torch.Tensor:
    return torch.from_numpy(np.load(path, allow_pickle=False).astype(np.int64))  # never unpickle a cache file


def _save_atomic(path: Path, array: np.ndarray) -> None:
    temp = path.with_name(f".{path.name}.tmp")
    with open(temp, "wb") as handle:
        np.save(handle, array)
    os.replace(temp, path)
