"""Non-autoregressive COMMIT decoding (official `train_lib/parallel_decode.py`).

Every latent position starts "unknown" (condition tokens in the condition region,
MASK elsewhere). Each step samples all unknown positions in parallel, keeps the most
confident samples and re-masks the rest; the number re-masked follows a schedule that
reaches zero at the last step, whose samples are the output.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch

from .errors import UsageError
from .transformer import Transformer

SCHEDULES = ("cosine", "uniform", "log", "exp", "pow<X>")
DTYPE_OPTIONS = ("auto", "float32", "bfloat16")  # also accepted: fp32, bf16


@dataclass
class DecodeOptions:
    """Settings of COMMIT decoding (spec §8.4 defaults).

    Two temperatures: `temperature` divides the logits that tokens are sampled from, and
    `choice_temperature` scales the Gumbel noise on the confidences that pick which
    samples are kept at each step (annealed to 0 over the steps)."""

    steps: int = 12
    schedule: str = "cosine"
    choice_temperature: float = 4.5
    temperature: float = 1.0
    guidance: float = 0.0
    seed: int | None = None
    dtype: str = "auto"  # "auto" | "float32" | "bfloat16"

    def check(self) -> None:
        if not 1 <= self.steps <= 1024:
            raise UsageError(f"--steps must be in [1, 1024], got {self.steps}")
        if not math.isfinite(self.temperature) or self.temperature <= 0:
            raise UsageError(f"--sample-temperature must be a positive number, got {self.temperature}")
        if not math.isfinite(self.choice_temperature) or self.choice_temperature < 0:
            raise UsageError(f"--choice-temperature must be a number >= 0, got {self.choice_temperature}")
        if self.seed is not None and not 0 <= self.seed < 2**63:
            raise UsageError(f"--seed must be in [0, 2**63), got {self.seed}")
        if not math.isfinite(self.guidance) or self.guidance < 0:
            raise UsageError(f"--guidance must be >= 0, got {self.guidance}")
        if self.dtype not in DTYPE_OPTIONS:
            raise UsageError(f"--dtype must be auto, float32 or bfloat16, got {self.dtype}")
        mask_ratio(self.schedule, 0.5, 16)  # raises on an unknown schedule


def make_generator(device: torch.device, seed: int | None) -> torch.Generator:
    """A random generator on `device`, seeded with `seed` (None: a fresh random seed)."""
    generator = torch.Generator(device=device)
    if seed is None:
        generator.seed()
    else:
        generator.manual_seed(seed)
    return generator


def mask_ratio(schedule: str, progress: float, num_tokens: int) -> float:
    """Fraction of tokens still masked at `progress` in [0, 1] (official mask_schedule.schedule).

    Computed in float32 like the official code, so floor(N · ratio) matches it exactly.
    """
    p = torch.as_tensor(progress, dtype=torch.float32).cpu()
    log2_n = torch.log2(torch.tensor(float(num_tokens), dtype=torch.float32))
    if schedule == "cosine":
        ratio = torch.cos(math.pi / 2.0 * p)
    elif schedule == "uniform":
        ratio = 1.0 - p
    elif schedule == "log":
        ratio = -torch.log2(p) / log2_n
    elif schedule == "exp":
        ratio = 1.0 - torch.exp2(-log2_n * (1.0 - p))
    elif schedule.startswith("pow") and _is_number(schedule[3:]):
        ratio = 1.0 - p ** float(schedule[3:])
    else:
        raise UsageError(f"unknown mask schedule {schedule!r}", f"use one of {', '.join(SCHEDULES)} (e.g. pow2)")
    return float(torch.clamp(ratio, 1e-6, 1.0))


def num_masked(num_tokens: int, ratio: float) -> int:
    """floor(N · ratio) in float32, at least 1 (official mask_utils.random_mask)."""
    n = torch.floor(torch.tensor(num_tokens, dtype=torch.float32) * torch.tensor(ratio, dtype=torch.float32))
    return max(int(n), 1)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def autocast_dtype(device: torch.device | str, dtype_option: str = "auto") -> torch.dtype | None:
    """Autocast dtype for inference, or None for plain float32.

    "auto" picks bfloat16 on CUDA and on CPUs with native bf16 matrix instructions
    (AVX512-BF16 / AMX), where it is several times faster than float32.
    """
    device = torch.device(device)
    if dtype_option in ("float32", "fp32"):
        return None
    if dtype_option in ("bfloat16", "bf16"):
        return torch.bfloat16
    if dtype_option != "auto":
        raise UsageError(f"unknown dtype {dtype_option!r}", f"use one of {', '.join(DTYPE_OPTIONS)}")
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else None
    if device.type == "cpu" and _cpu_has_native_bf16():
        return torch.bfloat16
    return None


def autocast(device: torch.device | str, dtype_option: str = "auto") -> torch.autocast:
    """The autocast context of `dtype_option` on `device` (disabled where it means float32).
    It covers the tokenizer's convolutions as well as the transformer: on a CPU with native
    bf16 both run about twice as fast, at no quality cost measurable on held-out clips
    (benchmarks/README.md, CPU levers); the quantizer always runs in float32."""
    device = torch.device(device)
    dtype = autocast_dtype(device, dtype_option)
    return torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None)


def _cpu_has_native_bf16() -> bool:
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(torch.cpu, name, lambda: False)() for name in checks)


def _uniform(shape: tuple[int, ...], generator: torch.Generator | None, device: torch.device) -> torch.Tensor:
    """U[0, 1) drawn on the generator's device, so a seed gives the same numbers wherever the model runs."""
    source = generator.device if generator is not None else device
    return torch.rand(shape, generator=generator, device=source).to(device)


def _gumbel(shape: tuple[int, ...], generator: torch.Generator | None, device: torch.device) -> torch.Tensor:
    u = _uniform(shape, generator, device)
    return -torch.log(-torch.log(u.clamp_min(torch.finfo(u.dtype).tiny)))


def decode(
    transformer: Transformer,
    prefix: torch.Tensor,
    cond_tokens: torch.Tensor,
    cond_mask: torch.Tensor,
    *,
    steps: int = 12,
    schedule: str = "cosine",
    choice_temperature: float = 4.5,
    temperature: float = 1.0,
    guidance: float = 0.0,
    uncond_prefix: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    dtype: str = "auto",
    on_step: Callable[[int, int], None] | None = None,
) -> torch.Tensor:
    """COMMIT decoding of N latent tokens; returns codes [B, N] in [0, codebook_size).

    prefix [B or 1, P]: task/class tokens (tasks.prefix_tokens). cond_tokens [B, N] and
    cond_mask [B or 1, N]: condition tokens and where they apply (all False for pure
    generation). Condition tokens are inputs that the model refines, not frozen outputs.
    guidance > 0 adds classifier-free guidance against `uncond_prefix` with every
    unknown position MASK: logits = l_c + s · (l_c - l_u).
    on_step(done, steps) is called after each step.
    """
    config = transformer.config
    if steps < 1:
        raise UsageError(f"steps must be at least 1, got {steps}")
    if temperature <= 0:
        raise UsageError(f"temperature must be positive, got {temperature}")
    if choice_temperature < 0 or guidance < 0:
        raise UsageError("choice temperature and guidance must not be negative")
    if guidance > 0 and uncond_prefix is None:
        raise UsageError("classifier-free guidance needs the unconditional prefix")
    mask_ratio(schedule, 1.0, config.num_latents)  # reject an unknown schedule before any work

    device = transformer.head_bias.device
    batch, num_tokens = cond_tokens.shape
    if num_tokens != config.num_latents:
        raise UsageError(f"expected {config.num_latents} condition tokens per sample, got {num_tokens}")
    k, mask_id = config.codebook_size, config.mask_token
    prefix = prefix.to(device).expand(batch, -1)
    cond_tokens = cond_tokens.to(device)
    cond_mask = cond_mask.to(device).expand(batch, -1)
    if guidance > 0:
        uncond_prefix = uncond_prefix.to(device).expand(batch, -1)
    remask_value = torch.where(cond_mask, cond_tokens, mask_id)  # cond->input: condition token, else MASK

    canvas = remask_value.clone()
    uncond_canvas = torch.full_like(canvas, mask_id)
    unknown = torch.ones_like(cond_mask)
    was_training = transformer.training
    transformer.eval()
    try:
        with torch.inference_mode(), autocast(device, dtype):
            for step in range(steps):
                logits = _code_logits(transformer, prefix, canvas, k)
                if guidance > 0:
                    uncond = _code_logits(transformer, uncond_prefix, uncond_canvas, k)
                    logits = logits + guidance * (logits - uncond)
                # Categorical sampling as Gumbel-max (= jax.random.categorical).
                sampled = torch.argmax(logits / temperature + _gumbel(logits.shape, generator, device), dim=-1)
                sampled = torch.where(unknown, sampled, canvas)
                if step == steps - 1:
                    break
                probs = torch.softmax(logits, dim=-1).gather(-1, sampled[..., None])[..., 0]
                confidence = torch.where(unknown, torch.log(probs), math.inf)
                progress = (step + 1) / steps
                noise = choice_temperature * (1.0 - progress) * _gumbel(confidence.shape, generator, device)
                remask = _lowest(confidence + noise, num_masked(num_tokens, mask_ratio(schedule, progress, num_tokens)),
                                 unknown.sum(-1))
                canvas = torch.where(remask, remask_value, sampled)
                uncond_canvas = torch.where(remask, mask_id, sampled)
                unknown = remask
                if on_step is not None:
                    on_step(step + 1, steps)
    finally:
        transformer.train(was_training)
    if on_step is not None:
        on_step(steps, steps)
    return sampled


def _code_logits(transformer: Transformer, prefix: torch.Tensor, canvas: torch.Tensor, k: int) -> torch.Tensor:
    """Float32 logits of the latent positions over the K visual codes only."""
    logits = transformer(torch.cat([prefix, canvas], dim=1))
    return logits[:, prefix.shape[1]:, :k].float()


def _lowest(score: torch.Tensor, n: int, num_unknown: torch.Tensor) -> torch.Tensor:
    """Positions whose score is <= the n-th smallest, n clipped to [1, #unknown - 1] per sample.

    Known positions score +inf, so they are never picked and each step commits at least
    one new token (official mask_utils.random_mask with num_masked_limits).
    """
    count = torch.clamp(torch.full_like(num_unknown, n), min=1)
    count = torch.minimum(count, num_unknown - 1)
    cutoff = torch.sort(score, dim=-1).values.gather(-1, (count - 1).clamp_min(0)[:, None])
    return (score <= cutoff) & (count[:, None] > 0)
