"""One registry of metrics, each with the metadata every consumer needs (as pyiqa's metrics
carry ``lower_better``): the leaderboard ranks and formats by it, ``compare`` shows and pairs
by it, plots label axes by it, the CLI prints by it.

A metric is registered where it is computed (``register_metric(MetricSpec(...))`` at the end
of ``image.py``, ``verification.py``, ...). A stored key may carry a level or a probe group
(``rank1@16x14``) and a std suffix (``rank1@16x14_std``): ``metric_spec`` resolves both to the
base metric's spec. A key that is not registered has no direction, so it cannot be ranked:
``metric_spec`` refuses it rather than guess that higher is better.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Callable, List, Optional

from benchmark.errors import ConfigError
from benchmark.registry import builtin_registry
from benchmark.contracts.metric_keys import STD, split_key


@dataclass(frozen=True)
class MetricSpec:
    name: str
    header: str                   # the leaderboard's column title, e.g. "Acc (%)"
    lower_better: bool = False
    factor: float = 1.0           # display = value x factor (100 for a fraction shown in %)
    digits: int = 4               # decimals shown
    unit: str = ""                # shown after a value in text ("%", " dB")
    std: Optional[str] = None     # the key of its std over folds, trials or images
    # the stored per-item array ``compare`` resamples: per image ("images"), per probe, ...
    per_item: Optional[str] = None
    # computed from each SR image and its HR image, and cached per image: the function
    # (sr, hr, crop_border) -> one value per image, for (N, 3, H, W) RGB [0, 1] batches
    per_image: Optional[Callable] = field(default=None, compare=False)
    # optional, beside per_image: (sr, hr, crop_border) -> {name: values} for this metric and
    # others that share its work (PSNR and SSIM: Y once); each value must equal the metric's
    # own per_image. A run that computes two or more metrics with the same joint calls it once.
    joint: Optional[Callable] = field(default=None, compare=False)
    # computed from each image's SR and HR embeddings (not cached: embeddings are): the function
    # (sr_emb, hr_emb) -> one value per image, for (N, D) arrays
    per_pair: Optional[Callable] = field(default=None, compare=False)
    identical: Optional[float] = None  # its value for two identical images (the hr row; None: NaN)
    counts_inf: bool = False           # store ``<name>_n_inf``, the images whose value is inf
    # NaN marks an image the metric could not measure (no face found): the mean is over the
    # others, ``<name>_n_failed`` counts them and the manifest names them (never dropped silently)
    counts_nan: bool = False
    # a costly per-image metric (landmarks) is computed only by protocols that list it
    opt_in: bool = False
    summary: str = ""

    def display(self, value: float) -> float:
        return value * self.factor

    def at(self, key: str) -> "MetricSpec":
        """This spec for a stored key of it (``rank1@16x14``): the level in the header."""
        base, level, _ = split_key(key)
        if level is None:
            return self
        return replace(self, name=key, header=f"{self.header} @{level}",
                       std=f"{base}@{level}_std" if self.std else None)


METRICS = builtin_registry("metric", "fhbench.metrics")


def register_metric(spec: MetricSpec) -> MetricSpec:
    METRICS.add(spec.name, spec, summary=spec.summary or spec.header)
    return spec


def base_name(key: str) -> str:
    """``rank1@16x14_std`` -> ``rank1``; ``accuracy_std`` -> ``accuracy``."""
    base = split_key(key)[0]
    return base[:-len(STD)] if base.endswith(STD) and base[:-len(STD)] in METRICS else base


def metric_spec(key: str) -> MetricSpec:
    """The spec of a stored metric key (level, group and ``_std`` suffixes allowed)."""
    base = base_name(key)
    if base not in METRICS:
        raise ConfigError(f"metric {key!r} is not registered (known: {', '.join(METRICS.names())}); "
                          "register it with benchmark.contracts.metric.register_metric")
    return METRICS.get(base).at(key)


def per_image_metrics() -> List[MetricSpec]:
    """The metrics computed from SR and HR pixels and cached per image, in registration order."""
    return [e.obj for e in METRICS.in_registration_order() if e.obj.per_image is not None]


def pair_metrics() -> List[MetricSpec]:
    """The metrics computed from each image's SR and HR embeddings, in registration order."""
    return [e.obj for e in METRICS.in_registration_order() if e.obj.per_pair is not None]


def metrics_per_item(item: str) -> List[MetricSpec]:
    """The metrics whose stored per-item array holds one value per ``item`` ("images"), in
    registration order: what a paired comparison resamples."""
    return [e.obj for e in METRICS.in_registration_order() if e.obj.per_item == item]


def known_metric(key: str) -> bool:
    """Whether ``metric_spec(key)`` would find a spec."""
    return base_name(key) in METRICS
