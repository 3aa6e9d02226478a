import math
from collections import Counter

import numpy as np
import pytest
import torch

from magvit_cli import config, tasks
from magvit_cli.errors import UsageError
from magvit_cli.tasks import TASKS, TaskSchedule, condition, condition_from_mask, mask_tokens, prefix_tokens
from magvit_cli.transformer import TransformerConfig

TINY = TransformerConfig(codebook_size=64, num_classes=5, multi_task=True, latent_shape=(4, 8, 8),
                         hidden_size=64, num_layers=2, num_heads=2, mlp_dim=128)
TINY_LATENT = (4, 8, 8)


@pytest.fixture(scope="module")
def reference(reference_dir, device):
    io = np.load(reference_dir / "transformer_io.npz")
    video = np.load(reference_dir / "tokenizer_io.npz")["video"]
    return io, torch.from_numpy(video).permute(0, 4, 1, 2, 3).to(device)  # channels-last -> [B, C, T, H, W]


def as_ids(array) -> torch.Tensor:
    """Official token arrays hold negative special ids; ours wrap them to V + n."""
    ids = torch.from_numpy(array).long()
    return torch.where(ids < 0, ids + TINY.vocab_size, ids)


@pytest.mark.parametrize("task", [t for t in TASKS if t != "full_generation"])
def test_condition_matches_the_official_cond_fn(reference, task):
    io, video = reference
    cond = condition(task, video, TINY_LATENT)
    expected_video = torch.from_numpy(io[f"{task}__cond_video"]).permute(0, 4, 1, 2, 3)
    torch.testing.assert_close(cond.video.cpu(), expected_video, atol=1e-6, rtol=0)  # measured: exact
    expected_mask = torch.from_numpy(io[f"{task}__cond_video_mask"]).permute(0, 4, 1, 2, 3)
    full = (2, 1, 16, 32, 32)
    assert torch.equal(cond.video_mask.cpu().expand(full), expected_mask.expand(full))
    expected_latent = torch.from_numpy(io[f"{task}__cond_latent_mask"])
    assert torch.equal(cond.latent_mask.cpu().expand(2, *TINY_LATENT), expected_latent.expand(2, *TINY_LATENT))
    assert cond.video_mask.dim() == 5 and cond.latent_mask.dim() == 4  # [B|1, 1, T|1, H|1, W|1], [B|1, t, h, w]


@pytest.mark.parametrize("task", list(TASKS))
def test_masked_sequences_match_generate_masked_tokens(reference, task):
    io, video = reference
    device = video.device
    labels = torch.from_numpy(io["label"][:, 0]).long().to(device)
    scores = torch.from_numpy(io["mask_score"]).reshape(2, -1).to(device)
    targets = torch.from_numpy(io[f"{task}__inputs"]).long().reshape(2, -1).to(device)
    cond_tokens = latent_mask = None
    if task != "full_generation":
        cond_tokens = torch.from_numpy(io[f"{task}__cond_inputs"]).long().reshape(2, -1).to(device)
        latent_mask = condition(task, video, TINY_LATENT).latent_mask
    masked = mask_tokens(TINY, task, targets, cond_tokens, latent_mask, labels, 0.6, scores=scores,
                         model_tasks=list(TASKS))
    assert torch.equal(masked.inputs.cpu(), as_ids(io[f"{task}__masked_inputs"]))
    assert torch.equal(masked.targets.cpu(), as_ids(io[f"{task}__targets"]))
    assert torch.equal(masked.weights.cpu(), torch.from_numpy(io[f"{task}__weights"]))
    assert torch.equal(masked.uncond_inputs.cpu(), as_ids(io[f"{task}__uncond_masked_inputs"]))
    start = mask_tokens(TINY, task, targets, cond_tokens, latent_mask, labels, 1.0, scores=scores)
    assert torch.equal(start.inputs.cpu(), as_ids(io[f"{task}__decode_init_masked_inputs"]))
    assert torch.equal(prefix_tokens(TINY, task, labels).cpu(), as_ids(io[f"{task}__decode_prefix"]))
    uncond = tasks.uncond_prefix_tokens(TINY, task, list(TASKS), batch_size=2)
    assert torch.equal(uncond, as_ids(io[f"{task}__decode_prefix_uncond"]))


def test_moving_start_columns_match_the_spec_tables():
    assert tasks.moving_starts(16, 64).tolist() == [0, 2, 4, 6, 9, 11, 13, 15, 17, 19, 21, 23, 26, 28, 30, 32]
    assert tasks.moving_starts(16, 128).tolist() == [0, 4, 9, 13, 17, 21, 26, 30, 34, 38, 43, 47, 51, 55, 60, 64]
    assert tasks.moving_starts(4, 16).tolist() == [0, 3, 5, 8]
    assert tasks.moving_starts(3, 2).tolist() == [0, 0, 1]  # 0.5 rounds half to even


# Condition tokens of 1024 and fraction of unknown pixels per task (spec §7, paper Tab. 12).
EXPECTED_REGIONS = {
    "frame_prediction": (256, 15 / 16), "frame_interpolation": (512, 14 / 16), "outpainting_c": (256, 0.75),
    "outpainting_v": (512, 0.5), "outpainting_h": (512, 0.5), "outpainting_dv": (512, 0.5),
    "inpainting_c": (768, 0.25), "inpainting_dv": (768, 0.25), "full_generation": (0, 1.0),
    "frame_prediction_c": (256, 15 / 16),
}


@pytest.mark.parametrize("size", [64, 128])
@pytest.mark.parametrize("task", list(TASKS))
def test_regions_at_the_official_sizes(task, size):
    video = torch.rand(1, 3, 16, size, size)
    cond = condition(task, video, (4, 16, 16))
    tokens, unknown = EXPECTED_REGIONS[task]
    assert int(cond.latent_mask.sum()) == tokens
    mask = cond.video_mask.expand(1, 1, 16, size, size)
    assert float((~mask).float().mean()) == pytest.approx(unknown)
    assert torch.equal(cond.video[mask.expand_as(video)], video[mask.expand_as(video)])  # known pixels untouched


@pytest.mark.parametrize("size", [64, 128])
def test_dynamic_regions_by_hand(size):
    starts = tasks.moving_starts(16, size).tolist()
    video = torch.rand(1, 3, 16, size, size)
    strip = condition("outpainting_dv", video, (4, 16, 16))
    mask = strip.video_mask.expand(1, 1, 16, size, size)[0, 0]
    for f, s in enumerate(starts):
        cols = mask[f, 0].nonzero()[:, 0]
        assert (int(cols[0]), int(cols[-1]) + 1) == (s, s + size // 2)
        assert not strip.video[0, :, f, :, :s].any()  # constant padding
    for k, s in enumerate([0, 3, 5, 8]):
        cols = strip.latent_mask[0, k, 0].nonzero()[:, 0]
        assert cols.tolist() == list(range(s, s + 8))
    hole = ~condition("inpainting_dv", video, (4, 16, 16)).video_mask.expand(1, 1, 16, size, size)[0, 0]
    for f, s in enumerate(starts):
        rows, cols = hole[f].nonzero(as_tuple=True)
        assert (int(rows.min()), int(rows.max()) + 1) == (size // 4, size * 3 // 4)
        assert (int(cols.min()), int(cols.max()) + 1) == (s, s + size // 2)


def test_paddings():
    video = torch.rand(1, 3, 16, 64, 64)
    fp = condition("frame_prediction", video, (4, 16, 16), cond_frames=3)
    assert torch.equal(fp.video[:, :, 3:], video[:, :, 2:3].expand(-1, -1, 13, -1, -1))  # edge: last known frame
    fi = condition("frame_interpolation", video, (4, 16, 16))
    torch.testing.assert_close(fi.video[:, :, 5], video[:, :, 0] + (video[:, :, 15] - video[:, :, 0]) * 5 / 15)
    opc = condition("outpainting_c", video, (4, 16, 16))
    assert torch.equal(opc.video[:, :, :, 0, 0], video[:, :, :, 16, 16])  # corner replicates the region's corner
    assert torch.equal(opc.video[:, :, :, 5, 40], video[:, :, :, 16, 40])
    ipc = condition("inpainting_c", video, (4, 16, 16))
    assert ipc.video[:, :, :, 16:48, 16:48].abs().max() == 0


def test_condition_from_mask_follows_the_official_latent_masks():
    video = torch.rand(2, 3, 16, 64, 64)
    for task in ("frame_prediction", "frame_interpolation", "outpainting_c", "outpainting_v", "outpainting_h",
                 "inpainting_c"):
        official = condition(task, video, (4, 16, 16))
        keep = official.video_mask.expand(1, 1, 16, 64, 64)
        general = condition_from_mask(video, keep, TASKS[task].padding, (4, 16, 16))
        assert torch.equal(general.latent_mask, official.latent_mask), task
        assert torch.equal(general.video, official.video), task


def test_condition_from_mask_with_a_user_mask():
    video = torch.rand(1, 3, 16, 64, 64)
    keep = torch.ones(1, 1, 16, 64, 64, dtype=torch.bool)
    keep[..., 20:30, 33:50] = False  # a hole not aligned to the 8-pixel cells
    cond = condition_from_mask(video, keep, "constant", (4, 16, 16))
    assert cond.video[..., 20:30, 33:50].abs().max() == 0
    # 4x4-pixel cells with any known pixel carry condition tokens: only rows 5-6 (pixels 20..27)
    # x cols 9-11 (pixels 36..47) lie wholly inside the hole.
    holes = (~cond.latent_mask[0]).nonzero().tolist()
    assert holes == [[t, r, c] for t in range(4) for r in (5, 6) for c in (9, 10, 11)]
    with pytest.raises(UsageError, match="rectangular"):
        condition_from_mask(video, keep, "edge", (4, 16, 16))
    with pytest.raises(UsageError, match="divide"):
        condition_from_mask(video, keep, "constant", (3, 16, 16))


def test_frame_counts_are_validated():
    video = torch.rand(1, 3, 16, 32, 32)
    with pytest.raises(UsageError):
        condition("frame_prediction", video, TINY_LATENT, cond_frames=16)
    with pytest.raises(UsageError):
        condition("frame_interpolation", video, TINY_LATENT, cond_frames=8)
    with pytest.raises(UsageError):
        condition("frame_interpolation", video, TINY_LATENT, cond_latent_frames=2)
    with pytest.raises(UsageError, match=r"cond_frames must be in \[1, 15\]"):
        condition("frame_prediction", video, TINY_LATENT, cond_frames=0)
    with pytest.raises(UsageError, match=r"cond_frames must be in \[1, 7\]"):
        condition("frame_interpolation", video, TINY_LATENT, cond_frames=0)
    with pytest.raises(UsageError, match=r"cond_latent_frames must be in \[1, 3\]"):
        condition("frame_prediction", video, TINY_LATENT, cond_latent_frames=4)
    fi = condition("frame_interpolation", video, TINY_LATENT, cond_frames=7)  # 7 + 7 of 16: the most
    assert fi.video_mask.reshape(-1).tolist() == [True] * 7 + [False] * 2 + [True] * 7
    fp = condition("frame_prediction", video, TINY_LATENT, cond_frames=5, cond_latent_frames=2)
    assert fp.latent_mask[0, :, 0, 0].tolist() == [True, True, False, False]


def test_video_and_mask_shapes_are_checked():
    video = torch.rand(1, 3, 4, 8, 8)
    for wrong in (torch.rand(1, 4, 4, 8, 8), torch.rand(3, 4, 8, 8)):  # 4 channels; no batch axis (dim 1 is 3)
        with pytest.raises(UsageError, match=r"\[B, 3, T, H, W\]"):
            condition("frame_prediction", wrong, (1, 2, 2))
    keep = torch.ones(1, 1, 4, 8, 8, dtype=torch.bool)
    for wrong in (keep[0], keep.expand(1, 3, 4, 8, 8)):  # no batch axis; a mask per channel
        with pytest.raises(UsageError, match=r"\[B, 1, T, H, W\]"):
            condition_from_mask(video, wrong, "constant", (1, 2, 2))
    for latent in ((1, 3, 2), (1, 2, 3)):  # only the height, or only the width, does not divide
        with pytest.raises(UsageError, match="divide"):
            condition_from_mask(video, keep, "constant", latent)


def test_condition_from_mask_takes_any_mask_dtype_and_returns_it_as_the_video_mask():
    video = torch.rand(2, 3, 4, 8, 6)
    keep = torch.zeros(1, 1, 4, 8, 6, dtype=torch.uint8)
    keep[..., :4, :] = 1  # the top half known
    cond = condition_from_mask(video, keep, "constant", (2, 4, 3))
    assert cond.video_mask.dtype == torch.bool and torch.equal(cond.video_mask, keep.bool())
    assert torch.equal(cond.video[..., :4, :], video[..., :4, :]) and cond.video[..., 4:, :].abs().max() == 0
    assert cond.latent_mask[0, :, :, 0].tolist() == [[True, True, False, False]] * 2


def test_padding_with_a_mask_per_sample_on_a_wide_frame():
    """A batch of masks pads each sample as it would alone (edge: its own box; interpolate: its
    own known frames), on frames wider than tall."""
    video = torch.rand(2, 3, 4, 4, 6)
    boxes = torch.zeros(2, 1, 1, 4, 6, dtype=torch.bool)
    boxes[0, ..., 1:3, 1:4] = True
    boxes[1, ..., 0:2, 3:6] = True
    frames = torch.zeros(2, 1, 4, 1, 1, dtype=torch.bool)
    frames[0, 0, [0, 3]] = True
    frames[1, 0, [1]] = True
    for keep, padding in ((boxes, "edge"), (frames, "interpolate")):
        together = tasks.pad_video(video, keep, padding)
        alone = torch.cat([tasks.pad_video(video[i:i + 1], keep[i:i + 1], padding) for i in range(2)])
        assert torch.equal(together, alone), padding
        assert not torch.equal(alone[0], tasks.pad_video(video[:1], keep[1:], padding)[0])  # masks differ
    full = frames.expand(2, 1, 4, 4, 6)  # whole frames given pixel by pixel
    assert torch.equal(tasks.pad_video(video, full, "interpolate"), tasks.pad_video(video, frames, "interpolate"))
    partial = full.clone()
    partial[0, 0, 0, 0, 5] = False  # one pixel of a known frame unknown: not whole frames any more
    with pytest.raises(UsageError, match="whole known frames"):
        tasks.pad_video(video, partial, "interpolate")


def test_task_lookup_and_tokens():
    assert tasks.get_task("OPD").id == "outpainting_dv"
    assert tasks.get_task("cfp").token == config.FRAME_PREDICTION
    assert TASKS["inpainting_c"].token == TASKS["outpainting_c"].token == -6  # released config shares it
    with pytest.raises(UsageError):
        tasks.get_task("teleport")


def test_prefix_tokens():
    labels = torch.tensor([3, 1])
    assert prefix_tokens(TINY, "full_generation", labels).tolist() == [[83, 67], [83, 65]]
    assert prefix_tokens(TINY, "frame_prediction", batch_size=3).tolist() == [[82, 69]] * 3
    single = TransformerConfig(codebook_size=64, num_classes=5, multi_task=False, latent_shape=TINY_LATENT)
    assert prefix_tokens(single, "CG", labels).tolist() == [[67], [65]]  # no task token
    with pytest.raises(UsageError):
        prefix_tokens(TINY, "full_generation")
    for bad in ([5], [-1], [0, -1]):  # past the last class, or negative
        with pytest.raises(UsageError, match=r"\[0, 4\]"):
            prefix_tokens(TINY, "full_generation", torch.tensor(bad))
    one_class = TransformerConfig(codebook_size=64, num_classes=1, multi_task=False, latent_shape=TINY_LATENT)
    assert prefix_tokens(one_class, "CG", torch.tensor([0])).tolist() == [[64]]
    unconditional = TransformerConfig(codebook_size=64, num_classes=0, multi_task=False, latent_shape=TINY_LATENT)
    with pytest.raises(UsageError, match="class labels"):
        prefix_tokens(unconditional, "CG", torch.tensor([0]))
    # Without full generation among the model's tasks, the guidance twin keeps the task token.
    assert tasks.uncond_prefix_tokens(TINY, "outpainting_c", ["outpainting_c"]).tolist() == [[80, 69]]


def test_random_masking_counts_and_determinism():
    targets = torch.randint(0, 64, (3, 256))
    gen = lambda: torch.Generator().manual_seed(5)  # noqa: E731
    a = mask_tokens(TINY, "CG", targets, None, None, torch.tensor([0, 1, 2]), 0.3, generator=gen())
    b = mask_tokens(TINY, "CG", targets, None, None, torch.tensor([0, 1, 2]), 0.3, generator=gen())
    assert torch.equal(a.inputs, b.inputs)
    assert ((a.inputs[:, 2:] == TINY.mask_token).sum(1) == 76).all()  # floor(256 * 0.3)
    tiny = mask_tokens(TINY, "CG", targets, None, None, torch.tensor([0, 1, 2]), 0.0, generator=gen())
    assert ((tiny.inputs[:, 2:] == TINY.mask_token).sum(1) == 1).all()  # at least one
    assert a.weights[:, :2].sum() == 0 and a.weights[:, 2:].min() == 1


def test_sample_mask_ratio():
    ratios = [tasks.sample_mask_ratio(torch.Generator().manual_seed(s)) for s in range(200)]
    assert all(1e-6 <= r <= 1 for r in ratios)
    assert tasks.sample_mask_ratio(torch.Generator().manual_seed(3)) == ratios[3]
    # r = cos(pi u / 2) with u uniform has mean 2 / pi.
    assert np.mean(ratios) == pytest.approx(2 / np.pi, abs=0.06)


def test_task_schedule():
    eight = [t for t in TASKS if not TASKS[t].class_conditional]
    schedule = TaskSchedule.create(eight, seed=0)
    assert len(schedule.order) == 800 and set(Counter(schedule.order).values()) == {100}
    assert schedule.order != tuple(sorted(schedule.order))  # permuted
    assert schedule == TaskSchedule.create(eight, seed=0) == TaskSchedule.create(eight)  # seed 0 by default
    assert schedule.task_for_step(803) == schedule.order[3]
    weighted = TaskSchedule.create(["frame_prediction", "outpainting_c"], weights=[0.5, 1.0])
    assert Counter(weighted.order) == {"frame_prediction": 100, "outpainting_c": 200}
    heavy = TaskSchedule.create(["frame_prediction", "outpainting_c"], weights=[2.0, 3.0])
    assert Counter(heavy.order) == {"frame_prediction": 200, "outpainting_c": 300}
    with pytest.raises(UsageError):
        TaskSchedule.create(["frame_prediction"], weights=[0.0])


# ----------------------------------------------------------------- free baselines

def test_baselines_fill_only_unknown_pixels_the_way_their_names_say():
    video = torch.rand(2, 3, 16, 16, 16)
    ipc = condition("inpainting_c", video, (4, 2, 2))
    fills = tasks.baselines("inpainting_c", video, ipc)
    assert set(fills) == {"mean_colour_fill", "edge_replicate_fill"}
    keep = ipc.video_mask.expand(2, 3, 16, 16, 16)
    for fill in fills.values():
        assert torch.equal(fill[keep], video[keep])
    # The hole is rows/cols [4, 12): mean colour of the known pixels; the nearest side's pixel.
    known = ipc.video_mask.expand(2, 1, 16, 16, 16).float()
    mean = (video * known).sum((2, 3, 4)) / known.sum((2, 3, 4))
    assert torch.allclose(fills["mean_colour_fill"][:, :, 5, 8, 8], mean)
    edge = fills["edge_replicate_fill"]
    assert torch.equal(edge[:, :, 0, 4, 7], video[:, :, 0, 3, 7])  # top row of the hole: the pixel above
    assert torch.equal(edge[:, :, 0, 7, 11], video[:, :, 0, 7, 12])  # right column: the pixel to the right
    opc = condition("outpainting_c", video, (4, 2, 2))
    pad = tasks.baselines("outpainting_c", video, opc)["edge_replicate_padding"]
    assert torch.equal(pad[:, :, 0, 0, 0], video[:, :, 0, 4, 4]) and torch.equal(pad[:, :, 0, 15, 9], video[:, :, 0, 11, 9])
    fp = condition("frame_prediction", video, (4, 2, 2))
    assert torch.equal(tasks.baselines("frame_prediction", video, fp)["repeat_last_frame"][:, :, 9], video[:, :, 0])
    fi = condition("frame_interpolation", video, (4, 2, 2))
    blend = tasks.baselines("frame_interpolation", video, fi)["linear_blend"]
    assert torch.allclose(blend[:, :, 5], video[:, :, 0] + (video[:, :, 15] - video[:, :, 0]) * 5 / 15, atol=1e-6)
    with pytest.raises(UsageError, match="no known pixels"):
        tasks.baselines("full_generation", video, condition("full_generation", video, (4, 2, 2)))


def test_motion_interpolation_baseline_is_ffmpegs_between_the_known_frames(monkeypatch):
    """FI's third free baseline: the frames between the two known ones come from
    video.motion_interpolate, clip by clip; the known frames stay as they are."""
    from magvit_cli import video as vio

    video = torch.rand(2, 3, 16, 8, 8)
    video[1] = video[1].round()  # the two clips differ
    calls = []

    def fake(first, last, steps):
        calls.append((first.copy(), last.copy(), steps))
        return np.stack([np.full_like(first, 10 * len(calls) + k) for k in range(steps - 1)])

    monkeypatch.setattr(vio, "motion_interpolate", fake)
    fi = condition("frame_interpolation", video, (4, 2, 2))
    made = tasks.baselines("frame_interpolation", video, fi)["motion_interpolation"]
    assert [c[2] for c in calls] == [15, 15]
    for clip, (first, last, _) in enumerate(calls):
        assert np.array_equal(first, vio.tensor_to_frames(video[clip])[0])
        assert np.array_equal(last, vio.tensor_to_frames(video[clip])[15])
        assert torch.equal(made[clip, :, 0], video[clip, :, 0]) and torch.equal(made[clip, :, 15], video[clip, :, 15])
        for k in range(14):
            assert torch.allclose(made[clip, :, 1 + k], torch.full((3, 8, 8), (10 * (clip + 1) + k) / 255))


def test_motion_interpolation_fills_each_gap_and_repeats_the_outer_known_frames(monkeypatch):
    """Known frames 2, 4, 5 and 9 of 12: the gaps 3 and 6-8 come from motion_interpolate
    (2 and 4 steps), the adjacent pair 4-5 needs nothing, frames 0-1 repeat frame 2 and
    frames 10-11 repeat frame 9."""
    from magvit_cli import video as vio

    video = torch.rand(1, 3, 12, 4, 4)
    calls = []

    def fake(first, last, steps):
        calls.append(steps)
        return np.stack([np.full_like(first, 100 + 10 * len(calls) + k) for k in range(steps - 1)])

    monkeypatch.setattr(vio, "motion_interpolate", fake)
    keep = torch.zeros(1, 1, 12, 1, 1, dtype=torch.bool)
    keep[:, :, [2, 4, 5, 9]] = True
    made = tasks.motion_interpolated(video, keep)
    assert calls == [2, 4]
    for frame in (2, 4, 5, 9):
        assert torch.equal(made[:, :, frame], video[:, :, frame])
    for frame, value in ((3, 110), (6, 120), (7, 121), (8, 122)):
        assert torch.allclose(made[:, :, frame], torch.full((1, 3, 4, 4), value / 255))
    for frame, source in ((0, 2), (1, 2), (10, 9), (11, 9)):
        assert torch.equal(made[:, :, frame], video[:, :, source])


def test_edge_replicate_fill_by_hand():
    """The free baseline of the inpainting and outpainting rows, on a 6 x 7 frame whose pixel
    (y, x) holds 10 y + x: each hole pixel copies the known pixel just outside the hole's nearest
    side (ties: top, bottom, left, right; frame borders are not sides); known pixels forming a box
    extend to the frame by edge padding; frames with every or no pixel known stay as they are."""
    from magvit_cli.tasks import nearest_fill

    frame = (10 * torch.arange(6)[:, None] + torch.arange(7)[None, :]).float()
    video = torch.stack([frame, -frame])[None, :, None].repeat(1, 1, 5, 1, 1)  # [1, 2, 5, 6, 7]
    keep = torch.ones(1, 1, 5, 6, 7, dtype=torch.bool)
    keep[..., 0, 1:5, 2:4] = False  # an inner hole, 4 rows x 2 columns
    keep[..., 1, 0:2, 0:2] = False  # a hole in the corner
    keep[..., 2, :, :] = False
    keep[..., 2, 1:5, 2:5] = True  # outpainting: only a central box is known
    keep[..., 4, :, :] = False  # nothing known
    out = nearest_fill(video, keep)[0, 0]
    assert torch.equal(out[0, 1:5, 2:4], torch.tensor([[2., 3.], [21., 24.], [31., 34.], [52., 53.]]))
    assert torch.equal(out[1, 0:2, 0:2], torch.tensor([[20., 2.], [20., 21.]]))
    expected = frame[torch.arange(6).clamp(1, 4)][:, torch.arange(7).clamp(2, 4)]
    assert torch.equal(out[2], expected)
    assert torch.equal(out[3], frame) and torch.equal(out[4], frame)
    assert torch.equal(nearest_fill(video, keep)[0, 1], -out)  # every channel alike
    assert torch.equal(out[keep[0, 0]], video[0, 0][keep[0, 0]])  # known pixels untouched


def test_mask_tokens_needs_both_condition_inputs_and_takes_a_mask_per_sample():
    targets = torch.randint(0, 64, (2, TINY.num_latents), generator=torch.Generator().manual_seed(0))
    cond = torch.zeros_like(targets)
    for missing in ((cond, None), (None, torch.ones(1, TINY.num_latents, dtype=torch.bool))):
        with pytest.raises(UsageError, match="condition tokens and a latent mask"):
            mask_tokens(TINY, "FP", targets, *missing, None, 0.5)
    per_sample = torch.zeros(2, *TINY_LATENT, dtype=torch.bool)
    per_sample[0, 0] = True  # sample 0 knows its first latent frame, sample 1 nothing
    scores = torch.rand(2, TINY.num_latents, generator=torch.Generator().manual_seed(1))
    masked = mask_tokens(TINY, "FP", targets, cond, per_sample, None, 1.0, scores=scores)
    first = per_sample[0].flatten()
    assert (masked.inputs[0, TINY.num_prefix:][first] == 0).all()  # condition tokens where known
    assert (masked.inputs[0, TINY.num_prefix:][~first] == TINY.mask_token).all()
    assert (masked.inputs[1, TINY.num_prefix:] == TINY.mask_token).all()


def test_moving_strips_and_bands_at_odd_sizes():
    """Integer halves and quarters (official cond_utils uses // throughout)."""
    assert tasks.moving_starts(1, 8).tolist() == [0] and tasks.moving_starts(1, 8).dtype == torch.long
    assert tasks.moving_starts(2, 8).tolist() == [0, 4]
    assert tasks.moving_starts(3, 7).tolist() == [0, 2, 3]  # width // 2 = 3: 0, 1.5 -> 2, 3
    assert tasks._band(6).tolist() == [False, True, True, True, False, False]  # [6 // 4, 18 // 4) = [1, 4)
    assert tasks._moving(2, 7).int().tolist() == [[1, 1, 1, 0, 0, 0, 0], [0, 0, 0, 1, 1, 1, 0]]


def test_interpolate_padding_by_hand():
    """Frames 1, 4 and 5 of 8 known: frame 0 repeats frame 1, frames 2 and 3 blend frames 1
    and 4 by 1/3 and 2/3, frames 6 and 7 repeat frame 5."""
    values = torch.tensor([0.0, 3.0, 0.0, 0.0, 6.0, 9.0, 0.0, 0.0])
    video = values.view(1, 1, 8, 1, 1).expand(1, 3, 8, 2, 2).contiguous()
    keep = torch.zeros(1, 1, 8, 1, 1, dtype=torch.bool)
    keep[:, :, [1, 4, 5]] = True
    padded = tasks.pad_video(video, keep, "interpolate")
    assert torch.allclose(padded[0, 0, :, 0, 0], torch.tensor([3.0, 3.0, 4.0, 5.0, 6.0, 9.0, 9.0, 9.0]))


def test_edge_replicate_fill_at_the_frame_border_and_frame_by_frame():
    """Holes touching a border take their nearest side among the sides that are not on it;
    known pixels only in the bottom-right corner are a box (edge padding); each frame has its
    own mask, and frames with every or no pixel known stay as they are."""
    from magvit_cli.tasks import nearest_fill

    height, width = 8, 9
    frame = (10 * torch.arange(height)[:, None] + torch.arange(width)[None, :]).float()
    video = frame.view(1, 1, 1, height, width).repeat(1, 1, 7, 1, 1)
    keep = torch.ones(1, 1, 7, height, width, dtype=torch.bool)
    # rows, cols: bottom, right, top-to-bottom, and one pixel short of the bottom-right corner
    holes = {1: (5, 8, 2, 5), 3: (2, 5, 1, 9), 5: (0, 8, 3, 6), 6: (1, 7, 4, 8)}
    for f, (r0, r1, c0, c1) in holes.items():
        keep[0, 0, f, r0:r1, c0:c1] = False
    keep[0, 0, 2] = False
    keep[0, 0, 2, 6:, 7:] = True  # only the bottom-right corner known
    keep[0, 0, 4] = False  # nothing known (frame 0: everything)
    out = nearest_fill(video, keep)[0, 0]

    def by_hand(r0, r1, c0, c1):
        expected = frame.clone()
        for y in range(r0, r1):
            for x in range(c0, c1):
                sides = [(y - r0, (r0 - 1, x)) if r0 > 0 else None, (r1 - 1 - y, (r1, x)) if r1 < height else None,
                         (x - c0, (y, c0 - 1)) if c0 > 0 else None, (c1 - 1 - x, (y, c1)) if c1 < width else None]
                distance, (sy, sx) = min((s for s in sides if s), key=lambda s: s[0])  # first of equals wins
                expected[y, x] = frame[sy, sx]
        return expected

    for f, hole in holes.items():
        assert torch.equal(out[f], by_hand(*hole)), f
    assert torch.equal(out[2], frame[torch.arange(height).clamp(6, 7)][:, torch.arange(width).clamp(7, 8)])
    assert torch.equal(out[0], frame) and torch.equal(out[4], frame)


def test_sample_mask_ratio_is_the_cosine_of_a_uniform_draw():
    u = float(torch.rand((), generator=torch.Generator().manual_seed(3)))
    assert tasks.sample_mask_ratio(torch.Generator().manual_seed(3)) == pytest.approx(math.cos(math.pi / 2 * u))
    assert 0 < tasks.sample_mask_ratio() <= 1  # without a generator: the global one, on the CPU


def test_full_generation_knows_nothing():
    video = torch.rand(2, 3, 16, 32, 32)
    cond = condition("full_generation", video, TINY_LATENT)
    assert cond.video_mask.dim() == 5 and not cond.video_mask.any() and cond.video.abs().max() == 0
    assert cond.latent_mask.shape == (1, *TINY_LATENT) and not cond.latent_mask.any()
