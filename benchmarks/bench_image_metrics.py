"""PSNR + SSIM on Y: the vectorised benchmark.metrics.image versus per-image references.

    python benchmarks/bench_image_metrics.py [--n 1000] [--size 128] [--json PATH]

Compares, on the same smooth-plus-noise image pairs and in the same run:
  1. benchmark.metrics.image.psnr_ssim_y, the form the engine calls when a run computes both
     (Y once; batch at once in cache-sized chunks on a small thread pool, separable filter),
     with glibc's allocator set as the fhbench process sets it; then psnr_y and ssim_y called
     one after the other (the same values, checked bit for bit);
  2. a straightforward per-image NumPy/SciPy implementation of the same definitions
     (Y per image, 11 x 11 Gaussian by scipy.signal.convolve2d 'valid');
  3. per-image skimage (peak_signal_noise_ratio, structural_similarity full map cut by 5 px).
Prints seconds, images/s, the speed-up ratios and the largest absolute differences. Then it
times the separable-filter backends that ssim_y could use on one chunk, which is why
image.py uses OpenCV's sepFilter2D on one tall image. ``--json PATH`` writes ``images_per_s``
(psnr_ssim_y), ``ratio_vs_skimage``, ``ratio_vs_numpy``, ``max_psnr_diff_db`` and
``max_ssim_diff`` (vs skimage), ``cpu_ms_per_image`` (psnr_ssim_y's CPU time, all threads) and
``filter_ms_per_image`` (the filter it uses, on one core).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
from scipy.ndimage import correlate1d, gaussian_filter
from scipy.signal import convolve2d
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmark.engine.allocator import keep_large_buffers  # noqa: E402
from benchmark.metrics.image import (  # noqa: E402
    _CHUNK_VALUES, _GAUSS_1D, _gauss_same, psnr_ssim_y, psnr_y, ssim_y)

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
            "cpu_ms_per_image": cpu_ms_per_image}


def shifted_slices(stack: np.ndarray) -> np.ndarray:
    """Separable 'valid' filtering as a NumPy sum of 11 shifted slices per axis."""
    width, height = stack.shape[-1] - 10, stack.shape[-2] - 10
    rows = sum(w * stack[..., k:k + width] for k, w in enumerate(_GAUSS_1D))
    return sum(w * rows[..., k:k + height, :] for k, w in enumerate(_GAUSS_1D))


def torch_conv2d(stack: np.ndarray) -> np.ndarray:
    import torch

    kernel = torch.from_numpy(_GAUSS_1D)
    maps = torch.from_numpy(stack).reshape(-1, 1, *stack.shape[-2:])
    maps = torch.nn.functional.conv2d(maps, kernel.view(1, 1, 1, -1))
    maps = torch.nn.functional.conv2d(maps, kernel.view(1, 1, -1, 1))
    return maps.reshape(*stack.shape[:-2], *maps.shape[-2:]).numpy()


def opencv_valid(stack: np.ndarray) -> np.ndarray:
    """ssim_y's filter (zero-padded, on the whole maps), cut to the 'valid' region."""
    return _gauss_same(stack)[..., 5:-5, 5:-5]


def correlate1d_per_axis(stack: np.ndarray) -> np.ndarray:
    """scipy's correlate1d along each axis, cropping after each (ssim_y's filter until 2026-11)."""
    rows = correlate1d(stack, _GAUSS_1D, axis=-1, mode="constant")[..., 5:-5]
    return correlate1d(rows, _GAUSS_1D, axis=-2, mode="constant")[..., 5:-5, :]


def full_correlate_then_crop(stack: np.ndarray) -> np.ndarray:
    """correlate1d over the whole image on both axes, cropping only at the end."""
    both = correlate1d(correlate1d(stack, _GAUSS_1D, axis=-1), _GAUSS_1D, axis=-2)
    return both[..., 5:-5, 5:-5]


def compare_filter_backends(size: int, cpu_ms_per_image: float) -> float:
    # The four moment maps (x, y, x^2 + y^2, xy) of one chunk of images, as ssim_y filters them.
    chunk = max(1, _CHUNK_VALUES // (size * size))
    stack = np.random.default_rng(1).random((4, chunk, size, size)) * 219 + 16
    print(f"\nSeparable 11-tap Gaussian, 'valid', float64, on 4 x {chunk} maps of {size}x{size}")
    backends = [("OpenCV sepFilter2D, one tall image (used)", opencv_valid),
                ("scipy correlate1d, crop per axis", correlate1d_per_axis),
                ("scipy correlate1d, crop at the end", full_correlate_then_crop),
                ("NumPy sum of shifted slices", shifted_slices)]
    try:
        import torch  # noqa: F401

        backends.append(("torch conv2d float64, 1x11 then 11x1", torch_conv2d))
    except ImportError:
        print("  (torch not installed: conv2d backend skipped)")
    seconds_used, reference = None, None
    for name, function in backends:
        seconds, result = timed(function, stack, repeat=5)
        if seconds_used is None:  # the first backend is the one ssim_y uses: the baseline
            seconds_used, reference = seconds, result
        print(f"  {name:<40}{seconds * 1000 / chunk:>8.3f} ms/image{seconds / seconds_used:>7.2f}x"
              f"   max |diff| {np.abs(result - reference).max():.1e}")
    filter_ms = seconds_used * 1000 / chunk
    print(f"  the filter used is {filter_ms:.3f} ms of psnr_ssim_y's {cpu_ms_per_image:.3f} CPU ms per image "
          f"({100 * filter_ms / cpu_ms_per_image:.0f} %)")
    return filter_ms


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000, help="number of image pairs")
    parser.add_argument("--size", type=int, default=128, help="image height and width")
    parser.add_argument("--json", default=None, metavar="PATH", help="write the headline figures here")
    args = parser.parse_args()
    keep_large_buffers()
    figures = compare_metrics(args.n, args.size)
    figures["filter_ms_per_image"] = compare_filter_backends(args.size, figures["cpu_ms_per_image"])
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
