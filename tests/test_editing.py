"""Editing real videos on the tiny random model: geometry, windows, compositing at the
input's resolution (checked bit for bit through lossless PNG-frame output), timing,
audio, rotation, variable frame rates, previews, plans and out-of-memory handling."""

import json
import math
import os
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import magvit_cli
from magvit_cli import editing, geometry as geo, planning, video as vio
from magvit_cli.cli import main
from magvit_cli.errors import EXIT_MEMORY, OutOfMemoryError
from magvit_cli import edit
from magvit_cli.composite import pull_push, seamless
from magvit_cli.decoding import DecodeOptions
from magvit_cli.model import Magvit

from test_video import make_clip, reopen  # PyAV-written clips with an audio burst

FAST = DecodeOptions(seed=0, steps=1)


@pytest.fixture(autouse=True)
def one_thread():
    """Small matrices on 2 shared cores: OpenMP's spinning threads only slow them down."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def model(tiny_model_dir) -> Magvit:
    return magvit_cli.load_model(tiny_model_dir)


def textured(count: int, height: int, width: int, seed: int = 0) -> np.ndarray:
    """Frames unlike anything the random model makes: smooth colours plus noise, moving."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    frames = np.empty((count, height, width, 3), np.uint8)
    for t in range(count):
        frames[t, ..., 0] = (x * 4 + t * 3) % 256
        frames[t, ..., 1] = (y * 5) % 256
        frames[t, ..., 2] = rng.integers(0, 256, (height, width))
    return frames


@pytest.fixture(scope="module")
def png_clip(tmp_path_factory):
    """30 frames of 56x44 as a lossless PNG folder (24 fps)."""
    frames = textured(30, 44, 56)
    folder = tmp_path_factory.mktemp("png") / "clip"
    vio.write_video(folder, iter(frames), 24)
    return folder, frames


def run_cli(args, capsys):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


# ---------------------------------------------------------------------------- geometry


def test_resampling_is_torch_antialiased_bilinear_and_the_identity_at_one_size():
    image = torch.rand(3, 37, 53)
    for size in [(16, 16), (80, 100)]:
        rows = geo.resample_matrix(size[0], 37, 0, 37)
        cols = geo.resample_matrix(size[1], 53, 0, 53)
        mine = rows @ image @ cols.T
        ref = F.interpolate(image[None], size=size, mode="bilinear", antialias=True, align_corners=False)[0]
        # torch drops taps past the border, ours repeat the edge: compare away from the border
        torch.testing.assert_close(mine[:, 2:-2, 2:-2], ref[:, 2:-2, 2:-2], atol=1e-5, rtol=0)
    assert torch.equal(geo.resample_matrix(7, 7, 0, 7), torch.eye(7))
    # the way back uses the same pixel centres: a flat image comes back exactly, anywhere
    view = geo.context_view((44, 56), (10, 8, 30, 20), (32, 32))
    flat = torch.full((3, 32, 32), 0.25)
    assert torch.allclose(geo.from_model(view, (0, 0, 56, 44), flat), torch.tensor(0.25), atol=1e-6)


def test_views_keep_the_model_aspect_and_the_edit_in_the_central_half():
    full = geo.letterbox((216, 384), (32, 32))
    assert (full.x, full.y, full.w, full.h) == (0, -84, 384, 384)
    assert full.padding((216, 384)) == {"left": 0, "top": 84, "right": 0, "bottom": 84}
    view = geo.context_view((1080, 1920), (900, 500, 1000, 560), (64, 64))
    assert view.w == view.h == 200  # twice the hole's larger side, 100 px
    assert (view.x, view.y) == (850, 430)  # centred on it
    small = geo.context_view((1080, 1920), (10, 10, 14, 14), (64, 64))
    assert small.w == 64 and (small.x, small.y) == (0, 0)  # never finer than the model, kept on the frame
    huge = geo.context_view((216, 384), (0, 0, 384, 216), (32, 32))
    assert huge == full  # never larger than the whole frame's letterbox


def test_snapping_to_cells_and_feathering():
    unknown = torch.zeros(16, 32, 32, dtype=torch.bool)
    unknown[5, 9, 17] = True  # one pixel: its cell is frames 4-7, rows 8-11, columns 16-19
    cells = geo.snap(unknown, (4, 8, 8))
    assert cells.sum() == 1 and cells[1, 2, 4]
    pixels = geo.expand_cells(cells, (16, 32, 32))
    assert pixels.sum() == 4 * 4 * 4 and pixels[4:8, 8:12, 16:20].all()
    alpha = geo.feather(pixels[4:5], radius=2)[0]
    assert (alpha[8:12, 16:20] == 1).all()
    assert alpha[10, 21] > alpha[10, 22] > alpha[10, 23] > 0 and alpha[10, 24] == 0  # 0 at 2 * radius + 1 px
    assert alpha[10, 25:].eq(0).all() and alpha[:4].eq(0).all() and alpha[4, 17] > 0


@pytest.mark.parametrize("total, window, overlap, expected", [
    (10, 16, 4, [(0, 10)]),
    (16, 16, 4, [(0, 16)]),
    (20, 16, 4, [(0, 16), (12, 8)]),
    (28, 16, 4, [(0, 16), (12, 16)]),
    (29, 16, 4, [(0, 16), (12, 16), (24, 5)]),
    (32, 16, 0, [(0, 16), (16, 16)]),
])
def test_window_schedule(total, window, overlap, expected):
    assert vio.window_starts(total, window, overlap) == expected


def test_variable_rate_frames_are_resampled_like_ffmpegs_fps_filter():
    times = [0.0, 0.04, 0.2, 0.24]  # a gap after the second frame
    frames = [np.full((1, 1, 3), i, np.uint8) for i in range(4)]
    steady = editing._constant_rate(iter(zip(times, frames)), Fraction(25), 8)
    assert [int(f[0, 0, 0]) for f in steady] == [0, 1, 1, 1, 1, 2, 3, 3]


# ---------------------------------------------------------------------------- compositing


def read_png(folder):
    frames, _ = vio.read_video(folder)
    return frames


def test_pull_push_keeps_known_pixels_and_fills_the_rest_from_them():
    values = torch.rand(2, 3, 13, 10, generator=torch.Generator().manual_seed(0))
    known = torch.zeros(2, 1, 13, 10)
    known[0, :, 2:5, 1:9] = 1  # image 1 has no known pixel
    filled = pull_push(values * known, known)
    assert torch.equal(filled[0][known[0].expand(3, -1, -1) > 0], values[0][known[0].expand(3, -1, -1) > 0])
    inside = values[0, :, 2:5, 1:9].flatten(1)
    assert (filled[0].flatten(1).min(1).values >= inside.min(1).values - 1e-6).all()
    assert (filled[0].flatten(1).max(1).values <= inside.max(1).values + 1e-6).all()
    assert torch.equal(filled[1], torch.zeros_like(filled[1]))
    assert torch.allclose(pull_push(values, torch.ones(2, 1, 13, 10)), values)


def _pull_push_reference(values: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """pull_push for one image [H, W], H and W powers of two, written out: a pyramid of 2x2 means of
    the weighted values and of the weights; the coarsest level normalised; then, level by level
    back up, bilinear up-sampling (pixel centres at half-integers, edges clamped) of the level
    below, kept where the weight is 0 and blended as own + (1 - w) * coarse elsewhere."""
    levels = [(values, weights)]
    while min(levels[-1][0].shape) > 1:
        v, w = levels[-1]
        levels.append(tuple(x.reshape(x.shape[0] // 2, 2, x.shape[1] // 2, 2).mean(axis=(1, 3)) for x in (v, w)))
    filled = levels[-1][0] / max(levels[-1][1].item(), 1e-8)
    for v, w in reversed(levels[:-1]):
        H, W = v.shape
        coarse = np.empty((H, W))
        for i in range(H):
            for j in range(W):
                y, x = max((i + 0.5) / 2 - 0.5, 0.0), max((j + 0.5) / 2 - 0.5, 0.0)
                y0, x0 = int(y), int(x)
                y1, x1 = min(y0 + 1, filled.shape[0] - 1), min(x0 + 1, filled.shape[1] - 1)
                dy, dx = y - y0, x - x0
                coarse[i, j] = ((1 - dy) * ((1 - dx) * filled[y0, x0] + dx * filled[y0, x1])
                                + dy * ((1 - dx) * filled[y1, x0] + dx * filled[y1, x1]))
        filled = np.where(w > 0, v + (1 - w) * coarse, coarse)
    return filled


def test_pull_push_matches_its_definition_on_a_pyramid_of_three_levels():
    rng = np.random.default_rng(3)
    known = np.zeros((8, 8))
    known[[0, 2, 5, 7], [1, 6, 3, 7]] = 1  # four known pixels, far apart
    values = rng.random((8, 8)) * known
    expected = _pull_push_reference(values, known)
    got = pull_push(torch.from_numpy(values)[None, None], torch.from_numpy(known)[None, None])[0, 0].numpy()
    np.testing.assert_allclose(got, expected, atol=1e-12)
    assert np.ptp(expected[known == 0]) > 0.1  # the fill varies: every level and the blend matter


def test_seamless_keeps_pixels_in_range():
    """The shift that meets the known pixels can push made-up ones outside [0, 1]: they are clipped."""
    output = torch.full((1, 3, 1, 8, 8), 0.1)
    output[..., 0, 0] = 0.5
    video = torch.zeros_like(output)  # the one known pixel is 0.5 darker than the model made it
    keep = torch.zeros(1, 1, 1, 8, 8, dtype=torch.bool)
    keep[..., 0, 0] = True
    assert torch.equal(seamless(output, video, keep), torch.zeros_like(output))  # 0.1 - 0.5, clipped
    assert torch.equal(seamless(1 - output, 1 - video, keep), torch.ones_like(output))


def test_seamless_removes_a_colour_cast_everywhere_and_leaves_frames_without_known_pixels():
    video = torch.rand(2, 3, 4, 16, 16, generator=torch.Generator().manual_seed(1)) * 0.5 + 0.25
    cast = video + torch.tensor([0.1, -0.05, 0.02]).view(1, 3, 1, 1, 1)  # what a biased tokenizer gives back
    keep = torch.ones(1, 1, 4, 16, 16, dtype=torch.bool)
    keep[..., 4:12, 4:12] = False  # a hole in every frame...
    keep[:, :, 3] = False  # ...and one frame with nothing known
    out = seamless(cast, video, keep)
    assert torch.allclose(out[:, :, :3], video[:, :, :3], atol=1e-5)  # hole included: the cast is gone
    assert torch.equal(out[:, :, 3], cast[:, :, 3].clamp(0, 1))


def test_tensor_reconstruction_pads_the_last_window_and_keeps_the_length(model):
    """A 21-frame tensor: one full window, then 5 frames padded by their last one for the
    tokenizer and trimmed after; the same as the model's round trip of each window."""
    video = torch.rand(1, 3, 21, 32, 32, generator=torch.Generator().manual_seed(3))
    out = edit.reconstruct(model, video)
    assert out.shape == video.shape
    assert torch.equal(out[:, :, :16], model.decode(model.encode(video[:, :, :16])))
    padded = torch.cat([video[:, :, 16:], video[:, :, 20:].expand(-1, -1, 11, -1, -1)], dim=2)
    assert torch.equal(out[:, :, 16:], model.decode(model.encode(padded))[:, :, :5])


def test_inpaint_replaces_only_the_snapped_hole_and_its_feathered_band(model, png_clip, tmp_path):
    folder, frames = png_clip
    source = editing.Source(folder)
    job = editing.InpaintJob(model.config, source, editing.EditOptions(batch=2), "20,12,10,8@0-5")
    result = job.run(model, tmp_path / "out", FAST)
    out = read_png(tmp_path / "out")
    assert out.shape == frames.shape and result["frames"] == 30
    regions = job.snapped_regions()
    first = regions[0]
    assert first["hole_frames"] == [0, 7]  # frames 0-5 masked, snapped to whole 4-frame cells
    assert [r.get("hole_cells") for r in regions[1:]] == [0, 0]  # nothing to do there: no model call
    assert result["model_calls"] == 1
    x, y, w, h = first["hole_box"]
    scale = first["view"]["scale"]
    reach = math.ceil(4 * scale + scale) + 1  # one cell of feathering plus one model pixel of resampling
    outside = np.ones(frames.shape[1:3], bool)
    outside[max(0, y - reach):y + h + reach, max(0, x - reach):x + w + reach] = False
    assert np.array_equal(out[:, outside], frames[:, outside])  # bit for bit
    assert np.array_equal(out[8:], frames[8:])  # frames the snapped hole does not reach
    hole = (slice(12, 20), slice(20, 30))
    changed = (out[:8][:, hole[0], hole[1]] != frames[:8][:, hole[0], hole[1]]).any(-1).mean()
    assert changed > 0.9  # the user's box itself is (all but) entirely replaced


@pytest.mark.parametrize("window, overlap", [(8, 2), (24, 6)])
def test_windows_of_other_lengths_are_resampled_in_time(model, png_clip, tmp_path, window, overlap):
    folder, frames = png_clip
    how = editing.EditOptions(window=window, overlap=overlap, batch=4)
    result = edit.inpaint(model, folder, tmp_path / "out", mask="20,12,10,8", edit_options=how, options=FAST)
    out = read_png(tmp_path / "out")
    assert out.shape == frames.shape
    reported = result["mask"]["windows"]
    assert [w["frames"][0] for w in reported] == [s for s, _ in vio.window_starts(30, window, overlap)]
    outside = np.ones(frames.shape[1:3], bool)
    for w in reported:  # the JSON report's snapped boxes, grown by the band
        x, y, bw, bh = w["hole_box"]
        reach = math.ceil(5 * w["view"]["scale"]) + 1
        outside[max(0, y - reach):y + bh + reach, max(0, x - reach):x + bw + reach] = False
    assert np.array_equal(out[:, outside], frames[:, outside])
    assert (out[:, 12:20, 20:30] != frames[:, 12:20, 20:30]).any(-1).mean() > 0.9


def test_outpaint_keeps_the_input_bit_exact_and_feathers_the_seam(model, png_clip, tmp_path):
    folder, frames = png_clip
    source = editing.Source(folder)
    job = editing.OutpaintJob(model.config, source, editing.EditOptions(batch=2), "right", "50%")
    job.run(model, tmp_path / "out", FAST)
    out = read_png(tmp_path / "out")
    assert out.shape == (30, 44, 84, 3)
    assert np.array_equal(out[:, :, :56], frames)
    # the first new column is mostly the input's edge (alpha = 1 / band there)
    band = job.band
    edge = out[:, :, 56].astype(int) - frames[:, :, 55].astype(int)
    assert np.abs(edge).max() <= math.ceil(255 / band) + 1
    dynamic = editing.OutpaintJob(model.config, source, editing.EditOptions(batch=2), "dynamic")
    assert [dynamic.offset(f)[0] for f in (0, 29)] == [0, 56]
    dynamic.run(model, tmp_path / "dyn", FAST)
    out = read_png(tmp_path / "dyn")
    for f in (0, 14, 29):
        x0, y0, x1, y1 = dynamic.source_box(f)
        assert np.array_equal(out[f, y0:y1, x0:x1], frames[f])


def test_prediction_appends_new_frames_after_the_untouched_input(model, png_clip, tmp_path):
    folder, frames = png_clip
    job = editing.PredictJob(model.config, editing.Source(folder), editing.EditOptions(), frames=20, cond_frames=2)
    result = job.run(model, tmp_path / "out", FAST)
    out = read_png(tmp_path / "out")
    assert out.shape == (50, 44, 56, 3) and result["windows"] == 2  # 14 new frames per window
    assert np.array_equal(out[:30], frames)


@pytest.mark.parametrize("kwargs, count, kept", [
    (dict(factor=2), 23, 2),  # 12 frames: input frame i at output 2i
    (dict(fps="36"), 17, 3),  # 24 -> 36 fps: input frames 0, 2, 4, ... at outputs 0, 3, 6, ...
])
def test_interpolation_keeps_the_input_frames_on_the_new_timeline(model, png_clip, tmp_path, kwargs, count, kept):
    folder, frames = png_clip
    frames = frames[:12]
    job = editing.InterpolateJob(model.config, editing.Source(folder, end=0.5), editing.EditOptions(batch=6),
                                 **kwargs)
    job.run(model, tmp_path / "out", FAST)
    out = read_png(tmp_path / "out")
    assert len(out) == count
    step = kept * Fraction(24) / job.fps  # input frames per kept output
    assert np.array_equal(out[::kept], frames[::int(step)][:len(out[::kept])])
    assert not np.array_equal(out[1], frames[0])


def test_overlapping_windows_cross_fade(model, png_clip):
    source = editing.Source(png_clip[0])
    job = editing.InpaintJob(model.config, source, editing.EditOptions(composite=False),
                             "box")
    a, b = (job.geometry(s, n, [None] * n) for s, n in job.starts(28))
    a.output = b.output = torch.zeros(3, 16, 32, 32)

    def weights(f):
        return [round(p.weight, 3) for p in job.layers(f, [w for w in (a, b) if w.start <= f < w.end])]

    assert [weights(f) for f in (11, 12, 13, 15, 16)] == [[1.0], [0.8, 0.2], [0.6, 0.4], [0.2, 0.8], [1.0]]


def test_raw_output_is_the_model_size(model, png_clip, tmp_path):
    source = editing.Source(png_clip[0])
    job = editing.InpaintJob(model.config, source, editing.EditOptions(composite=False, batch=2),
                             "box")
    job.run(model, tmp_path / "raw", FAST)
    assert read_png(tmp_path / "raw").shape == (30, 32, 32, 3)


# ---------------------------------------------------------------------------- timing and audio


@pytest.fixture(scope="module")
def audio_clip(tmp_path_factory):
    """64x48, 50 frames at 25 fps, AAC audio with a burst at 1.2 s."""
    return make_clip(tmp_path_factory.mktemp("audio") / "talk.mp4", count=50, fps=Fraction(25), burst_at=1.2)


def test_edits_keep_fps_duration_and_audio(tiny_model_dir, audio_clip, tmp_path, capsys):
    code, out, err = run_cli(["inpaint", audio_clip, "--model", tiny_model_dir,
                              "-o", tmp_path / "in.mp4", "--steps", "1", "--json"], capsys)
    assert code == 0, err
    meta = reopen(tmp_path / "in.mp4")
    assert meta["frames"] == 50 and meta["fps"] == 25 and meta["audio"] == ["aac"]
    assert meta["burst_at"] == pytest.approx(1.2, abs=0.025) and meta["audio_end"] == pytest.approx(2.0, abs=0.025)
    code, out, err = run_cli(["outpaint", audio_clip, "--model", tiny_model_dir, "-o", tmp_path / "cut.mp4",
                              "--start", "1", "--end", "1.6", "--steps", "1", "--direction", "left"], capsys)
    assert code == 0, err
    meta = reopen(tmp_path / "cut.mp4")
    assert meta["frames"] == 15  # frames 25..39
    assert meta["burst_at"] == pytest.approx(0.2, abs=0.025)  # the cut's audio starts with it
    assert meta["audio_end"] == pytest.approx(0.6, abs=0.025)


def test_rotation_is_honoured(tiny_model_dir, tmp_path, capsys):
    clip = make_clip(tmp_path / "phone.mp4", count=6, fps=Fraction(25), burst_at=None, rotation=90)
    code, out, err = run_cli(["inpaint", clip, "--model", tiny_model_dir, "-o", tmp_path / "o.mp4",
                              "--steps", "1", "--json"], capsys)
    assert code == 0, err
    info = vio.probe(tmp_path / "o.mp4")
    assert (info.width, info.height, info.rotation) == (48, 64, 0)  # stored 64x48, shown turned


def test_variable_frame_rate_input_is_resampled_with_a_notice(tiny_model_dir, tmp_path, capsys):
    stamps = [round(i * 40 + (15 if i % 3 == 1 else 0)) for i in range(20)]  # ~25 fps, uneven
    stamps[10:] = [s + 120 for s in stamps[10:]]  # and a gap
    clip = make_clip(tmp_path / "vfr.mp4", count=20, fps=Fraction(25), burst_at=None, timestamps=stamps)
    info = vio.probe(clip)
    assert info.variable_frame_rate
    code, out, err = run_cli(["inpaint", clip, "--model", tiny_model_dir, "-o", tmp_path / "cfr.mp4",
                              "--steps", "1", "--json"], capsys)
    assert code == 0, err
    result = json.loads(out)
    assert any("variable frame rate" in n for n in result["notices"])
    written = vio.probe(tmp_path / "cfr.mp4")
    assert not written.variable_frame_rate and written.fps == info.fps
    assert written.num_frames == round(info.duration * info.fps)


# ---------------------------------------------------------------------------- preview, plan, memory


def test_preview_shows_input_mask_and_output(tiny_model_dir, png_clip, tmp_path, capsys):
    code, out, err = run_cli(["outpaint", png_clip[0], "--model", tiny_model_dir, "-o", tmp_path / "o.mp4",
                              "--direction", "up", "--amount", "12", "--preview", "--steps", "1", "--json"], capsys)
    assert code == 0, err
    preview = Path(json.loads(out)["preview"])
    assert preview.name == "o.preview.mp4"
    info = vio.probe(preview)
    assert (info.width, info.height, info.num_frames) == (3 * 56, 56, 30)
    panels = next(vio.iter_frames(preview)).astype(int)
    mask = panels[:, 56:112].mean(axis=2)
    assert mask[:8].mean() > 200 and mask[24:].mean() < 30  # the new top margin is the edit


def test_dry_run_prints_the_plan_and_writes_nothing(tiny_model_dir, png_clip, tmp_path, capsys):
    target = tmp_path / "never.mp4"
    code, out, err = run_cli(["inpaint", png_clip[0], "--model", tiny_model_dir, "-o", target, "--dry-run",
                              "--json", "--mask", "0.1,0.1,0.2,0.2"], capsys)
    assert code == 0, err
    plan = json.loads(out)["plan"]
    assert plan["token_grid"] == "4x8x8" and plan["windows"] == 3 and plan["model_clip"] == "16x32x32"
    assert plan["estimate"]["seconds"] > 0 and plan["estimate"]["peak_memory_mb"] > 50
    assert plan["view"]["width"] == 32 and plan["padding"] == {"left": 0, "top": 0, "right": 0, "bottom": 0}
    assert not target.exists()
    code, out, err = run_cli(["interpolate", png_clip[0], "--model", tiny_model_dir, "--dry-run",
                              "--factor", "3"], capsys)
    assert code == 0, err
    assert "windows" in out and "estimate" in out and "padding" in out


def test_a_run_that_cannot_fit_is_refused_up_front(tiny_model_dir, png_clip, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(planning, "available_host_memory", lambda: 1024)
    code, out, err = run_cli(["inpaint", png_clip[0], "--model", tiny_model_dir, "-o", tmp_path / "o.mp4"],
                             capsys)
    assert code == EXIT_MEMORY and "needs about" in err
    assert not (tmp_path / "o.mp4").exists()


def test_cuda_out_of_memory_retries_once_with_half_the_batch(model, png_clip, tmp_path, monkeypatch):
    calls = []
    real = Magvit.run_task

    def flaky(self, task, video, *args, **kwargs):
        calls.append(video.shape[0])
        if video.shape[0] > 2:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return real(self, task, video, *args, **kwargs)

    monkeypatch.setattr(Magvit, "run_task", flaky)
    source = editing.Source(png_clip[0])
    mask = "box"
    result = editing.InpaintJob(model.config, source, editing.EditOptions(batch=3), mask).run(
        model, tmp_path / "o", FAST)
    assert calls == [3, 1, 1, 1] and any("retried with 1" in n for n in result["notes"])
    assert not (tmp_path / "o").exists() or len(read_png(tmp_path / "o")) == 30

    monkeypatch.setattr(Magvit, "run_task", lambda *a, **k: (_ for _ in ()).throw(torch.OutOfMemoryError("oom")))
    with pytest.raises(OutOfMemoryError, match="out of memory"):
        editing.InpaintJob(model.config, source, editing.EditOptions(batch=2), mask).run(model, tmp_path / "p", FAST)
    assert not (tmp_path / "p").exists()


PEAK_SCRIPT = """
import resource, sys
from magvit_cli.cli import main
code = main(sys.argv[1:])
print("PEAK", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, file=sys.stderr)
sys.exit(code)
"""


def peak_rss_of(args) -> int:
    """Peak resident memory (bytes) of `magvit ARGS` in a fresh process."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", PEAK_SCRIPT, *map(str, args)], capture_output=True, text=True,
                          env=env, timeout=600)
    assert done.returncode == 0, done.stderr
    return int(done.stderr.rsplit("PEAK", 1)[1].split()[0])


def test_memory_does_not_grow_with_the_video_length(tiny_model_dir, tmp_path):
    """A 640x360 video of 16 frames and one of 112 (66 MB of pixels more): the same
    streaming run (the mask covers only the first frames, so both make one model call;
    MPEG-4 in AVI decodes and encodes fast)."""
    frames = textured(16, 360, 640, seed=1)
    for name, repeat in (("short", 1), ("long", 7)):
        vio.write_video(tmp_path / f"{name}.avi", (f for _ in range(repeat) for f in frames), 24)
    peaks = {name: peak_rss_of(["inpaint", tmp_path / f"{name}.avi", "--model", tiny_model_dir, "--mask",
                                "100,100,60,60@0-3", "--steps", "1", "-o", tmp_path / f"{name}.out.avi"])
             for name in ("short", "long")}
    assert vio.probe(tmp_path / "long.out.avi").num_frames == 112
    assert peaks["long"] - peaks["short"] < 20 * 2 ** 20, peaks


# ---------------------------------------------------------------------------- compositing with a stubbed model


def png_folder(path, frames, fps=24):
    vio.write_video(path, iter(frames), fps)
    return path


def test_seamless_removes_a_colour_cast_of_the_model_at_the_hole_border(model, tmp_path, monkeypatch):
    """Guards against ClipJob.run skipping seamless(): a model output with a colour cast must not leave a step."""
    rng = np.random.default_rng(0)
    frames = rng.integers(20, 180, (16, 32, 32, 3), dtype=np.uint8)  # at the model's size: a 1:1 view
    folder = png_folder(tmp_path / "in", frames)
    cast = torch.tensor([0.2, -0.06, 0.1]).view(1, 3, 1, 1, 1)
    monkeypatch.setattr(Magvit, "run_task", lambda self, task, video, **kwargs: video + cast)  # perfect, but tinted
    edit.inpaint(model, folder, tmp_path / "out", mask="12,12,8,8", options=FAST)  # cells 3-4 of 4 px
    out = read_png(tmp_path / "out").astype(int)
    source = frames.astype(int)
    # Across the hole's left and right borders (x 11|12 and 19|20), the output steps as the input does.
    for inside, outside in ((12, 11), (19, 20)):
        step = (out[:, 12:20, inside] - out[:, 12:20, outside]) - (source[:, 12:20, inside] - source[:, 12:20, outside])
        jump = int(np.abs(step).max())
        assert jump <= 1, f"a step of {jump} levels at x = {inside}|{outside}"
    error = int(np.abs(out - source).max())
    assert error <= 1, f"off by {error} levels"  # the cast is gone everywhere, hole and feathered band included


def test_every_hole_pixel_is_the_models_output(model, tmp_path, monkeypatch):
    """Guards against InpaintJob.layer losing alpha = max(alpha, hole): the hole must be fully replaced."""
    rng = np.random.default_rng(1)
    frames = rng.integers(0, 40, (16, 96, 96, 3), dtype=np.uint8)  # dark noise, far from the fill colour
    folder = png_folder(tmp_path / "in", frames)
    fill = (torch.tensor([51, 153, 229]) / 255).view(1, 3, 1, 1, 1)
    monkeypatch.setattr(Magvit, "run_task", lambda self, task, video, **kwargs: fill.expand_as(video))
    monkeypatch.setattr(editing, "seamless", lambda output, video, keep: output)  # the fill as the model made it
    # A 24 px box around (48, 48) is seen at 1.5 canvas px per model px (view x = y = 24, 48 px wide):
    # canvas 36..59 are model pixels 8..23, exactly the cells 2-5, so the snapped hole is the box itself,
    # and the bilinear alpha of its outer ring reads the feathered band (< 1).
    result = edit.inpaint(model, folder, tmp_path / "out", mask="36,36,24,24", options=FAST)
    assert result["mask"]["windows"][0]["hole_box"] == [36, 36, 24, 24]
    assert result["mask"]["windows"][0]["view"]["scale"] == 1.5
    out = read_png(tmp_path / "out")
    hole = out[:, 36:60, 36:60].reshape(-1, 3)
    wrong = (hole != [51, 153, 229]).any(-1)
    assert int(wrong.sum()) == 0, f"{wrong.sum()} hole pixels are not the model's, e.g. {hole[wrong][:3].tolist()}"


@pytest.mark.parametrize("factor, positions", [
    (4, [4, 8, 11]),  # 15 * (1/4, 2/4, 3/4) = 3.75, 7.5, 11.25: rounded (7.5 half to even)
    (6, [2, 5, 8, 10, 12]),  # 15 * k/6 = 2.5, 5, 7.5, 10, 12.5
])
def test_interpolated_frames_come_from_the_nearest_model_frame(model, tmp_path, monkeypatch, factor, positions):
    """Guards against truncating (int) instead of rounding the model frame an output frame is taken from."""
    frames = np.stack([np.full((32, 32, 3), v, np.uint8) for v in (250, 251, 252)])
    folder = png_folder(tmp_path / "in", frames)

    def run_task(self, task, video, *args, **kwargs):  # model frame p is grey level 10 * p
        T = self.config.num_frames
        grey = (10 * torch.arange(T) / 255).view(1, 1, T, 1, 1)
        return grey.expand(video.shape[0], 3, T, 32, 32).clone()

    monkeypatch.setattr(Magvit, "run_task", run_task)
    edit.interpolate(model, folder, tmp_path / "out", factor=factor, options=FAST)
    out = read_png(tmp_path / "out")[..., 0]
    assert (out == out[:, :1, :1]).all()
    levels = out[:, 0, 0].tolist()
    made_up = [10 * p for p in positions]
    assert levels == [250, *made_up, 251, *made_up, 252], f"model frames {levels}"
