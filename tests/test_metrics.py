import math

import numpy as np
import pytest
import torch

from magvit_cli.metrics import psnr, ssim


def smooth_video(batch=2, frames=3, height=24, width=20, seed=0) -> torch.Tensor:
    """Values in [0.2, 0.8] so that offsets of up to 0.2 never clip."""
    g = torch.Generator().manual_seed(seed)
    return 0.2 + 0.6 * torch.rand(batch, 3, frames, height, width, generator=g, dtype=torch.float64)


def reference_ssim(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Direct (non-separable) numpy SSIM of the official formula, per video [B]."""
    weights = np.array([0.2125, 0.7154, 0.0721]).reshape(1, 3, 1, 1, 1)
    x, y = (a * weights).sum(1), (b * weights).sum(1)  # [B, T, H, W]
    offsets = np.arange(11) - 5
    g = np.exp(-0.5 * (offsets / 1.5) ** 2)
    kernel = np.outer(g, g) / np.outer(g, g).sum()

    def filt(z):
        windows = np.lib.stride_tricks.sliding_window_view(z, (11, 11), axis=(-2, -1))
        return np.einsum("bthwij,ij->bthw", windows, kernel)

    mx, my = filt(x), filt(y)
    vx = np.maximum(filt(x * x) - mx**2, 0)
    vy = np.maximum(filt(y * y) - my**2, 0)
    cov = filt(x * y) - mx * my
    cov = np.sign(cov) * np.minimum(np.sqrt(vx * vy), np.abs(cov))
    c1, c2 = 0.01**2, 0.03**2
    m = (2 * mx * my + c1) * (2 * cov + c2) / ((mx**2 + my**2 + c1) * (vx + vy + c2))
    return m.mean(axis=(2, 3)).mean(axis=1)


def test_identical_videos_score_inf_and_one():
    a = smooth_video()
    assert torch.isinf(psnr(a, a)).all() and (psnr(a, a) > 0).all()
    torch.testing.assert_close(ssim(a, a), torch.ones(2, dtype=torch.float64), rtol=0, atol=1e-12)


@pytest.mark.parametrize("offset, expected", [(0.1, 20.0), (0.01, 40.0), (0.2, -10 * math.log10(0.04))])
def test_psnr_of_a_constant_offset(offset, expected):
    a = smooth_video()
    # MSE = offset**2 in every frame, peak 1  ->  PSNR = -10 log10(offset**2); tolerance 1e-9 dB
    torch.testing.assert_close(psnr(a, a + offset), torch.full((2,), expected, dtype=torch.float64),
                               rtol=0, atol=1e-9)


def test_psnr_averages_per_frame_values_not_the_mse():
    a = smooth_video(batch=1, frames=2)
    b = a.clone()
    b[:, :, 0] += 0.1   # frame 0: 20 dB
    b[:, :, 1] += 0.01  # frame 1: 40 dB
    # mean of per-frame PSNRs is 30 dB; the PSNR of the mean MSE would be about 22.97 dB
    assert psnr(a, b).item() == pytest.approx(30.0, abs=1e-9)


def test_scores_are_per_video():
    a = smooth_video(batch=3)
    b = a.clone()
    b[1] += 0.1
    p, s = psnr(a, b), ssim(a, b)
    assert p.shape == s.shape == (3,)
    assert torch.isinf(p[0]) and torch.isinf(p[2]) and p[1].item() == pytest.approx(20.0, abs=1e-9)
    assert s[0].item() == pytest.approx(1.0, abs=1e-12) and s[1].item() < 1.0


def test_ssim_matches_an_independent_reference():
    a = smooth_video(batch=2, frames=2, height=23, width=17, seed=1)
    g = torch.Generator().manual_seed(2)
    b = (a + 0.1 * torch.randn(a.shape, generator=g, dtype=torch.float64)).clamp(0, 1)
    expected = reference_ssim(a.numpy(), b.numpy())
    np.testing.assert_allclose(ssim(a, b).numpy(), expected, rtol=0, atol=1e-12)
    # float32 inputs are scored in float64 too: same numbers to float32 input rounding
    np.testing.assert_allclose(ssim(a.float(), b.float()).numpy(), expected, rtol=0, atol=1e-6)


def test_ssim_is_symmetric_and_below_one_for_noise():
    a = smooth_video(seed=3)
    b = (a + 0.05 * torch.randn(a.shape, generator=torch.Generator().manual_seed(4), dtype=torch.float64)).clamp(0, 1)
    s_ab, s_ba = ssim(a, b), ssim(b, a)
    torch.testing.assert_close(s_ab, s_ba, rtol=0, atol=1e-12)
    assert (s_ab < 0.99).all() and (s_ab > 0).all()


def test_ssim_sees_only_the_official_grayscale():
    a = smooth_video()
    # A colour change whose gray value 0.2125 R + 0.7154 G + 0.0721 B is zero.
    shift = 0.1 * torch.tensor([0.0721, 0.0, -0.2125], dtype=torch.float64).view(1, 3, 1, 1, 1)
    b = a + shift
    torch.testing.assert_close(ssim(a, b), torch.ones(2, dtype=torch.float64), rtol=0, atol=1e-12)
    assert torch.isfinite(psnr(a, b)).all()  # PSNR does see it


def test_ssim_uses_valid_filtering():
    a = smooth_video(height=11, width=11)
    b = (a + 0.1).clamp(0, 1)
    assert ssim(a, b).shape == (2,)  # exactly one window position per frame
    np.testing.assert_allclose(ssim(a, b).numpy(), reference_ssim(a.numpy(), b.numpy()), rtol=0, atol=1e-12)
    with pytest.raises(ValueError, match="at least 11x11"):
        ssim(smooth_video(height=10, width=16), smooth_video(height=10, width=16))


def test_shapes_are_checked():
    with pytest.raises(ValueError):
        psnr(smooth_video(), smooth_video(frames=4))
    with pytest.raises(ValueError):
        ssim(torch.rand(2, 3, 16, 16), torch.rand(2, 3, 16, 16))
