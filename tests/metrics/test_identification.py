"""kNN, CMC and gallery/probe splits against pure-Python loop oracles and hand-worked cases.

Embeddings are built so that every cosine score is exact in float32 (entries are multiples of
1/8 or 1/2 and rows have norm exactly 1), so the many ties they produce are real ties for both
the implementation and the oracles.
"""
import numpy as np
import pytest

from conftest import exact_unit_rows

from benchmark.errors import MetricError
from benchmark.metrics import identification
from benchmark.metrics.identification import (
    cmc_gallery_probe,
    cmc_leave_one_out,
    gallery_probe_split,
    knn_leave_one_out,
)


def half_rows(n, seed, dim=6):
    """Rows with four entries of +-1/2 (unit norm): scores in {-1, -0.75, ..., 1}, ties everywhere."""
    rng = np.random.default_rng(seed)
    rows = np.zeros((n, dim))
    for row in rows:
        row[rng.choice(dim, 4, replace=False)] = rng.choice([-0.5, 0.5], 4)
    return rows


def score(a, b):
    return sum(x * y for x, y in zip(a, b))  # exact: every product and partial sum is representable


# --- pure-Python oracles ----------------------------------------------------------------------

def knn_oracle(emb, labels, k):
    rows, labels = emb.tolist(), list(labels)
    correct = 0
    for p in range(len(rows)):
        others = sorted((g for g in range(len(rows)) if g != p),
                        key=lambda g: (-score(rows[p], rows[g]), g))
        counts, first_position = {}, {}
        for position, g in enumerate(others[:k]):
            counts[labels[g]] = counts.get(labels[g], 0) + 1
            first_position.setdefault(labels[g], position)
        predicted = min(counts, key=lambda label: (-counts[label], first_position[label]))
        correct += predicted == labels[p]
    return correct / len(rows)


def first_match_rank_oracle(probe, probe_label, gallery_rows, gallery_labels, skip=None):
    """1 + (items scoring strictly above the best mate) + (wrong-label items scoring equal)."""
    scores = [None if g == skip else score(probe, row) for g, row in enumerate(gallery_rows)]
    mates = [s for g, s in enumerate(scores) if s is not None and gallery_labels[g] == probe_label]
    if not mates:
        return None
    best = max(mates)
    above = sum(1 for s in scores if s is not None and s > best)
    tied_wrong = sum(1 for g, s in enumerate(scores)
                     if s is not None and s == best and gallery_labels[g] != probe_label)
    return 1 + above + tied_wrong


def curve_oracle(ranks, max_rank):
    return [sum(1 for r in ranks if r <= cutoff) / len(ranks) for cutoff in range(1, max_rank + 1)]


@pytest.fixture
def small_blocks(monkeypatch):
    """Blocks of 5 probe rows, so that every test crosses block boundaries."""
    monkeypatch.setattr(identification, "BLOCK_ROWS", 5)


# --- hand-worked example ----------------------------------------------------------------------
# Index: 0 A0, 1 A1, 2 B0, 3 B1, 4 C0, 5 D0, 6 D1 (labels A A B B C D D).
HAND_EMB = np.array([
    [1, 0, 0, 0], [.5, .5, .5, .5], [.5, .5, .5, -.5], [0, 0, 0, 1],
    [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 1, 0]])
HAND_LABELS = np.array(["A", "A", "B", "B", "C", "D", "D"])


def test_knn_hand_worked_with_index_and_vote_ties():
    # Neighbour orders (score desc, index asc):
    #   A0: A1 .5, B0 .5, B1 0, C0 0, D0 0, D1 0    A1: A0, B0, B1, C0, D0, D1 (all .5)
    #   B0: A0, A1, C0, D0, D1 (.5), B1 -.5         B1: A1 .5, A0, C0, D0, D1 (0), B0 -.5
    #   C0: A1, B0 (.5), A0, B1, D0, D1 (0)         D0: D1 1, A1, B0 (.5), A0, B1, C0 (0)
    # k=1: A0 A1 D0 D1 right -> 4/7. k=2: A0 (A,B), A1 (A,B), D0 (D,A), D1 (D,A) win their vote
    # ties because their own label's neighbour ranks first -> 4/7. k=3: only D0, D1 (D,A,B) -> 2/7.
    accuracy = knn_leave_one_out(HAND_EMB, HAND_LABELS, ks=(1, 2, 3))
    assert accuracy == {1: pytest.approx(4 / 7, abs=1e-15), 2: pytest.approx(4 / 7, abs=1e-15),
                        3: pytest.approx(2 / 7, abs=1e-15)}


def test_cmc_leave_one_out_hand_worked_pessimistic_ties():
    # Best mate and wrong-label items scoring >= it: A0 .5 {B0} -> rank 2; A1 .5 {B0 B1 C0 D0 D1}
    # -> 6; B0 -.5 {all 5} -> 6; B1 -.5 {all 5} -> 6; D0, D1 1.0 {} -> 1. C0 has no mate.
    # (Ties resolved optimistically would give A0 rank 1 and A1 rank 1.)
    result = cmc_leave_one_out(HAND_EMB, HAND_LABELS, max_rank=6)
    assert result.ranks.tolist() == [2, 6, 6, 6, 1, 1]
    assert result.probe_index.tolist() == [0, 1, 2, 3, 5, 6]
    assert result.n_excluded == 1 and result.n_probes == 6
    np.testing.assert_allclose(result.curve, [2 / 6, 3 / 6, 3 / 6, 3 / 6, 3 / 6, 6 / 6],
                               rtol=0, atol=1e-15)


def test_cmc_gallery_probe_hand_worked():
    gallery = np.array([[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0]])
    gallery_labels = [7, 8, 9]
    # probe 0 (7): 1.0 vs others 0 -> rank 1; probe 1 (8): .5 tied with label 7's .5, label 9
    # -.5 -> rank 2; probe 2 (9): 0, below label 7's and 8's .5 -> rank 3.
    probes = np.array([[1, 0, 0, 0], [.5, .5, -.5, .5], [.5, .5, 0, .70710678]])
    result = cmc_gallery_probe(gallery, gallery_labels, probes, [7, 8, 9], max_rank=3)
    assert result.ranks.tolist() == [1, 2, 3]
    np.testing.assert_allclose(result.curve, [1 / 3, 2 / 3, 1.0], rtol=0, atol=1e-15)


# --- random cases against the oracles ---------------------------------------------------------

@pytest.mark.parametrize("make_rows, n, n_labels, seed", [
    (exact_unit_rows, 40, 9, 0), (exact_unit_rows, 33, 5, 1), (half_rows, 30, 6, 2), (half_rows, 24, 12, 3)])
def test_knn_matches_loop_oracle_with_ties(small_blocks, make_rows, n, n_labels, seed):
    emb = make_rows(n, seed)
    labels = np.random.default_rng(seed + 100).integers(0, n_labels, n)
    accuracy = knn_leave_one_out(emb.astype(np.float32), labels, ks=(1, 2, 3, 5, 10))
    for k, value in accuracy.items():
        assert value == pytest.approx(knn_oracle(emb, labels, k), abs=1e-15), f"k={k}"


@pytest.mark.parametrize("make_rows, n, n_labels, seed", [
    (exact_unit_rows, 40, 9, 0), (exact_unit_rows, 31, 14, 1), (half_rows, 30, 6, 2), (half_rows, 26, 15, 3)])
def test_cmc_leave_one_out_matches_loop_oracle_with_ties(small_blocks, make_rows, n, n_labels, seed):
    emb = make_rows(n, seed)
    labels = np.random.default_rng(seed + 200).integers(0, n_labels, n)
    rows = emb.tolist()
    oracle = {p: first_match_rank_oracle(rows[p], labels[p], rows, labels, skip=p) for p in range(n)}
    counted = [p for p in range(n) if oracle[p] is not None]
    result = cmc_leave_one_out(emb, labels, max_rank=n + 3)
    assert result.probe_index.tolist() == counted
    assert result.ranks.tolist() == [oracle[p] for p in counted]
    assert result.n_excluded == n - len(counted)
    np.testing.assert_allclose(result.curve, curve_oracle([oracle[p] for p in counted], n + 3),
                               rtol=0, atol=1e-15)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_cmc_gallery_probe_matches_loop_oracle_with_ties(small_blocks, seed):
    rng = np.random.default_rng(seed)
    gallery, probes = half_rows(15, seed), half_rows(23, seed + 50)
    gallery_labels = rng.integers(0, 6, 15)
    probe_labels = rng.choice(gallery_labels, 23)
    expected = [first_match_rank_oracle(p, probe_labels[i], gallery.tolist(), gallery_labels)
                for i, p in enumerate(probes.tolist())]
    result = cmc_gallery_probe(gallery, gallery_labels, probes, probe_labels, max_rank=10)
    assert result.ranks.tolist() == expected
    np.testing.assert_allclose(result.curve, curve_oracle(expected, 10), rtol=0, atol=1e-15)


def test_knn_rank1_matches_sklearn_on_continuous_embeddings():
    from sklearn.neighbors import NearestNeighbors

    rng = np.random.default_rng(5)
    emb = rng.standard_normal((200, 32))
    labels = rng.integers(0, 20, 200)
    emb_unit = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    _, index = NearestNeighbors(n_neighbors=2).fit(emb_unit).kneighbors(emb_unit)
    expected = np.mean(labels[index[:, 1]] == labels)  # column 0 is the point itself
    assert knn_leave_one_out(emb, labels, ks=(1,))[1] == pytest.approx(expected, abs=1e-15)


def test_embeddings_are_normalised_before_scoring():
    emb = exact_unit_rows(20, 4)
    labels = np.arange(20) % 4
    scaled = emb * 2.0 ** np.arange(-3, 17)[:, None]  # powers of two: normalising back is exact
    assert knn_leave_one_out(scaled, labels, ks=(3,)) == knn_leave_one_out(emb, labels, ks=(3,))
    assert np.array_equal(cmc_leave_one_out(scaled, labels, 5).ranks, cmc_leave_one_out(emb, labels, 5).ranks)


# --- bad input ----------------------------------------------------------------------------------

def test_length_mismatch_is_refused():
    with pytest.raises(MetricError, match="one label per embedding row"):
        knn_leave_one_out(np.eye(4), [0, 0, 1])
    with pytest.raises(MetricError, match="one label per embedding row"):
        cmc_leave_one_out(np.eye(4), [0, 0, 1, 1, 2])
    with pytest.raises(MetricError, match="probe_labels"):
        cmc_gallery_probe(np.eye(3), [0, 1, 2], np.eye(3), [0, 1])


def test_empty_gallery_is_refused():
    with pytest.raises(MetricError, match="gallery_emb is empty"):
        cmc_gallery_probe(np.zeros((0, 4)), [], np.eye(4), [0, 1, 2, 3])


def test_probes_outside_the_gallery_are_counted_in_the_error():
    with pytest.raises(MetricError, match="2 of 4 probes have an identity that is not in the gallery"):
        cmc_gallery_probe(np.eye(4)[:2], ["a", "b"], np.eye(4), ["a", "b", "c", "d"])


def test_no_probe_with_a_mate_is_an_error():
    with pytest.raises(MetricError, match="none of the 4 images"):
        cmc_leave_one_out(np.eye(4), [0, 1, 2, 3])


def test_bad_k_nan_and_zero_rows_are_refused():
    with pytest.raises(MetricError, match=r"1\.\.3"):
        knn_leave_one_out(np.eye(4), [0, 0, 1, 1], ks=(4,))
    bad = np.eye(4)
    bad[2, 1] = np.nan
    with pytest.raises(MetricError, match="row 2"):
        cmc_leave_one_out(bad, [0, 0, 1, 1])
    with pytest.raises(MetricError, match="row 3 is all zeros"):
        knn_leave_one_out(np.r_[np.eye(3), np.zeros((1, 3))], [0, 0, 1, 1])
    with pytest.raises(MetricError, match="max_rank"):
        cmc_leave_one_out(np.eye(4), [0, 0, 1, 1], max_rank=0)


# --- gallery / probe split ----------------------------------------------------------------------

SPLIT_LABELS = np.repeat(np.arange(8), [1, 2, 3, 4, 5, 4, 6, 2])  # identities 0..7, 27 images


def test_split_has_n_gallery_per_eligible_identity_and_the_rest_as_probes():
    gallery, probes = gallery_probe_split(SPLIT_LABELS, seed=3, repeat=0, n_gallery=1, min_images=4)
    eligible = {3, 4, 5, 6}
    assert sorted(SPLIT_LABELS[gallery].tolist()) == sorted(eligible)
    assert set(SPLIT_LABELS[probes].tolist()) == eligible
    assert np.intersect1d(gallery, probes).size == 0
    in_eligible = np.flatnonzero(np.isin(SPLIT_LABELS, list(eligible)))
    assert sorted(np.r_[gallery, probes].tolist()) == in_eligible.tolist()
    gallery2, _ = gallery_probe_split(SPLIT_LABELS, seed=3, repeat=0, n_gallery=2, min_images=4)
    assert np.bincount(SPLIT_LABELS[gallery2], minlength=8).tolist() == [0, 0, 0, 2, 2, 2, 2, 0]


def test_split_is_deterministic_per_seed_and_repeat():
    first = gallery_probe_split(SPLIT_LABELS, seed=11, repeat=4)
    again = gallery_probe_split(SPLIT_LABELS, seed=11, repeat=4)
    assert all(np.array_equal(a, b) for a, b in zip(first, again))
    others = [gallery_probe_split(SPLIT_LABELS, seed=11, repeat=r)[0] for r in range(5)] + \
             [gallery_probe_split(SPLIT_LABELS, seed=12, repeat=4)[0]]
    assert any(not np.array_equal(first[0], other) for other in others)
    assert first[0].tolist() == sorted(first[0].tolist())


def test_split_draws_gallery_images_uniformly():
    labels = np.repeat([0, 1], [4, 6])
    hits = np.zeros(10)
    for repeat in range(3000):
        hits[gallery_probe_split(labels, seed=0, repeat=repeat)[0]] += 1
    # 3000 draws: each of identity 0's images ~750 times, identity 1's ~500 (binomial sd ~ 24, 20).
    np.testing.assert_allclose(hits[:4], 750, atol=100)
    np.testing.assert_allclose(hits[4:], 500, atol=100)


def test_split_refuses_impossible_requests():
    with pytest.raises(MetricError, match="no identity has 7 or more images"):
        gallery_probe_split(SPLIT_LABELS, seed=0, repeat=0, min_images=7)
    with pytest.raises(MetricError, match="must exceed n_gallery"):
        gallery_probe_split(SPLIT_LABELS, seed=0, repeat=0, n_gallery=2, min_images=2)
