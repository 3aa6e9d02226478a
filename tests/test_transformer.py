import dataclasses
import math
import json

import numpy as np
import pytest
import torch

from magvit_cli.errors import ModelError, UsageError
from magvit_cli.tasks import TASKS
from magvit_cli.transformer import TRANSFORMER_PRESETS, Transformer, TransformerConfig

TINY = TransformerConfig(codebook_size=64, num_classes=5, multi_task=True, latent_shape=(4, 8, 8),
                         hidden_size=64, num_layers=2, num_heads=2, mlp_dim=128)


def count_parameters(config: TransformerConfig) -> int:
    with torch.device("meta"):  # shapes only, no memory
        return sum(p.numel() for p in Transformer(config).parameters())


@pytest.mark.parametrize("size, num_classes, multi_task, expected", [
    ("b", 101, False, 87_301_991),  # UCF-101 CG
    ("b", 0, False, 87_224_322),  # BAIR FP
    ("b", 0, True, 87_236_625),  # BAIR multi-task
    ("l", 101, False, 305_567_847),
    ("l", 0, True, 305_480_721),
])
def test_parameter_counts_match_the_official_models(size, num_classes, multi_task, expected):
    config = dataclasses.replace(TRANSFORMER_PRESETS[size], num_classes=num_classes, multi_task=multi_task)
    assert count_parameters(config) == expected


def test_vocabulary_layout():
    ucf = TransformerConfig(num_classes=101, multi_task=False)
    assert (ucf.vocab_size, ucf.uncond_token, ucf.mask_token, ucf.seq_length) == (1127, 1125, 1126, 1025)
    assert ucf.class_token(3) == 1027
    bair_mt = TransformerConfig(num_classes=0, multi_task=True)
    assert (bair_mt.vocab_size, bair_mt.uncond_token, bair_mt.seq_length) == (1041, 1024, 1026)
    assert [bair_mt.special_token(n) for n in (-1, -2, -3, -4, -5, -6, -7, -15)] == \
        [1040, 1039, 1038, 1037, 1036, 1035, 1034, 1026]
    assert TINY.vocab_size == 86 and TINY.seq_length == 258 and TINY.num_latents == 256
    with pytest.raises(ModelError):
        ucf.special_token(-2)  # single-task models have only the MASK slot
    with pytest.raises(UsageError):
        ucf.class_token(101)


def test_module_names_the_converter_relies_on():
    names = set(Transformer(TINY).state_dict())
    for name in ("word_embeddings.weight", "position_embeddings.weight", "embeddings_ln.weight",
                 "layers.1.attention.query.weight", "layers.1.attention.key.bias", "layers.1.attention.value.weight",
                 "layers.1.attention.out.bias", "layers.1.attention_ln.weight", "layers.1.mlp_in.weight",
                 "layers.1.mlp_out.bias", "layers.1.mlp_ln.bias", "head_dense.weight", "head_ln.weight",
                 "head_bias"):
        assert name in names, name


def test_initialisation_is_truncated_normal_with_zero_biases():
    torch.manual_seed(0)
    model = Transformer(dataclasses.replace(TINY, hidden_size=128, mlp_dim=512))
    w = model.layers[0].mlp_in.weight
    assert w.abs().max() <= 0.04 + 1e-7  # truncated at 2 sigma
    assert 0.015 < w.std() < 0.02  # std of N(0, 0.02) truncated at ±2σ is 0.0176
    assert model.layers[0].mlp_in.bias.abs().max() == 0
    assert model.head_bias.abs().max() == 0
    assert torch.equal(model.head_ln.weight, torch.ones(128))


def test_config_round_trip_and_validation():
    config = dataclasses.replace(TINY, dropout=0.0)
    d = json.loads(json.dumps(config.to_dict()))
    assert TransformerConfig.from_dict(d) == config
    for key, value in [("hidden_size", 65), ("num_heads", 0), ("num_layers", "2"), ("latent_shape", [4, 8]),
                       ("dropout", 1.5), ("multi_task", 1), ("codebook_size", 10**9), ("bogus", 1)]:
        with pytest.raises(ModelError, match=key):
            TransformerConfig.from_dict({**d, key: value})


def test_logits_depend_on_every_position_and_ignore_dropout_in_eval():
    torch.manual_seed(0)
    model = Transformer(TINY).eval()
    tokens = torch.randint(0, 64, (1, TINY.seq_length))
    changed = tokens.clone()
    changed[0, -1] = (changed[0, -1] + 1) % 64
    with torch.no_grad():
        a, b, again = model(tokens), model(changed), model(tokens)
    assert torch.equal(a, again)
    assert (a[0, 0] - b[0, 0]).abs().max() > 1e-6  # bidirectional: the first position sees the last


def load_reference_transformer(reference_dir):
    from magvit_cli import convert

    official = json.loads((reference_dir / "config.json").read_text())
    config = convert.transformer_config_from_official(official, codebook_size=64)
    model = Transformer(config)
    checkpoint = convert.read_flax_checkpoint(reference_dir / "transformer_ckpt" / "checkpoint_0")
    convert.load_converted(model, convert.transformer_state_dict(checkpoint), "transformer")
    return model.eval()


def reference_logits(reference_dir, model):
    """(task, masked input ids, official logits [B, L, V]) of every task, on the CPU."""
    io = np.load(reference_dir / "transformer_io.npz")
    vocab = model.config.vocab_size
    for task in TASKS:
        tokens = torch.from_numpy(io[f"{task}__masked_inputs"]).long()
        tokens = torch.where(tokens < 0, tokens + vocab, tokens)  # official negative ids wrap around
        yield task, tokens, torch.from_numpy(io[f"{task}__logits"])


def test_logits_match_the_official_model(reference_dir, device):
    model = load_reference_transformer(reference_dir).to(device)
    assert model.config == TINY
    for task, tokens, expected in reference_logits(reference_dir, model):
        with torch.no_grad():
            logits = model(tokens.to(device)).cpu()
        # Official fp32 jit vs op-by-op differ by 1.8e-7; an erf GELU in the head would be off by 3e-5
        # (the layers' MLP GELUs see inputs too small to tell: test_layer_is_post_ln_bert_with_the_tanh_gelu).
        torch.testing.assert_close(logits, expected, atol=5e-6, rtol=0, msg=task)


def test_bfloat16_autocast_effect_on_logits(reference_dir, device):
    """Measured on CPU: max |bf16 - fp32| = 3.8e-3 over the ten tasks (logits std 0.17, max 0.64),
    the code argmax differs at ~0.7 % of positions (near-ties of a random model)."""
    model = load_reference_transformer(reference_dir).to(device)
    worst, flips, total = 0.0, 0, 0
    for _, tokens, expected in reference_logits(reference_dir, model):
        with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16):
            logits = model(tokens.to(device)).float().cpu()
        worst = max(worst, (logits - expected).abs().max().item())
        flips += (logits[..., :64].argmax(-1) != expected[..., :64].argmax(-1)).sum().item()
        total += tokens.numel()
    assert 1e-4 < worst < 1e-2  # bf16 really ran (not fp32) and stays close
    assert flips / total < 0.02


def test_training_attention_with_dropout_computes_the_same_attention():
    """The training path writes attention out by hand (Flax's dropout mask is shared over batch
    and heads); with a dropout that drops nothing it equals the fused inference path, and a real
    dropout zeroes whole (query, key) entries for every sample and head alike."""
    from magvit_cli.transformer import SelfAttention

    config = TransformerConfig(codebook_size=16, latent_shape=(1, 2, 4), hidden_size=16, num_layers=1, num_heads=2,
                               mlp_dim=16, attention_dropout=1e-9)
    torch.manual_seed(0)
    attention = SelfAttention(config)
    x = torch.randn(3, 10, 16)
    expected = attention.eval()(x)
    assert torch.allclose(attention.train()(x), expected, atol=1e-5)
    attention.dropout = 0.5
    attention.out = torch.nn.Identity()
    attention.value.weight.data = torch.eye(16)
    attention.value.bias.data.zero_()
    x = torch.ones(3, 10, 16)  # every value row is 1: an output is the kept attention mass / (1 - p)
    y = attention.train()(x)
    assert torch.allclose(y, y[:1].expand_as(y))  # the same mask for every sample
    assert torch.allclose(y[..., :8], y[..., 8:])  # and for both heads (uniform attention here)
    kept = y[0, :, 0] * (1 - 0.5) * 10  # uniform attention over 10 keys: keys kept per query
    assert torch.allclose(kept, kept.round(), atol=1e-4) and 0.3 < kept.sum() / 100 < 0.7
    assert kept.unique().numel() > 1  # entries really dropped, not a uniform rescale
    # Written out: one keep mask [L, L] drawn after the softmax, kept entries scaled by 1 / (1 - p).
    x = torch.randn(2, 10, 16)
    torch.manual_seed(1)
    y = attention(x)
    torch.manual_seed(1)
    q, k, v = (proj(x).view(2, 10, 2, 8).transpose(1, 2) for proj in (attention.query, attention.key, attention.value))
    probs = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(8), dim=-1)
    keep = torch.rand(10, 10) >= 0.5
    expected = ((probs * keep / 0.5) @ v).transpose(1, 2).reshape(2, 10, 16)
    torch.testing.assert_close(y, expected)


def test_layer_norms_use_the_official_bert_epsilon():
    """1e-12 (the official TF_LAYERNORM_EPSILON), not PyTorch's 1e-5: an input whose features
    vary by 1e-3 comes out of each post-LN with unit variance, not shrunk by eps."""
    from magvit_cli.transformer import Layer

    layer = Layer(TINY).eval()
    x = 1e-3 * torch.randn(1, 4, TINY.hidden_size, generator=torch.Generator().manual_seed(0))
    for norm in (layer.attention_ln, layer.mlp_ln):
        out = norm(x)
        assert torch.allclose(out.var(-1, unbiased=False), torch.ones(4), atol=1e-4)


def test_layer_is_post_ln_bert_with_the_tanh_gelu():
    """One layer written out (float64): x = LN(x + Attn(x)); x = LN(x + W2 gelu_tanh(W1 x)).
    The tiny official model's MLP inputs are too small to tell the tanh GELU from the erf one,
    so the MLP weights are scaled up here until the two differ visibly."""
    from magvit_cli.transformer import Layer

    torch.manual_seed(0)
    layer = Layer(TINY).double().eval()
    layer.mlp_in.weight.data *= 5
    layer.mlp_out.weight.data *= 50
    x = torch.randn(2, 5, TINY.hidden_size, dtype=torch.float64)

    def gelu_tanh(z):
        return 0.5 * z * (1 + torch.tanh(math.sqrt(2 / math.pi) * (z + 0.044715 * z**3)))

    def norm(ln, z):
        mean, var = z.mean(-1, keepdim=True), z.var(-1, unbiased=False, keepdim=True)
        return (z - mean) / torch.sqrt(var + 1e-12) * ln.weight + ln.bias

    with torch.no_grad():
        h = norm(layer.attention_ln, x + layer.attention(x))
        expected = norm(layer.mlp_ln, h + layer.mlp_out(gelu_tanh(layer.mlp_in(h))))
        erf = norm(layer.mlp_ln, h + layer.mlp_out(torch.nn.functional.gelu(layer.mlp_in(h))))
        assert (erf - expected).abs().max() > 1e-4  # the test can tell the two GELUs apart
        torch.testing.assert_close(layer(x), expected, atol=1e-10, rtol=0)
