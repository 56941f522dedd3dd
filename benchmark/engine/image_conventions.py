"""PSNR/SSIM conventions: the choices that make one paper's "PSNR" another's "PSNR + 0.3 dB".

``fhbench score --convention NAME`` picks one explicitly; every output of the score states
it (``Convention.describe``). Inputs are (N, 3, H, W) RGB float batches in [0, 1] read from
8-bit files (values k / 255); ``crop_border`` pixels are cut from every side first.

- ``fhbench`` (the default; what ``fhbench run`` stores): Y = 16 + 65.481 R + 128.553 G +
  24.966 B (ITU-R BT.601 with offset) in float64, not rounded; PSNR with peak 255 (inf for
  identical images); SSIM on that Y (``metrics/image.py``: Gaussian 11x11, sigma 1.5, valid
  region, C1 = (0.01 * 255)^2, C2 = (0.03 * 255)^2).
- ``basicsr``: BasicSR's ``calculate_psnr`` / ``calculate_ssim`` with ``test_y_channel=True``
  on the 8-bit images: the same BT.601 Y, but computed as BasicSR does it, from float32
  pixels and returned as float32 (``bgr2ycbcr(img / 255., y_only=True) * 255.``), so Y is
  quantised to float32; PSNR peak 255 (inf for identical images); SSIM as above on that Y
  (cv2.filter2D with the 11-tap Gaussian, then the [5:-5, 5:-5] valid region).
- ``pyiqa``: pyiqa's default ``psnr`` and ``ssim`` metrics. PSNR on all three RGB channels
  (``test_y_channel=False``) with data range 1: 10 log10(1 / (MSE + 1e-8)), so identical
  images give 80 dB, not inf. SSIM on Y of YIQ (0.299 R + 0.587 G + 0.114 B, not BT.601's
  offset formula) scaled to 0..255 and rounded to integers (pyiqa rounds "as MATLAB"), data
  range 255 (the same C1, C2), the same window, and the contrast-structure map clipped at 0
  (``F.relu``); no downsampling. Y is computed as pyiqa does (float32 torch), the rest here in
  float64 (pyiqa's PSNR runs float32 tensors: it may differ from these in the 5th decimal).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Dict

import numpy as np

from benchmark.errors import ConfigError, MetricError
from benchmark.metrics.image import SSIM_WINDOW, check_pair_shapes, psnr_y, ssim_of_planes, ssim_y

PYIQA_EPS = 1e-8


def _cropped(sr, hr, crop_border: int, min_size: int, metric: str):
    sr, hr = (np.asarray(x) for x in (sr, hr))
    if sr.ndim == 3:
        sr, hr = sr[None], hr[None]
    if sr.shape != hr.shape or sr.ndim != 4 or sr.shape[1] != 3:
        raise MetricError(f"{metric}: expected two RGB batches of one shape (N, 3, H, W), got {sr.shape} and {hr.shape}")
    check_pair_shapes(metric, sr.shape, hr.shape, crop_border, min_size)
    h, w = sr.shape[2] - 2 * crop_border, sr.shape[3] - 2 * crop_border
    inner = (slice(None), slice(None), slice(crop_border, crop_border + h), slice(crop_border, crop_border + w))
    return sr[inner], hr[inner]


def basicsr_y(batch: np.ndarray) -> np.ndarray:
    """BasicSR's Y of 8-bit RGB: float32 pixels, BT.601 with offset, returned in float32 on 0..255."""
    rgb = np.asarray(batch, dtype=np.float32)
    # bgr2ycbcr: np.dot(img, [24.966, 128.553, 65.481]) on B, G, R (float64 result) + 16, / 255 as float32
    y = 24.966 * rgb[:, 2].astype(np.float64) + 128.553 * rgb[:, 1].astype(np.float64) \
        + 65.481 * rgb[:, 0].astype(np.float64) + 16.0
    return (y / 255.0).astype(np.float32) * np.float32(255.0)


def _psnr_planes(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    mse = np.mean((x.astype(np.float64) - y.astype(np.float64)) ** 2, axis=tuple(range(1, x.ndim)))
    with np.errstate(divide="ignore"):  # MSE 0 -> inf, as BasicSR returns
        return 10.0 * np.log10(255.0 ** 2 / mse)


def basicsr_psnr(sr, hr, crop_border: int = 0) -> np.ndarray:
    sr, hr = _cropped(sr, hr, crop_border, 1, "psnr (basicsr)")
    return _psnr_planes(basicsr_y(sr), basicsr_y(hr))


def basicsr_ssim(sr, hr, crop_border: int = 0) -> np.ndarray:
    sr, hr = _cropped(sr, hr, crop_border, SSIM_WINDOW, "ssim (basicsr)")
    return ssim_of_planes(basicsr_y(sr).astype(np.float64), basicsr_y(hr).astype(np.float64))


def pyiqa_psnr(sr, hr, crop_border: int = 0) -> np.ndarray:
    sr, hr = _cropped(sr, hr, crop_border, 1, "psnr (pyiqa)")
    mse = np.mean((sr.astype(np.float64) - hr.astype(np.float64)) ** 2, axis=(1, 2, 3))
    return 10.0 * np.log10(1.0 / (mse + PYIQA_EPS))


def yiq_y_rounded(batch: np.ndarray) -> np.ndarray:
    """pyiqa's SSIM input: Y of YIQ on 0..255, rounded to integers; float64. Computed as pyiqa
    computes it, a float32 torch matmul, so that the pixels whose Y lies on a .5 boundary round
    as they do there (float64 arithmetic rounds about 1 in 2,000 of them the other way)."""
    import torch

    yiq = torch.tensor([[0.299, 0.587, 0.114], [0.5959, -0.2746, -0.3213], [0.2115, -0.5227, 0.3112]]).t()
    x = torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32))
    y = torch.matmul(x.permute(0, 2, 3, 1), yiq)[..., 0] * 255
    return y.round().to(torch.float64).numpy()


def pyiqa_ssim(sr, hr, crop_border: int = 0) -> np.ndarray:
    sr, hr = _cropped(sr, hr, crop_border, SSIM_WINDOW, "ssim (pyiqa)")
    return ssim_of_planes(yiq_y_rounded(sr), yiq_y_rounded(hr), nonnegative_cs=True)


@dataclass(frozen=True)
class Convention:
    name: str
    psnr: Callable      # (sr, hr, crop_border) -> (N,)
    ssim: Callable
    colour: Dict[str, str]   # per metric: what it is computed on
    y_formula: str
    precision: str
    data_range: str
    psnr_identical: float    # PSNR of two identical images
    source: str

    def describe(self, crop_border: int) -> dict:
        return {"name": self.name, "psnr_on": self.colour["psnr"], "ssim_on": self.colour["ssim"],
                "y_formula": self.y_formula, "precision": self.precision, "data_range": self.data_range,
                "crop_border": int(crop_border),
                "psnr_of_identical_images": "inf" if math.isinf(self.psnr_identical) else self.psnr_identical,
                "ssim": "Gaussian 11x11 window, sigma 1.5, valid region, C1=(0.01*255)^2, C2=(0.03*255)^2"
                        + (", contrast-structure map clipped at 0" if self.name == "pyiqa" else ""),
                "source": self.source}


_BT601 = "Y = 16 + 65.481 R + 128.553 G + 24.966 B (ITU-R BT.601 with offset, R,G,B in [0,1])"
CONVENTIONS = {
    "fhbench": Convention("fhbench", psnr_y, ssim_y, {"psnr": "Y", "ssim": "Y"}, _BT601, "float64, Y not rounded",
                          "peak 255", math.inf, "fhbench run (README 'Definitions')"),
    "basicsr": Convention("basicsr", basicsr_psnr, basicsr_ssim, {"psnr": "Y", "ssim": "Y"}, _BT601,
                          "Y from float32 pixels, returned as float32 (BasicSR to_y_channel), not rounded",
                          "peak 255", math.inf,
                          "BasicSR basicsr/metrics/psnr_ssim.py calculate_psnr/calculate_ssim, test_y_channel=True"),
    "pyiqa": Convention("pyiqa", pyiqa_psnr, pyiqa_ssim, {"psnr": "RGB (3 channels)", "ssim": "Y of YIQ"},
                        "PSNR: none (RGB); SSIM: Y = 0.299 R + 0.587 G + 0.114 B (YIQ), x255, rounded",
                        "SSIM's Y in float32 torch as pyiqa, then float64 (pyiqa: float32 tensors)",
                        "PSNR: data range 1, 10 log10(1 / (MSE + 1e-8)); SSIM: 255", 80.0,
                        "pyiqa create_metric('psnr') and create_metric('ssim') defaults"),
}


def convention(name: str) -> Convention:
    if name not in CONVENTIONS:
        raise ConfigError(f"unknown --convention {name!r} (known: {', '.join(CONVENTIONS)})")
    return CONVENTIONS[name]
