"""Label metrics of a free-form score against brute-force oracles: rank-1 of each SR probe
against every HR face but its own (ties against it), and AUC/EER on all SR pairs (sklearn)."""
import itertools

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score, roc_curve

from benchmark.engine.folder_metrics import label_metrics, summary


def unit(x):
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_label_metrics_match_brute_force():
    rng = np.random.default_rng(3)
    labels = ["c", "a", "b", "a", "c", "b", "a", "d", "c", "b"]  # d has one image: no mate
    centre = {k: rng.normal(size=8) for k in set(labels)}
    hr = unit(np.array([centre[k] + 0.6 * rng.normal(size=8) for k in labels]))
    sr = unit(hr + 0.5 * rng.normal(size=hr.shape))
    scored = np.array([True] * 9 + [False])
    metrics, arrays = label_metrics(sr, hr, labels, scored)
    ranks = []
    for i in range(10):
        if not scored[i] or labels.count(labels[i]) < 2:
            continue
        s = hr @ sr[i]
        mates = [s[j] for j in range(10) if j != i and labels[j] == labels[i]]
        others = [s[j] for j in range(10) if j != i and labels[j] != labels[i]]
        ranks.append(1 + sum(o >= max(mates) for o in others))
    np.testing.assert_array_equal(arrays["probe_rank"], ranks)
    assert metrics["rank1"] == np.mean(np.array(ranks) == 1) and metrics["rank1_n_no_mate"] == 1
    pairs = list(itertools.combinations(np.flatnonzero(scored), 2))
    scores = np.array([sr[i] @ sr[j] for i, j in pairs])
    same = np.array([labels[i] == labels[j] for i, j in pairs])
    assert metrics["verification_n_pairs"] == len(pairs) == 36
    assert metrics["auc"] == pytest.approx(roc_auc_score(same, scores), abs=1e-12)
    far, tar, _ = roc_curve(same, scores)
    frr = 1 - tar
    k = np.argmax(far >= frr)
    assert min(far[k - 1], frr[k - 1]) - 1e-12 <= metrics["eer"] <= max(far[k], frr[k]) + 1e-12


def test_summary_states_counts_and_never_divides_by_missing():
    values = np.array([1.0, np.nan, 3.0, np.nan, 5.0])
    scored = np.array([True, True, True, False, True])  # index 1: scored but failed; 3: missing
    s = summary(values, scored, counts_inf=False)
    assert (s["mean"], s["n"], s["n_scored"], s["n_missing"], s["n_failed"]) == (3.0, 3, 4, 1, 1)
    assert s["std"] == pytest.approx(np.std([1.0, 3.0, 5.0]))
