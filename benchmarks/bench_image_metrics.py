"""PSNR + SSIM on Y: the vectorised benchmark.metrics.image versus per-image references.

    python benchmarks/bench_image_metrics.py [--n 1000] [--size 128] [--json PATH]

Compares, on the same smooth-plus-noise image pairs and in the same run:
  1. benchmark.metrics.image.psnr_ssim_y, the form the engine calls when a run computes both
     (Y once; cache-sized chunks on a small thread pool; compiled passes),
     with glibc's allocator set as the fhbench process sets it; then psnr_y and ssim_y called
     one after the other (the same values, checked bit for bit);
  2. a straightforward per-image NumPy/SciPy implementation of the same definitions
     (Y per image, 11 x 11 Gaussian by scipy.signal.convolve2d 'valid');
  3. per-image skimage (peak_signal_noise_ratio, structural_similarity full map cut by 5 px).
Prints seconds, images/s, the speed-up ratios and the largest absolute differences. Then it
times the two compiled passes (benchmark/psnr_ssim_kernels.py) on one chunk, beside the
float64 filters alone that SSIM used before them. ``--json PATH`` writes ``images_per_s``
(psnr_ssim_y), ``ratio_vs_skimage``, ``ratio_vs_numpy``, ``max_psnr_diff_db`` and
``max_ssim_diff`` (vs skimage), ``cpu_ms_per_image`` (psnr_ssim_y's CPU time, all threads),
``moments_ms_per_image`` and ``ssim_map_ms_per_image`` (its two passes, on one core).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import cv2
import numpy as np
from scipy.ndimage import correlate1d, gaussian_filter
from scipy.signal import convolve2d
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmark.engine.allocator import keep_large_buffers  # noqa: E402
from benchmark.metrics.image import _CHUNK_VALUES, _GAUSS_1D, psnr_ssim_y, psnr_y, ssim_y  # noqa: E402
from benchmark.psnr_ssim_kernels import luma_moments, ssim_quarter_map  # noqa: E402

C1, C2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
WINDOW_2D = np.outer(_GAUSS_1D, _GAUSS_1D)


def make_pairs(n: int, size: int, seed: int = 0):
    """Smooth random RGB 'faces' (hr) and noisy, slightly blurred copies (sr), float32 [0, 1]."""
    rng = np.random.default_rng(seed)
    hr = gaussian_filter(rng.random((n, 3, size, size), dtype=np.float32), sigma=(0, 0, 4, 4))
    hr = (hr - hr.min()) / (hr.max() - hr.min())
    sr = gaussian_filter(hr, sigma=(0, 0, 0.7, 0.7)) + 0.03 * rng.standard_normal(hr.shape, dtype=np.float32)
    return np.clip(sr, 0, 1).astype(np.float32), hr.astype(np.float32)


def luma(rgb: np.ndarray) -> np.ndarray:
    rgb = rgb.astype(np.float64)
    return 16.0 + 65.481 * rgb[0] + 128.553 * rgb[1] + 24.966 * rgb[2]


def per_image_numpy(sr: np.ndarray, hr: np.ndarray):
    psnr, ssim = [], []
    for sr_image, hr_image in zip(sr, hr):
        x, y = luma(sr_image), luma(hr_image)
        psnr.append(10 * np.log10(255.0**2 / np.mean((x - y) ** 2)))

        def blur(a):
            return convolve2d(a, WINDOW_2D, mode="valid")

        mu_x, mu_y = blur(x), blur(y)
        var_x = blur(x * x) - mu_x**2
        var_y = blur(y * y) - mu_y**2
        cov = blur(x * y) - mu_x * mu_y
        ssim_map = ((2 * mu_x * mu_y + C1) * (2 * cov + C2)) / ((mu_x**2 + mu_y**2 + C1) * (var_x + var_y + C2))
        ssim.append(ssim_map.mean())
    return np.array(psnr), np.array(ssim)


def per_image_skimage(sr: np.ndarray, hr: np.ndarray):
    psnr, ssim = [], []
    for sr_image, hr_image in zip(sr, hr):
        x, y = luma(sr_image), luma(hr_image)
        psnr.append(peak_signal_noise_ratio(y, x, data_range=255))
        _, ssim_map = structural_similarity(
            x, y, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
            data_range=255, full=True,
        )
        ssim.append(ssim_map[5:-5, 5:-5].mean())
    return np.array(psnr), np.array(ssim)


def vectorised(sr: np.ndarray, hr: np.ndarray):
    values = psnr_ssim_y(sr, hr)
    return values["psnr"], values["ssim"]


def vectorised_separately(sr: np.ndarray, hr: np.ndarray):
    return psnr_y(sr, hr), ssim_y(sr, hr)


def timed(function, *args, repeat: int = 1):
    best, result = np.inf, None
    for _ in range(repeat):
        start = time.perf_counter()
        result = function(*args)
        best = min(best, time.perf_counter() - start)
    return best, result


def compare_metrics(n: int, size: int) -> dict:
    sr, hr = make_pairs(n, size)
    print(f"PSNR + SSIM on Y, {n} image pairs of {size}x{size} (float32 RGB input)")
    seconds_first, _ = timed(vectorised, sr[:1], hr[:1])
    print(f"  first call, one pair: {seconds_first:.2f} s (numba compiles the kernels, or loads them from its cache)")
    cpu_start = time.process_time()
    seconds_fast, (psnr_fast, ssim_fast) = timed(vectorised, sr, hr, repeat=3)
    cpu_ms_per_image = (time.process_time() - cpu_start) / 3 / n * 1000  # all threads, mean of the 3
    seconds_apart, (psnr_apart, ssim_apart) = timed(vectorised_separately, sr, hr, repeat=3)
    if not (np.array_equal(psnr_apart, psnr_fast) and np.array_equal(ssim_apart, ssim_fast)):
        raise SystemExit("psnr_ssim_y differs from psnr_y and ssim_y: a bug")
    seconds_numpy, (psnr_numpy, ssim_numpy) = timed(per_image_numpy, sr, hr)
    seconds_skimage, (psnr_skimage, ssim_skimage) = timed(per_image_skimage, sr, hr)
    print(f"  {'implementation':<34}{'seconds':>9}{'images/s':>11}{'ratio':>9}")
    for name, seconds in [
        ("psnr_ssim_y (the engine's form)", seconds_fast),
        ("psnr_y, then ssim_y", seconds_apart),
        ("per-image NumPy + convolve2d", seconds_numpy),
        ("per-image skimage", seconds_skimage),
    ]:
        print(f"  {name:<34}{seconds:>9.3f}{n / seconds:>11.0f}{seconds / seconds_fast:>8.1f}x")
    print("  (ratio = that implementation's time / the vectorised time)")
    print(f"  max |PSNR diff| vs NumPy {np.abs(psnr_fast - psnr_numpy).max():.2e} dB, "
          f"vs skimage {np.abs(psnr_fast - psnr_skimage).max():.2e} dB")
    print(f"  max |SSIM diff| vs NumPy {np.abs(ssim_fast - ssim_numpy).max():.2e}, "
          f"vs skimage {np.abs(ssim_fast - ssim_skimage).max():.2e}")
    print(f"  mean PSNR {psnr_fast.mean():.3f} dB, mean SSIM {ssim_fast.mean():.4f}")
    print(f"  psnr_ssim_y's CPU time, all threads: {cpu_ms_per_image:.3f} ms per image")
    return {"images_per_s": n / seconds_fast, "ratio_vs_skimage": seconds_skimage / seconds_fast,
            "ratio_vs_numpy": seconds_numpy / seconds_fast,
            "max_psnr_diff_db": float(np.abs(psnr_fast - psnr_skimage).max()),
            "max_ssim_diff": float(np.abs(ssim_fast - ssim_skimage).max()), "n": n, "size": size,
            "cpu_ms_per_image": cpu_ms_per_image, "first_call_s": seconds_first}


def kernel_stages(size: int, cpu_ms_per_image: float) -> dict:
    """Time psnr_ssim_y's two compiled passes on one chunk on one core, beside the float64
    separable filters they replaced (the filter alone, without the SSIM map)."""
    chunk = max(1, _CHUNK_VALUES // (size * size))
    sr, hr = make_pairs(chunk, size, seed=1)
    stack = np.empty((5, chunk, size, size))
    finite = np.empty((2, chunk), dtype=bool)
    quarter = np.empty((chunk, size - 10, size - 10))
    luma_moments(sr, hr, 0, 0, stack, finite)  # compiled (or loaded from numba's cache) here
    tall = stack[:4].reshape(-1, size)
    kernel = _GAUSS_1D.reshape(-1, 1)
    print(f"\nOne chunk of {chunk} images of {size}x{size} on one core, ms per image")
    stages = [
        ("Y, moments, (x - y)^2: luma_moments", lambda: luma_moments(sr, hr, 0, 0, stack, finite)),
        ("filter + SSIM map: ssim_quarter_map", lambda: ssim_quarter_map(stack, _GAUSS_1D, C1, C2, False, quarter)),
        ("  beside it, the filter alone: OpenCV sepFilter2D (used until 2026-12)",
         lambda: cv2.sepFilter2D(tall, cv2.CV_64F, kernel, kernel, borderType=cv2.BORDER_CONSTANT)),
        ("  beside it, the filter alone: scipy correlate1d per axis",
         lambda: correlate1d(correlate1d(stack[:4], _GAUSS_1D, axis=-1), _GAUSS_1D, axis=-2)),
    ]
    figures = {}
    for name, function in stages:
        seconds, _ = timed(function, repeat=20)
        figures[name] = seconds * 1000 / chunk
        print(f"  {name:<72}{figures[name]:>7.3f}")
    moments_ms, map_ms = figures[stages[0][0]], figures[stages[1][0]]
    print(f"  the two passes are {moments_ms + map_ms:.3f} of psnr_ssim_y's {cpu_ms_per_image:.3f} CPU ms per image "
          f"({100 * (moments_ms + map_ms) / cpu_ms_per_image:.0f} %; the rest: the two means, chunking, threads)")
    return {"moments_ms_per_image": moments_ms, "ssim_map_ms_per_image": map_ms}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000, help="number of image pairs")
    parser.add_argument("--size", type=int, default=128, help="image height and width")
    parser.add_argument("--json", default=None, metavar="PATH", help="write the headline figures here")
    args = parser.parse_args()
    keep_large_buffers()
    figures = compare_metrics(args.n, args.size)
    figures.update(kernel_stages(args.size, figures["cpu_ms_per_image"]))
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
