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
    # each value lands where it belongs, and the bounds of the fraction rule are inclusive
    ("0.25,0.5,0.5,0.25", (16, 20, 32, 10)),
    ("50%,50%,50%,50%", (32, 20, 32, 20)),
    ("0.0,0.5,0.5,0.5", (0, 20, 32, 20)),  # 0 is a fraction too
    ("0.5,0.0,1.0,0.5", (32, 0, 32, 20)),  # and so is 1
    ("1.5,1.5,1.5,1.5", (2, 2, 1, 1)),  # above 1 with a decimal point: pixels
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
    ("1,2,5,0", "must be positive"),
    ("64,5,10,10", "outside"),  # starts at the right edge
    ("5,40,10,10", "outside"),  # at the bottom edge
    ("-10,5,10,10", "outside"),  # ends at the left edge
    ("5,-10,10,10", "outside"),  # at the top edge
    ("0,0,5,5@4-2", "ends before it starts"),
    ("0,0,5,5@x", "not a time"),
    ("0,0,5,5@-3", "not a time"),
    ("0,0,5,5@2-6;5,5,5,5@4-8", "without overlap"),
    ("0,0,5,5@2-4;5,5,5,5@4-8", "without overlap"),  # sharing frame 4
    ("0,0,5,5@2@3", "not a time"),
    ("0,0,5,5@20", "starts at frame 20"),  # the video's frames are 0..19
    ("0,0,5,5;5,5,5,5@4", "has no @time"),
    ("0,0,5,5@30", "starts at frame 30"),
    ("circle", "is not a mask"),
])
def test_bad_specs_are_usage_errors(spec, message):
    with pytest.raises(UsageError, match=message) as error:
        parse_mask(spec, SIZE, 20, FPS)
    assert repr(spec) in str(error.value)  # the message quotes what the user wrote


def test_missing_mask_file_is_an_input_error(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        parse_mask(str(tmp_path / "hole.png"), SIZE, 20, FPS)
    with pytest.raises(UsageError, match="--dilate"):
        parse_mask("box", SIZE, 20, FPS, dilate=-1)


@pytest.mark.parametrize("spec, kind, static", [
    ("box", "box", True),
    ("dynamic-box", "dynamic-box", False),
    ("10,5,20,8", "box", True),
    ("10,5,20,8@0-", "keyframes", True),  # one keyframe over the whole video: static
    ("10,5,20,8@1-", "keyframes", False),  # not from frame 0
    ("10,5,20,8@0-5", "keyframes", False),  # not to the end
    ("0,0,5,5@0;10,5,20,8@4-", "keyframes", False),
])
def test_each_form_names_its_kind_and_whether_it_is_static(spec, kind, static):
    """The kind and the spec go into the JSON report; a static mask is computed once."""
    mask = parse_mask(spec, SIZE, 20, FPS)
    assert mask.describe() == {"kind": kind, "spec": spec}
    assert mask.static is static
    assert mask.at(0).dtype == torch.bool and mask.at(0).shape == SIZE


def test_presets_on_sizes_not_divisible_by_four_and_dilated():
    """box: the central half, with the official integer divisions; dynamic-box: half the width,
    moving from the left edge to the right; --dilate grows both."""
    size = (30, 50)  # 50 // 4 = 12, 50 * 3 // 4 = 37; 30 // 4 = 7, 30 * 3 // 4 = 22
    assert box_of(parse_mask("box", size, 20, FPS).at(0)) == (12, 7, 25, 15)
    assert box_of(parse_mask("box", size, 20, FPS, dilate=2).at(0)) == (10, 5, 29, 19)
    dynamic = parse_mask("dynamic-box", size, 11, FPS)
    assert box_of(dynamic.at(0)) == (0, 7, 25, 15)
    assert box_of(dynamic.at(10)) == (25, 7, 25, 15)  # the last frame: the right half
    assert box_of(dynamic.at(5)) == (12, 7, 26, 15)  # half way: 12.5 .. 37.5, rounded to even
    assert box_of(parse_mask("dynamic-box", size, 11, FPS, dilate=1).at(0)) == (0, 6, 26, 17)  # clipped at 0
    # a one-frame video: the box still starts at the left edge
    assert box_of(parse_mask("dynamic-box", size, 1, FPS).at(0)) == (0, 7, 25, 15)


def test_keyframes_at_their_edges_and_between_three():
    mask = parse_mask("0,0,10,10@0-2; 20,0,10,10@6; 20,20,10,10@10-", SIZE, 20, FPS)
    assert box_of(mask.at(2)) == (0, 0, 10, 10)  # a keyframe's last frame holds its box
    assert box_of(mask.at(3)) == (5, 0, 10, 10)  # a quarter of the way to the next
    assert box_of(mask.at(6)) == (20, 0, 10, 10)  # the next keyframe's own frame
    assert box_of(mask.at(8)) == (20, 10, 10, 10)  # between the second and the third
    assert box_of(mask.at(19)) == (20, 20, 10, 10)


def test_a_box_thinner_than_a_pixel_is_no_hole():
    """A box that rounds to no pixel is no hole (None), not an empty rectangle."""
    for spec in ("0,0,0.4,10", "0,0,10,0.4"):
        mask = parse_mask(spec, SIZE, 20, FPS)
        assert mask.box_at(0) is None and not mask.at(0).any()


def test_frame_masks_start_over_on_a_second_pass_and_note_a_resize(tmp_path):
    frames = np.zeros((4, 20, 32, 3), np.uint8)  # half the video's size: resized
    for f in range(4):
        frames[f, 5:10, 4 * f:4 * f + 4] = 255
    folder = tmp_path / "masks"
    vio.write_video(folder, iter(frames), 10)
    mask = parse_mask(str(folder), SIZE, 4, FPS)
    first_pass = [box_of(mask.at(f)) for f in range(4)]
    assert first_pass[0] == (0, 10, 8, 10) and first_pass[3] == (24, 10, 8, 10)
    assert [box_of(mask.at(f)) for f in (0, 1, 2, 3)] == first_pass  # a second pass reads again from frame 0
    assert box_of(mask.at(2)) == first_pass[2]
    assert mask.notes and "resized" in mask.notes[0] and "masks" not in mask.notes[0].split(" is ")[1]


def test_times_in_seconds_single_frame_ranges_and_time_zero():
    mask = parse_mask("0,0,10,10@0.5s-1s", SIZE, 20, FPS)  # 10 fps: frames 5 to 10
    assert [f for f in range(20) if mask.at(f).any()] == list(range(5, 11))
    mask = parse_mask("0,0,10,10@3-3", SIZE, 20, FPS)
    assert [f for f in range(20) if mask.at(f).any()] == [3]
    mask = parse_mask("0,0,10,10@0s", SIZE, 20, FPS)
    assert [f for f in range(20) if mask.at(f).any()] == [0]


def test_presets_use_integer_quarters_of_the_frame():
    size = (42, 50)  # 42 * 3 // 4 - 42 // 4 = 21 rows (21.5 or 20.5 with a true division)
    assert box_of(parse_mask("box", size, 20, FPS).at(0)) == (12, 10, 25, 21)
    assert box_of(parse_mask("dynamic-box", size, 20, FPS).at(0)) == (0, 10, 25, 21)
    two = parse_mask("dynamic-box", size, 2, FPS)  # two frames: left half, then right half
    assert box_of(two.at(1)) == (25, 10, 25, 21)


def test_keyframed_boxes_are_dilated_too():
    mask = parse_mask("10,10,5,5@0-", SIZE, 20, FPS, dilate=1)
    assert box_of(mask.at(0)) == (9, 9, 7, 7)


def test_a_missing_mask_path_without_a_suffix_is_an_input_error(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        parse_mask(str(tmp_path / "masks" / "hole"), SIZE, 20, FPS)


def test_image_masks_threshold_note_and_describe(tmp_path):
    drawn = np.zeros((20, 32), np.uint8)
    drawn[5:10, 8:16] = 128  # just above mid-grey: part of the hole
    drawn[10:12, 8:16] = 127  # just below: not
    rgb = np.repeat(drawn[:, :, None], 3, axis=2)
    vio.write_video(tmp_path / "m", iter([rgb]), 1)
    png = next((tmp_path / "m").iterdir())
    mask = parse_mask(str(png), SIZE, 20, FPS)
    assert box_of(mask.at(0)) == (16, 10, 16, 10)
    assert mask.notes == [f"mask {png.name} is 32x20: resized to the video's 64x40"]
    assert mask.describe() == {"kind": "image", "spec": str(png)}
    assert box_of(parse_mask(str(png), SIZE, 20, FPS, dilate=1).at(0)) == (15, 9, 18, 12)


def test_frame_masks_describe_themselves_and_refuse_frames_past_their_end(tmp_path):
    frames = np.zeros((4, *SIZE, 3), np.uint8)
    frames[:, 10:20, 8:16] = 255
    vio.write_video(tmp_path / "masks", iter(frames), 10)
    mask = parse_mask(str(tmp_path / "masks"), SIZE, 4, FPS)
    assert mask.describe() == {"kind": "folder", "spec": str(tmp_path / "masks")}
    with pytest.raises(InputError, match="has only 4 frames"):
        mask.at(4)


@pytest.mark.parametrize("spec", ["10X,10,5,5", "10X,10,5,5@3-4", "10,10,5,5@3-x", "10,10,5,5@y-9"])
def test_a_bad_box_or_time_is_refused_quoting_the_mask(spec):
    with pytest.raises(UsageError) as raised:
        parse_mask(spec, (48, 64), 30, Fraction(25))
    assert spec in str(raised.value)


def test_dynamic_box_on_an_odd_width():
    """IPD on 63 px: a hole 63 // 2 = 31 px wide, rows [12, 36), from columns 0-30 to 31-61."""
    mask = parse_mask("dynamic-box", (48, 63), 10, Fraction(25))
    for frame, (first, last) in ((0, (0, 30)), (9, (31, 61))):
        hole = mask.at(frame)
        columns, rows = hole.any(0).nonzero()[:, 0], hole.any(1).nonzero()[:, 0]
        assert (columns[0], columns[-1], rows[0], rows[-1]) == (first, last, 12, 35)
