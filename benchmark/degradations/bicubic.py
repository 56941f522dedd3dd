"""MATLAB bicubic downsampling (antialiased), quantised to 8 bits: the papers' LR."""
from __future__ import annotations

from typing import Optional

from benchmark.contracts.degradation import Degradation, divided_size
from benchmark.errors import ConfigError
from benchmark.faces.resize import imresize, to_uint8_levels
from benchmark.registry import DEGRADATIONS


@DEGRADATIONS.register("bicubic", summary="MATLAB bicubic downsampling with antialiasing, 8-bit LR")
class BicubicDownsampling(Degradation):
    name = "bicubic"

    def __init__(self, scale: Optional[int] = None, size=None, quantize: bool = True):
        if (scale is None) == (size is None):
            raise ConfigError("bicubic degradation needs exactly one of scale or size")
        self.scale, self.size, self.quantize = scale, tuple(size) if size else None, quantize

    def lr_size(self, hr_hw):
        if self.size:
            return self.size
        return divided_size(hr_hw, self.scale)

    def __call__(self, hr):
        out = imresize(hr, output_size=self.lr_size(hr.shape[-2:]))
        return to_uint8_levels(out) if self.quantize else out

    def degrade_torch(self, hr):
        """The same LR as a batched torch op on ``hr``'s device: float64 resampling matrices,
        cast to float32 and quantised as above, so the bytes equal ``__call__``'s."""
        import torch

        from benchmark.faces.resize_torch import imresize_torch, to_uint8_levels_torch

        out = imresize_torch(hr, output_size=self.lr_size(hr.shape[-2:]), dtype=torch.float64).float()
        return to_uint8_levels_torch(out) if self.quantize else out

    def spec(self):
        return {"name": self.name, "scale": self.scale, "size": self.size, "quantize": self.quantize}
