"""Differentiable SSIM and the Gaussian high-pass residual, as C-SRIP trains with them.

``ssim_map(x, y)``: the SSIM map of (N, C, H, W) tensors per channel, with the metric
definitions the README pins (Definitions): an 11 x 11 Gaussian window (sigma 1.5, weights summing
to 1), the 'valid' region only, population (co)variances, C1 = (0.01 L)^2, C2 = (0.03 L)^2
for the data range L (1 for images in [0, 1]). Its mean over one channel of an image equals
``benchmark.metrics.image.ssim_y`` when given Y with L = 255, and skimage's
``structural_similarity(gaussian_weights=True, sigma=1.5, use_sample_covariance=False)``
map with 5 px cut from each side.

``ssim_loss(x, y) = (1 - mean SSIM map) / 2``: 0 for identical images, at most 1.

``high_pass(x, sigma) = x - g_sigma * x``: the residual after a normalised Gaussian blur
(radius int(3 sigma + 0.5), scipy's truncate=3; mirrored borders, scipy's mode='mirror'),
per channel. C-SRIP's identity priors see these residuals (sigma 1/3, 1 and 7/3).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

SSIM_WINDOW = 11
SSIM_SIGMA = 1.5


def gaussian_1d(sigma: float, radius: int, dtype=torch.float32, device=None) -> torch.Tensor:
    offsets = torch.arange(-radius, radius + 1, dtype=torch.float64)
    g = torch.exp(-0.5 * (offsets / sigma) ** 2)
    return (g / g.sum()).to(dtype=dtype, device=device)


def _separable(x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """Correlate every channel of (N, C, H, W) with g along both axes, 'valid' region."""
    c = x.shape[1]
    k = len(g)
    x = F.conv2d(x, g.view(1, 1, 1, k).expand(c, 1, 1, k), groups=c)
    return F.conv2d(x, g.view(1, 1, k, 1).expand(c, 1, k, 1), groups=c)


def ssim_map(x: torch.Tensor, y: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """(N, C, H-10, W-10) SSIM map of x against y, computed in float32 (or float64 if given)."""
    if x.shape != y.shape or x.dim() != 4:
        raise ValueError(f"ssim_map needs two (N, C, H, W) tensors of one shape, got {tuple(x.shape)} "
                         f"and {tuple(y.shape)}")
    if min(x.shape[-2:]) < SSIM_WINDOW:
        raise ValueError(f"SSIM needs images of at least {SSIM_WINDOW}x{SSIM_WINDOW}, got "
                         f"{x.shape[-2]}x{x.shape[-1]}")
    dtype = torch.float64 if x.dtype == torch.float64 else torch.float32
    x, y = x.to(dtype), y.to(dtype)
    g = gaussian_1d(SSIM_SIGMA, SSIM_WINDOW // 2, dtype, x.device)
    n, c = x.shape[:2]
    # one grouped pass over the five moments: E[x], E[y], E[x^2], E[y^2], E[xy]
    moments = _separable(torch.cat([x, y, x * x, y * y, x * y], dim=1), g)
    mu_x, mu_y, e_xx, e_yy, e_xy = moments.split(c, dim=1)
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    var_x, var_y, cov = e_xx - mu_x * mu_x, e_yy - mu_y * mu_y, e_xy - mu_x * mu_y
    return ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x * mu_x + mu_y * mu_y + c1) * (var_x + var_y + c2))


def ssim_loss(sr: torch.Tensor, hr: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """(1 - mean SSIM) / 2 over every channel, pixel and image of the batch (a scalar)."""
    return (1.0 - ssim_map(sr, hr.detach(), data_range).mean()) / 2.0


def high_pass(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """x - (Gaussian blur of x with ``sigma``), per channel, mirrored borders; same shape."""
    radius = int(3.0 * sigma + 0.5)
    if radius < 1:
        return torch.zeros_like(x)
    if min(x.shape[-2:]) <= radius:
        raise ValueError(f"high_pass with sigma {sigma:.4g} needs images larger than {radius} px")
    g = gaussian_1d(sigma, radius, x.dtype if x.is_floating_point() else torch.float32, x.device)
    blurred = _separable(F.pad(x, (radius,) * 4, mode="reflect"), g)
    return x - blurred

