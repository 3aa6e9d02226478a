"""Evaluation metrics of the official code (spec §10).

PSNR and SSIM per video (videogvt/train_lib/image_quality_metrics.py: run_models with the
JAX psnr and ssim). Both take videos [B, 3, T, H, W] in [0, 1], score every frame and average over frames,
returning one float64 value per video [B]. They compute in float64 so that GPU conv
shortcuts (TF32) cannot blur the variances. The official "inter-frame" scores are these
functions applied to video[:, :, 1:] and video[:, :, :-1].

Distribution metrics on features of a feature network (i3d.py, c3d.py): the Fréchet distance
(FVD on I3D features) and the Inception Score, and their reduction over folds
(eval_utils.compute_eval_metrics): each fold is scored alone, then mean ± std over folds.
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


def region_psnr(a: torch.Tensor, b: torch.Tensor, region: torch.Tensor) -> torch.Tensor:
    """Per clip -10 * log10(MSE) over the pixels of `region` only ([B or 1, 1, T, H, W] bool),
    all frames pooled: the score of an edit on the pixels it made up."""
    _check(a, b)
    region = region.expand(a.shape[0], 1, *a.shape[2:]).double()
    squared = (a.double() - b.double()).pow(2).mean(1, keepdim=True)
    mse = (squared * region).flatten(1).sum(1) / region.flatten(1).sum(1)
    return -10 * torch.log10(mse)


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


# ------------------------------------------------------- distribution metrics
# Computed in float64 on the CPU, as TF-GAN does (the official code calls
# tfgan.eval.frechet_classifier_distance_from_activations and classifier_score_from_logits).

def frechet_distance(features_a: torch.Tensor, features_b: torch.Tensor) -> float:
    """Fréchet distance between Gaussians fitted to two feature sets [N, D] (N >= 2 each):
    |mu_a - mu_b|^2 + tr(S_a) + tr(S_b) - 2 tr((S_a^1/2 S_b S_a^1/2)^1/2), with unbiased covariances."""
    a, b = features_a.detach().double().cpu(), features_b.detach().double().cpu()
    if a.dim() != 2 or b.dim() != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"expected two feature matrices [N, D] of one width, "
                         f"got {tuple(a.shape)} and {tuple(b.shape)}")
    if a.shape[0] < 2 or b.shape[0] < 2:
        raise ValueError("the Fréchet distance needs at least 2 samples per set")
    mean_a, mean_b = a.mean(0), b.mean(0)
    cov_a, cov_b = torch.cov(a.T).view(a.shape[1], -1), torch.cov(b.T).view(b.shape[1], -1)
    root_a = _symmetric_sqrt(cov_a)
    trace_sqrt_product = torch.trace(_symmetric_sqrt(root_a @ cov_b @ root_a))
    value = (mean_a - mean_b).pow(2).sum() + torch.trace(cov_a) + torch.trace(cov_b) - 2 * trace_sqrt_product
    return float(value)


def _symmetric_sqrt(matrix: torch.Tensor, eps: float = 1e-10) -> torch.Tensor:
    """Square root of a symmetric PSD matrix by SVD; singular values below eps are kept as they are
    (TF-GAN _symmetric_matrix_square_root)."""
    u, s, vh = torch.linalg.svd(matrix)
    s = torch.where(s < eps, s, s.sqrt())
    return (u * s) @ vh


def inception_score(logits: torch.Tensor) -> float:
    """exp(E_x KL(p(y|x) || p(y))) from classifier logits [N, classes]."""
    logits = logits.detach().double().cpu()
    log_p = torch.log_softmax(logits, dim=1)
    p_y = log_p.exp().mean(0)
    kl = (log_p.exp() * (log_p - p_y.log())).sum(1)
    return float(kl.mean().exp())


def split_folds(values: torch.Tensor, folds: int) -> list[torch.Tensor]:
    """`folds` equal contiguous parts of dim 0 (fold k = samples k*n .. (k+1)*n - 1, as the official reshape)."""
    if folds < 1 or values.shape[0] % folds:
        raise ValueError(f"{values.shape[0]} samples do not split into {folds} equal folds")
    return list(values.reshape(folds, values.shape[0] // folds, *values.shape[1:]))


def fold_stats(scores: list[float]) -> dict:
    """Mean and (population) standard deviation of per-fold scores, as the official numpy reductions."""
    values = torch.tensor(scores, dtype=torch.float64)
    return {"value": float(values.mean()), "std": float(values.std(unbiased=False)),
            "folds": [float(v) for v in values]}


def frechet_distance_folds(real: torch.Tensor, generated: torch.Tensor, folds: int) -> dict:
    """FVD-style: the distance per fold of real and generated features, then mean ± std over folds."""
    return fold_stats([frechet_distance(r, g) for r, g in zip(split_folds(real, folds), split_folds(generated, folds))])


def inception_score_folds(logits: torch.Tensor, folds: int) -> dict:
    return fold_stats([inception_score(part) for part in split_folds(logits, folds)])


def mean_folds(values: torch.Tensor, folds: int) -> dict:
    """Per-sample scores (PSNR, SSIM, LPIPS): mean per fold, then mean ± std over folds (official _mean_and_std)."""
    return fold_stats([float(part.double().mean()) for part in split_folds(values, folds)])


def best_of(values: torch.Tensor, groups: torch.Tensor, trials: int, higher_is_better: bool = True) -> dict:
    """Best-of-N: for each group (the real clip a sample was generated from) the best of its first
    `trials` samples, averaged over groups (the paper's "best of 100 trials" PSNR/SSIM/LPIPS)."""
    best = {}
    seen: dict[int, int] = {}
    for value, group in zip(values.double().tolist(), groups.tolist()):
        if seen.get(group, 0) >= trials:
            continue
        seen[group] = seen.get(group, 0) + 1
        if group not in best or (value > best[group] if higher_is_better else value < best[group]):
            best[group] = value
    scores = torch.tensor(list(best.values()), dtype=torch.float64)
    return {"value": float(scores.mean()), "std": None, "clips": len(best), "trials": min(seen.values())}
