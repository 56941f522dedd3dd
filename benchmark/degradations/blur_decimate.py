"""Gaussian blur then decimation (the classic face-hallucination degradation)."""
from __future__ import annotations

import math
from typing import Optional

import numpy as np

from benchmark.contracts.degradation import Degradation, divided_size
from benchmark.faces.resize import to_uint8_levels
from benchmark.registry import DEGRADATIONS


BLUR_SIGMA = {2: 0.8, 4: 1.6, 8: 3.2}  # default sigma per scale for blur-decimate


@DEGRADATIONS.register("blur-decimate", summary="Gaussian blur, then keep every scale-th pixel")
class BlurDecimate(Degradation):
    """Gaussian blur (radius ceil(3 sigma), mirror borders), then decimation keeping pixels
    floor((scale - 1) / 2) + k * scale (the sample nearest each LR pixel's centre)."""

    name = "blur-decimate"

    def __init__(self, scale: int, sigma: Optional[float] = None, quantize: bool = True):
        self.scale, self.quantize = int(scale), quantize
        self.sigma = float(sigma if sigma is not None else BLUR_SIGMA.get(self.scale, 0.4 * self.scale))

    def lr_size(self, hr_hw):
        return divided_size(hr_hw, self.scale)

    def __call__(self, hr):
        from scipy.ndimage import correlate1d

        self.lr_size(hr.shape[-2:])
        r = int(math.ceil(3 * self.sigma))
        k = np.exp(-0.5 * (np.arange(-r, r + 1) / self.sigma) ** 2)
        k /= k.sum()
        x = np.asarray(hr, dtype=np.float64)
        x = correlate1d(correlate1d(x, k, axis=-1, mode="mirror"), k, axis=-2, mode="mirror")
        o = (self.scale - 1) // 2
        out = x[..., o::self.scale, o::self.scale].astype(np.float32)
        return to_uint8_levels(out) if self.quantize else out

    def spec(self):
        return {"name": self.name, "scale": self.scale, "sigma": self.sigma, "quantize": self.quantize}
