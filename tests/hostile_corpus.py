"""Hostile inputs for the CLI, generated on the fly (nothing binary is checked in).

`MEDIA` lists every input file the tests point the tool at: its name, category, how to
make it, and what the tool must do with it:

  OK       process it: exit 0 and a valid output
  DAMAGED  a broken file that may still hold decodable frames: a valid output (exit 0)
           or an input error (exit 3), never anything else
  an int   that exit code, one line on stderr and nothing written

Files are written with PyAV directly (not with the code under test) and are small (mostly
48x32, a few frames), so the whole corpus is made in seconds. `make_media` builds one.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from magvit_cli import errors

OK = "ok"
DAMAGED = "damaged"


@dataclass(frozen=True)
class Media:
    name: str
    category: str
    expect: str | int
    make: Callable[[Path], Path]  # writes the input into a folder, returns its path
    note: str = ""


def pattern(count: int, height: int, width: int, channels: int = 3, seed: int = 0) -> np.ndarray:
    """A moving gradient with a bright square: motion and edges, cheap for every codec."""
    y, x = np.mgrid[0:height, 0:width]
    frames = np.empty((count, height, width, channels), np.uint8)
    for i in range(count):
        frames[i, ..., 0] = (x * 255 // max(width - 1, 1) + 9 * i + seed) % 256
        for c in range(1, channels):
            frames[i, ..., c] = (y * 255 // max(height - 1, 1) + 40 * c + 5 * i) % 256
        side = max(1, min(height, width) // 4)
        left = (2 * i) % max(width - side, 1)
        frames[i, :side, left:left + side, :min(channels, 3)] = 255
    return frames


def encode(path: Path, frames: np.ndarray, *, codec: str = "libx264", pix_fmt: str = "yuv420p",
           fps: Fraction = Fraction(12), container_format: str | None = None, source_format: str = "rgb24",
           options: dict | None = None, rotation: int | None = None, pts: list[int] | None = None,
           time_base: Fraction | None = None, audio: bool = False) -> Path:
    """Write frames [N, H, W, C] with `codec` in `pix_fmt`; `pts` (in `time_base`) make the
    spacing irregular; `rotation` is the display matrix angle (counter-clockwise)."""
    with av.open(str(path), "w", format=container_format) as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], pix_fmt
        tb = time_base or (1 / fps)
        stream.codec_context.time_base = stream.time_base = tb
        if options:
            stream.options = options
        if rotation is not None:
            stream.set_display_rotation(rotation)
        sound = None
        if audio:
            sound = container.add_stream("aac", rate=48000)
            sound.layout = "mono"
        for i, pixels in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(pixels if pixels.shape[2] > 1 else pixels[..., 0], format=source_format)
            frame.pts, frame.time_base = (pts[i] if pts else i), tb
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
        if sound is not None:
            samples = int(len(frames) / fps * 48000)
            for start in range(0, samples, 1024):
                chunk = np.full((1, min(1024, samples - start)), 0.1, np.float32)
                frame = av.AudioFrame.from_ndarray(chunk, format="fltp", layout="mono")
                frame.sample_rate, frame.pts, frame.time_base = 48000, start, Fraction(1, 48000)
                container.mux(sound.encode(frame))
            container.mux(sound.encode(None))
    return path


def audio_only(path: Path, container_format: str | None = None) -> Path:
    with av.open(str(path), "w", format=container_format) as container:
        sound = container.add_stream("aac", rate=48000)
        sound.layout = "mono"
        for start in range(0, 48000, 1024):
            frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
            frame.sample_rate, frame.pts, frame.time_base = 48000, start, Fraction(1, 48000)
            container.mux(sound.encode(frame))
        container.mux(sound.encode(None))
    return path


def no_frames(path: Path) -> Path:
    """A container with a video stream and not a single packet."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=12)
        stream.width, stream.height, stream.pix_fmt = 32, 32, "yuv420p"
        container.start_encoding()
    return path


def image(path: Path, pixels: np.ndarray, codec: str, pix_fmt: str, source_format: str = "rgb24") -> Path:
    """One still image (PNG, JPEG, ...) encoded with FFmpeg's image encoders."""
    context = av.CodecContext.create(codec, "w")
    context.width, context.height, context.pix_fmt = pixels.shape[1], pixels.shape[0], pix_fmt
    context.time_base = Fraction(1, 25)
    frame = av.VideoFrame.from_ndarray(pixels if pixels.shape[2] > 1 else pixels[..., 0], format=source_format)
    frame = frame.reformat(format=pix_fmt) if pix_fmt not in (source_format,) else frame
    packets = context.encode(frame) + context.encode(None)
    path.write_bytes(b"".join(bytes(p) for p in packets))
    return path


def truncated(source: Path, target: Path, fraction: float) -> Path:
    data = source.read_bytes()
    target.write_bytes(data[: int(len(data) * fraction)])
    return target


def bit_flipped(source: Path, target: Path, flips: int, seed: int, skip: int = 0) -> Path:
    """`flips` random bits flipped after the first `skip` bytes."""
    data = bytearray(source.read_bytes())
    rng = np.random.default_rng(seed)
    for position in rng.integers(skip, len(data), flips):
        data[position] ^= 1 << int(rng.integers(0, 8))
    target.write_bytes(bytes(data))
    return target



# ----------------------------------------------------------------------------- the corpus

MOVING = pattern(12, 32, 48)
VP9_FAST = {"deadline": "realtime", "cpu-used": "8"}
SOURCES = {  # intact files the damaged ones are cut from
    "mp4": lambda path: encode(path, MOVING),
    "webm": lambda path: encode(path, MOVING, codec="libvpx-vp9", options=VP9_FAST),
    "mkv": lambda path: encode(path, MOVING),
    "mov": lambda path: encode(path, MOVING, codec="mpeg4", options={"qscale": "3"}),
}


def source(folder: Path, kind: str) -> Path:
    path = folder / "intact" / f"source.{kind}"
    if not path.exists():
        path.parent.mkdir(exist_ok=True)
        SOURCES[kind](path)
    return path


def _truncated(kind: str, fraction: float):
    return lambda f: truncated(source(f, kind), f / f"truncated-{round(fraction * 100)}pct.{kind}", fraction)


def _flipped(kind: str, where: str):
    def make(f: Path) -> Path:
        data = source(f, kind)
        skip = 0 if where == "header" else data.stat().st_size // 4
        return bit_flipped(data, f / f"bitflip-{where}.{kind}", flips=24 if where == "header" else 40,
                           seed=1 if where == "header" else 2, skip=skip)
    return make


def _write(name: str, data: bytes):
    def make(f: Path) -> Path:
        (f / name).write_bytes(data)
        return f / name
    return make


def _size_change(f: Path) -> Path:
    """Two raw H.264 streams of different sizes back to back: the size changes mid-stream."""
    a = encode(f / "part-a.h264", pattern(6, 32, 48), container_format="h264")
    b = encode(f / "part-b.h264", pattern(6, 48, 64), container_format="h264")
    target = f / "size-change.h264"
    target.write_bytes(a.read_bytes() + b.read_bytes())
    a.unlink()
    b.unlink()
    return target


def _garbage_tail(f: Path) -> Path:
    target = f / "garbage-after-end.mp4"
    target.write_bytes(source(f, "mp4").read_bytes() + bytes(range(256)) * 8)
    return target


def _vfr(suffix: str):
    gaps = [30, 90] * 6  # ms: 60 ms on average (16.7 fps), never locally
    pts = np.concatenate([[0], np.cumsum(gaps)[:-1]]).tolist()
    return lambda f: encode(f / f"variable-frame-rate{suffix}", MOVING, pts=pts, time_base=Fraction(1, 1000),
                            fps=Fraction(50, 3))


def _rgba() -> np.ndarray:
    frames = pattern(6, 32, 48, channels=4)
    frames[..., 3] = np.where(np.arange(48) < 24, 255, 0)[None, None, :]  # left half opaque
    return frames


def _gray() -> np.ndarray:
    return pattern(6, 32, 48, channels=1)


def _av1_10bit(f: Path) -> Path:
    os.environ.setdefault("SVT_LOG", "1")  # the SVT-AV1 encoder's banner: errors only
    return encode(f / "av1-yuv420p10le.mkv", MOVING[:6], codec="libsvtav1", pix_fmt="yuv420p10le",
                  options={"preset": "12"})


def _mkdir(name: str, files: dict[str, Callable[[Path], object]] | None = None):
    def make(f: Path) -> Path:
        folder = f / name
        folder.mkdir()
        for file, writer in (files or {}).items():
            writer(folder / file)
        return folder
    return make


def _non_ascii(f: Path) -> Path:
    folder = f / "dossier avec espaces ünïcødé 视频"
    folder.mkdir()
    return encode(folder / "clip été 1 – copie.mp4", MOVING[:6])


def _symlink(f: Path) -> Path:
    os.symlink(f / "nowhere.mp4", f / "dangling-symlink.mp4")
    return f / "dangling-symlink.mp4"


def _fifo(f: Path) -> Path:
    os.mkfifo(f / "named-pipe.mp4")
    return f / "named-pipe.mp4"


E_IN = errors.EXIT_INPUT
MEDIA: list[Media] = [
    # damaged containers: truncated early (no header), half-way and near the end; bits flipped
    *[Media(f"truncated-{round(fr * 100)}pct.{kind}", "damaged container",
            E_IN if fr < 0.05 or kind in ("mp4", "mov") else DAMAGED, _truncated(kind, fr),
            "mp4/mov keep their index at the end: a cut file has none")
      for kind in SOURCES for fr in (0.02, 0.5, 0.9)],
    *[Media(f"bitflip-{where}.{kind}", "damaged container", DAMAGED, _flipped(kind, where))
      for kind in SOURCES for where in ("header", "data")],
    Media("garbage-after-end.mp4", "damaged container", OK, _garbage_tail, "trailing junk is ignored"),
    Media("random-bytes.mp4", "damaged container", E_IN,
          _write("random-bytes.mp4", np.random.default_rng(3).integers(0, 256, 4096, dtype=np.uint8).tobytes())),
    Media("text-named.mp4", "damaged container", E_IN, _write("text-named.mp4", b"not a video\n" * 50)),
    Media("size-change-mid-stream.h264", "damaged container", E_IN, _size_change),
    # empty and degenerate
    *[Media(f"zero-bytes{suffix}", "empty", E_IN, _write(f"zero-bytes{suffix}", b""))
      for suffix in (".mp4", ".webm", ".mkv", ".gif", ".png")],
    Media("audio-only.m4a", "empty", E_IN, lambda f: audio_only(f / "audio-only.m4a")),
    Media("audio-only-named.mp4", "empty", E_IN, lambda f: audio_only(f / "audio-only-named.mp4", "mp4")),
    Media("zero-frames.mp4", "empty", E_IN, lambda f: no_frames(f / "zero-frames.mp4")),
    Media("one-frame.mp4", "empty", OK, lambda f: encode(f / "one-frame.mp4", MOVING[:1])),
    Media("two-frames.mkv", "empty", OK, lambda f: encode(f / "two-frames.mkv", MOVING[:2])),
    # sizes (8K has its own tests: it is the one expensive input)
    Media("1x1.mkv", "size", OK, lambda f: encode(f / "1x1.mkv", pattern(4, 1, 1), codec="ffv1", pix_fmt="yuv444p")),
    Media("1x1.png", "size", OK, lambda f: image(f / "1x1.png", pattern(1, 1, 1)[0], "png", "rgb24")),
    Media("17x9.mkv", "size", OK, lambda f: encode(f / "17x9.mkv", pattern(6, 9, 17), codec="ffv1", pix_fmt="yuv444p")),
    Media("17x9.mp4", "size", OK, lambda f: encode(f / "17x9.mp4", pattern(6, 9, 17), pix_fmt="yuv444p")),
    Media("2x200-tall.mkv", "size", OK,
          lambda f: encode(f / "2x200-tall.mkv", pattern(4, 200, 2), codec="ffv1", pix_fmt="yuv444p")),
    Media("400x4-wide.mkv", "size", OK,
          lambda f: encode(f / "400x4-wide.mkv", pattern(4, 4, 400), codec="ffv1", pix_fmt="yuv444p")),
    # timing
    Media("variable-frame-rate.mkv", "timing", OK, _vfr(".mkv"), "resampled to a constant rate"),
    Media("variable-frame-rate.mp4", "timing", OK, _vfr(".mp4"), "resampled to a constant rate"),
    *[Media(f"rotated{ccw}.mp4", "timing", OK,
            lambda f, ccw=ccw: encode(f / f"rotated{ccw}.mp4", MOVING[:6], rotation=ccw, audio=True),
            "phone video: the display rotation is applied, the audio kept")
      for ccw in (90, -90, 180)],
    Media("ntsc-29.97.mp4", "timing", OK, lambda f: encode(f / "ntsc-29.97.mp4", MOVING[:8], fps=Fraction(30000, 1001))),
    Media("tenth-fps.mp4", "timing", OK, lambda f: encode(f / "tenth-fps.mp4", MOVING[:4], fps=Fraction(1, 10))),
    Media("1000-fps.mp4", "timing", OK, lambda f: encode(f / "1000-fps.mp4", MOVING[:8], fps=Fraction(1000))),
    Media("2400-fps.mkv", "timing", OK, lambda f: encode(f / "2400-fps.mkv", MOVING[:8], fps=Fraction(2400),
                                                         codec="ffv1", time_base=Fraction(1, 2400)),
          "high-speed footage: written at its own rate"),
    # pixel formats: every one is converted to 8-bit RGB (alpha dropped)
    Media("yuv420p10le.mp4", "pixel format", OK, lambda f: encode(f / "yuv420p10le.mp4", MOVING[:6], pix_fmt="yuv420p10le")),
    Media("yuv444p10le.mkv", "pixel format", OK, lambda f: encode(f / "yuv444p10le.mkv", MOVING[:6], pix_fmt="yuv444p10le")),
    Media("av1-yuv420p10le.mkv", "pixel format", OK, _av1_10bit),
    Media("yuv444p.mp4", "pixel format", OK, lambda f: encode(f / "yuv444p.mp4", MOVING[:6], pix_fmt="yuv444p")),
    Media("yuv422p.mkv", "pixel format", OK, lambda f: encode(f / "yuv422p.mkv", MOVING[:6], pix_fmt="yuv422p")),
    Media("alpha-vp9.webm", "pixel format", OK,
          lambda f: encode(f / "alpha-vp9.webm", _rgba(), codec="libvpx-vp9", pix_fmt="yuva420p",
                           source_format="rgba", options=VP9_FAST), "alpha dropped, colour kept"),
    Media("alpha-qtrle.mov", "pixel format", OK,
          lambda f: encode(f / "alpha-qtrle.mov", _rgba(), codec="qtrle", pix_fmt="argb", source_format="rgba")),
    Media("alpha-ffv1.mkv", "pixel format", OK,
          lambda f: encode(f / "alpha-ffv1.mkv", _rgba(), codec="ffv1", pix_fmt="yuva420p", source_format="rgba")),
    Media("rgba.png", "pixel format", OK, lambda f: image(f / "rgba.png", _rgba()[0], "png", "rgba", "rgba")),
    Media("grayscale.gif", "pixel format", OK,
          lambda f: encode(f / "grayscale.gif", _gray(), codec="gif", pix_fmt="gray", source_format="gray")),
    Media("gray-ffv1.mkv", "pixel format", OK,
          lambda f: encode(f / "gray-ffv1.mkv", _gray(), codec="ffv1", pix_fmt="gray", source_format="gray")),
    Media("gray16.png", "pixel format", OK, lambda f: image(f / "gray16.png", _gray()[0], "png", "gray16be", "gray")),
    Media("palette.gif", "pixel format", OK, lambda f: encode(f / "palette.gif", MOVING[:6], codec="gif", pix_fmt="rgb8")),
    Media("mjpeg-yuvj422p.avi", "pixel format", OK,
          lambda f: encode(f / "mjpeg-yuvj422p.avi", MOVING[:6], codec="mjpeg", pix_fmt="yuvj422p")),
    # images passed as a video: one-frame videos
    Media("image.png", "image as video", OK, lambda f: image(f / "image.png", MOVING[0], "png", "rgb24")),
    Media("image.jpg", "image as video", OK, lambda f: image(f / "image.jpg", MOVING[0], "mjpeg", "yuvj420p")),
    Media("image.bmp", "image as video", OK, lambda f: image(f / "image.bmp", MOVING[0], "bmp", "bgr24")),
    Media("png-named.mp4", "image as video", OK, lambda f: image(f / "png-named.mp4", MOVING[0], "png", "rgb24")),
    # paths
    Media("missing.mp4", "path", E_IN, lambda f: f / "missing.mp4"),
    Media("empty-folder", "path", E_IN, _mkdir("empty-folder")),
    Media("folder-without-frames", "path", E_IN,
          _mkdir("folder-without-frames", {"readme.txt": lambda p: p.write_text("no frames here\n")})),
    Media("frame-folder-of-one", "path", OK,
          _mkdir("frame-folder-of-one", {"0001.png": lambda p: image(p, MOVING[0], "png", "rgb24")})),
    Media("spaces and non-ascii.mp4", "path", OK, _non_ascii),
    Media("dangling-symlink.mp4", "path", E_IN, _symlink),
    Media("named-pipe.mp4", "path", E_IN, _fifo, "refused without being opened (reading would block)"),
]


def make_media(folder: Path) -> dict[str, Path]:
    """Write every MEDIA input into `folder`; name -> path."""
    return {m.name: m.make(folder) for m in MEDIA}


def eight_k(path: Path) -> Path:
    """Two flat 7680x4320 frames (H.264, 100 KB): huge to decode, cheap to write."""
    height, width = 4320, 7680
    yuv = np.full((height * 3 // 2, width), 128, np.uint8)  # grey chroma
    yuv[:height] = 90
    yuv[2000:2320, 3000:3640] = 200
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=12)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"preset": "ultrafast", "crf": "40"}
        for i in range(2):
            frame = av.VideoFrame.from_ndarray(yuv, format="yuv420p")
            frame.pts = i
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path
