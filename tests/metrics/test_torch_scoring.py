"""Task scoring takes torch tensors (issue 13): the 10-fold threshold search, ROC/AUC/EER,
BLUFR and kNN/CMC give identical results for tensors (CPU, and CUDA where present) and for the
NumPy arrays they hold. Oracle: the same functions on NumPy input, and sklearn's AUC."""

import numpy as np
import pytest
import torch

from benchmark.errors import MetricError
from conftest import clustered_embeddings, random_blufr_config
from benchmark.metrics.identification import (cmc_gallery_probe, cmc_leave_one_out, gallery_probe_split,
                                              knn_leave_one_out)
from benchmark.metrics.openset import blufr_open_set, blufr_tar_at_far, blufr_trials, blufr_verification
from benchmark.metrics.verification import as_array, eer, roc_auc, roc_curve_exact, tar_at_far, ten_fold_accuracy

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def _embeddings(n=120, dim=16, n_ids=20, seed=0):
    emb, labels = clustered_embeddings(n, dim, n_ids, seed, centre_weight=1.5)
    return emb / np.linalg.norm(emb, axis=1, keepdims=True), labels


def _pairs(seed=0, n=600):
    rng = np.random.default_rng(seed)
    same = rng.random(n) < 0.5
    scores = (rng.standard_normal(n) + 1.2 * same).astype(np.float32)
    scores[::17] = scores[1::17][: len(scores[::17])]  # some exact ties
    folds = np.repeat(np.arange(10), n // 10)
    return scores, same, folds


def test_as_array_leaves_numpy_alone_and_copies_tensors():
    a = np.arange(3.0)
    assert as_array(a) is a and as_array([1, 2]) == [1, 2]
    t = torch.arange(4, dtype=torch.int64, requires_grad=False)
    assert as_array(t).dtype == np.int64 and as_array(t).tolist() == [0, 1, 2, 3]
    g = torch.ones(2, requires_grad=True) * 2
    assert as_array(g).tolist() == [2.0, 2.0]
    assert as_array(torch.tensor([0.5], dtype=torch.bfloat16)).dtype == np.float32


@pytest.mark.parametrize("device", DEVICES)
def test_verification_on_tensors_is_identical(device):
    from sklearn.metrics import roc_auc_score

    scores, same, folds = _pairs()
    ts, tl, tf = (torch.from_numpy(x).to(device) for x in (scores, same, folds))
    ref = ten_fold_accuracy(scores, same, folds)
    got = ten_fold_accuracy(ts, tl, tf)
    np.testing.assert_array_equal(got.accuracies, ref.accuracies)
    np.testing.assert_array_equal(got.thresholds, ref.thresholds)
    assert (got.mean, got.std) == (ref.mean, ref.std)
    assert 0.6 < ref.mean < 0.95
    # 0/1 integer labels as a tensor too
    assert ten_fold_accuracy(ts, tl.to(torch.int64), tf).mean == ref.mean
    for a, b in zip(roc_curve_exact(ts, tl), roc_curve_exact(scores, same)):
        np.testing.assert_array_equal(a, b)
    assert roc_auc(ts, tl) == roc_auc(scores, same) == pytest.approx(roc_auc_score(same, scores), abs=1e-15)
    assert eer(ts, tl) == eer(scores, same)
    assert tar_at_far(ts, tl, 0.01) == tar_at_far(scores, same, 0.01)


@pytest.mark.parametrize("device", DEVICES)
def test_identification_on_tensors_is_identical(device):
    emb, labels = _embeddings()
    te, tl = torch.from_numpy(emb).to(device), torch.from_numpy(labels).to(device)
    assert knn_leave_one_out(te, tl, ks=torch.tensor([1, 5])) == knn_leave_one_out(emb, labels, ks=(1, 5))
    a, b = cmc_leave_one_out(te, tl, max_rank=10), cmc_leave_one_out(emb, labels, max_rank=10)
    np.testing.assert_array_equal(a.curve, b.curve)
    np.testing.assert_array_equal(a.ranks, b.ranks)
    gallery, probes = gallery_probe_split(labels, seed=0, repeat=0)
    g2, p2 = gallery_probe_split(tl, seed=0, repeat=0)
    np.testing.assert_array_equal(g2, gallery)
    np.testing.assert_array_equal(p2, probes)
    a = cmc_gallery_probe(te[torch.from_numpy(gallery).to(device)], tl[torch.from_numpy(gallery).to(device)],
                          te[torch.from_numpy(probes).to(device)], tl[torch.from_numpy(probes).to(device)], 5)
    b = cmc_gallery_probe(emb[gallery], labels[gallery], emb[probes], labels[probes], 5)
    np.testing.assert_array_equal(a.curve, b.curve)
    assert 0.3 < b.curve[0] < 1.0


@pytest.mark.parametrize("device", DEVICES)
def test_blufr_on_tensors_is_identical(device):
    emb, labels = _embeddings(n=160, n_ids=70, seed=3)
    config = random_blufr_config(labels, n_trials=4, test_size=120)
    tests, galleries, probes = config.test_index, config.gallery_index, config.probe_index
    te, tl = torch.from_numpy(emb).to(device), torch.from_numpy(labels).to(device)
    fars = (0.001, 0.01, 0.1, 1.0)
    a = blufr_trials(te, tl, config, vr_curve_fars=fars, dir_curve_fars=fars)
    b = blufr_trials(emb, labels, config, vr_curve_fars=fars, dir_curve_fars=fars)
    for name in ("vr", "dir", "vr_curve", "dir_curve"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    assert 0 < b.vr_curve[:, 1].mean() < 1
    tt = torch.from_numpy(tests[0]).to(device)
    np.testing.assert_array_equal(blufr_verification(te, tl, tt, torch.tensor(fars)),
                                  blufr_verification(emb, labels, tests[0], fars))
    np.testing.assert_array_equal(
        blufr_open_set(te, tl, torch.from_numpy(galleries[0]).to(device), torch.from_numpy(probes[0]).to(device),
                       fars),
        blufr_open_set(emb, labels, galleries[0], probes[0], fars))
    gen, imp = emb[:50] @ emb[50:60].T, emb[60:] @ emb[:20].T
    np.testing.assert_array_equal(
        blufr_tar_at_far(torch.from_numpy(gen.ravel()).to(device), torch.from_numpy(imp.ravel()).to(device), fars),
        blufr_tar_at_far(gen.ravel(), imp.ravel(), fars))


def test_bad_tensors_are_refused_like_arrays():
    with pytest.raises(MetricError, match="NaN or inf"):
        roc_auc(torch.tensor([0.1, float("nan")]), torch.tensor([True, False]))
    with pytest.raises(MetricError, match="folds must be integers"):
        ten_fold_accuracy(torch.zeros(20), torch.arange(20) % 2, torch.zeros(20))
    with pytest.raises(MetricError, match="all zeros"):
        knn_leave_one_out(torch.zeros(4, 3), torch.tensor([0, 0, 1, 1]), ks=(1,))
