"""Inpainting masks: every --mask form, --dilate, and clear errors for bad specs."""

from fractions import Fraction

import numpy as np
import pytest
import torch

from magvit_cli import video as vio
from magvit_cli.errors import InputError, UsageError
from magvit_cli.masks import parse_mask

SIZE = (40, 64)  # height, width
FPS = Fraction(10)


def box_of(mask: torch.Tensor):
    """(x, y, w, h) of the True pixels, or None."""
    if not mask.any():
        return None
    rows = mask.any(1).nonzero()[:, 0]
    cols = mask.any(0).nonzero()[:, 0]
    return (int(cols[0]), int(rows[0]), int(cols[-1] - cols[0] + 1), int(rows[-1] - rows[0] + 1))


def test_box_preset_is_the_central_half():
    mask = parse_mask("box", SIZE, 20, FPS)
    assert mask.static
    assert box_of(mask.at(0)) == box_of(mask.at(19)) == (16, 10, 32, 20)
    assert int(mask.at(7).sum()) == 32 * 20


def test_dynamic_box_moves_like_the_official_ipd_hole():
    """16 frames at width 64: left edges round(f * 32 / 15), half to even (spec §7)."""
    mask = parse_mask("dynamic-box", (64, 64), 16, FPS)
    starts = [box_of(mask.at(f))[0] for f in range(16)]
    assert starts == [0, 2, 4, 6, 9, 11, 13, 15, 17, 19, 21, 23, 26, 28, 30, 32]
    assert {box_of(mask.at(f))[1:] for f in range(16)} == {(16, 32, 32)}


@pytest.mark.parametrize("spec, expected", [
    ("10,5,20,8", (10, 5, 20, 8)),  # pixels
    ("0.25,0.25,0.5,0.5", (16, 10, 32, 20)),  # fractions of the frame
    ("25%,25%,50%,50%", (16, 10, 32, 20)),  # percent
    ("0,0,1,1", (0, 0, 1, 1)),  # no decimal point: pixels
    ("-10,-10,20,20", (0, 0, 10, 10)),  # clipped to the frame
    ("60,30,20,20", (60, 30, 4, 10)),
])
def test_static_boxes(spec, expected):
    mask = parse_mask(spec, SIZE, 20, FPS)
    assert mask.static and box_of(mask.at(3)) == expected


def test_keyframes_hold_move_linearly_and_end():
    mask = parse_mask("0,0,10,10@2-4; 40,20,10,10@10-12", SIZE, 20, FPS)
    assert not mask.static
    assert box_of(mask.at(1)) is None  # before the first keyframe
    assert box_of(mask.at(2)) == box_of(mask.at(4)) == (0, 0, 10, 10)
    assert box_of(mask.at(7)) == (20, 10, 10, 10)  # half way from frame 4 to frame 10
    assert box_of(mask.at(12)) == (40, 20, 10, 10)
    assert box_of(mask.at(13)) is None  # after the last


def test_keyframe_times_in_seconds_single_frames_and_open_ends():
    mask = parse_mask("0,0,10,10@0.5s", SIZE, 20, FPS)  # frame 5 only
    assert [f for f in range(20) if mask.at(f).any()] == [5]
    mask = parse_mask("0,0,10,10@15-", SIZE, 20, FPS)
    assert [f for f in range(20) if mask.at(f).any()] == [15, 16, 17, 18, 19]


def test_dilate_grows_every_side():
    mask = parse_mask("10,10,5,5", SIZE, 20, FPS, dilate=3)
    assert box_of(mask.at(0)) == (7, 7, 11, 11)


def write_mask_image(path, mask: np.ndarray):
    rgb = np.repeat((mask * 255).astype(np.uint8)[:, :, None], 3, axis=2)
    vio.write_video(path, iter([rgb]), 1)  # a folder of one PNG frame
    return next(path.iterdir())


def test_png_mask_is_static_and_resized(tmp_path):
    drawn = np.zeros((20, 32), bool)
    drawn[5:10, 8:16] = True
    png = write_mask_image(tmp_path / "m", drawn)
    mask = parse_mask(str(png), SIZE, 20, FPS)
    assert mask.static and box_of(mask.at(9)) == (16, 10, 16, 10)  # 2x, nearest
    assert mask.notes and "resized" in mask.notes[0]
    dilated = parse_mask(str(png), SIZE, 20, FPS, dilate=2)
    assert box_of(dilated.at(0)) == (14, 8, 20, 14)


def test_folder_and_video_masks_are_per_frame(tmp_path):
    frames = np.zeros((6, *SIZE, 3), np.uint8)
    for f in range(6):
        frames[f, 10:20, 8 * f:8 * f + 8] = 255
    folder = tmp_path / "masks"
    vio.write_video(folder, iter(frames), 10)
    movie = tmp_path / "masks.mp4"
    vio.write_video(movie, iter(frames), 10)
    for source in (folder, movie):
        mask = parse_mask(str(source), SIZE, 6, FPS)
        assert mask.kind == ("folder" if source == folder else "video")
        boxes = [box_of(mask.at(f)) for f in range(6)]
        for f, (x, y, w, h) in enumerate(boxes):
            assert abs(x - 8 * f) <= 1 and abs(w - 8) <= 2 and abs(y - 10) <= 1 and abs(h - 10) <= 2, (source, boxes)
    with pytest.raises(InputError, match="has 6 frames but the video has 9"):
        parse_mask(str(folder), SIZE, 9, FPS)


@pytest.mark.parametrize("spec, message", [
    ("1,2,3", "four numbers"),
    ("a,b,c,d", "not four numbers"),
    ("1,2,0,5", "must be positive"),
    ("10%,10,5%,5%", "percent or none"),
    ("100,5,5,5", "outside the 64x40 frame"),
    ("0,0,5,5@4-2", "ends before it starts"),
    ("0,0,5,5@x", "not a time"),
    ("0,0,5,5@-3", "not a time"),
    ("0,0,5,5@2-6;5,5,5,5@4-8", "without overlap"),
    ("0,0,5,5;5,5,5,5@4", "has no @time"),
    ("0,0,5,5@30", "starts at frame 30"),
    ("circle", "is not a mask"),
])
def test_bad_specs_are_usage_errors(spec, message):
    with pytest.raises(UsageError, match=message):
        parse_mask(spec, SIZE, 20, FPS)


def test_missing_mask_file_is_an_input_error(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        parse_mask(str(tmp_path / "hole.png"), SIZE, 20, FPS)
    with pytest.raises(UsageError, match="--dilate"):
        parse_mask("box", SIZE, 20, FPS, dilate=-1)
