"""Training data: listing, labels, clips, unreadable files, workers, token cache."""

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from magvit_cli.data import TokenCache, VideoClipDataset, resize_crop
from magvit_cli.errors import InputError

from conftest import write_clip


def moving_square(seed: int, frames: int = 24, height: int = 48, width: int = 64) -> np.ndarray:
    rng = np.random.default_rng(seed)
    out = np.empty((frames, height, width, 3), np.uint8)
    out[:] = rng.integers(0, 256, 3)
    color = rng.integers(0, 256, 3)
    y, x = rng.integers(0, height - 16), rng.integers(0, width - 16)
    dy, dx = rng.integers(-2, 3, 2)
    for t in range(frames):
        top, left = (y + dy * t) % (height - 16), (x + dx * t) % (width - 16)
        out[t, top:top + 16, left:left + 16] = color
    return out


def make_folder(root: Path, count: int = 6, classes=("walk", "jump")) -> Path:
    for i in range(count):
        write_clip(root / classes[i % len(classes)] / f"v{i}.mp4", moving_square(i))
    return root


def ramp(frames: int = 20, height: int = 32, width: int = 32) -> np.ndarray:
    """Frame t is uniformly grey 10·t: the frame index can be read back from the pixels."""
    return np.repeat(np.arange(frames, dtype=np.uint8)[:, None, None, None] * 10, height * width * 3).reshape(
        frames, height, width, 3)


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return make_folder(tmp_path_factory.mktemp("videos"))


def test_labels_from_sub_folders(folder):
    data = VideoClipDataset(folder, num_frames=8, resolution=(16, 16))
    assert data.class_names == ["jump", "walk"]
    assert len(data) == 6 and not data.unreadable
    by_name = {Path(item.path).name: item.label for item in data.items}
    assert by_name["v0.mp4"] == 1 and by_name["v1.mp4"] == 0  # v0 is in walk/, v1 in jump/
    assert all(item.num_frames == 24 and item.fps == 8 for item in data.items)


def test_clip_shape_range_and_determinism(folder):
    data = VideoClipDataset(folder, num_frames=8, resolution=(16, 24), seed=3)
    video, label = data[2]
    assert video.shape == (3, 8, 16, 24) and video.dtype == torch.float32
    assert 0 <= float(video.min()) and float(video.max()) <= 1
    assert label == data.items[2].label
    assert torch.equal(data[2][0], video)  # same (seed, epoch, index): same clip
    changed = False
    for epoch in range(1, 6):
        data.set_epoch(epoch)
        changed |= not torch.equal(data[2][0], video)
    assert changed  # new epochs draw new windows / crops / flips


def test_eval_clip_is_centred(tmp_path):
    write_clip(tmp_path / "ramp.mp4", ramp(20))
    data = VideoClipDataset(tmp_path, num_frames=4, resolution=(32, 32), stride=2, train=False)
    levels = data[0][0].mean(dim=(0, 2, 3)) * 255 / 10  # frame indices read back from the grey level
    # 20 frames, a span of 7 frames: centre start (20 - 7) // 2 = 6, every 2nd frame.
    assert torch.allclose(levels, torch.tensor([6.0, 8.0, 10.0, 12.0]), atol=0.3)


def test_random_clips_respect_stride_and_range(tmp_path):
    write_clip(tmp_path / "ramp.mp4", ramp(20))
    data = VideoClipDataset(tmp_path, num_frames=5, resolution=(32, 32), stride=3, flip=False)
    starts = set()
    for epoch in range(12):
        data.set_epoch(epoch)
        levels = (data[0][0].mean(dim=(0, 2, 3)) * 255 / 10).round()
        assert torch.equal(levels[1:] - levels[:-1], torch.full((4,), 3.0))
        starts.add(int(levels[0]))
    assert starts <= set(range(0, 8)) and len(starts) > 2  # span 13 of 20 frames: starts 0..7


def test_short_video_repeats_last_frame(tmp_path):
    write_clip(tmp_path / "short.mp4", ramp(5))
    video, _ = VideoClipDataset(tmp_path, num_frames=8, resolution=(32, 32), train=False)[0]
    levels = (video.mean(dim=(0, 2, 3)) * 255 / 10).round()
    assert levels.tolist() == [0, 1, 2, 3, 4, 4, 4, 4]


def test_flip_only_when_enabled(tmp_path):
    frames = np.zeros((10, 32, 32, 3), np.uint8)
    frames[:, :, 16:] = 255  # right half white
    write_clip(tmp_path / "half.mp4", frames)
    for flip, expect_flipped in ((False, False), (True, True)):
        data = VideoClipDataset(tmp_path, num_frames=4, resolution=(32, 32), flip=flip)
        flipped = []
        for epoch in range(12):
            data.set_epoch(epoch)
            video = data[0][0]
            flipped.append(bool(video[..., :16].mean() > video[..., 16:].mean()))
        assert any(flipped) == expect_flipped
        if flip:
            assert not all(flipped)


def test_resize_keeps_aspect_and_crops_centre():
    clip = torch.zeros(3, 2, 40, 80)
    clip[..., 30:50] = 1.0  # a vertical bar in the middle
    out = resize_crop(clip, (20, 20), (0.5, 0.5))
    assert out.shape == (3, 2, 20, 20)
    # 40x80 -> 20x40, centre crop columns 10..30 of the resized frame: bar at 15..25 -> 5..15.
    assert out[..., 7:13].min() > 0.95 and out[..., :3].max() < 0.05 and out[..., 17:].max() < 0.05


def test_csv_manifest_with_names_and_ranges(folder, tmp_path):
    manifest = tmp_path / "list.csv"
    manifest.write_text("path,label,start,end\n"
                        f"{folder}/walk/v0.mp4,walk,0.5,2.5\n"
                        f"{folder}/jump/v1.mp4,jump,,\n")
    data = VideoClipDataset(manifest, num_frames=4, resolution=(16, 16))
    assert data.class_names == ["jump", "walk"]
    assert [i.label for i in data.items] == [1, 0]
    assert (data.items[0].first_frame, data.items[0].num_frames) == (4, 16)  # 0.5 s .. 2.5 s at 8 fps
    assert data.items[1].num_frames == 24


def test_jsonl_manifest_relative_paths_and_integer_labels(folder, tmp_path):
    (tmp_path / "clips").symlink_to(folder)
    manifest = tmp_path / "list.jsonl"
    manifest.write_text("\n".join(json.dumps({"path": f"clips/walk/v{i}.mp4", "label": i}) for i in (0, 2)) + "\n")
    data = VideoClipDataset(manifest, num_frames=4, resolution=(16, 16))
    assert data.class_names == ["class_0", "class_1", "class_2"]
    assert [i.label for i in data.items] == [0, 2]
    with pytest.raises(InputError, match="not valid JSON"):
        bad = tmp_path / "bad.jsonl"
        bad.write_text("{oops\n")
        VideoClipDataset(bad)


def test_unreadable_files_are_skipped_counted_and_listed(folder, tmp_path):
    root = tmp_path / "mixed"
    for name in ("walk", "jump"):
        (root / name).mkdir(parents=True)
        (root / name / "good.mp4").symlink_to(folder / "walk" / "v0.mp4")
    (root / "walk" / "empty.mp4").write_bytes(b"")
    (root / "jump" / "text.mp4").write_text("this is not a video")
    data_bytes = (folder / "walk" / "v2.mp4").read_bytes()
    (root / "jump" / "cut.mp4").write_bytes(data_bytes[:200])
    with pytest.warns(UserWarning, match="skipping 3 of 5 videos") as record:
        data = VideoClipDataset(root, num_frames=4, resolution=(16, 16))
    message = str(record[0].message)
    assert all(name in message for name in ("empty.mp4", "text.mp4", "cut.mp4"))
    assert len(data) == 2 and len(data.unreadable) == 3
    assert "empty" in dict(data.unreadable)[str(root / "walk" / "empty.mp4")]


def test_no_readable_files_is_an_input_error(tmp_path):
    with pytest.raises(InputError, match="no video files"):
        VideoClipDataset(tmp_path)
    (tmp_path / "a.mp4").write_text("junk")
    with pytest.raises(InputError, match="none of the 1 videos"):
        VideoClipDataset(tmp_path)
    with pytest.raises(InputError, match="not found"):
        VideoClipDataset(tmp_path / "missing")


def test_loose_files_next_to_class_folders_are_refused(folder, tmp_path):
    (tmp_path / "walk").mkdir()
    (tmp_path / "walk" / "a.mp4").symlink_to(folder / "walk" / "v0.mp4")
    (tmp_path / "b.mp4").symlink_to(folder / "walk" / "v2.mp4")
    with pytest.raises(InputError, match="mixes videos"):
        VideoClipDataset(tmp_path)


def test_workers_give_the_same_clips(folder):
    data = VideoClipDataset(folder, num_frames=4, resolution=(16, 16), seed=1)
    serial = [b for b, _ in DataLoader(data, batch_size=3, num_workers=0)]
    parallel = [b for b, _ in DataLoader(data, batch_size=3, num_workers=2)]
    assert all(torch.equal(a, b) for a, b in zip(serial, parallel))


def test_token_cache_round_trip(folder, tmp_path):
    data = VideoClipDataset(folder, num_frames=4, resolution=(16, 16), train=False)
    batches = DataLoader(data, batch_size=4)
    encode = lambda v: {"tokens": (v[:, 0, ::2, ::4, ::4] * 100).long(), "cond": (v[:, 1, ::2, ::4, ::4] * 100).long()}
    meta = {"videos": [i.path for i in data.items], "conditions": ["cond"]}
    cache = TokenCache.build(tmp_path / "cache", iter(batches), encode, meta)
    assert TokenCache.matches(tmp_path / "cache", meta)
    assert not TokenCache.matches(tmp_path / "cache", {**meta, "conditions": []})
    assert len(cache) == 6
    tokens, cond, label = cache[5]
    video, expected_label = data[5]
    assert torch.equal(tokens, (video[0, ::2, ::4, ::4] * 100).long())
    assert torch.equal(cond["cond"], (video[1, ::2, ::4, ::4] * 100).long())
    assert label == expected_label
