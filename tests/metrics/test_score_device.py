"""Identification scoring on a device (issue 13): kNN, CMC and BLUFR run their score blocks'
products through ``benchmark.score_blocks`` on ``device``; the tie rules and counting stay NumPy.

Oracles: the same functions on the NumPy path (device=None), and float64 products for the
blocks. Torch on the CPU stands in for a GPU here; the CUDA cases skip without one. Equality of
the metrics is exact: the test embeddings have no score within float32 rounding of a tie or a
threshold, so a different summation order cannot change a decision."""
import types

import numpy as np
import pytest
import torch

from benchmark.engine.runner import scoring_device
from benchmark.errors import MetricError
from conftest import clustered_embeddings, random_blufr_config
from benchmark.metrics.identification import cmc_gallery_probe, cmc_leave_one_out, gallery_probe_split, knn_leave_one_out
from benchmark.metrics.openset import blufr_open_set, blufr_trials, blufr_verification
from benchmark.score_blocks import ScoreDevice, score_device
from benchmark.tasks.loo_identification import LeaveOneOutIdentification

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def _embeddings(n=200, dim=24, n_ids=40, seed=0):
    return clustered_embeddings(n, dim, n_ids, seed, centre_weight=1.2)


@pytest.mark.parametrize("device", DEVICES)
def test_blocks_are_the_float32_product(device):
    rng = np.random.default_rng(1)
    a, b = rng.standard_normal((2, 70, 33)).astype(np.float32)
    scorer = ScoreDevice(device)
    a_there, b_there = scorer.put(a), scorer.put(b)
    assert isinstance(a_there, torch.Tensor) and a_there.device.type == device
    got = scorer.scores(a_there[10:40], b_there)
    assert got.dtype == np.float32 and got.shape == (30, 70)
    np.testing.assert_allclose(got, a[10:40].astype(np.float64) @ b.T.astype(np.float64), atol=1e-5)
    out = np.full((30, 70), np.nan, dtype=np.float32)
    assert scorer.scores(a_there[10:40], b_there, out=out) is out
    np.testing.assert_array_equal(out, got)


def test_numpy_is_the_default_and_needs_no_torch():
    assert score_device(None).device is None and score_device("numpy").device is None
    a = np.eye(3, dtype=np.float32)
    assert score_device(None).put(a) is a


def test_products_run_in_full_float32_whatever_the_caller_set():
    previous = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("medium")  # what a model script may set for speed
    try:
        scorer = ScoreDevice("cpu")
        rows = scorer.put(np.ones((2, 3), dtype=np.float32))
        seen = []
        real_matmul = torch.Tensor.__matmul__

        def spy(x, y):
            seen.append(torch.get_float32_matmul_precision())
            return real_matmul(x, y)

        torch.Tensor.__matmul__ = spy
        try:
            scorer.scores(rows, rows)
        finally:
            torch.Tensor.__matmul__ = real_matmul
        assert seen == ["highest"]
        assert torch.get_float32_matmul_precision() == "medium"  # restored
    finally:
        torch.set_float32_matmul_precision(previous)


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA present: the device exists")
def test_an_unavailable_device_is_one_line():
    with pytest.raises(MetricError, match=r"scoring device 'cuda' is not available") as err:
        knn_leave_one_out(*_embeddings(), ks=(1,), device="cuda")
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("device", DEVICES)
def test_knn_and_cmc_on_the_device_equal_numpy(device):
    emb, labels = _embeddings()
    ref = knn_leave_one_out(emb, labels, ks=(1, 5, 10))
    assert knn_leave_one_out(emb, labels, ks=(1, 5, 10), device=device) == ref
    assert 0.3 < ref[1] < 1.0  # not a trivial set
    a, b = cmc_leave_one_out(emb, labels, 20, device=device), cmc_leave_one_out(emb, labels, 20)
    np.testing.assert_array_equal(a.ranks, b.ranks)
    np.testing.assert_array_equal(a.curve, b.curve)
    gallery, probes = gallery_probe_split(labels, seed=0, repeat=0)
    a = cmc_gallery_probe(emb[gallery], labels[gallery], emb[probes], labels[probes], 10, device=device)
    b = cmc_gallery_probe(emb[gallery], labels[gallery], emb[probes], labels[probes], 10)
    np.testing.assert_array_equal(a.ranks, b.ranks)
    assert 1 < b.ranks.max()  # some probes miss at rank 1


@pytest.mark.parametrize("device", DEVICES)
def test_blufr_on_the_device_equals_numpy(device, monkeypatch):
    import benchmark.metrics.openset as openset

    monkeypatch.setattr(openset, "BLOCK_ROWS", 64)  # several blocks per pass
    emb, labels = _embeddings(n=240, n_ids=90, seed=3)
    config = random_blufr_config(labels, n_trials=3, test_size=180)
    tests, galleries, probes = config.test_index, config.gallery_index, config.probe_index
    fars = (0.001, 0.01, 0.1, 1.0)
    a = blufr_trials(emb, labels, config, vr_curve_fars=fars, dir_curve_fars=fars, device=device)
    b = blufr_trials(emb, labels, config, vr_curve_fars=fars, dir_curve_fars=fars)
    for name in ("vr", "dir", "vr_curve", "dir_curve"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    assert 0 < b.vr_curve[:, 1].mean() < 1 and 0 < b.dir_curve[:, 2].mean() < 1
    np.testing.assert_array_equal(blufr_verification(emb, labels, tests[0], fars, device=device),
                                  blufr_verification(emb, labels, tests[0], fars))
    np.testing.assert_array_equal(blufr_open_set(emb, labels, galleries[0], probes[0], fars, device=device),
                                  blufr_open_set(emb, labels, galleries[0], probes[0], fars))


def test_a_task_scores_on_its_scoring_device(monkeypatch):
    """The runner sets ``task.scoring_device`` from --device; the task hands it to the metrics."""
    emb, labels = _embeddings()
    task = LeaveOneOutIdentification.__new__(LeaveOneOutIdentification)
    task.options = dict(LeaveOneOutIdentification.OPTIONS, max_rank=20)
    task._faces = types.SimpleNamespace(labels=labels)
    used = []
    real_scores = ScoreDevice.scores

    def spy(self, a, b, out=None):
        used.append(self.device)
        return real_scores(self, a, b, out)

    monkeypatch.setattr(ScoreDevice, "scores", spy)
    on_numpy = task.score_level(None, emb)
    assert set(used) == {None}
    used.clear()
    task.scoring_device = "cpu"
    on_torch = task.score_level(None, emb)
    assert set(used) == {"cpu"}
    assert on_torch[0] == on_numpy[0]


def test_the_runner_scores_on_its_device_but_keeps_the_cpu_on_numpy():
    assert scoring_device("cpu") is None
    assert scoring_device("cuda:1") == "cuda:1"
