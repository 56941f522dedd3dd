"""The identity degradation: the HR reference row is the identity model on it."""
from __future__ import annotations

import numpy as np

from benchmark.contracts.degradation import Degradation
from benchmark.registry import DEGRADATIONS


@DEGRADATIONS.register("none", summary="identity (the HR reference)")
class NoDegradation(Degradation):
    name = "none"

    def __init__(self, scale=None):
        pass

    def lr_size(self, hr_hw):
        return tuple(hr_hw)

    def __call__(self, hr):
        return np.asarray(hr, dtype=np.float32)

    def degrade_torch(self, hr):
        return hr.float()

    def spec(self):
        return {"name": self.name}
