"""PSNR and SSIM per video, following the official evaluation
(videogvt/train_lib/image_quality_metrics.py: run_models with the JAX psnr and ssim).

Both take videos [B, 3, T, H, W] in [0, 1], score every frame and average over frames,
returning one float64 value per video [B]. They compute in float64 so that GPU conv
shortcuts (TF32) cannot blur the variances. The official "inter-frame" scores are these
functions applied to video[:, :, 1:] and video[:, :, :-1].
"""

import torch
import torch.nn.functional as F

GRAY_WEIGHTS = (0.2125, 0.7154, 0.0721)  # the official rgb2gray
SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
SSIM_K1 = 0.01
SSIM_K2 = 0.03


def _check(a: torch.Tensor, b: torch.Tensor) -> None:
    if a.shape != b.shape or a.ndim != 5 or a.shape[1] != 3:
        raise ValueError(f"expected two videos [B, 3, T, H, W] of one shape, got {tuple(a.shape)} and {tuple(b.shape)}")


def psnr(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per frame -10 * log10(MSE) with a peak of 1 (inf for identical frames), averaged over frames."""
    _check(a, b)
    mse = (a.double() - b.double()).pow(2).mean(dim=(1, 3, 4))  # [B, T]
    return (-10 * torch.log10(mse)).mean(dim=1)


def _gaussian_window(device: torch.device) -> torch.Tensor:
    offsets = torch.arange(SSIM_WINDOW, dtype=torch.float64, device=device) - SSIM_WINDOW // 2
    window = torch.exp(-0.5 * (offsets / SSIM_SIGMA) ** 2)
    return window / window.sum()


def _gray(video: torch.Tensor) -> torch.Tensor:
    """[B, 3, T, H, W] -> [B*T, 1, H, W]."""
    weights = torch.tensor(GRAY_WEIGHTS, dtype=torch.float64, device=video.device).view(1, 3, 1, 1, 1)
    return (video.double() * weights).sum(1).flatten(0, 1).unsqueeze(1)


def ssim(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """SSIM of the grayscale frames: Gaussian window 11, sigma 1.5, k1 0.01, k2 0.03, 'valid'
    filtering (no padding), variances clipped as in the official compute_ssim; the map is
    averaged over pixels, then over frames."""
    _check(a, b)
    height, width = a.shape[-2:]
    if height < SSIM_WINDOW or width < SSIM_WINDOW:
        raise ValueError(f"SSIM needs frames of at least {SSIM_WINDOW}x{SSIM_WINDOW}, got {width}x{height}")
    x, y = _gray(a), _gray(b)
    window = _gaussian_window(a.device)

    def blur(z: torch.Tensor) -> torch.Tensor:  # separable: along H, then along W
        return F.conv2d(F.conv2d(z, window.view(1, 1, -1, 1)), window.view(1, 1, 1, -1))

    mu_x, mu_y = blur(x), blur(y)
    var_x = (blur(x * x) - mu_x**2).clamp_min(0)
    var_y = (blur(y * y) - mu_y**2).clamp_min(0)
    cov = blur(x * y) - mu_x * mu_y
    cov = torch.sign(cov) * torch.minimum(torch.sqrt(var_x * var_y), cov.abs())  # |cov| <= sigma_x * sigma_y

    c1, c2 = SSIM_K1**2, SSIM_K2**2  # peak value 1
    ssim_map = (2 * mu_x * mu_y + c1) * (2 * cov + c2) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))
    return ssim_map.mean(dim=(1, 2, 3)).view(a.shape[0], a.shape[2]).mean(dim=1)
