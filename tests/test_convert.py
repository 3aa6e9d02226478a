"""Official checkpoint conversion: parity with the official outputs of tests/fixtures/official-tiny, reading
msgpack checkpoints, layouts, config translation and errors.

Tolerances (float32, fixture README §7): encoder latents 2e-4, decoded video 1e-4, transformer logits
5e-6 (max abs). Measured on CPU: about 2e-5, 2e-5 and 2.4e-7. The models run on the `device` fixture
(MAGVIT_TEST_DEVICE); outputs come back to the CPU to meet the numpy fixtures.
"""

import json
import re
import shutil
import sys

import msgpack
import numpy as np
import pytest
import torch

from magvit_cli.convert import (
    check_transformer_shapes,
    convert,
    official_preset,
    read_flax_checkpoint,
    tokenizer_config_from_official,
    tokenizer_param_tree,
    tokenizer_state_dict,
    transformer_config_from_official,
    transformer_param_tree,
    transformer_state_dict,
)
from magvit_cli.errors import ModelError, UnsupportedError, UsageError
from magvit_cli.tokenizer import TOKENIZER_PRESETS, VQTokenizer
from magvit_cli.transformer import Transformer

from conftest import pack_flax

ENCODER_ATOL = 2e-4
RECON_ATOL = 1e-4
LOGITS_ATOL = 5e-6
TASKS = ["frame_prediction", "frame_interpolation", "outpainting_c", "outpainting_v", "outpainting_h",
         "outpainting_dv", "inpainting_c", "inpainting_dv", "full_generation", "frame_prediction_c"]


def channels_first(array: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(array).movedim(-1, 1)


def ids(array: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(array).long()


@pytest.fixture(scope="module")
def official_config(reference_dir) -> dict:
    return json.loads((reference_dir / "config.json").read_text())


@pytest.fixture(scope="module")
def converted(reference_dir, device):
    return convert(reference_dir / "config.json", reference_dir / "tokenizer_ckpt",
                   reference_dir / "transformer_ckpt").to(device)


@pytest.fixture(scope="module")
def tokenizer_io(reference_dir):
    return dict(np.load(reference_dir / "tokenizer_io.npz"))


@pytest.fixture(scope="module")
def transformer_io(reference_dir):
    return dict(np.load(reference_dir / "transformer_io.npz"))


# --------------------------------------------------------------------------- parity


def test_converted_config(converted):
    config = converted.config
    assert config.tokenizer.filters == 32 and config.tokenizer.channel_multipliers == (2, 1, 1)
    assert config.tokenizer.codebook_size == 64 and config.tokenizer.embedding_dim == 32
    assert config.tokenizer.padding_mode == "zeros"
    t = config.transformer
    assert (t.vocab_size, t.seq_length, t.num_classes, t.multi_task) == (86, 258, 5, True)
    assert (t.hidden_size, t.num_layers, t.num_heads, t.mlp_dim) == (64, 2, 2, 128)
    assert config.num_frames == 16 and tuple(config.resolution) == (32, 32)
    assert config.tasks == TASKS
    assert config.class_names == [f"class_{i}" for i in range(5)]
    assert config.fps == 10.0


def test_encoder_latents(converted, tokenizer_io, device):
    with torch.no_grad():
        z = converted.tokenizer.encode_latents(channels_first(tokenizer_io["video"]).to(device)).cpu()
    error = (z - channels_first(tokenizer_io["encoder_raw"])).abs().max().item()
    assert error <= ENCODER_ATOL


def test_token_ids_and_quantized(converted, tokenizer_io, device):
    with torch.no_grad():
        codes, quantized = converted.tokenizer.quantize(
            converted.tokenizer.encode_latents(channels_first(tokenizer_io["video"]).to(device)))
    codes, quantized = codes.cpu(), quantized.cpu()
    expected = ids(tokenizer_io["ids"])
    clear = torch.from_numpy(tokenizer_io["id_distance_gap"]) >= 1e-3
    assert torch.equal(codes[clear], expected[clear])
    assert (codes == expected).float().mean() >= 0.999
    same = (codes == expected).unsqueeze(1).expand_as(quantized)
    official = channels_first(tokenizer_io["quantized"])
    assert torch.equal(quantized[same], official[same])  # a plain codebook lookup: exact


def test_encode_matches_ids(converted, tokenizer_io, device):
    with torch.no_grad():
        codes = converted.tokenizer.encode(channels_first(tokenizer_io["video"]).to(device)).cpu()
    assert codes.dtype == torch.long and codes.shape == (2, 4, 8, 8)
    assert (codes == ids(tokenizer_io["ids"])).float().mean() >= 0.999


def test_decode_from_stored_ids(converted, tokenizer_io, device):
    with torch.no_grad():
        recon = converted.tokenizer.decode(ids(tokenizer_io["ids"]).to(device)).cpu()
    error = (recon - channels_first(tokenizer_io["recon"])).abs().max().item()
    assert error <= RECON_ATOL


@pytest.mark.parametrize("task", TASKS)
def test_transformer_logits(converted, transformer_io, device, task):
    vocab = converted.config.transformer.vocab_size
    tokens = ids(transformer_io[f"{task}__masked_inputs"])
    assert (tokens < 0).any()  # special ids are stored negative...
    tokens = torch.where(tokens < 0, tokens + vocab, tokens)  # ...and wrap around as in Flax's jnp.take
    with torch.no_grad():
        logits = converted.transformer(tokens.to(device)).cpu()
    expected = torch.from_numpy(transformer_io[f"{task}__logits"])
    assert logits.shape == expected.shape == (2, 258, 86)
    assert (logits - expected).abs().max().item() <= LOGITS_ATOL


def test_saved_and_reloaded_model_keeps_parity(converted, tokenizer_io, device, tmp_path):
    from magvit_cli.checkpoint import load_model, save_model

    save_model(tmp_path / "tiny", converted)
    model = load_model(tmp_path / "tiny", device=device)
    assert model.config.to_dict() == converted.config.to_dict()
    with torch.no_grad():
        codes = model.tokenizer.encode(channels_first(tokenizer_io["video"]).to(device)).cpu()
        recon = model.tokenizer.decode(ids(tokenizer_io["ids"]).to(device)).cpu()
    assert (codes == ids(tokenizer_io["ids"])).float().mean() >= 0.999
    assert (recon - channels_first(tokenizer_io["recon"])).abs().max().item() <= RECON_ATOL


def test_g_params_do_not_reproduce(reference_dir, tokenizer_io, device):
    # The fixture's g_params differ on purpose from the ema_params that produced the outputs.
    model = convert(reference_dir / "config.json", reference_dir / "tokenizer_ckpt", tokenizer_params="g_params")
    assert model.transformer is None and model.config.tasks == []
    with torch.no_grad():
        z = model.to(device).tokenizer.encode_latents(channels_first(tokenizer_io["video"]).to(device)).cpu()
    assert (z - channels_first(tokenizer_io["encoder_raw"])).abs().max().item() > 1e-2


def test_tokenizer_checkpoint_found_through_config(reference_dir, converted):
    # config.json's transformer_config.vq_model_from.checkpoint_path is "tokenizer_ckpt", relative to it.
    model = convert(reference_dir / "config.json", transformer_ckpt=reference_dir / "transformer_ckpt")
    for name, tensor in converted.state_dict().items():
        assert torch.equal(model.state_dict()[name], tensor.cpu()), name  # converted lives on `device`


def test_unknown_tokenizer_tree(reference_dir):
    with pytest.raises(UsageError, match="ema_params"):
        convert(reference_dir / "config.json", reference_dir / "tokenizer_ckpt", tokenizer_params="params")


# --------------------------------------------------------------------------- mismatches


def test_tokenizer_shape_mismatch_names_the_tensor(reference_dir, official_config):
    config = json.loads(json.dumps(official_config))
    config["tokenizer_config"]["vqvae"]["embedding_dim"] = 16
    del config["transformer_config"]
    with pytest.raises(ModelError, match=r"tokenizer\.encoder\.conv_out\.weight"):
        convert(config, reference_dir / "tokenizer_ckpt")


def test_transformer_mismatch_names_the_tensor(reference_dir, official_config):
    config = json.loads(json.dumps(official_config))
    config["transformer_config"]["dataset_configs"]["num_classes"] = 7
    with pytest.raises(ModelError, match="word_embeddings"):
        convert(config, reference_dir / "tokenizer_ckpt", reference_dir / "transformer_ckpt")
    config = json.loads(json.dumps(official_config))
    config["transformer_config"]["multi_task"] = False
    with pytest.raises(ModelError, match="position_embeddings"):
        convert(config, reference_dir / "tokenizer_ckpt", reference_dir / "transformer_ckpt")
    config = json.loads(json.dumps(official_config))
    config["transformer_config"]["transformer"]["mlp_dim"] = 96
    with pytest.raises(ModelError, match=r"transformer\.layers\.0\.mlp_in\.weight"):
        convert(config, reference_dir / "tokenizer_ckpt", reference_dir / "transformer_ckpt")


def test_transformer_checkpoint_without_config(reference_dir, official_config):
    config = {"tokenizer_config": official_config["tokenizer_config"]}
    with pytest.raises(ModelError, match="transformer_config"):
        convert(config, reference_dir / "tokenizer_ckpt", reference_dir / "transformer_ckpt")


def test_swapped_checkpoints_are_rejected(reference_dir):
    with pytest.raises(ModelError):
        tokenizer_state_dict(read_flax_checkpoint(reference_dir / "transformer_ckpt"))
    with pytest.raises(ModelError):
        transformer_state_dict(read_flax_checkpoint(reference_dir / "tokenizer_ckpt"))


# --------------------------------------------------------------------------- reading checkpoints


def test_read_fixture_checkpoint(reference_dir):
    state = read_flax_checkpoint(reference_dir / "tokenizer_ckpt")  # a work dir: picks checkpoint_0
    # The official train state (tests/fixtures keeps it without the optimiser states).
    assert {"g_params", "ema_params", "d_params", "global_step"} <= set(state)
    assert int(state["global_step"]) == 0
    leaves = []

    def walk(tree):
        for value in tree.values():
            walk(value) if isinstance(value, dict) else leaves.append(value)

    walk(state["ema_params"])
    assert len(leaves) == 67 and sum(a.size for a in leaves) == 792_675  # tokenizer_params.txt
    assert state["ema_params"]["encoder"]["Conv_0"]["kernel"].shape == (3, 3, 3, 3, 32)
    assert all(a.dtype == np.float32 for a in leaves)


def test_directory_picks_newest_step_and_skips_tmp(tmp_path):
    for step in (2, 10, 9):
        (tmp_path / f"checkpoint_{step}").write_bytes(pack_flax({"step": np.int64(step)}))
    (tmp_path / "checkpoint_11.tmp").write_bytes(b"partial write")
    (tmp_path / "checkpoint_12tmp").write_bytes(b"partial write")
    assert read_flax_checkpoint(tmp_path)["step"] == 10
    assert read_flax_checkpoint(tmp_path / "checkpoint_2")["step"] == 2


def test_chunked_scalar_and_bfloat16_leaves(tmp_path):
    big = np.arange(10, dtype=np.float32).reshape(2, 5)
    flat = big.reshape(-1)
    chunked = {"__msgpack_chunked_array__": True, "shape": {"0": 2, "1": 5},
               "chunks": {"0": flat[:4], "1": flat[4:8], "2": flat[8:]}}
    values = np.array([1.5, -2.0, 0.15625, 0.0], dtype=np.float32)
    bf16 = msgpack.ExtType(1, msgpack.packb(([4], "bfloat16", (values.view(np.uint32) >> 16).astype("<u2").tobytes()),
                                            use_bin_type=True))
    path = tmp_path / "checkpoint_3"
    payload = pack_flax({"params": {"big": chunked, "scale": np.float32(0.5)}})
    # Splice the bfloat16 leaf in with the raw ExtType (numpy has no bfloat16 to build it from).
    tree = msgpack.unpackb(payload, raw=False)
    tree["params"]["bf16"] = bf16
    path.write_bytes(msgpack.packb(tree, use_bin_type=True))
    state = read_flax_checkpoint(path)
    assert np.array_equal(state["params"]["big"], big)
    assert state["params"]["scale"] == np.float32(0.5) and np.ndim(state["params"]["scale"]) == 0
    assert state["params"]["bf16"].dtype == np.float32 and np.array_equal(state["params"]["bf16"], values)


@pytest.mark.parametrize("content", [b"", b"\x00\x01garbage", msgpack.packb([1, 2, 3])])
def test_corrupt_checkpoint(tmp_path, content):
    path = tmp_path / "checkpoint_1"
    path.write_bytes(content)
    with pytest.raises(ModelError, match="checkpoint"):
        read_flax_checkpoint(path)


def test_array_with_wrong_size(tmp_path):
    leaf = msgpack.ExtType(1, msgpack.packb(([3, 3], "float32", b"\x00" * 8), use_bin_type=True))
    (tmp_path / "checkpoint_1").write_bytes(msgpack.packb({"a": leaf}, use_bin_type=True))
    with pytest.raises(ModelError, match="shape"):
        read_flax_checkpoint(tmp_path / "checkpoint_1")


def test_missing_checkpoint(tmp_path):
    with pytest.raises(ModelError, match="does not exist"):
        read_flax_checkpoint(tmp_path / "nope")


def test_orbax_directory_needs_orbax(tmp_path, monkeypatch):
    for name in ("orbax", "orbax.checkpoint"):
        monkeypatch.setitem(sys.modules, name, None)  # as if the optional package were not installed
    (tmp_path / "_METADATA").write_text("{}")
    with pytest.raises(ModelError, match="pip install orbax-checkpoint"):
        read_flax_checkpoint(tmp_path)


# --------------------------------------------------------------------------- train-state layouts


def test_tree_selection_and_deprecated_layouts(reference_dir):
    state = read_flax_checkpoint(reference_dir / "tokenizer_ckpt")
    ema, raw = state["ema_params"], state["g_params"]
    assert tokenizer_param_tree(state) is ema
    assert tokenizer_param_tree(state, "g_params") is raw
    deprecated = {"g_optimizer": {"target": raw, "state": {}}, "ema_params": ema, "generator_state": {}}
    assert tokenizer_param_tree(deprecated) is ema
    assert tokenizer_param_tree(deprecated, "g_params") is raw
    assert tokenizer_param_tree(ema) is ema  # a bare parameter tree
    with pytest.raises(ModelError, match="ema_params"):
        tokenizer_param_tree({"g_params": raw})

    transformer = read_flax_checkpoint(reference_dir / "transformer_ckpt")
    params = transformer["params"]
    assert transformer_param_tree(transformer) is params
    assert transformer_param_tree({"optimizer": {"target": params, "state": {}}}) is params
    a, b = transformer_state_dict(transformer), transformer_state_dict({"optimizer": {"target": params}})
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_layout_rules(reference_dir):
    params = read_flax_checkpoint(reference_dir / "tokenizer_ckpt")["ema_params"]
    state = tokenizer_state_dict(params)
    kernel = params["decoder"]["ResBlock_3"]["Conv_0"]["kernel"]  # DHWIO (3, 3, 3, 32, 64)
    weight = state["decoder.res_blocks.3.conv1.weight"]  # OIDHW (64, 32, 3, 3, 3)
    assert weight.shape == (64, 32, 3, 3, 3)
    assert weight[5, 7, 0, 1, 2].item() == kernel[0, 1, 2, 7, 5]
    assert torch.equal(state["decoder.upsamples.1.conv.bias"], torch.tensor(params["decoder"]["Conv_2"]["bias"]))
    assert state["decoder.conv_out.weight"].shape == (3, 64, 3, 3, 3)  # decoder/Conv_3, the last conv
    assert torch.equal(state["encoder.norm_out.weight"], torch.tensor(params["encoder"]["GroupNorm_0"]["scale"]))

    tparams = read_flax_checkpoint(reference_dir / "transformer_ckpt")["params"]
    tstate = transformer_state_dict(tparams)
    attention = tparams["BertLayer_1"]["BertAttention_0"]["self_attention"]
    q = tstate["layers.1.attention.query.weight"]  # [heads*head_dim, D]; head h = rows h*32:(h+1)*32
    assert q[32 + 3, 10].item() == attention["query"]["kernel"][10, 1, 3]
    assert tstate["layers.1.attention.query.bias"][32 + 3].item() == attention["query"]["bias"][1, 3]
    out = tstate["layers.1.attention.out.weight"]  # [D, heads*head_dim]
    assert out[10, 32 + 3].item() == attention["out"]["kernel"][1, 3, 10]
    dense = tparams["BertLayer_0"]["BertMlp_0"]["intermediate_output"]["kernel"]  # [64, 128]
    assert tstate["layers.0.mlp_in.weight"][100, 5].item() == dense[5, 100]
    assert torch.equal(tstate["head_bias"], torch.tensor(tparams["BertMlmLayer_0"]["mlm_bias"]["bias"]))


# --------------------------------------------------------------------------- official configs


def test_official_config_translation(official_config):
    tok = tokenizer_config_from_official(official_config)
    assert tok == tokenizer_config_from_official(official_config["tokenizer_config"])
    tr = transformer_config_from_official(official_config, tok.codebook_size)
    assert (tr.codebook_size, tr.num_classes, tr.multi_task, tuple(tr.latent_shape)) == (64, 5, True, (4, 8, 8))
    assert (tr.dropout, tr.attention_dropout) == (0.1, 0.1)
    with pytest.raises(ModelError, match="vq_codebook_size"):
        transformer_config_from_official(official_config, 128)


def test_official_config_options(official_config):
    vq = dict(official_config["tokenizer_config"]["vqvae"])
    assert tokenizer_config_from_official({"vqvae": dict(vq, custom_conv_padding="reflect")}).padding_mode == "reflect"
    assert tokenizer_config_from_official({"vqvae": dict(vq, custom_conv_padding="constant")}).padding_mode == "zeros"
    # An integer n means "temporal down-sampling in the first n stages".
    assert tokenizer_config_from_official({"vqvae": dict(vq, temporal_downsample=1)}).temporal_downsample == (True, False)
    for key, value in [("architecture", "2dcnn"), ("conv_downsample", True), ("custom_conv_padding", "symmetric"),
                       ("norm_type", "LN"), ("upsample", "deconv")]:
        with pytest.raises(UnsupportedError, match=key):
            tokenizer_config_from_official({"vqvae": dict(vq, **{key: value})})
    with pytest.raises(ModelError, match="vqvae.filters"):
        tokenizer_config_from_official({"vqvae": {k: v for k, v in vq.items() if k != "filters"}})
    transformer = json.loads(json.dumps(official_config["transformer_config"]))
    transformer["condition_mode"] = "prefix"
    with pytest.raises(UnsupportedError, match="condition_mode"):
        transformer_config_from_official(transformer, 64)


# Transformer sizes counted from the official modules (spec §5.5).
PRESET_TRANSFORMERS = [
    ("ucf-b", False, 1127, 1025, 87_301_991),
    ("ucf-l", False, 1127, 1025, 305_567_847),
    ("bair-b", False, 1026, 1025, 87_224_322),
    ("bair-b", True, 1041, 1026, 87_236_625),
    ("bair-l", True, 1041, 1026, 305_480_721),
]


@pytest.mark.parametrize("name, multi_task, vocab, seq, parameters", PRESET_TRANSFORMERS)
def test_official_presets(name, multi_task, vocab, seq, parameters):
    official = official_preset(name, multi_task)
    tok = tokenizer_config_from_official(official)
    assert tok == TOKENIZER_PRESETS[name]
    tr = transformer_config_from_official(official, tok.codebook_size)
    assert (tr.vocab_size, tr.seq_length) == (vocab, seq)
    with torch.device("meta"):
        assert sum(p.numel() for p in Transformer(tr).parameters()) == parameters
        assert VQTokenizer(tok).latent_shape(16, *(official["transformer_config"]["image_size"],) * 2) == (4, 16, 16)
    tasks = official["transformer_config"]["tasks"]
    assert len(tasks) == (8 if multi_task else 1)


def test_preset_errors():
    with pytest.raises(UsageError, match="preset"):
        official_preset("kinetics-b")
    with pytest.raises(UsageError):
        official_preset("ucf-b", multi_task=True)
    with pytest.raises(UsageError, match="neither a preset"):
        convert("no-such-preset-or-file.json", "unused")


def test_shape_cross_check_direct(reference_dir, official_config):
    checkpoint = read_flax_checkpoint(reference_dir / "transformer_ckpt")
    config = transformer_config_from_official(official_config, 64)
    check_transformer_shapes(config, checkpoint)  # consistent: no error
    official = json.loads(json.dumps(official_config))
    official["transformer_config"]["transformer"]["num_heads"] = 4
    with pytest.raises(ModelError, match="query/kernel"):
        check_transformer_shapes(transformer_config_from_official(official, 64), checkpoint)
    official["transformer_config"]["transformer"].update(num_heads=2, num_layers=3)
    with pytest.raises(ModelError, match="BertLayer"):
        check_transformer_shapes(transformer_config_from_official(official, 64), checkpoint)


def test_copied_work_dir_converts(reference_dir, tmp_path, tokenizer_io, device):
    # A work dir with several steps: the newest one wins (here an identical copy).
    shutil.copy(reference_dir / "tokenizer_ckpt" / "checkpoint_0", tmp_path / "checkpoint_1000")
    (tmp_path / "checkpoint_2000.orbax-checkpoint-tmp-1").mkdir()
    model = convert(reference_dir / "config.json", tmp_path).to(device)
    with torch.no_grad():
        recon = model.tokenizer.decode(ids(tokenizer_io["ids"]).to(device)).cpu()
    assert (recon - channels_first(tokenizer_io["recon"])).abs().max().item() <= RECON_ATOL


# --------------------------------------------------------------------------- other layouts


def flax_tokenizer_tree(model: VQTokenizer) -> dict:
    """The official Flax parameter tree of `model`, written from the spec's naming rules (§3.3, §3.5, §4)."""
    tree: dict = {}
    last_decoder_conv = len(model.decoder.upsamples) + 1
    renames = [
        (r"^quantizer\.codebook$", "quantizer/codebook"),
        (r"^(encoder|decoder)\.conv_in\.", r"\1/Conv_0/"),
        (r"^encoder\.conv_out\.", "encoder/Conv_1/"),
        (r"^decoder\.conv_out\.", f"decoder/Conv_{last_decoder_conv}/"),
        (r"^decoder\.upsamples\.(\d+)\.conv\.", lambda m: f"decoder/Conv_{int(m.group(1)) + 1}/"),
        (r"^(encoder|decoder)\.norm_out\.", r"\1/GroupNorm_0/"),
        (r"^(encoder|decoder)\.res_blocks\.(\d+)\.", r"\1/ResBlock_\2/"),
        (r"/norm1\.", "/GroupNorm_0/"), (r"/conv1\.", "/Conv_0/"), (r"/norm2\.", "/GroupNorm_1/"),
        (r"/conv2\.", "/Conv_1/"), (r"/shortcut\.", "/Conv_2/"),
    ]
    for name, tensor in model.state_dict().items():
        path = name
        for pattern, replacement in renames:
            path = re.sub(pattern, replacement, path)
        array = tensor.numpy()
        if path.endswith("/weight") and array.ndim == 5:
            path, array = path[: -len("weight")] + "kernel", array.transpose(2, 3, 4, 1, 0)
        elif path.endswith("/weight"):
            path = path[: -len("weight")] + "scale"
        node = tree
        *parents, leaf = path.split("/")
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = np.ascontiguousarray(array)
    return tree


def official_tokenizer_config(config) -> dict:
    vqvae = {key: list(value) if isinstance(value, tuple) else value for key, value in config.to_dict().items()}
    del vqvae["padding_mode"]
    vqvae.update(architecture="3dcnn", norm_type="GN", activation_fn="swish", conv_downsample=False)
    return {"tokenizer_config": {"image_size": 32, "dataset_configs": {"num_frames": 8}, "vqvae": vqvae}}


def test_four_level_layout_with_spatial_only_stage(tmp_path):
    """A 128²-style layout (4 levels, 2 blocks, flags True/False/True): decoder convs Conv_1..3 up, Conv_4 out."""
    from magvit_cli.tokenizer import TokenizerConfig

    config = TokenizerConfig(filters=32, channel_multipliers=(1, 2, 1, 2), temporal_downsample=(True, False, True),
                             num_enc_res_blocks=2, num_dec_res_blocks=2, embedding_dim=8, codebook_size=16)
    torch.manual_seed(0)
    reference = VQTokenizer(config).eval()
    tree = flax_tokenizer_tree(reference)
    assert set(tree["decoder"]) >= {"Conv_0", "Conv_1", "Conv_2", "Conv_3", "Conv_4"}
    (tmp_path / "checkpoint_7").write_bytes(pack_flax({"ema_params": tree, "global_step": np.int64(7)}))
    model = convert(official_tokenizer_config(config), tmp_path)
    assert model.config.tokenizer == config and model.transformer is None
    for name, tensor in reference.state_dict().items():
        assert torch.equal(model.tokenizer.state_dict()[name], tensor), name
    video = torch.rand(1, 3, 8, 32, 32)
    with torch.no_grad():
        assert torch.equal(model.tokenizer.encode(video), reference.encode(video))


def test_convert_by_preset_name(tmp_path):
    torch.manual_seed(0)
    reference = VQTokenizer(TOKENIZER_PRESETS["bair-b"])
    (tmp_path / "checkpoint_1").write_bytes(pack_flax({"ema_params": flax_tokenizer_tree(reference)}))
    model = convert("bair-b", tmp_path)
    assert model.config.tokenizer == TOKENIZER_PRESETS["bair-b"]
    assert (model.config.num_frames, tuple(model.config.resolution), model.config.fps) == (16, (64, 64), 10.0)
    assert torch.equal(model.tokenizer.decoder.conv_out.weight, reference.decoder.conv_out.weight)


def test_orbax_checkpoint(reference_dir, tmp_path, tokenizer_io, device):
    ocp = pytest.importorskip("orbax.checkpoint")
    state = read_flax_checkpoint(reference_dir / "tokenizer_ckpt")
    ocp.PyTreeCheckpointer().save(str(tmp_path / "checkpoint_5"), state)
    restored = read_flax_checkpoint(tmp_path)
    kernel = restored["ema_params"]["encoder"]["Conv_0"]["kernel"]
    assert np.array_equal(kernel, state["ema_params"]["encoder"]["Conv_0"]["kernel"])
    model = convert(reference_dir / "config.json", tmp_path / "checkpoint_5").to(device)
    with torch.no_grad():
        recon = model.tokenizer.decode(ids(tokenizer_io["ids"]).to(device)).cpu()
    assert (recon - channels_first(tokenizer_io["recon"])).abs().max().item() <= RECON_ATOL
