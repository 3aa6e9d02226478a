import math
import warnings

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
    for schedule in ("zigzag", "abc2", "pow", "powx"):  # "pow" needs a numeric exponent; only "pow" takes one
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


# ---------------------------------------------------------------- COMMIT against its definition

SMALL = TransformerConfig(codebook_size=6, num_classes=0, multi_task=True, latent_shape=(1, 2, 4), hidden_size=8,
                          num_layers=1, num_heads=1, mlp_dim=8)


class TokenTable(Transformer):
    """Logits that depend on the whole input: a fixed table per (position, token shown there)
    plus a fixed table per (prefix token), so a changed canvas or prefix changes the logits."""

    def __init__(self, config):
        super().__init__(config)
        g = torch.Generator().manual_seed(11)
        self.by_token = torch.randn(config.seq_length, config.vocab_size, config.codebook_size, generator=g) * 2
        self.by_prefix = torch.randn(config.vocab_size, config.num_latents, config.codebook_size, generator=g) * 2

    def forward(self, tokens):
        positions = torch.arange(tokens.shape[1])
        logits = self.by_token[positions, tokens] + 0.0  # [B, P + N, K]
        logits[:, SMALL.num_prefix:] += self.by_prefix[tokens[:, 0]]
        pad = torch.full((*logits.shape[:2], self.config.vocab_size - self.config.codebook_size), -1e9)
        return torch.cat([logits, pad], dim=-1)


def commit_by_hand(model, prefix, uncond_prefix, cond_tokens, cond_mask, steps, choice_temperature, temperature,
                   guidance, noises):
    """Spec §8.4 written out position by position: sample every unknown position (Gumbel-max of
    logits / temperature), keep the known ones; score each newly sampled token by its log
    probability plus choice_temperature * (1 - progress) * Gumbel noise, known ones +inf; re-mask
    the floor(N * cosine ratio) lowest scores, clipped to [1, unknown - 1]."""
    B, N = cond_tokens.shape
    mask_id = SMALL.mask_token
    canvas = [[int(cond_tokens[b, i]) if cond_mask[b, i] else mask_id for i in range(N)] for b in range(B)]
    uncond_canvas = [[mask_id] * N for _ in range(B)]
    unknown = [[True] * N for _ in range(B)]
    noises = iter(noises)
    for step in range(steps):
        logits = model(torch.cat([prefix, torch.tensor(canvas)], 1))[:, SMALL.num_prefix:, :SMALL.codebook_size]
        if guidance > 0:
            uncond = model(torch.cat([uncond_prefix, torch.tensor(uncond_canvas)], 1))[:, SMALL.num_prefix:, :SMALL.codebook_size]
            logits = logits + guidance * (logits - uncond)
        g = next(noises)
        sampled = [[int(torch.argmax(logits[b, i] / temperature + g[b, i])) if unknown[b][i] else canvas[b][i]
                    for i in range(N)] for b in range(B)]
        if step == steps - 1:
            return torch.tensor(sampled)
        progress = (step + 1) / steps
        g = next(noises)
        score = [[float(torch.log_softmax(logits[b, i].double(), -1)[sampled[b][i]]
                        + choice_temperature * (1 - progress) * g[b, i]) if unknown[b][i] else math.inf
                  for i in range(N)] for b in range(B)]
        n = math.floor(N * math.cos(math.pi / 2 * progress))
        for b in range(B):
            count = min(max(n, 1), sum(unknown[b]) - 1)
            lowest = sorted(range(N), key=lambda i: score[b][i])[:max(count, 0)]
            unknown[b] = [i in lowest for i in range(N)]
            canvas[b] = [(int(cond_tokens[b, i]) if cond_mask[b, i] else mask_id) if unknown[b][i] else sampled[b][i]
                         for i in range(N)]
            uncond_canvas[b] = [mask_id if unknown[b][i] else sampled[b][i] for i in range(N)]


@pytest.mark.parametrize("guidance, choice_temperature, temperature", [(0.0, 4.5, 1.0), (1.5, 2.0, 0.7),
                                                                        (0.0, 0.3, 0.25)])
def test_commit_decoding_matches_its_definition(monkeypatch, guidance, choice_temperature, temperature):
    torch.manual_seed(0)
    model = TokenTable(SMALL)
    B, N = 6, SMALL.num_latents
    prefix = prefix_tokens(SMALL, "outpainting_c", batch_size=B)
    uncond = uncond_prefix_tokens(SMALL, "outpainting_c", list(TASKS), batch_size=B)
    cond_tokens = torch.randint(0, SMALL.codebook_size, (B, N), generator=torch.Generator().manual_seed(1))
    cond_mask = torch.tensor([[True, False] * 4, [False] * 8] * 3)
    g = torch.Generator().manual_seed(5)
    noises = [-torch.log(-torch.log(torch.rand(B, N, *shape, generator=g).clamp_min(1e-12)))
              for _ in range(12) for shape in ((SMALL.codebook_size,), ())]
    served = iter(noises)
    monkeypatch.setattr("magvit_cli.decoding._gumbel", lambda shape, generator, device: next(served))
    # 5 steps over 8 tokens: no N * ratio lands on an integer, where float32 and float64 could floor apart
    got = decode(model, prefix, cond_tokens, cond_mask, steps=5, choice_temperature=choice_temperature,
                 temperature=temperature, guidance=guidance, uncond_prefix=uncond, dtype="float32")
    expected = commit_by_hand(model, prefix, uncond, cond_tokens, cond_mask, 5, choice_temperature, temperature,
                              guidance, noises)
    assert torch.equal(got, expected)


def test_gumbel_max_samples_each_code_with_its_probability():
    """Sampling is Gumbel-max: each code comes up as often as softmax(logits / temperature) says."""
    from magvit_cli.decoding import _gumbel

    probs = torch.tensor([0.6, 0.3, 0.1])
    draws = torch.argmax(probs.log() + _gumbel((20000, 3), torch.Generator().manual_seed(0), torch.device("cpu")), -1)
    freq = torch.bincount(draws, minlength=3) / 20000
    assert torch.allclose(freq, probs, atol=0.015)


def test_lowest_clips_the_count_to_one_and_to_all_but_one_unknown():
    from magvit_cli.decoding import _lowest

    score = torch.tensor([[0.3, 0.1, math.inf, 0.2, 0.5]])  # four unknown, one known (+inf)
    def picked(n, unknown=4):
        return _lowest(score, n, torch.tensor([unknown]))[0].nonzero().flatten().tolist()
    assert picked(0) == [1]  # at least one
    assert picked(1) == [1]
    assert picked(2) == [1, 3]
    assert picked(10) == [0, 1, 3]  # at most all but one unknown: one token is committed every step
    assert picked(1, unknown=1) == []  # the last unknown token is committed, never re-masked


def test_decode_defaults_are_the_papers(model):
    """Spec §8.4: 12 steps, cosine schedule, choice temperature 4.5, sampling temperature 1, no
    guidance; leaving them out decodes exactly as giving them, and DecodeOptions agree."""
    cond_mask = torch.zeros(1, N, dtype=torch.bool)
    paper = dict(steps=12, schedule="cosine", choice_temperature=4.5, temperature=1.0, guidance=0.0)
    assert torch.equal(run(model, cond_mask, seed=3), run(model, cond_mask, seed=3, **paper))
    assert {k: getattr(DecodeOptions(), k) for k in paper} == paper and DecodeOptions().dtype == "auto"


def test_guidance_below_one_still_runs_the_unconditional_pass(model):
    cond_mask = torch.zeros(2, N, dtype=torch.bool)
    uncond = uncond_prefix_tokens(CONFIG, "outpainting_c", list(TASKS), batch_size=1)  # one prefix for the batch
    run(model, cond_mask, guidance=0.5, uncond_prefix=uncond, steps=3)
    assert len(model.calls) == 6


def test_without_a_generator_or_a_dtype_decoding_draws_fresh_noise_in_the_default_precision(model):
    cond_mask = torch.zeros(1, N, dtype=torch.bool)
    prefix = prefix_tokens(CONFIG, "outpainting_c", batch_size=1)
    out = decode(model, prefix, torch.zeros(1, N, dtype=torch.long), cond_mask, steps=2)
    assert out.shape == (1, N)


def test_autocast_follows_the_dtype_option(monkeypatch):
    from magvit_cli import decoding

    with decoding.autocast("cpu", "bfloat16"):
        assert torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16
    for option in ("float32", "fp32"):
        with decoding.autocast("cpu", option):
            assert not torch.is_autocast_enabled("cpu")
    assert autocast_dtype("cpu", "bf16") == autocast_dtype("cpu", "bfloat16") == torch.bfloat16
    for native in (True, False):  # "auto" on a CPU: bf16 exactly where the CPU has it natively
        monkeypatch.setattr(decoding, "_cpu_has_native_bf16", lambda: native)
        assert autocast_dtype("cpu", "auto") == (torch.bfloat16 if native else None)
        with decoding.autocast("cpu", "auto"):
            assert torch.is_autocast_enabled("cpu") is native
        assert autocast_dtype("meta", "auto") is None  # neither CPU nor CUDA: float32
        assert autocast_dtype("cpu") == autocast_dtype("cpu", "auto")  # "auto" is the default
    for supported in (True, False):  # on CUDA: bf16 where the GPU supports it (no GPU needed to ask)
        monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: supported)
        assert autocast_dtype("cuda", "auto") == (torch.bfloat16 if supported else None)
        assert autocast_dtype("cuda:0", "float32") is None
        with decoding.autocast("cpu"):
            assert torch.is_autocast_enabled("cpu") is native


@pytest.mark.parametrize("flags, native", [({"_is_avx512_bf16_supported": True, "_is_amx_tile_supported": False}, True),
                                           ({"_is_avx512_bf16_supported": False, "_is_amx_tile_supported": True}, True),
                                           ({"_is_avx512_bf16_supported": False, "_is_amx_tile_supported": False}, False),
                                           ({}, False)])  # a torch without these checks: no native bf16
def test_native_bf16_is_avx512_bf16_or_amx(monkeypatch, flags, native):
    from magvit_cli.decoding import _cpu_has_native_bf16

    for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"):
        if name in flags:
            monkeypatch.setattr(torch.cpu, name, lambda value=flags[name]: value, raising=False)
        else:
            monkeypatch.delattr(torch.cpu, name, raising=False)
    assert _cpu_has_native_bf16() is native


def test_decode_runs_the_model_in_the_precision_asked_for(model):
    """The dtype option reaches the model: float32 runs without autocast, bfloat16 under it."""
    seen = []
    forward = model.forward
    model.forward = lambda tokens: (seen.append(torch.is_autocast_enabled("cpu")), forward(tokens))[1]
    cond_mask = torch.zeros(1, N, dtype=torch.bool)
    run(model, cond_mask, steps=2, dtype="float32")
    run(model, cond_mask, steps=2, dtype="bfloat16")
    assert seen == [False, False, True, True]


def test_float32_autocast_is_switched_off_rather_than_refused():
    """Asking for float32 disables autocast outright; an enabled float32 autocast would make
    PyTorch warn that the dtype is unsupported on every call."""
    from magvit_cli import decoding

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with decoding.autocast("cpu", "float32"):
            assert not torch.is_autocast_enabled("cpu")
