"""The ten MAGVIT tasks and COMMIT conditioning (spec §6, §7).

A task says which pixels are known (the condition region), how the unknown pixels
are filled before tokenisation (padding), which latent positions carry condition
tokens, and which prefix tokens (task, class) start the sequence. Regions are computed
for any clip size T×H×W and latent grid t×h×w, from the official formulas in
`videogvt/train_lib/cond_utils.py` and `task_registry.py`.

Masks are boolean with True = known (condition). Videos are [B, 3, T, H, W].
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Sequence

import torch

# The task table lives in config.py (torch-free); `tasks.TASKS` stays its public name.
from .config import FULL_GENERATION, TASKS, Task, TransformerConfig, get_task  # noqa: F401 (TASKS)
from .decoding import mask_ratio, num_masked
from .errors import UsageError


# ----------------------------------------------------------------- regions

def moving_starts(length: int, width: int) -> torch.Tensor:
    """Start columns of a strip of width `width // 2` moving across `length` frames:
    round(linspace(0, width // 2, length)) with round-half-to-even (official jnp.round)."""
    if length == 1:
        return torch.zeros(1, dtype=torch.long)
    f = torch.arange(length, dtype=torch.float64)
    return torch.round(f * (width // 2) / (length - 1)).long()


def _frames_mask(length: int, first: int, last: int) -> torch.Tensor:
    """[1, length, 1, 1]: the first `first` and last `last` frames."""
    f = torch.arange(length)
    return ((f < first) | (f >= length - last)).view(1, length, 1, 1)


def _band(size: int) -> torch.Tensor:
    """[size]: the central half [size // 4, size * 3 // 4)."""
    i = torch.arange(size)
    return (i >= size // 4) & (i < size * 3 // 4)


def _moving(length: int, width: int) -> torch.Tensor:
    """[length, width]: per frame, columns [s_f, s_f + width // 2)."""
    start = moving_starts(length, width)[:, None]
    i = torch.arange(width)[None, :]
    return (i >= start) & (i < start + width // 2)


def _region_mask(task: Task, shape: tuple[int, int, int], frames: int) -> torch.Tensor:
    """Condition region over a grid of `shape` (pixels or latents) as [1, T|1, H|1, W|1]."""
    length, height, width = shape
    region = task.region
    if region == "first_frames":
        return _frames_mask(length, frames, 0)
    if region == "end_frames":
        return _frames_mask(length, frames, frames)
    if region == "central":
        return (_band(height)[:, None] & _band(width)[None, :]).view(1, 1, height, width)
    if region == "vertical":
        return _band(width).view(1, 1, 1, width)
    if region == "horizontal":
        return _band(height).view(1, 1, height, 1)
    if region == "moving_strip":
        return _moving(length, width).view(1, length, 1, width)
    if region == "central_hole":
        return ~(_band(height)[:, None] & _band(width)[None, :]).view(1, 1, height, width)
    if region == "moving_hole":
        hole = _band(height).view(1, 1, height, 1) & _moving(length, width).view(1, length, 1, width)
        return ~hole
    return torch.zeros(1, 1, 1, 1, dtype=torch.bool)  # "none": nothing known


# ----------------------------------------------------------------- padding

def _pad_edge(video: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """Replicate the border of a box-shaped known region outwards (numpy 'edge' padding)."""
    for axis in (2, 3, 4):
        if keep.shape[axis] == 1:
            continue
        others = [a for a in (0, 1, 2, 3, 4) if a != axis]
        inside = keep.any(dim=others).nonzero()[:, 0]
        index = torch.arange(video.shape[axis], device=video.device).clamp(int(inside[0]), int(inside[-1]))
        video = video.index_select(axis, index)
    return video


def _is_box(keep: torch.Tensor) -> bool:
    box = torch.ones_like(keep)
    for axis in (2, 3, 4):
        others = tuple(a for a in (0, 1, 2, 3, 4) if a != axis)
        inside = keep.any(dim=others).nonzero()[:, 0]
        span = torch.zeros(keep.shape[axis], dtype=torch.bool, device=keep.device)
        span[int(inside[0]):int(inside[-1]) + 1] = True
        shape = [1] * 5
        shape[axis] = -1
        box = box & span.view(shape)
    return bool(torch.equal(box.expand_as(keep), keep))


def _pad_interpolate(video: torch.Tensor, known_frames: torch.Tensor) -> torch.Tensor:
    """Unknown frames: linear blend of the nearest known frames before and after
    (official 'interpolate' padding); before the first / after the last known frame,
    that frame is repeated."""
    known = known_frames.nonzero()[:, 0].tolist()
    out = video.clone()
    for f in range(video.shape[2]):
        if known_frames[f]:
            continue
        before = [k for k in known if k < f]
        after = [k for k in known if k > f]
        if before and after:
            a, b = before[-1], after[0]
            # Same float32 arithmetic as cond_utils.frame_interpolation_cond.
            fraction = torch.tensor(f - a, dtype=torch.float32) / torch.tensor(b - a, dtype=torch.float32)
            start, end = video[:, :, a], video[:, :, b]
            out[:, :, f] = start + (end - start) * fraction.to(video.device)
        else:
            out[:, :, f] = video[:, :, before[-1] if before else after[0]]
    return out


PADDINGS = ("edge", "interpolate", "constant")


def pad_video(video: torch.Tensor, keep: torch.Tensor, padding: str) -> torch.Tensor:
    """The condition video: known pixels of `video` [B, 3, T, H, W] where `keep`
    ([B or 1, 1, T|1, H|1, W|1] bool) is True, `padding` elsewhere.

    edge: box-shaped known regions only; interpolate: whole known frames only;
    constant: zeros, any mask.
    """
    if padding not in PADDINGS:
        raise UsageError(f"unknown padding {padding!r}", f"use one of {', '.join(PADDINGS)}")
    keep = keep.to(video.device)
    if padding == "constant":
        return torch.where(keep, video, torch.zeros((), dtype=video.dtype, device=video.device))
    if not keep.any(dim=(1, 2, 3, 4)).all():
        raise UsageError("the condition mask keeps no pixel of some clip", "use constant padding or keep some pixels")
    if keep.shape[0] > 1:
        return torch.cat([pad_video(video[i:i + 1], keep[i:i + 1], padding) for i in range(keep.shape[0])])
    if padding == "edge":
        if not _is_box(keep):
            raise UsageError("edge padding needs a rectangular known region", "use constant padding for other masks")
        return _pad_edge(video, keep)
    per_frame = keep.any(dim=(3, 4)).view(-1)
    if not torch.equal(keep.expand(1, 1, -1, video.shape[3], video.shape[4]),
                       per_frame.view(1, 1, -1, 1, 1).expand(1, 1, -1, video.shape[3], video.shape[4])):
        raise UsageError("interpolate padding needs whole known frames", "use constant padding for other masks")
    return _pad_interpolate(video, per_frame.expand(video.shape[2]))


# ----------------------------------------------------------------- conditions

@dataclass
class Condition:
    video: torch.Tensor  # padded condition video [B, 3, T, H, W]
    video_mask: torch.Tensor  # bool, known pixels, broadcastable to [B, 1, T, H, W]
    latent_mask: torch.Tensor  # bool [B or 1, t, h, w], condition-token positions


def condition(task: Task | str, video: torch.Tensor, latent_shape: tuple[int, int, int],
              cond_frames: int = 1, cond_latent_frames: int = 1) -> Condition:
    """The official condition of `task` for `video` [B, 3, T, H, W] (cond_utils.*_cond).

    cond_frames / cond_latent_frames: known frames (at each end for interpolation) in
    pixels and in latent frames, used by FP, CFP and FI.
    """
    task = get_task(task)
    _check_video(video)
    _, _, length, height, width = video.shape
    _check_frames(task, cond_frames, length, "cond_frames")
    _check_frames(task, cond_latent_frames, latent_shape[0], "cond_latent_frames")
    keep = _region_mask(task, (length, height, width), cond_frames).unsqueeze(1).to(video.device)
    latent = _region_mask(task, tuple(latent_shape), cond_latent_frames).to(video.device)
    latent = latent.expand(1, *latent_shape)
    if not task.has_condition:
        return Condition(torch.zeros_like(video), keep, latent)
    return Condition(pad_video(video, keep, task.padding), keep, latent)


def condition_from_mask(video: torch.Tensor, keep_mask: torch.Tensor, padding: str,
                        latent_shape: tuple[int, int, int]) -> Condition:
    """A condition from any pixel mask `keep_mask` [B or 1, 1, T|1, H|1, W|1] (True = known).

    A latent position carries a condition token when its supervoxel contains a known
    pixel: the paper's rule (its ispad(z̃) is "the supervoxel holds only padding").
    It reproduces the official latent masks of the frame and rectangle tasks; with a
    single known frame the first latent frame is a condition frame, its other pixels
    filled by the padding.
    """
    _check_video(video)
    if keep_mask.dim() != 5 or keep_mask.shape[1] != 1:
        raise UsageError(f"a condition mask must be [B, 1, T, H, W], got shape {list(keep_mask.shape)}")
    keep_mask = keep_mask.to(device=video.device, dtype=torch.bool)
    b, _, length, height, width = video.shape
    full = keep_mask.expand(keep_mask.shape[0], 1, length, height, width)
    t, h, w = latent_shape
    if length % t or height % h or width % w:
        raise UsageError(f"a {length}x{height}x{width} clip does not divide into a {t}x{h}x{w} latent grid")
    cells = full.reshape(-1, t, length // t, h, height // h, w, width // w)
    latent = cells.any(dim=6).any(dim=4).any(dim=2)
    return Condition(pad_video(video, keep_mask, padding), keep_mask, latent)


# ----------------------------------------------------------------- free baselines

def baselines(task: Task | str, video: torch.Tensor, cond: Condition) -> dict[str, torch.Tensor]:
    """The fills a user gets for free, to measure a task's output against: the condition
    video's own padding for the frame tasks (repeating the last frame, blending linearly)
    and, for interpolation, FFmpeg's motion-compensated interpolation,
    nearest-known-pixel padding for outpainting, and for inpainting the clip's mean colour
    and the nearest known pixel. Known pixels stay as they are."""
    task = get_task(task)
    if not task.has_condition:
        raise UsageError(f"{task.short} has no known pixels to fill from")
    keep = cond.video_mask
    if task.id.startswith("frame_prediction"):
        return {"repeat_last_frame": cond.video}
    if task.id == "frame_interpolation":
        return {"linear_blend": cond.video, "motion_interpolation": motion_interpolated(video, keep)}
    if task.id.startswith("inpainting"):
        return {"mean_colour_fill": mean_fill(video, keep), "edge_replicate_fill": nearest_fill(video, keep)}
    return {"edge_replicate_padding": nearest_fill(video, keep)}


def motion_interpolated(video: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """Unknown frames between two known ones made by FFmpeg's motion-compensated
    interpolation (video.motion_interpolate), per clip; frames before the first or after
    the last known frame repeat it. `keep` ([1, 1, T, H|1, W|1]) marks the known frames."""
    from .video import frames_to_tensor, motion_interpolate, tensor_to_frames

    known = keep.any(dim=(3, 4)).view(-1).nonzero()[:, 0].tolist()  # as pad_video: one mask for the batch
    out = video.clone()
    for clip in range(video.shape[0]):
        frames = tensor_to_frames(video[clip].float().cpu())  # [T, H, W, 3] uint8
        for a, b in zip(known, known[1:]):
            if b - a > 1:
                made = frames_to_tensor(motion_interpolate(frames[a], frames[b], b - a))
                out[clip, :, a + 1:b] = made.to(video)
        out[clip, :, :known[0]] = video[clip, :, known[0], None]
        out[clip, :, known[-1] + 1:] = video[clip, :, known[-1], None]
    return out


def mean_fill(video: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """Unknown pixels take the clip's mean colour over its known pixels."""
    keep = keep.expand(video.shape[0], 1, *video.shape[2:]).to(video.dtype)
    mean = (video * keep).sum((2, 3, 4), keepdim=True) / keep.sum((2, 3, 4), keepdim=True)
    return torch.where(keep.bool(), video, mean)


def nearest_fill(video: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """Edge-replicate fill of every unknown pixel, frame by frame, for one mask shared by
    the batch. Where the known pixels form a box (outpainting), coordinates are clamped
    into it; where the unknown pixels form a box (inpainting), each takes the known pixel
    just outside the hole's nearest side (ties: top, bottom, left, right)."""
    out = video.clone()
    _, _, length, height, width = video.shape
    keep = keep.expand(1, 1, length, height, width)[0, 0]
    rows, cols = torch.arange(height, device=video.device), torch.arange(width, device=video.device)
    for f in range(length):
        known = keep[f]
        if known.all() or not known.any():
            continue
        hole = ~known
        r, c = hole.any(1).nonzero()[:, 0], hole.any(0).nonzero()[:, 0]
        top, bottom, left, right = int(r[0]), int(r[-1]), int(c[0]), int(c[-1])
        if known[top:bottom + 1, left:right + 1].any():  # known pixels form a box: edge padding
            out[:, :, f:f + 1] = _pad_edge(video[:, :, f:f + 1], known.view(1, 1, 1, height, width))
            continue
        y = rows[top:bottom + 1, None].expand(-1, right - left + 1)
        x = cols[None, left:right + 1].expand(bottom - top + 1, -1)
        far = torch.full_like(y, height + width)
        # Distance to each side of the hole, infinite where that side is the frame's border.
        sides = torch.stack([y - top if top > 0 else far, bottom - y if bottom < height - 1 else far,
                             x - left if left > 0 else far, right - x if right < width - 1 else far])
        nearest = sides.argmin(0)
        sy = torch.stack([torch.full_like(y, top - 1), torch.full_like(y, bottom + 1), y, y]).gather(0, nearest[None])[0]
        sx = torch.stack([x, x, torch.full_like(x, left - 1), torch.full_like(x, right + 1)]).gather(0, nearest[None])[0]
        # A side on the frame's border is never nearest (some side of a hole that is not the whole frame is not on it).
        out[:, :, f, top:bottom + 1, left:right + 1] = video[:, :, f, sy, sx]
    return out


def _check_video(video: torch.Tensor) -> None:
    if video.dim() != 5 or video.shape[1] != 3:
        raise UsageError(f"expected a video tensor [B, 3, T, H, W], got shape {list(video.shape)}")


def _check_frames(task: Task, frames: int, length: int, name: str) -> None:
    if task.region == "first_frames" and not 0 < frames < length:
        raise UsageError(f"{name} must be in [1, {length - 1}] for {task.short}, got {frames}")
    if task.region == "end_frames" and not 0 < 2 * frames < length:
        raise UsageError(f"{name} must be in [1, {(length - 1) // 2}] for {task.short} "
                         f"(known frames at both ends of {length}), got {frames}")


# ----------------------------------------------------------------- tokens

def prefix_tokens(config: TransformerConfig, task: Task | str, labels: torch.Tensor | None = None,
                  batch_size: int = 1) -> torch.Tensor:
    """[B, P] prefix: task token (multi-task models only), then the class token
    (label + K for class-conditional tasks, UNCOND otherwise). B = len(labels) if given."""
    task = get_task(task)
    if labels is not None:
        labels = labels.reshape(-1).long()
        batch_size = labels.shape[0]
    if task.class_conditional:
        if labels is None:
            raise UsageError(f"{task.short} ({task.id}) needs a class label")
        if config.num_classes == 0 or labels.min() < 0 or labels.max() >= config.num_classes:
            raise UsageError(f"class labels must be in [0, {config.num_classes - 1}] for this model, "
                             f"got {labels.tolist()}")
        classes = labels + config.codebook_size
    else:
        classes = torch.full((batch_size,), config.uncond_token, dtype=torch.long)
    return _with_task_token(config, task.token, classes)


def uncond_prefix_tokens(config: TransformerConfig, task: Task | str, model_tasks: Sequence[str],
                         batch_size: int = 1) -> torch.Tensor:
    """[B, P] prefix of the classifier-free-guidance twin: class UNCOND, and the task
    token FULL_GENERATION when the model was trained for full generation
    (maskgvt_train_lib.generate_masked_tokens)."""
    classes = torch.full((batch_size,), config.uncond_token, dtype=torch.long)
    return _with_task_token(config, _uncond_task_token(get_task(task), model_tasks), classes)


def _uncond_task_token(task: Task, model_tasks: Sequence[str] | None) -> int:
    if any(t.startswith("full_generation") for t in (model_tasks or ())):
        return FULL_GENERATION
    return task.token


def _with_task_token(config: TransformerConfig, token: int, classes: torch.Tensor) -> torch.Tensor:
    columns = [classes.cpu()]
    if config.multi_task:
        columns.insert(0, torch.full_like(columns[0], config.special_token(token)))
    return torch.stack(columns, dim=1).to(classes.device)


@dataclass
class MaskedTokens:
    inputs: torch.Tensor  # [B, L] corrupted sequence fed to the transformer
    targets: torch.Tensor  # [B, L] ground truth (prefix + target codes)
    weights: torch.Tensor  # [B, L] float loss weights: 1 on every latent, 0 on the prefix
    uncond_inputs: torch.Tensor  # [B, L] unconditional twin for classifier-free guidance


def mask_tokens(config: TransformerConfig, task: Task | str, targets: torch.Tensor,
                cond_tokens: torch.Tensor | None, latent_mask: torch.Tensor | None,
                labels: torch.Tensor | None, ratio: float, scores: torch.Tensor | None = None,
                generator: torch.Generator | None = None,
                model_tasks: Sequence[str] | None = None) -> MaskedTokens:
    """COMMIT training corruption (maskgvt_train_lib.generate_masked_tokens with
    mask_utils.random_mask, condition_mode 'cond->input', weights 'mask+refine+recons').

    targets [B, N] codes; cond_tokens [B, N] and latent_mask [B or 1, N] (or [.., t, h, w])
    for tasks with a condition; scores [B, N] (default U[0, 1)). The n = floor(N·ratio)
    lowest-score positions are selected: in the condition region they get the condition
    token, elsewhere MASK; other positions keep the target. model_tasks (the model's
    task list) decides the task token of the unconditional twin.
    """
    task = get_task(task)
    batch, n_latents = targets.shape
    device = targets.device
    if scores is None:
        source = generator.device if generator is not None else device
        scores = torch.rand(batch, n_latents, generator=generator, device=source).to(device)
    ratio = min(max(float(ratio), 1e-6), 1.0)
    n = min(num_masked(n_latents, ratio), n_latents)
    cutoff = torch.sort(scores, dim=-1).values[:, n - 1:n]
    selected = scores <= cutoff

    mask_id = config.mask_token
    if task.has_condition:
        if cond_tokens is None or latent_mask is None:
            raise UsageError(f"{task.short} needs condition tokens and a latent mask")
        latent_mask = latent_mask.reshape(latent_mask.shape[0], -1).to(device)
        replace = torch.where(latent_mask, cond_tokens.to(device), mask_id)
    else:
        replace = torch.full_like(targets, mask_id)
    latent_inputs = torch.where(selected, replace, targets)
    latent_uncond = torch.where(selected, torch.full_like(targets, mask_id), targets)

    prefix = prefix_tokens(config, task, labels, batch_size=batch).to(device)
    classes = torch.full((batch,), config.uncond_token, dtype=torch.long)
    uncond_prefix = _with_task_token(config, _uncond_task_token(task, model_tasks or [task.id]), classes).to(device)
    weights = torch.cat([torch.zeros(prefix.shape, device=device), torch.ones(batch, n_latents, device=device)], 1)
    return MaskedTokens(
        inputs=torch.cat([prefix, latent_inputs], dim=1),
        targets=torch.cat([prefix, targets], dim=1),
        weights=weights,
        uncond_inputs=torch.cat([uncond_prefix, latent_uncond], dim=1),
    )


def sample_mask_ratio(generator: torch.Generator | None = None) -> float:
    """Training mask ratio: cos(π/2 · u), u ~ U[0, 1), clipped to [1e-6, 1]; one per step."""
    u = torch.rand((), generator=generator, device=generator.device if generator is not None else "cpu")
    return mask_ratio("cosine", float(u), 1)


@dataclass(frozen=True)
class TaskSchedule:
    """Multi-task training order (maskgvt_trainer): each task repeated in proportion to
    its weight, permuted once; step s trains order[s % len(order)]."""

    order: tuple[str, ...]

    @classmethod
    def create(cls, tasks: Sequence[str], weights: Sequence[float] | None = None,
               seed: int = 0) -> TaskSchedule:
        if not tasks:
            raise UsageError("a task schedule needs at least one task")
        for task in tasks:
            get_task(task)
        weights = list(weights) if weights is not None else [1.0] * len(tasks)
        if len(weights) != len(tasks) or min(weights) <= 0:
            raise UsageError("task weights must be positive, one per task")
        # get_task_idx_sequence: the smallest weight (capped at 1) counts 100.
        scale = 100 / min(1.0, min(weights))
        counts = [int(round(w * scale)) for w in weights]  # round half to even, as np.round
        order = [task for task, count in zip(tasks, counts) for _ in range(count)]
        random.Random(seed).shuffle(order)
        return cls(tuple(order))

    def task_for_step(self, step: int) -> str:
        return self.order[step % len(self.order)]
