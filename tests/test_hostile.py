"""Hostile inputs and faults: every failure is one readable line on stderr, the documented
exit code, the input left byte-identical and no partial output.

The corpus (hostile_corpus.py) is generated here; the other categories (outputs, masks,
option values, model folders, pickles, the Hub offline, devices, signals, training) build
their inputs in each test. CLI runs go through `magvit_cli.cli.main` in this process with
the tiny random model and `--steps 1`; signals need real processes.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import pickle
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path
from typing import NamedTuple

import av
import msgpack
import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.torch import load_file, save_file

import hostile_corpus as hc
from magvit_cli import errors
from magvit_cli import video as vio
from magvit_cli.cli import main
from magvit_cli.tokenizer import VQTokenizer



# ----------------------------------------------------------------------------- helpers


class Run(NamedTuple):
    code: int
    out: str
    err: str


class ModelRan(BaseException):
    """Raised by the tokenizer where a command should have been refused before any model work."""


def cli(args, capsys) -> Run:
    capsys.readouterr()
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return Run(code, out, err)


def assert_refused(run: Run, code: int, *mentions: str) -> None:
    """Exit `code` with exactly one readable line on stderr (naming `mentions`)."""
    lines = [line for line in run.err.splitlines() if line.strip()]
    assert run.code == code, f"exit {run.code}, expected {code}; stderr: {run.err.strip()}"
    assert len(lines) == 1, f"expected one line on stderr, got {len(lines)}: {lines}"
    assert lines[0].startswith("magvit: "), lines[0]
    assert "Traceback" not in run.err and "internal error" not in run.err, lines[0]
    for text in mentions:
        assert text in lines[0], f"{text!r} not in {lines[0]!r}"


def fingerprint(path: Path) -> dict[str, str]:
    """Relative name -> SHA-256 (regular files) or kind, for `path` and everything under it.
    Only regular files are opened: a FIFO would block."""
    result: dict[str, str] = {}

    def visit(entry: Path, name: str) -> None:
        try:
            info = os.lstat(entry)
        except FileNotFoundError:
            result[name] = "missing"
            return
        if stat.S_ISREG(info.st_mode):
            result[name] = hashlib.sha256(entry.read_bytes()).hexdigest()
        elif stat.S_ISDIR(info.st_mode):
            result[name] = "folder"
            for child in sorted(os.listdir(entry)):
                visit(entry / child, f"{name}/{child}")
        elif stat.S_ISLNK(info.st_mode):
            result[name] = "link to " + os.readlink(entry)
        else:
            result[name] = "special"

    visit(Path(path), ".")
    return result


def listing(folder: Path) -> list[str]:
    return sorted(os.listdir(folder))


def check_video(path: Path, width: int, height: int, frames: int | None = None, fps: Fraction | None = None):
    """A complete, decodable video of that size (4:2:0 outputs round odd sizes up)."""
    info = vio.probe(path)
    decoded = sum(1 for _ in vio.iter_frames(path))
    assert decoded == info.num_frames >= 1
    assert (info.width - width, info.height - height) in {(0, 0), (width % 2, height % 2)}, (info.width, info.height)
    assert info.rotation == 0
    if frames is not None:
        assert info.num_frames == frames
    if fps is not None:
        assert info.fps == fps
    return info


@pytest.fixture
def no_model_work(monkeypatch):
    """Any tokenizer call raises ModelRan: for inputs that must be refused before the model runs."""
    def ran(*args, **kwargs):
        raise ModelRan("the model ran for a command that should have been refused first")

    monkeypatch.setattr(VQTokenizer, "encode", ran)
    monkeypatch.setattr(VQTokenizer, "decode", ran)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> dict[str, Path]:
    return hc.make_media(tmp_path_factory.mktemp("corpus"))


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    """A good input with audio: 12 frames of 48x32 at 12 fps."""
    return hc.encode(tmp_path_factory.mktemp("clip") / "clip.mp4", hc.MOVING, audio=True)


@pytest.fixture
def own_clip(clip, tmp_path) -> Path:
    """A private copy of `clip` in a folder of its own (for tests that look at that folder)."""
    folder = tmp_path / "input"
    folder.mkdir()
    return Path(shutil.copy(clip, folder / "clip.mp4"))


def predict(source, tiny_model_dir, *extra):
    return ["predict", source, "--frames", "2", "--steps", "1", "--seed", "0", "--model", tiny_model_dir, *extra]


# ----------------------------------------------------------------------------- the corpus


@pytest.mark.parametrize("media", hc.MEDIA, ids=[m.name for m in hc.MEDIA])
def test_corpus_input(media, corpus, tiny_model_dir, tmp_path, capsys):
    path = corpus[media.name]
    out = tmp_path / "out" / "result.mp4"
    out.parent.mkdir()
    before = fingerprint(path.parent)
    run = cli(predict(path, tiny_model_dir, "-o", out), capsys)
    assert fingerprint(path.parent) == before  # the input and its folder are untouched
    if run.code == 0:
        assert media.expect in (hc.OK, hc.DAMAGED), f"exit 0, expected exit {media.expect}"
        assert listing(out.parent) == ["result.mp4"]
        source = vio.probe(path)
        info = check_video(out, source.width, source.height, fps=source.fps)
        if not source.variable_frame_rate and media.expect == hc.OK:
            assert info.num_frames == source.num_frames + 2
        assert info.has_audio == source.has_audio
    else:
        assert_refused(run, errors.EXIT_INPUT if media.expect == hc.DAMAGED else media.expect)
        assert listing(out.parent) == []


def test_corpus_covers_every_category():
    categories = {}
    for m in hc.MEDIA:
        categories[m.category] = categories.get(m.category, 0) + 1
    assert set(categories) == {"damaged container", "empty", "size", "timing", "pixel format", "image as video",
                               "path"}
    assert len(hc.MEDIA) >= 60


@pytest.mark.parametrize("args, media, expect, frames", [
    (["interpolate"], "one-frame.mp4", errors.EXIT_INPUT, None),  # no pair of frames to go between
    (["interpolate", "--factor", "3"], "two-frames.mkv", 0, 4),
    (["interpolate"], "17x9.mkv", 0, 11),
    (["inpaint", "--mask", "box"], "1x1.png", 0, 1),
    (["inpaint", "--mask", "dynamic-box"], "2x200-tall.mkv", 0, 4),
    (["outpaint", "--direction", "vertical"], "17x9.mp4", 0, 6),
    (["outpaint", "--direction", "right"], "400x4-wide.mkv", errors.EXIT_USAGE, None),  # 4 px: under one token
    (["outpaint"], "rotated90.mp4", 0, 6),
    (["reconstruct"], "one-frame.mp4", 0, 1),
    (["reconstruct"], "yuv444p10le.mkv", 0, 6),
])
def test_corpus_input_in_other_tasks(args, media, expect, frames, corpus, tiny_model_dir, tmp_path, capsys):
    path = corpus[media]
    out = tmp_path / "out.mkv"
    before = fingerprint(path)
    steps = [] if args[0] == "reconstruct" else ["--steps", "1"]
    run = cli([args[0], path, *args[1:], *steps, "--model", tiny_model_dir, "-o", out], capsys)
    assert fingerprint(path) == before
    if expect:
        assert_refused(run, expect)
        assert listing(tmp_path) == []
        return
    assert run.code == 0, run.err
    assert listing(tmp_path) == ["out.mkv"]
    assert vio.probe(out).num_frames == frames


def test_too_thin_to_outpaint_names_the_amount_used(corpus, tiny_model_dir, tmp_path, capsys):
    run = cli(["outpaint", corpus["400x4-wide.mkv"], "--direction", "right", "--steps", "1", "--model",
               tiny_model_dir, "-o", tmp_path / "out.mp4"], capsys)
    assert_refused(run, errors.EXIT_USAGE, "50%")
    assert "None" not in run.err


@pytest.fixture(scope="module")
def eight_k(tmp_path_factory) -> Path:
    return hc.eight_k(tmp_path_factory.mktemp("8k") / "8k.mp4")


def test_8k_input_is_probed_and_worked_at_the_model_size(eight_k, tiny_model_dir, tmp_path, capsys):
    """Decision: an 8K input is processed, not refused. It is decoded at 8K one frame at a
    time and seen by the model at the model's size; --no-composite writes the model's output."""
    before = fingerprint(eight_k)
    run = cli(["info", eight_k, "--model", tiny_model_dir, "--json"], capsys)
    assert run.code == 0 and (json.loads(run.out)["width"], json.loads(run.out)["height"]) == (7680, 4320)
    out = tmp_path / "small.mp4"
    run = cli(predict(eight_k, tiny_model_dir, "--no-composite", "-o", out), capsys)
    assert run.code == 0, run.err
    check_video(out, 32, 32)
    assert fingerprint(eight_k) == before


@pytest.mark.slow
def test_8k_input_is_composited_back_at_8k(eight_k, tiny_model_dir, tmp_path, capsys):
    """Half a minute or more and 3.5 GB on a CPU: the edit is pasted back into the 8K frames."""
    out = tmp_path / "big.mp4"
    run = cli(["inpaint", eight_k, "--steps", "1", "--model", tiny_model_dir, "-o", out], capsys)
    assert run.code == 0, run.err
    check_video(out, 7680, 4320, frames=2)


# ----------------------------------------------------------------------------- paths


def test_default_output_next_to_a_non_ascii_path(corpus, tiny_model_dir, tmp_path, capsys):
    folder = tmp_path / "mes vidéos 📼"
    folder.mkdir()
    source = Path(shutil.copy(corpus["spaces and non-ascii.mp4"], folder / "été – prise 2.mp4"))
    before = fingerprint(source)
    run = cli(["predict", source, "--frames", "2", "--steps", "1", "--model", tiny_model_dir], capsys)
    assert run.code == 0, run.err
    assert listing(folder) == ["été – prise 2.mp4", "été – prise 2.predict.mp4"]
    assert fingerprint(source) == before
    check_video(folder / "été – prise 2.predict.mp4", 48, 32, frames=8)


def test_input_named_like_an_option(own_clip, tiny_model_dir, tmp_path, capsys):
    dashed = own_clip.rename(own_clip.with_name("-clip.mp4"))
    run = cli(["predict", "--frames", "2", "--steps", "1", "--model", tiny_model_dir, "-o", tmp_path / "out.mp4",
               "--", dashed], capsys)
    assert run.code == 0, run.err
    check_video(tmp_path / "out.mp4", 48, 32, frames=14)


def test_pattern_matching_nothing(tiny_model_dir, tmp_path, capsys, no_model_work):
    run = cli(predict(tmp_path / "nothing-*.mp4", tiny_model_dir), capsys)
    assert_refused(run, errors.EXIT_USAGE, "nothing-*.mp4")
    assert listing(tmp_path) == []


# ----------------------------------------------------------------------------- outputs


def _symlink_to(target: Path, link: Path) -> Path:
    os.symlink(target, link)
    return link


def _hard_link_to(target: Path, link: Path) -> Path:
    os.link(target, link)
    return link


def _non_empty_folder(folder: Path) -> str:
    folder.mkdir()
    (folder / "keep.txt").write_text("mine\n")
    return f"{folder}/"


def _file_as_folder(folder: Path) -> Path:
    (folder / "a-file").write_text("mine\n")
    return folder / "a-file" / "out.mp4"


OUTPUTS = {  # name -> (output given the input and a scratch folder, exit code, text the message names)
    "same as input": (lambda src, d: src, errors.EXIT_OUTPUT, "input"),
    "input spelled differently": (lambda src, d: src.parent / "." / src.name, errors.EXIT_OUTPUT, "input"),
    "symlink to input": (lambda src, d: _symlink_to(src, d / "link.mp4"), errors.EXIT_OUTPUT, "input"),
    "hard link to input": (lambda src, d: _hard_link_to(src, d / "hard.mp4"), errors.EXIT_OUTPUT, "input"),
    "missing folder": (lambda src, d: d / "no" / "such" / "out.mp4", errors.EXIT_OUTPUT, "does not exist"),
    "file as folder": (lambda src, d: _file_as_folder(d), errors.EXIT_OUTPUT, "a-file"),
    "unknown suffix": (lambda src, d: d / "out.xyz", errors.EXIT_OUTPUT, ".xyz"),
    "non-empty frame folder": (lambda src, d: _non_empty_folder(d / "frames"), errors.EXIT_OUTPUT, "not empty"),
}


@pytest.mark.parametrize("case", OUTPUTS)
def test_bad_output_path(case, own_clip, tiny_model_dir, tmp_path, capsys):
    make, code, mentions = OUTPUTS[case]
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    out = make(own_clip, scratch)
    before = fingerprint(tmp_path)
    run = cli(predict(own_clip, tiny_model_dir, "-o", out), capsys)
    assert_refused(run, code, mentions)
    assert fingerprint(tmp_path) == before


def test_unknown_output_format_is_refused_before_the_model_loads(own_clip, tmp_path, capsys):
    """The output's format is checked first: with a model folder that does not exist, the
    message is still about the output (a model that does load would have run for nothing)."""
    run = cli(predict(own_clip, tmp_path / "no-model", "-o", tmp_path / "out.xyz"), capsys)
    assert_refused(run, errors.EXIT_OUTPUT, ".xyz")


def test_output_dir_that_is_a_file(own_clip, tiny_model_dir, tmp_path, capsys, no_model_work):
    (tmp_path / "a-file").write_text("mine\n")
    before = fingerprint(tmp_path)
    run = cli(predict(own_clip, tiny_model_dir, "--output-dir", tmp_path / "a-file"), capsys)
    assert_refused(run, errors.EXIT_OUTPUT, "a-file")
    assert fingerprint(tmp_path) == before


def test_existing_output_is_replaced_whole(own_clip, tiny_model_dir, tmp_path, capsys):
    out = tmp_path / "out.mp4"
    out.write_bytes(b"an older result")
    run = cli(predict(own_clip, tiny_model_dir, "-o", out), capsys)
    assert run.code == 0, run.err
    assert listing(tmp_path) == ["input", "out.mp4"]
    check_video(out, 48, 32, frames=14)


@pytest.fixture
def tmpfs(tmp_path):
    """mount(options) -> a fresh tmpfs mount point; skips where mounting is not allowed."""
    points = []

    def mount(options: str) -> Path:
        point = tmp_path / f"mount{len(points)}"
        point.mkdir()
        result = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(point)],
                                capture_output=True, text=True)
        if result.returncode:
            pytest.skip(f"cannot mount a tmpfs here ({result.stderr.strip() or result.returncode}); "
                        "the simulated variant of this test still runs")
        points.append(point)
        return point

    yield mount
    for point in points:
        subprocess.run(["umount", "-l", str(point)], capture_output=True)


def test_read_only_filesystem(tmpfs, own_clip, tiny_model_dir, capsys):
    folder = tmpfs("size=1m")
    subprocess.run(["mount", "-o", "remount,ro", str(folder)], check=True)
    before = fingerprint(own_clip)
    run = cli(predict(own_clip, tiny_model_dir, "-o", folder / "out.mp4"), capsys)
    assert_refused(run, errors.EXIT_OUTPUT, str(folder))
    assert listing(folder) == [] and fingerprint(own_clip) == before


def test_read_only_filesystem_simulated(own_clip, tiny_model_dir, tmp_path, capsys, monkeypatch):
    """The writer's file cannot be created (EROFS): what a read-only mount does past the checks."""
    real_open = av.open

    def open_read_only(file, mode="r", *args, **kwargs):
        if mode == "w":
            raise av.error.PermissionError(errno.EROFS, "Read-only file system", str(file))
        return real_open(file, mode, *args, **kwargs)

    monkeypatch.setattr(vio.av, "open", open_read_only)
    before = fingerprint(tmp_path)
    run = cli(predict(own_clip, tiny_model_dir, "-o", tmp_path / "out.mp4"), capsys)
    assert_refused(run, errors.EXIT_OUTPUT, "read-only")
    assert fingerprint(tmp_path) == before


def test_disk_full(tmpfs, own_clip, tiny_model_dir, capsys):
    folder = tmpfs("size=64k")
    free = os.statvfs(folder).f_bavail * os.statvfs(folder).f_frsize
    (folder / "filler").write_bytes(b"x" * (free - 8192))  # two pages left: the video starts, then fails
    before = fingerprint(folder)
    for out in (folder / "out.mp4", f"{folder}/frames/"):
        run = cli(predict(own_clip, tiny_model_dir, "--frames", "16", "-o", out), capsys)
        assert_refused(run, errors.EXIT_OUTPUT, "disk full")
        assert fingerprint(folder) == before


def test_disk_full_simulated(own_clip, tiny_model_dir, tmp_path, capsys, monkeypatch):
    """ENOSPC on the third frame: the half-written file is removed."""
    real_encode = vio.VideoWriter._encode

    def encode_until_full(self, rgb):
        if self.frames_written == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        real_encode(self, rgb)

    monkeypatch.setattr(vio.VideoWriter, "_encode", encode_until_full)
    before = fingerprint(tmp_path)
    run = cli(predict(own_clip, tiny_model_dir, "-o", tmp_path / "out.mp4"), capsys)
    assert_refused(run, errors.EXIT_OUTPUT, "disk full")
    assert fingerprint(tmp_path) == before


# ----------------------------------------------------------------------------- masks


def _mask_image(size, value=255):
    return lambda d: hc.image(d / "mask.png", np.full((*size, 3), value, np.uint8), "png", "rgb24")


def _mask_video(frames):
    return lambda d: hc.encode(d / "mask.mp4", np.full((frames, 32, 48, 3), 255, np.uint8))


def _mask_folder(count):
    def make(d):
        (d / "masks").mkdir()
        for i in range(count):
            hc.image(d / "masks" / f"{i:03d}.png", np.full((32, 48, 3), 255, np.uint8), "png", "rgb24")
        return d / "masks"
    return make


def _mask_bytes(name, data):
    def make(d):
        (d / name).write_bytes(data)
        return d / name
    return make


def _missing(name):
    return lambda d: d / name


def _mask(spec, code, mentions, name=None, **kwargs):
    return pytest.param(spec, code, mentions, id=name or spec, **kwargs)


MASKS = [  # --mask value (or a maker of a mask file), exit code, text the message names
    _mask("abc", errors.EXIT_USAGE, "abc"),
    _mask("1,2,3", errors.EXIT_USAGE, "1,2,3"),
    _mask("0,0,0,0", errors.EXIT_USAGE, "0,0,0,0"),
    _mask("100,100,10,10", errors.EXIT_USAGE, "outside"),
    _mask("nan,0,10,10", errors.EXIT_USAGE, "finite"),
    _mask("1e400,0,1,1", errors.EXIT_USAGE, "finite"),
    _mask("25%,25%,50,50", errors.EXIT_USAGE, "percent"),
    _mask("0,0,10,10@5-2", errors.EXIT_USAGE, "5-2"),
    _mask("0,0,10,10@99-100", errors.EXIT_USAGE, "99"),
    _mask("0,0,10,10@x", errors.EXIT_USAGE, "'x'"),
    _mask("0,0,10,10@1-2;0,0,10,10@0-1", errors.EXIT_USAGE, "keyframes"),
    _mask("box;box", errors.EXIT_USAGE, "box;box"),
    _mask("-5,-5,10,10", 0, None),  # clipped to the frame
    _mask("0.5,0.5,2,2", 0, None),  # fractions, clipped
    _mask(_mask_image((5, 7)), 0, None, "mask image of another size"),  # resized, with a note
    _mask(_mask_image((32, 48), 0), 0, None, "mask image without a hole"),  # the input comes back
    _mask(_mask_video(30), 0, None, "mask video longer than the input"),
    _mask(_mask_video(3), errors.EXIT_INPUT, "3 frames", "mask video shorter than the input"),
    _mask(_mask_folder(1), errors.EXIT_INPUT, "1 frames", "mask folder with too few masks"),
    _mask(_mask_folder(0), errors.EXIT_INPUT, "masks", "mask folder without masks"),
    _mask(_missing("missing.png"), errors.EXIT_INPUT, "missing.png", "missing mask file"),
    _mask(_mask_bytes("empty.png", b""), errors.EXIT_INPUT, "empty.png", "zero-byte mask file"),
    _mask(_mask_bytes("text.png", b"not an image\n" * 20), errors.EXIT_INPUT, "text.png", "text as mask image"),
    _mask(_mask_bytes("random.mp4", bytes(range(256)) * 8), errors.EXIT_INPUT, "random.mp4", "garbage mask video"),
    _mask("", errors.EXIT_USAGE, "--mask", "blank spec"),
]


@pytest.mark.parametrize("spec, code, mentions", MASKS)
def test_mask(spec, code, mentions, own_clip, tiny_model_dir, tmp_path, capsys):
    masks = tmp_path / "masks-in"
    masks.mkdir()
    if callable(spec):
        spec = spec(masks)
    out = tmp_path / "out" / "out.mp4"
    out.parent.mkdir()
    before = fingerprint(tmp_path)
    run = cli(["inpaint", own_clip, "--mask", spec, "--steps", "1", "--model", tiny_model_dir, "-o", out], capsys)
    after = fingerprint(tmp_path)
    if code == 0:
        assert run.code == 0, run.err
        check_video(out, 48, 32, frames=12)
        del after["./out/out.mp4"]
    else:
        assert_refused(run, code, mentions)
    assert after == before


def test_negative_dilation(own_clip, tiny_model_dir, tmp_path, capsys, no_model_work):
    run = cli(["inpaint", own_clip, "--dilate", "-1", "--model", tiny_model_dir, "-o", tmp_path / "o.mp4"], capsys)
    assert_refused(run, errors.EXIT_USAGE, "--dilate")
    assert listing(tmp_path) == ["input"]


# ----------------------------------------------------------------------------- option values


def _option(args, code, mentions, name=None, **kwargs):
    return pytest.param(args, code, mentions, id=name or " ".join(args), **kwargs)


def _click(args, name=None):
    """A value Click itself rejects (wrong type, unknown option, missing argument)."""
    return _option(args, errors.EXIT_USAGE, None, name)


NO_CUDA = pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
OPTIONS = [  # arguments after the command (CLIP = the input), exit code, text the message names
    _option(["predict", "CLIP", "--frames", "0"], errors.EXIT_USAGE, "--frames"),
    _option(["predict", "CLIP", "--frames", "-1"], errors.EXIT_USAGE, "--frames"),
    _option(["predict", "CLIP", "--frames", str(10 ** 12)], errors.EXIT_USAGE, "--frames"),
    _option(["predict", "CLIP", "--cond-frames", "0"], errors.EXIT_USAGE, "--cond-frames"),
    _option(["predict", "CLIP", "--cond-frames", "1000"], errors.EXIT_USAGE, "--cond-frames"),
    _option(["predict", "CLIP", "--class", "99"], errors.EXIT_USAGE, "99"),
    _option(["predict", "CLIP", "--class", "-1"], errors.EXIT_USAGE, "-1"),
    _option(["predict", "CLIP", "--class", "no-such-class"], errors.EXIT_USAGE, "no-such-class"),
    _option(["predict", "CLIP", "--class", " "], errors.EXIT_USAGE, "class"),
    _option(["generate", "--class", "99"], errors.EXIT_USAGE, "99"),
    _option(["generate", "--class", "0", "--count", "0"], errors.EXIT_USAGE, "--count"),
    _option(["generate", "--class", "0", "--count", "100000"], errors.EXIT_USAGE, "--count"),
    _option(["interpolate", "CLIP", "--fps", "0"], errors.EXIT_USAGE, "frame rate"),
    _option(["interpolate", "CLIP", "--fps", "-5"], errors.EXIT_USAGE, "frame rate"),
    _option(["interpolate", "CLIP", "--fps", "abc"], errors.EXIT_USAGE, "abc"),
    _option(["interpolate", "CLIP", "--fps", "nan"], errors.EXIT_USAGE, "nan"),
    _option(["interpolate", "CLIP", "--fps", "inf"], errors.EXIT_USAGE, "inf"),
    _option(["interpolate", "CLIP", "--fps", "1e9"], errors.EXIT_USAGE, "1e9"),
    _option(["interpolate", "CLIP", "--fps", "30/0"], errors.EXIT_USAGE, "30/0"),
    _option(["interpolate", "CLIP", "--fps", "6"], errors.EXIT_USAGE, "--fps"),  # below the input's 12
    _option(["interpolate", "CLIP", "--factor", "0"], errors.EXIT_USAGE, "--factor"),
    _option(["interpolate", "CLIP", "--factor", str(10 ** 9)], errors.EXIT_USAGE, "1000000000"),
    _option(["interpolate", "CLIP", "--factor", "2", "--fps", "24"], errors.EXIT_USAGE, "--fps"),
    _option(["predict", "CLIP", "--steps", "0"], errors.EXIT_USAGE, "--steps"),
    _option(["predict", "CLIP", "--steps", "100000"], errors.EXIT_USAGE, "--steps"),
    _option(["predict", "CLIP", "--choice-temperature", "-1"], errors.EXIT_USAGE, "temperature"),
    _option(["predict", "CLIP", "--choice-temperature", "nan"], errors.EXIT_USAGE, "--choice-temperature"),
    _option(["predict", "CLIP", "--sample-temperature", "0"], errors.EXIT_USAGE, "--sample-temperature"),
    _option(["predict", "CLIP", "--guidance", "-1"], errors.EXIT_USAGE, "--guidance"),
    _option(["predict", "CLIP", "--guidance", "nan"], errors.EXIT_USAGE, "--guidance"),
    _option(["predict", "CLIP", "--schedule", "bogus"], errors.EXIT_USAGE, "bogus"),
    _option(["predict", "CLIP", "--seed", str(2 ** 100)], errors.EXIT_USAGE, "--seed"),
    _option(["predict", "CLIP", "--dtype", "float16"], errors.EXIT_USAGE, "float16"),
    _option(["outpaint", "CLIP", "--amount", "-10"], errors.EXIT_USAGE, "--amount"),
    _option(["outpaint", "CLIP", "--amount", "abc"], errors.EXIT_USAGE, "abc"),
    _option(["outpaint", "CLIP", "--amount", "0"], errors.EXIT_USAGE, "--amount"),
    _option(["outpaint", "CLIP", "--amount", "500%"], errors.EXIT_USAGE, "500%"),
    _option(["outpaint", "CLIP", "--amount", "100000"], errors.EXIT_USAGE, "100000"),
    _option(["outpaint", "CLIP", "--direction", "sideways"], errors.EXIT_USAGE, "sideways"),
    _option(["inpaint", "CLIP", "--start", "-1"], errors.EXIT_USAGE, "--start"),
    _option(["inpaint", "CLIP", "--start", "nan"], errors.EXIT_USAGE, "--start"),
    _option(["inpaint", "CLIP", "--start", "1000"], errors.EXIT_USAGE, "--start"),
    _option(["inpaint", "CLIP", "--start", "0.5", "--end", "0.2"], errors.EXIT_USAGE, "--end"),
    _option(["inpaint", "CLIP", "--window", "0"], errors.EXIT_USAGE, "--window"),
    _option(["inpaint", "CLIP", "--window", "100000"], errors.EXIT_USAGE, "--window"),
    _option(["inpaint", "CLIP", "--overlap", "-1"], errors.EXIT_USAGE, "--overlap"),
    _option(["inpaint", "CLIP", "--overlap", "50"], errors.EXIT_USAGE, "--overlap"),
    _option(["inpaint", "CLIP", "--batch", "0"], errors.EXIT_USAGE, "--batch"),
    _option(["predict", "CLIP", "--device", "tpu"], errors.EXIT_USAGE, "tpu"),
    _option(["predict", "CLIP", "--device", ""], errors.EXIT_USAGE, "device"),
    _option(["predict", "CLIP", "--device", "cuda"], errors.EXIT_UNSUPPORTED, "CUDA", marks=NO_CUDA),
    _option(["predict", "CLIP", "--device", "cuda:99"], errors.EXIT_UNSUPPORTED, "CUDA", marks=NO_CUDA),
    _option(["train", "tokenizer", "CLIP", "-o", "RUN", "--device", "cuda"], errors.EXIT_UNSUPPORTED, "CUDA",
            "train --device cuda", marks=NO_CUDA),
    _click(["predict", "CLIP", "--frames", "abc"]),
    _click(["predict", "CLIP", "--steps", "1.5"]),
    _click(["predict", "CLIP", "--no-such-option"]),
    _click(["predict"], "predict without an input"),
    _click(["generate"], "generate without --class"),
]


@pytest.mark.parametrize("args, code, mentions", OPTIONS)
def test_option_value(args, code, mentions, own_clip, tiny_model_dir, tmp_path, capsys, no_model_work):
    args = [own_clip if a == "CLIP" else tmp_path / "run" if a == "RUN" else a for a in args]
    before = fingerprint(tmp_path)
    extra = [] if args[0] == "train" else ["--model", tiny_model_dir, "-o", tmp_path / "out.mp4"]
    try:
        run = cli([*args, *extra], capsys)
    except ModelRan:
        pytest.fail(f"{args} ran the model instead of being refused")
    assert_refused(run, code, *([mentions] if mentions else []))
    assert fingerprint(tmp_path) == before


# ----------------------------------------------------------------------------- model folders


def _edit_config(change):
    def damage(folder: Path) -> Path:
        config = json.loads((folder / "config.json").read_text())
        change(config)
        (folder / "config.json").write_text(json.dumps(config))
        return folder
    return damage


def _write_file(name: str, data: bytes):
    def damage(folder: Path) -> Path:
        (folder / name).write_bytes(data)
        return folder
    return damage


def _remove(name: str):
    def damage(folder: Path) -> Path:
        (folder / name).unlink()
        return folder
    return damage


def _truncate_weights(folder: Path) -> Path:
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:5000])
    return folder


def _header_bomb(folder: Path) -> Path:
    """A header that claims 2**60 bytes."""
    (folder / "model.safetensors").write_bytes((1 << 60).to_bytes(8, "little") + b"{}")
    return folder


def _weights_of(change):
    def damage(folder: Path) -> Path:
        state = load_file(str(folder / "model.safetensors"))
        save_file(change(state), str(folder / "model.safetensors"))
        return folder
    return damage


def _terabyte_transformer(config):
    config["transformer"].update(hidden_size=1 << 15, num_heads=1, num_layers=512, mlp_dim=1 << 17)


def _terabyte_clips(config):
    config.update(transformer=None, tasks=[], class_names=[], num_frames=1024, resolution=[8192, 8192])


MODELS = {  # damage to a copy of the tiny model -> text the message names
    "missing folder": (lambda f: f.parent / "nowhere", "does not exist"),
    "file, not folder": (lambda f: f / "config.json", "is a file"),
    "no config.json": (_remove("config.json"), "config.json"),
    "config not JSON": (_write_file("config.json", b"{not json"), "JSON"),
    "config binary": (_write_file("config.json", bytes(range(256))), "config.json"),
    "config empty": (_write_file("config.json", b""), "JSON"),
    "config a list": (_write_file("config.json", b"[1, 2, 3]"), "object"),
    "config nested 100000 deep": (_write_file("config.json", b"[" * 100_000 + b"]" * 100_000), "config.json"),
    "config 10 MB": (_write_file("config.json", b" " * 10_000_001 + b"{}"), "large"),
    "config 5000-digit number": (_write_file("config.json", b'{"num_frames": 1' + b"0" * 5000 + b"}"), "config.json"),
    "config wrong type": (_edit_config(lambda c: c.update(num_frames="16")), "num_frames"),
    "config unknown key": (_edit_config(lambda c: c.update(exec="rm -rf /")), "exec"),
    "config future version": (_edit_config(lambda c: c.update(format_version=99)), "99"),
    "config infinite fps": (_edit_config(lambda c: c.update(fps=float("inf"))), "fps"),
    "config terabyte transformer": (_edit_config(_terabyte_transformer), "parameters"),
    "config terabyte clips": (_edit_config(_terabyte_clips), "voxels"),
    "config mismatched to weights": (_edit_config(lambda c: c["tokenizer"].update(embedding_dim=8)), "shape"),
    "no model.safetensors": (_remove("model.safetensors"), "model.safetensors"),
    "zero-byte weights": (_write_file("model.safetensors", b""), "model.safetensors"),
    "truncated weights": (_truncate_weights, "model.safetensors"),
    "random weights file": (_write_file("model.safetensors", bytes(range(256)) * 64), "model.safetensors"),
    "header bomb": (_header_bomb, "model.safetensors"),
    "missing tensor": (_weights_of(lambda s: {k: v for k, v in s.items() if "head_bias" not in k}), "head_bias"),
    "extra tensor": (_weights_of(lambda s: {**s, "backdoor.weight": torch.zeros(1)}), "backdoor.weight"),
    "integer tensors": (_weights_of(lambda s: {k: v.to(torch.int32) for k, v in s.items()}), "dtype"),
}


@pytest.mark.parametrize("damage", MODELS)
def test_damaged_model_folder(damage, own_clip, tiny_model_dir, tmp_path, capsys, no_model_work):
    import resource

    model = Path(shutil.copytree(tiny_model_dir, tmp_path / "model"))
    make, mentions = MODELS[damage]
    model = make(model)
    before = fingerprint(tmp_path)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.perf_counter()
    run = cli(["predict", own_clip, "--model", model, "-o", tmp_path / "out.mp4"], capsys)
    assert_refused(run, errors.EXIT_MODEL, mentions)
    assert time.perf_counter() - started < 10  # fails fast, before building anything big
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak < 1 << 20  # kB: under 1 GB more at peak
    assert fingerprint(tmp_path) == before


def test_model_size_formula_matches_the_module(tiny_model_dir):
    from magvit_cli.checkpoint import read_config, transformer_parameters
    from magvit_cli.transformer import Transformer, TransformerConfig

    for config in (read_config(tiny_model_dir).transformer, TransformerConfig(),
                   TransformerConfig(multi_task=False, num_classes=101, num_layers=3)):
        with torch.device("meta"):
            module = Transformer(config)
        assert transformer_parameters(config) == sum(p.numel() for p in module.parameters())


def test_unknown_hub_id_offline(own_clip, tmp_path, capsys, monkeypatch, no_model_work):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    for args in (["predict", own_clip, "--model", "nobody/no-such-model-3f9c"], ["download", "nobody/no-such-model-3f9c"]):
        run = cli(args, capsys)
        assert_refused(run, errors.EXIT_MODEL, "nobody/no-such-model-3f9c")
    assert "HF_HUB_OFFLINE" in run.err or "offline" in run.err.lower()
    assert listing(own_clip.parent) == ["clip.mp4"]


def test_missing_default_model(own_clip, tmp_path, capsys, monkeypatch, no_model_work):
    monkeypatch.setenv("MAGVIT_DEFAULT_MODEL", str(tmp_path / "not-installed"))
    run = cli(["predict", own_clip], capsys)
    assert_refused(run, errors.EXIT_MODEL, "default model")
    assert listing(own_clip.parent) == ["clip.mp4"]


# ----------------------------------------------------------------------------- pickles


class Payload:
    """Unpickling this creates a folder: the proof that a file's code ran."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.mkdir, (str(self.marker),)


@pytest.fixture
def marker(tmp_path):
    path = tmp_path / "pwned"
    yield path
    assert not path.exists(), "a pickle in a file was executed"


def test_pickle_as_model_weights(own_clip, tiny_model_dir, tmp_path, capsys, marker, no_model_work):
    model = Path(shutil.copytree(tiny_model_dir, tmp_path / "model"))
    torch.save({"state_dict": Payload(marker)}, model / "model.safetensors")
    run = cli(["predict", own_clip, "--model", model, "-o", tmp_path / "out.mp4"], capsys)
    assert_refused(run, errors.EXIT_MODEL, "model.safetensors")
    (model / "model.safetensors").unlink()
    torch.save({"state_dict": Payload(marker)}, model / "pytorch_model.bin")  # a folder in the PyTorch format
    run = cli(["predict", own_clip, "--model", model, "-o", tmp_path / "out.mp4"], capsys)
    assert_refused(run, errors.EXIT_MODEL, "model.safetensors")
    assert not (tmp_path / "out.mp4").exists()


def test_pickle_as_training_state(tmp_path, capsys, marker):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    torch.save({"step": 1, "trap": Payload(marker)}, run_dir / "training_state.pt")
    before = fingerprint(run_dir)
    run = cli(["train", "tokenizer", tmp_path, "-o", run_dir, "--preset", "tiny", "--resume", "-q"], capsys)
    assert_refused(run, errors.EXIT_MODEL, "training_state.pt", "refusing")
    assert fingerprint(run_dir) == before


def test_pickle_as_official_checkpoint(tmp_path, capsys, marker):
    checkpoint = tmp_path / "checkpoint_100"
    checkpoint.write_bytes(pickle.dumps({"ema_params": Payload(marker)}))
    run = cli(["convert", "--config", "bair-b", "--tokenizer", checkpoint, "-o", tmp_path / "model"], capsys)
    assert_refused(run, errors.EXIT_MODEL, "checkpoint_100")
    assert listing(tmp_path) == ["checkpoint_100"]


def test_pickle_in_token_files(tiny_model_dir, tmp_path, capsys, marker):
    tokens = tmp_path / "tokens.npz"
    np.savez(tokens, codes=np.array([Payload(marker)], dtype=object))
    run = cli(["reconstruct", tokens, "--model", tiny_model_dir, "-o", tmp_path / "out.mp4"], capsys)
    assert_refused(run, errors.EXIT_INPUT, "tokens.npz")
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "meta.json").write_text(json.dumps({"conditions": []}))
    for name in ("tokens.npy", "labels.npy"):
        np.save(cache / name, np.array([Payload(marker)], dtype=object), allow_pickle=True)
    from magvit_cli.data import TokenCache

    with pytest.raises(errors.InputError, match="token cache"):
        TokenCache(cache)
    assert sorted(listing(tmp_path)) == ["cache", "tokens.npz"]


# ----------------------------------------------------------------------------- official checkpoints


def _msgpack_file(tree) -> bytes:
    return msgpack.packb(tree, use_bin_type=True)


CHECKPOINTS = {  # --tokenizer file content -> text the message names
    "random bytes": (bytes(range(256)) * 16, "checkpoint_1"),
    "empty": (b"", "checkpoint_1"),
    "a msgpack list": (_msgpack_file([1, 2, 3]), "list"),
    "a damaged chunked array": (_msgpack_file({"ema_params": {"__msgpack_chunked_array__": True, "shape": 5}}),
                                "chunked"),
    "an array of object dtype": (_msgpack_file({"ema_params": msgpack.ExtType(1, msgpack.packb([[1], "O", b"x"]))}),
                                 "checkpoint_1"),
    "no parameters": (_msgpack_file({"step": 3}), "ema_params"),
}


@pytest.mark.parametrize("case", CHECKPOINTS)
def test_damaged_official_checkpoint(case, tmp_path, capsys):
    data, mentions = CHECKPOINTS[case]
    (tmp_path / "checkpoint_1").write_bytes(data)
    run = cli(["convert", "--config", "bair-b", "--tokenizer", tmp_path / "checkpoint_1", "-o", tmp_path / "m"],
              capsys)
    assert_refused(run, errors.EXIT_MODEL, mentions)
    assert listing(tmp_path) == ["checkpoint_1"]


@pytest.mark.parametrize("case, text, code", [
    ("nested", "[" * 100_000 + "]" * 100_000, errors.EXIT_MODEL),
    ("huge filters", json.dumps({"tokenizer_config": {"vqvae": {"filters": 10 ** 9}}}), errors.EXIT_MODEL),
    ("not an object", "[]", errors.EXIT_MODEL),
])
def test_hostile_official_config(case, text, code, tmp_path, capsys):
    from magvit_cli.convert import official_preset

    if case == "huge filters":
        config = official_preset("bair-b")
        config["tokenizer_config"]["vqvae"]["filters"] = 10 ** 9
        text = json.dumps(config)
    (tmp_path / "official.json").write_text(text)
    (tmp_path / "checkpoint_1").write_bytes(_msgpack_file({"step": 3}))
    run = cli(["convert", "--config", tmp_path / "official.json", "--tokenizer", tmp_path / "checkpoint_1",
               "-o", tmp_path / "m"], capsys)
    assert_refused(run, code)
    assert listing(tmp_path) == ["checkpoint_1", "official.json"]


@pytest.mark.parametrize("content", [b"", b"garbage" * 100])
def test_damaged_training_state(content, tmp_path, capsys):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "training_state.pt").write_bytes(content)
    run = cli(["train", "tokenizer", tmp_path, "-o", run_dir, "--preset", "tiny", "--resume", "-q"], capsys)
    assert_refused(run, errors.EXIT_MODEL, "training_state.pt")
    assert listing(run_dir) == ["training_state.pt"]


# ----------------------------------------------------------------------------- signals

ENTRY = [sys.executable, "-c", "from magvit_cli.cli import entry; entry()"]
TINY_TRAINING = ["num_frames=4", "resolution=16,16", "tokenizer.channel_multipliers=1,1",
                 "tokenizer.temporal_downsample=true", "tokenizer.embedding_dim=8", "tokenizer.codebook_size=32",
                 "batch_size=1", "num_workers=0", "log_every=1", "save_every=0", "preview_every=0",
                 "warmup_steps=1", "adversarial_weight=0", "steps=100000"]


def start(args: list, new_session: bool = False) -> subprocess.Popen:
    """The CLI in a child process that takes SIGINT as a terminal would give it: a shell's
    background job (`cmd &`, nohup, some CI runners) starts with SIGINT ignored, which the
    child would inherit, and then Ctrl-C rightly does nothing (observed: exit 0, 'wrote')."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([*ENTRY, *map(str, args)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env, start_new_session=new_session,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def wait_for(condition, process: subprocess.Popen, what: str, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if process.poll() is not None:
            pytest.fail(f"the process ended (exit {process.returncode}) before {what}: {process.stderr.read()}")
        if time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.05)


def finish(process: subprocess.Popen, timeout: float = 60) -> Run:
    try:
        out, err = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        out, err = process.communicate()
        pytest.fail(f"the process did not stop within {timeout} s of the signal: {err}")
    return Run(process.returncode, out, err)


SIGNALS = [(signal.SIGINT, errors.EXIT_INTERRUPTED), (signal.SIGTERM, 143)]


def test_signal_in_the_middle_of_a_task(own_clip, tiny_model_dir, tmp_path):
    """SIGINT and SIGTERM while a long prediction is being written (both runs at once): exit
    130 / 143, one line, the input untouched and no output, not even the hidden temporary file."""
    before = fingerprint(own_clip.parent)
    runs = []
    for sig, code in SIGNALS:
        out_dir = tmp_path / f"out-{sig.name}"
        out_dir.mkdir()
        process = start(["predict", own_clip, "--frames", "6000", "--steps", "2", "--model", tiny_model_dir,
                         "--device", "cpu", "-o", out_dir / "long.mp4"])
        runs.append((sig, code, out_dir, process))
    for sig, code, out_dir, process in runs:
        wait_for(lambda: any(name.startswith(".long.mp4") for name in os.listdir(out_dir)), process,
                 "the output was being written")
        process.send_signal(sig)
    for sig, code, out_dir, process in runs:
        run = finish(process)
        assert_refused(run, code)
        assert listing(out_dir) == [], sig.name
    assert fingerprint(own_clip.parent) == before


def test_signal_in_the_middle_of_training(tmp_path):
    """SIGINT and SIGTERM after the first training steps (both runs at once): exit 130 / 143, one
    line, the data untouched, and a checkpoint in the run folder that loads. The signal goes to
    the whole process group, DataLoader worker included, as Ctrl-C in a terminal or `timeout` send it."""
    from magvit_cli import train
    from magvit_cli.checkpoint import load_model

    data = tmp_path / "data" / "class_a"
    data.mkdir(parents=True)
    for i in range(2):
        hc.encode(data / f"clip{i}.mp4", hc.pattern(8, 16, 16, seed=40 * i))
    before = fingerprint(data.parent)
    settings = [item for value in TINY_TRAINING for item in ("--set", value)]
    runs = []
    for sig, code in SIGNALS:
        run_dir = tmp_path / f"run-{sig.name}"
        process = start(["train", "tokenizer", data.parent, "-o", run_dir, "--preset", "tiny", *settings,
                         "--set", "num_workers=1", "--device", "cpu", "-q"], new_session=True)
        runs.append((sig, code, run_dir, process))
    for sig, code, run_dir, process in runs:
        metrics = run_dir / train.METRICS_FILE
        wait_for(lambda: metrics.is_file() and metrics.read_text().count("\n") >= 2, process, "two training steps")
        os.killpg(process.pid, sig)
    for sig, code, run_dir, process in runs:
        run = finish(process)
        assert_refused(run, code)
        names = listing(run_dir)
        assert not [n for n in names if n.startswith(".")], names  # no temporary file left
        assert {"config.json", "model.safetensors", train.STATE_FILE} <= set(names)
        model = load_model(run_dir)
        assert model.config.num_frames == 4 and model.transformer is None
        state = torch.load(run_dir / train.STATE_FILE, weights_only=True)
        assert state["step"] >= 2
    assert fingerprint(data.parent) == before


# ----------------------------------------------------------------------------- training inputs


@pytest.fixture(scope="module")
def training_data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("training-data")
    for i in range(2):
        (root / "class_a").mkdir(exist_ok=True)
        hc.encode(root / "class_a" / f"clip{i}.mp4", hc.pattern(8, 16, 16, seed=40 * i))
    return root


def _hostile_file(name: str, text: str):
    def make(d: Path) -> Path:
        (d / name).write_text(text)
        return d / name
    return make


def _empty_folder(folder: Path) -> Path:
    folder.mkdir()
    return folder


def _bad_videos(d: Path) -> Path:
    (d / "bad" / "a").mkdir(parents=True)
    (d / "bad" / "a" / "x.mp4").write_bytes(bytes(range(256)) * 4)
    (d / "bad" / "a" / "y.mp4").write_text("not a video")
    return d / "bad"


TRAINING = {  # (data, extra arguments) given a scratch folder and good data -> exit code, text named
    "data folder missing": (lambda d, good: (d / "nowhere", []), errors.EXIT_INPUT, "nowhere"),
    "data folder empty": (lambda d, good: (_empty_folder(d / "empty"), []), errors.EXIT_INPUT, "no video files"),
    "no readable video": (lambda d, good: (_bad_videos(d), []), errors.EXIT_INPUT, "none of the 2 videos"),
    "terabyte clips in a config file": (
        lambda d, good: (good, ["--config", _hostile_file("c.json", '{"resolution": [100000, 100000]}')(d)]),
        errors.EXIT_USAGE, "resolution"),
    "nested config file": (lambda d, good: (good, ["--config", _hostile_file("c.json", "[" * 100_000)(d)]),
                           errors.EXIT_USAGE, "c.json"),
    "billion-clip batch": (lambda d, good: (good, ["--set", "batch_size=1000000000"]), errors.EXIT_USAGE,
                           "batch_size"),
    "million workers": (lambda d, good: (good, ["--set", "num_workers=1000000"]), errors.EXIT_USAGE, "num_workers"),
    "huge discriminator": (lambda d, good: (good, ["--set", "discriminator_filters=1000000000"]), errors.EXIT_USAGE,
                           "discriminator_filters"),
    "not-a-number learning rate": (lambda d, good: (good, ["--set", "lr=nan"]), errors.EXIT_USAGE, "lr"),
}


@pytest.mark.parametrize("case", TRAINING)
def test_hostile_training_input(case, training_data, tmp_path, capsys):
    make, code, mentions = TRAINING[case]
    data, extra = make(tmp_path, training_data)
    before = fingerprint(tmp_path), fingerprint(training_data)
    started = time.perf_counter()
    run = cli(["train", "tokenizer", data, "-o", tmp_path / "run", "--preset", "tiny", "--device", "cpu", *extra,
               "-q"], capsys)
    assert_refused(run, code, mentions)
    assert time.perf_counter() - started < 10
    assert (fingerprint(tmp_path), fingerprint(training_data)) == before


def test_transformer_training_on_a_hostile_tokenizer_folder(training_data, tiny_model_dir, tmp_path, capsys):
    model = Path(shutil.copytree(tiny_model_dir, tmp_path / "model"))
    config = json.loads((model / "config.json").read_text())
    _terabyte_transformer(config)
    (model / "config.json").write_text(json.dumps(config))
    run = cli(["train", "transformer", training_data, "--tokenizer", model, "-o", tmp_path / "run", "--preset",
               "tiny", "--device", "cpu", "-q"], capsys)
    assert_refused(run, errors.EXIT_MODEL, "parameters")
    assert not (tmp_path / "run").exists()


# ----------------------------------------------------------------------------- property-based

SUFFIXES = [".mp4", ".mkv", ".webm", ".mov", ".gif", ".png", ".avi", ".ts", ""]
WORDS = ["", " ", "-1", "0", "1", "2", "7", "1e999", "-inf", "nan", "box", "dynamic-box", "50%", "-3%", "0,0,5,5",
         "1,1,1,1@0-2", "30000/1001", "25", "0.5", "cuda", "cpu", "../..", "/dev/null", "∞", "%s", "{}", "\\"]
no_digits = st.text(st.characters(blacklist_categories=("Cs", "Nd")), max_size=8)  # never a huge number
word = st.one_of(st.sampled_from(WORDS), no_digits)
small_int = st.integers(-3, 24).map(str)
number = st.one_of(st.floats(allow_nan=True, allow_infinity=True, width=32).map(str), small_int)
COMMON = {"--steps": st.integers(-1, 2).map(str), "--schedule": word, "--choice-temperature": number,
          "--guidance": number, "--seed": st.one_of(small_int, word), "--dtype": word, "--device": word}
COMMANDS = {
    "predict": {"--frames": st.one_of(small_int, word), "--cond-frames": small_int, "--class": word,
                "--start": number, "--end": number},
    "interpolate": {"--factor": st.one_of(small_int, word), "--fps": st.one_of(word, number)},
    "inpaint": {"--mask": word, "--dilate": small_int, "--window": small_int, "--overlap": small_int},
    "outpaint": {"--direction": word, "--amount": st.one_of(word, number)},
    "reconstruct": {},
    "info": {},
}


@st.composite
def command_lines(draw):
    command = draw(st.sampled_from(sorted(COMMANDS)))
    choices = {**COMMANDS[command], **(COMMON if command not in ("reconstruct", "info") else {})}
    names = draw(st.lists(st.sampled_from(sorted(choices)), unique=True, max_size=4)) if choices else []
    options = [item for name in names for item in (name, draw(choices[name]))]
    return command, options


@st.composite
def input_files(draw, clip_bytes: bytes):
    kind = draw(st.sampled_from(["random bytes", "flipped bytes", "cut", "intact"]))
    if kind == "random bytes":
        data = draw(st.binary(max_size=3000))
    else:
        data = bytearray(clip_bytes)
        if kind == "flipped bytes":
            for position in draw(st.lists(st.integers(0, len(data) - 1), min_size=1, max_size=20)):
                data[position] ^= draw(st.integers(1, 255))
        elif kind == "cut":
            data = data[: draw(st.integers(0, len(data)))]
        data = bytes(data)
    return data, draw(st.sampled_from(SUFFIXES))


def test_random_inputs_and_options_never_crash(clip, tiny_model_dir, capsys):
    """Random bytes (or a damaged good clip) and random option values: never a traceback or an
    internal error, always a documented exit code, exit 0 only with a valid output, and never
    a partial output or a changed input."""
    clip_bytes = clip.read_bytes()

    @settings(max_examples=40, deadline=None, derandomize=True, database=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
    @given(input_files(clip_bytes), command_lines())
    def check(file, command_line):
        data, suffix = file
        command, options = command_line
        with tempfile.TemporaryDirectory() as scratch:
            folder = Path(scratch)
            source = folder / f"input{suffix}"
            source.write_bytes(data)
            (folder / "out").mkdir()
            out = folder / "out" / "result.mp4"
            before = fingerprint(source)
            args = [command, source, *options, "--model", tiny_model_dir, "-q"]
            if command != "info":
                args += ["-o", out]
            if command not in ("info", "reconstruct") and "--steps" not in options:
                args += ["--steps", "1"]
            run = cli(args, capsys)
            assert "Traceback" not in run.err, run.err
            assert run.code in errors.EXIT_CODES and run.code != errors.EXIT_INTERNAL, (args, run.err)
            assert fingerprint(source) == before
            if run.code == 0 and command != "info":
                assert listing(folder / "out") == ["result.mp4"]
                assert vio.probe(out).num_frames >= 1
            else:
                assert listing(folder / "out") == [], (args, run.err)
                if run.code and not run.err.startswith("Usage:"):  # Click's own block: see _click cases
                    assert_refused(run, run.code)

    check()
