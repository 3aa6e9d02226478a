"""Convert checkpoints of the official MAGVIT trainers (JAX/Flax) into a `Magvit` model.

Reading never unpickles: legacy Flax checkpoints are msgpack files (`checkpoint_<step>`)
decoded with `msgpack`; Orbax checkpoint directories need the optional
`orbax-checkpoint` package. Every Flax -> PyTorch name and layout rule lives in the
tables below (`_tokenizer_table`, `_transformer_table` and the leaf rules).

Official sources: videogvt/train_lib/train_utils.py (saving), train_state_manager.py
(tokenizer train-state layouts), maskgvt_train_lib.py (vocabulary, sequence length).
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Callable

import msgpack
import numpy as np
import torch
from torch import nn

from magvit_cli.checkpoint import check_sizes
from magvit_cli.errors import ModelError, UnsupportedError, UsageError
from magvit_cli.config import TOKENIZER_PRESETS, TRANSFORMER_PRESETS, ModelConfig, TokenizerConfig, TransformerConfig
from magvit_cli.model import Magvit

TOKENIZER_PARAM_TREES = ("ema_params", "g_params")

# ---------------------------------------------------------------------------
# Reading checkpoints.

_STEP_NAME = re.compile(r"^checkpoint_(\d+)$")
_EXT_NDARRAY, _EXT_COMPLEX, _EXT_NPSCALAR = 1, 2, 3  # flax.serialization._MsgpackExtType
_CHUNKED = "__msgpack_chunked_array__"


def read_flax_checkpoint(path: str | Path) -> dict:
    """Nested dict of numpy arrays from an official checkpoint.

    `path` is a legacy msgpack file `checkpoint_<step>`, an Orbax checkpoint directory,
    or a work directory, in which case its newest `checkpoint_<step>` is read (names
    with anything after the step, such as Flax/Orbax '...tmp...' leftovers, are skipped).
    """
    path = Path(path).expanduser()
    if not path.exists():
        raise ModelError(f"checkpoint {path} does not exist")
    if path.is_dir():
        steps = [
            (int(m.group(1)), entry)
            for entry in path.iterdir()
            if (m := _STEP_NAME.match(entry.name))
        ]
        if steps:
            return read_flax_checkpoint(max(steps)[1])
        return _read_orbax(path)
    return _read_msgpack(path)


def _read_msgpack(path: Path) -> dict:
    try:
        tree = msgpack.unpackb(path.read_bytes(), ext_hook=_ext_hook, raw=False, strict_map_key=False)
    except ModelError:
        raise
    except Exception as e:  # msgpack raises several unrelated types on corrupt data
        raise ModelError(f"{path} is not a readable Flax msgpack checkpoint ({type(e).__name__}: {e})") from None
    if not isinstance(tree, dict):
        raise ModelError(f"{path} does not hold a Flax train state (top level is {type(tree).__name__})")
    try:
        return _unchunk(tree)
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise ModelError(f"{path} holds a damaged chunked array ({type(e).__name__}: {e})") from None


def _ext_hook(code: int, data: bytes):
    """Flax's msgpack extension types: arrays and numpy scalars are [shape, dtype name, raw C-order bytes]."""
    if code == _EXT_COMPLEX:
        real, imag = msgpack.unpackb(data)
        return complex(real, imag)
    if code not in (_EXT_NDARRAY, _EXT_NPSCALAR):
        raise ModelError(f"unknown msgpack extension type {code} in checkpoint")
    shape, dtype, buffer = msgpack.unpackb(data, raw=True)
    dtype = dtype.decode()
    if dtype == "bfloat16":  # numpy has no bfloat16: widen to float32 (the upper half of its bits)
        array = (np.frombuffer(buffer, "<u2").astype(np.uint32) << 16).view(np.float32)
    else:
        try:
            array = np.frombuffer(buffer, np.dtype(dtype))
        except TypeError:
            raise ModelError(f"checkpoint array has unsupported dtype {dtype!r}") from None
    try:
        array = array.reshape(shape)
    except ValueError:
        raise ModelError(f"checkpoint array of shape {shape} has {array.size} elements") from None
    return array if code == _EXT_NDARRAY else array[()]


def _unchunk(tree):
    """Re-assemble arrays that Flax split into chunks (above 2**30 bytes)."""
    if not isinstance(tree, dict):
        return tree
    if _CHUNKED in tree:
        shape = [tree["shape"][str(i)] for i in range(len(tree["shape"]))]
        chunks = [tree["chunks"][str(i)] for i in range(len(tree["chunks"]))]
        return np.concatenate(chunks).reshape(shape)
    return {key: _unchunk(value) for key, value in tree.items()}


def _read_orbax(path: Path) -> dict:
    try:
        import orbax.checkpoint as ocp
    except ImportError:
        raise ModelError(
            f"{path} is a directory without checkpoint_<step> files, so it must be an Orbax checkpoint, "
            "and reading Orbax checkpoints needs the optional package orbax-checkpoint",
            hint="pip install orbax-checkpoint",
        ) from None
    try:
        tree = ocp.PyTreeCheckpointer().restore(str(path.resolve()))
    except Exception as e:  # Orbax and TensorStore raise many types
        raise ModelError(f"cannot read Orbax checkpoint {path} ({type(e).__name__}: {e})") from None
    return _to_numpy(tree)


def _to_numpy(tree):
    """Orbax returns jax arrays and may keep lists: make it look like a Flax state dict."""
    if isinstance(tree, dict):
        return {str(key): _to_numpy(value) for key, value in tree.items()}
    if isinstance(tree, (list, tuple)):
        return {str(i): _to_numpy(value) for i, value in enumerate(tree)}
    if tree is None or isinstance(tree, (int, float, str, bytes, complex)):
        return tree
    return np.asarray(tree)


# ---------------------------------------------------------------------------
# Flax -> PyTorch tables.

LeafRule = tuple[str, str, Callable[[np.ndarray], np.ndarray]]  # (Flax leaf, PyTorch name, layout change)


def _same(a: np.ndarray) -> np.ndarray:
    return a


def _conv_kernel(a: np.ndarray) -> np.ndarray:
    return a.transpose(4, 3, 0, 1, 2)  # DHWIO -> [out, in, kT, kH, kW]


def _dense_kernel(a: np.ndarray) -> np.ndarray:
    return a.T  # [in, out] -> [out, in]


def _heads_in_kernel(a: np.ndarray) -> np.ndarray:
    return a.reshape(a.shape[0], -1).T  # [D, heads, head_dim] -> [heads*head_dim, D]


def _heads_out_kernel(a: np.ndarray) -> np.ndarray:
    return a.reshape(-1, a.shape[-1]).T  # [heads, head_dim, D] -> [D, heads*head_dim]


def _flatten(a: np.ndarray) -> np.ndarray:
    return a.reshape(-1)  # [heads, head_dim] -> [heads*head_dim]


CONV: list[LeafRule] = [("kernel", "weight", _conv_kernel), ("bias", "bias", _same)]
NORM: list[LeafRule] = [("scale", "weight", _same), ("bias", "bias", _same)]
DENSE: list[LeafRule] = [("kernel", "weight", _dense_kernel), ("bias", "bias", _same)]
ATTENTION_IN: list[LeafRule] = [("kernel", "weight", _heads_in_kernel), ("bias", "bias", _flatten)]
ATTENTION_OUT: list[LeafRule] = [("kernel", "weight", _heads_out_kernel), ("bias", "bias", _same)]
EMBED: list[LeafRule] = [("embedding", "weight", _same)]

# (Flax module path, PyTorch module name, leaf rules)
Table = list[tuple[str, str, list[LeafRule]]]


def _indices(tree: dict, prefix: str) -> list[int]:
    """Sorted k of the children named `<prefix>_<k>` (Flax auto-names)."""
    pattern = re.compile(rf"^{prefix}_(\d+)$")
    return sorted(int(m.group(1)) for key in tree if (m := pattern.match(key)))


def _tokenizer_table(params: dict) -> Table:
    """Names of enc_dec_3dcnn.Encoder/Decoder (auto-named by creation order) -> magvit_cli.tokenizer."""
    table: Table = [("quantizer", "quantizer", [("codebook", "codebook", _same)])]
    for part in ("encoder", "decoder"):
        tree = _subtree(params, part, "tokenizer parameters")
        for k in _indices(tree, "ResBlock"):
            flax, torch_name = f"{part}/ResBlock_{k}", f"{part}.res_blocks.{k}"
            table += [
                (f"{flax}/GroupNorm_0", f"{torch_name}.norm1", NORM),
                (f"{flax}/Conv_0", f"{torch_name}.conv1", CONV),
                (f"{flax}/GroupNorm_1", f"{torch_name}.norm2", NORM),
                (f"{flax}/Conv_1", f"{torch_name}.conv2", CONV),
                (f"{flax}/Conv_2", f"{torch_name}.shortcut", CONV),  # only where channels change
            ]
        table.append((f"{part}/GroupNorm_0", f"{part}.norm_out", NORM))
        convs = _indices(tree, "Conv")
        if len(convs) < 2:
            raise ModelError(f"tokenizer parameters: {part} has {len(convs)} convolutions, expected at least 2")
        # First conv in, last conv out; in the decoder the ones between are the up-sampling convs.
        table.append((f"{part}/Conv_{convs[0]}", f"{part}.conv_in", CONV))
        table.append((f"{part}/Conv_{convs[-1]}", f"{part}.conv_out", CONV))
        for j, k in enumerate(convs[1:-1]):
            table.append((f"{part}/Conv_{k}", f"{part}.upsamples.{j}.conv", CONV))
    return table


def _transformer_table(params: dict) -> Table:
    """Names of simplified_bert.Bert -> magvit_cli.transformer."""
    table: Table = [
        ("BertEmbed_0/word_embeddings", "word_embeddings", EMBED),
        ("BertEmbed_0/position_embeddings", "position_embeddings", EMBED),
        ("BertEmbed_0/embeddings_ln", "embeddings_ln", NORM),
        ("BertMlmLayer_0/mlm_dense", "head_dense", DENSE),
        ("BertMlmLayer_0/mlm_ln", "head_ln", NORM),
        ("BertMlmLayer_0/mlm_bias", "", [("bias", "head_bias", _same)]),
    ]
    for i in _indices(params, "BertLayer"):
        attention, mlp, layer = f"BertLayer_{i}/BertAttention_0", f"BertLayer_{i}/BertMlp_0", f"layers.{i}"
        table += [
            (f"{attention}/self_attention/query", f"{layer}.attention.query", ATTENTION_IN),
            (f"{attention}/self_attention/key", f"{layer}.attention.key", ATTENTION_IN),
            (f"{attention}/self_attention/value", f"{layer}.attention.value", ATTENTION_IN),
            (f"{attention}/self_attention/out", f"{layer}.attention.out", ATTENTION_OUT),
            (f"{attention}/attention_output_ln", f"{layer}.attention_ln", NORM),
            (f"{mlp}/intermediate_output", f"{layer}.mlp_in", DENSE),
            (f"{mlp}/layer_output", f"{layer}.mlp_out", DENSE),
            (f"{mlp}/layer_output_ln", f"{layer}.mlp_ln", NORM),
        ]
    return table


def _apply_table(params: dict, table: Table, what: str) -> dict[str, tuple[str, torch.Tensor]]:
    """PyTorch name -> (Flax path, tensor). Every Flax leaf must be used exactly once."""
    leaves = dict(_flatten_tree(params))
    out: dict[str, tuple[str, torch.Tensor]] = {}
    for flax_module, torch_module, rules in table:
        for flax_leaf, torch_leaf, layout in rules:
            flax_path = f"{flax_module}/{flax_leaf}"
            if flax_path not in leaves:
                continue  # optional leaves (biases, shortcuts); the strict load reports real gaps
            array = np.asarray(leaves.pop(flax_path))
            if not np.issubdtype(array.dtype, np.floating):
                raise ModelError(f"{what}: {flax_path} has dtype {array.dtype}, expected floating point")
            name = f"{torch_module}.{torch_leaf}" if torch_module else torch_leaf
            out[name] = (flax_path, torch.tensor(np.ascontiguousarray(layout(array)), dtype=torch.float32))
    if leaves:
        raise ModelError(
            f"{what}: unexpected parameter {next(iter(leaves))} "
            f"({len(leaves)} not understood); is this an official MAGVIT checkpoint of this kind?"
        )
    return out


def _flatten_tree(tree: dict, prefix: str = ""):
    for key, value in tree.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict):
            yield from _flatten_tree(value, path + "/")
        else:
            yield path, value


def _subtree(tree: dict, key: str, what: str) -> dict:
    value = tree.get(key) if isinstance(tree, dict) else None
    if not isinstance(value, dict) or not value:
        keys = ", ".join(sorted(tree)) if isinstance(tree, dict) else type(tree).__name__
        raise ModelError(f"{what}: no {key!r} found (has: {keys})")
    return value


def tokenizer_param_tree(checkpoint: dict, which: str = "ema_params") -> dict:
    """The generator parameter tree of a tokenizer checkpoint (spec §11.2).

    `which` is "ema_params" (the EMA weights, what the official transformer trainer
    loads) or "g_params" (the raw weights; `g_optimizer/target` in the deprecated
    layout). A bare parameter tree (encoder/decoder/quantizer) is returned as is.
    """
    if which not in TOKENIZER_PARAM_TREES:
        raise UsageError(f"tokenizer parameters must be one of {', '.join(TOKENIZER_PARAM_TREES)}, got {which!r}")
    if {"encoder", "decoder", "quantizer"} <= set(checkpoint):
        return checkpoint
    if which == "g_params" and "g_optimizer" in checkpoint:  # VQGANTrainStateDeprecated
        return _subtree(_subtree(checkpoint, "g_optimizer", "tokenizer checkpoint"), "target", "g_optimizer")
    return _subtree(checkpoint, which, "tokenizer checkpoint")


def transformer_param_tree(checkpoint: dict) -> dict:
    """The parameter tree of a transformer checkpoint: `params`, or `optimizer/target` in the older layout."""
    if "BertEmbed_0" in checkpoint:
        return checkpoint
    if "params" not in checkpoint and "optimizer" in checkpoint:
        return _subtree(_subtree(checkpoint, "optimizer", "transformer checkpoint"), "target", "optimizer")
    return _subtree(checkpoint, "params", "transformer checkpoint")


def tokenizer_state_dict(checkpoint: dict, which: str = "ema_params") -> dict[str, torch.Tensor]:
    """A `VQTokenizer` state dict from an official tokenizer checkpoint (or its parameter tree)."""
    params = tokenizer_param_tree(checkpoint, which)
    converted = _apply_table(params, _tokenizer_table(params), "tokenizer checkpoint")
    return {name: tensor for name, (_, tensor) in converted.items()}


def transformer_state_dict(checkpoint: dict) -> dict[str, torch.Tensor]:
    """A `Transformer` state dict from an official MaskGVT checkpoint (or its parameter tree)."""
    params = transformer_param_tree(checkpoint)
    converted = _apply_table(params, _transformer_table(params), "transformer checkpoint")
    return {name: tensor for name, (_, tensor) in converted.items()}


def load_converted(module: nn.Module, state: dict[str, torch.Tensor], what: str) -> None:
    """Strict load with errors that name the tensor (`what` prefixes the names, e.g. 'tokenizer')."""
    check_converted(module.state_dict(), state, what)
    module.load_state_dict(state, strict=True)


def check_converted(expected: dict[str, torch.Tensor], state: dict[str, torch.Tensor], what: str) -> None:
    """Every tensor of `expected` (a state dict, possibly on the meta device) is in `state`, with its shape."""
    for name, tensor in expected.items():
        if name not in state:
            raise ModelError(f"the checkpoint has no tensor for {what}.{name} {tuple(tensor.shape)}")
        if state[name].shape != tensor.shape:
            raise ModelError(
                f"{what}.{name}: the checkpoint has shape {tuple(state[name].shape)}, "
                f"the configured model expects {tuple(tensor.shape)}",
                hint="the config does not match the checkpoint",
            )
    extra = sorted(set(state) - set(expected))
    if extra:
        raise ModelError(f"the checkpoint has {what}.{extra[0]}, which the configured model lacks",
                         hint="the config does not match the checkpoint")


# ---------------------------------------------------------------------------
# Official configs -> ours.


def _section(cfg: dict, key: str, where: str) -> dict:
    value = cfg.get(key)
    if not isinstance(value, dict):
        raise ModelError(f"official config: {where}{key} is missing or not an object")
    return value


def _optional_section(cfg: dict, key: str) -> dict:
    value = cfg.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ModelError(f"official config: {key} must be an object, got {type(value).__name__}")
    return value


def _require(cfg: dict, key: str, where: str):
    if key not in cfg or cfg[key] is None:
        raise ModelError(f"official config: {where}{key} is missing")
    return cfg[key]


def _expect(cfg: dict, key: str, allowed: tuple, where: str) -> None:
    """Reject official options that change the architecture in ways this port does not implement."""
    value = cfg.get(key)
    if value not in allowed:
        raise UnsupportedError(f"official config: {where}{key} = {value!r} is not supported (supported: {allowed})")


def tokenizer_config_from_official(cfg: dict) -> TokenizerConfig:
    """TokenizerConfig from an official VQGAN config (`tokenizer_config`, or a dict holding it)."""
    cfg = cfg.get("tokenizer_config", cfg)
    vq = _section(cfg, "vqvae", "")
    where = "vqvae."
    _expect(vq, "architecture", ("3dcnn",), where)
    _expect(vq, "norm_type", ("GN",), where)
    _expect(vq, "activation_fn", ("swish",), where)
    _expect(vq, "conv_downsample", (None, False), where)
    _expect(vq, "upsample", (None, "nearest+conv"), where)  # the decoder reads `upsample`, not deconv_upsample
    _expect(vq, "latent_normalize", (None, False), where)
    _expect(vq, "vector_quantizer_class", (None, "VectorQuantizer"), where)
    _expect(vq, "custom_conv_padding", (None, "constant", "reflect"), where)
    multipliers = _require(vq, "channel_multipliers", where)
    if not isinstance(multipliers, (list, tuple)):
        raise ModelError(f"official config: vqvae.channel_multipliers must be a list, got {multipliers!r}")
    temporal = _require(vq, "temporal_downsample", where)
    if isinstance(temporal, int) and not isinstance(temporal, bool):
        # An integer n means "the first n stages" (enc_dec_3dcnn._get_selected_flags).
        stages = len(multipliers) - 1
        if not 0 <= temporal <= stages:
            raise ModelError(f"official config: vqvae.temporal_downsample = {temporal} is not in [0, {stages}]")
        temporal = [i < temporal for i in range(stages)]
    if not isinstance(temporal, (list, tuple)):
        raise ModelError(f"official config: vqvae.temporal_downsample must be a list or an integer, got {temporal!r}")
    return TokenizerConfig(
        filters=_require(vq, "filters", where),
        channel_multipliers=tuple(multipliers),
        temporal_downsample=tuple(temporal),
        num_enc_res_blocks=_require(vq, "num_enc_res_blocks", where),
        num_dec_res_blocks=_require(vq, "num_dec_res_blocks", where),
        embedding_dim=_require(vq, "embedding_dim", where),
        codebook_size=_require(vq, "codebook_size", where),
        padding_mode="reflect" if vq.get("custom_conv_padding") == "reflect" else "zeros",
    )


def transformer_config_from_official(cfg: dict, codebook_size: int) -> TransformerConfig:
    """TransformerConfig from an official MaskGVT config (`transformer_config`, or a dict holding it)."""
    cfg = cfg.get("transformer_config", cfg)
    model = _section(cfg, "transformer", "")
    where = "transformer."
    _expect(model, "variant", (None, "simplified_bert"), where)
    _expect(model, "use_condition_segment", (None, False), where)
    _expect(cfg, "condition_mode", (None, "cond->input"), "")
    vq_codebook_size = cfg.get("vq_codebook_size", -1)
    if isinstance(vq_codebook_size, int) and vq_codebook_size > 0 and vq_codebook_size != codebook_size:
        raise ModelError(
            f"official config: vq_codebook_size {vq_codebook_size} differs from the tokenizer's codebook_size {codebook_size}"
        )
    latent_shape = _require(model, "latent_shape", where)
    if not isinstance(latent_shape, (list, tuple)):
        raise ModelError(f"official config: transformer.latent_shape must be a list, got {latent_shape!r}")
    dataset = _optional_section(cfg, "dataset_configs")
    return TransformerConfig(
        codebook_size=codebook_size,
        num_classes=dataset.get("num_classes", 0),
        multi_task=cfg.get("multi_task", False),
        latent_shape=tuple(latent_shape),
        hidden_size=_require(model, "hidden_size", where),
        num_layers=_require(model, "num_layers", where),
        num_heads=_require(model, "num_heads", where),
        mlp_dim=_require(model, "mlp_dim", where),
        dropout=model.get("dropout_rate", 0.1),
        attention_dropout=model.get("attention_dropout_rate", 0.1),
    )


def check_transformer_shapes(config: TransformerConfig, checkpoint: dict) -> None:
    """Cross-check the config with the tensors before anything is built; a mismatch names the tensor."""
    params = transformer_param_tree(checkpoint)
    leaves = dict(_flatten_tree(params))
    expected = {
        "BertEmbed_0/position_embeddings/embedding": (config.seq_length, config.hidden_size, "sequence length"),
        "BertEmbed_0/word_embeddings/embedding": (config.vocab_size, config.hidden_size, "vocabulary size"),
    }
    for path, (rows, cols, meaning) in expected.items():
        if path not in leaves:
            raise ModelError(f"transformer checkpoint: {path} is missing")
        shape = tuple(np.shape(leaves[path]))
        if shape != (rows, cols):
            raise ModelError(
                f"transformer checkpoint: {path} has shape {shape}, but the config implies {(rows, cols)} "
                f"({meaning} {rows}, hidden size {cols})",
                hint="the official config does not match the checkpoint",
            )
    layers = len(_indices(params, "BertLayer"))
    if layers != config.num_layers:
        raise ModelError(f"transformer checkpoint has {layers} BertLayer_* blocks, the config says {config.num_layers}")
    query = leaves.get("BertLayer_0/BertAttention_0/self_attention/query/kernel")
    if query is not None and np.ndim(query) == 3 and np.shape(query)[1] != config.num_heads:
        raise ModelError(
            f"transformer checkpoint: BertLayer_0/BertAttention_0/self_attention/query/kernel has shape "
            f"{tuple(np.shape(query))} ({np.shape(query)[1]} heads), the config says {config.num_heads} heads"
        )


# ---------------------------------------------------------------------------
# Official layouts, for converting without the official config file.

# The BAIR multi-task list of maskgvt_bair_multitask_config.py.
BAIR_MULTITASK = [
    "frame_prediction", "frame_interpolation", "outpainting_h", "outpainting_v",
    "outpainting_c", "outpainting_dv", "inpainting_c", "inpainting_dv",
]
OFFICIAL_PRESETS = {
    # name: (dataset, image size, frame rate, classes, single-task task list, transformer size)
    "bair-b": ("bair", 64, 10, 0, ["frame_prediction"], "b"),
    "bair-l": ("bair", 64, 10, 0, ["frame_prediction"], "l"),
    "ucf-b": ("ucf101", 128, None, 101, ["full_generation"], "b"),
    "ucf-l": ("ucf101", 128, None, 101, ["full_generation"], "l"),
}


def official_preset(name: str, multi_task: bool = False) -> dict:
    """The official configs (as `tokenizer_config`/`transformer_config` dicts) of a released layout.

    BAIR models exist as single-task frame prediction and as the 8-task model
    (`multi_task`); UCF-101 models are class-conditional generation.
    """
    if name not in OFFICIAL_PRESETS:
        raise UsageError(f"unknown preset {name!r}", hint=f"presets: {', '.join(OFFICIAL_PRESETS)}")
    dataset, size, fps, classes, single_tasks, transformer_size = OFFICIAL_PRESETS[name]
    if multi_task and dataset != "bair":
        raise UsageError(f"the official {name} transformer is single-task (class-conditional generation)")
    tok, tr = TOKENIZER_PRESETS[name], TRANSFORMER_PRESETS[transformer_size]
    dataset_configs = {"num_frames": 16, "num_classes": classes}
    if fps is not None:
        dataset_configs["frame_rate"] = fps
    tokenizer_config = {
        "dataset_name": dataset,
        "image_size": size,
        "dataset_configs": dict(dataset_configs, num_classes=0),
        "vqvae": {
            "architecture": "3dcnn",
            "filters": tok.filters,
            "channel_multipliers": list(tok.channel_multipliers),
            "temporal_downsample": list(tok.temporal_downsample),
            "num_enc_res_blocks": tok.num_enc_res_blocks,
            "num_dec_res_blocks": tok.num_dec_res_blocks,
            "embedding_dim": tok.embedding_dim,
            "codebook_size": tok.codebook_size,
            "norm_type": "GN",
            "activation_fn": "swish",
            "conv_downsample": False,
        },
    }
    tasks = BAIR_MULTITASK if multi_task else single_tasks
    transformer_config = {
        "dataset_name": dataset,
        "image_size": size,
        "dataset_configs": dataset_configs,
        "multi_task": multi_task,
        "tasks": tasks,
        "vq_codebook_size": tok.codebook_size,
        "transformer": {
            "latent_shape": [4, 16, 16],
            "hidden_size": tr.hidden_size,
            "num_layers": tr.num_layers,
            "num_heads": tr.num_heads,
            "mlp_dim": tr.mlp_dim,
            "dropout_rate": 0.1,
            "attention_dropout_rate": 0.1,
        },
    }
    return {"tokenizer_config": tokenizer_config, "transformer_config": transformer_config}


# ---------------------------------------------------------------------------
# Everything together.


def convert(
    config: dict | str | Path,
    tokenizer_ckpt: str | Path | None = None,
    transformer_ckpt: str | Path | None = None,
    tokenizer_params: str = "ema_params",
):
    """Build a `Magvit` model from official checkpoints.

    `config` is a dict or JSON file with the official configs keyed `tokenizer_config`
    and `transformer_config` (as the official trainers see them), or a preset name
    (bair-b, bair-l, ucf-b, ucf-l). Without `tokenizer_ckpt`, the transformer config's
    `vq_model_from.checkpoint_path` is used when it is a local path. Without
    `transformer_ckpt` the model is tokenizer-only.
    """
    transformer_checkpoint = read_flax_checkpoint(transformer_ckpt) if transformer_ckpt is not None else None
    official, base_dir = _official_configs(config, transformer_checkpoint)
    tok_official = official.get("tokenizer_config")
    tr_official = official.get("transformer_config")
    if tok_official is None and isinstance(tr_official, dict):
        tok_official = _optional_section(tr_official, "vq_model_from").get("config")
    if not isinstance(tok_official, dict):
        raise ModelError("official config: no tokenizer_config (nor transformer_config.vq_model_from.config) found")

    if tokenizer_ckpt is None:
        tokenizer_ckpt = _tokenizer_path_from_config(tr_official, base_dir)
    tokenizer_config = tokenizer_config_from_official(tok_official)
    tokenizer_state = tokenizer_state_dict(read_flax_checkpoint(tokenizer_ckpt), tokenizer_params)

    transformer_config = None
    transformer_state = None
    if transformer_checkpoint is not None:
        if not isinstance(tr_official, dict):
            raise ModelError("official config: a transformer checkpoint was given but the config has no transformer_config")
        transformer_config = transformer_config_from_official(tr_official, tokenizer_config.codebook_size)
        check_transformer_shapes(transformer_config, transformer_checkpoint)
        transformer_state = transformer_state_dict(transformer_checkpoint)

    source = tr_official if transformer_config is not None else tok_official
    dataset_configs = _optional_section(source, "dataset_configs")
    image_size = source.get("image_size", 64)
    num_classes = transformer_config.num_classes if transformer_config is not None else 0
    description = {
        "tokenizer": tokenizer_config.to_dict(),
        "transformer": transformer_config.to_dict() if transformer_config is not None else None,
        "num_frames": dataset_configs.get("num_frames", 16),
        "resolution": list(image_size) if isinstance(image_size, (list, tuple)) else [image_size, image_size],
        "tasks": list(tr_official.get("tasks", [])) if transformer_config is not None else [],
        "class_names": [f"class_{i}" for i in range(num_classes)],
        "training_data": _describe(source),
    }
    if dataset_configs.get("frame_rate"):
        description["fps"] = dataset_configs["frame_rate"]
    model_config = ModelConfig.from_dict(description)  # validates values and cross-checks the two stages
    check_sizes(model_config, "the official config")
    with torch.device("meta"):  # shapes are compared before the model takes any memory
        skeleton = Magvit(model_config)
    check_converted(skeleton.tokenizer.state_dict(), tokenizer_state, "tokenizer")
    if transformer_state is not None:
        check_converted(skeleton.transformer.state_dict(), transformer_state, "transformer")
    model = Magvit(model_config)
    load_converted(model.tokenizer, tokenizer_state, "tokenizer")
    if transformer_state is not None:
        load_converted(model.transformer, transformer_state, "transformer")
    return model.eval()


def _official_configs(config: dict | str | Path, transformer_checkpoint: dict | None) -> tuple[dict, Path | None]:
    """(official configs dict, folder that relative paths in it refer to)."""
    if isinstance(config, dict):
        return config, None
    text = str(config)
    if text in OFFICIAL_PRESETS:
        multi_task = False
        if transformer_checkpoint is not None:
            # The released BAIR transformers are single-task (FP) or 8-task: the prefix length tells.
            rows = np.shape(dict(_flatten_tree(transformer_param_tree(transformer_checkpoint))).get(
                "BertEmbed_0/position_embeddings/embedding", ()))
            multi_task = bool(rows) and rows[0] == math.prod((4, 16, 16)) + 2
        return official_preset(text, multi_task), None
    path = Path(text).expanduser()
    if not path.is_file():
        raise UsageError(f"config {text} is neither a preset ({', '.join(OFFICIAL_PRESETS)}) nor a JSON file")
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError, RecursionError) as e:  # ValueError: bad UTF-8, JSON or integer
        raise ModelError(f"cannot read official config {path}: {e}") from None
    if not isinstance(data, dict) or not ({"tokenizer_config", "transformer_config"} & set(data)):
        raise ModelError(f"{path} must be a JSON object with 'tokenizer_config' and/or 'transformer_config'")
    return data, path.parent


def _tokenizer_path_from_config(tr_official, base_dir: Path | None) -> Path:
    where = _optional_section(tr_official, "vq_model_from").get("checkpoint_path") if isinstance(tr_official, dict) else None
    if where and "://" not in str(where):
        path = Path(where).expanduser()
        if not path.is_absolute() and base_dir is not None:
            path = base_dir / path
        if path.exists():
            return path
    raise UsageError(
        "no tokenizer checkpoint given" + (f" and vq_model_from.checkpoint_path {where} is not a local path" if where else ""),
        hint="pass the tokenizer checkpoint (--tokenizer)",
    )


def _describe(cfg: dict) -> str:
    dataset = cfg.get("dataset_name") or "unknown dataset"
    experiment = cfg.get("experiment_name")
    return f"{dataset} (converted from an official MAGVIT checkpoint" + (f", experiment {experiment})" if experiment else ")")
