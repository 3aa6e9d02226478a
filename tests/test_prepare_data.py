"""weights/recipe/prepare_data.py: its table of sources (whole sources in one split, GitHub files
pinned to a commit), copying GitHub files out of local clones, reading several files as one
source, and the message for a missing file. The full build is not run here (minutes)."""

import importlib.util
import re
import subprocess
import sys
from collections import defaultdict
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

RECIPE = Path(__file__).resolve().parents[1] / "weights" / "recipe" / "prepare_data.py"


@pytest.fixture(scope="module")
def recipe():
    spec = importlib.util.spec_from_file_location("prepare_data_under_test", RECIPE)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is made
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop(spec.name, None)


def _write_video(path: Path, count: int, fps: int, size: int = 32) -> None:
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=Fraction(fps))
        stream.width = stream.height = size
        stream.pix_fmt = "yuv420p"
        for index in range(count):
            image = np.full((size, size, 3), index * 8 % 256, dtype=np.uint8)
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(stream.encode())


def test_github_sources_are_pinned_and_whole_sources_keep_to_one_split(recipe):
    assert all(re.fullmatch(r"[0-9a-f]{40}", commit) for commit in recipe.GITHUB.values())
    splits = defaultdict(set)
    for video in recipe.VIDEOS:
        assert video.split in ("train", "heldout") and video.shows
        assert (video.clips > 0) == (video.split == "train")
        for path in recipe.paths(video):
            origin = recipe.github_origin(path)
            if path.startswith("github/"):
                repo, commit, inner = origin
                assert recipe.github(repo, inner) == path and commit == recipe.GITHUB[repo]
            else:
                assert origin is None
            splits[path].add((video.split, video.frames))
    for path, uses in splits.items():
        # Only bikes.mp4 is split, by disjoint frame ranges (its held-out shot).
        assert len({split for split, _ in uses}) == 1 or all(frames is not None for _, frames in uses), path
    people = {video.split for video in recipe.VIDEOS if video.label == "people"}
    assert people == {"train", "heldout"}


def test_fetch_github_copies_by_commit_and_reports_what_is_missing(recipe, tmp_path, monkeypatch):
    clone = tmp_path / "mirrors" / "someone+clips"
    clone.mkdir(parents=True)
    git = ["git", "-C", str(clone), "-c", "user.name=t", "-c", "user.email=t@t", "-c", "commit.gpgsign=false"]
    subprocess.run(git + ["init", "-q"], check=True)
    (clone / "a.mp4").write_bytes(b"first version")
    subprocess.run(git + ["add", "a.mp4"], check=True)
    subprocess.run(git + ["commit", "-q", "-m", "one"], check=True)
    commit = subprocess.run(git + ["rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
    (clone / "a.mp4").write_bytes(b"second version")
    subprocess.run(git + ["commit", "-q", "-am", "two"], check=True)

    monkeypatch.setitem(recipe.GITHUB, "someone/clips", commit)
    wanted = recipe.Video("clip", recipe.github("someone/clips", "a.mp4", "gone.mp4"), "GitHub someone/clips",
                          "CC0-1.0", "people", "heldout", 0, (1,), shows="test")
    monkeypatch.setattr(recipe, "VIDEOS", [wanted])
    sources = tmp_path / "sources"
    missing = recipe.fetch_github(sources, tmp_path / "mirrors")
    assert (sources / "github/someone+clips/a.mp4").read_bytes() == b"first version"  # the pinned commit
    assert missing == ["github/someone+clips/gone.mp4"]
    message = recipe.missing_message(wanted, missing[0], sources)
    assert "someone/clips" in message and commit in message and "gone.mp4" in message
    assert recipe.fetch_github(tmp_path / "elsewhere", None) == sorted(recipe.paths(wanted))


def test_read_source_puts_files_one_after_the_other(recipe, tmp_path):
    _write_video(tmp_path / "a.mp4", 5, 25)
    _write_video(tmp_path / "b.mp4", 7, 25)
    _write_video(tmp_path / "c.mp4", 4, 10)
    both = recipe.Video("both", ("a.mp4", "b.mp4"), "test", "CC0-1.0", "people", "train", 1, (1,), shows="test")
    frames, fps, starts = recipe.read_source(tmp_path, both)
    assert frames.shape == (12, 3, 32, 32) and fps == pytest.approx(25) and starts == [0, 5]
    mixed = recipe.Video("mixed", ("a.mp4", "c.mp4"), "test", "CC0-1.0", "people", "train", 1, (1,))
    with pytest.raises(ValueError, match="frame rate"):
        recipe.read_source(tmp_path, mixed)
