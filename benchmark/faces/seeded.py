"""Seeded draws that come out the same on every machine and every NumPy release.

NumPy may change the algorithms behind ``Generator.integers``, ``choice`` and
``permutation`` between releases (NEP 19), but not the bit stream of a seeded PCG64. So
the draws here use only ``numpy.random.PCG64(seed).random_raw()`` (64-bit words) and two
textbook algorithms on top of it:

- ``below(n)``, a uniform integer in [0, n): take the next word u; if
  u >= 2**64 - (2**64 mod n) reject it and take the next one (so every residue is equally
  likely), else return u mod n;
- ``permutation(n)``: Durstenfeld's Fisher-Yates shuffle of 0..n-1: for i = n-1 down to 1,
  swap items i and ``below(i + 1)``.
"""
from __future__ import annotations

import numpy as np

_WORDS = 1 << 64


class SeededDraw:
    """A stream of uniform integers from PCG64(seed); see the module notes."""

    def __init__(self, seed: int):
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
        self.seed = int(seed)
        self._bits = np.random.PCG64(self.seed)

    def word(self) -> int:
        return int(self._bits.random_raw())

    def below(self, n: int) -> int:
        if n < 1:
            raise ValueError(f"cannot draw from an empty range (n = {n})")
        limit = _WORDS - _WORDS % n
        while True:
            u = self.word()
            if u < limit:
                return u % n

    def permutation(self, n: int) -> np.ndarray:
        items = np.arange(n, dtype=np.int64)
        for i in range(n - 1, 0, -1):
            j = self.below(i + 1)
            items[i], items[j] = items[j], items[i]
        return items
