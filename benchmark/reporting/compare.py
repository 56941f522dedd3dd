"""Paired comparisons of two models on the same probes, pairs and images.

Two runs are comparable when they share protocol, level and evaluator (the ``hr`` reference
run pairs with any level: its pairs and images are the same) and were
scored on the same pairs (equal ``pair_is_same`` and ``pair_fold``). Differences are
always **B - A** (``model_b`` minus ``model_a``). A protocol with fixed LR sizes (one run
covers every size) is compared at one ``level``: its arrays ``probe_rank@16x14``, ...

- McNemar's exact test on per-pair verification decisions: pair i is decided "same" iff
  ``score > threshold`` of its fold (the LFW 10-fold thresholds: ``fold_threshold`` when
  the run stored it, else recomputed with ``ten_fold_accuracy``); a decision is correct
  when it equals ``pair_is_same``. With n01 = pairs only A gets right and n10 = pairs only
  B gets right, p = min(1, 2 P(X <= min(n01, n10))), X ~ Binomial(n01 + n10, 1/2)
  (the two-sided exact binomial test; p = 1 when no pair is discordant).
- Paired bootstrap percentile intervals (seeded ``numpy.random.default_rng``; the same
  resampled indices for A and B): accuracy resamples pairs within each fold and averages
  the fold accuracies (as the metric does); PSNR, SSIM and FR loss resample images;
  rank-1 resamples probes (within each repeat when ``probe_rank`` has one row per repeat).
  An image whose per-image value is NaN in either run (a landmark detector found no face, a
  free-form score had no SR file for it) is dropped from both, and a note says how many.
  The interval is the (alpha/2, 1 - alpha/2) quantiles (numpy's linear interpolation) of
  the resampled differences.
- ``folds`` (1-based, as pairs.txt numbers them) keeps the pairs of those folds only, e.g.
  the folds whose people a model never trained on (LFW View 2's folds are person-disjoint).
  Each pair keeps its decision under its fold's threshold, chosen on the other folds as the
  protocol does; per-image metrics and ranks are left out (a note says so): a run stores no
  fold for them.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Dict, List, Optional, Sequence

import numpy as np
from scipy.stats import binom

from benchmark.engine import strict_json
from benchmark.errors import FhbenchError
from benchmark.engine.query import describe_level, find_run
from benchmark.engine.levels import arrays_at_level, level_label, resolve_level
from benchmark.contracts.metric import metric_spec, metrics_per_item
from benchmark.metrics.verification import ten_fold_accuracy
from benchmark.engine.protocols import load_protocol
from benchmark.engine.store import HR_LEVEL, level_scale, ResultStore, RunRecord

N_RESAMPLES = 10_000
SEED = 0
CONFIDENCE = 0.95
PROBE_RANK = "probe_rank"   # per-probe rank of the first correct match (1 = correct at rank 1)
MAX_FOLDS = 10_000          # the largest fold number --folds accepts
RESAMPLE_CHUNK = 4_000_000  # resampled indices held at once (32 MB of int64)


@dataclass(frozen=True)
class McNemarResult:
    n_pairs: int
    only_a_correct: int   # n01
    only_b_correct: int   # n10
    p_value: float


@dataclass(frozen=True)
class BootstrapInterval:
    metric: str
    value_a: float
    value_b: float
    difference: float     # B - A on the data itself
    low: float
    high: float
    confidence: float
    n_resamples: int
    seed: int
    unit: str             # what was resampled: "pairs within folds", "images", "probes"


@dataclass
class Comparison:
    protocol: str
    row_level: str        # the runs' level: x8, sizes, or hr (two hr runs)
    evaluator: str
    model_a: str
    model_b: str
    mcnemar: Optional[McNemarResult]
    intervals: List[BootstrapInterval]
    notes: List[str] = field(default_factory=list)  # differences that could not be computed, and why
    level: Optional[str] = None  # the LR size compared, for a protocol with fixed LR sizes
    folds: Optional[List[int]] = None  # the folds (1-based) whose pairs were compared; None: all

    @property
    def scale(self) -> Optional[int]:
        return level_scale(self.row_level)


def mcnemar_exact(correct_a, correct_b) -> McNemarResult:
    """Two-sided exact McNemar test on paired booleans (True = that model decided right)."""
    a = np.asarray(correct_a, dtype=bool)
    b = np.asarray(correct_b, dtype=bool)
    if a.shape != b.shape or a.ndim != 1:
        raise FhbenchError(f"McNemar needs two 1-D decision arrays of one length, got {a.shape} and {b.shape}")
    n01, n10 = int(np.sum(a & ~b)), int(np.sum(~a & b))
    n = n01 + n10
    p = 1.0 if n == 0 else min(1.0, 2.0 * float(binom.cdf(min(n01, n10), n, 0.5)))
    return McNemarResult(len(a), n01, n10, p)


def bootstrap_difference(values_a, values_b, strata=None, n_resamples: int = N_RESAMPLES,
                         seed: int = SEED, confidence: float = CONFIDENCE):
    """Percentile CI of mean_s(mean(B - A in stratum s)), resampling within strata.

    ``values_a[i]`` and ``values_b[i]`` belong to the same item; ``strata[i]`` its stratum
    (None: one stratum). Returns (difference, low, high).
    """
    a = np.asarray(values_a, dtype=np.float64).ravel()
    b = np.asarray(values_b, dtype=np.float64).ravel()
    if a.shape != b.shape or a.size == 0:
        raise FhbenchError(f"paired bootstrap needs two non-empty arrays of one length, got {a.size} and {b.size}")
    if not 0 < confidence < 1:
        raise FhbenchError(f"confidence must lie in (0, 1), got {confidence}")
    if n_resamples < 1:
        raise FhbenchError(f"n_resamples must be positive, got {n_resamples}")
    diff = b - a
    groups = _strata_members(strata, len(diff))
    rng = np.random.default_rng(seed)
    resampled = np.zeros(n_resamples)
    for members in groups:
        d = diff[members]
        per_chunk = max(1, RESAMPLE_CHUNK // len(d))
        for start in range(0, n_resamples, per_chunk):
            stop = min(n_resamples, start + per_chunk)
            idx = rng.integers(0, len(d), size=(stop - start, len(d)))
            resampled[start:stop] += d[idx].mean(axis=1)
    resampled /= len(groups)
    estimate = float(np.mean([diff[m].mean() for m in groups]))
    alpha = 1.0 - confidence
    low, high = np.quantile(resampled, [alpha / 2, 1 - alpha / 2])
    return estimate, float(low), float(high)


def _strata_members(strata, n: int) -> List[np.ndarray]:
    if strata is None:
        return [np.arange(n)]
    strata = np.asarray(strata).ravel()
    return [np.flatnonzero(strata == s) for s in np.unique(strata)]


def _stratified_mean(values, strata) -> float:
    v = np.asarray(values, dtype=np.float64).ravel()
    return float(np.mean([v[m].mean() for m in _strata_members(strata, len(v))]))


def verification_correct(arrays: Dict[str, np.ndarray]) -> np.ndarray:
    """Per-pair correctness of the 10-fold decisions: (score > fold threshold) == is_same."""
    scores, same, fold = arrays["pair_scores"], arrays["pair_is_same"].astype(bool), arrays["pair_fold"]
    thresholds = arrays.get("fold_threshold")
    if thresholds is None:
        thresholds = ten_fold_accuracy(scores, same, fold).thresholds
    return (scores > thresholds[fold]) == same


def resolve_run(store: ResultStore, protocol: str, model: str, scale=None, evaluator=None) -> RunRecord:
    """The one run of ``model`` on ``protocol`` (``engine/query.find_run``)."""
    return find_run(store, protocol, model, scale, evaluator)


def check_comparable(run_a: RunRecord, run_b: RunRecord) -> str:
    """The common level of two runs (an hr run pairs with any), or FhbenchError saying how
    they differ."""
    if run_a.protocol != run_b.protocol:
        raise FhbenchError(f"cannot compare runs of different protocols: {run_a.model} on {run_a.protocol}, "
                           f"{run_b.model} on {run_b.protocol}")
    if run_a.evaluator != run_b.evaluator:
        raise FhbenchError(f"cannot compare runs of different evaluators: {run_a.model} with {run_a.evaluator}, "
                           f"{run_b.model} with {run_b.evaluator}; pass --evaluator")
    levels = {r.level for r in (run_a, run_b) if not r.reference}
    if len(levels) > 1:
        raise FhbenchError(f"cannot compare runs of different scales: {run_a.model} at "
                           f"{describe_level(run_a.level)}, {run_b.model} at {describe_level(run_b.level)}; "
                           "pass --scale")
    return levels.pop() if levels else HR_LEVEL


def compare_runs(store: ResultStore, run_a: RunRecord, run_b: RunRecord, n_resamples: int = N_RESAMPLES,
                 seed: int = SEED, confidence: float = CONFIDENCE, level: Optional[str] = None,
                 folds: Optional[Sequence[int]] = None) -> Comparison:
    """Compare two runs; for a protocol with fixed LR sizes, the arrays of ``level``
    (``probe_rank@16x14``, ...), which must then be given; ``folds``: only those folds' pairs."""
    scale = check_comparable(run_a, run_b)
    level = resolve_level(load_protocol(run_a.protocol), level)
    arr_a = arrays_at_level(store.arrays(run_a.id), level)
    arr_b = arrays_at_level(store.arrays(run_b.id), level)
    out = Comparison(run_a.protocol, scale, run_a.evaluator, run_a.model, run_b.model, None, [], level=level,
                     folds=None if folds is None else sorted(set(folds)))

    def interval(metric, va, vb, strata, unit):
        d, lo, hi = bootstrap_difference(va, vb, strata, n_resamples, seed, confidence)
        out.intervals.append(BootstrapInterval(metric, _stratified_mean(va, strata), _stratified_mean(vb, strata),
                                               d, lo, hi, confidence, n_resamples, seed, unit))

    if _has(arr_a, arr_b, "pair_scores", "pair_is_same", "pair_fold"):
        for key in ("pair_is_same", "pair_fold"):
            if not np.array_equal(arr_a[key], arr_b[key]):
                raise FhbenchError(f"runs {run_a.model} and {run_b.model} were scored on different pairs "
                                   f"({key} differ); re-run both on the same pairs file")
        ca, cb, fold = verification_correct(arr_a), verification_correct(arr_b), arr_a["pair_fold"]
        if folds is not None:
            keep = np.isin(fold, _fold_indices(out.folds, fold, run_a.protocol))
            ca, cb, fold = ca[keep], cb[keep], fold[keep]
        out.mcnemar = mcnemar_exact(ca, cb)
        interval("accuracy", ca, cb, fold, "pairs within folds")
    elif folds is not None:
        raise FhbenchError(f"--folds selects pairs by fold, but the runs of {run_a.model} and {run_b.model} on "
                           f"{run_a.protocol} store no folds of pairs")
    if folds is not None:
        out.notes.append("per-image metrics and ranks are left out: they are not stored per fold")
        return out
    if _has(arr_a, arr_b, PROBE_RANK):
        ra, rb = arr_a[PROBE_RANK], arr_b[PROBE_RANK]
        if ra.shape != rb.shape:
            raise FhbenchError(f"runs {run_a.model} and {run_b.model} have {ra.shape} and {rb.shape} probes; "
                               "they were not scored on the same probes")
        strata = np.repeat(np.arange(ra.shape[0]), ra.shape[1]) if ra.ndim == 2 else None
        interval("rank1", (ra == 1).ravel(), (rb == 1).ravel(), strata,
                 "probes within repeats" if ra.ndim == 2 else "probes")
    for metric in (m.name for m in metrics_per_item("images")):
        if not _has(arr_a, arr_b, metric):
            continue
        va, vb = arr_a[metric], arr_b[metric]
        if va.shape != vb.shape:
            raise FhbenchError(f"runs {run_a.model} and {run_b.model} scored {va.size} and {vb.size} images "
                               f"({metric}); they were not run on the same images")
        va, vb = _without_nan(metric, va, vb, run_a.model, run_b.model, out.notes)
        if va.size == 0:
            continue
        bad = [m for m, v in ((run_a.model, va), (run_b.model, vb)) if not np.isfinite(v).all()]
        if bad:
            out.notes.append(f"no {metric} difference: {metric} is inf for some images of {', '.join(bad)} "
                             "(identical to HR)")
            continue
        interval(metric, va, vb, None, "images")
    if out.mcnemar is None and not out.intervals:
        why = f" ({'; '.join(out.notes)})" if out.notes else ""
        raise FhbenchError(f"runs {run_a.model} and {run_b.model} on {run_a.protocol} store no per-pair, "
                           f"per-probe or per-image arrays to compare{why}")
    return out


def _fold_indices(folds: List[int], pair_fold: np.ndarray, protocol: str) -> np.ndarray:
    """The stored (0-based) fold numbers of ``folds`` (1-based), each checked to exist."""
    n = int(pair_fold.max()) + 1 if pair_fold.size else 0
    outside = [f for f in folds if not 1 <= f <= n]
    if outside:
        raise FhbenchError(f"--folds: {protocol} has folds 1..{n}, not {', '.join(map(str, outside))}")
    return np.asarray(folds) - 1


def parse_folds(text: str) -> List[int]:
    """'6-10' or '1,3,5-7' -> the fold numbers, sorted, each once."""
    folds = set()
    for item in text.split(","):
        first, sep, last = item.strip().partition("-")
        try:
            lo, hi = int(first), int(last if sep else first)
        except ValueError:
            raise FhbenchError(f"--folds: {item.strip()!r} is not a fold number or a range like 6-10") from None
        if lo < 1 or hi < lo:
            raise FhbenchError(f"--folds: {item.strip()!r} is not a range of folds numbered from 1 (like 6-10)")
        if hi > MAX_FOLDS:  # before a hostile '1-10000000000' fills memory
            raise FhbenchError(f"--folds: {item.strip()!r} goes past fold {MAX_FOLDS}; no protocol has that many")
        folds.update(range(lo, hi + 1))
    return sorted(folds)


def _without_nan(metric: str, va: np.ndarray, vb: np.ndarray, model_a: str, model_b: str, notes: List[str]):
    """The pairs of per-image values where both runs measured the image. NaN marks an image a
    run could not measure (a landmark detector found no face; a free-form score's missing SR
    file): a paired difference needs both values, so such an image is dropped from both runs,
    and a note says how many, from which run, and why."""
    a_nan, b_nan = np.isnan(va), np.isnan(vb)
    drop = a_nan | b_nan
    if not drop.any():
        return va, vb
    who = ", ".join(f"{int(n.sum())} of {model}" for model, n in ((model_a, a_nan), (model_b, b_nan)) if n.any())
    kept = int((~drop).sum())
    notes.append(f"{metric}: {int(drop.sum())} of {va.size} images dropped from the paired comparison "
                 f"(NaN in {who}: the metric could not measure them, e.g. no face found or no SR file); "
                 + (f"the interval is over the other {kept}" if kept else "no image is left, so no difference"))
    return va[~drop], vb[~drop]


def compare_models(store: ResultStore, protocol: str, model_a: str, model_b: str, scale=None, evaluator=None,
                   level: Optional[str] = None, **options) -> Comparison:
    """Resolve each model's run (``resolve_run``) and compare them (``compare_runs``)."""
    if model_a == model_b:
        raise FhbenchError(f"compare two different models, got {model_a} twice")
    run_a = resolve_run(store, protocol, model_a, scale, evaluator)
    run_b = resolve_run(store, protocol, model_b, scale, evaluator)
    return compare_runs(store, run_a, run_b, level=level, **options)


def _has(arr_a, arr_b, *names) -> bool:
    return all(n in arr_a and n in arr_b for n in names)


def format_comparison(c: Comparison, fmt: str = "text") -> str:
    """``text`` or ``md`` (a table) or ``json``."""
    if fmt == "json":
        return strict_json.dumps({**asdict(c), "scale": c.scale}, indent=1)  # an inf PSNR (hr) must not break the JSON
    head = f"{comparison_setting(c)}: A = {c.model_a}, B = {c.model_b}; differences are B - A"
    rows = [["metric", "A", "B", "B - A", f"{round(100 * _confidence(c))}% CI", "resampled"]]
    for iv in c.intervals:
        spec = metric_spec(iv.metric)
        f, d, unit = spec.factor, spec.digits, spec.unit
        rows.append([iv.metric, f"{iv.value_a * f:.{d}f}{unit}", f"{iv.value_b * f:.{d}f}{unit}",
                     f"{iv.difference * f:+.{d}f}", f"[{iv.low * f:+.{d}f}, {iv.high * f:+.{d}f}]",
                     f"{iv.unit}, {iv.n_resamples} x, seed {iv.seed}"])
    lines = [head, ""] + table_lines(rows, fmt, "lrrrrl")
    if c.mcnemar:
        m = c.mcnemar
        lines += ["", f"McNemar exact test on {m.n_pairs} pair decisions: only A right {m.only_a_correct}, "
                      f"only B right {m.only_b_correct}, p = {m.p_value:.3g}"]
    lines += [f"note: {n}" for n in c.notes]
    return "\n".join(lines) + "\n"


def comparison_setting(c: Comparison) -> str:
    """'lfw-10fold, x8, evaluator sface' (with the LR size, or the folds, compared)."""
    where = level_label(c.level) if c.level else describe_level(c.row_level)
    if c.folds is not None:
        where += f", pairs of folds {', '.join(map(str, c.folds))}"
    return f"{c.protocol}, {where}, evaluator {c.evaluator}"


def table_lines(rows: List[List[str]], fmt: str, align: str) -> List[str]:
    """``rows`` (the first the header) as aligned text or a markdown table; ``align`` has an
    ``l`` or ``r`` per column (markdown's alignment row)."""
    if fmt == "md":
        rule = "|" + "|".join("---:" if a == "r" else "---" for a in align) + "|"
        return ["| " + " | ".join(rows[0]) + " |", rule] + ["| " + " | ".join(r) + " |" for r in rows[1:]]
    if fmt == "text":
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        return ["  ".join(cell.ljust(w) for cell, w in zip(r, widths)).rstrip() for r in rows]
    raise FhbenchError(f"unknown comparison format {fmt!r} (known: text, md, json)")


def _confidence(c: Comparison) -> float:
    return c.intervals[0].confidence if c.intervals else CONFIDENCE

