"""B - A over replicate pairs: two configs, each trained with several seeds.

One pair of runs answers "is this B better than this A on these test items": the paired
bootstrap and McNemar (``compare.py``) see the test set's sampling, not training's. With
replicate pairs (A_i, B_i), i = 1..n, trained alike but for the seed, the difference d_i =
B_i - A_i of each metric (``compare_runs``'s difference on the data itself) varies with the
seed as well. Per metric this module reports the d_i, their mean, the Student t interval
mean +- t_{n-1}(1 - alpha/2) s / sqrt(n) (s the sample standard deviation of the d_i), and
the two-sided one-sample t test of mean d = 0 (the paired t test of B against A over seeds).
Both are conditional on the test set, which every pair shares; each pair's own bootstrap
interval and McNemar test show that part.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import List, Optional, Sequence, Tuple

import numpy as np
from scipy.stats import t as student_t

from benchmark.contracts.metric import metric_spec, metrics_per_item
from benchmark.engine import strict_json
from benchmark.engine.query import describe_level
from benchmark.engine.store import ResultStore, RunRecord
from benchmark.errors import FhbenchError
from benchmark.reporting.compare import (CONFIDENCE, PROBE_RANK, Comparison, check_comparable, compare_runs,
                                         comparison_setting, resolve_run, table_lines)

PAIR_KEYS = ("pair_is_same", "pair_fold")  # equal values: the same pairs


@dataclass(frozen=True)
class ReplicateSummary:
    metric: str
    values_a: List[float]      # the metric of A_1 .. A_n (as compare_runs reports it)
    values_b: List[float]
    differences: List[float]   # B_i - A_i
    mean_difference: float
    sd_difference: float       # sample standard deviation (n - 1)
    low: float                 # the Student t interval of the mean difference
    high: float
    p_value: Optional[float]   # two-sided t test of mean difference 0; None: the d_i do not vary
    confidence: float


@dataclass
class ReplicateComparison:
    pairs: List[Comparison]
    summaries: List[ReplicateSummary]
    notes: List[str] = field(default_factory=list)


def t_summary(metric: str, values_a: Sequence[float], values_b: Sequence[float],
              confidence: float = CONFIDENCE) -> ReplicateSummary:
    """The mean of d_i = b_i - a_i with its Student t interval and two-sided t test."""
    a, b = np.asarray(values_a, dtype=np.float64), np.asarray(values_b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1 or a.size < 2:
        raise FhbenchError(f"a t interval over replicates needs at least 2 pairs of values, got {a.size} and {b.size}")
    if not 0 < confidence < 1:
        raise FhbenchError(f"confidence must lie in (0, 1), got {confidence}")
    d = b - a
    n, mean, sd = d.size, float(d.mean()), float(d.std(ddof=1))
    half = float(student_t.ppf(1 - (1 - confidence) / 2, n - 1)) * sd / math.sqrt(n)
    p = None if sd == 0 else float(2 * student_t.sf(abs(mean) / (sd / math.sqrt(n)), n - 1))
    return ReplicateSummary(metric, a.tolist(), b.tolist(), d.tolist(), mean, sd, mean - half, mean + half, p,
                            confidence)


def compare_replicates(store: ResultStore, protocol: str, pairs: Sequence[Tuple[str, str]], scale=None,
                       evaluator=None, level: Optional[str] = None, confidence: float = CONFIDENCE,
                       **options) -> ReplicateComparison:
    """Compare each replicate pair (``compare_runs``), then summarise each metric that every
    pair has over the pairs (``t_summary``). The pairs must share level, evaluator and test
    items; each model may appear once."""
    if len(pairs) < 2:
        raise FhbenchError(f"replicates need at least 2 pairs of models, got {len(pairs)}")
    names = [m for pair in pairs for m in pair]
    repeated = sorted({m for m in names if names.count(m) > 1})
    if repeated:
        raise FhbenchError(f"each replicate is its own model: {', '.join(repeated)} appears more than once")
    runs = [(resolve_run(store, protocol, a, scale, evaluator), resolve_run(store, protocol, b, scale, evaluator))
            for a, b in pairs]
    _check_same_setting(runs, level)  # the cheap checks first: each pair's bootstrap takes seconds
    _check_same_items(store, [run_a for run_a, _ in runs])
    done = [compare_runs(store, run_a, run_b, level=level, confidence=confidence, **options) for run_a, run_b in runs]
    out = ReplicateComparison(done, [])
    metrics = [iv.metric for iv in done[0].intervals]
    for metric in metrics:
        found = [next((iv for iv in c.intervals if iv.metric == metric), None) for c in done]
        missing = [f"{c.model_a} / {c.model_b}" for c, iv in zip(done, found) if iv is None]
        if missing:
            out.notes.append(f"{metric} is left out: no difference for {', '.join(missing)}")
            continue
        out.summaries.append(t_summary(metric, [iv.value_a for iv in found], [iv.value_b for iv in found],
                                       confidence))
    for c in done:
        out.notes += [f"{c.model_a} / {c.model_b}: {n}" for n in c.notes]
    if not out.summaries:
        raise FhbenchError("the replicate pairs share no metric to summarise")
    return out


def _check_same_setting(runs: List[Tuple[RunRecord, RunRecord]], level: Optional[str]) -> None:
    settings = [(check_comparable(run_a, run_b), run_a.evaluator) for run_a, run_b in runs]
    if len(set(settings)) > 1:
        seen = "; ".join(f"{run_a.model} / {run_b.model} at {describe_level(row_level)}"
                         f"{f' {level}' if level else ''} with {ev}"
                         for (run_a, run_b), (row_level, ev) in zip(runs, settings))
        raise FhbenchError(f"replicate pairs must share scale and evaluator: {seen}; pass --scale or --evaluator")


def _check_same_items(store: ResultStore, runs: List[RunRecord]) -> None:
    """Every pair was scored on the test items of the first (the same pairs; as many probes
    and images): a mean of differences on different test sets would mix two questions. (Each
    pair's own runs are checked against each other by ``compare_runs``.)"""
    per_item = {m.name for m in metrics_per_item("images")} | {PROBE_RANK}
    first = None
    for run in runs:
        arrays = store.arrays(run.id)
        items = {k: v.tolist() for k, v in arrays.items() if k in PAIR_KEYS}
        items.update({k: v.shape for k, v in arrays.items() if k in per_item})
        if first is None:
            first = (run.model, items)
        elif any(items[k] != first[1][k] for k in items.keys() & first[1].keys()):
            raise FhbenchError(f"replicates {first[0]} and {run.model} were scored on different test items; "
                               "re-run them on the same data")


def format_replicates(r: ReplicateComparison, fmt: str = "text") -> str:
    """``text``, ``md`` (tables) or ``json``."""
    if fmt == "json":
        return strict_json.dumps(asdict(r), indent=1)
    c0, n = r.pairs[0], len(r.pairs)
    conf = round(100 * r.summaries[0].confidence)
    head = (f"{comparison_setting(c0)}: {n} replicate pairs (A_i, B_i); "
            f"differences are B - A")
    rows = [["metric", "A (mean +- sd)", "B (mean +- sd)", "B - A per pair", "mean B - A", f"{conf}% t CI",
             "t-test p", "B > A"]]
    for s in r.summaries:
        spec = metric_spec(s.metric)
        f, d, unit = spec.factor, spec.digits, spec.unit
        rows.append([s.metric, _mean_sd(s.values_a, f, d, unit), _mean_sd(s.values_b, f, d, unit),
                     ", ".join(f"{x * f:+.{d}f}" for x in s.differences), f"{s.mean_difference * f:+.{d}f}",
                     f"[{s.low * f:+.{d}f}, {s.high * f:+.{d}f}]",
                     "n/a (no spread)" if s.p_value is None else f"{s.p_value:.3g}",
                     f"{sum(x > 0 for x in s.differences)} of {n}"])
    lines = [head, ""] + table_lines(rows, fmt, "lrrlrrrr") + ["", "pairs (each pair's own test, on the test items):"]
    for i, c in enumerate(r.pairs, 1):
        iv = c.intervals[0]
        spec = metric_spec(iv.metric)
        f, d = spec.factor, spec.digits
        line = (f"  {i}. A = {c.model_a}, B = {c.model_b}: {iv.metric} {iv.difference * f:+.{d}f} "
                f"[{iv.low * f:+.{d}f}, {iv.high * f:+.{d}f}] ({iv.unit}, {iv.n_resamples} x, seed {iv.seed})")
        if c.mcnemar:
            line += f", McNemar p = {c.mcnemar.p_value:.3g}"
        lines.append(line)
    lines += [f"note: {x}" for x in r.notes]
    return "\n".join(lines) + "\n"


def _mean_sd(values, factor, digits, unit) -> str:
    v = np.asarray(values, dtype=np.float64) * factor
    return f"{v.mean():.{digits}f} +- {v.std(ddof=1):.{digits}f}{unit}"
