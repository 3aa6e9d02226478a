"""The 3D-VQ tokenizer: official sizes and layer shapes, quantizer semantics, training losses, config checks."""

import math

import pytest
import torch
import torch.nn.functional as F

from magvit_cli.errors import InputError, ModelError
from magvit_cli.tokenizer import (
    TOKENIZER_PRESETS,
    ResBlock,
    TokenizerConfig,
    VQTokenizer,
    entropy_loss,
)

# Exact counts (encoder + decoder + codebook) of the official layouts; spec §1 rounds
# them to 36.6 M / 141.9 M (BAIR 64²) and 40.6 M / 157.8 M (UCF-101 128²).
PRESET_PARAMETERS = {
    "bair-b": 36_596_355,
    "bair-l": 141_882_371,
    "ucf-b": 40_579_843,
    "ucf-l": 157_811_971,
}


def small_config(**overrides) -> TokenizerConfig:
    values = dict(filters=32, channel_multipliers=(1, 2), temporal_downsample=(True,), num_enc_res_blocks=1,
                  num_dec_res_blocks=1, embedding_dim=8, codebook_size=16)
    values.update(overrides)
    return TokenizerConfig(**values)


def meta_model(config: TokenizerConfig) -> VQTokenizer:
    with torch.device("meta"):
        return VQTokenizer(config)


def count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize("name", sorted(PRESET_PARAMETERS))
def test_preset_parameter_counts(name):
    config = TOKENIZER_PRESETS[name]
    assert config.num_parameters() == PRESET_PARAMETERS[name]
    assert count(meta_model(config)) == PRESET_PARAMETERS[name]


def test_spec_rounded_sizes():
    millions = {name: round(n / 1e6, 1) for name, n in PRESET_PARAMETERS.items()}
    assert millions == {"bair-b": 36.6, "bair-l": 141.9, "ucf-b": 40.6, "ucf-l": 157.8}


def test_reference_layout_counts_per_module():
    # The "tiny" official fixture (summary.json: encoder 367872, decoder 422755, quantizer 2048).
    config = TokenizerConfig(filters=32, channel_multipliers=(2, 1, 1), num_enc_res_blocks=1, num_dec_res_blocks=1,
                             embedding_dim=32, codebook_size=64)
    model = meta_model(config)
    assert (count(model.encoder), count(model.decoder), count(model.quantizer)) == (367_872, 422_755, 2_048)
    assert config.num_parameters() == 792_675


def _record_shapes(model: VQTokenizer, video: torch.Tensor) -> dict[str, tuple]:
    shapes = {}
    hooks = [
        module.register_forward_hook(lambda m, i, o, name=name: shapes.__setitem__(name, tuple(o.shape[1:])))
        for name, module in model.named_modules()
        if isinstance(module, ResBlock) or name.endswith(("conv_in", "conv_out")) or name.count(".") == 2 and "upsamples" in name
    ]
    z = model.encoder(video)
    model.decoder(z)
    for hook in hooks:
        hook.remove()
    return shapes


def test_ucf_b_layer_shapes_follow_spec_tables():
    """Spec §3.3 / §3.5 (C, T, H, W): the third flag (False) makes the first decoder up-sampling spatial only."""
    model = meta_model(TOKENIZER_PRESETS["ucf-b"])
    shapes = _record_shapes(model, torch.empty(1, 3, 16, 128, 128, device="meta"))
    encoder = [shapes[f"encoder.res_blocks.{k}"] for k in range(10)]
    assert encoder == [(64, 16, 128, 128)] * 2 + [(128, 8, 64, 64)] * 2 + [(128, 4, 32, 32)] * 2 + [(256, 4, 16, 16)] * 4
    assert shapes["encoder.conv_out"] == (256, 4, 16, 16)
    assert shapes["decoder.conv_in"] == (256, 4, 16, 16)
    decoder = [shapes[f"decoder.res_blocks.{k}"] for k in range(10)]
    assert decoder == [(256, 4, 16, 16)] * 4 + [(128, 4, 32, 32)] * 2 + [(128, 8, 64, 64)] * 2 + [(64, 16, 128, 128)] * 2
    assert [shapes[f"decoder.upsamples.{j}"] for j in range(3)] == [(256, 4, 32, 32), (128, 8, 64, 64), (128, 16, 128, 128)]
    assert [up.temporal for up in model.decoder.upsamples] == [False, True, True]
    assert shapes["decoder.conv_out"] == (3, 16, 128, 128)
    assert model.latent_shape(16, 128, 128) == (4, 16, 16)


def test_ucf_b_parameter_shapes_follow_flax_tree():
    """Spec §4.1 shapes, in PyTorch layout [out, in, kT, kH, kW]."""
    params = {name: tuple(p.shape) for name, p in meta_model(TOKENIZER_PRESETS["ucf-b"]).named_parameters()}
    assert params["encoder.conv_in.weight"] == (64, 3, 3, 3, 3)
    assert "encoder.conv_in.bias" not in params  # the encoder's first conv has no bias
    assert params["encoder.res_blocks.2.shortcut.weight"] == (128, 64, 1, 1, 1)
    assert params["encoder.res_blocks.6.shortcut.weight"] == (256, 128, 1, 1, 1)
    assert "encoder.res_blocks.3.shortcut.weight" not in params
    assert "encoder.res_blocks.0.conv1.bias" not in params
    assert params["encoder.conv_out.weight"] == (256, 256, 1, 1, 1) and params["encoder.conv_out.bias"] == (256,)
    assert params["decoder.conv_in.weight"] == (256, 256, 3, 3, 3) and params["decoder.conv_in.bias"] == (256,)
    assert params["decoder.res_blocks.4.shortcut.weight"] == (128, 256, 1, 1, 1)
    assert params["decoder.res_blocks.8.shortcut.weight"] == (64, 128, 1, 1, 1)
    assert params["decoder.upsamples.0.conv.weight"] == (256, 256, 3, 3, 3)
    assert params["decoder.upsamples.2.conv.weight"] == (128, 128, 3, 3, 3)
    assert params["decoder.norm_out.weight"] == (64,)
    assert params["decoder.conv_out.weight"] == (3, 64, 3, 3, 3) and params["decoder.conv_out.bias"] == (3,)
    assert params["quantizer.codebook"] == (1024, 256)


def test_bair_layout_uses_two_flags_only():
    model = meta_model(TOKENIZER_PRESETS["bair-b"])
    assert len(model.decoder.upsamples) == 2
    assert [up.temporal for up in model.decoder.upsamples] == [True, True]
    assert model.latent_shape(16, 64, 64) == (4, 16, 16)


def test_decoder_reads_flags_in_reverse():
    model = meta_model(small_config(channel_multipliers=(1, 1, 1), temporal_downsample=(False, True)))
    assert [up.temporal for up in model.decoder.upsamples] == [True, False]
    z = model.encoder(torch.empty(1, 3, 4, 16, 16, device="meta"))
    assert tuple(z.shape) == (1, 8, 2, 4, 4) and model.latent_shape(4, 16, 16) == (2, 4, 4)
    assert tuple(model.decoder(z).shape) == (1, 3, 4, 16, 16)


def test_encode_decode_roundtrip_shapes_and_range():
    torch.manual_seed(0)
    model = VQTokenizer(small_config()).eval()
    video = torch.rand(2, 3, 4, 16, 16)
    with torch.no_grad():
        z = model.encode_latents(video)
        codes, quantized = model.quantize(z)
        recon = model.decode(codes)
    assert z.shape == (2, 8, 2, 8, 8) and codes.shape == (2, 2, 8, 8) and codes.dtype == torch.long
    assert codes.min() >= 0 and codes.max() < 16
    assert torch.equal(quantized, model.quantizer.codebook[codes].movedim(-1, 1))
    assert torch.equal(model.encode(video), codes)
    assert recon.shape == video.shape
    assert torch.allclose(model.decode_latents(quantized), recon)


def test_reflect_padding():
    torch.manual_seed(0)
    reflect = VQTokenizer(small_config(padding_mode="reflect")).eval()
    zeros = VQTokenizer(small_config()).eval()
    zeros.load_state_dict(reflect.state_dict())
    conv = reflect.encoder.conv_in
    assert conv.padding_mode == "reflect"
    video = torch.rand(1, 3, 4, 16, 16)
    with torch.no_grad():
        manual = F.conv3d(F.pad(video, (1,) * 6, mode="reflect"), conv.weight)  # jnp.pad(mode='reflect') + VALID
        assert torch.allclose(conv(video), manual, atol=1e-6)
        a, b = reflect.encode_latents(video), zeros.encode_latents(video)
        assert a.shape == b.shape and not torch.allclose(a, b, atol=1e-3)
        assert reflect.decode(reflect.encode(video)).shape == video.shape


def test_argmin_takes_first_index_on_ties():
    model = VQTokenizer(small_config(codebook_size=4, embedding_dim=2))
    with torch.no_grad():
        model.quantizer.codebook.copy_(torch.tensor([[5.0, 5.0], [1.0, 0.0], [1.0, 0.0], [0.0, 1.0]]))
    # One vector equal to the duplicated code, one exactly between codes 1 and 3.
    z = torch.tensor([[1.0, 0.0], [0.5, 0.5]]).t().reshape(1, 2, 1, 1, 2)
    codes, _ = model.quantize(z)
    assert codes.flatten().tolist() == [1, 1]


def test_distances_stay_float32_under_autocast():
    torch.manual_seed(0)
    model = VQTokenizer(small_config())
    z = torch.randn(1, 8, 2, 4, 4)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        d = model.quantizer.distances(z.bfloat16())
    assert d.dtype == torch.float32
    exact = torch.cdist(z.movedim(1, -1).reshape(-1, 8).bfloat16().float(), model.quantizer.codebook.detach()) ** 2
    assert torch.allclose(d, exact, atol=1e-4)


def test_straight_through_gradient_reaches_encoder():
    torch.manual_seed(0)
    model = VQTokenizer(small_config())
    recon, losses = model(torch.rand(1, 3, 4, 16, 16))
    recon.square().mean().backward()  # reconstruction only: argmin is not differentiable without the estimator
    grad = model.encoder.conv_in.weight.grad
    assert grad is not None and grad.abs().sum() > 0
    assert model.quantizer.codebook.grad is None  # the codebook learns only from the codebook loss
    losses["codebook"].backward()
    assert model.quantizer.codebook.grad.abs().sum() > 0


def test_forward_losses():
    torch.manual_seed(0)
    model = VQTokenizer(small_config())
    video = torch.rand(2, 3, 4, 16, 16)
    recon, losses = model(video)
    assert recon.shape == video.shape
    assert set(losses) == {"commitment", "codebook", "entropy", "quantizer"}
    assert all(torch.isfinite(v) and v.dim() == 0 for v in losses.values())
    with torch.no_grad():
        z = model.encode_latents(video)
        _, quantized = model.quantize(z)
        mse = (quantized - z).square().mean()
    assert torch.allclose(losses["commitment"], 0.25 * mse, rtol=1e-5)
    assert torch.allclose(losses["codebook"], 1.0 * mse, rtol=1e-5)
    total = losses["commitment"] + losses["codebook"] + losses["entropy"]
    assert torch.allclose(losses["quantizer"], total)
    assert -0.1 * math.log(16) <= losses["entropy"].item() <= 0.1 * math.log(16)


def test_entropy_loss_matches_definition():
    torch.manual_seed(0)
    distances = torch.rand(50, 6, dtype=torch.float64) * 0.05
    p = torch.softmax(-distances / 0.01, dim=-1)
    per_vector = -(p * torch.log(p)).sum(-1).mean()
    mean_p = p.mean(0)
    usage = -(mean_p * torch.log(mean_p + 1e-5)).sum()
    assert torch.allclose(entropy_loss(distances).double(), per_vector - usage, atol=1e-5)
    # Confident, evenly spread assignments are the minimum: ~0 - log K.
    spread = torch.full((6, 6), 1.0).fill_diagonal_(0.0)
    assert entropy_loss(spread).item() == pytest.approx(-math.log(6), abs=1e-3)


def test_input_checks():
    model = VQTokenizer(small_config())
    for shape in ((3, 4, 16, 16), (1, 3, 16, 16), (1, 4, 4, 16, 16)):  # wrong rank, wrong channels, or both
        with pytest.raises(InputError, match=r"\[B, 3, T, H, W\]"):
            model.encode(torch.rand(shape))
    with pytest.raises(InputError, match=r"\[0, 16\)"):
        model.decode(torch.full((1, 2, 8, 8), 16))
    with pytest.raises(InputError):
        model.decode(torch.zeros(2, 8, 8, dtype=torch.long))


def test_config_dict_roundtrip():
    for config in TOKENIZER_PRESETS.values():
        d = config.to_dict()
        assert isinstance(d["channel_multipliers"], list)
        assert TokenizerConfig.from_dict(d) == config
    assert TokenizerConfig.from_dict({"padding_mode": "reflect"}).padding_mode == "reflect"


@pytest.mark.parametrize(
    "change, message",
    [
        ({"filters": 48}, "multiple of 32"),
        ({"filters": 16}, "multiple of 32"),
        ({"filters": "64"}, "'filters' must be an integer"),
        ({"filters": True}, "'filters' must be an integer"),
        ({"codebook_size": 0}, "'codebook_size'"),
        ({"channel_multipliers": []}, "'channel_multipliers'"),
        ({"channel_multipliers": "124"}, "'channel_multipliers' must be a list"),
        ({"temporal_downsample": [1, 0]}, "'temporal_downsample'"),
        ({"temporal_downsample": [True]}, "at least 2 flags"),
        ({"padding_mode": "circular"}, "'padding_mode'"),
        ({"embedding_dim": 10**9}, "'embedding_dim'"),
        ({"colour": "blue"}, "unknown key 'colour'"),
        # Each value in range, the whole far too large: rejected before allocating anything.
        ({"filters": 1024, "channel_multipliers": [16] * 8, "temporal_downsample": [True] * 7}, "parameters"),
    ],
)
def test_config_validation(change, message):
    d = TOKENIZER_PRESETS["bair-b"].to_dict()
    d.update(change)
    with pytest.raises(ModelError, match=message):
        TokenizerConfig.from_dict(d)


def test_from_dict_rejects_non_object():
    with pytest.raises(ModelError):
        TokenizerConfig.from_dict([64])


def test_commitment_loss_trains_the_encoder_and_codebook_loss_trains_the_codebook():
    """Guards against the stop-gradient on the wrong side of the commitment (or codebook) loss."""
    torch.manual_seed(0)
    model = VQTokenizer(small_config())
    video = torch.rand(1, 3, 4, 16, 16)
    with torch.no_grad():
        z = model.encode_latents(video)
        q = model.quantizer.codebook[model.encode(video)].movedim(-1, 1)
    # d/d(bias_c) of 0.25 * mean((z - sg(q))^2) = 0.25 * 2 * sum over channel c of (z - q) / numel
    expected_bias_grad = 0.5 * (z - q).sum(dim=(0, 2, 3, 4)) / z.numel()

    _, losses = model(video)
    losses["commitment"].backward()
    reached = model.quantizer.codebook.grad is not None
    assert not reached, "the commitment loss reached the codebook"
    torch.testing.assert_close(model.encoder.conv_out.bias.grad, expected_bias_grad, atol=1e-6, rtol=1e-4)

    model.zero_grad(set_to_none=True)
    _, losses = model(video)
    losses["codebook"].backward()
    reached = model.encoder.conv_out.bias.grad is not None
    assert not reached, "the codebook loss reached the encoder"
    expected_code_grad = torch.zeros_like(model.quantizer.codebook)  # 2 * (c_k - z) / numel, summed per code
    codes = model.encode(video).flatten()
    flat = z.movedim(1, -1).reshape(-1, z.shape[1])
    expected_code_grad.index_add_(0, codes, 2.0 * (model.quantizer.codebook.detach()[codes] - flat) / z.numel())
    torch.testing.assert_close(model.quantizer.codebook.grad, expected_code_grad, atol=1e-6, rtol=1e-4)


def test_training_pass_decodes_the_codes_and_weighs_the_entropy():
    """The straight-through estimator: the forward value is the decoder of the quantized latents
    (what inference decodes), the gradient reaches the encoder; the entropy term is
    ENTROPY_COST x entropy_loss of the code distances."""
    from magvit_cli.tokenizer import ENTROPY_COST, TokenizerConfig, VQTokenizer, entropy_loss

    torch.manual_seed(0)
    tokenizer = VQTokenizer(TokenizerConfig(filters=32, channel_multipliers=(1, 1), embedding_dim=8,
                                            codebook_size=16, num_enc_res_blocks=1, num_dec_res_blocks=1))
    video = torch.rand(2, 3, 4, 16, 16)
    recon, losses = tokenizer(video)
    with torch.no_grad():
        z = tokenizer.encode_latents(video)
        codes, quantized, distances = tokenizer.quantizer(z)
        assert torch.allclose(recon, tokenizer.decoder(quantized), atol=1e-5)
        assert torch.allclose(losses["entropy"], ENTROPY_COST * entropy_loss(distances))
    recon.mean().backward()
    assert tokenizer.encoder.conv_in.weight.grad.abs().sum() > 0


def test_entropy_loss_is_per_sample_minus_average_entropy():
    """entropy_loss = mean over samples of H(p) - H(mean p), p = softmax(-distances / 0.01) over codes
    (official vqvae.entropy_loss): low when each sample is sure and the codes are used evenly."""
    from magvit_cli.tokenizer import entropy_loss

    sure_and_even = torch.tensor([[0.0, 9.0], [9.0, 0.0]])  # distances: sample 0 -> code 0, 1 -> code 1
    assert entropy_loss(sure_and_even).item() == pytest.approx(-math.log(2), abs=1e-4)
    unsure = torch.zeros(3, 2)
    assert entropy_loss(unsure).item() == pytest.approx(0.0, abs=1e-4)
    collapsed = torch.tensor([[0.0, 9.0], [0.0, 9.0], [0.0, 9.0]])
    assert entropy_loss(collapsed).item() == pytest.approx(0.0, abs=1e-4)


@pytest.mark.parametrize("grad, autocast, fast", [(False, False, True), (True, False, False), (False, True, False)])
def test_conv3d_takes_the_onednn_path_only_for_float32_cpu_inference(monkeypatch, grad, autocast, fast):
    from magvit_cli.tokenizer import Conv3d

    calls = []
    real = torch.mkldnn_convolution
    monkeypatch.setattr(torch, "mkldnn_convolution", lambda *a: calls.append(1) or real(*a))
    conv = Conv3d(4, 4, 3, padding=1)
    x = torch.rand(1, 4, 3, 5, 5)
    with torch.set_grad_enabled(grad), torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        y = conv(x)
    assert bool(calls) is fast
    assert torch.allclose(y.float(), torch.nn.functional.conv3d(x, conv.weight, conv.bias, padding=1), atol=0.05)
    reflect = Conv3d(4, 4, 3, padding=1, padding_mode="reflect")
    calls.clear()
    with torch.no_grad():
        reflect(x)
    assert not calls  # only zero padding has the fast path


def test_latent_shape_rounds_odd_sizes_up():
    """'SAME' pooling keeps a partial window: 5 x 9 x 7 -> 3 x 5 x 4 after one full halving, and
    the sizes stay integers."""
    config = small_config(channel_multipliers=(1, 2), temporal_downsample=(True,))
    shape = VQTokenizer.latent_shape_for(config, 5, 9, 7)
    assert shape == (3, 5, 4) and all(type(n) is int for n in shape)
    assert VQTokenizer.latent_shape_for(small_config(temporal_downsample=(False,)), 5, 9, 7) == (5, 5, 4)


def test_group_norms_use_flax_epsilon():
    """1e-6 (Flax's GroupNorm default), not PyTorch's 1e-5: a group of variance v comes out
    with variance v / (v + 1e-6), about 0.9 here (1e-5 would give 0.47)."""
    from magvit_cli.tokenizer import _norm

    norm = _norm(64)
    x = 3e-3 * torch.randn(2, 64, 2, 3, 3, generator=torch.Generator().manual_seed(0))
    v = x.reshape(2, norm.num_groups, -1).var(-1, unbiased=False)
    out = norm(x).reshape(2, norm.num_groups, -1).var(-1, unbiased=False)
    torch.testing.assert_close(out, v / (v + 1e-6), rtol=1e-3, atol=0)


def test_codebook_starts_uniform_in_plus_minus_sqrt_3_over_k():
    """The official initialiser (variance_scaling 1.0, fan_in = K, uniform): U(-sqrt(3/K), sqrt(3/K))."""
    from magvit_cli.tokenizer import VectorQuantizer

    torch.manual_seed(0)
    codebook = VectorQuantizer(1024, 64).codebook.detach()
    bound = math.sqrt(3 / 1024)
    assert codebook.abs().max() <= bound
    assert codebook.min() < -0.99 * bound and codebook.max() > 0.99 * bound
    assert abs(codebook.mean()) < 0.01 * bound


def test_downsampling_averages_only_the_pixels_inside_the_frame():
    """TF 'SAME' average pooling by 2 of a 3x3 frame: a 2x2 result whose edge cells average the
    pixels that exist (the official code pads nothing into the mean)."""
    from magvit_cli.tokenizer import downsample

    frame = torch.arange(1.0, 10.0).view(1, 1, 1, 3, 3)
    expected = torch.tensor([[3.0, 4.5], [7.5, 9.0]])
    assert torch.equal(downsample(frame, temporal=False)[0, 0, 0], expected)
    clip = torch.cat([frame, frame + 1, frame + 2], dim=2)  # three frames: pairs (0, 1) and (2,)
    out = downsample(clip, temporal=True)[0, 0]
    assert out.shape == (2, 2, 2)
    assert torch.equal(out[0], expected + 0.5) and torch.equal(out[1], expected + 2)
