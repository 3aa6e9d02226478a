import math

import numpy as np
import pytest
import torch

from magvit_cli.metrics import (
    best_of,
    fold_stats,
    frechet_distance,
    frechet_distance_folds,
    inception_score,
    inception_score_folds,
    mean_folds,
    psnr,
    region_psnr,
    split_folds,
    ssim,
)


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


# ------------------------------------------------------- distribution metrics

def gaussian_samples(mean, std, n=64, seed=0) -> torch.Tensor:
    """n samples whose empirical mean is exactly `mean` and unbiased covariance exactly diag(std**2)."""
    mean, std = torch.tensor(mean, dtype=torch.float64), torch.tensor(std, dtype=torch.float64)
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, len(mean), generator=g, dtype=torch.float64)
    q, _ = torch.linalg.qr(z - z.mean(0))  # orthonormal columns, each orthogonal to the ones vector
    return mean + q * math.sqrt(n - 1) * std


def test_gaussian_samples_have_the_stated_moments():
    x = gaussian_samples([1.0, -2.0, 0.5], [1.0, 2.0, 3.0])
    torch.testing.assert_close(x.mean(0), torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64), rtol=0, atol=1e-12)
    torch.testing.assert_close(torch.cov(x.T), torch.diag(torch.tensor([1.0, 4.0, 9.0], dtype=torch.float64)),
                               rtol=0, atol=1e-12)


def test_frechet_distance_of_known_gaussians():
    # Diagonal covariances: FD = |m1 - m2|^2 + sum (s1 - s2)^2 exactly; tolerance 1e-9
    a = gaussian_samples([0.0, 1.0, 2.0, 3.0], [1.0, 2.0, 0.5, 1.0], seed=1)
    b = gaussian_samples([1.0, 1.0, 0.0, 3.0], [3.0, 2.0, 1.5, 0.25], seed=2)
    expected = (1 + 0 + 4 + 0) + (2**2 + 0 + 1**2 + 0.75**2)
    assert frechet_distance(a, b) == pytest.approx(expected, abs=1e-9)
    # A rotation of the feature space changes nothing, and makes the covariances non-diagonal.
    rotation, _ = torch.linalg.qr(torch.randn(4, 4, generator=torch.Generator().manual_seed(3), dtype=torch.float64))
    assert frechet_distance(a @ rotation, b @ rotation) == pytest.approx(expected, abs=1e-9)


def test_frechet_distance_matches_a_direct_computation():
    g = torch.Generator().manual_seed(4)
    a = torch.randn(50, 6, generator=g, dtype=torch.float64) @ torch.randn(6, 6, generator=g, dtype=torch.float64)
    b = torch.randn(40, 6, generator=g, dtype=torch.float64) + 0.5
    x, y = a.numpy(), b.numpy()
    s1, s2 = np.cov(x, rowvar=False), np.cov(y, rowvar=False)
    # tr sqrt(S1 S2) = sum of the square roots of the (real, non-negative) eigenvalues of S1 S2
    tr_sqrt = np.sqrt(np.clip(np.linalg.eigvals(s1 @ s2).real, 0, None)).sum()
    expected = ((x.mean(0) - y.mean(0)) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * tr_sqrt
    assert frechet_distance(a, b) == pytest.approx(expected, rel=1e-9)
    # float32 features: float32 rounding only
    assert frechet_distance(a.float(), b.float()) == pytest.approx(expected, rel=1e-5)


def test_frechet_distance_of_a_set_with_itself_is_zero_and_needs_two_samples():
    a = torch.randn(30, 5, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    assert abs(frechet_distance(a, a)) < 1e-9
    with pytest.raises(ValueError, match="at least 2"):
        frechet_distance(a[:1], a)
    with pytest.raises(ValueError):
        frechet_distance(a, a[:, :4])


def test_inception_score_closed_forms():
    k = 5
    # Confident and evenly spread over k classes: KL = log k for each sample, IS = k.
    confident = 200.0 * torch.eye(k).repeat(3, 1)
    assert inception_score(confident) == pytest.approx(k, rel=1e-9)
    # Identical predictions for every sample: p(y|x) = p(y), IS = 1.
    same = torch.tensor([[1.0, 2.0, 3.0]]).repeat(7, 1)
    assert inception_score(same) == pytest.approx(1.0, abs=1e-12)
    # Two samples, p1 = (3/4, 1/4), p2 = (1/4, 3/4): p(y) uniform, KL = log 2 + 3/4 log 3/4 + 1/4 log 1/4 each.
    logits = torch.log(torch.tensor([[0.75, 0.25], [0.25, 0.75]]))
    expected = math.exp(math.log(2) + 0.75 * math.log(0.75) + 0.25 * math.log(0.25))
    assert inception_score(logits) == pytest.approx(expected, rel=1e-6)


def test_folds_are_contiguous_and_std_is_the_population_std():
    values = torch.arange(6.0)
    parts = split_folds(values, 3)
    assert [p.tolist() for p in parts] == [[0.0, 1.0], [2.0, 3.0], [4.0, 5.0]]
    with pytest.raises(ValueError, match="equal folds"):
        split_folds(values, 4)
    stats = fold_stats([1.0, 3.0])
    assert stats == {"value": 2.0, "std": 1.0, "folds": [1.0, 3.0]}  # numpy's std (ddof 0), as the official code
    assert mean_folds(values, 3) == fold_stats([0.5, 2.5, 4.5])


def test_fold_metrics_score_each_fold_separately():
    unit = [1.0, 1.0]
    a = torch.cat([gaussian_samples([0.0, 0.0], unit, n=20, seed=6), gaussian_samples([0.0, 0.0], unit, n=20, seed=7)])
    b = torch.cat([gaussian_samples([1.0, 0.0], unit, n=20, seed=8), gaussian_samples([0.0, 3.0], unit, n=20, seed=9)])
    result = frechet_distance_folds(a, b, 2)
    assert result["folds"] == pytest.approx([1.0, 9.0], abs=1e-9)
    assert result["value"] == pytest.approx(5.0, abs=1e-9) and result["std"] == pytest.approx(4.0, abs=1e-9)
    logits = torch.zeros(8, 3)  # fold 1: uniform predictions, IS 1
    logits[4:6, 0] = 200.0
    logits[6:8, 1] = 200.0  # fold 2: confident, two classes evenly: IS 2
    result = inception_score_folds(logits, 2)
    assert result["folds"] == pytest.approx([1.0, 2.0], rel=1e-9)


def test_best_of_takes_the_best_of_the_first_trials_per_clip():
    values = torch.tensor([1.0, 5.0, 2.0, 7.0, 3.0, 9.0])
    groups = torch.tensor([0, 1, 0, 1, 0, 1])  # clip 0: 1, 2, 3; clip 1: 5, 7, 9
    assert best_of(values, groups, trials=3) == {"value": (3 + 9) / 2, "std": None, "clips": 2, "trials": 3}
    assert best_of(values, groups, trials=2)["value"] == (2 + 7) / 2
    assert best_of(values, groups, trials=2, higher_is_better=False)["value"] == (1 + 5) / 2
    assert best_of(values, groups, trials=10)["trials"] == 3  # as many as there are


def test_region_psnr_scores_only_the_region():
    a = smooth_video()
    b = a.clone()
    region = torch.zeros(1, 1, 3, 24, 20, dtype=torch.bool)
    region[..., 4:10, 5:15] = True
    b[:, :, :, 4:10, 5:15] += 0.1  # error 0.1 inside the region ...
    assert torch.allclose(region_psnr(a, b, region), torch.full((2,), 20.0, dtype=torch.float64))
    b[:, :, :, 20:, :] -= 0.2  # an error outside the region does not count
    assert torch.allclose(region_psnr(a, b, region), torch.full((2,), 20.0, dtype=torch.float64))
    assert not torch.allclose(psnr(a, b), psnr(a, a.where(~region, b)))
