"""Image-quality metrics on the luma channel: PSNR, SSIM, and the FR loss between embeddings.

Conventions (the README's "Definitions", pinned by the design notes' "Metric definitions"):

- Input batches are (N, 3, H, W) **RGB** floats in [0, 1], numpy arrays or torch tensors;
  a single (3, H, W) image is treated as a batch of one. Channel order is RGB, never BGR.
- Y is ITU-R BT.601 luma with offset, Y = 16 + 65.481 R + 128.553 G + 24.966 B, in float64
  and not rounded (the same Y as BasicSR's ``rgb2ycbcr(..., y_only=True)`` on [0, 1] input),
  so Y lies in [16, 235].
- ``crop_border`` removes that many pixels from every side before either metric
  (BasicSR's ``crop_border``).
- PSNR uses peak 255 on Y and is computed per image; identical images give ``inf``.
- SSIM uses an 11 x 11 Gaussian window (sigma 1.5, weights normalised to sum 1), keeps only
  the 'valid' region (no padding), population (co)variances, C1 = (0.01 * 255)^2 and
  C2 = (0.03 * 255)^2, and no automatic downsampling; it equals the mean of
  ``skimage.metrics.structural_similarity(..., gaussian_weights=True, sigma=1.5,
  use_sample_covariance=False, data_range=255, full=True)``'s map with 5 px cut from each side.
- Aggregate per-image values with ``summarize``: the mean of per-image PSNRs, never the PSNR
  of a pooled MSE.

Everything is vectorised over the batch, in chunks of images so that memory stays bounded; the
chunks run on a small shared thread pool.
"""
from __future__ import annotations

import math
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Dict, Optional

import cv2
import numpy as np

from benchmark.errors import MetricError
from benchmark.contracts.metric import MetricSpec, register_metric

PEAK = 255.0
SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
SSIM_C1 = (0.01 * PEAK) ** 2
SSIM_C2 = (0.03 * PEAK) ** 2

# Separable normalised Gaussian: the 11 x 11 window is the outer product of this with itself.
_OFFSETS = np.arange(SSIM_WINDOW, dtype=np.float64) - SSIM_WINDOW // 2
_GAUSS_1D = np.exp(-0.5 * (_OFFSETS / SSIM_SIGMA) ** 2)
_GAUSS_1D /= _GAUSS_1D.sum()
_GAUSS_KERNEL = _GAUSS_1D.reshape(-1, 1).copy()  # OpenCV's kernel form

# Images per chunk are chosen so that one (chunk, H, W) float64 map holds about this many
# values (512 KiB, 4 images of 128 x 128): SSIM keeps about nine such maps alive per thread;
# with two threads 4 images per chunk beat 1, 2 and 16 (by 1.7x, 1.3x and 1.1x) and tied 8
# (benchmarks/bench_image_metrics.py).
_CHUNK_VALUES = 1 << 16
_MAX_THREADS = 8  # beyond this the chunks of one batch are too few to share out


def _as_rgb_batch(images: Any, name: str) -> np.ndarray:
    """Return ``images`` as an (N, 3, H, W) numpy array (not copied when already one)."""
    if hasattr(images, "detach"):  # a torch tensor; avoid importing torch here
        images = images.detach().cpu().numpy()
    batch = np.asarray(images)
    if batch.ndim == 3:
        batch = batch[None]
    if batch.ndim != 4 or batch.shape[1] != 3:
        raise MetricError(
            f"{name}: expected an RGB batch of shape (N, 3, H, W) or one (3, H, W) image, "
            f"got shape {tuple(np.shape(images))}"
        )
    if not np.issubdtype(batch.dtype, np.floating):
        raise MetricError(f"{name}: expected float RGB values in [0, 1], got dtype {batch.dtype}")
    return batch


def _luma(batch: np.ndarray, out: Optional[np.ndarray] = None) -> np.ndarray:
    # float64 throughout (float32 * Python float would stay float32 under NumPy 2), summed in
    # place in the order of the formula: ((16 + 65.481 R) + 128.553 G) + 24.966 B. ``out``: an
    # (n, H, W) float64 array to write Y into (a plane of SSIM's moment stack: no copy later).
    y = np.multiply(batch[:, 0], 65.481, out=out, dtype=np.float64)
    y += 16.0
    term = np.multiply(batch[:, 1], 128.553, dtype=np.float64)
    y += term
    y += np.multiply(batch[:, 2], 24.966, out=term, dtype=np.float64)
    return y


def rgb_to_y(batch: Any) -> np.ndarray:
    """BT.601 luma with offset of an RGB batch in [0, 1]: (N, 3, H, W) -> (N, H, W) float64.

    Y = 16 + 65.481 R + 128.553 G + 24.966 B, not rounded; white gives 235, black 16.
    """
    return _luma(_as_rgb_batch(batch, "rgb_to_y"))


def _checked_pair(sr: Any, hr: Any, crop_border: int, metric: str, min_size: int):
    """Validate an SR/HR pair of batches and the crop; return the two (N, 3, H, W) arrays."""
    sr_batch = _as_rgb_batch(sr, f"{metric} sr")
    hr_batch = _as_rgb_batch(hr, f"{metric} hr")
    check_pair_shapes(metric, sr_batch.shape, hr_batch.shape, crop_border, min_size)
    return sr_batch, hr_batch


def check_pair_shapes(metric: str, sr_shape, hr_shape, crop_border, min_size: int) -> None:
    """The checks shared by the NumPy and torch forms: equal (N, 3, H, W) shapes, a valid
    crop border, and enough pixels left after it for the metric's window."""
    sr_shape, hr_shape = tuple(sr_shape), tuple(hr_shape)
    if sr_shape != hr_shape:
        raise MetricError(f"{metric}: sr has shape {sr_shape} but hr has shape {hr_shape}")
    if isinstance(crop_border, bool) or not isinstance(crop_border, (int, np.integer)) or crop_border < 0:
        raise MetricError(f"{metric}: crop_border must be an integer >= 0, got {crop_border!r}")
    height = sr_shape[2] - 2 * crop_border
    width = sr_shape[3] - 2 * crop_border
    if height < min_size or width < min_size:
        raise MetricError(
            f"{metric}: images are {height}x{width} (HxW) after crop_border={crop_border} "
            f"(from {sr_shape[2]}x{sr_shape[3]}); need at least {min_size}x{min_size}")


def _luma_of_chunk(sr_batch: np.ndarray, hr_batch: np.ndarray, start: int, stop: int, crop_border: int,
                   metric: str) -> np.ndarray:
    """A (4, n, h, w) float64 stack for images [start, stop): Y of sr in plane 0 and Y of hr in
    plane 1 (cropped, checked for NaN/inf); planes 2 and 3 are the metric's scratch (SSIM's
    second moments: Y goes straight where its filter reads it, with no copy)."""
    _, _, height, width = sr_batch.shape
    inner = slice(crop_border, height - crop_border)
    inner_w = slice(crop_border, width - crop_border)
    stack = np.empty((4, stop - start, height - 2 * crop_border, width - 2 * crop_border))
    for plane, (label, batch) in enumerate((("sr", sr_batch), ("hr", hr_batch))):
        y = _luma(batch[start:stop, :, inner, inner_w], out=stack[plane])
        finite = np.isfinite(y).all(axis=(1, 2))
        if not finite.all():
            bad = start + int(np.argmin(finite))
            raise MetricError(f"{metric}: {label} image {bad} contains NaN or inf")
    return stack


def _per_chunk(sr_batch: np.ndarray, hr_batch: np.ndarray, crop_border: int, metric: str,
               of_stack: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """``of_stack(the chunk's luma stack)`` over cache-sized chunks of images, concatenated
    along the last axis: (N,) per metric, (k, N) for k metrics at once.

    The chunks run on a few threads (NumPy's ufuncs and OpenCV's filter release the GIL): two
    threads were 1.6-1.9x one on 2 cores. Each chunk's values are computed the same way
    whichever thread runs it, and a bad image raises for the first bad chunk in order, as a
    serial loop would.
    """
    n, _, height, width = sr_batch.shape
    chunk = max(1, _CHUNK_VALUES // (height * width))
    starts = range(0, n, chunk)

    def one(start: int) -> np.ndarray:
        return of_stack(_luma_of_chunk(sr_batch, hr_batch, start, min(start + chunk, n), crop_border, metric))

    if len(starts) <= 1:
        return one(0) if n else np.empty(0)  # the joint form reshapes this to (k, 0)
    return np.concatenate(list(_chunk_pool().map(one, starts)), axis=-1)


_POOL: Optional[ThreadPoolExecutor] = None
_POOL_LOCK = threading.Lock()


def _forget_pool_after_fork() -> None:
    # A forked child (a DataLoader worker, a forked pool) inherits the pool without its
    # threads: work submitted there would wait forever. It makes its own on first use.
    global _POOL, _POOL_LOCK
    _POOL, _POOL_LOCK = None, threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pool_after_fork)


def _chunk_pool() -> ThreadPoolExecutor:
    """One shared pool, one thread per usable core up to _MAX_THREADS, made on first use."""
    global _POOL
    with _POOL_LOCK:
        if _POOL is None:
            cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
            _POOL = ThreadPoolExecutor(max(1, min(cores, _MAX_THREADS)), thread_name_prefix="fhbench-metrics")
        return _POOL


def _psnr_of_stack(stack: np.ndarray) -> np.ndarray:
    difference = np.subtract(stack[0], stack[1], out=stack[2])
    np.multiply(difference, difference, out=difference)
    mse = difference.mean(axis=(1, 2))
    with np.errstate(divide="ignore"):  # MSE 0 -> inf on purpose
        return 10.0 * np.log10(PEAK**2 / mse)


def psnr_y(sr: Any, hr: Any, crop_border: int = 0) -> np.ndarray:
    """Per-image PSNR (dB) on Y with peak 255: 10 log10(255^2 / MSE); (N,) float64.

    Identical images (MSE 0) give ``inf``; ``summarize`` reports them instead of averaging.
    """
    sr_batch, hr_batch = _checked_pair(sr, hr, crop_border, "psnr_y", min_size=1)
    return _per_chunk(sr_batch, hr_batch, crop_border, "psnr_y", _psnr_of_stack)


def _gauss_same(stack: np.ndarray) -> np.ndarray:
    """Correlate the last two axes with the 11-tap Gaussian, zero-padded ('same' size): the
    'valid' region is ``[..., 5:-5, 5:-5]`` of the result.

    All the maps are stacked into one tall float64 image and filtered by one OpenCV
    ``sepFilter2D`` call: a 'valid' output row or column reads only its own map's pixels, so
    the seams between maps and the border mode touch only rows that are cut away. It was 2x
    scipy's ``correlate1d`` per core on 128 x 128 maps (which beat float64 torch conv2d, a
    NumPy sum of shifted slices and banded matrix products); it sums in float64, in a
    different order (differences ~1e-13 on values up to 235^2); see
    benchmarks/bench_image_metrics.py.
    """
    width = stack.shape[-1]
    tall = np.ascontiguousarray(stack, dtype=np.float64).reshape(-1, width)
    filtered = cv2.sepFilter2D(tall, cv2.CV_64F, _GAUSS_KERNEL, _GAUSS_KERNEL, borderType=cv2.BORDER_CONSTANT)
    return filtered.reshape(stack.shape)


def ssim_y(sr: Any, hr: Any, crop_border: int = 0) -> np.ndarray:
    """Per-image SSIM on Y (Gaussian 11 x 11, sigma 1.5, 'valid' region); (N,) float64.

    Images smaller than 11 px in either direction after the crop raise MetricError.
    """
    sr_batch, hr_batch = _checked_pair(sr, hr, crop_border, "ssim_y", min_size=SSIM_WINDOW)
    return _per_chunk(sr_batch, hr_batch, crop_border, "ssim_y", _ssim_of_stack)


def psnr_ssim_y(sr: Any, hr: Any, crop_border: int = 0) -> Dict[str, np.ndarray]:
    """``{"psnr": psnr_y(...), "ssim": ssim_y(...)}``, the same values, with Y computed once:
    the engine's form when a run computes both (MetricSpec.joint)."""
    sr_batch, hr_batch = _checked_pair(sr, hr, crop_border, "psnr_ssim_y", min_size=SSIM_WINDOW)

    def both(stack: np.ndarray) -> np.ndarray:
        psnr = _psnr_of_stack(stack)  # before SSIM, which overwrites the scratch planes
        return np.stack([psnr, _ssim_of_stack(stack)])

    values = _per_chunk(sr_batch, hr_batch, crop_border, "psnr_ssim_y", both).reshape(2, -1)
    return {"psnr": values[0], "ssim": values[1]}


def ssim_of_planes(x: np.ndarray, y: np.ndarray, peak: float = PEAK, nonnegative_cs: bool = False) -> np.ndarray:
    """Per-image SSIM of two (n, H, W) float64 planes already on a 0..``peak`` scale (the
    window and the 'valid' region of ``ssim_y``); ``nonnegative_cs`` clips the contrast-structure
    term at 0 (pyiqa's ``ssim`` does: ``F.relu(cs_map)``)."""
    stack = np.empty((4,) + np.shape(x))
    stack[0], stack[1] = x, y
    return _ssim_of_stack(stack, peak, nonnegative_cs)


def _ssim_of_stack(stack: np.ndarray, peak: float = PEAK, nonnegative_cs: bool = False) -> np.ndarray:
    """Per-image SSIM of the (n, H, W) planes x = stack[0] and y = stack[1]; planes 2 and 3 are
    overwritten."""
    c1, c2 = (0.01 * peak) ** 2, (0.03 * peak) ** 2
    x, y = stack[0], stack[1]
    # SSIM needs var_x + var_y only as a sum, so four local moments suffice (not five):
    # E[X], E[Y], E[X^2 + Y^2], E[XY], filtered together in one pass over the chunk.
    np.multiply(x, x, out=stack[2])
    np.multiply(y, y, out=stack[3])
    stack[2] += stack[3]
    np.multiply(x, y, out=stack[3])
    # The arithmetic below runs on the whole filtered maps, contiguous (4x faster per value than
    # on the 'valid' views), and only the mean reads the 'valid' region: the cut-away border
    # may hold any value, hence errstate. In place from here (each line names what its array
    # now holds). 2 * a + c == 2 * (a + c / 2) exactly in binary floating point, so the factors
    # 2 of the numerator become one exact factor 4 on the mean: the same bits as the formula
    # (2 mu_xy + C1)(2 cov + C2) / ((mu_x^2 + mu_y^2 + C1)(var_x + var_y + C2)) written out.
    mu_x, mu_y, var_sum, cov_xy = _gauss_same(stack)
    with np.errstate(all="ignore"):
        half_luminance_num = mu_x * mu_y
        cov_xy -= half_luminance_num  # population (co)variances: E[XY] - E[X]E[Y]
        mu_sq_sum = np.multiply(mu_x, mu_x, out=mu_x)
        mu_sq_sum += np.multiply(mu_y, mu_y, out=mu_y)
        var_sum -= mu_sq_sum
        half_luminance_num += c1 / 2
        half_cs_num = np.add(cov_xy, c2 / 2, out=cov_xy)
        luminance_den = np.add(mu_sq_sum, c1, out=mu_sq_sum)
        cs_den = np.add(var_sum, c2, out=var_sum)
        if nonnegative_cs:  # l * max(cs, 0), l and cs each a quotient
            half_cs = np.maximum(np.divide(half_cs_num, cs_den, out=half_cs_num), 0.0, out=half_cs_num)
            quarter_map = np.divide(half_luminance_num, luminance_den, out=half_luminance_num)
            quarter_map *= half_cs
        else:  # (l_num * cs_num) / (l_den * cs_den)
            quarter_map = np.multiply(half_luminance_num, half_cs_num, out=half_luminance_num)
            quarter_map /= np.multiply(luminance_den, cs_den, out=luminance_den)
    half = SSIM_WINDOW // 2
    # contiguous before the mean: the same pairwise sums as a mean over a 'valid'-sized array
    valid = np.ascontiguousarray(quarter_map[:, half:-half, half:-half])
    return 4.0 * valid.mean(axis=(1, 2))


def summarize(values: Any) -> Dict[str, float]:
    """Mean and std (ddof=0) over per-image values, with infinite values reported, not hidden.

    Returns ``mean``, ``std``, ``n`` (number of values), ``n_inf`` (number of +-inf values),
    and ``mean_finite`` / ``std_finite`` over the finite values only (for tables that print
    "mean over finite values, n_inf identical images"). When any value is infinite, ``mean``
    is that infinity (+inf for PSNR of identical images) and ``std`` is NaN (undefined);
    when no value is finite, ``mean_finite`` and ``std_finite`` are NaN. NaN inputs or an
    empty input raise MetricError.
    """
    array = np.asarray(values, dtype=np.float64).ravel()
    if array.size == 0:
        raise MetricError("summarize: no values to summarize")
    if np.isnan(array).any():
        raise MetricError(f"summarize: value {int(np.argmax(np.isnan(array)))} is NaN")
    finite = array[np.isfinite(array)]
    n_inf = int(array.size - finite.size)
    mean_finite = float(finite.mean()) if finite.size else math.nan
    std_finite = float(finite.std()) if finite.size else math.nan
    if n_inf:
        mean, std = float(array.sum()), math.nan  # the sum is +inf, -inf, or NaN if both
    else:
        mean, std = mean_finite, std_finite
    return {
        "mean": mean,
        "std": std,
        "n": int(array.size),
        "n_inf": n_inf,
        "mean_finite": mean_finite,
        "std_finite": std_finite,
    }


def fr_loss(sr_emb: Any, hr_emb: Any) -> np.ndarray:
    """Per-image FR loss: Euclidean (L2) distance between SR and HR embeddings; (N,) float64.

    The embeddings are taken as given (the evaluator already L2-normalises its rows, so the
    loss lies in [0, 2]); they are not renormalised here.
    """
    arrays = []
    for name, emb in (("sr_emb", sr_emb), ("hr_emb", hr_emb)):
        if hasattr(emb, "detach"):
            emb = emb.detach().cpu().numpy()
        array = np.asarray(emb)
        if array.ndim != 2:
            raise MetricError(f"fr_loss: {name} must be (N, D), got shape {array.shape}")
        arrays.append(array.astype(np.float64, copy=False))
    sr_array, hr_array = arrays
    if sr_array.shape != hr_array.shape:
        raise MetricError(
            f"fr_loss: sr_emb has shape {sr_array.shape} but hr_emb has shape {hr_array.shape}"
        )
    return np.linalg.norm(sr_array - hr_array, axis=1)


# Per image; "images" is the stored per-image array a paired comparison resamples.
register_metric(MetricSpec("psnr", "PSNR (dB)", unit=" dB", digits=2, std="psnr_std", per_item="images",
                           per_image=psnr_y, joint=psnr_ssim_y, identical=math.inf, counts_inf=True,
                           summary="PSNR on Y (BT.601), peak 255, per image"))
register_metric(MetricSpec("ssim", "SSIM", digits=4, std="ssim_std", per_item="images", per_image=ssim_y,
                           joint=psnr_ssim_y, identical=1.0, summary="SSIM on Y: Gaussian 11x11, sigma 1.5, valid region"))
register_metric(MetricSpec("fr_loss", "FR loss", lower_better=True, digits=4, std="fr_loss_std", per_item="images",
                           per_pair=fr_loss, identical=0.0,
                           summary="L2 distance between the SR and HR embeddings, per image"))
