import errno
import json
import os
import subprocess
import sys
import warnings
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import torch

from magvit_cli.errors import InputError, OutputError, UsageError
from magvit_cli.video import (
    VideoInfo,
    VideoWarning,
    VideoWriter,
    as_fps,
    default_output_path,
    frames_to_tensor,
    iter_frames,
    iter_timed_frames,
    iter_windows,
    probe,
    read_video,
    tensor_to_frames,
    window_starts,
    write_video,
)

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"
NTSC = Fraction(30000, 1001)
SAMPLE_RATE = 48000


def moving_frames(count: int, height: int = 48, width: int = 64) -> np.ndarray:
    """Gradients plus a moving white square: real motion, yet easy on lossy codecs."""
    y, x = np.mgrid[0:height, 0:width]
    frames = np.empty((count, height, width, 3), np.uint8)
    for i in range(count):
        frames[i, ..., 0] = x * 255 // (width - 1)
        frames[i, ..., 1] = y * 255 // (height - 1)
        frames[i, ..., 2] = (40 + 8 * i) % 256
        left = (2 * i) % (width - 12)
        frames[i, 8:20, left:left + 12] = 255
    return frames


def make_clip(path: Path, count: int = 60, fps: Fraction = NTSC, burst_at: float | None = 1.0,
              rotation: int | None = None, timestamps: list[int] | None = None, audio_codec: str = "aac") -> Path:
    """A clip written with PyAV directly (not with the code under test): H.264 video and,
    when `burst_at` is given, stereo AAC as long as the video, silent except a 1 kHz burst of
    0.1 s at `burst_at` seconds. `timestamps` (ms) make the frame spacing irregular."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        time_base = Fraction(1, 1000) if timestamps else 1 / fps
        stream.codec_context.time_base = stream.time_base = time_base
        if rotation is not None:
            stream.set_display_rotation(rotation)
        if burst_at is not None:
            audio = container.add_stream(audio_codec, rate=SAMPLE_RATE)
            audio.layout = "stereo"
        for i, rgb in enumerate(moving_frames(count)):
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            frame.pts, frame.time_base = (timestamps[i] if timestamps else i), time_base
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
        if burst_at is None:
            return path
        total = int(count / fps * SAMPLE_RATE)
        t = np.arange(total) / SAMPLE_RATE
        burst = (t >= burst_at) & (t < burst_at + 0.1)
        signal = np.where(burst, 0.5 * np.sin(2 * np.pi * 1000 * t), 0.0).astype(np.float32)
        for start in range(0, total, 1024):
            chunk = signal[start:start + 1024]
            frame = av.AudioFrame.from_ndarray(np.stack([chunk, chunk]), format="fltp", layout="stereo")
            frame.sample_rate, frame.pts, frame.time_base = SAMPLE_RATE, start, Fraction(1, SAMPLE_RATE)
            container.mux(audio.encode(frame))
        container.mux(audio.encode(None))
    return path


def reopen(path: Path) -> dict:
    """What the container itself says about a written file; audio times are presentation
    times (frame timestamps), not sample counts."""
    with av.open(str(path)) as container:
        v = container.streams.video[0]
        result = {
            "codec": v.codec_context.name,
            "frames": sum(1 for p in container.demux(v) if p.size),
            "fps": v.average_rate,
            "video_start": float(v.start_time * v.time_base) if v.start_time else 0.0,
            "audio": [a.codec_context.name for a in container.streams.audio],
        }
    with av.open(str(path)) as container:
        if container.streams.audio:
            result["burst_at"] = None
            for frame in container.decode(audio=0):
                samples = frame.to_ndarray()[0]
                if not frame.format.is_planar:
                    samples = samples[:: len(frame.layout.channels)]
                start = float(frame.pts * frame.time_base)
                loud = np.flatnonzero(np.abs(samples) > 0.05)
                if result["burst_at"] is None and len(loud):
                    result["burst_at"] = start + loud[0] / frame.sample_rate
                result["audio_end"] = start + frame.samples / frame.sample_rate
    return result


def listing(folder: Path) -> set[str]:
    return {p.name for p in folder.iterdir()}


# ----------------------------------------------------------------------------- round trips

ROUND_TRIPS = [
    # target, fps, codec, mean abs error allowed on 0..255 (4:2:0 chroma alone costs ~1.9 here)
    ("out.mp4", NTSC, "h264", 3.0),
    ("out.mov", NTSC, "h264", 3.0),
    ("out.mkv", NTSC, "h264", 3.0),
    ("out.webm", NTSC, "vp9", 3.0),
    ("out.avi", Fraction(25), "mpeg4", 3.0),
    ("out.gif", Fraction(25), "gif", 4.0),  # GIF stores 1/100 s delays: 25 and 10 fps are exact
    ("out.gif", Fraction(10), "gif", 4.0),
    ("frames/", Fraction(24), "png", 0.0),
]


@pytest.mark.parametrize("target, fps, codec, tolerance", ROUND_TRIPS)
def test_round_trip(tmp_path, target, fps, codec, tolerance):
    frames = moving_frames(18)
    out = write_video(tmp_path / target, iter(frames), fps)
    info = probe(out, folder_fps=fps)
    assert (info.width, info.height, info.num_frames) == (64, 48, 18)
    assert info.fps == fps and isinstance(info.fps, Fraction)
    assert info.duration == pytest.approx(18 / fps, abs=0.002)
    assert info.codec == codec and not info.has_audio and not info.variable_frame_rate
    decoded, info2 = read_video(out, folder_fps=fps)
    assert decoded.shape == frames.shape and decoded.dtype == np.uint8
    assert info2.num_frames == 18  # every frame, also those the decoder holds back (B-frames)
    error = np.abs(decoded.astype(int) - frames).mean()
    assert error <= tolerance
    if tolerance == 0:
        np.testing.assert_array_equal(decoded, frames)
    assert not [n for n in listing(tmp_path) if n.startswith(".")]  # no temporary left


def test_exact_ntsc_rate_survives_mp4(tmp_path):
    out = write_video(tmp_path / "clip.mp4", moving_frames(30), "29.97")
    with av.open(str(out)) as container:
        stream = container.streams.video[0]
        assert stream.average_rate == NTSC
        assert stream.duration * stream.time_base == Fraction(30) / NTSC  # 1.001 s exactly


def test_container_rate_and_count_for_mkv_are_counted(tmp_path):
    out = write_video(tmp_path / "clip.mkv", moving_frames(21), NTSC)
    info = probe(out)
    assert info.frames_counted and info.num_frames == 21 and info.fps == NTSC


def test_odd_sizes_are_padded_with_a_warning(tmp_path):
    frames = moving_frames(4, height=17, width=33)
    with pytest.warns(VideoWarning, match="33x17 padded to 34x18"):
        out = write_video(tmp_path / "odd.mp4", frames, 25)
    decoded, info = read_video(out)
    assert (info.width, info.height) == (34, 18)
    decoded = decoded.astype(int)
    assert np.abs(decoded[:, :17, :33] - frames).mean() < 6  # in place, not rescaled
    assert np.abs(decoded[:, :, 33] - decoded[:, :, 32]).mean() < 6  # the pad repeats the edge
    assert np.abs(decoded[:, 17] - decoded[:, 16]).mean() < 6


def test_odd_height_alone_is_padded(tmp_path):
    with pytest.warns(VideoWarning, match="32x17 padded to 32x18"):
        out = write_video(tmp_path / "odd.mp4", moving_frames(2, height=17, width=32), 25)
    assert (probe(out).width, probe(out).height) == (32, 18)
    decoded = read_video(out)[0].astype(int)
    assert np.abs(decoded[:, 17] - decoded[:, 16]).mean() < 6  # the added row repeats the last one


def test_frames_that_are_not_rgb_uint8_are_refused(tmp_path):
    for frame in (np.zeros((8, 8), np.uint8), np.zeros((8, 8, 3), np.float32), np.zeros((8, 8, 4), np.uint8)):
        with pytest.raises(ValueError, match="uint8 \\[H, W, 3\\]"):
            write_video(tmp_path / "out.mp4", [frame], 25)


def test_a_missing_encoder_falls_back(tmp_path, monkeypatch):
    from magvit_cli import video

    monkeypatch.setattr(video, "_has_encoder", lambda name: name != "libx264")
    with pytest.warns(VideoWarning, match="no libx264 encoder; writing mpeg4"):
        out = write_video(tmp_path / "out.mp4", moving_frames(3), 25)
    assert probe(out).codec == "mpeg4" and probe(out).num_frames == 3


def test_timed_frames_of_a_folder(tmp_path):
    folder = write_video(tmp_path / "frames/", moving_frames(5), 24)
    times = [t for t, _ in iter_timed_frames(folder, start=2, folder_fps=Fraction(10))]
    assert times == [0.2, 0.3, 0.4]
    assert list(iter_timed_frames(folder, start=2, stop=2)) == []
    for start, stop in ((-1, None), (3, 2)):
        with pytest.raises(UsageError, match="invalid frame range"):
            iter_timed_frames(folder, start, stop)


@pytest.mark.parametrize("value", ["1/100", 1000, "1000"])
def test_as_fps_accepts_its_bounds(value):
    assert as_fps(value) == Fraction(value)

def test_frame_folder_input_is_sorted_naturally(tmp_path):
    folder = tmp_path / "shots"
    folder.mkdir()
    frames = moving_frames(11)
    for i, frame in enumerate(frames):  # img_1.png, ..., img_10.png: "10" sorts after "9"
        write_video(tmp_path / "tmpframe/", [frame], 24)
        (tmp_path / "tmpframe" / "frame_000000.png").rename(folder / f"img_{i + 1}.png")
        (tmp_path / "tmpframe").rmdir()
    (folder / "notes.txt").write_text("not a frame")
    info = probe(folder, folder_fps=Fraction(12))
    assert (info.num_frames, info.fps, info.duration, info.container) == (11, 12, 11 / 12, "frames")
    assert probe(folder).fps == 24  # the default rate of a frame folder
    np.testing.assert_array_equal(np.stack(list(iter_frames(folder))), frames)
    np.testing.assert_array_equal(np.stack(list(iter_frames(folder, start=3, stop=5))), frames[3:5])


def test_frame_folder_info_and_files(tmp_path):
    frames = moving_frames(3)
    folder = write_video(tmp_path / "frames/", frames, 24)
    assert sorted(p.name for p in folder.iterdir()) == ["frame_000000.png", "frame_000001.png", "frame_000002.png"]
    (folder / ".frame_000003.png").write_bytes((folder / "frame_000000.png").read_bytes())  # hidden: not a frame
    (folder / "_cover.png").write_bytes((folder / "frame_000001.png").read_bytes())  # "_" sorts before letters
    info = probe(folder, folder_fps=Fraction(10))
    assert info.to_dict() == {
        "path": str(folder), "container": "frames", "codec": "png", "width": 64, "height": 48, "num_frames": 4,
        "frames_counted": True, "fps": "10/1", "fps_float": 10.0, "duration": 0.4, "rotation": 0,
        "pix_fmt": "rgb24", "bit_depth": 8, "variable_frame_rate": False, "has_audio": False, "audio_codec": None}
    decoded, read_info = read_video(folder, folder_fps=Fraction(10))
    assert read_info == info
    np.testing.assert_array_equal(decoded, np.concatenate([frames[1:2], frames]))


@pytest.mark.parametrize("total, window, overlap, expected", [
    (16, 16, 4, [(0, 16)]), (17, 16, 4, [(0, 16), (12, 5)]), (28, 16, 4, [(0, 16), (12, 16)]),
    (29, 16, 4, [(0, 16), (12, 16), (24, 5)]), (5, 16, 4, [(0, 5)]), (8, 2, 0, [(0, 2), (2, 2), (4, 2), (6, 2)]),
    (5, 4, 3, [(0, 4), (1, 4)]),  # stride 1: the last full window ends on the last frame, none past it
])
def test_window_starts(total, window, overlap, expected):
    assert window_starts(total, window, overlap) == expected

def test_jpeg_frame_folder(tmp_path):
    folder = tmp_path / "jpegs"
    folder.mkdir()
    frames = moving_frames(3)
    for i, rgb in enumerate(frames):
        encoder = av.CodecContext.create("mjpeg", "w")
        encoder.width, encoder.height, encoder.pix_fmt = 64, 48, "yuvj420p"
        encoder.time_base = Fraction(1, 24)
        image = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuvj420p")
        (folder / f"{i:03d}.JPG").write_bytes(b"".join(bytes(p) for p in encoder.encode(image) + encoder.encode(None)))
    info = probe(folder)
    assert (info.num_frames, info.codec, info.width, info.height) == (3, "mjpeg", 64, 48)
    decoded = np.stack(list(iter_frames(folder)))
    assert decoded.shape == frames.shape and np.abs(decoded.astype(int) - frames).mean() < 4


def test_mpeg_program_stream_input_is_counted(tmp_path):
    path = tmp_path / "old.mpg"
    with av.open(str(path), "w", format="mpeg") as container:  # written with PyAV directly
        stream = container.add_stream("mpeg2video", rate=25)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for i, rgb in enumerate(moving_frames(20)):
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            frame.pts, frame.time_base = i, Fraction(1, 25)
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    info = probe(path)
    assert (info.container, info.codec, info.fps) == ("mpeg", "mpeg2video", 25)
    assert info.frames_counted and info.num_frames == 20 == len(list(iter_frames(path)))
    assert info.duration == pytest.approx(0.8, abs=0.001)


def test_frame_folder_with_mixed_sizes_is_an_input_error(tmp_path):
    write_video(tmp_path / "a/", moving_frames(2), 24)
    write_video(tmp_path / "b/", moving_frames(1, height=32, width=32), 24)
    (tmp_path / "b" / "frame_000000.png").rename(tmp_path / "a" / "frame_000002.png")
    with pytest.raises(InputError, match="same size"):
        list(iter_frames(tmp_path / "a"))
    with pytest.raises(InputError, match="same size"):
        list(iter_windows(tmp_path / "a", 2))


# ----------------------------------------------------------------------------- audio and timing


@pytest.fixture(scope="module")
def clip_with_audio(tmp_path_factory) -> Path:
    return make_clip(tmp_path_factory.mktemp("src") / "input.mp4", count=60, fps=NTSC, burst_at=1.0)


@pytest.mark.parametrize("suffix, audio_codec", [(".mp4", "aac"), (".mov", "aac"), (".mkv", "aac"), (".webm", "opus")])
def test_timeline_preserving_write_keeps_fps_duration_and_audio(tmp_path, clip_with_audio, suffix, audio_codec):
    frames, info = read_video(clip_with_audio)
    assert info.has_audio and info.audio_codec == "aac" and info.fps == NTSC
    out = write_video(tmp_path / f"same{suffix}", frames, info.fps, audio_from=clip_with_audio,
                      inputs=[clip_with_audio])
    meta = reopen(out)
    assert meta["frames"] == 60 and meta["fps"] == NTSC and meta["video_start"] == 0.0
    assert meta["audio"] == [audio_codec]  # copied, re-encoded to Opus only for webm
    # duration kept to within one audio packet (1024 samples = 21 ms), burst where it was
    assert meta["audio_end"] == pytest.approx(2.002, abs=0.025)
    assert meta["burst_at"] == pytest.approx(1.0, abs=0.025)
    assert probe(out).duration == pytest.approx(2.002, abs=0.001)


def test_interpolation_keeps_duration_and_audio_at_a_higher_rate(tmp_path, clip_with_audio):
    frames, info = read_video(clip_with_audio)
    doubled = np.repeat(frames, 2, axis=0)
    out = write_video(tmp_path / "fast.mp4", doubled, info.fps * 2, audio_from=clip_with_audio)
    meta = reopen(out)
    assert meta["frames"] == 120 and meta["fps"] == 2 * NTSC
    assert probe(out).duration == pytest.approx(2.002, abs=0.001)
    assert meta["audio_end"] == pytest.approx(2.002, abs=0.025)
    assert meta["burst_at"] == pytest.approx(1.0, abs=0.025)


def test_prediction_appends_frames_and_keeps_the_audio_as_is(tmp_path, clip_with_audio):
    frames, info = read_video(clip_with_audio)
    longer = np.concatenate([frames, frames[-16:]])
    out = write_video(tmp_path / "longer.mp4", longer, info.fps, audio_from=clip_with_audio)
    meta = reopen(out)
    assert meta["frames"] == 76 and probe(out).duration == pytest.approx(76 / NTSC, abs=0.001)
    assert meta["audio_end"] == pytest.approx(2.002, abs=0.025)  # not stretched, not padded
    assert meta["burst_at"] == pytest.approx(1.0, abs=0.025)


def test_audio_start_keeps_a_cut_aligned(tmp_path, clip_with_audio):
    frames, info = read_video(clip_with_audio)
    start = 15 / info.fps  # 0.5005 s
    out = write_video(tmp_path / "cut.mp4", frames[15:45], info.fps, audio_from=clip_with_audio,
                      audio_start=float(start))
    meta = reopen(out)
    assert meta["frames"] == 30
    assert meta["audio_end"] == pytest.approx(30 / NTSC, abs=0.025)  # cut where the video ends
    assert meta["burst_at"] == pytest.approx(1.0 - float(start), abs=0.025)


def audio_packets(path: Path) -> list[tuple[float, bytes]]:
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        return [(float(p.pts * stream.time_base), bytes(p)) for p in container.demux(stream) if p.size]


@pytest.mark.parametrize("suffix, preroll", [(".mkv", 0), (".mp4", 1), (".mov", 1)])
def test_copied_audio_is_the_sources_packets_from_the_cut(tmp_path, clip_with_audio, suffix, preroll):
    """Stream copy from a cut at packet 10 (AAC, 1,024 samples at 48 kHz) for as long as 30
    video frames: the source's packets as they are, retimed, with one packet before the
    cut where an edit list hides it (mp4, mov) and none elsewhere."""
    frames, info = read_video(clip_with_audio)
    packet = 1024 / SAMPLE_RATE
    start, end = 10 * packet, 10 * packet + 30 / float(NTSC)
    out = write_video(tmp_path / f"cut{suffix}", frames[15:45], info.fps, audio_from=clip_with_audio,
                      audio_start=start)
    expected = [(t - start, data) for t, data in audio_packets(clip_with_audio)
                if start - preroll * packet - 1e-9 <= t < end]
    written = audio_packets(out)
    assert [data for _, data in written] == [data for _, data in expected]
    np.testing.assert_allclose([t for t, _ in written], [t for t, _ in expected], atol=0.001)
    assert written[preroll][0] == pytest.approx(0, abs=0.001)

def test_audio_dropped_from_a_source_with_undecodable_metadata_is_still_noticed(tmp_path, clip_with_audio):
    """A title that is not UTF-8 (bytes patched into the file) must not hide the source's
    audio from the warning, nor crash it; a frame folder as the audio source has none."""
    titled = tmp_path / "titled.mp4"
    with av.open(str(clip_with_audio)) as src, av.open(str(titled), "w") as dst:
        dst.metadata["title"] = "TITLE-PLACEHOLDER"
        streams = {s.index: dst.add_stream_from_template(s) for s in src.streams}
        for packet in src.demux():
            if packet.dts is not None:
                packet.stream = streams[packet.stream.index]
                dst.mux(packet)
    data = titled.read_bytes()
    assert data.count(b"TITLE-PLACEHOLDER") == 1
    titled.write_bytes(data.replace(b"TITLE-PLACEHOLDER", b"\xff\xfe\xfa" + b"x" * 14))
    with pytest.raises(UnicodeDecodeError):  # what PyAV does with it by default
        av.open(str(titled)).close()
    assert probe(titled).has_audio  # read with the bad bytes replaced
    copied = write_video(tmp_path / "copied.mp4", moving_frames(30), 25, audio_from=titled)
    assert reopen(copied)["audio"] == ["aac"]
    with pytest.warns(VideoWarning, match="cannot hold audio"):
        write_video(tmp_path / "out/", moving_frames(2), 25, audio_from=titled)
    folder = write_video(tmp_path / "frames/", moving_frames(2), 25)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        write_video(tmp_path / "again/", moving_frames(2), 25, audio_from=folder)

@pytest.mark.parametrize("target, audio_codec", [("out.mov", "aac"), ("out.webm", "opus"), ("out.mkv", "opus")])
def test_audio_the_container_refuses_is_reencoded(tmp_path, target, audio_codec):
    source = make_clip(tmp_path / "opus.mkv", count=50, fps=Fraction(25), burst_at=1.0, audio_codec="libopus")
    frames, info = read_video(source)
    out = write_video(tmp_path / target, frames, info.fps, audio_from=source)
    meta = reopen(out)
    assert meta["audio"] == [audio_codec]  # .mov lists Opus but refuses it: AAC instead
    assert meta["burst_at"] == pytest.approx(1.0, abs=0.025) and meta["audio_end"] == pytest.approx(2.0, abs=0.025)
    assert meta["frames"] == 50 and meta["video_start"] == 0.0


def test_reencoded_audio_of_a_cut_is_flushed_to_the_end_of_the_video(tmp_path):
    """The encoder's last samples are flushed when the audio runs past the video's end too."""
    source = make_clip(tmp_path / "opus.mkv", count=50, fps=Fraction(25), burst_at=1.0, audio_codec="libopus")
    frames, info = read_video(source)
    out = write_video(tmp_path / "cut.mov", frames[:25], info.fps, audio_from=source)  # 1 s of 2
    with av.open(str(out)) as container:
        rate = container.streams.audio[0].rate
        seconds = sum(frame.samples for frame in container.decode(audio=0)) / rate
    assert 1.0 <= seconds < 1.05  # measured 1.024 (the last AAC frame of 1024 samples); unflushed 0.96


def clip_with_silence(path: Path, codec: str, rate: int, layout: str) -> Path:
    """One second of video and of silent audio in `codec` at `rate` Hz with `layout`."""
    with av.open(str(path), "w") as container:
        video = container.add_stream("libx264", rate=25)
        video.width, video.height, video.pix_fmt = 64, 48, "yuv420p"
        audio = container.add_stream(codec, rate=rate)
        audio.layout = layout
        for i, rgb in enumerate(moving_frames(25)):
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            frame.pts, frame.time_base = i, Fraction(1, 25)
            container.mux(video.encode(frame))
        container.mux(video.encode(None))
        sample_format = audio.codec_context.format
        channels = len(av.AudioLayout(layout).channels)
        shape = (channels, 1024) if sample_format.is_planar else (1, 1024 * channels)
        for start in range(0, rate, 1024):
            samples = np.zeros(shape, np.float32 if sample_format.name.startswith("flt") else np.int16)
            frame = av.AudioFrame.from_ndarray(samples, format=sample_format.name, layout=layout)
            frame.sample_rate, frame.pts, frame.time_base = rate, start, Fraction(1, rate)
            container.mux(audio.encode(frame))
        container.mux(audio.encode(None))
    return path


@pytest.mark.parametrize("codec, layout, target, expected", [
    ("flac", "mono", "out.mov", ("aac", 44100, 1)),  # mov refuses FLAC: AAC at the source's rate and layout
    ("flac", "mono", "out.webm", ("opus", 48000, 1)),  # Opus runs at 48 kHz
    ("aac", "5.1", "out.webm", ("opus", 48000, 2)),  # more than two channels are mixed down to stereo
    ("aac", "3.0", "out.webm", ("opus", 48000, 2)),  # three as well
])
def test_reencoded_audio_keeps_rate_and_channels_where_it_can(tmp_path, codec, layout, target, expected):
    source = clip_with_silence(tmp_path / "source.mkv", codec, 44100, layout)
    frames, info = read_video(source)
    out = write_video(tmp_path / target, frames, info.fps, audio_from=source)
    with av.open(str(out)) as container:
        audio = container.streams.audio[0]
        assert (audio.codec_context.name, audio.sample_rate, audio.channels) == expected
    assert reopen(out)["audio_end"] == pytest.approx(1.0, abs=0.025)

@pytest.mark.parametrize("target", ["out.gif", "outframes/"])
def test_audio_is_dropped_with_a_warning_where_it_cannot_go(tmp_path, clip_with_audio, target):
    frames = moving_frames(5)
    with pytest.warns(VideoWarning, match="audio is dropped"):
        out = write_video(tmp_path / target, frames, 25, audio_from=clip_with_audio)
    assert probe(out).has_audio is False


# ----------------------------------------------------------------------------- streaming

STREAMING_SCRIPT = """
import resource, sys
from magvit_cli.video import iter_windows
for path in sys.argv[1:]:  # the peak only grows: the longer video goes second
    count = 0
    for start, window in iter_windows(path, 16, 4):
        count = start + len(window)
    print(count, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024)
"""


def test_streaming_read_memory_does_not_grow_with_length(tmp_path):
    def synthetic(name: str, count: int) -> Path:
        base = moving_frames(1, height=240, width=320)[0]
        frames = (np.roll(base, 3 * i, axis=1) for i in range(count))  # generated lazily
        return write_video(tmp_path / name, frames, 25)

    short, long = synthetic("short.avi", 100), synthetic("long.avi", 400)
    # a fresh interpreter, so that no earlier test's peak hides this one
    result = subprocess.run([sys.executable, "-c", STREAMING_SCRIPT, str(short), str(long)],
                            capture_output=True, text=True, check=True, cwd=REPO)
    (count_short, peak_short), (count_long, peak_long) = [map(int, line.split()) for line in result.stdout.splitlines()]
    assert (count_short, count_long) == (100, 400)
    # the 300 extra frames are 300 * 225 KiB = 66 MiB: holding them would show
    assert peak_long - peak_short < 16, (peak_short, peak_long)


def test_iter_windows_overlap_and_tail(tmp_path):
    frames = moving_frames(40)
    folder = write_video(tmp_path / "frames/", frames, 24)  # lossless, so contents compare exactly
    windows = list(iter_windows(folder, 16, 4))
    assert [start for start, _ in windows] == [0, 12, 24]  # 36..39 were all in the last window
    for start, window in windows:
        np.testing.assert_array_equal(window, frames[start:start + 16])
    assert [(s, len(w)) for s, w in iter_windows(folder, 16)] == [(0, 16), (16, 16), (32, 8)]
    assert [(s, len(w)) for s, w in iter_windows(folder, 64, 8)] == [(0, 40)]
    with pytest.raises(UsageError):
        iter_windows(folder, 16, 16)


def test_iter_windows_of_single_frames_and_of_a_clip_shorter_than_the_overlap(tmp_path):
    frames = moving_frames(3)
    folder = write_video(tmp_path / "frames/", frames, 24)
    singles = list(iter_windows(folder, 1))
    assert [start for start, _ in singles] == [0, 1, 2]
    assert all(window.dtype == np.uint8 and window.shape == (1, 48, 64, 3) for _, window in singles)
    one = write_video(tmp_path / "one/", frames[:1], 24)
    # a clip shorter than one window, even than the overlap, is still one (short) window
    [(start, window)] = list(iter_windows(one, 8, 4))
    assert start == 0 and window.dtype == np.uint8
    np.testing.assert_array_equal(window, frames[:1])
    with pytest.raises(UsageError):
        iter_windows(folder, 0)

def test_iter_frames_range_matches_full_decode():
    full, _ = read_video(EXAMPLES / "bikes.mp4")
    part = np.stack(list(iter_frames(EXAMPLES / "bikes.mp4", start=20, stop=27)))
    np.testing.assert_array_equal(part, full[20:27])
    assert len(read_video(EXAMPLES / "bikes.mp4", max_frames=5)[0]) == 5


# ----------------------------------------------------------------------------- atomic writes


class Boom(Exception):
    pass


def failing_frames(exception: BaseException, after: int = 5):
    for i, frame in enumerate(moving_frames(10)):
        if i == after:
            raise exception
        yield frame


@pytest.mark.parametrize("target", ["out.mp4", "out.webm", "out.gif", "outframes/"])
@pytest.mark.parametrize("exception", [Boom("mid-way"), KeyboardInterrupt()])
def test_interrupted_write_leaves_nothing(tmp_path, target, exception):
    (tmp_path / "keep.txt").write_text("x")
    with pytest.raises(type(exception)):
        write_video(tmp_path / target, failing_frames(exception), 25)
    assert listing(tmp_path) == {"keep.txt"}


def test_interrupted_write_keeps_the_previous_output(tmp_path):
    out = write_video(tmp_path / "out.mp4", moving_frames(3), 25)
    before = out.read_bytes()
    with pytest.raises(KeyboardInterrupt):
        write_video(out, failing_frames(KeyboardInterrupt()), 25)
    assert out.read_bytes() == before and listing(tmp_path) == {"out.mp4"}
    write_video(out, moving_frames(7), 25)  # a finished write replaces it
    assert probe(out).num_frames == 7 and listing(tmp_path) == {"out.mp4"}


def test_disk_full_is_an_output_error(tmp_path, monkeypatch):
    def no_space(self, frame):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(VideoWriter, "_encode", no_space)
    with pytest.raises(OutputError, match="disk full"):
        write_video(tmp_path / "out.mp4", moving_frames(3), 25)
    assert listing(tmp_path) == set()


@pytest.mark.parametrize("error, message, hint", [
    (OSError(errno.ENOSPC, "No space left on device"), "disk full while writing", "free some space"),
    (OSError(errno.EACCES, "Permission denied"), "cannot write .* \\(permission denied or read-only\\)", "-o"),
    (OSError(errno.EROFS, "Read-only file system"), "permission denied or read-only", "-o"),
    (OSError(errno.EIO, "Input/output error"), "out.mp4 failed: Input/output error$", None),
    (OSError("odd encoder state"), "out.mp4 failed: odd encoder state$", None),  # no errno, no strerror
])
def test_write_failures_become_output_errors_that_say_why(tmp_path, monkeypatch, error, message, hint):
    def fail(self, frame):
        raise error

    monkeypatch.setattr(VideoWriter, "_encode", fail)
    with pytest.raises(OutputError, match=message) as raised:
        write_video(tmp_path / "out.mp4", moving_frames(3), 25)
    assert (raised.value.hint is None) == (hint is None)
    assert hint is None or hint in raised.value.hint
    assert listing(tmp_path) == set()

def test_an_error_without_errno_while_finishing_is_an_output_error(tmp_path, monkeypatch):
    def fail(self):
        raise ValueError("muxer refused the trailer")

    monkeypatch.setattr(VideoWriter, "_finish", fail)
    with pytest.raises(OutputError, match="out.mp4 failed: muxer refused the trailer$"):
        write_video(tmp_path / "out.mp4", moving_frames(2), 25)
    assert listing(tmp_path) == set()

def test_refuses_to_overwrite_the_input(tmp_path, clip_with_audio):
    before = clip_with_audio.read_bytes()
    with pytest.raises(OutputError, match="overwrite the input"):
        write_video(clip_with_audio, moving_frames(3), 25, inputs=[clip_with_audio])
    with pytest.raises(OutputError, match="overwrite the input"):  # also through another spelling
        write_video(clip_with_audio.parent / "." / clip_with_audio.name, moving_frames(3), 25,
                    audio_from=clip_with_audio)
    assert clip_with_audio.read_bytes() == before


def test_output_errors_leave_nothing(tmp_path):
    with pytest.raises(OutputError, match="does not exist"):
        write_video(tmp_path / "missing" / "out.mp4", moving_frames(2), 25)
    with pytest.raises(OutputError, match="cannot write .mpg"):
        write_video(tmp_path / "out.mpg", moving_frames(2), 25)
    with pytest.raises(OutputError, match="no frames"):
        write_video(tmp_path / "out.mp4", [], 25)
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "mine.txt").write_text("x")
    with pytest.raises(OutputError, match="not empty"):
        write_video(tmp_path / "full/", moving_frames(2), 25)
    assert listing(tmp_path) == {"full"} and listing(tmp_path / "full") == {"mine.txt"}


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root can write to read-only folders")
def test_read_only_folder_is_an_output_error(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        with pytest.raises(OutputError, match="not writable"):
            write_video(folder / "out.mp4", moving_frames(2), 25)
    finally:
        folder.chmod(0o755)


# ----------------------------------------------------------------------------- names


@pytest.mark.parametrize("source, task, suffix, expected", [
    ("clip.mp4", "predict", None, "clip.predict.mp4"),
    ("dir/my.clip.MOV", "inpaint", None, "dir/my.clip.inpaint.MOV"),
    ("anim.gif", "predict", None, "anim.predict.gif"),
    ("old.mpg", "predict", None, "old.predict.mp4"),        # cannot write .mpg
    ("clip.mp4", "interpolate", "webm", "clip.interpolate.webm"),
    ("clip.mp4", "predict", ".gif", "clip.predict.gif"),
    ("clip.predict.mp4", "predict", None, "clip.predict.predict.mp4"),
    ("noext", "outpaint", None, "noext.outpaint.mp4"),
])
def test_default_output_path(source, task, suffix, expected):
    out = default_output_path(Path(source), task, suffix)
    assert out == Path(expected) and out != Path(source)


@pytest.mark.parametrize("task", ["", "a/b", ".hidden", "..", os.sep + "abs"])
def test_default_output_path_refuses_task_names_that_are_not_plain_names(task):
    with pytest.raises(UsageError, match="invalid task name"):
        default_output_path("clip.mp4", task)

def test_default_output_path_of_a_frame_folder(tmp_path):
    (tmp_path / "frames.v2").mkdir()
    assert default_output_path(tmp_path / "frames.v2", "predict") == tmp_path / "frames.v2.predict.mp4"
    with pytest.raises(UsageError):
        default_output_path("clip.mp4", "predict", ".mpg")
    with pytest.raises(UsageError):
        default_output_path("clip.mp4", "../x")


# ----------------------------------------------------------------------------- probe


@pytest.mark.parametrize("name", ["bikes.mp4", "carphone.mp4", "city.mp4"])
def test_probe_of_the_examples_matches_the_container(name):
    path = EXAMPLES / name
    info = probe(path)
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        assert info.container == container.format.name
        assert info.codec == stream.codec_context.name
        assert (info.width, info.height) == (stream.codec_context.width, stream.codec_context.height)
        assert info.fps == stream.average_rate
        assert info.num_frames == stream.frames
        assert info.duration == pytest.approx(float(stream.duration * stream.time_base), abs=1e-9)
        assert info.pix_fmt == stream.codec_context.format.name and info.bit_depth == 8
        assert info.has_audio == bool(container.streams.audio)
    assert len(list(iter_frames(path))) == info.num_frames
    json.dumps(info.to_dict())  # ready for --json


def test_examples_have_their_documented_timing():
    assert (probe(EXAMPLES / "carphone.mp4").fps, probe(EXAMPLES / "carphone.mp4").num_frames) == (NTSC, 120)
    assert (probe(EXAMPLES / "bikes.mp4").fps, probe(EXAMPLES / "city.mp4").fps) == (25, 25)


@pytest.mark.parametrize("stored_ccw, rotation", [(90, 270), (-90, 90), (180, 180)])
def test_rotation_is_reported_and_applied(tmp_path, stored_ccw, rotation):
    path = make_clip(tmp_path / "rot.mp4", count=3, fps=Fraction(25), burst_at=None, rotation=stored_ccw)
    info = probe(path)
    assert info.rotation == rotation
    expected_size = (48, 64) if rotation in (90, 270) else (64, 48)
    assert (info.width, info.height) == expected_size
    first = next(iter(iter_frames(path)))
    assert first.shape == (expected_size[1], expected_size[0], 3)
    np.testing.assert_array_equal(first.shape[:2], read_video(path)[0].shape[1:3])
    stored = moving_frames(1)[0]
    turns = {270: 1, 90: 3, 180: 2}[rotation]  # clockwise display rotation = counter-clockwise np.rot90
    assert np.abs(first.astype(int) - np.rot90(stored, turns)).mean() < 3


def test_variable_frame_rate_is_reported(tmp_path):
    steps = [20, 60] * 15  # ms between frames: 25 fps on average, never 25 fps locally
    timestamps = np.concatenate([[0], np.cumsum(steps)[:-1]]).tolist()
    path = make_clip(tmp_path / "vfr.mp4", count=30, fps=Fraction(25), burst_at=None, timestamps=timestamps)
    assert probe(path).variable_frame_rate
    assert not probe(EXAMPLES / "bikes.mp4").variable_frame_rate


def test_variable_frame_rate_is_the_average_rate_not_the_timestamp_base(tmp_path):
    """Guards against probing a VFR clip at its base (r_frame_rate) instead of its average rate."""
    gaps = [30, 70, 45] * 8  # ms each frame lasts: 24 frames in 1160 ms, timestamps on a 5 ms grid
    starts = np.concatenate([[0], np.cumsum(gaps)[:-1]]).tolist()
    lasts = dict(zip(starts, gaps))
    path = tmp_path / "vfr.mp4"
    with av.open(str(path), "w") as container:  # MPEG-4 Part 2: no B-frames, packets in display order
        stream = container.add_stream("mpeg4", rate=25)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        stream.codec_context.time_base = stream.time_base = Fraction(1, 1000)
        frames = [av.VideoFrame.from_ndarray(rgb, format="rgb24") for rgb in moving_frames(len(gaps))]
        for frame, pts in zip([*frames, None], [*starts, None]):
            if frame is not None:
                frame.pts, frame.time_base = pts, Fraction(1, 1000)
            for packet in stream.encode(frame):
                packet.duration = lasts[packet.pts]  # ms: the last frame's length is stated, not guessed
                container.mux(packet)
    with av.open(str(path)) as container:  # the file really is variable-rate: 200 fps base, not the average
        assert container.streams.video[0].base_rate == 200
    info = probe(path)
    assert info.fps == Fraction(24 * 1000, 1160) == Fraction(600, 29), f"fps {info.fps}"
    assert info.num_frames == 24 and info.duration == pytest.approx(1.16, abs=1e-9)
    assert info.variable_frame_rate


# ----------------------------------------------------------------------------- bad inputs


def test_bad_inputs_are_input_errors(tmp_path, clip_with_audio):
    with pytest.raises(InputError, match="does not exist"):
        probe(tmp_path / "nope.mp4")
    (tmp_path / "empty.mp4").write_bytes(b"")
    with pytest.raises(InputError, match="empty"):
        probe(tmp_path / "empty.mp4")
    (tmp_path / "one.mp4").write_bytes(b"x")
    with pytest.raises(InputError, match="not a readable video"):
        probe(tmp_path / "one.mp4")
    (tmp_path / "notes.mp4").write_text("just some text\n" * 50)
    with pytest.raises(InputError, match="not a readable video"):
        probe(tmp_path / "notes.mp4")
    data = (EXAMPLES / "bikes.mp4").read_bytes()  # index at the end: a cut file has none
    (tmp_path / "cut.mp4").write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError):
        probe(tmp_path / "cut.mp4")
    with pytest.raises(InputError):
        list(iter_frames(tmp_path / "cut.mp4"))
    (tmp_path / "nothing").mkdir()
    with pytest.raises(InputError, match="no PNG or JPEG"):
        probe(tmp_path / "nothing")


def test_audio_only_file_has_no_video_stream(tmp_path):
    path = tmp_path / "sound.m4a"
    with av.open(str(path), "w") as container:
        audio = container.add_stream("aac", rate=SAMPLE_RATE)
        audio.layout = "mono"
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
        frame.sample_rate, frame.pts = SAMPLE_RATE, 0
        container.mux(audio.encode(frame))
        container.mux(audio.encode(None))
    with pytest.raises(InputError, match="no video stream"):
        probe(path)


def test_codec_without_a_decoder_is_an_input_error(monkeypatch):
    real_codec = av.Codec

    def codec(name, mode="r"):  # an FFmpeg build without an H.264 decoder
        if name == "h264" and mode == "r":
            raise av.codec.codec.UnknownCodecError(name)  # what PyAV raises then
        return real_codec(name, mode)

    monkeypatch.setattr(av, "Codec", codec)
    with pytest.raises(InputError, match="cannot decode 'h264' video"):
        probe(EXAMPLES / "bikes.mp4")


def test_corrupt_data_is_an_input_error(tmp_path):
    data = bytearray((EXAMPLES / "bikes.mp4").read_bytes())
    rng = np.random.default_rng(0)
    data[20_000:80_000] = rng.integers(0, 256, 60_000, dtype=np.uint8).tobytes()
    (tmp_path / "bad.mp4").write_bytes(bytes(data))
    with pytest.raises(InputError, match="corrupt"):
        list(iter_frames(tmp_path / "bad.mp4"))


# ----------------------------------------------------------------------------- helpers


def test_tensor_conversions():
    frames = moving_frames(3)
    tensor = frames_to_tensor(frames)
    assert tensor.shape == (3, 3, 48, 64) and tensor.dtype == torch.float32
    assert 0 <= tensor.min() and tensor.max() <= 1
    assert tensor[0, 1, 5, 7] == pytest.approx(frames[1, 5, 7, 0] / 255)
    np.testing.assert_array_equal(tensor_to_frames(tensor), frames)
    wild = torch.tensor([-0.5, 0.5, 1.7, 0.2 / 255]).view(1, 1, 1, 4).expand(3, 1, 1, 4)
    assert tensor_to_frames(wild)[0, 0, :, 0].tolist() == [0, 128, 255, 0]  # clipped and rounded


@pytest.mark.parametrize("shape", [(4, 2, 8, 8), (3, 8, 8), (1, 3, 2, 8, 8), (2, 2, 8, 8)])
def test_tensor_to_frames_refuses_other_shapes(shape):
    with pytest.raises(ValueError, match=r"\[3, T, H, W\]"):
        tensor_to_frames(torch.zeros(shape))


def test_video_info_as_json(tmp_path):
    info = VideoInfo(path=tmp_path / "a.mp4", container="mov,mp4,m4a,3gp,3g2,mj2", codec="h264", width=64, height=48,
                     num_frames=60, frames_counted=True, fps=NTSC, duration=2.002, rotation=90, pix_fmt="yuv420p",
                     bit_depth=8, variable_frame_rate=False, has_audio=True, audio_codec="aac")
    assert json.loads(json.dumps(info.to_dict())) == {
        "path": str(tmp_path / "a.mp4"), "container": "mov,mp4,m4a,3gp,3g2,mj2", "codec": "h264", "width": 64,
        "height": 48, "num_frames": 60, "frames_counted": True, "fps": "30000/1001", "fps_float": 30000 / 1001,
        "duration": 2.002, "rotation": 90, "pix_fmt": "yuv420p", "bit_depth": 8, "variable_frame_rate": False,
        "has_audio": True, "audio_codec": "aac"}

@pytest.mark.parametrize("value, expected", [
    ("29.97", NTSC), (29.97, NTSC), (23.976, Fraction(24000, 1001)), ("59.94", Fraction(60000, 1001)),
    ("30000/1001", NTSC), (25, Fraction(25)), (12.5, Fraction(25, 2)), (Fraction(90000, 3003), NTSC),
])
def test_as_fps(value, expected):
    assert as_fps(value) == expected


@pytest.mark.parametrize("value", ["fast", 0, -5, "1/0", 5000])
def test_as_fps_rejects_nonsense(value):
    with pytest.raises(UsageError):
        as_fps(value)


# ----------------------------------------------------------------------------- examples/batch.sh

FAKE_MAGVIT = """#!/usr/bin/env bash
echo "$*" >> "$CALLS"
case "$2" in *bad*) echo "error: $2 is corrupt" >&2; exit 3 ;; esac
echo '{"output": "done"}'
"""


@pytest.fixture
def batch_folder(tmp_path):
    folder = tmp_path / "clips"
    folder.mkdir()
    for name in ["a.mp4", "b_bad.mp4", "c.mp4", "a.predict.mp4", "notes.txt"]:
        (folder / name).write_bytes(b"")
    fake = tmp_path / "fake-magvit"
    fake.write_text(FAKE_MAGVIT)
    fake.chmod(0o755)
    env = {**os.environ, "MAGVIT": str(fake), "CALLS": str(tmp_path / "calls.txt")}
    return folder, env, tmp_path / "calls.txt"


def run_batch(env, *args):
    return subprocess.run(["bash", str(EXAMPLES / "batch.sh"), *args], env=env, capture_output=True, text=True)


def test_batch_stops_at_the_first_failure(batch_folder):
    folder, env, calls = batch_folder
    result = run_batch(env, str(folder))
    assert result.returncode == 3  # the failing run's own exit code
    assert calls.read_text().splitlines() == [
        f"predict {folder}/a.mp4 --frames 8 --quiet --json",  # earlier output a.predict.mp4 skipped
        f"predict {folder}/b_bad.mp4 --frames 8 --quiet --json",
    ]
    assert result.stdout.strip() == '{"output": "done"}' and "stopping" in result.stderr


def test_batch_keep_going_collects_failures(batch_folder, tmp_path):
    folder, env, calls = batch_folder
    result = run_batch(env, "--keep-going", "-o", str(tmp_path / "out"), "--seed", "7", str(folder),
                       "interpolate", "--factor", "3")
    assert result.returncode == 1
    lines = calls.read_text().splitlines()
    assert len(lines) == 4  # a, a.predict (not an interpolate output), b_bad, c
    output = tmp_path / "out" / "c.interpolate.mp4"
    assert f"interpolate {folder}/c.mp4 --factor 3 --quiet --json --seed 7 --output {output}" in lines
    assert result.stdout.count('{"output": "done"}') == 3
    assert "1 of 4 failed" in result.stderr and "b_bad.mp4 (exit 3)" in result.stderr


def test_a_missing_video_library_is_one_clear_error():
    """PyAV is imported on first use: without it the model still runs, and reading or writing
    a video file raises UnsupportedError (exit code 5) naming the package to install."""
    from concurrent.futures import ThreadPoolExecutor

    from magvit_cli.errors import UnsupportedError
    from magvit_cli.video import _LazyModule

    missing = _LazyModule("magvit_no_such_video_library")
    with pytest.raises(UnsupportedError, match="needs magvit_no_such_video_library, which is not installed"):
        missing.open("clip.mp4")
    # First use from many threads at once (data loading probes videos in a thread pool).
    lazy = _LazyModule("json")
    with ThreadPoolExecutor(8) as pool:
        assert all(f is __import__("json").dumps for f in pool.map(lambda _: lazy.dumps, range(64)))
    assert _LazyModule("av").open is av.open


# ----------------------------------------------------------------------------- probing, written out


def test_frame_count_comes_from_the_index_when_it_agrees_and_is_counted_otherwise(tmp_path):
    """An mp4 written by PyAV directly: its index holds every frame and agrees with the stream's
    duration, so it is trusted (nothing decoded); a one-frame mp4 likewise; an mkv has no index,
    so its packets are counted, and its duration is the frames' span."""
    info = probe(make_clip(tmp_path / "clip.mp4", count=60, burst_at=None))
    assert (info.num_frames, info.frames_counted, info.fps) == (60, False, NTSC)
    assert info.duration == float(60 / NTSC)
    one = probe(make_clip(tmp_path / "one.mp4", count=1, burst_at=None))
    assert (one.num_frames, one.frames_counted) == (1, False)
    webm = probe(write_video(tmp_path / "one.webm", moving_frames(1), 25))
    assert (webm.num_frames, webm.frames_counted) == (1, True)


def test_a_frame_folder_of_one_image(tmp_path):
    folder = write_video(tmp_path / "frames/", moving_frames(1), 24)
    info = probe(folder)
    assert (info.num_frames, info.codec, info.width, info.height) == (1, "png", 64, 48)


def test_timed_frames_start_at_the_first_frame(tmp_path):
    clip = make_clip(tmp_path / "clip.mp4", count=5, fps=Fraction(25), burst_at=None)
    times = [t for t, _ in iter_timed_frames(clip)]
    assert times == [0.0, 0.04, 0.08, 0.12, 0.16]


def test_read_video_trusts_the_decoded_count_over_the_probed_one(tmp_path, monkeypatch):
    from dataclasses import replace

    from magvit_cli import video

    clip = make_clip(tmp_path / "clip.mp4", count=6, fps=Fraction(25), burst_at=None)
    real = video.probe
    monkeypatch.setattr(video, "probe", lambda path, fps: replace(real(path, fps), num_frames=9))  # an index that lies
    frames, info = read_video(clip)
    assert len(frames) == 6 and info.num_frames == 6 and info.frames_counted
    assert info.path == clip and info.fps == 25
    frames, info = read_video(clip, max_frames=4)  # part of the video: the probed info as it is
    assert len(frames) == 4 and info.num_frames == 9 and not info.frames_counted


def test_writing_at_a_stream_rate_past_the_command_line_range(tmp_path):
    """Interpolating a 500 fps clip by 4 writes 2000 fps: stream rates may exceed what
    --fps accepts (1000)."""
    out = write_video(tmp_path / "fast.mkv", moving_frames(3), 2000)
    assert probe(out).fps == 2000


def test_an_unknown_encoder_is_not_available():
    from magvit_cli.video import _has_encoder

    assert _has_encoder("libx264") and not _has_encoder("no-such-encoder")


def test_a_folder_target_is_named_by_its_trailing_slash_even_with_a_dot():
    from magvit_cli.video import is_folder_target

    assert is_folder_target("frames.v2/") and is_folder_target("frames") and not is_folder_target("frames.mp4")


def test_a_hard_link_to_the_input_is_refused_as_the_output(tmp_path):
    clip = make_clip(tmp_path / "clip.mp4", count=3, burst_at=None)
    link = tmp_path / "link.mp4"
    os.link(clip, link)
    before = clip.read_bytes()
    with pytest.raises(OutputError, match="refusing to overwrite the input"):
        with VideoWriter(link, 25, inputs=[clip]) as writer:
            writer.write(moving_frames(1)[0])
    assert clip.read_bytes() == before


def test_frames_without_timestamps_are_timed_by_the_stream_rate(tmp_path):
    """A raw H.264 stream carries no timestamps: frame i is at i / fps (FFmpeg guesses 25 fps)."""
    from hostile_corpus import encode, pattern

    raw = encode(tmp_path / "raw.h264", pattern(6, 32, 48), container_format="h264")
    assert probe(raw).fps == 25
    assert [t for t, _ in iter_timed_frames(raw, start=1)] == [0.04, 0.08, 0.12, 0.16, 0.2]


def test_a_size_change_mid_stream_is_an_input_error(tmp_path):
    from hostile_corpus import _size_change

    with pytest.raises(InputError, match="frame 6 is 64x48 but earlier frames are 48x32"):
        list(iter_frames(_size_change(tmp_path)))


def test_ntsc_spellings_snap_up_to_the_highest_rates():
    assert as_fps("599.4") == Fraction(600000, 1001) and as_fps("29.97") == NTSC
    off = NTSC + Fraction(1, 1000)  # exactly 1/1000 away from 30000/1001: not an NTSC spelling
    assert as_fps(off) == off.limit_denominator(1001) != NTSC


def test_a_writer_carries_the_audio_from_its_start_by_default(tmp_path, clip_with_audio):
    frames, info = read_video(clip_with_audio)
    with VideoWriter(tmp_path / "out.mkv", info.fps, audio_from=clip_with_audio) as writer:
        for frame in frames:
            writer.write(frame)
    assert reopen(tmp_path / "out.mkv")["burst_at"] == pytest.approx(1.0, abs=0.025)


def test_motion_interpolation_follows_a_moving_texture_better_than_blending():
    """FFmpeg's minterpolate between two frames of a texture that moved 8 px: the 7 frames
    between are closer to the truth than linear blending (measured 18.7 against 14.7 dB), a
    still frame comes back as itself, and one step has no frame between."""
    from magvit_cli.video import motion_interpolate

    rng = np.random.default_rng(0)
    base = (rng.random((8, 10, 3)) * 255).astype(np.uint8).repeat(8, 0).repeat(8, 1)  # 64 x 80
    truth = np.stack([base[:, k:k + 64] for k in range(9)]).astype(np.float64)  # 1 px per frame

    def psnr(a, b):
        return 10 * np.log10(255 ** 2 / np.mean((a.astype(np.float64) - b) ** 2))

    made = motion_interpolate(base[:, :64], base[:, 8:72], 8)
    assert made.shape == (7, 64, 64, 3) and made.dtype == np.uint8
    blend = np.stack([(1 - k / 8) * truth[0] + k / 8 * truth[8] for k in range(1, 8)])
    assert psnr(made, truth[1:8]) > psnr(blend, truth[1:8]) + 2
    still = motion_interpolate(base[:, :64], base[:, :64], 4)
    assert still.shape == (3, 64, 64, 3) and psnr(still, truth[[0, 0, 0]]) > 40
    none = motion_interpolate(base[:, :64], base[:, 8:72], 1)
    assert none.shape == (0, 64, 64, 3) and none.dtype == np.uint8
    # Two steps: one frame, half way (the 4 px shift, not the 2 or 6 px one).
    middle = motion_interpolate(base[:, :64], base[:, 8:72], 2)
    assert middle.shape == (1, 64, 64, 3)
    assert max(range(9), key=lambda k: psnr(middle[0], truth[k])) == 4
    # Under the filter's 32 px: edge-padded for it, cropped back.
    small = motion_interpolate(base[:16, :24], base[:16, :24], 3)
    assert small.shape == (2, 16, 24, 3) and psnr(small, truth[[0, 0], :16, :24]) > 40
    with pytest.raises(ValueError, match="different shapes"):
        motion_interpolate(base[:, :64], base[:, :48], 4)
