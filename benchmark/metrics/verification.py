"""Pair verification metrics: exact ROC, AUC, TAR@FAR, EER, and LFW-style 10-fold accuracy.

Conventions (the README's "Definitions", pinned by the design notes' "Metric definitions"):

- ``scores`` are similarities, higher = more alike: the cosine similarity of L2-normalised
  embeddings (a distance d enters as -d). ``is_same`` is True for a genuine (matched) pair,
  False for an impostor (mismatched) pair; booleans or integers 0/1.
- At threshold t a pair is predicted "same" when ``score >= t`` (ROC, TAR@FAR, EER).
  ``ten_fold_accuracy`` uses midpoints between scores as thresholds and "same" iff
  ``score > threshold`` (see there).
- FAR(t) = impostor pairs predicted same / impostor pairs; TAR(t) = genuine pairs
  predicted same / genuine pairs; FRR(t) = 1 - TAR(t).
- Everything is computed in float64 after one sort: O(n log n).

Every function takes NumPy arrays or torch tensors (on any device: they are copied to the CPU
once, ``as_array``, and scored by the same NumPy code, so the results are identical). Unlike
kNN/CMC/BLUFR (``benchmark.score_blocks``), nothing here moves to a GPU on purpose: the work is
one sort of a few thousand pair scores, which the float64 exact ties need and a copy of 6,000
numbers makes free.

Bad input (length mismatch, NaN or inf scores, no genuine or no impostor pairs, folds that
are not 10 non-empty groups) raises MetricError naming what is wrong.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple, Tuple

import numpy as np

from benchmark.errors import MetricError
from benchmark.contracts.metric import MetricSpec, register_metric

N_FOLDS = 10


def as_array(values: Any) -> Any:
    """A torch tensor (any device, any dtype; bfloat16 widened to float32) as a NumPy array on
    the CPU; anything else unchanged. Lets the scoring functions take tensors without importing
    torch."""
    if hasattr(values, "detach") and hasattr(values, "cpu") and hasattr(values, "numpy"):
        values = values.detach().cpu()
        if str(values.dtype) == "torch.bfloat16":
            values = values.float()
        return values.numpy()
    return values


def _checked(scores: Any, is_same: Any, metric: str) -> Tuple[np.ndarray, np.ndarray]:
    """Return scores as float64 and is_same as bool, both 1-D, after validating them."""
    score_array = np.asarray(as_array(scores), dtype=np.float64)
    label_array = np.asarray(as_array(is_same))
    if score_array.ndim != 1 or label_array.ndim != 1:
        raise MetricError(
            f"{metric}: scores and is_same must be 1-D, got shapes {score_array.shape} "
            f"and {label_array.shape}"
        )
    if len(score_array) != len(label_array):
        raise MetricError(
            f"{metric}: {len(score_array)} scores but {len(label_array)} is_same labels"
        )
    bad = np.flatnonzero(~np.isfinite(score_array))
    if bad.size:
        raise MetricError(
            f"{metric}: {bad.size} scores are NaN or inf (first at index {bad[0]}: "
            f"{score_array[bad[0]]})"
        )
    if label_array.dtype != bool:
        if not np.issubdtype(label_array.dtype, np.integer) or not np.isin(label_array, (0, 1)).all():
            raise MetricError(
                f"{metric}: is_same must be booleans or 0/1 integers, got dtype {label_array.dtype}"
            )
        label_array = label_array.astype(bool)
    n_genuine = int(label_array.sum())
    if n_genuine == 0 or n_genuine == len(label_array):
        raise MetricError(
            f"{metric}: need both genuine and impostor pairs, got {n_genuine} genuine and "
            f"{len(label_array) - n_genuine} impostor"
        )
    return score_array, label_array


def _roc_counts(scores: np.ndarray, is_same: np.ndarray):
    """Cumulative (true accepts, false accepts, thresholds) at each distinct score, descending.

    The first entry is the start point (0, 0) at threshold +inf, where nothing is accepted.
    """
    order = np.argsort(-scores, kind="stable")
    sorted_scores = scores[order]
    sorted_same = is_same[order]
    # Last position of each run of equal scores: accepting "score >= t" takes a whole run.
    run_ends = np.flatnonzero(np.r_[sorted_scores[1:] != sorted_scores[:-1], True])
    true_accepts = np.r_[0, np.cumsum(sorted_same)[run_ends]]
    false_accepts = np.r_[0, np.cumsum(~sorted_same)[run_ends]]
    thresholds = np.r_[np.inf, sorted_scores[run_ends]]
    return true_accepts, false_accepts, thresholds


def roc_curve_exact(scores: Any, is_same: Any) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The exact ROC: (far, tar, thresholds) at every distinct score, thresholds descending.

    Point k predicts "same" iff ``score >= thresholds[k]``. The first point is (0, 0) at
    threshold +inf and the last is (1, 1) at the lowest score; no point is dropped (as
    ``sklearn.metrics.roc_curve(..., drop_intermediate=False)``).
    """
    score_array, label_array = _checked(scores, is_same, "roc_curve_exact")
    true_accepts, false_accepts, thresholds = _roc_counts(score_array, label_array)
    return false_accepts / false_accepts[-1], true_accepts / true_accepts[-1], thresholds


def roc_auc(scores: Any, is_same: Any) -> float:
    """Exact area under the ROC: P(genuine score > impostor score) + 1/2 P(equal).

    Trapezoids over the exact ROC, summed in integer counts and divided once, so it
    equals ``sklearn.metrics.roc_auc_score`` (ties between a genuine and an impostor
    score count 1/2).
    """
    score_array, label_array = _checked(scores, is_same, "roc_auc")
    true_accepts, false_accepts, _ = _roc_counts(score_array, label_array)
    return _auc_of_counts(true_accepts, false_accepts)


def _auc_of_counts(true_accepts: np.ndarray, false_accepts: np.ndarray) -> float:
    # Twice the area in units of (1 impostor) x (1 genuine): integers, no rounding.
    twice_area = np.sum(np.diff(false_accepts) * (true_accepts[1:] + true_accepts[:-1]))
    return float(twice_area) / (2.0 * float(true_accepts[-1]) * float(false_accepts[-1]))


def tar_at_far(scores: Any, is_same: Any, far: float) -> float:
    """TAR at a target FAR: the largest TAR among exact ROC points with FAR <= ``far``.

    No interpolation between ROC points. The start point (0, 0) always qualifies, so a
    target below the smallest achievable non-zero FAR gives the TAR at FAR 0 (which may be 0).
    """
    if not 0.0 <= far <= 1.0:
        raise MetricError(f"tar_at_far: far must lie in [0, 1], got {far}")
    far_points, tar_points, _ = roc_curve_exact(scores, is_same)
    # FAR and TAR both grow along the curve, so the best point is the last admissible one.
    return float(tar_points[np.searchsorted(far_points, far, side="right") - 1])


class EqualErrorRate(NamedTuple):
    rate: float
    threshold: float


def eer(scores: Any, is_same: Any) -> EqualErrorRate:
    """Equal error rate: where FAR(t) and FRR(t) = 1 - TAR(t) cross, linearly interpolated.

    Walk the exact ROC points by descending threshold (starting at (0, 0), threshold +inf);
    FAR - FRR never decreases along them, from -1 to +1. At the first point k where
    FAR - FRR >= 0: if it is 0 there, the EER is FAR at k and the threshold is k's threshold;
    otherwise interpolate linearly between points k-1 and k at the fraction a where FAR - FRR
    reaches 0: EER = FAR[k-1] + a (FAR[k] - FAR[k-1]) (= the interpolated FRR too) and
    threshold = thr[k-1] + a (thr[k] - thr[k-1]). When k-1 is the start point, whose
    threshold is +inf, the threshold reported is the highest score.
    """
    score_array, label_array = _checked(scores, is_same, "eer")
    return _eer_of_counts(*_roc_counts(score_array, label_array))


def roc_auc_and_eer(scores: Any, is_same: Any) -> Tuple[float, EqualErrorRate]:
    """``(roc_auc(...), eer(...))`` from one sort of the scores (the same two values): for
    score sets large enough that sorting twice shows (all pairs of a few thousand faces)."""
    score_array, label_array = _checked(scores, is_same, "roc_auc_and_eer")
    counts = _roc_counts(score_array, label_array)
    return _auc_of_counts(*counts[:2]), _eer_of_counts(*counts)


def _eer_of_counts(true_accepts: np.ndarray, false_accepts: np.ndarray, thresholds: np.ndarray) -> EqualErrorRate:
    n_genuine, n_impostor = int(true_accepts[-1]), int(false_accepts[-1])
    # Sign of FAR - FRR decided in integers: FA/n_imp - (n_gen - TA)/n_gen.
    scaled_gap = false_accepts * n_genuine - (n_genuine - true_accepts) * n_impostor
    k = int(np.argmax(scaled_gap >= 0))
    far_points = false_accepts / n_impostor
    if scaled_gap[k] == 0:
        return EqualErrorRate(float(far_points[k]), float(thresholds[k]))
    gap_before, gap_at = float(scaled_gap[k - 1]), float(scaled_gap[k])
    fraction = -gap_before / (gap_at - gap_before)
    rate = far_points[k - 1] + fraction * (far_points[k] - far_points[k - 1])
    if k == 1:
        threshold = thresholds[1]
    else:
        threshold = thresholds[k - 1] + fraction * (thresholds[k] - thresholds[k - 1])
    return EqualErrorRate(float(rate), float(threshold))


@dataclass(frozen=True)
class TenFoldResult:
    """Per-fold test accuracies and thresholds (index = fold number), and their summary."""

    accuracies: np.ndarray
    thresholds: np.ndarray
    mean: float
    std: float  # ddof=0, as LFW results are conventionally reported


def _checked_folds(folds: Any, n_pairs: int) -> np.ndarray:
    fold_array = np.asarray(as_array(folds))
    if fold_array.shape != (n_pairs,):
        raise MetricError(
            f"ten_fold_accuracy: folds has shape {fold_array.shape}, expected ({n_pairs},) "
            f"(one fold number per pair)"
        )
    if not np.issubdtype(fold_array.dtype, np.integer):
        raise MetricError(f"ten_fold_accuracy: folds must be integers 0..9, got dtype {fold_array.dtype}")
    outside = fold_array[(fold_array < 0) | (fold_array >= N_FOLDS)]
    if outside.size:
        raise MetricError(f"ten_fold_accuracy: folds must lie in 0..9, found fold {outside[0]}")
    empty = sorted(set(range(N_FOLDS)) - set(np.unique(fold_array).tolist()))
    if empty:
        raise MetricError(f"ten_fold_accuracy: folds {empty} have no pairs; need 10 non-empty folds")
    return fold_array


def _best_threshold(sorted_scores: np.ndarray, sorted_same: np.ndarray) -> float:
    """Training threshold maximising accuracy with "same" iff score > threshold.

    Candidates: -inf (all "same"), the midpoints between consecutive distinct scores, +inf
    (all "different"). Ties in accuracy go to the smallest threshold. O(n) on sorted input.
    """
    run_ends = np.flatnonzero(np.r_[sorted_scores[1:] != sorted_scores[:-1], True])
    distinct = sorted_scores[run_ends]
    # Candidate j (0..m) calls the j lowest distinct scores "different", the rest "same".
    genuine_below = np.r_[0, np.cumsum(sorted_same)[run_ends]]
    impostor_below = np.r_[0, np.cumsum(~sorted_same)[run_ends]]
    correct = impostor_below + (genuine_below[-1] - genuine_below)
    best = int(np.argmax(correct))  # first maximum = smallest threshold
    if best == 0:
        return -np.inf
    if best == len(distinct):
        return np.inf
    return float((distinct[best - 1] + distinct[best]) / 2.0)


def ten_fold_accuracy(scores: Any, is_same: Any, folds: Any) -> TenFoldResult:
    """LFW-style 10-fold verification accuracy (the official pairs.txt folds).

    ``folds[i]`` in 0..9 is pair i's fold (pairs.txt's 10 contiguous blocks). For each test
    fold, the threshold is chosen on the other nine folds among the exact candidates: the
    midpoints between consecutive distinct sorted training scores, plus -inf (below the
    minimum: everything "same") and +inf (above the maximum: everything "different"). The
    one with the highest training accuracy wins; ties go to the smallest threshold. A pair
    is predicted "same" iff ``score > threshold``; midpoints never equal a training score.
    (For float32 scores widened to float64 the midpoints are exact.) The test fold's
    accuracy uses that threshold; mean and std (ddof=0) are over the 10 test folds.
    """
    score_array, label_array = _checked(scores, is_same, "ten_fold_accuracy")
    fold_array = _checked_folds(folds, len(score_array))
    order = np.argsort(score_array, kind="stable")
    sorted_scores, sorted_same, sorted_folds = score_array[order], label_array[order], fold_array[order]
    accuracies = np.empty(N_FOLDS)
    thresholds = np.empty(N_FOLDS)
    for fold in range(N_FOLDS):
        train = sorted_folds != fold
        threshold = _best_threshold(sorted_scores[train], sorted_same[train])
        test = ~train
        accuracies[fold] = np.mean((sorted_scores[test] > threshold) == sorted_same[test])
        thresholds[fold] = threshold
    return TenFoldResult(accuracies, thresholds, float(accuracies.mean()), float(accuracies.std()))


register_metric(MetricSpec("accuracy", "Acc (%)", factor=100, digits=2, unit="%", std="accuracy_std",
                           per_item="pairs within folds", summary="10-fold verification accuracy"))
register_metric(MetricSpec("auc", "AUC (%)", factor=100, digits=2, unit="%", summary="area under the ROC"))
register_metric(MetricSpec("eer", "EER (%)", lower_better=True, factor=100, digits=2, unit="%",
                           summary="equal error rate"))
