"""Degradation models LR = D(HR): deterministic, float64 inside, float32 out.

A degradation plug-in is one module in this folder that registers a ``Degradation``
subclass with ``@DEGRADATIONS.register(name)``; protocols name it with its options. One that
draws parameters per image declares ``__call__(self, hr, keys=None)``: the pipeline then
passes each image's content key (SHA256), so a seeded draw is the same on every machine,
shard and batch.
"""
from __future__ import annotations

import inspect

from benchmark.errors import ConfigError, DataError
from benchmark.registry import DEGRADATIONS


class Degradation:
    name = "?"

    def lr_size(self, hr_hw):
        raise NotImplementedError

    def __call__(self, hr):
        raise NotImplementedError

    def spec(self) -> dict:
        raise NotImplementedError


def divided_size(hr_hw, scale: int):
    """The LR size of an HR size at an integer scale; refuses sizes the scale does not divide."""
    h, w = hr_hw
    if h % scale or w % scale:
        raise DataError(f"HR size {h}x{w} is not divisible by scale {scale}")
    return (h // scale, w // scale)


def make_degradation(name: str, **params):
    cls = DEGRADATIONS.get(name)
    allowed = set(inspect.signature(cls.__init__).parameters) - {"self"}
    unknown = set(params) - allowed
    if unknown:
        raise ConfigError(f"degradation {name!r}: unknown parameter(s) {', '.join(sorted(unknown))} "
                          f"(known: {', '.join(sorted(allowed))})")
    return cls(**params)
