"""C3D (Inception Score) and LPIPS: preprocessing, plumbing with random weights, and weight
loading from files made here in the layouts users have (official Flax, PyTorch, lpips package)."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from magvit_cli import c3d as c3d_module
from magvit_cli.c3d import C3D, load_c3d, resize_align_corners
from magvit_cli.errors import InputError, ModelError
from magvit_cli.lpips import LPIPS, load_lpips

from conftest import pack_flax


def official_c3d_resize(x: np.ndarray, size: int, axis: int) -> np.ndarray:
    """inception_score._scale in numpy: a tent-weight matrix with corners aligned."""
    n = x.shape[axis]
    scale = np.float32((size - 1) / (n - 1))
    sample = np.arange(size, dtype=np.float32) / scale
    weights = np.maximum(0, 1 - np.abs(sample[None, :] - np.arange(n, dtype=np.float32)[:, None]))
    return np.moveaxis(np.tensordot(np.moveaxis(x, axis, -1), weights, axes=(-1, 0)), -1, axis)


def test_c3d_resize_aligns_corners():
    x = torch.rand(2, 3, 4, 128, 96, generator=torch.Generator().manual_seed(0))
    got = resize_align_corners(resize_align_corners(x, 112, -2), 112, -1)
    expected = official_c3d_resize(official_c3d_resize(x.numpy(), 112, -2), 112, -1)
    np.testing.assert_allclose(got.numpy(), expected, rtol=0, atol=1e-5)
    # PyTorch's own corners-aligned bilinear agrees up to float32 rounding of the sample positions.
    reference = F.interpolate(x.flatten(1, 2), size=(112, 112), mode="bilinear", align_corners=True)
    torch.testing.assert_close(got.flatten(1, 2), reference, rtol=0, atol=5e-5)
    assert resize_align_corners(x, 96, -1) is x  # sizes that already match are left alone


def test_c3d_preprocessing_and_logits():
    torch.manual_seed(0)
    model = C3D().eval()
    with torch.no_grad():
        model.x_offset.uniform_(-120, -100)
    seen = {}
    model.conv1a.register_forward_hook(lambda module, inputs, output: seen.update(x=inputs[0]))
    video = torch.rand(2, 3, 16, 64, 80)
    logits = model.logits(video)
    assert logits.shape == (2, 101) and logits.isfinite().all()
    # RGB -> BGR, corners-aligned bilinear to 112x112, x255, plus the per-voxel offset.
    frames = F.interpolate(video.flip(1).transpose(1, 2).flatten(0, 1), size=(112, 112), mode="bilinear",
                           align_corners=True).view(2, 16, 3, 112, 112).transpose(1, 2)
    torch.testing.assert_close(seen["x"], frames * 255 + model.x_offset, rtol=0, atol=255 * 5e-5)
    with pytest.raises(InputError, match="exactly 16 frames"):
        model.logits(torch.rand(1, 3, 20, 64, 64))


def official_c3d_tree(state: dict) -> dict:
    """A state dict in the official Flax layout: kernels [kt, kh, kw, in, out] / [in, out], x_offset [T, H, W, C]."""
    params = {"x_offset": state["x_offset"].permute(1, 2, 3, 0).numpy()}
    for name in list(c3d_module.CONVS) + ["fc6", "fc7", "fc8"]:
        weight = state[f"{name}.weight"]
        kernel = weight.permute(2, 3, 4, 1, 0) if weight.dim() == 5 else weight.t()
        params[name] = {"kernel": np.ascontiguousarray(kernel.numpy()), "bias": state[f"{name}.bias"].numpy()}
    return {"params": params}


def test_official_c3d_layout_maps_to_this_layout(tmp_path):
    # Small stand-in shapes: the mapping is what is checked here (full-size loading below).
    state = {"x_offset": torch.randn(3, 2, 4, 5)}
    for name in list(c3d_module.CONVS) + ["fc6", "fc7", "fc8"]:
        shape = (4, 3, 3, 3, 3) if name.startswith("conv") else (6, 5)
        state[f"{name}.weight"] = torch.randn(shape)
        state[f"{name}.bias"] = torch.randn(shape[0])
    path = tmp_path / "c3d_ucf101.flax"
    path.write_bytes(pack_flax(official_c3d_tree(state)))
    loaded = c3d_module.state_dict_from_file(path)
    assert loaded.keys() == state.keys()
    for name in state:
        torch.testing.assert_close(loaded[name], state[name], rtol=0, atol=0, msg=name)


def test_c3d_weights_load_from_files_and_convert(tmp_path):
    torch.manual_seed(1)
    reference = C3D()
    torch.save(reference.state_dict(), tmp_path / "c3d.pt")
    out = c3d_module.convert(tmp_path / "c3d.pt", tmp_path / "c3d.safetensors")
    loaded = load_c3d(out)
    for name, tensor in reference.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], tensor), name
    with pytest.raises(ModelError, match="--c3d"):
        load_c3d(None)
    torch.save({"fc8.weight": torch.zeros(101, 4096)}, tmp_path / "partial.pt")
    with pytest.raises(ModelError, match="C3D weights lack tensor 'conv1a.bias' \\(and 21 more\\)"):
        load_c3d(tmp_path / "partial.pt")


# ------------------------------------------------------------------ LPIPS

@pytest.fixture(scope="module")
def lpips_state():
    torch.manual_seed(2)
    model = LPIPS()
    with torch.no_grad():
        for i in range(5):
            getattr(model, f"lin{i}").weight.uniform_(0, 1)
    return model.state_dict()


def manual_lpips(state: dict, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """LPIPS written out from the paper / lpips package with functional ops."""
    shift = torch.tensor([-0.030, -0.088, -0.188]).view(1, 3, 1, 1)
    scale = torch.tensor([0.458, 0.448, 0.450]).view(1, 3, 1, 1)
    stages = [[0, 2], [5, 7], [10, 12, 14], [17, 19, 21], [24, 26, 28]]

    def taps(x):
        x = ((2 * x - 1) - shift) / scale
        out = []
        for k, convs in enumerate(stages):
            if k:
                x = F.max_pool2d(x, 2)
            for i in convs:
                x = F.relu(F.conv2d(x, state[f"features.{i}.weight"], state[f"features.{i}.bias"], padding=1))
            out.append(x / (x.norm(dim=1, keepdim=True) + 1e-10))
        return out

    total = 0
    for k, (fa, fb) in enumerate(zip(taps(a), taps(b))):
        total = total + ((fa - fb) ** 2 * state[f"lin{k}.weight"].view(1, -1, 1, 1)).sum(1).mean(dim=(1, 2))
    return total


def test_lpips_matches_the_formula_and_is_a_distance(lpips_state, tmp_path):
    path = tmp_path / "lpips.pt"
    torch.save(lpips_state, path)
    model = load_lpips(path)
    g = torch.Generator().manual_seed(3)
    a, b = torch.rand(2, 3, 2, 32, 32, generator=g), torch.rand(2, 3, 2, 32, 32, generator=g)
    scores = model.videos(a, b)
    assert scores.shape == (2,) and scores.dtype == torch.float64 and (scores > 0).all()
    per_frame = manual_lpips(lpips_state, a.transpose(1, 2).flatten(0, 1), b.transpose(1, 2).flatten(0, 1))
    torch.testing.assert_close(scores, per_frame.double().view(2, 2).mean(1), rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(model.videos(b, a), scores, rtol=1e-5, atol=1e-7)
    assert model.videos(a, a).abs().max() == 0


def test_lpips_weights_in_package_and_torchvision_names(lpips_state, tmp_path):
    # The lpips package's full state dict: net.sliceK.N.*, linK.model.1.weight, scaling_layer.*.
    slices = {range(0, 4): 1, range(4, 9): 2, range(9, 16): 3, range(16, 23): 4, range(23, 30): 5}
    package = {"scaling_layer.shift": torch.zeros(1, 3, 1, 1), "scaling_layer.scale": torch.ones(1, 3, 1, 1)}
    for name, tensor in lpips_state.items():
        if name.startswith("features."):
            index = int(name.split(".")[1])
            k = next(v for r, v in slices.items() if index in r)
            package[f"net.slice{k}.{name.removeprefix('features.')}"] = tensor
        else:
            package[name.replace(".weight", ".model.1.weight")] = tensor
    torch.save(package, tmp_path / "package.pt")
    # torchvision's vgg16 state dict merged with the package's vgg.pth (lin layers only).
    merged = {k: v for k, v in lpips_state.items() if k.startswith("features.")}
    merged["classifier.0.weight"] = torch.zeros(2, 2)
    merged.update({k.replace(".weight", ".model.1.weight"): v for k, v in lpips_state.items() if k.startswith("lin")})
    torch.save(merged, tmp_path / "merged.pt")
    for path in (tmp_path / "package.pt", tmp_path / "merged.pt"):
        loaded = load_lpips(path).state_dict()
        for name, tensor in lpips_state.items():
            assert torch.equal(loaded[name], tensor), (path.name, name)
    del merged["lin4.model.1.weight"]
    torch.save(merged, tmp_path / "no_lin4.pt")
    with pytest.raises(ModelError, match="lin4.weight") as error:
        load_lpips(tmp_path / "no_lin4.pt")
    assert "--lpips" in str(error.value)
    with pytest.raises(ModelError, match="--lpips"):
        load_lpips(None)
    merged["lin4.weight"] = torch.zeros(1, 256, 1, 1)
    torch.save(merged, tmp_path / "wrong_shape.pt")
    with pytest.raises(ModelError, match=r"'lin4.weight' has shape \[1, 256, 1, 1\], expected \[1, 512, 1, 1\]"):
        load_lpips(tmp_path / "wrong_shape.pt")
