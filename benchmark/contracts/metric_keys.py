"""Stored metric and array keys, encoded and parsed in this one module.

A key is ``<metric>`` (``accuracy``), ``<metric>_std`` (its std over folds, trials or
images), or either with a suffix after ``@``: an LR-size level of an ``lr_sizes`` protocol
(``rank1@16x12``, ``rank1@16x12_std``, ``cmc@16x12``) or a probe group (``rank1@4.20m``). The
``_std`` stays last, so the leaderboard finds a metric's std as ``<key>_std`` either way.
"""
from __future__ import annotations

from typing import Optional, Tuple

STD = "_std"


def at_level(name: str, level: Optional[str]) -> str:
    """``rank1`` -> ``rank1@16x12``; ``rank1_std`` -> ``rank1@16x12_std``; unchanged for None."""
    if level is None:
        return name
    if name.endswith(STD):
        return f"{name[:-len(STD)]}@{level}{STD}"
    return f"{name}@{level}"


def split_key(key: str) -> Tuple[str, Optional[str], bool]:
    """(name before any ``@``, the suffix after it or None, whether the key is a std):
    ``rank1@16x12_std`` -> (``rank1``, ``16x12``, True); ``accuracy_std`` -> (``accuracy_std``,
    None, True) (whether ``accuracy_std`` is a std or a metric of that name is the registry's
    call); ``psnr`` -> (``psnr``, None, False)."""
    name, at, suffix = key.partition("@")
    if not at:
        return name, None, name.endswith(STD)
    std = suffix.endswith(STD)
    return name, suffix[:-len(STD)] if std else suffix, std
