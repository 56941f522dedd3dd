"""Where cosine score blocks are computed: NumPy on the CPU, or torch on a device.

The identification metrics (kNN, CMC, BLUFR) spend their time in one place: blocks of
``a @ b.T`` over unit embedding rows, O(N^2 D) for N faces. Everything after a block (the tie
rules, top-k selection, counting) is O(N^2) and stays the one NumPy implementation, so a GPU
changes no rule and no code path but the matrix product.

``ScoreDevice(None)`` multiplies with NumPy (float32, the published figures). ``ScoreDevice("cuda")``
keeps the unit rows on that device (``put``, once per metric call) and copies each float32 block
back: 1,024 x 13,233 scores are 54 MB, milliseconds over PCIe, where the product itself would
take the CPU most of a second. The product runs in full float32 (TF32 is switched off for its
duration whatever the caller set), so a score can differ from the CPU's only by summation order,
about 1e-7; a decision changes only where a score lies that close to a threshold or a tie.

torch is imported only when a device is named, so NumPy-only users never load it.
"""
from __future__ import annotations

import contextlib
from typing import Any, Optional

import numpy as np

from benchmark.errors import MetricError


class ScoreDevice:
    """Computes ``a @ b.T`` of float32 unit rows on ``device`` (None: NumPy on the CPU)."""

    def __init__(self, device: Optional[str] = None):
        self.device = None if device is None else str(device)
        if self.device is not None:
            import torch

            try:
                torch.empty(0, device=self.device)
            except (RuntimeError, AssertionError) as exc:  # "cuda" without CUDA, a bad name
                raise MetricError(f"scoring device {self.device!r} is not available: "
                                  f"{str(exc).splitlines()[0]}") from None

    def __repr__(self) -> str:
        return f"ScoreDevice({self.device!r})"

    def put(self, unit: np.ndarray) -> Any:
        """The rows where the products run: the array itself, or a tensor on the device.
        Either can be sliced by row (``rows[start:stop]``) before ``scores``."""
        if self.device is None:
            return unit
        import torch

        return torch.from_numpy(np.ascontiguousarray(unit, dtype=np.float32)).to(self.device)

    def scores(self, a: Any, b: Any, out: Optional[np.ndarray] = None) -> np.ndarray:
        """``a @ b.T`` as a float32 NumPy array (written into ``out`` when given); ``a`` and
        ``b`` come from ``put``."""
        if self.device is None:
            return np.matmul(a, b.T, out=out)
        with _full_float32():
            block = (a @ b.T).cpu().numpy()
        if out is None:
            return block
        out[...] = block
        return out


@contextlib.contextmanager
def _full_float32():
    """No TF32 in the products (a user's model code may have allowed it: 10-bit mantissas
    would move scores by ~1e-3 and change decisions)."""
    import torch

    previous = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("highest")
    try:
        yield
    finally:
        torch.set_float32_matmul_precision(previous)


NUMPY = ScoreDevice(None)


def score_device(device: Optional[str]) -> ScoreDevice:
    """The ScoreDevice for a metric's ``device`` argument (None or "numpy": NumPy)."""
    if device is None or device == "numpy":
        return NUMPY
    return ScoreDevice(device)
