"""PSNR and SSIM on Y as batched torch ops, on the batch's device (CPU or CUDA).

The definitions are ``benchmark.metrics.image``'s, which stays the reference and the tests'
oracle: BT.601 Y with offset (16 + 65.481 R + 128.553 G + 24.966 B, not rounded), the same
``crop_border``, PSNR with peak 255 per image (identical images: ``inf``), SSIM with the 11 x 11
Gaussian window (sigma 1.5, normalised), 'valid' region only, population (co)variances,
C1 = (0.01 * 255)^2, C2 = (0.03 * 255)^2, no downsampling.

Input: (N, 3, H, W) or (3, H, W) RGB tensors in [0, 1], float32 or float64, on any device.
The arithmetic runs in ``dtype`` (default float64, as the reference; float32 is faster on most
GPUs and agrees to ~1e-4 dB / ~1e-6 SSIM). The Gaussian filter is applied as two matrix products
with a banded (W, W - 10) / (H - 10, H) matrix, i.e. a separable 'valid' correlation. The result
is an (N,) tensor of ``dtype`` on the input's device. Bad input raises the same MetricError as
the reference.
"""
from __future__ import annotations

import threading
from functools import lru_cache
from typing import Optional

import torch

from benchmark.errors import MetricError
from benchmark.metrics.image import _GAUSS_1D, PEAK, SSIM_C1, SSIM_C2, SSIM_WINDOW, check_pair_shapes

_LOCK = threading.Lock()


def _as_rgb_batch(images, name: str) -> torch.Tensor:
    if not isinstance(images, torch.Tensor):
        raise MetricError(f"{name}: expected a torch tensor (use benchmark.metrics.image for NumPy), "
                          f"got {type(images).__name__}")
    batch = images.detach()
    if batch.dim() == 3:
        batch = batch[None]
    if batch.dim() != 4 or batch.shape[1] != 3:
        raise MetricError(f"{name}: expected an RGB batch of shape (N, 3, H, W) or one (3, H, W) image, "
                          f"got shape {tuple(images.shape)}")
    if not torch.is_floating_point(batch):
        raise MetricError(f"{name}: expected float RGB values in [0, 1], got dtype {batch.dtype}")
    return batch


def _checked_pair(sr, hr, crop_border: int, metric: str, min_size: int):
    sr_batch = _as_rgb_batch(sr, f"{metric} sr")
    hr_batch = _as_rgb_batch(hr, f"{metric} hr")
    if sr_batch.device != hr_batch.device:
        raise MetricError(f"{metric}: sr is on {sr_batch.device} but hr is on {hr_batch.device}")
    check_pair_shapes(metric, sr_batch.shape, hr_batch.shape, crop_border, min_size)
    return sr_batch, hr_batch


def rgb_to_y_torch(batch: torch.Tensor, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """BT.601 luma with offset of an RGB batch in [0, 1]: (N, 3, H, W) -> (N, H, W) in ``dtype``."""
    rgb = _as_rgb_batch(batch, "rgb_to_y_torch").to(dtype)
    return 16.0 + 65.481 * rgb[:, 0] + 128.553 * rgb[:, 1] + 24.966 * rgb[:, 2]


def _luma_pair(sr, hr, crop_border: int, metric: str, min_size: int, dtype: torch.dtype):
    sr_batch, hr_batch = _checked_pair(sr, hr, crop_border, metric, min_size)
    h, w = sr_batch.shape[2:]
    inner = (slice(None), slice(None), slice(crop_border, h - crop_border), slice(crop_border, w - crop_border))
    ys = []
    for label, batch in (("sr", sr_batch), ("hr", hr_batch)):
        y = rgb_to_y_torch(batch[inner], dtype)
        finite = torch.isfinite(y).flatten(1).all(1)
        if not bool(finite.all()):
            bad = int(torch.nonzero(~finite)[0, 0])
            raise MetricError(f"{metric}: {label} image {bad} contains NaN or inf")
        ys.append(y)
    return ys


def psnr_y_torch(sr: torch.Tensor, hr: torch.Tensor, crop_border: int = 0,
                 dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """Per-image PSNR (dB) on Y, peak 255, as ``image.psnr_y``; (N,) on the input's device.
    Identical images give ``inf``."""
    y_sr, y_hr = _luma_pair(sr, hr, crop_border, "psnr_y", 1, dtype)
    mse = ((y_sr - y_hr) ** 2).mean(dim=(1, 2))
    return 10.0 * torch.log10(PEAK ** 2 / mse)  # MSE 0 -> inf on purpose


@lru_cache(maxsize=64)
def _valid_gauss_matrix(length: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """(length - 10, length): row i holds the 11 Gaussian taps at columns i .. i + 10."""
    taps = torch.from_numpy(_GAUSS_1D).to(dtype)
    m = torch.zeros(length - SSIM_WINDOW + 1, length, dtype=dtype)
    for i in range(length - SSIM_WINDOW + 1):
        m[i, i:i + SSIM_WINDOW] = taps
    return m.to(device)


def _shifted_sum(x: torch.Tensor, dim: int) -> torch.Tensor:
    """'valid' correlation of one axis with the 11 Gaussian taps, accumulated in place."""
    n = x.shape[dim] - SSIM_WINDOW + 1
    taps = _GAUSS_1D.tolist()
    out = x.narrow(dim, 0, n) * taps[0]
    for k in range(1, SSIM_WINDOW):
        out.add_(x.narrow(dim, k, n), alpha=taps[k])
    return out


def _gauss_valid(stack: torch.Tensor) -> torch.Tensor:
    """Separable 'valid' correlation of the last two axes with the 11-tap Gaussian: banded
    matrix products on a GPU; on the CPU, 11 shifted multiply-adds per axis (8x fewer flops
    than the dense band; the torch harness on the CPU uses the NumPy forms, which are faster)."""
    h, w = stack.shape[-2:]
    if stack.device.type == "cpu":
        return _shifted_sum(_shifted_sum(stack, -2), -1)
    with _LOCK:
        gh = _valid_gauss_matrix(h, stack.device, stack.dtype)
        gw = _valid_gauss_matrix(w, stack.device, stack.dtype)
    return torch.matmul(gh, torch.matmul(stack, gw.T))


def ssim_y_torch(sr: torch.Tensor, hr: torch.Tensor, crop_border: int = 0,
                 dtype: torch.dtype = torch.float64, chunk: Optional[int] = None) -> torch.Tensor:
    """Per-image SSIM on Y (Gaussian 11 x 11, sigma 1.5, 'valid' region), as ``image.ssim_y``;
    (N,) on the input's device. ``chunk``: images per pass (default all: the caller's batch)."""
    x_all, y_all = _luma_pair(sr, hr, crop_border, "ssim_y", SSIM_WINDOW, dtype)
    n = x_all.shape[0]
    out = torch.empty(n, dtype=dtype, device=x_all.device)
    step = n if not chunk else int(chunk)
    for start in range(0, n, max(1, step)):
        x, y = x_all[start:start + step], y_all[start:start + step]
        moments = torch.stack([x, y, x * x + y * y, x * y])  # E[X], E[Y], E[X^2 + Y^2], E[XY]
        mu_x, mu_y, e_sq_sum, e_xy = _gauss_valid(moments)
        mu_xy = mu_x * mu_y
        mu_sq_sum = mu_x * mu_x + mu_y * mu_y
        var_sum = e_sq_sum - mu_sq_sum          # population (co)variances
        cov_xy = e_xy - mu_xy
        numerator = (2.0 * mu_xy + SSIM_C1) * (2.0 * cov_xy + SSIM_C2)
        denominator = (mu_sq_sum + SSIM_C1) * (var_sum + SSIM_C2)
        out[start:start + len(x)] = (numerator / denominator).mean(dim=(1, 2))
    return out
