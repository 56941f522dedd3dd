"""IDS / IDD against hand-computed angles, FR loss = sqrt(2 - 2 IDS), and end to end:
stored per image by a run, ranked in the right direction, paired by ``compare``."""
import math

import numpy as np
import pytest
import yaml

from benchmark.engine import runner
from benchmark.engine.protocols import PROTOCOL_DIRS
from benchmark.engine.store import ResultStore
from benchmark.errors import MetricError
from benchmark.metrics.identity import identity_angle_deg, identity_angle_rad, identity_similarity
from benchmark.metrics.image import fr_loss
from benchmark.contracts.metric import metric_spec, metrics_per_item, pair_metrics

ROOT_PROTOCOLS = PROTOCOL_DIRS[0]


def test_hand_computed_angles():
    s3 = math.sqrt(3) / 2
    sr = np.array([[1, 0, 0], [1, 0, 0], [1, 0, 0], [0.5, s3, 0], [3, 0, 0], [1, 1, 0]], float)
    hr = np.array([[1, 0, 0], [0, 1, 0], [-1, 0, 0], [1, 0, 0], [0, 0, 2], [1, 0, 0]], float)
    # same, orthogonal, opposite, 60 degrees, orthogonal and not unit, 45 degrees
    np.testing.assert_allclose(identity_similarity(sr, hr), [1, 0, -1, 0.5, 0, math.sqrt(0.5)], atol=1e-12)
    np.testing.assert_allclose(identity_angle_deg(sr, hr), [0, 90, 180, 60, 90, 45], atol=1e-9)
    np.testing.assert_allclose(identity_angle_rad(sr, hr), [0, math.pi / 2, math.pi, math.pi / 3,
                                                            math.pi / 2, math.pi / 4], atol=1e-12)


def test_small_angles_are_accurate_where_arccos_is_not():
    """0.001 degrees apart in float32 unit rows: arccos of the cosine cannot
    resolve it (about 1e-8 rad of error); the angle here agrees with the angle the rows were built at."""
    t = np.deg2rad(np.array([1e-3, 1e-2, 0.1, 1.0]))
    sr = np.stack([np.cos(t), np.sin(t), np.zeros_like(t)], 1).astype(np.float32)
    hr = np.tile(np.array([[1, 0, 0]], np.float32), (len(t), 1))
    # the float32 rows' own angle, from their exact (float64) coordinates
    exact = np.degrees(np.arctan2(sr[:, 1].astype(np.float64), sr[:, 0].astype(np.float64)))
    np.testing.assert_allclose(identity_angle_deg(sr, hr), exact, rtol=1e-9)


def test_fr_loss_is_sqrt_2_minus_2_ids_for_unit_embeddings():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(50, 128)), rng.normal(size=(50, 128))
    b[:10] = a[:10] + 0.05 * b[:10]  # some close pairs too
    a /= np.linalg.norm(a, axis=1, keepdims=True)
    b /= np.linalg.norm(b, axis=1, keepdims=True)
    ids = identity_similarity(a, b)
    np.testing.assert_allclose(fr_loss(a, b), np.sqrt(2 - 2 * ids), atol=1e-12)
    # and FR loss = 2 sin(IDD / 2): the chord of the angle
    np.testing.assert_allclose(fr_loss(a, b), 2 * np.sin(identity_angle_rad(a, b) / 2), atol=1e-12)
    # the oracle for IDS is numpy's dot product directly
    np.testing.assert_allclose(ids, np.sum(a * b, axis=1), atol=1e-12)


def test_bad_embeddings_name_the_problem():
    with pytest.raises(MetricError, match="shape"):
        identity_similarity(np.zeros((3, 4)), np.zeros((3, 5)))
    with pytest.raises(MetricError, match="must be"):
        identity_angle_deg(np.zeros(4), np.zeros(4))
    with pytest.raises(MetricError, match="hr_emb row 1 is zero"):
        identity_angle_deg(np.ones((2, 3)), np.array([[1.0, 0, 0], [0, 0, 0]]))


def test_registered_with_direction_format_and_per_image_arrays():
    ids, idd, rad = metric_spec("ids"), metric_spec("idd"), metric_spec("idd_rad")
    assert not ids.lower_better and idd.lower_better and rad.lower_better
    assert (ids.identical, idd.identical, rad.identical) == (1.0, 0.0, 0.0)
    assert {"ids", "idd", "idd_rad"} <= {m.name for m in pair_metrics()}
    assert {"ids", "idd", "idd_rad"} <= {m.name for m in metrics_per_item("images")}
    names = [m.name for m in pair_metrics()]
    assert names.index("fr_loss") < names.index("ids") < names.index("idd")


def test_a_run_stores_ids_and_idd_per_image_and_compare_pairs_them(tiny_lfw, tmp_path, proto_dir):
    from benchmark.reporting.compare import compare_models
    from benchmark.reporting.leaderboard import build_tables

    spec = yaml.safe_load((ROOT_PROTOCOLS / "lfw-10fold.yaml").read_text())
    spec.update(name="toy-ids", metrics=["ids", "idd", "fr_loss", "accuracy"], primary_metric="idd")
    (proto_dir / "toy-ids.yaml").write_text(yaml.safe_dump(spec))
    store = tmp_path / "r.sqlite"

    def run(model):
        return runner.run(runner.RunOptions(model=model, protocol="toy-ids", scale=4, data_root=str(tiny_lfw),
                                            store=str(store), cache_dir=str(tmp_path / "c"), progress=False))

    got = {m: run(m)["metrics"] for m in ("hr", "bicubic", "nearest")}
    st = ResultStore(store)
    (rec,) = st.runs(model="bicubic")
    arrays = st.arrays(rec.id)
    np.testing.assert_allclose(arrays["fr_loss"], np.sqrt(2 - 2 * arrays["ids"]), atol=1e-5)
    np.testing.assert_allclose(np.cos(np.deg2rad(arrays["idd"])), arrays["ids"], atol=1e-6)
    np.testing.assert_allclose(arrays["idd_rad"], np.deg2rad(arrays["idd"]), rtol=1e-12)
    assert got["bicubic"]["ids"] == pytest.approx(arrays["ids"].mean(), rel=1e-12)
    assert got["bicubic"]["idd_std"] == pytest.approx(arrays["idd"].std(), rel=1e-9)
    assert 0 < got["bicubic"]["idd"] < 90 and got["bicubic"]["ids"] < 1
    assert (got["hr"]["ids"], got["hr"]["idd"], got["hr"]["idd_rad"]) == (1.0, 0.0, 0.0)
    # ranked by IDD, lower first (the bicubic row is the lower bound, unranked)
    (table,) = build_tables(st, protocol="toy-ids", scale=4)
    assert table.metrics[:2] == ["ids", "idd"]
    c = compare_models(st, "toy-ids", "bicubic", "nearest", scale=4, n_resamples=200)
    iv = {i.metric: i for i in c.intervals}
    assert iv["idd"].unit == "images"
    assert iv["idd"].difference == pytest.approx(got["nearest"]["idd"] - got["bicubic"]["idd"])
    assert iv["ids"].difference == pytest.approx(got["nearest"]["ids"] - got["bicubic"]["ids"])
