"""Levels of an ``lr_sizes`` protocol (lfw-ident, ar-cmc) for figures, comparisons and samples.

Such a protocol scores every fixed LR size in ONE run (stored at level ``sizes``; its hr
run has the same names) and names the metrics and arrays of each size
``<name>@<level>`` (``rank1@16x14``, ``rank1@16x14_std``, ``cmc@16x14``, ``psnr@16x14``).
A figure or a comparison shows one level: ``--level 16x14``. Protocols with ``scales`` have
no levels (one run per scale: ``--scale``).

``protocol_levels`` gives the levels a protocol is run, written (``fhbench degrade``) or
scored at, for ``run`` and ``degrade``/``score`` alike.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Dict, List, Optional, Tuple

from benchmark.errors import ConfigError, FhbenchError
from benchmark.engine.protocols import Protocol
from benchmark.engine.store import HR_LEVEL, SIZES_LEVEL
from benchmark.contracts.metric_keys import STD, split_key

if TYPE_CHECKING:
    from benchmark.engine.pipeline import Level


def protocol_levels(protocol: Protocol, scale: Optional[int], in_one: str = "in one run") -> Tuple[str, List["Level"]]:
    """(the row's level, the levels) of ``protocol`` at ``--scale``: one scale (``x4``; default
    the protocol's), or every fixed LR size of an ``lr_sizes`` protocol at once (``sizes``,
    where a ``--scale`` is refused; ``in_one`` says how the command does them all)."""
    # here, not at the top: the figures and comparisons that read this module need no torch
    from benchmark.contracts.degradation import make_degradation
    from benchmark.engine.pipeline import Level

    if protocol.lr_sizes:
        if scale is not None:
            raise ConfigError(f"protocol {protocol.name} runs every LR size of its own "
                              f"({', '.join(protocol.level_names)}) {in_one}; leave out --scale")
        return SIZES_LEVEL, [Level(n, make_degradation(protocol.degradation, size=tuple(size),
                                                       **protocol.degradation_options))
                             for n, size in zip(protocol.level_names, protocol.lr_sizes)]
    scale = scale or protocol.default_scale
    if scale not in protocol.scales:
        raise ConfigError(f"protocol {protocol.name} runs at scales {protocol.scales}, not {scale}")
    return f"x{scale}", [Level(f"x{scale}", make_degradation(protocol.degradation, scale=scale,
                                                             **protocol.degradation_options))]


def normalize_level(level: Optional[str]) -> Optional[str]:
    """``16×14`` and ``16X14`` mean ``16x14``."""
    if level is None:
        return None
    return str(level).strip().replace("×", "x").replace("X", "x")


def resolve_level(spec: Protocol, level: Optional[str], scale: Optional[int] = None) -> Optional[str]:
    """The level to show: required (and checked) for an ``lr_sizes`` protocol, refused for a
    protocol with scales. ``scale`` is the ``--scale`` the user also gave (None: none)."""
    level = normalize_level(level)
    names = spec.level_names
    if spec.lr_sizes:
        if scale is not None and scale not in (SIZES_LEVEL, HR_LEVEL):
            raise FhbenchError(f"protocol {spec.name} has no scales: one run covers its LR sizes "
                               f"{', '.join(names)}; pass --level instead of --scale {scale}")
        if level is None:
            raise FhbenchError(f"protocol {spec.name} scores every LR size in one run; pass --level, one of "
                               f"{', '.join(names)}")
        if level not in names:
            raise FhbenchError(f"protocol {spec.name} has no level {level!r} (levels: {', '.join(names)})")
        return level
    if level is not None:
        raise FhbenchError(f"protocol {spec.name} has scales ({', '.join(names)}), not LR-size levels: "
                           f"pass --scale instead of --level {level}")
    return None


def level_size(spec: Protocol, level: str) -> Tuple[int, int]:
    """(h, w) of the LR faces at ``level``."""
    return dict(zip(spec.level_names, spec.lr_sizes))[level]


def level_label(level: str) -> str:
    """``16x14`` -> ``LR 16×14`` (for titles and captions)."""
    return "LR " + level.replace("x", "×")


def split_level(spec: Protocol, name: str) -> Tuple[str, Optional[str]]:
    """``rank1@16x14`` -> (``rank1``, ``16x14``) and ``rank1@16x14_std`` -> (``rank1_std``,
    ``16x14``) when the suffix is one of the protocol's levels; any other name (``rank1``,
    SCface's probe group ``rank1@4.20m``) -> (name, None)."""
    base, level, std = split_key(name)
    if level is not None and level in spec.level_names:
        return base + (STD if std else ""), level
    return name, None


def arrays_at_level(arrays: Dict, level: Optional[str]) -> Dict:
    """The arrays of one level under their plain names (``cmc@16x14`` -> ``cmc``); all of
    them unchanged when ``level`` is None."""
    if level is None:
        return arrays
    suffix = f"@{level}"
    return {k[:-len(suffix)]: v for k, v in arrays.items() if k.endswith(suffix)}
