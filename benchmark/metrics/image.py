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

The batch is processed in chunks of images so that memory stays bounded; the chunks run on a
small shared thread pool, and the per-pixel work is compiled (``benchmark.psnr_ssim_kernels``).
"""
from __future__ import annotations

import math
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Dict, Optional

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

# Images per chunk are chosen so that one (chunk, H, W) float64 map holds about this many
# values (4 images of 128 x 128); a chunk keeps five such maps (SSIM's moments and PSNR's
# squared differences) and one valid-sized map alive per thread.
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


def _luma(batch: np.ndarray) -> np.ndarray:
    # float64 throughout (float32 * Python float would stay float32 under NumPy 2), summed in
    # place in the order of the formula: ((16 + 65.481 R) + 128.553 G) + 24.966 B, as
    # psnr_ssim_kernels.luma_moments sums it (a test holds PSNR to this Y bit for bit).
    y = np.multiply(batch[:, 0], 65.481, dtype=np.float64)
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


def _kernels():
    # Imported on first use: numba's import (~0.2 s) is paid only by processes that compute
    # image metrics, not by every command that loads the metric registry.
    try:
        from benchmark import psnr_ssim_kernels
    except ImportError as err:  # numba missing, or built for another NumPy: say so in one line
        raise MetricError(f"PSNR and SSIM on the CPU need numba (setup.cfg pins it), which did not import: "
                          f"{err}") from err
    return psnr_ssim_kernels


# The input types the kernels are compiled for, in the machine's byte order (numba takes no other).
_RGB_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def _for_kernel(rgb: np.ndarray) -> np.ndarray:
    """``rgb`` as a C-contiguous native float32 or float64 array, copied only when it is not
    one. Other float types (float16, long double, another byte order) become float64 first, as
    ``_luma``'s ``dtype=np.float64`` casts them."""
    if rgb.dtype not in _RGB_DTYPES:
        return np.ascontiguousarray(rgb, dtype=np.float64)
    return np.ascontiguousarray(rgb)


def _moments_of_chunk(sr_batch: np.ndarray, hr_batch: np.ndarray, start: int, stop: int, crop_border: int,
                      metric: str) -> np.ndarray:
    """A (5, n, h, w) float64 stack for images [start, stop), cropped: Y of sr (x), Y of hr (y),
    x^2 + y^2, x y and (x - y)^2 (``psnr_ssim_kernels.luma_moments``); a NaN or inf in Y raises,
    naming the first such image, sr before hr."""
    _, _, height, width = sr_batch.shape
    stack = np.empty((5, stop - start, height - 2 * crop_border, width - 2 * crop_border))
    finite = np.empty((2, stop - start), dtype=bool)
    _kernels().luma_moments(_for_kernel(sr_batch[start:stop]), _for_kernel(hr_batch[start:stop]),
                            crop_border, crop_border, stack, finite)
    for label, image_finite in zip(("sr", "hr"), finite):
        if not image_finite.all():
            raise MetricError(f"{metric}: {label} image {start + int(np.argmin(image_finite))} contains NaN or inf")
    return stack


def _per_chunk(sr_batch: np.ndarray, hr_batch: np.ndarray, crop_border: int, metric: str,
               of_stack: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """``of_stack(the chunk's moment stack)`` over cache-sized chunks of images, concatenated
    along the last axis: (N,) per metric, (k, N) for k metrics at once.

    The chunks run on a few threads (the kernels and NumPy's ufuncs release the GIL). Each
    chunk's values are computed the same way whichever thread runs it, and a bad image raises
    for the first bad chunk in order, as a serial loop would. PSNR alone fills SSIM's moments
    too: one kernel for both keeps Y's code in one place, at the price of two extra products.
    """
    n, _, height, width = sr_batch.shape
    chunk = max(1, _CHUNK_VALUES // (height * width))
    starts = range(0, n, chunk)

    def one(start: int) -> np.ndarray:
        return of_stack(_moments_of_chunk(sr_batch, hr_batch, start, min(start + chunk, n), crop_border, metric))

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
    mse = stack[4].mean(axis=(1, 2))
    with np.errstate(divide="ignore"):  # MSE 0 -> inf on purpose
        return 10.0 * np.log10(PEAK**2 / mse)


def psnr_y(sr: Any, hr: Any, crop_border: int = 0) -> np.ndarray:
    """Per-image PSNR (dB) on Y with peak 255: 10 log10(255^2 / MSE); (N,) float64.

    Identical images (MSE 0) give ``inf``; ``summarize`` reports them instead of averaging.
    """
    sr_batch, hr_batch = _checked_pair(sr, hr, crop_border, "psnr_y", min_size=1)
    return _per_chunk(sr_batch, hr_batch, crop_border, "psnr_y", _psnr_of_stack)


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
        return np.stack([_psnr_of_stack(stack), _ssim_of_stack(stack)])

    values = _per_chunk(sr_batch, hr_batch, crop_border, "psnr_ssim_y", both).reshape(2, -1)
    return {"psnr": values[0], "ssim": values[1]}


def ssim_of_planes(x: np.ndarray, y: np.ndarray, peak: float = PEAK, nonnegative_cs: bool = False) -> np.ndarray:
    """Per-image SSIM of two (n, H, W) float64 planes already on a 0..``peak`` scale (the
    window and the 'valid' region of ``ssim_y``); ``nonnegative_cs`` clips the contrast-structure
    term at 0 (pyiqa's ``ssim`` does: ``F.relu(cs_map)``)."""
    stack = np.empty((4,) + np.shape(x))
    stack[0], stack[1] = x, y
    np.multiply(x, x, out=stack[2])
    stack[2] += np.multiply(y, y, out=stack[3])
    np.multiply(x, y, out=stack[3])
    return _ssim_of_stack(stack, peak, nonnegative_cs)


def _ssim_of_stack(stack: np.ndarray, peak: float = PEAK, nonnegative_cs: bool = False) -> np.ndarray:
    """Per-image SSIM from the (>= 4, n, h, w) moment stack x, y, x^2 + y^2, x y."""
    _, n, height, width = stack.shape
    half = SSIM_WINDOW // 2
    quarter_map = np.empty((n, height - 2 * half, width - 2 * half))
    _kernels().ssim_quarter_map(stack, _GAUSS_1D, (0.01 * peak) ** 2, (0.03 * peak) ** 2, nonnegative_cs,
                                quarter_map)
    return 4.0 * quarter_map.mean(axis=(1, 2))


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
