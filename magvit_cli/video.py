"""Video input and output on PyAV: probe, streaming decode, atomic encode that keeps the audio.

Reading takes any container/codec the bundled FFmpeg decodes (mp4, mov, mkv, webm, avi,
mpg, GIF, ...) or a folder of PNG/JPEG frames, and yields RGB uint8 frames [H, W, 3] with the
display rotation applied. Nothing reads a whole video unless asked to (`read_video`).

Writing picks the format from the target's suffix (see `VideoWriter`), goes to a hidden
temporary file next to the target and renames it into place only when everything went well.
"""

from __future__ import annotations

import errno
import importlib
import io
import os
import re
import secrets
import shutil
import types
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, replace
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .errors import InputError, OutputError, UnsupportedError, UsageError


class _LazyModule(types.ModuleType):
    """A module imported on first use. The model, training and the CLI's start-up need no video
    I/O, so they run (and `magvit --help` starts) without paying for PyAV, and on machines
    without it, where any use is one clear error. The import system's own lock makes the first
    use safe from several threads at once (importlib.util.LazyLoader is not, before Python 3.12)."""

    def __getattr__(self, attr):
        try:
            module = importlib.import_module(self.__name__)
        except ImportError:
            raise UnsupportedError(f"reading and writing video files needs {self.__name__}, which is not installed",
                                   f"pip install {self.__name__}") from None
        return getattr(module, attr)


av = _LazyModule("av")  # PyAV
if TYPE_CHECKING:  # torch is imported by the two functions that make or read tensors, so that
    import torch  # probing a file (`magvit info`) does not load it

FRAME_FOLDER_FPS = Fraction(24)  # frame folders carry no timing of their own
FPS_RANGE = (Fraction(1, 100), Fraction(1000))  # what a frame rate given on the command line may be
# What a file may carry and be written with: high-speed cameras go past 1000 fps, time-lapses
# below 1/100; beyond these the rate is a broken header, not footage.
STREAM_FPS_RANGE = (Fraction(1, 10_000), Fraction(1_000_000))
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")

# Suffix -> (FFmpeg muxer, preferred video encoder).
CONTAINER_FORMATS = {
    ".mp4": ("mp4", "libx264"),
    ".mov": ("mov", "libx264"),
    ".mkv": ("matroska", "libx264"),
    ".webm": ("webm", "libvpx-vp9"),
    ".avi": ("avi", "mpeg4"),
    ".gif": ("gif", "gif"),
}
FALLBACK_ENCODERS = {"libx264": "mpeg4", "libvpx-vp9": "libvpx"}
ENCODER_OPTIONS = {
    "libx264": {"crf": "18", "preset": "medium"},  # visually lossless, widely playable
    "libvpx-vp9": {"crf": "30", "b": "0", "deadline": "good", "cpu-used": "4", "row-mt": "1"},
    "libvpx": {"crf": "10", "b": "2M", "deadline": "good", "cpu-used": "4"},
    "mpeg4": {"qmin": "3", "qmax": "3"},  # constant quantiser 3
}
VIDEO_SUFFIXES = tuple(CONTAINER_FORMATS)


class VideoWarning(UserWarning):
    """Something the user should know about an output: dropped audio, a fallback encoder, padding."""


# ----------------------------------------------------------------------------- probing


@dataclass(frozen=True)
class VideoInfo:
    path: Path
    container: str          # FFmpeg demuxer name, or "frames" for a folder of images
    codec: str              # video codec of the stream (first image's codec for a folder)
    width: int              # display size: after rotation
    height: int
    num_frames: int
    frames_counted: bool    # True: counted by demuxing (or listing files); False: the container's index
    fps: Fraction           # exact, e.g. 30000/1001
    duration: float         # seconds
    rotation: int           # degrees clockwise the stored frames are turned for display: 0, 90, 180, 270
    pix_fmt: str
    bit_depth: int
    variable_frame_rate: bool
    has_audio: bool
    audio_codec: str | None

    def to_dict(self) -> dict:
        """JSON-ready: path as str, fps as "num/den" plus its float value."""
        d = asdict(self)
        d["path"] = str(self.path)
        d["fps"] = f"{self.fps.numerator}/{self.fps.denominator}"
        d["fps_float"] = float(self.fps)
        return d


def probe(path: str | Path, folder_fps: Fraction = FRAME_FOLDER_FPS) -> VideoInfo:
    """Read a video's metadata (and decode its first frame, so a file that cannot be decoded
    fails here with InputError rather than half-way through a task).

    The frame count comes from the container's index when it agrees with the stream duration
    (mp4/mov/avi); otherwise (mkv, webm, mpg, GIF, trimmed edit lists) packets are counted.
    `folder_fps` is the frame rate given to a folder of images.
    """
    path = Path(path)
    if path.is_dir():
        return _probe_folder(path, as_fps(folder_fps))
    with _open_video(path) as container:
        stream = container.streams.video[0]
        first = _first_frame(path, container, stream)
        fps = _stream_fps(path, stream)
        audio = container.streams.audio
        frames_in_index = stream.frames
        duration = float(stream.duration * stream.time_base) if stream.duration else None
        pix_fmt = first.format.name
        codec = stream.codec_context.name
        container_name = container.format.name
        variable = _is_variable_rate(stream)
    if frames_in_index > 0 and duration and abs(frames_in_index - duration * fps) <= 1:
        num_frames, counted = frames_in_index, False
    else:
        num_frames, counted = _count_frames(path), True
    rotation = _clockwise(first.rotation)
    width, height = (first.height, first.width) if rotation in (90, 270) else (first.width, first.height)
    return VideoInfo(
        path=path,
        container=container_name,
        codec=codec,
        width=width,
        height=height,
        num_frames=num_frames,
        frames_counted=counted,
        fps=fps,
        duration=duration if duration else float(num_frames / fps),
        rotation=rotation,
        pix_fmt=pix_fmt,
        bit_depth=_bit_depth(pix_fmt),
        variable_frame_rate=variable,
        has_audio=bool(audio),
        audio_codec=audio[0].codec_context.name if audio else None,
    )


def as_fps(value: Fraction | int | float | str, bounds: tuple[Fraction, Fraction] = FPS_RANGE) -> Fraction:
    """An exact frame rate from a Fraction, number or string ("25", "29.97", "30000/1001").

    Decimal spellings of the NTSC rates (23.976, 29.97, 59.94, ...) become n*1000/1001.
    """
    try:
        fps = Fraction(value)
    except (ValueError, ZeroDivisionError, TypeError, OverflowError):
        raise UsageError(f"invalid frame rate {value!r}", "use a number like 25, 29.97 or 30000/1001") from None
    low, high = bounds
    if not low <= fps <= high:
        raise UsageError(f"frame rate {value} is out of range",
                         f"use a value between {float(low):g} and {float(high):g}")
    if fps.denominator == 1 or fps.denominator == 1001:
        return fps
    ntsc = Fraction(round(fps * Fraction(1001, 1000)) * 1000, 1001)
    if ntsc and abs(fps - ntsc) < Fraction(1, 1000):
        return ntsc
    return fps.limit_denominator(1001)


def _stream_fps(path: Path, stream) -> Fraction:
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    if not rate:
        raise InputError(f"{path}: the video stream has no frame rate", "re-encode it to a constant frame rate")
    low, high = STREAM_FPS_RANGE
    if not low <= rate <= high:
        raise InputError(f"{path} claims an implausible frame rate of {float(rate):g} fps",
                         "its header is probably damaged: re-encode it with an explicit rate")
    return Fraction(rate)


def _is_variable_rate(stream) -> bool:
    # avg_frame_rate (frames / duration) and r_frame_rate (the rate that expresses every
    # timestamp) agree on constant-rate streams and drift apart when frame spacing varies;
    # 1% leaves room for rounded (millisecond) timestamps and a last frame's odd duration.
    avg, base = stream.average_rate, stream.base_rate
    return bool(avg and base and abs(avg - base) > base / 100)


def _clockwise(ccw_degrees: int) -> int:
    # FFmpeg's display matrix angle is counter-clockwise; report the familiar "rotate" tag value.
    return int(round(-ccw_degrees / 90)) % 4 * 90


def _bit_depth(pix_fmt: str) -> int:
    try:
        return av.VideoFormat(pix_fmt).components[0].bits
    except (ValueError, IndexError):
        return 8


def _count_frames(path: Path) -> int:
    with _open_video(path) as container:
        stream = container.streams.video[0]
        try:
            # Empty packets only flush the decoder; discarded ones fall outside an edit list.
            return sum(1 for p in container.demux(stream) if p.size and not p.is_discard)
        except av.FFmpegError as e:
            raise InputError(f"{path} is corrupt: {_reason(e)}", "re-encode or re-download the file") from None


# ----------------------------------------------------------------------------- opening inputs


def _check_input_file(path: Path) -> None:
    if not path.exists():
        raise InputError(f"{path} does not exist", "check the path")
    if not path.is_file():
        raise InputError(f"{path} is not a file or a folder of frames",
                         "give a video file or a folder of PNG/JPEG frames")
    if path.stat().st_size == 0:
        raise InputError(f"{path} is empty (0 bytes)", "the file was not written completely; use another copy")


def _open_video(path: Path):
    _check_input_file(path)
    try:
        container = av.open(str(path), metadata_errors="replace")
    except PermissionError:
        raise InputError(f"{path} cannot be read (permission denied)", "check the file's permissions") from None
    except av.FFmpegError as e:
        raise InputError(
            f"{path} is not a readable video ({_reason(e)})",
            "it may be truncated, corrupt or not a video; try opening it in a player",
        ) from None
    if not container.streams.video:
        container.close()
        raise InputError(f"{path} has no video stream", "it holds only audio or data; give a video file")
    stream = container.streams.video[0]
    if stream.codec_context is None:  # a codec id FFmpeg does not know (often a damaged header)
        container.close()
        raise InputError(f"{path}: the video stream's codec is unknown",
                         "the file may be corrupt; re-encode it to H.264 or use another copy")
    try:
        av.Codec(stream.codec_context.name, "r")
    except (ValueError, av.FFmpegError):
        container.close()
        name = stream.codec_context.name
        raise InputError(f"{path}: this FFmpeg cannot decode {name!r} video", "re-encode it to H.264") from None
    return container


def _first_frame(path: Path, container, stream) -> av.VideoFrame:
    try:
        for packet in container.demux(stream):
            for frame in packet.decode():
                return frame
    except av.FFmpegError as e:
        raise InputError(f"{path} is corrupt: {_reason(e)}", "re-encode or re-download the file") from None
    raise InputError(f"{path} contains no decodable video frames", "the file may be truncated")


def _reason(error: Exception) -> str:
    return getattr(error, "strerror", None) or str(error)


# ----------------------------------------------------------------------------- frame folders


def _natural_key(path: Path) -> list:
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", path.name)]


def _folder_frames(folder: Path) -> list[Path]:
    files = [
        p for p in folder.iterdir()
        if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".") and p.is_file()
    ]
    if not files:
        raise InputError(f"{folder} contains no PNG or JPEG frames", "point to a video file or a folder of images")
    return sorted(files, key=_natural_key)


def _read_image(path: Path) -> av.VideoFrame:
    with _open_video(path) as container:
        return _first_frame(path, container, container.streams.video[0])


def _probe_folder(folder: Path, fps: Fraction) -> VideoInfo:
    files = _folder_frames(folder)
    first = _read_image(files[0])
    codec = "png" if files[0].suffix.lower() == ".png" else "mjpeg"
    return VideoInfo(
        path=folder,
        container="frames",
        codec=codec,
        width=first.width,
        height=first.height,
        num_frames=len(files),
        frames_counted=True,
        fps=fps,
        duration=float(len(files) / fps),
        rotation=0,
        pix_fmt=first.format.name,
        bit_depth=_bit_depth(first.format.name),
        variable_frame_rate=False,
        has_audio=False,
        audio_codec=None,
    )


# ----------------------------------------------------------------------------- decoding


def iter_frames(path: str | Path, start: int = 0, stop: int | None = None) -> Iterator[np.ndarray]:
    """Yield frames start..stop-1 as RGB uint8 [H, W, 3], rotated for display, one at a time.

    Frames before `start` are decoded and dropped (exact, never off by a keyframe).
    """
    return (frame for _, frame in iter_timed_frames(path, start, stop))


def iter_timed_frames(path: str | Path, start: int = 0, stop: int | None = None,
                      folder_fps: Fraction = FRAME_FOLDER_FPS) -> Iterator[tuple[float, np.ndarray]]:
    """`iter_frames` with each frame's presentation time in seconds (what variable-frame-rate
    input needs to be resampled); frames of a folder are `folder_fps` apart."""
    if start < 0 or (stop is not None and stop < start):
        raise UsageError(f"invalid frame range {start}..{stop}")
    path = Path(path)
    if path.is_dir():
        return ((float((start + i) / folder_fps), frame) for i, frame in enumerate(_iter_folder(path, start, stop)))
    return _iter_container(path, start, stop)


def _iter_container(path: Path, start: int, stop: int | None) -> Iterator[tuple[float, np.ndarray]]:
    if stop == start:
        return
    with _open_video(path) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        index = 0
        size = None
        try:
            # demux() ends with an empty packet (dts None): decoding it flushes the frames
            # the decoder still holds, so no packet may be skipped for a missing dts.
            for packet in container.demux(stream):
                for frame in packet.decode():
                    if size is None:
                        size = (frame.width, frame.height)
                    elif (frame.width, frame.height) != size:
                        raise InputError(f"{path}: frame {index} is {frame.width}x{frame.height} but earlier "
                                         f"frames are {size[0]}x{size[1]}",
                                         "the frame size changes mid-stream; re-encode it to one size")
                    if index >= start:
                        time = frame.time if frame.time is not None else float(index / _stream_fps(path, stream))
                        yield time, _to_rgb(frame)
                    index += 1
                    if stop is not None and index >= stop:
                        return
        except av.FFmpegError as e:
            raise InputError(
                f"{path} is corrupt near frame {index}: {_reason(e)}", "re-encode or re-download the file"
            ) from None


def _iter_folder(folder: Path, start: int, stop: int | None) -> Iterator[np.ndarray]:
    files = _folder_frames(folder)
    size = None
    for file in files[start:stop]:
        frame = _to_rgb(_read_image(file))
        if size is None:
            size = frame.shape
        elif frame.shape != size:
            raise InputError(
                f"{file} is {frame.shape[1]}x{frame.shape[0]} but earlier frames are {size[1]}x{size[0]}",
                "all frames in a folder must have the same size",
            )
        yield frame


def _to_rgb(frame: av.VideoFrame) -> np.ndarray:
    rgb = frame.to_ndarray(format="rgb24")
    turns = int(round(frame.rotation / 90)) % 4  # counter-clockwise quarter turns, like np.rot90
    return np.ascontiguousarray(np.rot90(rgb, turns)) if turns else rgb


def window_starts(total: int, window: int, overlap: int) -> list[tuple[int, int]]:
    """(start, length) of every model window over `total` frames: full windows every
    `window - overlap` frames, then a shorter last one if frames are left that no full
    window covers."""
    if total <= window:
        return [(0, total)]
    stride = window - overlap
    windows = [(s, window) for s in range(0, total - window + 1, stride)]
    if windows[-1][0] + window < total:
        start = windows[-1][0] + stride
        windows.append((start, total - start))
    return windows


def iter_windows(path: str | Path, length: int, overlap: int = 0) -> Iterator[tuple[int, np.ndarray]]:
    """Yield (start_index, frames [T, H, W, 3]) windows of `length` frames, each starting
    `length - overlap` frames after the previous one.

    The last window is shorter when the video does not fill it (a video shorter than `length`
    gives one short window); a tail made only of frames already yielded is not repeated.
    Holds one window at a time (the next one reuses the previous window's last `overlap` frames).
    """
    if length < 1 or not 0 <= overlap < length:
        raise UsageError(f"invalid window: length {length}, overlap {overlap}", "overlap must be smaller than length")
    return _iter_windows(iter_frames(path), length, overlap)


def _iter_windows(frames: Iterator[np.ndarray], length: int, overlap: int) -> Iterator[tuple[int, np.ndarray]]:
    # Every frame has the first one's size: iter_frames refuses a size change mid-stream.
    window: np.ndarray | None = None
    filled = 0
    start = 0
    for frame in frames:
        if window is None:
            window = np.empty((length, *frame.shape), np.uint8)
        window[filled] = frame
        filled += 1
        if filled == length:
            yield start, window
            tail = window[length - overlap:]
            window = np.empty_like(window)
            window[:overlap] = tail
            filled = overlap
            start += length - overlap
    if window is not None and filled > (overlap if start else 0):
        yield start, window[:filled]


def read_video(
    path: str | Path, max_frames: int | None = None, folder_fps: Fraction = FRAME_FOLDER_FPS
) -> tuple[np.ndarray, VideoInfo]:
    """Decode a whole video (or its first `max_frames`) into [T, H, W, 3] uint8 plus its info.

    When the whole video is read, `info.num_frames` is the number of frames actually decoded.
    """
    info = probe(path, folder_fps)
    frames = list(iter_frames(path, stop=max_frames))
    if not frames:
        raise InputError(f"{path} contains no decodable video frames", "the file may be truncated")
    if max_frames is None and len(frames) != info.num_frames:
        info = replace(info, num_frames=len(frames), frames_counted=True)
    return np.stack(frames), info


def frames_to_tensor(frames: np.ndarray) -> torch.Tensor:
    """uint8 [T, H, W, 3] -> float32 [3, T, H, W] in [0, 1]."""
    import torch

    return torch.from_numpy(np.ascontiguousarray(frames)).permute(3, 0, 1, 2).float().div_(255)


def tensor_to_frames(video: torch.Tensor) -> np.ndarray:
    """[3, T, H, W] in [0, 1] (values outside are clipped) -> uint8 [T, H, W, 3]."""
    if video.ndim != 4 or video.shape[0] != 3:
        raise ValueError(f"expected a video tensor [3, T, H, W], got shape {tuple(video.shape)}")
    import torch

    pixels = video.detach().float().clamp(0, 1).mul(255).round().to(torch.uint8)
    return pixels.permute(1, 2, 3, 0).contiguous().cpu().numpy()


# ----------------------------------------------------------------------------- output names


def default_output_path(input: str | Path, task: str, suffix: str | None = None) -> Path:
    """Where a task writes when no output is given: next to the input, with the task name
    before the suffix: clip.mp4 -> clip.predict.mp4, anim.gif -> anim.predict.gif.

    Inputs whose suffix cannot be written (.mpg, ...) and frame folders give .mp4
    (frames/ -> frames.predict.mp4; ask for a frame folder with an explicit `-o out/`).
    `suffix` (".webm" or "webm") overrides the input's. Never the input itself, never a
    double extension.
    """
    path = Path(input)
    if not task or "/" in task or os.sep in task or task.startswith("."):
        raise UsageError(f"invalid task name {task!r} for an output file name")
    if suffix is None:
        suffix = path.suffix if not path.is_dir() and path.suffix.lower() in CONTAINER_FORMATS else ".mp4"
    elif not suffix.startswith("."):
        suffix = "." + suffix
    if suffix.lower() not in CONTAINER_FORMATS:
        raise UsageError(f"cannot write {suffix} files", f"use one of {', '.join(VIDEO_SUFFIXES)}")
    stem = path.name if path.is_dir() else path.stem
    return path.parent / f"{stem}.{task}{suffix}"


# ----------------------------------------------------------------------------- writing


class VideoWriter:
    """Context manager that writes frames to `path` atomically.

    Format by suffix: .mp4/.mov/.mkv use H.264 (libx264, yuv420p, CRF 18; if this FFmpeg has
    no libx264, MPEG-4 Part 2 with a VideoWarning), .webm VP9, .avi MPEG-4 Part 2, .gif a
    per-frame palette; no suffix (or a trailing '/') writes a folder of PNG frames
    (frame_000000.png, ...). Odd widths/heights are padded by one replicated row/column for the
    4:2:0 codecs. The frame rate is kept exactly in mp4/mov/avi; mkv/webm store milliseconds
    and GIF hundredths of a second per frame, so there the rate is kept on average.

    Everything goes to a hidden temporary file in the target's folder, renamed into place on
    success; any exception (KeyboardInterrupt included) removes it. An existing file at `path`
    is replaced, an existing non-empty folder is refused; writing onto one of `inputs` (or
    `audio_from`) is refused.

    Audio: with `audio_from`, that file's first audio stream goes into the output starting
    `audio_start` seconds into it and cut where the video ends (to within one audio packet).
    It is stream-copied when the container holds the codec, else re-encoded (AAC, Opus for
    webm). GIF and frame folders cannot hold audio: it is dropped with a VideoWarning.
    """

    def __init__(
        self,
        path: str | Path,
        fps: Fraction | int | float | str,
        *,
        audio_from: str | Path | None = None,
        audio_start: float = 0.0,
        inputs: Iterable[str | Path] = (),
    ):
        self.is_folder = is_folder_target(path)
        self.path = Path(path)
        self.fps = as_fps(fps, STREAM_FPS_RANGE)
        self.audio_from = Path(audio_from) if audio_from is not None else None
        self.audio_start = audio_start
        self.frames_written = 0
        check_output_format(self.path)
        others = [*inputs, *([self.audio_from] if self.audio_from else [])]
        _check_target(self.path, self.is_folder, others)
        self._tmp: Path | None = None
        self._size: tuple[int, int] | None = None
        self._container = None
        self._video = None
        self._palette = None
        self._audio: _AudioCarrier | None = None
        self._pad = (0, 0)

    # -- context protocol

    def __enter__(self) -> VideoWriter:
        token = secrets.token_hex(4)
        self._tmp = self.path.parent / f".{self.path.name}.{token}.tmp{'' if self.is_folder else self.path.suffix}"
        try:
            if self.is_folder:
                self._tmp.mkdir()
            else:
                muxer = CONTAINER_FORMATS[self.path.suffix.lower()][0]
                self._container = av.open(str(self._tmp), "w", format=muxer)
        except BaseException as e:
            self._abort()
            raise _output_error(self.path, e) from None
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self._abort()
            return
        try:
            self._finish()
        except BaseException as e:
            self._abort()
            if isinstance(e, (OutputError, KeyboardInterrupt, SystemExit)):
                raise
            raise _output_error(self.path, e) from None

    # -- frames

    def write(self, frame: np.ndarray) -> None:
        """Append one RGB uint8 frame [H, W, 3]; all frames must have the first frame's size."""
        if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
            raise ValueError(f"expected a uint8 [H, W, 3] frame, got {frame.dtype} {frame.shape}")
        if self._size is None:
            self._size = frame.shape[:2]
        elif frame.shape[:2] != self._size:
            raise ValueError(f"frame {self.frames_written} is {frame.shape[:2]}, earlier frames are {self._size}")
        try:
            if self._video is None and not self.is_folder:
                self._open_streams(*self._size)
            if self.is_folder:
                self._write_png(frame)
            else:
                self._encode(frame)
                if self._audio:
                    self._audio.carry(until=self.frames_written / self.fps)
        except (av.FFmpegError, OSError) as e:
            raise _output_error(self.path, e) from None

    def _open_streams(self, height: int, width: int) -> None:
        suffix = self.path.suffix.lower()
        encoder = CONTAINER_FORMATS[suffix][1]
        if not _has_encoder(encoder):
            fallback = FALLBACK_ENCODERS[encoder]
            warnings.warn(f"this FFmpeg has no {encoder} encoder; writing {fallback} instead", VideoWarning)
            encoder = fallback
        stream = self._container.add_stream(encoder, rate=self.fps)
        if encoder == "gif":
            stream.pix_fmt = "pal8"
            stream.width, stream.height = width, height
            self._palette = _palette_graph(width, height, self.fps)
        else:
            self._pad = (height % 2, width % 2)
            if any(self._pad):
                warnings.warn(
                    f"{self.path.name}: {width}x{height} padded to {width + self._pad[1]}x{height + self._pad[0]} "
                    "(4:2:0 video needs even sizes)", VideoWarning)
            stream.width, stream.height = width + self._pad[1], height + self._pad[0]
            stream.pix_fmt = "yuv420p"
            # BT.601 is what decoders assume when the bitstream carries no tag (MPEG-4 Part 2
            # in AVI); H.264/VP9 also store the tag.
            stream.codec_context.colorspace = av.video.reformatter.Colorspace.ITU601
            stream.codec_context.color_range = av.video.reformatter.ColorRange.MPEG
            stream.options = dict(ENCODER_OPTIONS[encoder])
        stream.time_base = 1 / self.fps
        self._video = stream
        if self.audio_from is not None:
            self._audio = _AudioCarrier.open(self.audio_from, self._container, self.audio_start, self.path)

    def _encode(self, rgb: np.ndarray) -> None:
        if any(self._pad):
            rgb = np.pad(rgb, ((0, self._pad[0]), (0, self._pad[1]), (0, 0)), mode="edge")
        frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
        frame.pts, frame.duration, frame.time_base = self.frames_written, 1, 1 / self.fps
        self.frames_written += 1
        if self._palette is not None:
            self._palette.push(frame)
            self._drain_palette()
            return
        frame = frame.reformat(format="yuv420p", dst_colorspace="ITU601", dst_color_range="MPEG")
        self._container.mux(self._video.encode(frame))

    def _drain_palette(self) -> None:
        while True:
            try:
                frame = self._palette.pull()
            except (av.BlockingIOError, av.EOFError):
                return
            self._container.mux(self._video.encode(frame))

    def _write_png(self, rgb: np.ndarray) -> None:
        encoder = av.CodecContext.create("png", "w")
        encoder.width, encoder.height, encoder.pix_fmt = rgb.shape[1], rgb.shape[0], "rgb24"
        encoder.time_base = 1 / self.fps
        packets = encoder.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")) + encoder.encode(None)
        (self._tmp / f"frame_{self.frames_written:06d}.png").write_bytes(b"".join(bytes(p) for p in packets))
        self.frames_written += 1

    # -- finishing

    def _finish(self) -> None:
        if self.frames_written == 0:
            raise OutputError(f"no frames to write to {self.path}", "the input gave no frames to edit")
        if self.is_folder:
            if self.audio_from is not None and _has_audio(self.audio_from):
                warnings.warn(f"{self.path}: a folder of frames cannot hold audio; the audio is dropped", VideoWarning)
            if self.path.is_dir():
                self.path.rmdir()  # _check_target let only an empty folder through
            os.replace(self._tmp, self.path)
            return
        if self._palette is not None:
            self._palette.push(None)
            self._drain_palette()
        self._container.mux(self._video.encode(None))
        if self._audio:
            self._audio.carry(until=self.frames_written / self.fps, final=True)
            self._audio.close()
        self._container.close()
        os.replace(self._tmp, self.path)

    def _abort(self) -> None:
        if self._audio:
            self._audio.close()
        if self._container is not None:
            try:
                self._container.close()
            except (av.FFmpegError, OSError):
                pass  # the half-written file is deleted next
        if self._tmp is not None:
            if self._tmp.is_dir():
                shutil.rmtree(self._tmp, ignore_errors=True)
            else:
                self._tmp.unlink(missing_ok=True)


def write_video(
    path: str | Path,
    frames: Iterable[np.ndarray],
    fps: Fraction | int | float | str,
    *,
    audio_from: str | Path | None = None,
    audio_start: float = 0.0,
    inputs: Iterable[str | Path] = (),
) -> Path:
    """Write RGB uint8 frames [H, W, 3] to `path` atomically (see VideoWriter); returns the path.

    `frames` may be a generator: frames are encoded as they come.
    """
    with VideoWriter(path, fps, audio_from=audio_from, audio_start=audio_start, inputs=inputs) as writer:
        for frame in frames:
            writer.write(frame)
    return writer.path


def is_folder_target(path: str | Path) -> bool:
    """An output path with no suffix (or a trailing '/') names a folder of PNG frames."""
    return str(path).endswith(("/", os.sep)) or not Path(path).suffix


def check_output_format(path: str | Path) -> None:
    """Refuse an output whose suffix names no format this writer has (before any work is done)."""
    suffix = Path(path).suffix.lower()
    if not is_folder_target(path) and suffix not in CONTAINER_FORMATS:
        raise OutputError(f"cannot write {suffix} files: {path}", f"use one of {', '.join(VIDEO_SUFFIXES)} or a folder")


def _check_target(path: Path, is_folder: bool, inputs: list) -> None:
    for other in inputs:
        other = Path(other)
        same = path.exists() and other.exists() and os.path.samefile(path, other)
        if same or path.resolve() == other.resolve():
            raise OutputError(f"refusing to overwrite the input {other}", "choose another output with -o")
    parent = path.parent
    if not parent.is_dir():
        raise OutputError(f"the output folder {parent} does not exist", "create it first or choose another output")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputError(f"the output folder {parent} is not writable", "choose another output with -o")
    if is_folder:
        if path.exists() and not path.is_dir():
            raise OutputError(f"{path} exists and is not a folder", "choose another output with -o")
        if path.is_dir() and any(path.iterdir()):
            raise OutputError(f"the output folder {path} exists and is not empty", "remove it or choose another output")
    elif path.is_dir():
        raise OutputError(f"{path} is a folder", "give a file name with a video suffix")


def _output_error(path: Path, error: BaseException) -> BaseException:
    if isinstance(error, (OutputError, KeyboardInterrupt, SystemExit)):
        return error
    code = getattr(error, "errno", None)
    if code == errno.ENOSPC:
        return OutputError(f"disk full while writing {path}", "free some space or write elsewhere")
    if code in (errno.EACCES, errno.EPERM, errno.EROFS):
        return OutputError(f"cannot write {path} (permission denied or read-only)", "choose another output with -o")
    return OutputError(f"writing {path} failed: {_reason(error)}")


def _has_encoder(name: str) -> bool:
    try:
        av.Codec(name, "w")
        return True
    except (ValueError, av.FFmpegError):
        return False


def _has_audio(path: Path) -> bool:
    try:
        with av.open(str(path), metadata_errors="replace") as container:
            return bool(container.streams.audio)
    except (av.FFmpegError, OSError):
        return False


def _can_copy(muxer: str, stream) -> bool:
    """Whether `muxer` takes `stream` as is: writes a header to memory, since some muxers list
    a codec they then refuse (Opus or FLAC in .mov)."""
    try:
        with av.open(io.BytesIO(), "w", format=muxer) as trial:
            trial.add_stream_from_template(stream)
            trial.start_encoding()
        return True
    except (av.FFmpegError, ValueError):
        return False


def motion_interpolate(first: np.ndarray, last: np.ndarray, steps: int) -> np.ndarray:
    """The `steps - 1` frames between two RGB frames [H, W, 3] uint8, made by FFmpeg's
    motion-compensated interpolation (minterpolate: bidirectional block matching, overlapped
    blocks, variable block size, no scene-change fallback to blending). Returns
    [steps - 1, H, W, 3] uint8: the frames at 1/steps, ..., (steps - 1)/steps of the way."""
    if first.shape != last.shape:
        raise ValueError(f"frames of different shapes: {first.shape} and {last.shape}")
    if steps < 2:
        return np.empty((0, *first.shape), np.uint8)
    height, width, _ = first.shape
    if min(height, width) < 32:  # the filter needs two of its 16-px blocks each way: pad, then crop
        grow = ((0, max(0, 32 - height)), (0, max(0, 32 - width)), (0, 0))
        made = motion_interpolate(np.pad(first, grow, mode="edge"), np.pad(last, grow, mode="edge"), steps)
        return np.ascontiguousarray(made[:, :height, :width])
    graph = av.filter.Graph()
    source = graph.add_buffer(width=width, height=height, format="yuv444p", time_base=Fraction(1))
    interpolate = graph.add("minterpolate", f"fps={steps}:mi_mode=mci:mc_mode=aobmc:me_mode=bidir:vsbmc=1:scd=none")
    sink = graph.add("buffersink")
    source.link_to(interpolate)
    interpolate.link_to(sink)
    graph.configure()
    made = {}
    # Each frame twice (at -1, 0 and 1, 2): the filter estimates motion from a frame's
    # neighbours on both sides, and makes nothing between the first two or last two it holds.
    for pts, image in enumerate((first, first, last, last), start=-1):
        frame = av.VideoFrame.from_ndarray(image, format="rgb24").reformat(format="yuv444p")
        frame.pts, frame.time_base = pts, Fraction(1)
        graph.push(frame)
        made.update(_drain(graph))
    graph.push(None)
    made.update(_drain(graph))
    return np.stack([made[k] for k in range(1, steps)])  # output pts count in 1/steps


def _drain(graph: av.filter.Graph) -> dict[int, np.ndarray]:
    """The frames a filter graph has ready, by pts, as RGB arrays."""
    out = {}
    while True:
        try:
            frame = graph.pull()
        except (av.error.BlockingIOError, av.error.EOFError):
            return out
        out[frame.pts] = frame.to_ndarray(format="rgb24")


def _palette_graph(width: int, height: int, fps: Fraction) -> av.filter.Graph:
    """palettegen + paletteuse with a fresh 256-colour palette per frame: streams (no first
    pass over the whole video) and keeps colours far better than a fixed palette."""
    graph = av.filter.Graph()
    source = graph.add_buffer(width=width, height=height, format="rgb24", time_base=1 / fps)
    split = graph.add("split")
    palette = graph.add("palettegen", "stats_mode=single")
    apply = graph.add("paletteuse", "new=1")
    sink = graph.add("buffersink")
    source.link_to(split)
    split.link_to(palette, 0, 0)
    split.link_to(apply, 1, 0)
    palette.link_to(apply, 0, 1)
    apply.link_to(sink)
    graph.configure()
    return graph


class _AudioCarrier:
    """Moves the first audio stream of a file into an output being written, interleaved with
    the video: stream-copied, or decoded and re-encoded when the container cannot hold it."""

    def __init__(self, source, out_stream, start: float, reencode: bool):
        self.source = source
        self.in_stream = source.streams.audio[0]
        self.out_stream = out_stream
        self.reencode = reencode
        # mp4/mov hide negative timestamps behind an edit list; other muxers would shift the video.
        self.preroll = not reencode and out_stream.container.format.name in ("mp4", "mov")
        self.packets = source.demux(self.in_stream)
        self.offset = round(start / self.in_stream.time_base)
        self.pending = None
        self.samples = 0
        self.done = False

    @classmethod
    def open(cls, source_path: Path, output, start: float, target: Path) -> _AudioCarrier | None:
        if target.suffix.lower() == ".gif":
            if _has_audio(source_path):
                warnings.warn(f"{target}: GIF cannot hold audio; the audio is dropped", VideoWarning)
            return None
        try:
            source = av.open(str(source_path), metadata_errors="replace")  # as _open_video
        except (av.FFmpegError, OSError):
            return None  # not a container (a frame folder): no audio to keep
        if not source.streams.audio:
            source.close()
            return None
        codec = source.streams.audio[0].codec_context
        if _can_copy(output.format.name, source.streams.audio[0]):
            out_stream = output.add_stream_from_template(source.streams.audio[0])
            return cls(source, out_stream, start, reencode=False)
        encoder = "libopus" if target.suffix.lower() == ".webm" else "aac"
        try:
            out_stream = output.add_stream(encoder, rate=48000 if encoder == "libopus" else codec.sample_rate)
            out_stream.layout = codec.layout if codec.channels <= 2 else "stereo"
        except (av.FFmpegError, ValueError) as e:
            source.close()
            warnings.warn(f"{target}: cannot re-encode the {codec.name} audio ({_reason(e)}); it is dropped",
                          VideoWarning)
            return None
        return cls(source, out_stream, start, reencode=True)

    def carry(self, until: Fraction, final: bool = False) -> None:
        """Mux the packets that start before `until` seconds of output; `final` also ends the stream."""
        limit = until / self.in_stream.time_base
        while not self.done:
            packet = self.pending or next(self.packets, None)
            self.pending = None
            if packet is None or packet.size == 0:  # the empty packet that ends demux()
                self.done = True
                break
            timestamp = packet.pts if packet.pts is not None else packet.dts
            if timestamp is None:
                continue  # cannot be placed on the output timeline
            time = timestamp - self.offset
            if not self._starts_in_output(time, packet.duration or 0):
                continue
            if time >= limit:
                self.pending, self.done = (None, True) if final else (packet, False)
                break
            self._mux(packet, time)
        if final and self.reencode:
            for frame in self.in_stream.codec_context.decode(None):
                self._encode(frame)
            self.out_stream.container.mux(self.out_stream.encode(None))

    def _starts_in_output(self, time: int, duration: int) -> bool:
        if self.reencode:
            return time + duration > 0  # decoded samples before the start are few: at most one packet
        if self.preroll:
            # One packet before the start (or the encoder's priming packet) lets the decoder
            # rebuild the first samples; the edit list hides it.
            return time + 2 * duration > 0
        return time >= 0

    def _mux(self, packet, time: int) -> None:
        if self.reencode:
            for frame in packet.decode():
                self._encode(frame)
            return
        packet.dts = packet.dts - self.offset if packet.dts is not None else time
        packet.pts = time
        packet.stream = self.out_stream
        self.out_stream.container.mux(packet)

    def _encode(self, frame) -> None:
        frame.pts, frame.time_base = self.samples, Fraction(1, frame.sample_rate)
        self.samples += frame.samples
        self.out_stream.container.mux(self.out_stream.encode(frame))

    def close(self) -> None:
        self.source.close()
