"""BLUFR (Liao, Lei, Yi, Li, 2014): verification rate and open-set identification per trial.

Conventions (the README's "Definitions", pinned by the design notes' "Metric definitions"):

- Scores are cosine similarities of L2-normalised features (re-normalised here), computed in
  float32 like the embeddings. A float64 computation can only disagree where a genuine score
  lies within float32 rounding (~1e-7) of a threshold.
- False-alarm count for a target FAR over n impostor scores: k = round(FAR * n) with MATLAB
  rounding (halves away from zero), FAR * n evaluated in float64 as in the BLUFR code.
- Threshold (``blufr_threshold``) = the k-th highest impostor score, and a score is accepted
  when score >= threshold; no interpolation. Edges: k = 0 gives the next representable number
  above the highest impostor score (np.nextafter upward, in the scores' own precision), so that
  FAR = 0 is met exactly: only scores strictly above every impostor pass. (The BLUFR MATLAB code
  uses the midpoint to the lowest higher genuine score, or +sqrt(eps): the same decisions.)
  k = n gives the lowest impostor score. (The BLUFR code uses min(impostor, genuine) - sqrt(eps)
  there, accepting every genuine score; this differs from ours only at FAR = 1.)
- Verification: all pairs of the trial's test set, lower triangle, no self pairs; genuine =
  same label. VR = fraction of genuine scores >= threshold.
- Open-set identification: a probe is genuine when its identity is in the gallery, an impostor
  otherwise. Impostor scores are the impostor probes' maximum gallery scores. A genuine probe
  is detected and identified at rank r when its best mate (same-label gallery) score is >=
  threshold and its rank is <= r, the rank being 1 + the number of wrong-label gallery items
  scoring >= the best mate: ties count against (the BLUFR code orders tied items by gallery
  position instead; the two agree unless a non-mate scores exactly the best mate score).
  DIR = detected-and-identified genuine probes / genuine probes.
- Over trials: mean - std with ddof=1 (what the BLUFR authors ask to report), mean and std.
- Features, labels, indices and scores may be NumPy arrays or torch tensors on any device
  (copied to the CPU once, ``verification.as_array``; the results are identical). ``device``
  (a torch device such as "cuda") moves the score blocks' matrix products there
  (``benchmark.score_blocks``); selection and counting stay the NumPy code below.

Speed: the test-set score matrix is never held whole. Rows are sorted by label so that in the
lower triangle each row's genuine pairs are one contiguous run just left of the diagonal; blocks
of rows are scored in float32, the few genuine scores are kept, and of the impostor scores only
the top k_max survive: a floor guessed from a fixed-seed sample of pairs, then the running k-th
highest, drops most of each block before any selection (a floor guessed too high is detected and
the pass replayed without it, so the result never depends on the sample).

``blufr_trials`` scores each block of the whole (label-sorted) score matrix over the union of
the trials' test sets once and serves every trial from it (``_verification_all_trials``): a
block's genuine entries and its impostor entries above the lowest of the trials' current
floors are kept once with a bit mask of the trials holding both images, and each trial takes
its own from them. The per-trial path (``blufr_verification``) stays, and is the tests' oracle.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, List, Sequence, Tuple

import numpy as np

from benchmark.errors import MetricError
from benchmark.score_blocks import NUMPY, ScoreDevice, score_device
from benchmark.metrics.identification import first_correct_match, label_codes, normalized_rows
from benchmark.contracts.metric import MetricSpec, register_metric
from benchmark.metrics.verification import as_array

BLOCK_ROWS = 1024  # rows of the test-set score matrix scored at once (1024 x 10,000 float32 = 40 MB)
FLUSH_SCORES = 1 << 20  # candidate impostor scores gathered before a selection pass
SAMPLE_PAIRS = 8192  # random test pairs scored up front to guess a floor under the k-th highest
SAMPLE_SIGMAS = 6.0  # how far (binomial standard deviations) below the estimate the floor sits
# Curve grids for plots, 4 points per decade. Every point is exact; a VR point's cost grows with
# its FAR (the top FAR * n impostor scores are selected), so the default VR grid stops at 0.1 and
# adds the cheap end point FAR = 1 (the lowest impostor score). benchmarks/bench_identification.py
# times the full 1e-4..1 grid.
VR_CURVE_FARS = np.r_[10.0 ** np.linspace(-4, -1, 13), 1.0]
DIR_CURVE_FARS = 10.0 ** np.linspace(-3, 0, 13)


def false_alarm_counts(fars: Any, n_impostor: int) -> np.ndarray:
    """k = round(FAR * n_impostor) per FAR, MATLAB rounding (halves away from zero)."""
    far_array = np.atleast_1d(np.asarray(as_array(fars), dtype=np.float64))
    if far_array.ndim != 1 or far_array.size == 0:
        raise MetricError(f"BLUFR: fars must be a non-empty 1-D list, got shape {far_array.shape}")
    if not np.all((far_array >= 0) & (far_array <= 1)):  # also refuses NaN
        raise MetricError(f"BLUFR: every FAR must lie in [0, 1], got {far_array.tolist()}")
    product = far_array * float(n_impostor)
    floor = np.floor(product)
    # product - floor is exact in float64, so exact halves round up (away from zero: all >= 0).
    return (floor + (product - floor >= 0.5)).astype(np.int64)


def _ranks_needed(counts: np.ndarray, n_impostor: int) -> np.ndarray:
    """The k-th-highest ranks that the thresholds for ``counts`` read: 1 and every 0 < k < n."""
    return np.union1d([1], counts[(counts > 0) & (counts < n_impostor)])


def _kth_highest(scores: np.ndarray, ranks: np.ndarray) -> dict:
    """{k: k-th highest of ``scores``} for each k in ``ranks`` (one multi-kth partition).
    Reorders ``scores`` in place."""
    positions = len(scores) - ranks
    scores.partition(positions)
    return dict(zip(ranks.tolist(), scores[positions]))


def _thresholds(counts: np.ndarray, n_impostor: int, kth_highest: dict, lowest) -> np.ndarray:
    """Threshold per false-alarm count k, from {k: k-th highest impostor score} (holding k = 1
    and every 0 < k < n) and the lowest impostor score (read only when some k == n)."""
    thresholds = np.empty(len(counts), dtype=np.float64)
    for i, k in enumerate(counts.tolist()):
        if k == 0:
            highest = kth_highest[1]
            thresholds[i] = np.nextafter(highest, highest.dtype.type(np.inf))
        elif k == n_impostor:
            thresholds[i] = lowest
        else:
            thresholds[i] = kth_highest[k]
    return thresholds


def _scores_1d(scores: Any, name: str, metric: str) -> np.ndarray:
    array = np.asarray(as_array(scores))
    if array.ndim != 1 or array.size == 0:
        raise MetricError(f"{metric}: {name} must be a non-empty 1-D array, got shape {array.shape}")
    if not np.issubdtype(array.dtype, np.floating):
        array = array.astype(np.float64)
    if not np.isfinite(array).all():
        raise MetricError(f"{metric}: {name} contains NaN or inf (first at index "
                          f"{np.flatnonzero(~np.isfinite(array))[0]})")
    return array


def blufr_threshold(impostor_scores: Any, far: float) -> float:
    """The BLUFR decision threshold for ``far``: the k-th highest impostor score,
    k = round(far * n) (MATLAB rounding); k = 0 -> next number above the highest, k = n -> the
    lowest (module docstring). Accept a score when score >= threshold. O(n): np.partition."""
    scores = _scores_1d(impostor_scores, "impostor_scores", "blufr_threshold")
    n = scores.size
    k = int(false_alarm_counts(far, n)[0])
    if k == 0:
        return float(np.nextafter(scores.max(), scores.dtype.type(np.inf)))
    if k == n:
        return float(scores.min())
    return float(np.partition(scores, n - k)[n - k])


def _rates_at(sorted_scores: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """Fraction of ``sorted_scores`` (ascending) that are >= each threshold."""
    below = np.searchsorted(sorted_scores, thresholds, side="left")
    return (len(sorted_scores) - below) / len(sorted_scores)


def blufr_tar_at_far(genuine_scores: Any, impostor_scores: Any, fars: Any) -> np.ndarray:
    """TAR (VR) per FAR from given genuine and impostor scores, by the BLUFR threshold rule.

    Unlike ``verification.tar_at_far`` (best exact ROC point with FAR <= target), the threshold
    is the k-th highest impostor score with k = round(FAR * n), as in ``blufr_threshold``.
    Both score sets are compared in their common precision (float32 if both are float32).
    """
    metric = "blufr_tar_at_far"
    genuine = _scores_1d(genuine_scores, "genuine_scores", metric)
    impostor = _scores_1d(impostor_scores, "impostor_scores", metric)
    common = np.result_type(genuine.dtype, impostor.dtype)
    genuine, impostor = np.sort(genuine.astype(common)), impostor.astype(common)
    n = impostor.size
    counts = false_alarm_counts(fars, n)
    kth_highest = _kth_highest(impostor.copy(), _ranks_needed(counts, n))
    return _rates_at(genuine, _thresholds(counts, n, kth_highest, impostor.min()))


class _HighestScores:
    """The k highest values of a stream of float32 scores, in O(k + FLUSH_SCORES) memory.

    The caller drops every value <= ``bound``. Once k values are kept, ``bound`` is the k-th
    highest so far, and a value <= it cannot change any of the k highest values, ties
    included. Before that, ``bound`` is ``floor``, a guess: if fewer than k values exceed it,
    ``complete`` is False at the end and the stream must be replayed with floor = -inf.
    """

    def __init__(self, k: int, floor: float = -np.inf):
        self.k = k
        self.kept = np.empty(0, dtype=np.float32)
        self.pending: List[np.ndarray] = []
        self.n_pending = 0
        self.bound = floor

    @property
    def complete(self) -> bool:
        return self.kept.size + self.n_pending >= self.k

    def add(self, scores: np.ndarray) -> None:
        self.pending.append(scores)
        self.n_pending += scores.size
        if self.n_pending >= max(self.k, FLUSH_SCORES):
            self._select()

    def _select(self) -> None:
        merged = np.concatenate([self.kept, *self.pending])
        self.pending, self.n_pending = [], 0
        if merged.size >= self.k:
            cut = merged.size - self.k
            merged.partition(cut)  # merged[cut] is now the k-th highest, the k-1 above it follow
            merged = merged[cut:]
            self.bound = merged[0]
        self.kept = merged

    def kth_highest(self, ranks: np.ndarray) -> dict:
        """{k: k-th highest score seen} for ranks 1 <= k <= self.k."""
        self._select()
        return _kth_highest(self.kept, ranks)


def _checked_index(index: Any, n_rows: int, name: str, metric: str) -> np.ndarray:
    array = np.asarray(as_array(index))
    if array.ndim != 1 or array.size == 0 or not np.issubdtype(array.dtype, np.integer):
        raise MetricError(f"{metric}: {name} must be a non-empty 1-D integer array (0-based), "
                          f"got shape {array.shape} dtype {array.dtype}")
    outside = array[(array < 0) | (array >= n_rows)]
    if outside.size:
        raise MetricError(f"{metric}: {name} holds {outside[0]}, outside 0..{n_rows - 1} "
                          f"(0-based rows of features)")
    if np.unique(array).size != array.size:
        raise MetricError(f"{metric}: {name} names some rows more than once")
    return array.astype(np.int64)


def _checked_inputs(features: Any, labels: Any, metric: str) -> Tuple[np.ndarray, np.ndarray]:
    array = np.asarray(as_array(features))
    if array.ndim != 2:
        raise MetricError(f"{metric}: features must be a 2-D (N, D) array, got shape {array.shape}")
    return array, label_codes(labels, len(array), "labels", metric)


def _sampled_floor(unit: np.ndarray, codes: np.ndarray, k: int, n_impostor: int) -> float:
    """A score that the k-th highest impostor score almost surely exceeds, or -inf.

    From SAMPLE_PAIRS random pairs (fixed seed; genuine and self pairs dropped): the sample
    score that SAMPLE_SIGMAS binomial standard deviations more impostors than expected exceed.
    Starting the top-k selection there skips most of the early blocks; a wrong guess only
    costs a replay (``_HighestScores.complete``), never a wrong result.
    """
    rng = np.random.default_rng(0)
    left, right = rng.integers(0, len(unit), (2, SAMPLE_PAIRS))
    impostor = codes[left] != codes[right]
    sample = np.einsum("ij,ij->i", unit[left[impostor]], unit[right[impostor]])
    share = k / n_impostor
    expected = sample.size * share
    rank = int(np.ceil(expected + SAMPLE_SIGMAS * np.sqrt(expected * (1 - share)))) + 1
    if rank > sample.size:
        return -np.inf
    return float(np.partition(sample, sample.size - rank)[sample.size - rank])


def _verification_scores(unit: np.ndarray, codes: np.ndarray, ranks: np.ndarray, n_impostor: int,
                         need_lowest: bool, device: ScoreDevice = NUMPY):
    """(sorted genuine scores, {k: k-th highest impostor score} for k in ``ranks``, lowest
    impostor score or inf if not ``need_lowest``) over the lower triangle of unit @ unit.T
    without the diagonal."""
    order = np.argsort(codes, kind="stable")
    unit, codes = unit[order], codes[order]
    k_keep = int(ranks.max())
    floor = _sampled_floor(unit, codes, k_keep, n_impostor)
    rows_there = device.put(unit)
    result = _score_pass(unit, codes, ranks, need_lowest, floor, device, rows_there)
    if result is None:  # the floor was too high: fewer than k_keep impostor scores exceed it
        result = _score_pass(unit, codes, ranks, need_lowest, -np.inf, device, rows_there)
    return result


def _score_pass(unit: np.ndarray, codes: np.ndarray, ranks: np.ndarray, need_lowest: bool,
                floor: float, device: ScoreDevice, rows_there):
    """One blockwise pass for ``_verification_scores`` over label-sorted rows (``rows_there``:
    ``unit`` on ``device``); None if fewer than max(ranks) impostor scores exceed ``floor``."""
    # In the lower triangle, row i's genuine columns are group_start[i] .. i - 1 and its
    # impostor columns 0 .. group_start[i] - 1.
    group_start = np.searchsorted(codes, codes, side="left")
    highest = _HighestScores(int(ranks.max()), floor)
    genuine_parts = []
    lowest = np.inf
    buffer = np.empty((min(BLOCK_ROWS, len(unit)), len(unit)), dtype=np.float32)
    for start in range(0, len(unit), BLOCK_ROWS):
        stop = min(len(unit), start + BLOCK_ROWS)
        scores = device.scores(rows_there[start:stop], rows_there[:stop], out=buffer[:stop - start, :stop])
        genuine_parts.append(np.concatenate(
            [scores[row, group_start[start + row]:start + row] for row in range(stop - start)]))
        for row in range(stop - start):
            first = group_start[start + row]
            if need_lowest and first > 0:
                lowest = min(lowest, scores[row, :first].min())
            scores[row, first:] = -np.inf  # genuine, self and upper-triangle columns
        highest.add(scores[scores > highest.bound])
    if not highest.complete:
        return None
    return np.sort(np.concatenate(genuine_parts)), highest.kth_highest(ranks), lowest


def blufr_verification(features: Any, labels: Any, test_index: Any, fars: Any,
                       device: str | None = None) -> np.ndarray:
    """BLUFR verification rate per FAR for one trial's test set (0-based ``test_index``).

    All test pairs (lower triangle, no self pairs) scored by cosine similarity; genuine pairs
    share a label. VR = fraction of genuine scores >= the threshold for each FAR (module
    docstring). Memory stays O(block x n + genuine + k_max), not O(n^2).
    """
    metric = "blufr_verification"
    array, codes = _checked_inputs(features, labels, metric)
    test = _checked_index(test_index, len(array), "test_index", metric)
    unit = normalized_rows(array[test], "features[test_index]", metric)
    test_codes = codes[test]
    n_impostor, counts = _verification_counts(test_codes, fars, metric)
    genuine, kth_highest, lowest = _verification_scores(
        unit, test_codes, _ranks_needed(counts, n_impostor), n_impostor,
        need_lowest=bool(np.any(counts == n_impostor)), device=score_device(device))
    return _rates_at(genuine, _thresholds(counts, n_impostor, kth_highest, lowest))


def _verification_counts(test_codes: np.ndarray, fars: Any, metric: str):
    """(n_impostor, false-alarm counts) of one trial's test set; MetricError when it lacks
    genuine or impostor pairs."""
    n = len(test_codes)
    label_counts = np.bincount(test_codes)
    n_genuine = int(np.sum(label_counts * (label_counts - 1) // 2))
    n_impostor = n * (n - 1) // 2 - n_genuine
    if n_genuine == 0 or n_impostor == 0:
        raise MetricError(f"{metric}: the {n} test images give {n_genuine} genuine and {n_impostor} "
                          "impostor pairs; both kinds are needed")
    return n_impostor, false_alarm_counts(fars, n_impostor)


TRIALS_PER_PASS = 64  # trials served by one shared pass (one bit each in a uint64 mask)


def _verification_all_trials(array: np.ndarray, codes: np.ndarray, test_indices: Sequence,
                             fars: Any, metric: str = "blufr_trials", device: ScoreDevice = NUMPY) -> np.ndarray:
    """``blufr_verification`` of every trial's test set, (n_trials, n_fars), with each block of
    the score matrix over the union of the test sets computed once for all trials. Same
    values as the per-trial path (the same float32 scores: rows are normalised one by one, and
    a pair's score is the same dot product)."""
    tests = [_checked_index(t, len(array), f"test_index of trial {i + 1}", metric)
             for i, t in enumerate(test_indices)]
    union = np.unique(np.concatenate(tests))
    order = np.argsort(codes[union], kind="stable")
    rows = union[order]
    unit = normalized_rows(array[rows], "features[test_index]", metric)
    sorted_codes = codes[rows]
    position = np.full(len(array), -1, dtype=np.int64)
    position[rows] = np.arange(len(rows))
    per_trial = []  # (positions in label order, n_impostor, counts, ranks, need_lowest)
    for test in tests:
        n_impostor, counts = _verification_counts(codes[test], fars, metric)
        where = np.sort(position[test])
        per_trial.append((where, n_impostor, counts, _ranks_needed(counts, n_impostor),
                          bool(np.any(counts == n_impostor))))
    out = np.empty((len(tests), len(per_trial[0][2])))
    rows_there = device.put(unit)
    for first in range(0, len(tests), TRIALS_PER_PASS):
        group = per_trial[first:first + TRIALS_PER_PASS]
        members = np.zeros(len(rows), dtype=np.uint64)
        for bit, (where, *_rest) in enumerate(group):
            members[where] |= np.uint64(1) << np.uint64(bit)
        floors = [_sampled_floor(unit[where], sorted_codes[where], int(ranks.max()), n_impostor)
                  for where, n_impostor, _, ranks, _ in group]
        results = _shared_pass(rows_there, device, sorted_codes, members, group, floors)
        replay = [bit for bit, r in enumerate(results) if r is None]  # a floor guessed too high
        if replay:
            again = _shared_pass(rows_there, device, sorted_codes, members, group, [-np.inf] * len(group),
                                 only=replay)
            for bit in replay:
                results[bit] = again[bit]
        for bit, ((_, n_impostor, counts, _, _), (genuine, kth_highest, lowest)) in enumerate(zip(group, results)):
            out[first + bit] = _rates_at(genuine, _thresholds(counts, n_impostor, kth_highest, lowest))
    return out


def _shared_pass(unit, device: ScoreDevice, codes: np.ndarray, members: np.ndarray, trials: list,
                 floors: list, only: Sequence[int] = None) -> list:
    """One blockwise pass over the lower triangle of unit @ unit.T (rows sorted by label; ``unit``
    is on ``device``) for several trials at once: per trial (bit ``b`` of ``members``: the rows
    in its test set), (sorted genuine scores, {k: k-th highest impostor score}, lowest impostor score or inf),
    or None where fewer than max(ranks) impostor scores exceed its floor. ``only``: the trials
    to serve (default all); the others get None."""
    serve = list(range(len(trials))) if only is None else list(only)
    group_start = np.searchsorted(codes, codes, side="left")
    highest = {b: _HighestScores(int(trials[b][3].max()), floors[b]) for b in serve}
    genuine_parts = {b: [] for b in serve}
    low = [b for b in serve if trials[b][4]]
    lowest = {b: np.inf for b in serve}
    bits = {b: np.uint64(1) << np.uint64(b) for b in serve}
    n = len(unit)
    columns = np.arange(n)
    buffer = np.empty((min(BLOCK_ROWS, n), n), dtype=np.float32)

    def entries(block, flat, start, width):
        """(values, member bits of both images) of the block's entries at flat positions."""
        r, c = np.divmod(flat, width)
        return block[r, c], members[r + start] & members[c]

    for start in range(0, n, BLOCK_ROWS):
        stop = min(n, start + BLOCK_ROWS)
        scores = device.scores(unit[start:stop], unit[:stop], out=buffer[:stop - start, :stop])
        # genuine entries: row i, columns group_start[i] .. i - 1 (same label, below the diagonal)
        row_ids = np.arange(start, stop)
        lengths = row_ids - group_start[start:stop]
        g_rows = np.repeat(row_ids, lengths)
        g_cols = group_start[g_rows] + np.arange(len(g_rows)) - np.repeat(np.cumsum(lengths) - lengths, lengths)
        g_vals, g_bits = scores[g_rows - start, g_cols], members[g_rows] & members[g_cols]
        for b in serve:
            genuine_parts[b].append(g_vals[(g_bits & bits[b]) != 0])
        # from here on only impostor entries: genuine, self and upper-triangle columns drop out
        scores[columns[None, :stop] >= group_start[start:stop, None]] = -np.inf
        if low:
            ceiling = max(lowest[b] for b in low)
            flat = np.flatnonzero((scores < ceiling) & (scores > -np.inf))
            vals, both = entries(scores, flat, start, stop)
            for b in low:
                mine = vals[(both & bits[b]) != 0]
                if mine.size:
                    lowest[b] = min(lowest[b], mine.min())
        bound = min(h.bound for h in highest.values())
        vals, both = entries(scores, np.flatnonzero(scores > bound), start, stop)
        for b, h in highest.items():
            h.add(vals[((both & bits[b]) != 0) & (vals > h.bound)])
    results = [None] * len(trials)
    for b in serve:
        if highest[b].complete:
            results[b] = (np.sort(np.concatenate(genuine_parts[b])), highest[b].kth_highest(trials[b][3]),
                          lowest[b])
    return results


def blufr_open_set(features: Any, labels: Any, gallery_index: Any, probe_index: Any, fars: Any,
                   rank: int = 1, device: str | None = None) -> np.ndarray:
    """BLUFR open-set detection and identification rate DIR(rank, FAR) per FAR for one trial.

    Genuine probes have their identity in the gallery; the threshold comes from the impostor
    probes' maximum gallery scores; a genuine probe counts when its best mate score is >=
    threshold and its pessimistic rank is <= ``rank`` (module docstring).
    """
    metric = "blufr_open_set"
    array, codes = _checked_inputs(features, labels, metric)
    gallery = _checked_index(gallery_index, len(array), "gallery_index", metric)
    probes = _checked_index(probe_index, len(array), "probe_index", metric)
    if int(rank) != rank or rank < 1:
        raise MetricError(f"{metric}: rank must be a positive integer, got {rank}")
    gallery_unit = normalized_rows(array[gallery], "features[gallery_index]", metric)
    gallery_codes, probe_codes = codes[gallery], codes[probes]
    genuine = np.isin(probe_codes, gallery_codes)
    if not genuine.any() or genuine.all():
        raise MetricError(
            f"{metric}: of {len(probes)} probes, {int(genuine.sum())} have their identity in the "
            f"gallery and {int((~genuine).sum())} do not; both kinds are needed"
        )
    impostor_unit = normalized_rows(array[probes[~genuine]], "features[probe_index]", metric)
    scorer = score_device(device)
    gallery_there, impostors_there = scorer.put(gallery_unit), scorer.put(impostor_unit)
    impostor_max = np.concatenate([
        scorer.scores(impostors_there[start:start + BLOCK_ROWS], gallery_there).max(axis=1)
        for start in range(0, len(impostor_unit), BLOCK_ROWS)])
    order = np.argsort(gallery_codes, kind="stable")
    best_mate, ranks = first_correct_match(
        gallery_unit[order], gallery_codes[order],
        normalized_rows(array[probes[genuine]], "features[probe_index]", metric), probe_codes[genuine],
        device=scorer)
    counts = false_alarm_counts(fars, len(impostor_max))
    kth_highest = _kth_highest(impostor_max, _ranks_needed(counts, len(impostor_max)))
    thresholds = _thresholds(counts, len(impostor_max), kth_highest, impostor_max.min())
    identified = ranks <= rank
    return np.array([np.mean(identified & (best_mate >= t)) for t in thresholds])


@dataclass(frozen=True)
class TrialSummary:
    """Per-FAR statistics over trials; std uses ddof=1 as the BLUFR authors ask."""

    mean_minus_std: np.ndarray
    mean: np.ndarray
    std: np.ndarray

    @classmethod
    def of(cls, per_trial: np.ndarray) -> "TrialSummary":
        mean, std = per_trial.mean(axis=0), per_trial.std(axis=0, ddof=1)
        return cls(mean - std, mean, std)


@dataclass(frozen=True)
class BlufrResult:
    """BLUFR over all trials. Rows of ``vr``, ``dir``, ``vr_curve``, ``dir_curve`` are trials,
    columns the matching FAR list; the curves are exact points for plotting."""

    vr_fars: np.ndarray
    vr: np.ndarray
    vr_summary: TrialSummary
    dir_fars: np.ndarray
    dir: np.ndarray
    dir_summary: TrialSummary
    vr_curve_fars: np.ndarray
    vr_curve: np.ndarray
    dir_curve_fars: np.ndarray
    dir_curve: np.ndarray


def blufr_trials(features: Any, labels: Any, config, vr_fars: Sequence[float] = (0.001,),
                 dir_fars: Sequence[float] = (0.01,), vr_curve_fars: Sequence[float] = VR_CURVE_FARS,
                 dir_curve_fars: Sequence[float] = DIR_CURVE_FARS, device: str | None = None) -> BlufrResult:
    """BLUFR over every trial of ``config`` (a ``benchmark.faces.blufr.BlufrConfig``).

    ``features`` row i and ``labels[i]`` belong to ``config.image_list[i]`` (normally
    ``labels = config.labels``). Per trial: VR at ``vr_fars`` and along ``vr_curve_fars`` over
    the test set, DIR at rank 1 at ``dir_fars`` and along ``dir_curve_fars`` for the gallery and
    probe sets; summaries over trials as mean - std (ddof=1), mean, std. ``device``: where the
    score blocks' products run (module docstring).
    """
    array = np.asarray(as_array(features))
    labels = as_array(labels)
    if array.ndim != 2 or len(array) != len(config.image_list):
        raise MetricError(f"blufr_trials: features has shape {array.shape}; the config lists "
                          f"{len(config.image_list)} images, one feature row each")
    n_trials = len(config.test_index)
    if n_trials < 2:
        raise MetricError(f"blufr_trials: need at least 2 trials for a std (ddof=1), got {n_trials}")
    vr_points = np.concatenate([np.atleast_1d(vr_fars), np.atleast_1d(vr_curve_fars)])
    dir_points = np.concatenate([np.atleast_1d(dir_fars), np.atleast_1d(dir_curve_fars)])
    n_vr, n_dir = np.atleast_1d(vr_fars).size, np.atleast_1d(dir_fars).size
    codes = label_codes(labels, len(array), "labels", "blufr_trials")
    vr_all = _verification_all_trials(array, codes, config.test_index, vr_points, device=score_device(device))
    dir_all = np.array([blufr_open_set(array, labels, config.gallery_index[trial], config.probe_index[trial],
                                       dir_points, device=device) for trial in range(n_trials)])
    return BlufrResult(
        vr_fars=vr_points[:n_vr], vr=vr_all[:, :n_vr], vr_summary=TrialSummary.of(vr_all[:, :n_vr]),
        dir_fars=dir_points[:n_dir], dir=dir_all[:, :n_dir],
        dir_summary=TrialSummary.of(dir_all[:, :n_dir]),
        vr_curve_fars=vr_points[n_vr:], vr_curve=vr_all[:, n_vr:],
        dir_curve_fars=dir_points[n_dir:], dir_curve=dir_all[:, n_dir:],
    )


# BLUFR: mean and std over trials (ddof=1); "lower" is mean - std, what BLUFR asks to report.
register_metric(MetricSpec("vr", "VR@0.1% (%)", factor=100, digits=2, unit="%", std="vr_std",
                           summary="BLUFR verification rate at FAR 0.1 %"))
register_metric(MetricSpec("vr_lower", "VR@0.1% μ-σ (%)", factor=100, digits=2, unit="%",
                           summary="BLUFR VR mean - std"))
register_metric(MetricSpec("dir", "DIR@1% (%)", factor=100, digits=2, unit="%", std="dir_std",
                           summary="BLUFR open-set detection and identification rate at FAR 1 %, rank 1"))
register_metric(MetricSpec("dir_lower", "DIR@1% μ-σ (%)", factor=100, digits=2, unit="%",
                           summary="BLUFR DIR mean - std"))
