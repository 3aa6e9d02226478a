import math

import numpy as np
import pytest
import torch

from magvit_cli.decoding import DecodeOptions, autocast_dtype, decode, mask_ratio, num_masked
from magvit_cli.errors import UsageError
from magvit_cli.tasks import TASKS, prefix_tokens, uncond_prefix_tokens
from magvit_cli.transformer import Transformer, TransformerConfig

CONFIG = TransformerConfig(codebook_size=32, num_classes=3, multi_task=True, latent_shape=(2, 8, 8),
                           hidden_size=32, num_layers=1, num_heads=2, mlp_dim=64)
N = CONFIG.num_latents
MASK = CONFIG.mask_token


@pytest.mark.parametrize("schedule", ["cosine", "uniform", "pow2", "log", "exp"])
def test_schedules_match_the_official_ones(reference_dir, schedule):
    expected = np.load(reference_dir / "mask_schedule.npz")
    ours = [mask_ratio(schedule, float(p), 256) for p in expected["progress"]]
    # cosine / uniform / pow are bit-exact; log2 / exp2 differ from XLA's by 1 ulp.
    np.testing.assert_allclose(ours, expected[schedule], atol=1e-7, rtol=0)


@pytest.mark.parametrize("schedule, unknown", [
    ("cosine", [1015, 989, 946, 886, 812, 724, 623, 511, 391, 265, 133, 0]),
    ("exp", [1022, 1020, 1018, 1013, 1006, 992, 966, 922, 842, 701, 449, 0]),
    ("uniform", [938, 853, 768, 682, 597, 512, 426, 341, 256, 170, 85, 0]),
])
def test_tokens_still_unknown_after_each_step(schedule, unknown):
    """Spec §8.3: floor(1024 · γ((t + 1) / 12)) for N = 1024."""
    counts = [int(np.floor(np.float32(1024) * np.float32(mask_ratio(schedule, (t + 1) / 12, 1024))))
              for t in range(12)]
    assert counts == unknown
    assert num_masked(1024, mask_ratio(schedule, 1.0, 1024)) == 1  # clipped to at least one


def test_unknown_schedule_is_a_usage_error():
    for schedule in ("zigzag", "abc2", "pow"):  # "pow" needs its exponent; only "pow" takes one
        with pytest.raises(UsageError, match="schedule"):
            mask_ratio(schedule, 0.5, 1024)
    assert mask_ratio("pow0.5", 0.25, 1024) == pytest.approx(0.5)
    assert mask_ratio("log", 0.01, 16) == 1.0  # -log2(0.01) / 4 = 1.66, clipped to 1


@pytest.mark.parametrize("setting, accepted, refused", [
    ("steps", [1, 1024], [0, 1025]),
    ("temperature", [1e-6, 1.0], [0.0, -1.0, math.inf, math.nan]),
    ("choice_temperature", [0.0, 0.5, 4.5], [-1e-6, math.inf, math.nan]),
    ("guidance", [0.0, 3.0], [-0.5, math.inf, math.nan]),
    ("seed", [None, 0, 2**63 - 1], [-1, 2**63]),
    ("dtype", ["auto", "float32", "bfloat16"], ["fp16", "int8"]),
])
def test_decode_options_accept_exactly_their_ranges(setting, accepted, refused):
    for value in accepted:
        DecodeOptions(**{setting: value}).check()
    for value in refused:
        with pytest.raises(UsageError):
            DecodeOptions(**{setting: value}).check()


def test_autocast_dtype():
    assert autocast_dtype("cpu", "float32") is None
    assert autocast_dtype("cpu", "fp32") is None
    assert autocast_dtype("cpu", "bf16") == torch.bfloat16
    native = torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()
    assert autocast_dtype("cpu", "auto") == (torch.bfloat16 if native else None)
    with pytest.raises(UsageError):
        autocast_dtype("cpu", "int8")


class Recorder(Transformer):
    """A random transformer that records its inputs and never predicts code 0, so
    condition tokens set to 0 tell apart unknown positions from committed ones."""

    def __init__(self, config):
        super().__init__(config)
        self.calls = []

    def forward(self, tokens):
        self.calls.append(tokens.clone())
        logits = super().forward(tokens).clone()
        logits[..., 0] = -1e4
        return logits


@pytest.fixture
def model():
    torch.manual_seed(0)
    return Recorder(CONFIG)


def run(model, cond_mask, seed=0, **kwargs):
    batch = cond_mask.shape[0]
    prefix = prefix_tokens(CONFIG, "outpainting_c", batch_size=batch)
    cond_tokens = torch.zeros(batch, N, dtype=torch.long)
    kwargs.setdefault("dtype", "float32")
    return decode(model, prefix, cond_tokens, cond_mask, generator=torch.Generator().manual_seed(seed), **kwargs)


@pytest.mark.parametrize("schedule", ["cosine", "uniform", "exp"])
def test_decoding_commits_tokens_and_never_remasks_them(model, schedule):
    cond_mask = torch.zeros(2, N, dtype=torch.bool)
    cond_mask[0, :40] = True  # sample 0 has condition tokens, sample 1 none
    out = run(model, cond_mask, schedule=schedule)
    steps = 12
    canvases = [c[:, CONFIG.num_prefix:] for c in model.calls]
    assert len(canvases) == steps
    assert out.shape == (2, N) and out.min() >= 1 and out.max() < CONFIG.codebook_size
    unknown = torch.ones(2, N, dtype=torch.bool)
    for step, canvas in enumerate(canvases):
        now_unknown = (canvas == MASK) | (cond_mask & (canvas == 0))
        assert not (canvas[cond_mask] == MASK).any()  # re-masked condition positions get their token back
        assert not (now_unknown & ~unknown).any()  # a committed token is never re-masked
        committed = ~now_unknown
        assert torch.equal(canvas[committed], out[committed])  # ... nor changed afterwards
        if step > 0:
            expected = min(num_masked(N, mask_ratio(schedule, step / steps, N)), int(unknown[0].sum()) - 1)
            assert now_unknown.sum(1).tolist() == [expected, expected]
        else:
            assert now_unknown.all()
        unknown = now_unknown


def test_one_step_decoding_samples_everything(model):
    out = run(model, torch.zeros(1, N, dtype=torch.bool), steps=1)
    assert len(model.calls) == 1 and out.shape == (1, N)


def test_same_seed_same_output(model):
    cond_mask = torch.zeros(1, N, dtype=torch.bool)
    a = run(model, cond_mask, seed=3)
    b = run(model, cond_mask, seed=3)
    c = run(model, cond_mask, seed=4)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_progress_callback_and_training_mode_restored(model):
    seen = []
    model.train()
    run(model, torch.zeros(1, N, dtype=torch.bool), steps=5, on_step=lambda done, total: seen.append((done, total)))
    assert seen == [(1, 5), (2, 5), (3, 5), (4, 5), (5, 5)]
    assert model.training


def test_classifier_free_guidance(model):
    cond_mask = torch.zeros(2, N, dtype=torch.bool)
    cond_mask[:, :64] = True
    uncond = uncond_prefix_tokens(CONFIG, "outpainting_c", list(TASKS), batch_size=2)
    out = run(model, cond_mask, guidance=2.0, uncond_prefix=uncond)
    assert out.shape == (2, N) and out.max() < CONFIG.codebook_size
    assert len(model.calls) == 24  # conditional + unconditional pass per step
    first_uncond = model.calls[1]
    assert torch.equal(first_uncond[:, :2], uncond)
    assert (first_uncond[:, 2:] == MASK).all()  # condition tokens are not shown to the unconditional pass
    later = model.calls[-1]
    assert ((later[:, 2:] == MASK) | (later[:, 2:] > 0)).all()
    with pytest.raises(UsageError, match="unconditional"):
        run(model, cond_mask, guidance=1.0)


def test_bad_settings_are_usage_errors(model):
    cond_mask = torch.zeros(1, N, dtype=torch.bool)
    for kwargs in ({"steps": 0}, {"temperature": 0.0}, {"schedule": "zigzag"}, {"choice_temperature": -1.0}):
        with pytest.raises(UsageError):
            run(model, cond_mask, **kwargs)
    assert model.calls == []


def test_bfloat16_decoding_runs(model):
    out = run(model, torch.zeros(1, N, dtype=torch.bool), dtype="bf16")
    assert out.dtype == torch.long and out.shape == (1, N)


class Peaked(Transformer):
    """Fixed logits: positions in `sure` put all mass on code 5, every other position is
    flat over the codes; records the canvases it is shown."""

    def __init__(self, config, sure):
        super().__init__(config)
        self.sure, self.calls = sure, []

    def forward(self, tokens):
        self.calls.append(tokens.clone())
        logits = torch.zeros(*tokens.shape, CONFIG.codebook_size)
        logits[:, CONFIG.num_prefix + self.sure, 5] = 50.0
        return logits


def test_the_most_confident_samples_are_kept_and_the_least_confident_remasked():
    """Guards against a flipped confidence sign (keeping the least confident samples)."""
    # Two cosine steps on N = 128: floor(128 * cos(pi / 4)) = 90 re-masked after step 1, 38 kept.
    sure = torch.arange(0, 2 * 38, 2)  # 38 scattered positions with a near-certain code
    model = Peaked(CONFIG, sure)
    out = decode(model, prefix_tokens(CONFIG, "outpainting_c"), torch.zeros(1, N, dtype=torch.long),
                 torch.zeros(1, N, dtype=torch.bool), steps=2, choice_temperature=0.0, dtype="float32",
                 generator=torch.Generator().manual_seed(0))
    second = model.calls[1][0, CONFIG.num_prefix:]
    kept = (second != MASK).nonzero()[:, 0]
    assert kept.tolist() == sure.tolist(), f"kept {kept.tolist()}"
    assert (second[sure] == 5).all() and (out[0, sure] == 5).all()
