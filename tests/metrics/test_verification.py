"""ROC, AUC, TAR@FAR, EER and 10-fold accuracy against sklearn, brute force and hand-worked cases."""
import numpy as np
import pytest
from sklearn.metrics import roc_auc_score, roc_curve

from benchmark.errors import MetricError
from benchmark.metrics.verification import (
    eer,
    roc_auc,
    roc_auc_and_eer,
    roc_curve_exact,
    tar_at_far,
    ten_fold_accuracy,
)


def tied_scores(n, seed):
    """Random pairs whose scores are rounded to 2 decimals, so many ties across classes."""
    rng = np.random.default_rng(seed)
    is_same = rng.random(n) < 0.5
    scores = np.round(np.where(is_same, 0.3, 0.0) + rng.normal(0, 0.25, n), 2)
    return scores, is_same


def labelled(genuine, impostor):
    scores = np.array(genuine + impostor, dtype=np.float64)
    is_same = np.array([True] * len(genuine) + [False] * len(impostor))
    return scores, is_same


# --- ROC and AUC ----------------------------------------------------------------------------

@pytest.mark.parametrize("seed", [0, 1, 2])
def test_roc_curve_matches_sklearn_without_dropped_points(seed):
    scores, is_same = tied_scores(300, seed)
    far, tar, thresholds = roc_curve_exact(scores, is_same)
    sk_far, sk_tar, sk_thresholds = roc_curve(is_same, scores, drop_intermediate=False)
    np.testing.assert_allclose(far, sk_far, rtol=0, atol=1e-15)
    np.testing.assert_allclose(tar, sk_tar, rtol=0, atol=1e-15)
    np.testing.assert_array_equal(thresholds, sk_thresholds)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_roc_auc_matches_sklearn_with_ties(seed):
    scores, is_same = tied_scores(500, seed)
    assert roc_auc(scores, is_same) == pytest.approx(roc_auc_score(is_same, scores), abs=1e-14)


@pytest.mark.parametrize("seed", [0, 1])
def test_roc_auc_and_eer_from_one_sort_match_sklearn_and_eer(seed):
    scores, is_same = tied_scores(400, seed)
    auc, equal_error = roc_auc_and_eer(scores, is_same)
    assert auc == pytest.approx(roc_auc_score(is_same, scores), abs=1e-14)
    assert equal_error == eer(scores, is_same)
    with pytest.raises(MetricError, match="roc_auc_and_eer"):
        roc_auc_and_eer(scores, np.ones(len(scores), bool))


def test_roc_auc_hand_computed_tie_counts_half():
    # Genuine {0.9, 0.5} vs impostor {0.5, 0.1}: of the 4 genuine-impostor pairs, 3 rank the
    # genuine higher and 1 is tied (counts 1/2): AUC = 3.5 / 4 = 0.875.
    assert roc_auc(*labelled([0.9, 0.5], [0.5, 0.1])) == 0.875


def test_roc_auc_accepts_integer_labels():
    scores = np.array([0.9, 0.5, 0.5, 0.1])
    assert roc_auc(scores, np.array([1, 1, 0, 0])) == 0.875


# --- TAR at FAR -----------------------------------------------------------------------------

# Genuine {0.9, 0.8, 0.6, 0.3}, impostor {0.7, 0.5, 0.4, 0.2}; ROC points (FAR, TAR) by
# descending threshold: (0, 0) (0, .25) (0, .5) (.25, .5) (.25, .75) (.5, .75) (.75, .75)
# (.75, 1) (1, 1).
INTERLEAVED = labelled([0.9, 0.8, 0.6, 0.3], [0.7, 0.5, 0.4, 0.2])


@pytest.mark.parametrize(
    "far, expected_tar",
    [(0.0, 0.5), (0.2, 0.5), (0.25, 0.75), (0.5, 0.75), (0.74, 0.75), (0.75, 1.0), (1.0, 1.0)],
)
def test_tar_at_far_hand_computed(far, expected_tar):
    assert tar_at_far(*INTERLEAVED, far) == expected_tar


def test_tar_at_far_matches_brute_force():
    scores, is_same = tied_scores(200, 7)
    genuine, impostor = scores[is_same], scores[~is_same]
    for target in (0.0, 0.001, 0.01, 0.05, 0.1, 0.3, 1.0):
        best = 0.0  # the start point: nothing accepted
        for t in np.unique(scores):
            if np.mean(impostor >= t) <= target:
                best = max(best, np.mean(genuine >= t))
        assert tar_at_far(scores, is_same, target) == best


def test_tar_at_far_refuses_target_outside_unit_interval():
    with pytest.raises(MetricError, match="far"):
        tar_at_far(*INTERLEAVED, 1.5)


# --- EER ------------------------------------------------------------------------------------

def test_eer_exact_crossing_at_a_roc_point():
    # INTERLEAVED: at threshold 0.6, FAR = 1/4 (0.7) and FRR = 1 - 3/4 = 1/4: EER 0.25 there.
    result = eer(*INTERLEAVED)
    assert result.rate == pytest.approx(0.25, abs=1e-15)
    assert result.threshold == 0.6


def test_eer_interpolated_while_far_is_flat():
    # Genuine {0.9, 0.7}, impostor {0.8, 0.6, 0.5}.
    #   t=0.8: FAR 1/3, FRR 1/2, FAR-FRR = -1/6
    #   t=0.7: FAR 1/3, FRR 0,   FAR-FRR = +1/3
    # zero at fraction a = (1/6) / (1/6 + 1/3) = 1/3 of the way: EER = 1/3
    # (FRR: 1/2 - 1/3 * 1/2 = 1/3 too), threshold = 0.8 - 1/3 * 0.1 = 0.766666...
    rate, threshold = eer(*labelled([0.9, 0.7], [0.8, 0.6, 0.5]))
    assert rate == pytest.approx(1 / 3, abs=1e-12)
    assert threshold == pytest.approx(0.8 - 0.1 / 3, abs=1e-12)


def test_eer_interpolated_across_a_tied_step():
    # Genuine {0.9, 0.6, 0.2}, impostor {0.6, 0.4}.
    #   t=0.9: FAR 0,   FRR 2/3, FAR-FRR = -2/3
    #   t=0.6: FAR 1/2, FRR 1/3, FAR-FRR = +1/6   (a genuine and an impostor tie at 0.6)
    # a = (2/3) / (2/3 + 1/6) = 0.8: EER = 0.8 * 1/2 = 0.4 (FRR: 2/3 - 0.8 * 1/3 = 0.4),
    # threshold = 0.9 + 0.8 * (0.6 - 0.9) = 0.66.
    rate, threshold = eer(*labelled([0.9, 0.6, 0.2], [0.6, 0.4]))
    assert rate == pytest.approx(0.4, abs=1e-12)
    assert threshold == pytest.approx(0.66, abs=1e-12)


def test_eer_on_first_segment_reports_the_highest_score_as_threshold():
    # Genuine {0.9, 0.1}, impostor {0.9}.
    #   start (t=+inf): FAR 0, FRR 1,   FAR-FRR = -1
    #   t=0.9:          FAR 1, FRR 1/2, FAR-FRR = +1/2
    # a = 1 / 1.5 = 2/3: EER = 2/3 (FRR: 1 - 2/3 * 1/2 = 2/3); threshold = 0.9 by the rule.
    rate, threshold = eer(*labelled([0.9, 0.1], [0.9]))
    assert rate == pytest.approx(2 / 3, abs=1e-12)
    assert threshold == 0.9


def test_eer_perfect_separation_is_zero():
    # Genuine {0.9, 0.8}, impostor {0.3, 0.2}: at t=0.8 FAR = FRR = 0.
    assert tuple(eer(*labelled([0.9, 0.8], [0.3, 0.2]))) == (0.0, 0.8)


# --- 10-fold accuracy -----------------------------------------------------------------------

def brute_force_ten_fold(scores, is_same, folds):
    """Try every candidate threshold in a plain loop: O(n^2) per fold."""
    accuracies, thresholds = [], []
    for fold in range(10):
        train = folds != fold
        distinct = sorted(set(scores[train].tolist()))
        candidates = [-np.inf] + [(a + b) / 2 for a, b in zip(distinct, distinct[1:])] + [np.inf]
        best_threshold, best_correct = None, -1
        for threshold in candidates:  # ascending: strict > keeps the smallest on ties
            correct = sum(
                (s > threshold) == same for s, same in zip(scores[train], is_same[train])
            )
            if correct > best_correct:
                best_threshold, best_correct = threshold, correct
        test = ~train
        accuracies.append(np.mean((scores[test] > best_threshold) == is_same[test]))
        thresholds.append(best_threshold)
    return np.array(accuracies), np.array(thresholds)


def test_ten_fold_hand_computed():
    # One genuine and one impostor pair per fold: fold 0 has a low genuine (0.4), fold 1 a
    # high impostor (0.6), every other fold genuine 0.9 and impostor 0.1.
    #
    # Test folds 2..9, training = 18 pairs: genuine 0.4 x1, 0.9 x8; impostor 0.1 x8, 0.6 x1.
    #   correct pairs for threshold -inf: 9, 0.25: 8+9=17, 0.5: 8+8=16, 0.75: 9+8=17, +inf: 9
    #   -> tie 0.25 / 0.75, the smallest wins: 0.25. Test: 0.9 same, 0.1 different: acc 1.
    # Test fold 0, training: genuine 0.9 x9; impostor 0.1 x8, 0.6 x1.
    #   -inf: 9, 0.35: 8+9=17, 0.75: 9+9=18, +inf: 9 -> 0.75. Test: 0.4 called different
    #   (wrong), 0.1 different (right): acc 0.5.
    # Test fold 1, training: genuine 0.4 x1, 0.9 x8; impostor 0.1 x9.
    #   -inf: 9, 0.25: 9+9=18, 0.65: 9+8=17, +inf: 9 -> 0.25. Test: 0.9 same (right), 0.6
    #   same (wrong): acc 0.5.
    # Mean = (0.5 + 0.5 + 8 * 1) / 10 = 0.9; std (ddof 0) = sqrt((2 * 0.4^2 + 8 * 0.1^2) / 10)
    # = sqrt(0.04) = 0.2.
    genuine = [0.4, 0.9] + [0.9] * 8
    impostor = [0.1, 0.6] + [0.1] * 8
    scores, is_same = labelled(genuine, impostor)
    folds = np.array(list(range(10)) * 2)
    result = ten_fold_accuracy(scores, is_same, folds)
    np.testing.assert_allclose(result.accuracies, [0.5, 0.5] + [1.0] * 8)
    np.testing.assert_allclose(result.thresholds, [0.75, 0.25] + [0.25] * 8, atol=1e-15)
    assert result.mean == pytest.approx(0.9, abs=1e-12)
    assert result.std == pytest.approx(0.2, abs=1e-12)


def test_ten_fold_test_score_equal_to_threshold_is_different():
    # Dyadic scores, so midpoints are exact. Every fold: genuine 0.75, impostor 0.25, except
    # fold 0's genuine 0.5. Test fold 0: training has genuine 0.75 x9, impostor 0.25 x9, so
    # the threshold is the midpoint 0.5 (18 of 18 correct); the test genuine 0.5 is not
    # > 0.5, so it is called "different" (wrong): acc 0.5. Other folds: candidates -inf: 9,
    # 0.375: 18, 0.625: 17, +inf: 9 -> 0.375, acc 1.
    scores, is_same = labelled([0.5] + [0.75] * 9, [0.25] * 10)
    result = ten_fold_accuracy(scores, is_same, np.array(list(range(10)) * 2))
    np.testing.assert_array_equal(result.thresholds, [0.5] + [0.375] * 9)
    np.testing.assert_array_equal(result.accuracies, [0.5] + [1.0] * 9)


def test_ten_fold_all_scores_equal_uses_the_end_candidates():
    # All scores 0.5: the only candidates are -inf (all "same") and +inf (all "different").
    folds = np.repeat(np.arange(10), 3)
    scores = np.full(30, 0.5)
    # Per fold 1 genuine + 2 impostors: training has 9 genuine, 18 impostor -> +inf wins;
    # the test fold then gets its 2 impostors right: 2/3.
    result = ten_fold_accuracy(scores, np.tile([True, False, False], 10), folds)
    assert np.all(result.thresholds == np.inf)
    np.testing.assert_allclose(result.accuracies, 2 / 3)
    # Per fold 2 genuine + 1 impostor -> -inf wins; test accuracy 2/3.
    result = ten_fold_accuracy(scores, np.tile([True, True, False], 10), folds)
    assert np.all(result.thresholds == -np.inf)
    # 1 genuine + 1 impostor: 9 vs 9 correct, the smallest threshold (-inf) wins the tie.
    result = ten_fold_accuracy(np.full(20, 0.5), np.tile([True, False], 10), np.repeat(np.arange(10), 2))
    assert np.all(result.thresholds == -np.inf)
    np.testing.assert_allclose(result.accuracies, 0.5)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ten_fold_matches_brute_force(seed):
    scores, is_same = tied_scores(240, seed)
    folds = np.repeat(np.arange(10), 24)  # contiguous blocks, as in pairs.txt
    np.random.default_rng(seed).shuffle(folds)
    expected_accuracies, expected_thresholds = brute_force_ten_fold(scores, is_same, folds)
    result = ten_fold_accuracy(scores, is_same, folds)
    np.testing.assert_array_equal(result.accuracies, expected_accuracies)
    np.testing.assert_array_equal(result.thresholds, expected_thresholds)
    assert result.mean == pytest.approx(expected_accuracies.mean(), abs=1e-15)
    assert result.std == pytest.approx(expected_accuracies.std(ddof=0), abs=1e-15)


# --- bad input ------------------------------------------------------------------------------

def test_bad_scores_and_labels_are_refused():
    scores, is_same = INTERLEAVED
    with pytest.raises(MetricError, match="8 scores but 7"):
        roc_auc(scores, is_same[:7])
    with pytest.raises(MetricError, match="0 impostor"):
        eer(scores, np.ones(8, bool))
    with pytest.raises(MetricError, match="0 genuine"):
        roc_curve_exact(scores, np.zeros(8, bool))
    nan_scores = scores.copy()
    nan_scores[3] = np.nan
    with pytest.raises(MetricError, match="NaN.*index 3"):
        tar_at_far(nan_scores, is_same, 0.1)
    with pytest.raises(MetricError, match="0/1"):
        roc_auc(scores, np.array([2, 1, 0, 0, 1, 0, 1, 0]))


def test_bad_folds_are_refused():
    scores, is_same = tied_scores(40, 0)
    folds = np.repeat(np.arange(10), 4)
    with pytest.raises(MetricError, match=r"folds \[9\] have no pairs"):
        ten_fold_accuracy(scores, is_same, np.minimum(folds, 8))
    with pytest.raises(MetricError, match="found fold 10"):
        ten_fold_accuracy(scores, is_same, folds + 1)
    with pytest.raises(MetricError, match="shape"):
        ten_fold_accuracy(scores, is_same, folds[:-1])
    with pytest.raises(MetricError, match="integers"):
        ten_fold_accuracy(scores, is_same, folds.astype(float))
