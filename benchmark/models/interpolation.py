"""Built-in reference models: the HR images themselves (the upper bound), MATLAB bicubic
and nearest-neighbour upsampling (the lower bounds every paper reports)."""
from __future__ import annotations

import torch

from benchmark.contracts.model import SRAdapter
from benchmark.registry import MODELS


@MODELS.register("hr", summary="the original HR images: the upper bound of every table")
class ReferenceHR(SRAdapter):
    name = "hr"
    batch_invariant = True
    pinned_degradation = "none"  # SR = HR: the upper bound

    def __init__(self, scale=None, **_):
        self.scale = None

    def super_resolve(self, lr, keys):
        return lr  # the runner hands it the HR images themselves


@MODELS.register("bicubic", summary="MATLAB bicubic upsampling of the LR image (no SR)")
class BicubicUpsampling(SRAdapter):
    name = "bicubic"
    batch_invariant = True
    wants_upsampled_input = True  # the runner's MATLAB-bicubic upsampling is the output

    def __init__(self, scale=None, **_):
        self.scale = scale

    def super_resolve(self, lr, keys):
        return lr.clamp(0, 1)  # bicubic overshoots at edges; 8-bit storage would clip too


@MODELS.register("nearest", summary="nearest-neighbour upsampling (pixel replication)")
class NearestUpsampling(SRAdapter):
    name = "nearest"
    batch_invariant = True

    def __init__(self, scale=None, output_size=None, **_):
        self.scale = scale
        self.output_size = output_size

    def check_compatible(self, lr_hw, hr_hw, scale) -> None:
        # Built without a scale (an lr_sizes protocol): replicate pixels up to the HR size.
        if self.scale is None and self.output_size is None:
            self.output_size = tuple(hr_hw)
        super().check_compatible(lr_hw, hr_hw, scale)

    def super_resolve(self, lr, keys):
        # Built from --scale alone (create_model), output_size is None: replicate by scale.
        return torch.nn.functional.interpolate(
            lr, size=self.output_size, scale_factor=None if self.output_size else self.scale,
            mode="nearest")
