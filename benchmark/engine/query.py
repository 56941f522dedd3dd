"""Which stored runs to show: the one set of rules the leaderboard, ``compare``, plots,
sample grids and the report follow.

A view is one protocol, one level and one evaluator; the hr reference row belongs to every
view of its protocol and evaluator (its images and pairs are the same at any level). Where
the store holds one choice the user may leave it out; where it holds several, the error says
which option picks one.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

from benchmark.engine.store import GIVEN_LEVEL, HR_LEVEL, SIZES_LEVEL, ResultStore, RunRecord, level_name
from benchmark.errors import FhbenchError


@dataclass
class View:
    """The runs of one protocol at one level (None: every level) with one evaluator, the
    reference row included."""
    protocol: str
    level: Optional[str]
    evaluator: str
    runs: List[RunRecord]


def describe_level(level: str) -> str:
    """``x8`` -> ``x8``; ``sizes`` -> ``fixed LR sizes``; ``hr`` -> ``no degradation``;
    ``given`` -> ``given SR images``."""
    return {HR_LEVEL: "no degradation", SIZES_LEVEL: "fixed LR sizes",
            GIVEN_LEVEL: "given SR images"}.get(level, level)


def sr_levels(runs: Sequence[RunRecord]) -> List[str]:
    """The levels of the non-reference runs, in the store's order (scales ascending)."""
    return list(dict.fromkeys(r.level for r in runs if not r.reference))


def at_level(runs: Sequence[RunRecord], level: str) -> List[RunRecord]:
    """The runs at ``level``, and the reference row that heads every level."""
    return [r for r in runs if r.level == level or r.reference]


def protocol_runs(store: ResultStore, protocol: str, models: Optional[Sequence[str]] = None) -> List[RunRecord]:
    """The stored runs of ``protocol`` (of ``models`` only, when given), or an error naming
    what is stored instead."""
    runs = store.runs(protocol=protocol)
    if not runs:
        have = sorted({r.protocol for r in store.runs()})
        raise FhbenchError(f"no runs of protocol {protocol} in {store.path}"
                           + (f" (protocols with runs: {', '.join(have)})" if have else "")
                           + f"; run `fhbench run --model M --protocol {protocol}` first")
    if models:
        unknown = [m for m in models if m not in {r.model for r in runs}]
        if unknown:
            raise FhbenchError(f"no run of model(s) {', '.join(unknown)} on {protocol} "
                               f"(models with runs: {', '.join(sorted({r.model for r in runs}))})")
        runs = [r for r in runs if r.model in models]
    return runs


def one_evaluator(runs: Sequence[RunRecord], protocol: str, evaluator: Optional[str]) -> str:
    evaluators = sorted({r.evaluator for r in runs})
    if evaluator is None and len(evaluators) > 1:
        raise FhbenchError(f"runs of {protocol} use evaluators {', '.join(evaluators)}; a figure shows one: "
                           "pass --evaluator")
    evaluator = evaluator or evaluators[0]
    if evaluator not in evaluators:
        raise FhbenchError(f"no runs of {protocol} with evaluator {evaluator} (stored: {', '.join(evaluators)})")
    return evaluator


def one_level(runs: Sequence[RunRecord], protocol: str, evaluator: str, scale, lr_sizes: bool) -> str:
    """The level a view shows: ``--scale`` (an ``lr_sizes`` protocol has one, ``sizes``), or
    the only one stored (the hr row's when nothing else is)."""
    stored = sr_levels(runs)
    if scale is None:
        if len(stored) > 1:
            raise FhbenchError(f"runs of {protocol} are at scales {', '.join(describe_level(x) for x in stored)}; "
                               "a figure shows one: pass --scale")
        return stored[0] if stored else HR_LEVEL
    level = SIZES_LEVEL if lr_sizes else level_name(scale)
    if level not in stored and level != HR_LEVEL:
        raise FhbenchError(f"no runs of {protocol} with {evaluator} at scale {scale} (stored scales: "
                           f"{', '.join(describe_level(x) for x in stored) or 'none but the hr run'})")
    return level


def select_view(store: ResultStore, protocol: str, scale=None, evaluator: Optional[str] = None,
                models: Optional[Sequence[str]] = None, all_levels: bool = False,
                lr_sizes: bool = False) -> View:
    """The runs of one figure or comparison: ``scale`` and ``evaluator`` may be left out when
    the store holds one; ``all_levels`` keeps every level (metric vs scale)."""
    runs = protocol_runs(store, protocol, models)
    evaluator = one_evaluator(runs, protocol, evaluator)
    runs = [r for r in runs if r.evaluator == evaluator]
    if all_levels:
        return View(protocol, None, evaluator, runs)
    level = one_level(runs, protocol, evaluator, scale, lr_sizes)
    return View(protocol, level, evaluator, at_level(runs, level))


def find_run(store: ResultStore, protocol: str, model: str, scale=None, evaluator=None) -> RunRecord:
    """The one run of ``model`` on ``protocol`` (at ``scale``, with ``evaluator``); the hr
    run stands for every level. Ambiguity or absence: FhbenchError saying which option to pass."""
    runs = store.runs(protocol=protocol, model=model, evaluator=evaluator)
    if not runs:
        evaluators = sorted({r.evaluator for r in store.runs(protocol=protocol, model=model)})
        if evaluators:
            raise FhbenchError(f"model {model} has no run on {protocol} with evaluator {evaluator} "
                               f"(its runs use {', '.join(evaluators)})")
        have = sorted({r.model for r in store.runs(protocol=protocol)})
        raise FhbenchError(f"no run of model {model} on protocol {protocol}"
                           + (f" (models with runs: {', '.join(have)})" if have else f" in {store.path}"))
    if scale is not None:
        runs = at_level(runs, level_name(scale))
        if not runs:
            raise FhbenchError(f"model {model} has no run on {protocol} at scale {scale}")
    if len(runs) > 1:
        keys = ", ".join(f"{describe_level(r.level)} with {r.evaluator}" for r in runs)
        options = [o for o, n in (("--scale", len({r.level for r in runs})),
                                  ("--evaluator", len({r.evaluator for r in runs}))) if n > 1]
        raise FhbenchError(f"model {model} has several runs on {protocol} ({keys}); pass {' and '.join(options)}")
    return runs[0]


def table_views(store: ResultStore, protocol=None, scale=None, evaluator=None) -> List[Tuple[str, str, str]]:
    """(protocol, level, evaluator) of every leaderboard table, in the store's order. A
    protocol and evaluator with only the hr run get an hr table of that row alone."""
    runs = store.runs(protocol=protocol, evaluator=evaluator)
    if not runs:
        what = " ".join(f"{k}={v}" for k, v in (("protocol", protocol), ("evaluator", evaluator)) if v)
        raise FhbenchError(f"no runs in {store.path}" + (f" for {what}" if what else "")
                           + "; run `fhbench run --model M --protocol P` first")
    level = None if scale is None else level_name(scale)
    sr_groups = {(r.protocol, r.level, r.evaluator) for r in runs if not r.reference}
    with_sr = {(p, e) for p, _, e in sr_groups}
    hr_groups = {(r.protocol, r.level, r.evaluator) for r in runs if r.reference}
    groups = sr_groups | {g for g in hr_groups if (g[0], g[2]) not in with_sr or level == HR_LEVEL}
    if level is not None:
        groups = {g for g in groups if g[1] == level}
    if not groups:
        stored = ", ".join(sorted({r.level for r in runs}))
        raise FhbenchError(f"no runs in {store.path} at scale {scale} (stored levels: {stored})")
    order = {(r.protocol, r.level, r.evaluator): i for i, r in enumerate(runs)}
    return sorted(groups, key=order.get)
