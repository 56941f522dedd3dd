"""BLUFR verification and open-set identification against pure-Python oracles and hand-worked cases.

The oracles follow DESIGN.md word for word with loops: all lower-triangle pairs, k = MATLAB
round(FAR * n) (computed with decimal ROUND_HALF_UP), the k-th highest impostor from a sorted
list, and the edges stated as decisions (k = 0: strictly above every impostor; k = n: >= the
lowest). Embeddings make every score exact in float32, so ties are real ties.
"""
import math
import statistics
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

import numpy as np
import pytest

from conftest import exact_unit_rows

from benchmark.faces.blufr import BlufrConfig, load_blufr_config
from benchmark.errors import MetricError
from benchmark.metrics import identification, openset
from benchmark.metrics.openset import (
    blufr_open_set,
    blufr_tar_at_far,
    blufr_threshold,
    blufr_trials,
    blufr_verification,
)

DATA = Path(__file__).resolve().parents[3] / "shared" / "data"
BLUFR_MAT = DATA / "lfw" / "blufr_lfw_config.mat"
FARS = [0.0, 0.001, 0.01, 0.05, 0.1, 0.25, 0.5, 0.75, 0.99, 1.0]


def score(a, b):
    return sum(x * y for x, y in zip(a, b))


def matlab_round(x):
    return int(Decimal(x).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def accepted_oracle(value, impostors_desc, far):
    """Is ``value`` accepted at ``far`` by the k-th-highest-impostor rule?"""
    n = len(impostors_desc)
    k = matlab_round(far * n)
    if k == 0:
        return value > impostors_desc[0]
    if k == n:
        return value >= impostors_desc[-1]
    return value >= impostors_desc[k - 1]


def vr_oracle(rows, labels, test, fars):
    genuine, impostor = [], []
    for a in range(len(test)):
        for b in range(a):
            s = score(rows[test[a]], rows[test[b]])
            (genuine if labels[test[a]] == labels[test[b]] else impostor).append(s)
    impostor.sort(reverse=True)
    return [sum(accepted_oracle(g, impostor, far) for g in genuine) / len(genuine) for far in fars]


def dir_oracle(rows, labels, gallery, probes, fars, rank=1):
    gallery_labels = {labels[g] for g in gallery}
    impostor_max, genuine = [], []
    for p in probes:
        scores = {g: score(rows[p], rows[g]) for g in gallery}
        if labels[p] not in gallery_labels:
            impostor_max.append(max(scores.values()))
            continue
        best = max(s for g, s in scores.items() if labels[g] == labels[p])
        wrong_reaching = sum(1 for g, s in scores.items() if labels[g] != labels[p] and s >= best)
        genuine.append((best, 1 + wrong_reaching))
    impostor_max.sort(reverse=True)
    return [sum(1 for best, r in genuine if r <= rank and accepted_oracle(best, impostor_max, far))
            / len(genuine) for far in fars]


@pytest.fixture
def small_blocks(monkeypatch):
    """Tiny blocks and selection batches, so that small cases cross every boundary."""
    monkeypatch.setattr(openset, "BLOCK_ROWS", 7)
    monkeypatch.setattr(identification, "BLOCK_ROWS", 7)
    monkeypatch.setattr(openset, "FLUSH_SCORES", 40)


# --- the threshold rule ---------------------------------------------------------------------

IMPOSTORS = [0.9, 0.1, 0.5, 0.7, 0.3]


@pytest.mark.parametrize("far, expected", [
    (0.1, 0.9),  # k = round(0.5) = 1 (banker's rounding would give 0)
    (0.3, 0.7),  # k = round(1.5) = 2
    (0.5, 0.5),  # k = round(2.5) = 3 (banker's rounding would give 2 -> 0.7)
    (0.7, 0.3),  # k = round(3.5) = 4
    (0.9, 0.1),  # k = round(4.5) = 5 = n: the lowest impostor
    (1.0, 0.1),  # k = n
])
def test_threshold_hand_computed(far, expected):
    assert blufr_threshold(IMPOSTORS, far) == expected


def test_threshold_far_zero_is_just_above_the_highest_impostor():
    assert blufr_threshold(IMPOSTORS, 0.0) == np.nextafter(0.9, np.inf)
    assert blufr_threshold(IMPOSTORS, 0.09) == np.nextafter(0.9, np.inf)  # k = round(0.45) = 0
    as_float32 = blufr_threshold(np.array(IMPOSTORS, dtype=np.float32), 0.0)
    assert as_float32 == float(np.nextafter(np.float32(0.9), np.float32(np.inf)))
    # 0.49999999999999994 is the double just below 0.5: MATLAB's round gives 0 (floor(x + 0.5) gives 1).
    assert blufr_threshold([0.3], 0.49999999999999994) == np.nextafter(0.3, np.inf)
    assert blufr_threshold([0.3], 0.5) == 0.3


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_tar_at_far_matches_oracle_with_ties(seed):
    rng = np.random.default_rng(seed)
    genuine = rng.integers(0, 12, 57) / 8.0
    impostor = rng.integers(-4, 10, 311) / 8.0
    impostor_desc = sorted(impostor.tolist(), reverse=True)
    fars = FARS + [1 / 311, 2.5 / 311, 0.5 / 311]  # k = 1, k = 3 (half rounds up), k = 1
    expected = [sum(accepted_oracle(g, impostor_desc, far) for g in genuine) / 57 for far in fars]
    np.testing.assert_allclose(blufr_tar_at_far(genuine, impostor, fars), expected, rtol=0, atol=1e-15)


# --- verification ---------------------------------------------------------------------------

def test_verification_hand_worked():
    # x0 A (1,0,0,0), x1 A (.5,.5,.5,.5), x2 B (0,1,0,0), x3 B (0,0,1,0). Lower-triangle pairs:
    # genuine (1,0) .5, (3,2) 0; impostor (2,0) 0, (2,1) .5, (3,0) 0, (3,1) .5 -> desc .5 .5 0 0.
    # FAR 0: only > .5 -> 0; FAR .25, .5: T = .5 -> {.5} -> 1/2; FAR .75, 1: T = 0 -> 1.
    features = np.array([[1, 0, 0, 0], [.5, .5, .5, .5], [0, 1, 0, 0], [0, 0, 1, 0]])
    vr = blufr_verification(features, ["A", "A", "B", "B"], np.arange(4), [0, 0.25, 0.5, 0.75, 1])
    assert vr.tolist() == [0.0, 0.5, 0.5, 1.0, 1.0]


@pytest.mark.parametrize("n, n_labels, seed", [(30, 6, 0), (41, 15, 1), (36, 4, 2)])
def test_verification_matches_oracle_with_ties(small_blocks, n, n_labels, seed):
    rng = np.random.default_rng(seed)
    rows = exact_unit_rows(n + 10, seed)
    labels = rng.integers(0, n_labels, n + 10)
    test = np.sort(rng.choice(n + 10, n, replace=False))[::-1].copy()  # any order, any subset
    expected = vr_oracle(rows.tolist(), labels.tolist(), test.tolist(), FARS)
    np.testing.assert_allclose(blufr_verification(rows, labels, test, FARS), expected,
                               rtol=0, atol=1e-15)


@pytest.mark.parametrize("floor", [2.0, -2.0])
def test_verification_is_exact_whatever_the_sampled_floor(small_blocks, monkeypatch, floor):
    # floor 2.0 is above every score (the pass must be replayed), -2.0 below (no help at all).
    monkeypatch.setattr(openset, "_sampled_floor", lambda *args: floor)
    rng = np.random.default_rng(7)
    rows, labels = exact_unit_rows(35, 7), rng.integers(0, 7, 35)
    expected = vr_oracle(rows.tolist(), labels.tolist(), list(range(35)), FARS)
    np.testing.assert_allclose(blufr_verification(rows, labels, np.arange(35), FARS), expected,
                               rtol=0, atol=1e-15)


@pytest.mark.parametrize("fars, sampled_floor",
                         [([0.001, 0.01, 0.1, 0.3], True), ([0.0005, 0.002, 0.01], False)])
def test_verification_matches_numpy_reference_on_continuous_scores(monkeypatch, fars, sampled_floor):
    # Gaussian features (no ties), many blocks and selection passes (without the sampled floor,
    # the running bound alone prunes): a float64 full-matrix reference agrees unless a genuine
    # score sits within float32 rounding of a threshold.
    monkeypatch.setattr(openset, "BLOCK_ROWS", 16)
    monkeypatch.setattr(openset, "FLUSH_SCORES", 100)
    if not sampled_floor:
        monkeypatch.setattr(openset, "_sampled_floor", lambda *args: -np.inf)
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 60, 400)
    features = rng.standard_normal((400, 24)) + 1.5 * rng.standard_normal((60, 24))[labels]
    unit = features / np.linalg.norm(features, axis=1, keepdims=True)
    lower = np.tril_indices(400, -1)
    scores, same = (unit @ unit.T)[lower], labels[lower[0]] == labels[lower[1]]
    impostor_desc = np.sort(scores[~same])[::-1]
    expected = [np.mean(scores[same] >= impostor_desc[matlab_round(f * len(impostor_desc)) - 1])
                for f in fars]
    np.testing.assert_allclose(blufr_verification(features, labels, np.arange(400), fars), expected,
                               rtol=0, atol=1e-15)


# --- open-set identification ----------------------------------------------------------------

# Gallery gA = e1 (label A), gB = e2 (label B). Genuine probes: p0 A (.8,.6) best .8 rank 1;
# p1 A (.6,.8) best .6 rank 2; p2 B e2 best 1 rank 1; p3 B (.5,.5,.5,.5) best .5 tied with A's .5
# -> rank 2 (pessimistic); p4 A (1,0,0,3)/sqrt(10) best .316 rank 1. Impostor probes' maximum
# gallery scores: p5 e3 -> 0, p6 (.5,.5,.5,-.5) -> .5, p7 (.6,0,.8) -> .6, p8 (0,-.6,.8) -> 0.
OPEN_SET_FEATURES = np.array([
    [1, 0, 0, 0], [0, 1, 0, 0],
    [8, 6, 0, 0], [6, 8, 0, 0], [0, 1, 0, 0], [.5, .5, .5, .5], [1, 0, 0, 3],
    [0, 0, 1, 0], [.5, .5, .5, -.5], [6, 0, 8, 0], [0, -6, 8, 0]])
OPEN_SET_LABELS = ["A", "B", "A", "A", "B", "B", "A", "X", "Y", "Z", "W"]


def test_open_set_hand_worked():
    # Impostor maxima desc .6 .5 0 0 (n = 4). FAR 0: > .6 -> p0, p2 = 2/5. FAR .25 (T .6) -> 2/5.
    # FAR .5 (T .5): p3 reaches .5 but ranks 2 -> 2/5. FAR .625: k = round(2.5) = 3, T = 0 ->
    # p0, p2, p4 = 3/5 (banker's rounding, k = 2, would give 2/5). FAR 1: T = 0 -> 3/5.
    dir_ = blufr_open_set(OPEN_SET_FEATURES, OPEN_SET_LABELS, [0, 1], np.arange(2, 11),
                          [0, 0.25, 0.5, 0.625, 1])
    np.testing.assert_allclose(dir_, [0.4, 0.4, 0.4, 0.6, 0.6], rtol=0, atol=1e-15)
    # Rank 2 at FAR .5 (T .5): p0, p1, p2, p3 -> 4/5.
    rank2 = blufr_open_set(OPEN_SET_FEATURES, OPEN_SET_LABELS, [0, 1], np.arange(2, 11), [0.5], rank=2)
    assert rank2.tolist() == [0.8]


@pytest.mark.parametrize("seed, rank", [(0, 1), (1, 1), (2, 3), (3, 1)])
def test_open_set_matches_oracle_with_ties(small_blocks, seed, rank):
    rng = np.random.default_rng(seed)
    rows = exact_unit_rows(70, seed + 10)
    labels = rng.integers(0, 25, 70)
    order = rng.permutation(70)
    gallery, probes = order[:18], order[18:]
    fars = [0.0, 0.01, 0.1, 0.2, 0.5, 1.0]
    expected = dir_oracle(rows.tolist(), labels.tolist(), gallery.tolist(), probes.tolist(), fars, rank)
    np.testing.assert_allclose(blufr_open_set(rows, labels, gallery, probes, fars, rank=rank), expected,
                               rtol=0, atol=1e-15)


# --- all trials -------------------------------------------------------------------------------

def small_config(n_images, seed):
    """A BLUFR-like config: 10 trials, each a test subset split into gallery and probes."""
    rng = np.random.default_rng(seed)
    tests, galleries, probes = [], [], []
    for _ in range(10):
        test = np.sort(rng.choice(n_images, n_images * 3 // 4, replace=False))
        gallery_mask = rng.random(test.size) < 0.3
        tests.append(test)
        galleries.append(test[gallery_mask])
        probes.append(test[~gallery_mask])
    return BlufrConfig([f"img_{i:04d}.jpg" for i in range(n_images)], rng.integers(1, 15, n_images),
                       tests, galleries, probes, Path("synthetic.mat"))


def test_trials_match_oracles_and_report_mean_minus_std(small_blocks):
    config = small_config(48, 0)
    rows = exact_unit_rows(48, 1)
    result = blufr_trials(rows, config.labels, config, vr_fars=(0.01, 0.1), dir_fars=(0.05,),
                          vr_curve_fars=(0.001, 0.01, 1.0), dir_curve_fars=(0.1, 1.0))
    row_list, label_list = rows.tolist(), config.labels.tolist()
    for t in range(10):
        test = config.test_index[t].tolist()
        gallery, probes = config.gallery_index[t].tolist(), config.probe_index[t].tolist()
        for got, expected in [
            (result.vr[t], vr_oracle(row_list, label_list, test, [0.01, 0.1])),
            (result.vr_curve[t], vr_oracle(row_list, label_list, test, [0.001, 0.01, 1.0])),
            (result.dir[t], dir_oracle(row_list, label_list, gallery, probes, [0.05])),
            (result.dir_curve[t], dir_oracle(row_list, label_list, gallery, probes, [0.1, 1.0])),
        ]:
            np.testing.assert_allclose(got, expected, rtol=0, atol=1e-15)
    for j in range(2):
        column = result.vr[:, j].tolist()
        assert result.vr_summary.mean[j] == pytest.approx(statistics.mean(column), abs=1e-14)
        assert result.vr_summary.std[j] == pytest.approx(statistics.stdev(column), abs=1e-14)  # ddof=1
        assert result.vr_summary.mean_minus_std[j] == pytest.approx(
            statistics.mean(column) - statistics.stdev(column), abs=1e-14)
    column = result.dir[:, 0].tolist()
    expected = statistics.mean(column) - statistics.stdev(column)
    assert result.dir_summary.mean_minus_std[0] == pytest.approx(expected, abs=1e-14)
    assert result.vr_fars.tolist() == [0.01, 0.1] and result.dir_curve_fars.tolist() == [0.1, 1.0]


def test_default_curves_span_their_grids():
    config = small_config(40, 2)
    result = blufr_trials(exact_unit_rows(40, 3), config.labels, config)
    assert result.vr_curve.shape == (10, len(openset.VR_CURVE_FARS))
    assert result.dir_curve.shape == (10, len(openset.DIR_CURVE_FARS))
    assert result.vr_curve_fars[0] == pytest.approx(1e-4) and result.vr_curve_fars[-1] == 1.0
    assert np.all(np.diff(result.vr_curve, axis=1) >= 0)
    assert np.all(np.diff(result.dir_curve, axis=1) >= 0)


@pytest.mark.skipif(not BLUFR_MAT.is_file(), reason="needs ../shared/data/lfw/blufr_lfw_config.mat")
def test_real_config_open_set_trial_matches_numpy_reference():
    config = load_blufr_config(BLUFR_MAT)
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((config.labels.max() + 1, 16))
    features = rng.standard_normal((len(config.labels), 16)) + 2.0 * centres[config.labels]
    unit = features / np.linalg.norm(features, axis=1, keepdims=True)
    gallery, probes = config.gallery_index[0], config.probe_index[0]
    scores = unit[probes] @ unit[gallery].T
    mate = config.labels[probes][:, None] == config.labels[gallery][None, :]
    genuine = mate.any(axis=1)
    impostor_desc = np.sort(scores[~genuine].max(axis=1))[::-1]
    best_mate = np.where(mate, scores, -np.inf).max(axis=1)
    rank1 = (((scores >= best_mate[:, None]) & ~mate).sum(axis=1) == 0)[genuine]
    fars = [0.001, 0.01, 0.1]
    thresholds = [impostor_desc[matlab_round(f * len(impostor_desc)) - 1] for f in fars]
    expected = [np.mean(rank1 & (best_mate[genuine] >= t)) for t in thresholds]
    assert 0.2 < expected[1] < 0.8  # a meaningful operating point, not all or nothing
    np.testing.assert_allclose(blufr_open_set(features, config.labels, gallery, probes, fars), expected,
                               rtol=0, atol=1e-15)


# --- bad input ----------------------------------------------------------------------------------

def test_length_mismatch_and_bad_indices_are_refused():
    with pytest.raises(MetricError, match="one label per embedding row"):
        blufr_verification(np.eye(4), [0, 0, 1], np.arange(3), [0.1])
    with pytest.raises(MetricError, match="test_index holds 9"):
        blufr_verification(np.eye(4), [0, 0, 1, 1], [0, 1, 9], [0.1])
    with pytest.raises(MetricError, match="more than once"):
        blufr_verification(np.eye(4), [0, 0, 1, 1], [0, 1, 1, 2], [0.1])
    with pytest.raises(MetricError, match="one label per embedding row"):
        blufr_open_set(np.eye(4), [0, 0, 1], [0], [1, 2], [0.1])


def test_empty_gallery_is_refused():
    with pytest.raises(MetricError, match="gallery_index must be a non-empty"):
        blufr_open_set(np.eye(4), [0, 0, 1, 2], np.array([], dtype=int), [1, 2, 3], [0.1])


def test_missing_genuine_or_impostor_data_is_refused():
    with pytest.raises(MetricError, match="0 genuine"):
        blufr_verification(np.eye(4), [0, 1, 2, 3], np.arange(4), [0.1])
    with pytest.raises(MetricError, match="0 impostor"):
        blufr_verification(np.eye(4), [5, 5, 5, 5], np.arange(4), [0.1])
    with pytest.raises(MetricError, match="0 have their identity in the gallery"):
        blufr_open_set(np.eye(4), [0, 1, 2, 3], [0], [1, 2, 3], [0.1])
    with pytest.raises(MetricError, match="0 do not"):
        blufr_open_set(np.eye(4), [0, 1, 0, 1], [0, 1], [2, 3], [0.1])
    with pytest.raises(MetricError, match="genuine_scores must be a non-empty"):
        blufr_tar_at_far([], [0.1, 0.2], [0.1])


def test_bad_fars_are_refused():
    with pytest.raises(MetricError, match=r"\[0, 1\]"):
        blufr_threshold(IMPOSTORS, 1.5)
    with pytest.raises(MetricError, match=r"\[0, 1\]"):
        blufr_tar_at_far([0.5], IMPOSTORS, [0.1, math.nan])


def test_trials_refuse_features_that_do_not_match_the_config():
    config = small_config(20, 0)
    with pytest.raises(MetricError, match="config lists 20 images"):
        blufr_trials(np.eye(19), config.labels[:19], config)
