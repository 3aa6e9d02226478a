"""The editing jobs' contracts, against expectations written out by hand: the plan a dry
run prints, the settings and result a run reports, what each job asks of the model (task,
class, options, progress, random generator, batches, the frames of each window), raw
output, previews, and sources held as tensors.

The model is the tiny random one with `run_task` replaced by a recorder whose output
says where it came from: frame t of a window is the window's first frame plus 4·t
grey levels, so the frames a job writes show which model frame they are."""

import json
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch

import magvit_cli
from magvit_cli import editing, video as vio
from magvit_cli.decoding import DecodeOptions
from magvit_cli.errors import OutOfMemoryError, OutputError, UsageError
from magvit_cli.model import Magvit

OPTIONS = DecodeOptions(seed=5, steps=3)


def flat_frames(levels, height=44, width=56) -> np.ndarray:
    return np.stack([np.full((height, width, 3), level, np.uint8) for level in levels])


@pytest.fixture(scope="module")
def model(tiny_model_dir) -> Magvit:
    return magvit_cli.load_model(tiny_model_dir)


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    """30 flat frames of 56x44 at 24 fps, grey levels 20, 22, ..., 78 (a lossless PNG folder)."""
    folder = tmp_path_factory.mktemp("jobs") / "clip"
    vio.write_video(folder, iter(flat_frames(range(20, 80, 2))), 24)
    return folder


class Recorder:
    """Stands in for Magvit.run_task: records every call and answers with frames that say
    which window and which model frame they are."""

    def __init__(self, texture: bool = False):
        self.calls: list[dict] = []
        self.texture = texture  # add a checkerboard of 2-px squares, which no colour shift removes

    def __call__(self, model, task, video, labels=None, options=None, on_step=None, cond_frames=1,
                 composite=True, keep=None, padding=None, generator=None):
        self.calls.append(dict(task=task, video=video.clone(), labels=labels, options=options, composite=composite,
                               cond_frames=cond_frames, generator=generator, keep=keep, padding=padding))
        steps = options.steps if options is not None else DecodeOptions().steps
        for step in range(steps):
            if on_step is not None:
                on_step(step, steps)
        T = video.shape[2]
        ramp = (4 * torch.arange(T, dtype=torch.float32) / 255).view(1, 1, T, 1, 1)
        out = video[:, :, :1] + ramp
        if self.texture:
            i = torch.arange(video.shape[3])[:, None] // 2 + torch.arange(video.shape[4])[None, :] // 2
            out = out + 0.25 * (i % 2)
        return out.clamp(0, 1)


@pytest.fixture
def recorder(monkeypatch) -> Recorder:
    recorder = Recorder()
    monkeypatch.setattr(Magvit, "run_task", lambda self, *args, **kwargs: recorder(self, *args, **kwargs))
    return recorder


def read_frames(folder: Path) -> np.ndarray:
    return np.stack(list(vio.iter_frames(folder)))


def levels(frames: np.ndarray) -> list[int]:
    """The grey level of each flat frame (and a check that it is flat)."""
    assert (frames == frames[:, :1, :1, :1]).all()
    return frames[:, 0, 0, 0].tolist()


def progress_counter():
    done = []
    return done, lambda n: done.append(n)


# ---------------------------------------------------------------------------- plans (--dry-run)


def source_description(clip, frames=30, first=0):
    return {"path": str(clip), "width": 56, "height": 44, "frames": frames, "fps": "24", "first_frame": first,
            "rotation": 0, "variable_frame_rate": False}


LETTERBOX = {"view": {"x": 0.0, "y": -6.0, "width": 56, "height": 56, "scale": 1.75},
             "padding": {"left": 0, "top": 6, "right": 0, "bottom": 6}}


def test_inpaint_plan(model, clip):
    # The box is x 14..42, y 11..33 (28 x 22): its context view is twice its larger side,
    # 56 px, centred on it: (0, -6), 1.75 source px per model px, cells of 7 px. The hole
    # covers 4 x 4 cells per latent frame; the letterbox rows (model rows 0-3 and 29-31,
    # cell rows 0 and 7) are generated too: (16 + 16) x 4 latent frames.
    job = editing.InpaintJob(model.config, editing.Source(clip, start=0.25), editing.EditOptions(batch=2),
                             "0.25,0.25,0.5,0.5")
    assert job.plan() == {
        "task": "inpainting_c", "input": source_description(clip, frames=24, first=6),
        "output": {"width": 56, "height": 44, "frames": 24, "fps": "24"},
        "model_clip": "16x32x32", "token_grid": "4x8x8", **LETTERBOX,
        "cell_source_px": {"frames": 4, "height": 7.0, "width": 7.0}, "window": 16, "overlap": 4,
        "generated_cells_first_window": 128, "cells_per_window": 256,
        "windows": 2, "batch": 2, "model_calls": 1,  # frames 0-15 and 12-23
        "mask": {"kind": "box", "spec": "0.25,0.25,0.5,0.5"}}
    assert job.settings() == {"mask": "0.25,0.25,0.5,0.5", "dilate": 0, "window": 16, "overlap": 4}


def test_outpaint_plan(model, clip):
    # 28 px on the right: an 84 x 44 canvas, letterboxed in an 84 px square (2.625 px per
    # model px). The input covers model columns 0-21.3 and rows 7.6-24.4: 5 x 4 whole
    # cells known per latent frame, 44 generated, x 4 latent frames.
    job = editing.OutpaintJob(model.config, editing.Source(clip), editing.EditOptions(window=12, overlap=3),
                              "right", "28")
    assert job.plan() == {
        "task": "outpainting_v", "input": source_description(clip),
        "output": {"width": 84, "height": 44, "frames": 30, "fps": "24"},
        "model_clip": "16x32x32", "token_grid": "4x8x8",
        "view": {"x": 0.0, "y": -20.0, "width": 84, "height": 84, "scale": 2.625},
        "padding": {"left": 0, "top": 20, "right": 0, "bottom": 20},
        "cell_source_px": {"frames": 4, "height": 10.5, "width": 10.5}, "window": 12, "overlap": 3,
        "generated_cells_first_window": 176, "cells_per_window": 256,
        "windows": 3, "batch": 1, "model_calls": 3,  # frames 0-11, 9-20, 18-29
        "margins": {"left": 0, "top": 0, "right": 28, "bottom": 0}}
    assert job.settings() == {"direction": "right", "amount": "28", "window": 12, "overlap": 3}


def test_predict_plan(model, clip):
    job = editing.PredictJob(model.config, editing.Source(clip), editing.EditOptions(), frames=20, cond_frames=2)
    assert job.plan() == {
        "task": "frame_prediction", "input": source_description(clip),
        "output": {"width": 56, "height": 44, "frames": 50, "fps": "24"},
        "model_clip": "16x32x32", "token_grid": "4x8x8", **LETTERBOX, "cond_frames": 2,
        "windows": 2, "batch": 1, "model_calls": 2}  # 14 new frames per window
    assert job.settings() == {"frames": 20, "cond_frames": 2, "class": None}
    assert editing.PredictJob(model.config, editing.Source(clip), editing.EditOptions(), label=2).settings() == {
        "frames": 15, "cond_frames": 1, "class": 2}  # default: one window's worth


def test_interpolate_plan(model, clip):
    # 24 -> 40 fps: output frame k at 3k/5 input frames, floor(29 * 5/3) + 1 = 49 frames; every
    # pair of input frames has a made-up frame, 29 windows in calls of 4.
    job = editing.InterpolateJob(model.config, editing.Source(clip), editing.EditOptions(batch=4), fps="40")
    assert job.plan() == {
        "task": "frame_interpolation", "input": source_description(clip),
        "output": {"width": 56, "height": 44, "frames": 49, "fps": "40"},
        "model_clip": "16x32x32", "token_grid": "4x8x8", **LETTERBOX, "factor": "5/3",
        "windows": 29, "batch": 4, "model_calls": 8}
    assert job.settings() == {"factor": None, "fps": "40"}
    assert editing.InterpolateJob(model.config, editing.Source(clip), editing.EditOptions()).settings() == {
        "factor": 2, "fps": None}


# ---------------------------------------------------------------------------- prediction


@pytest.mark.parametrize("label, task", [(None, "frame_prediction"), (1, "frame_prediction_c")])
def test_prediction_asks_the_model_window_by_window(model, clip, recorder, tmp_path, label, task):
    job = editing.PredictJob(model.config, editing.Source(clip), editing.EditOptions(), frames=20,
                             cond_frames=2, label=label)
    done, progress = progress_counter()
    result = job.run(model, tmp_path / "out", OPTIONS, progress)
    assert result == {"output": str(tmp_path / "out"), "frames": 50, "width": 56, "height": 44, "fps": "24",
                      "duration": round(50 / 24, 4), "new_frames": 20, "windows": 2, "model_calls": 2,
                      "notes": []}
    first, second = recorder.calls
    for call in recorder.calls:
        assert call["task"] == task and call["cond_frames"] == 2 and call["options"] is OPTIONS
        assert call["labels"] is None if label is None else call["labels"].tolist() == [label]
        assert call["generator"] is first["generator"] and call["generator"].initial_seed() == 5
        assert call["video"].shape == (1, 3, 16, 32, 32)
    assert sum(done) == 2 * 3  # every step of both windows, one window at a time
    # Window 1: the last two input frames (76, 78), the last repeated; the model answers
    # 76 + 4t. Window 2 starts from the last two frames window 1 made (t = 14, 15).
    grey = (first["video"][0, 0, :, 16, 28] * 255).round().int().tolist()
    assert grey == [76] + [78] * 15
    grey = (second["video"][0, 0, :, 16, 28] * 255).round().int().tolist()
    assert grey == [76 + 56, 76 + 60] + [76 + 60] * 14
    out = levels(read_frames(tmp_path / "out"))
    assert out == list(range(20, 80, 2)) + [76 + 4 * t for t in range(2, 16)] + [132 + 4 * t for t in range(2, 8)]


def test_raw_prediction_is_the_new_frames_at_the_model_size(model, clip, recorder, tmp_path):
    job = editing.PredictJob(model.config, editing.Source(clip), editing.EditOptions(composite=False), frames=3)
    result = job.run(model, tmp_path / "raw", OPTIONS)
    raw = read_frames(tmp_path / "raw")
    assert raw.shape == (3, 32, 32, 3) and (result["width"], result["height"]) == (32, 32)
    # the letterbox rows (model rows 0-3 and 29-31) are black, the rest the model's frames 1-3
    assert levels(raw[:, 4:28]) == [78 + 4, 78 + 8, 78 + 12]


def test_prediction_preview_marks_the_new_frames(model, clip, recorder, tmp_path):
    job = editing.PredictJob(model.config, editing.Source(clip, start=1), editing.EditOptions(preview=True),
                             frames=2)
    result = job.run(model, tmp_path / "out.mp4", OPTIONS)
    preview = read_frames(Path(result["preview"])).astype(int)
    assert preview.shape == (8, 44, 3 * 56, 3)  # input | mask | output, at the input's size
    inputs, mask, output = preview[..., :56, :], preview[..., 56:112, :], preview[..., 112:, :]
    # frames 24-29 of the input (levels 68-78), then two new ones (78 + 4, 78 + 8) on a blank input panel
    expected_input = [68, 70, 72, 74, 76, 78, 0, 0]
    expected_mask = [0] * 6 + [255] * 2
    expected_output = [68, 70, 72, 74, 76, 78, 82, 86]
    for panel, expected in ((inputs, expected_input), (mask, expected_mask), (output, expected_output)):
        np.testing.assert_allclose(panel.mean(axis=(1, 2, 3)), expected, atol=3)


# ---------------------------------------------------------------------------- interpolation


def test_interpolation_asks_the_model_pair_by_pair_in_batches(model, clip, recorder, tmp_path):
    # 24 -> 40 fps over input frames 0-3 (levels 20-26): output frame k at 3k/5 input frames,
    # 0, 0.6, 1.2, 1.8, 2.4, 3: inputs 0 and 3 are kept, the others are model frames
    # round(15 * 0.6) = 9, round(15 * 0.2) = 3, 12 and 6 of the pairs (0, 1), (1, 2), (1, 2), (2, 3).
    source = editing.Source(clip, end=4 / 24)
    job = editing.InterpolateJob(model.config, source, editing.EditOptions(batch=2), fps="40")
    done, progress = progress_counter()
    result = job.run(model, tmp_path / "out", OPTIONS, progress)
    assert result == {"output": str(tmp_path / "out"), "frames": 6, "width": 56, "height": 44, "fps": "40",
                      "duration": 0.15, "factor": "5/3", "windows": 3, "model_calls": 2, "notes": []}
    assert [len(call["video"]) for call in recorder.calls] == [2, 1]
    assert all(call["task"] == "frame_interpolation" and call["options"] is OPTIONS for call in recorder.calls)
    assert all(call["generator"] is recorder.calls[0]["generator"] for call in recorder.calls)
    assert recorder.calls[0]["generator"].initial_seed() == 5
    assert sum(done) == 3 * 3
    windows = torch.cat([call["video"] for call in recorder.calls])[:, 0, :, 16, 28].mul(255).round().int()
    assert windows.tolist() == [[a] * 15 + [b] for a, b in ((20, 22), (22, 24), (24, 26))]
    out = levels(read_frames(tmp_path / "out"))
    assert out == [20, 20 + 4 * 9, 22 + 4 * 3, 22 + 4 * 12, 24 + 4 * 6, 26]


def test_raw_interpolation_is_every_output_frame_from_its_window(model, clip, recorder, tmp_path):
    source = editing.Source(clip, end=3 / 24)  # levels 20, 22, 24
    job = editing.InterpolateJob(model.config, source, editing.EditOptions(composite=False), factor=2)
    result = job.run(model, tmp_path / "raw", OPTIONS)
    raw = read_frames(tmp_path / "raw")
    assert raw.shape == (5, 32, 32, 3) and result["windows"] == 2
    # each frame is its window's: inputs at model frames 0 and 15, the middle at round(7.5) = 8
    assert levels(raw[:, 4:28]) == [20, 20 + 32, 22, 22 + 32, 22 + 60]


def test_interpolation_of_two_frames(model, clip, recorder, tmp_path):
    job = editing.InterpolateJob(model.config, editing.Source(clip, end=2 / 24), editing.EditOptions(), factor=3)
    job.run(model, tmp_path / "out", OPTIONS)
    assert levels(read_frames(tmp_path / "out")) == [20, 20 + 4 * 5, 20 + 4 * 10, 22]


def test_interpolation_preview_marks_the_made_up_frames(model, clip, recorder, tmp_path):
    source = editing.Source(clip, end=2 / 24)
    job = editing.InterpolateJob(model.config, source, editing.EditOptions(preview=True), factor=2)
    result = job.run(model, tmp_path / "out.mp4", OPTIONS)
    preview = read_frames(Path(result["preview"])).astype(int)
    assert preview.shape == (3, 44, 3 * 56, 3)
    inputs, mask, output = preview[..., :56, :], preview[..., 56:112, :], preview[..., 112:, :]
    # the made-up frame shows the first frame of its pair as input, and a white mask
    for panel, expected in ((inputs, [20, 20, 22]), (mask, [0, 255, 0]), (output, [20, 20 + 32, 22])):
        np.testing.assert_allclose(panel.mean(axis=(1, 2, 3)), expected, atol=3)


# ---------------------------------------------------------------------------- sources held as tensors


def test_a_tensor_source_reads_like_a_file(clip):
    video = torch.rand(3, 10, 20, 30)
    video[0, 3, 0, 0], video[1, 3, 0, 0] = 1.5, -0.2  # clipped
    source = editing.Source.from_tensor(video, 12.5, start=0.16, end=0.64)
    assert source.info.to_dict() == {
        "path": "<tensor>", "container": "tensor", "codec": "float32", "width": 30, "height": 20, "num_frames": 10,
        "frames_counted": True, "fps": "25/2", "fps_float": 12.5, "duration": 0.8, "rotation": 0, "pix_fmt": "rgb",
        "bit_depth": 8, "variable_frame_rate": False, "has_audio": False, "audio_codec": None}
    assert source.describe() == {"path": "<tensor>", "width": 30, "height": 20, "frames": 6, "fps": "25/2",
                                 "first_frame": 2, "rotation": 0, "variable_frame_rate": False}
    assert source.audio_from is None and source.notes == [] and source.audio_start == 0.16
    frames = np.stack(list(source.frames()))
    expected = video[:, 2:8].clamp(0, 1).mul(255).round().byte().permute(1, 2, 3, 0).numpy()
    np.testing.assert_array_equal(frames, expected)
    assert frames[1, 0, 0, :2].tolist() == [255, 0]
    for bad in (torch.rand(10, 20, 30), torch.rand(4, 10, 20, 30), torch.rand(3, 0, 20, 30)):
        with pytest.raises(UsageError, match=r"\[3, T, H, W\]"):
            editing.Source.from_tensor(bad, 25)


@pytest.mark.parametrize("start, end, first, frames", [
    (0.0, None, 0, 25),  # a start of 0 is allowed
    (0.96, None, 24, 1),  # the last frame alone
    (0.4, 0.41, 10, 1),  # an end within half a frame of the start still keeps one frame
    (None, 0.5, 0, 12),  # round(0.5 * 25) = 12, half to even
])
def test_a_segment_of_a_source(start, end, first, frames):
    source = editing.Source.from_tensor(torch.rand(3, 25, 2, 2), 25, start=start, end=end)
    assert (source.first, source.num_frames) == (first, frames) and len(list(source.frames())) == frames


@pytest.mark.parametrize("start, end, message", [
    (-0.5, None, "--start"), (float("inf"), None, "--start"), (float("nan"), None, "--start"),
    (1.0, None, "past the end"),  # 1 s into a 1 s clip: no frame left
    (0.4, 0.4, "--end"), (0.4, 0.2, "--end"), (None, 0.0, "--end"), (None, float("inf"), "--end"),
])
def test_a_segment_outside_the_source_is_refused(start, end, message):
    with pytest.raises(UsageError, match=message):
        editing.Source.from_tensor(torch.rand(3, 25, 2, 2), 25, start=start, end=end)


def test_a_file_source_describes_itself(clip):
    assert editing.Source(clip, start=0.5, end=1).describe() == source_description(clip, frames=12, first=12)


# ---------------------------------------------------------------------------- inpainting and outpainting runs

GOLDEN = Path(__file__).parent / "fixtures" / "job-outputs.npz"


def smooth_frames(count=30, height=44, width=56) -> np.ndarray:
    """Gradients that drift frame by frame: every pixel differs from its neighbours and from
    the model's answer, and PNG-compresses well (the snapshot stays small)."""
    y, x = np.mgrid[0:height, 0:width]
    frames = np.empty((count, height, width, 3), np.uint8)
    for t in range(count):
        frames[t, ..., 0] = 40 + 3 * x + t
        frames[t, ..., 1] = 30 + 4 * y
        frames[t, ..., 2] = 200 - 2 * x - 2 * y + 2 * t
    return frames


@pytest.fixture(scope="module")
def smooth_clip(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("jobs") / "smooth"
    vio.write_video(folder, iter(smooth_frames()), 24)
    return folder


def inpaint_job(config, clip):
    """A keyframed hole in frames 0-8 only (moving, dilated): the first window is edited,
    the other two have nothing to edit and are not run."""
    return editing.InpaintJob(config, editing.Source(clip), editing.EditOptions(batch=2, preview=True),
                              "10,8,16,12@0-5;30,16,16,12@8", dilate=1)


def outpaint_job(config, clip):
    """The input slides across a canvas 2 x 20 px wider (OPD), in windows of 12 frames."""
    return editing.OutpaintJob(config, editing.Source(clip), editing.EditOptions(window=12, overlap=3, batch=2),
                               "dynamic", "20")


def central_inpaint_job(config, clip):
    """The paper's central box, away from every edge of the frame, so that the whole
    feathered band is pasted (none of it falls off the frame)."""
    return editing.InpaintJob(config, editing.Source(clip), editing.EditOptions(), "box")


def moving_inpaint_job(config, clip):
    """A box moving across the whole clip: overlapping windows paste different regions, which
    cross-fade."""
    return editing.InpaintJob(config, editing.Source(clip), editing.EditOptions(batch=3),
                              "6,6,14,12@0;36,24,14,12@29")


def raw_inpaint_job(config, clip):
    """The model's own frames at its size: each frame from the window that weighs most."""
    return editing.InpaintJob(config, editing.Source(clip), editing.EditOptions(composite=False, window=12, overlap=6),
                              "box")


JOBS = {"inpaint": inpaint_job, "outpaint": outpaint_job, "central_inpaint": central_inpaint_job,
        "moving_inpaint": moving_inpaint_job, "raw_inpaint": raw_inpaint_job}


def run_job(name, model, clip, folder, recorder, options=OPTIONS, progress=None) -> tuple[np.ndarray, dict]:
    recorder.texture = True
    job = JOBS[name](model.config, clip)
    result = job.run(model, folder / f"{name}", options, progress)
    return read_frames(folder / f"{name}"), result


def test_inpainting_asks_the_model_only_where_there_is_a_hole(model, smooth_clip, recorder, tmp_path):
    done, progress = progress_counter()
    frames, result = run_job("inpaint", model, smooth_clip, tmp_path, recorder, progress=progress)
    [call] = recorder.calls  # windows 12-27 and 24-29 hold no hole: no model call for them
    assert call["task"] == "inpainting_dv" and call["options"] is OPTIONS and call["padding"] == "constant"
    assert call["composite"] is False  # the job pastes the known pixels back itself, at the input's resolution
    assert call["generator"].initial_seed() == 5 and call["video"].shape == (1, 3, 16, 32, 32)
    assert sum(done) == 3 * 3  # every window's steps, run or not
    # The view is 56 px around the holes, 10 px above the frame: model rows 0-5.7 and 31.4-32
    # lie outside it, unknown in whole cells (4 px) as the hole is: rows 0-7 and 28-31, and in
    # frame 0 the dilated box 9-27 x 7-21, model rows 9.7-17.7 and columns 5.1-15.4.
    keep = call["keep"][0, 0]
    assert keep.shape == (16, 32, 32) and keep.dtype == torch.bool
    rows, cols = torch.arange(32)[:, None], torch.arange(32)[None, :]
    outside = (rows < 8) | (rows >= 28)
    assert torch.equal(~keep[12], outside.expand(32, 32)) and torch.equal(keep[12:], keep[12].expand(4, 32, 32))
    assert torch.equal(~keep[0], outside | ((rows >= 8) & (rows < 20) & (cols >= 4) & (cols < 16)))
    assert result["windows"] == 3 and result["model_calls"] == 1 and result["frames"] == 30
    assert result["mask"]["kind"] == "keyframes" and [w["frames"] for w in result["mask"]["windows"]] == [
        [0, 15], [12, 27], [24, 29]]
    assert [w["hole_cells"] for w in result["mask"]["windows"]][1:] == [0, 0]
    # the hole's cells, snapped: x 7-49 and y 4-32 in the frame, latent frames 0-2 (frames 0-11);
    # generated: those 35 and the 3 x 8 cells of the letterbox rows in each of 4 latent frames
    assert result["mask"]["windows"][0] == {
        "frames": [0, 15], "view": {"x": 0.0, "y": -10.0, "width": 56, "height": 56, "scale": 1.75},
        "hole_cells": 35, "generated_cells": 35 + 96, "of_cells": 256, "hole_box": [7, 4, 42, 28],
        "hole_frames": [0, 11]}
    assert result["mask"]["windows"][2] == {
        "frames": [24, 29], "view": {"x": 0.0, "y": -6.0, "width": 56, "height": 56, "scale": 1.75},
        "hole_cells": 0, "generated_cells": 64, "of_cells": 256}
    source = smooth_frames()
    assert np.array_equal(frames[12:], source[12:])  # frames without a hole are the input's bytes
    changed = (frames[:9] != source[:9]).any(-1)
    assert changed[0, 8:21, 9:27].mean() > 0.6 and changed[8, 16:29, 30:47].mean() > 0.6  # the dilated holes
    assert not changed[:, 40:].any() and not changed[0, :, 40:].any()  # far from them: untouched
    preview = read_frames(Path(result["preview"]))
    assert preview.shape == (30, 44, 3 * 56, 3)
    assert preview[0, 8:20, 56 + 12:56 + 24].mean() > 200 and preview[20, :, 56:112].max() < 30  # the mask panel


def test_outpainting_places_the_input_on_the_canvas(model, smooth_clip, recorder, tmp_path):
    done, progress = progress_counter()
    frames, result = run_job("outpaint", model, smooth_clip, tmp_path, recorder, progress=progress)
    assert frames.shape == (30, 44, 96, 3)
    assert result["margins"] == {"left": 20, "top": 0, "right": 20, "bottom": 0}
    view = {"x": 0.0, "y": -26.0, "width": 96, "height": 96, "scale": 3.0}  # the 96 x 44 canvas, letterboxed
    assert result["views"] == [{"frames": frames, "view": view, "generated_cells": 228, "of_cells": 256}
                               for frames in ([0, 11], [9, 20], [18, 29])]
    assert result["windows"] == 3 and result["model_calls"] == 2 and sum(done) == 3 * 3
    assert [len(call["video"]) for call in recorder.calls] == [2, 1]
    assert all(call["task"] == "outpainting_dv" and call["padding"] == "constant" and call["composite"] is False
               and call["options"] is OPTIONS and call["generator"] is recorder.calls[0]["generator"]
               for call in recorder.calls)
    source = smooth_frames()
    # OPD: frame i sits round(i * 40 / 29) px from the left, its bytes as they are
    for i in (0, 7, 15, 29):
        x = round(i * 40 / 29)
        assert np.array_equal(frames[i, :, x:x + 56], source[i]), i
    # the margins come from the model: nowhere equal to the input's edge replicated
    assert (frames[29, :, :20] != source[29, :, :1]).any(-1).all()


@pytest.mark.parametrize("name", sorted(JOBS))
def test_job_output_matches_its_snapshot(model, smooth_clip, recorder, tmp_path, name):
    """Every pixel of the composite (seamless shift, feathered alpha, cross-fades of
    overlapping windows, resampling into the view) against a snapshot of this code's
    output, checked by the tests above and looked at; within one grey level for CPUs that
    round differently. Remake with `python tests/fixtures/make_job_outputs.py`."""
    frames, _ = run_job(name, model, smooth_clip, tmp_path, recorder)
    expected = np.load(GOLDEN)[name]
    assert frames.shape == expected.shape
    error = np.abs(frames.astype(int) - expected.astype(int))
    assert error.max() <= 1, f"{(error > 1).sum()} pixels differ by up to {error.max()} levels"


def test_outpaint_directions(model, clip):
    expected = {  # 56 x 44 input, default --amount 50%: 28 px per grown side left/right, 22 up/down
        "all": ("outpainting_c", "edge", (28, 22, 28, 22)), "horizontal": ("outpainting_v", "edge", (28, 0, 28, 0)),
        "left": ("outpainting_v", "edge", (28, 0, 0, 0)), "right": ("outpainting_v", "edge", (0, 0, 28, 0)),
        "vertical": ("outpainting_h", "edge", (0, 22, 0, 22)), "up": ("outpainting_h", "edge", (0, 22, 0, 0)),
        "down": ("outpainting_h", "edge", (0, 0, 0, 22)), "dynamic": ("outpainting_dv", "constant", (28, 0, 28, 0)),
    }
    for direction, (task, padding, (left, top, right, bottom)) in expected.items():
        job = editing.OutpaintJob(model.config, editing.Source(clip), editing.EditOptions(), direction)
        assert (job.task, job.padding, job.amount) == (task, padding, "50%"), direction
        assert job.margins == {"left": left, "top": top, "right": right, "bottom": bottom}, direction
        assert job.canvas == (44 + top + bottom, 56 + left + right), direction


def test_outpaint_base_panel_and_offsets(model, clip):
    frame = np.arange(44 * 56 * 3, dtype=np.int64).reshape(44, 56, 3).astype(np.uint8)
    job = editing.OutpaintJob(model.config, editing.Source(clip), editing.EditOptions(), "all", "10")
    assert job.source_box(3) == (10, 10, 66, 54)
    np.testing.assert_array_equal(job.base(3, frame), np.pad(frame, ((10, 10), (10, 10), (0, 0)), mode="edge"))
    panel = job.input_panel(3, frame)
    assert panel.dtype == np.uint8 and panel.shape == (64, 76, 3)
    np.testing.assert_array_equal(panel[10:54, 10:66], frame)
    assert (panel[:10] == 32).all() and (panel[:, 66:] == 32).all()
    dynamic = editing.OutpaintJob(model.config, editing.Source(clip, end=2 / 24), editing.EditOptions(), "dynamic")
    assert [dynamic.offset(i) for i in (0, 1)] == [(0, 0), (56, 0)]  # a two-frame clip crosses the whole canvas
    np.testing.assert_array_equal(dynamic.base(1, frame), np.pad(frame, ((0, 0), (56, 0), (0, 0)), mode="edge"))
    single = editing.OutpaintJob(model.config, editing.Source(clip, end=1 / 24), editing.EditOptions(), "dynamic")
    assert single.offset(0) == (0, 0)


@pytest.mark.parametrize("amount, size, pixels", [
    ("50%", 56, 28), ("25%", 44, 11), ("100%", 56, 56), ("2%", 56, 1), ("1", 56, 1), ("112", 56, 112),
    (" 7 ", 20, 7), (None, 44, 22)])
def test_parse_amount(amount, size, pixels):
    assert editing.parse_amount(amount, size) == pixels


@pytest.mark.parametrize("amount", ["0.5", "1%", "113", "201%", "12X", "nan", "inf", "-3", "wide"])
def test_parse_amount_refuses(amount):
    with pytest.raises(UsageError, match="--amount"):
        editing.parse_amount(amount, 56)


def test_memory_plan_inputs(model, clip):
    """What the memory estimate of a plan is built from: source frames held at once."""
    source = editing.Source(clip)
    clip_job = editing.InpaintJob(model.config, source, editing.EditOptions(window=12, overlap=3))
    assert [clip_job.held_frames(b) for b in (1, 3)] == [24, 42]  # window + (b - 1) stride + window
    assert editing.PredictJob(model.config, source, editing.EditOptions(), cond_frames=3).held_frames(4) == 4
    assert editing.InterpolateJob(model.config, source, editing.EditOptions()).held_frames(3) == 8
    assert clip_job.total_steps(DecodeOptions(steps=5)) == 3 * 5


def test_raw_interpolation_runs_every_pair_through_the_model(model, clip):
    job = editing.InterpolateJob(model.config, editing.Source(clip), editing.EditOptions(), factor=2)
    raw = editing.InterpolateJob(model.config, editing.Source(clip), editing.EditOptions(composite=False), factor=2)
    only_inputs = [("input", 3), ("input", 4)]
    assert not job.needs_model(only_inputs) and raw.needs_model(only_inputs)
    assert job.needs_model([("input", 3), ("model", 8)])


@pytest.mark.parametrize("kwargs", [dict(fps="24"), dict(fps="12"), dict(factor=16), dict(factor=1)])
def test_interpolation_refuses_rates_it_cannot_make(model, clip, kwargs):
    with pytest.raises(UsageError):
        editing.InterpolateJob(model.config, editing.Source(clip), editing.EditOptions(), **kwargs)


def test_interpolation_up_to_the_models_limit(model, clip):
    job = editing.InterpolateJob(model.config, editing.Source(clip, end=2 / 24), editing.EditOptions(), factor=15)
    assert job.plan()["output"]["frames"] == 16 and job.pair_outputs(0)[-1] == ("model", 14)
    assert job.pair_outputs(0)[0] == ("input", 0)


def test_side_by_side_panels():
    a = np.full((4, 6, 3), 10, np.uint8)
    mask = np.zeros((4, 6), np.uint8)
    mask[1:3] = 255
    out = editing._side_by_side([a, mask, a])
    assert out.shape == (4, 18, 3) and out.dtype == np.uint8
    np.testing.assert_array_equal(out[:, :6], a)  # at most PREVIEW_HEIGHT rows: kept as they are
    np.testing.assert_array_equal(out[:, 6:12], np.repeat(mask[:, :, None], 3, axis=2))
    assert editing._side_by_side([np.zeros((1, 1, 3), np.uint8)] * 2).shape == (2, 4, 3)  # even sizes, 2 at least
    # taller panels are scaled down to PREVIEW_HEIGHT rows, antialiased: a fine stripe pattern turns grey
    tall = np.zeros((3 * editing.PREVIEW_HEIGHT, 30, 3), np.uint8)
    tall[::3] = 255
    out = editing._side_by_side([tall, tall])
    assert out.shape == (editing.PREVIEW_HEIGHT, 20, 3)
    assert 40 < out.min() and out.max() < 140  # (sampled without the filter: 0 and 255)


def test_a_single_frame_is_edited(model, smooth_clip, recorder, tmp_path):
    job = editing.InpaintJob(model.config, editing.Source(smooth_clip, end=1 / 24), editing.EditOptions(), "box")
    result = job.run(model, tmp_path / "one", OPTIONS)
    assert result["frames"] == 1 and len(recorder.calls) == 1 and read_frames(tmp_path / "one").shape == (1, 44, 56, 3)


def test_constant_rate_resampling_like_ffmpegs_fps_filter():
    # 4 fps: output frame k shows the last input frame due by (k + 1/2) / 4 s; a frame exactly
    # at that time is not yet due (b at 0.125 s replaces a for frame 0), and the last frame
    # holds to the end, never past `total`
    timed = [(0.0, "a"), (0.125, "b"), (0.5, "c")]
    assert list(editing._constant_rate(iter(timed), Fraction(4), 4)) == ["b", "b", "c", "c"]
    many = [(i / 4, i) for i in range(10)]
    assert list(editing._constant_rate(iter(many), Fraction(4), 5)) == [0, 1, 2, 3, 4]


def test_tensor_sources_of_one_frame_or_one_pixel():
    assert editing.Source.from_tensor(torch.rand(3, 1, 1, 1), 25).num_frames == 1


def test_plans_that_depend_on_the_window_and_the_batch(model, smooth_clip, clip):
    keyframed = inpaint_job(model.config, smooth_clip)  # a hole in the first window only
    assert keyframed.plan()["generated_cells_first_window"] == 35 + 96
    # 85 / 32 = 2.65625 source px per model px: cells of 10.625 px, reported to 2 decimals
    wide = editing.OutpaintJob(model.config, editing.Source(clip), editing.EditOptions(), "right", "29")
    assert wide.plan()["cell_source_px"] == {"frames": 4, "height": 10.62, "width": 10.62}
    pairs = editing.InterpolateJob(model.config, editing.Source(clip), editing.EditOptions(), factor=2).plan()
    assert pairs["model_calls"] == pairs["windows"] == 29  # no --batch: one pair per call


def test_outpainting_needs_a_token_cell_of_the_input(model, clip):
    # 200 % on every side: the input is a fifth of the canvas, 6.4 model px, no whole 4 px cell
    with pytest.raises(UsageError, match="less than one token cell"):
        editing.OutpaintJob(model.config, editing.Source(clip), editing.EditOptions(), "all", "200%")
    editing.OutpaintJob(model.config, editing.Source(clip), editing.EditOptions(), "all", "100%")


def test_dynamic_outpainting_input_panel_follows_the_input(model, clip):
    frame = np.full((44, 56, 3), 200, np.uint8)
    job = editing.OutpaintJob(model.config, editing.Source(clip), editing.EditOptions(), "dynamic")
    panel = job.input_panel(29, frame)  # the last frame sits at the right edge of the 112 px canvas
    assert (panel[:, 56:] == 200).all() and (panel[:, :56] == 32).all()


@pytest.mark.parametrize("kwargs", [dict(cond_frames=16), dict(cond_frames=0), dict(frames=0),
                                    dict(frames=editing.MAX_NEW_FRAMES + 1)])
def test_prediction_refuses(model, clip, kwargs):
    with pytest.raises(UsageError):
        editing.PredictJob(model.config, editing.Source(clip), editing.EditOptions(), **kwargs)


def test_prediction_bounds_are_accepted(model, clip, recorder, tmp_path):
    source = editing.Source(clip, end=3 / 24)  # exactly --cond-frames frames
    job = editing.PredictJob(model.config, source, editing.EditOptions(), frames=1, cond_frames=3)
    assert job.run(model, tmp_path / "one", OPTIONS)["frames"] == 4
    assert editing.PredictJob(model.config, editing.Source(clip), editing.EditOptions(), frames=editing.MAX_NEW_FRAMES,
                              cond_frames=15).model_windows == editing.MAX_NEW_FRAMES


@pytest.mark.parametrize("frames, calls", [(14, 1), (15, 2), (28, 2)])
def test_prediction_runs_as_many_windows_as_the_new_frames_need(model, clip, recorder, tmp_path, frames, calls):
    job = editing.PredictJob(model.config, editing.Source(clip), editing.EditOptions(), frames=frames, cond_frames=2)
    result = job.run(model, tmp_path / "out", OPTIONS)
    assert (len(recorder.calls), result["model_calls"], result["frames"]) == (calls, calls, 30 + frames)


def test_interpolation_keeps_an_input_frame_that_rounds_onto_the_next_one(model):
    # 30 -> 31 fps: output frame 1 is at 30/31 = 0.968 input frames, model frame 14.5 of pair 0,
    # which rounds to 15: the next input frame itself, so pair 0 needs no model window
    source = editing.Source.from_tensor(torch.rand(3, 4, 8, 8), 30)
    job = editing.InterpolateJob(model.config, source, editing.EditOptions(), fps="31")
    assert job.pair_outputs(0) == [("input", 0), ("input", 1)]
    assert job.pair_outputs(1) == [("model", 14)] and job.model_windows == 2


@pytest.mark.parametrize("edit, expected", [
    (dict(window=2), (2, 1)), (dict(window=128), (128, 4)), (dict(window=6), (6, 3)), (dict(window=7), (7, 3)),
    (dict(window=16, overlap=0), (16, 0)), (dict(window=16, overlap=8), (16, 8)),
])
def test_clip_job_windows_and_overlaps(model, clip, edit, expected):
    # default overlap: one latent frame (4 frames), at most half the window
    job = editing.InpaintJob(model.config, editing.Source(clip), editing.EditOptions(**edit))
    assert (job.window, job.overlap) == expected and type(job.overlap) is int


@pytest.mark.parametrize("edit", [dict(window=1), dict(window=129), dict(window=16, overlap=9),
                                  dict(window=16, overlap=-1)])
def test_clip_job_refuses_windows_and_overlaps(model, clip, edit):
    with pytest.raises(UsageError):
        editing.InpaintJob(model.config, editing.Source(clip), editing.EditOptions(**edit))


def test_out_of_memory_halves_the_batch_once(model, smooth_clip, monkeypatch):
    calls = []

    def tight(self, task, video, **kwargs):  # fits 2 windows at a time
        calls.append(len(video))
        if len(video) > 2:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return video

    monkeypatch.setattr(Magvit, "run_task", tight)
    job = editing.InpaintJob(model.config, editing.Source(smooth_clip), editing.EditOptions(batch=4, window=8,
                                                                                            overlap=2), "box")
    result = job.run(model, None, OPTIONS)
    assert calls == [4, 2, 2, 1] and result["model_calls"] == 4  # 5 windows: 4 fail, then 2 + 2, then the last
    assert result["notes"] == ["out of memory with 4 windows per call: retried with 2"]
    calls.clear()
    monkeypatch.setattr(Magvit, "run_task", lambda self, task, video, **kwargs: calls.append(len(video)) or (
        _ for _ in ()).throw(torch.OutOfMemoryError("oom")))
    with pytest.raises(OutOfMemoryError, match="out of memory on cpu with 1 window"):
        editing.InpaintJob(model.config, editing.Source(smooth_clip), editing.EditOptions(batch=1), "box").run(
            model, None, OPTIONS)
    assert calls == [1]  # one window per call fails at once: nothing to halve


def test_out_of_memory_after_the_retry_fails_cleanly(model, smooth_clip, monkeypatch, tmp_path):
    """Halving happens once: when a later call at the halved batch runs out of memory too,
    the run stops with one clear error instead of halving again."""
    calls = []

    def shrinking(self, task, video, **kwargs):
        calls.append(len(video))
        if len(video) > (2 if len(calls) <= 3 else 1):
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return video

    monkeypatch.setattr(Magvit, "run_task", shrinking)
    job = editing.InpaintJob(model.config, editing.Source(smooth_clip), editing.EditOptions(batch=4, window=4,
                                                                                            overlap=2, preview=True), "box")
    with pytest.raises(OutOfMemoryError, match="with 2 window"):
        job.run(model, tmp_path / "out.mp4", OPTIONS)
    assert calls == [4, 2, 2, 2]
    assert list(tmp_path.iterdir()) == []  # frames were written before the failure; neither file is kept


def test_video_warnings_become_notes_once_and_other_warnings_do_not(model, recorder, tmp_path, monkeypatch):
    """An odd-sized output is padded with a VideoWarning; a VideoWarning raised twice is one
    note; a warning of another kind is not a note; warnings silenced by the caller still are."""
    import warnings

    def noisy(self, *args, **kwargs):
        for message in ("twice", "twice"):
            warnings.warn(message, vio.VideoWarning)
        warnings.warn("not about the video", UserWarning)
        return recorder(self, *args, **kwargs)

    monkeypatch.setattr(Magvit, "run_task", noisy)
    source = editing.Source.from_tensor(torch.rand(3, 6, 45, 57), 24)
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("ignore")  # a caller that silences warnings still gets the notes
        result = editing.InpaintJob(model.config, source, editing.EditOptions(), "box").run(
            model, tmp_path / "odd.mp4", OPTIONS)
    assert result["notes"][0] == "twice" and len(result["notes"]) == 2
    assert "padded" in result["notes"][1] and "not about the video" not in result["notes"]



# ---------------------------------------------------------------------------- compositing and layouts, written out

BUNDLED = editing.ModelConfig.from_dict(json.loads((Path(magvit_cli.__file__).parents[1] / "weights" / "config.json")
                                                   .read_text()))  # cells of 4 frames x 8 x 8 pixels


def test_compose_cross_fades_layers_of_different_regions(model):
    """Two layers over a grey (100) frame, written out: A (black, alpha 1, weight 0.25) on
    x 1-4, y 2-5; B (white, alpha 0.25, weight 0.75) on x 3-7, y 3-6. Where only A lies the
    pixel is black; only B: lerp(100, 255, 0.25) = 138.75 -> 139; both: 3/7 white (the mean
    weighted by weight and alpha, 0.1875 / 0.4375) under the larger alpha (1) -> 109; elsewhere,
    in their bounding box or not, the frame's own bytes."""
    job = editing.InpaintJob(model.config, editing.Source.from_tensor(torch.rand(3, 4, 10, 12), 24),
                             editing.EditOptions(), "box")
    frame = np.full((10, 12, 3), 100, np.uint8)
    a = editing.Layer((1, 2, 5, 6), torch.zeros(3, 4, 4), torch.ones(4, 4), 0.25)
    b = editing.Layer((3, 3, 8, 7), torch.ones(3, 4, 5), torch.full((4, 5), 0.25), 0.75)
    out, alpha = job.compose(0, frame, [a, b], with_alpha=True)
    expected = np.full((10, 12), 100)
    expected[3:7, 3:8] = 139
    expected[2:6, 1:5] = 0
    expected[3:6, 3:5] = 109
    assert (out == expected[..., None]).all() and out.dtype == np.uint8
    expected_alpha = torch.zeros(10, 12)
    expected_alpha[3:7, 3:8] = 0.25
    expected_alpha[2:6, 1:5] = 1
    assert torch.equal(alpha, expected_alpha)
    assert job.compose(0, frame, [a, b], with_alpha=False)[1] is None


def test_windows_summaries_and_plan_on_the_bundled_layout():
    """Cells of 4 x 8 x 8 (not cubes, unlike the tiny model's): the default overlap is one
    latent frame (4 frames); a hole at the left edge and the bottom of frames 6-9 lies in latent
    frames 1-2 of the first window, frames 4-11 of the source; its box, snapped to the 8 px cells
    of the view around it (64x64 at scale 1: at least the model's size), stops at the frame's
    bottom (50, not the cell's 56); the plan gives the first window's cells in source pixels."""
    source = editing.Source.from_tensor(torch.rand(3, 20, 50, 80), 25)
    job = editing.InpaintJob(BUNDLED, source, editing.EditOptions(), "0,44,10,6@6-9")
    assert job.settings()["overlap"] == 4 and job.starts(20) == [(0, 16), (12, 8)]
    first, second = job.snapped_regions()
    assert first["hole_frames"] == [4, 11] and first["hole_box"] == [0, 40, 16, 10]
    assert "hole_box" not in second
    plan = job.plan()
    assert plan["cell_source_px"] == {"frames": 4, "height": 8.0, "width": 8.0}
    assert (plan["window"], plan["overlap"]) == (16, 4)
    top = editing.InpaintJob(BUNDLED, source, editing.EditOptions(), "70,0,10,6").snapped_regions()[0]
    assert top["hole_box"][:2] == [64, 0] and top["hole_frames"] == [0, 15]  # at the top edge, from frame 0
    short = editing.InpaintJob(BUNDLED, editing.Source.from_tensor(torch.rand(3, 10, 50, 80), 25),
                               editing.EditOptions(), "box")
    assert short.starts(10) == [(0, 10)] and short.plan()["generated_cells_first_window"] > 0


def test_the_view_of_a_window_holds_every_hole_it_has(model):
    """A hole that only frame 1 has still widens the view (the union over the window's holes)."""
    job = editing.InpaintJob(model.config, editing.Source.from_tensor(torch.rand(3, 4, 64, 64), 24),
                             editing.EditOptions(), "box")
    a, b = torch.zeros(64, 64, dtype=torch.bool), torch.zeros(64, 64, dtype=torch.bool)
    a[2:6, 2:6] = True
    b[50:60, 40:60] = True
    assert job.view([a, b, a, None]) == job.view([a | b])
    assert job.view([a, b, a, None]) != job.view([a])


def test_outpainting_band_is_one_cell_in_canvas_pixels_and_at_least_one(model):
    big = editing.OutpaintJob(BUNDLED, editing.Source.from_tensor(torch.rand(3, 4, 40, 40), 24),
                              editing.EditOptions(), "all")  # 80x80 canvas at 64: scale 1.25
    assert big.band == 10.0
    small = editing.OutpaintJob(model.config, editing.Source.from_tensor(torch.rand(3, 4, 6, 6), 24),
                                editing.EditOptions(), "all")  # 12x12 canvas at 32: 4 * 0.375 = 1.5 px
    assert small.band == 1.5


def test_a_source_that_yields_no_frame_is_an_input_error(model, recorder, monkeypatch):
    source = editing.Source.from_tensor(torch.rand(3, 4, 32, 32), 24)
    monkeypatch.setattr(source, "frames", lambda: iter(()))
    with pytest.raises(editing.InputError, match="no decodable video frames"):
        editing.InpaintJob(model.config, source, editing.EditOptions(), "box").run(model, None, OPTIONS)


def test_windows_run_as_soon_as_their_frames_are_read(model, recorder, clip, monkeypatch):
    """Streaming: with windows of 8 frames every 6 and one window per call (the default batch),
    each model call comes as soon as its window's last frame is read (8, 14, 20, 26), and the
    short last window (24-29) at the end."""
    source = editing.Source(clip)
    read = []
    frames = source.frames
    monkeypatch.setattr(source, "frames", lambda: (read.append(i) or f for i, f in enumerate(frames())))
    seen = []
    monkeypatch.setattr(Magvit, "run_task", lambda self, *a, **k: seen.append(len(read)) or recorder(self, *a, **k))
    result = editing.InpaintJob(model.config, source, editing.EditOptions(window=8, overlap=2), "box").run(
        model, None, OPTIONS)
    assert seen == [8, 14, 20, 26, 30] and result["model_calls"] == result["windows"] == 5


def test_interpolation_fills_each_call_to_the_batch(model, recorder, clip):
    """29 pairs, 4 per call: 8 calls (7 full, then 1), the first once 5 frames are read."""
    result = editing.InterpolateJob(model.config, editing.Source(clip), editing.EditOptions(batch=4)).run(
        model, None, OPTIONS)
    assert result["model_calls"] == 8 and [len(c["video"]) for c in recorder.calls] == [4] * 7 + [1]


def test_prediction_needs_fewer_known_frames_than_the_model_sees(model, clip):
    with pytest.raises(UsageError, match="cond"):
        editing.PredictJob(model.config, editing.Source(clip), editing.EditOptions(), cond_frames=16)
    assert editing.PredictJob(model.config, editing.Source(clip), editing.EditOptions(), cond_frames=15).cond_frames == 15


def test_dynamic_outpainting_preview_shows_the_input_where_it_slides(model, recorder, tmp_path):
    """OPD: the preview's input panel has the input at its offset of that frame."""
    source = editing.Source.from_tensor(torch.full((3, 5, 16, 16), 0.8), 24)
    job = editing.OutpaintJob(model.config, source, editing.EditOptions(preview=True), "dynamic")
    result = job.run(model, tmp_path / "opd.mp4", OPTIONS)
    panels = np.stack(list(vio.iter_frames(result["preview"])))  # input | mask | output, each 16x32
    assert [job.offset(i) for i in (0, 4)] == [(0, 0), (16, 0)] and panels.shape[1:] == (16, 96, 3)
    grey = panels[..., 0].astype(float)  # H.264: a few levels off
    assert abs(grey[0, 4:12, 2:14].mean() - 204) < 6 and abs(grey[0, 4:12, 18:30].mean() - 32) < 6
    assert abs(grey[4, 4:12, 2:14].mean() - 32) < 6 and abs(grey[4, 4:12, 18:30].mean() - 204) < 6


def test_a_segment_of_a_variable_rate_source_is_cut_from_its_constant_rate_timeline(tmp_path):
    from test_video import make_clip

    stamps = [i * 40 + (15 if i % 3 == 1 else 0) for i in range(20)]  # ~25 fps, uneven
    stamps[10:] = [s + 120 for s in stamps[10:]]  # and a gap of 3 frames
    clip = make_clip(tmp_path / "vfr.mp4", count=20, fps=Fraction(25), burst_at=None, timestamps=stamps)
    whole = editing.Source(clip)
    frames = list(whole.frames())
    assert whole.info.variable_frame_rate and len(frames) == whole.num_frames == round(whole.info.duration * whole.fps)
    repeats = sum(np.array_equal(a, b) for a, b in zip(frames, frames[1:]))
    assert repeats > 0  # the gap is filled by repeating a frame (the raw frames all differ)
    raw = list(vio.iter_frames(clip))
    assert not any(np.array_equal(a, b) for a, b in zip(raw, raw[1:]))
    part = editing.Source(clip, start=0.2, end=0.6)
    assert (part.first, part.stop) == (round(0.2 * whole.fps), round(0.6 * whole.fps))
    np.testing.assert_array_equal(np.stack(list(part.frames())), np.stack(frames[part.first:part.stop]))


def test_mask_times_in_seconds_use_the_sources_rate(model):
    source = editing.Source.from_tensor(torch.rand(3, 30, 32, 32), 24)
    job = editing.InpaintJob(model.config, source, editing.EditOptions(), "0,0,8,8@0.5s-1s")
    assert not job.mask.at(11).any() and job.mask.at(12).any() and job.mask.at(24).any() and not job.mask.at(25).any()


def test_the_input_is_never_an_output_nor_a_preview(model, recorder, tmp_path):
    """The output, and the preview beside it, are refused where they would replace the input."""
    for name, output, preview in (("in.mp4", "in.mp4", False), ("out.preview.mp4", "out.mp4", True)):
        clip = vio.write_video(tmp_path / name, flat_frames([50] * 4), 24)
        before = clip.read_bytes()
        job = editing.InpaintJob(model.config, editing.Source(clip), editing.EditOptions(preview=preview), "box")
        with pytest.raises(OutputError, match="refusing to overwrite the input"):
            job.run(model, tmp_path / output, OPTIONS)
        assert clip.read_bytes() == before
        clip.unlink()


@pytest.mark.parametrize("height, width, direction, amount", [
    (30, 8, "all", "50%"), (8, 30, "all", "50%"), (30, 8, "horizontal", "13"), (8, 30, "horizontal", "7")])
def test_outpainting_refuses_an_input_that_covers_no_whole_cell_where_it_sits(model, height, width, direction, amount):
    """The check places the input at its real offset (left, top margins) in the model's view: a
    narrow input straddling cells covers none of them whole (measured: at the top-left, or at
    (top, top), it would cover one)."""
    source = editing.Source.from_tensor(torch.rand(3, 2, height, width), 24)
    with pytest.raises(UsageError, match="less than one token cell"):
        editing.OutpaintJob(model.config, source, editing.EditOptions(), direction, amount)


def test_prediction_and_interpolation_count_the_frames_they_really_get(model, recorder, monkeypatch):
    """A source that yields fewer frames than it announced (a truncated file) is refused by what
    was read: prediction with fewer frames than --cond-frames, interpolation with under two."""
    source = editing.Source.from_tensor(torch.rand(3, 4, 32, 32), 24)
    for yielded, message in ((0, "has 0 frames"), (1, "has 1 frames but --cond-frames 2")):
        monkeypatch.setattr(source, "frames", lambda n=yielded: iter(np.zeros((n, 32, 32, 3), np.uint8)))
        with pytest.raises(editing.InputError, match=message):
            editing.PredictJob(model.config, source, editing.EditOptions(), cond_frames=2).run(model, None, OPTIONS)
    for yielded in (0, 1):
        monkeypatch.setattr(source, "frames", lambda n=yielded: iter(np.zeros((n, 32, 32, 3), np.uint8)))
        with pytest.raises(editing.InputError, match="interpolation needs at least two"):
            editing.InterpolateJob(model.config, source, editing.EditOptions()).run(model, None, OPTIONS)
