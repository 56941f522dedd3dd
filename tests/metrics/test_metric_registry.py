"""The metric registry (issue 12): a metric's metadata travels with it, and a per-image metric
registered in a test module is computed, cached, ranked, compared and plotted with no other
file changed; an unregistered metric cannot be ranked by guesswork."""
import json
import sqlite3
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from benchmark.engine import runner
from benchmark.reporting.compare import compare_models
from benchmark.errors import ConfigError
from benchmark.reporting.leaderboard import build_tables
from benchmark.contracts.metric import MetricSpec, metric_spec
from benchmark.reporting.plots import cumulative_score_distribution, plot_csd
from benchmark.engine.protocols import load_protocol
from benchmark.engine.store import ResultStore

ROOT_PROTOCOLS = Path(__file__).resolve().parents[2] / "protocols"

Y_WEIGHTS = np.array([65.481, 128.553, 24.966])


def mean_abs_y(sr, hr, crop_border=0):
    """A toy per-image metric: mean |Y(SR) - Y(HR)| on 0..255, lower is better."""
    calls.append(len(sr))
    diff = np.einsum("nchw,c->nhw", np.asarray(sr, np.float64) - np.asarray(hr, np.float64), Y_WEIGHTS)
    return np.abs(diff).mean(axis=(1, 2))


def dim_nearest(x):
    """A worse model for the ranking: nearest-neighbour upsampling, 20 % darker."""
    return torch.nn.functional.interpolate(x, scale_factor=4.0, mode="nearest") * 0.8


calls = []
MAE = MetricSpec("mae_y", "MAE on Y", lower_better=True, digits=3, std="mae_y_std", per_item="images",
                 per_image=mean_abs_y, identical=0.0, summary="toy: mean absolute error on Y")


def test_builtin_metadata_directions_and_levels():
    assert metric_spec("eer").lower_better and metric_spec("fr_loss").lower_better
    assert not metric_spec("accuracy").lower_better and metric_spec("accuracy").factor == 100
    at = metric_spec("rank1@16x14")
    assert at.header == "Rank-1 (%) @16x14" and at.std == "rank1@16x14_std" and at.per_item == "probes"
    assert metric_spec("accuracy_std").name == "accuracy"  # a std is shown in its mean's units


def test_an_unregistered_metric_is_refused_not_ranked_as_higher_is_better(proto_dir):
    spec = yaml.safe_load((ROOT_PROTOCOLS / "lfw-10fold.yaml").read_text())
    spec.update(name="toy-unknown", metrics=["accuracy", "sharpness"], primary_metric="sharpness")
    (proto_dir / "toy-unknown.yaml").write_text(yaml.safe_dump(spec))
    with pytest.raises(ConfigError, match=r"'sharpness' are not registered"):
        load_protocol("toy-unknown")
    with pytest.raises(ConfigError, match="not registered"):
        metric_spec("sharpness")


def test_lower_better_csd_counts_images_at_least_that_good():
    x, y = cumulative_score_distribution([3.0, 1.0, 2.0, 1.0], lower_better=True)
    assert x.tolist() == [1.0, 2.0, 3.0] and y.tolist() == [0.5, 0.75, 1.0]


def test_a_per_image_metric_registered_here_is_computed_cached_ranked_compared_and_plotted(
        tiny_lfw, tmp_path, proto_dir, toy_metrics):
    toy_metrics(MAE)
    spec = yaml.safe_load((ROOT_PROTOCOLS / "lfw-10fold.yaml").read_text())
    spec.update(name="toy-mae", metrics=["mae_y", "mae_y_std", "accuracy", "psnr"], primary_metric="mae_y")
    (proto_dir / "toy-mae.yaml").write_text(yaml.safe_dump(spec))
    store, cache = tmp_path / "r.sqlite", tmp_path / "cache"

    def run(model, name=None):
        return runner.run(runner.RunOptions(model=model, protocol="toy-mae", scale=4, data_root=str(tiny_lfw),
                                            store=str(store), cache_dir=str(cache), progress=False, name=name))

    calls.clear()
    results = {m: run(m) for m in ("hr", "bicubic", "nearest")}
    results["dim"] = run("test_metric_registry:dim_nearest", name="dim")
    # computed: the mean and std over the 24 images, and the per-image array for paired tests
    from benchmark.faces.images import read_batch
    from benchmark.contracts.degradation import make_degradation
    from benchmark.faces.resize import upsampled_model_input
    from conftest import pairs_txt_images

    hr = read_batch(pairs_txt_images(tiny_lfw))
    want = mean_abs_y(upsampled_model_input(make_degradation("bicubic", scale=4)(hr), (112, 96)), hr)
    got = results["bicubic"]["metrics"]
    assert got["mae_y"] == pytest.approx(want.mean(), rel=1e-12) and got["mae_y_std"] == pytest.approx(want.std())
    assert results["hr"]["metrics"]["mae_y"] == 0.0  # identical images, by its declared value
    st = ResultStore(store)
    (rec,) = st.runs(model="bicubic")
    np.testing.assert_allclose(st.arrays(rec.id)["mae_y"], want, rtol=1e-12)
    # cached: a re-run computes nothing and calls the metric no more
    calls.clear()
    again = run("bicubic")
    assert calls == [] and again["manifest"]["cache"]["computed"]["x4"] == 0
    assert again["metrics"]["mae_y"] == got["mae_y"]
    with sqlite3.connect(again["manifest"]["cache"]["sr"]["x4"]) as con:
        assert json.loads(con.execute("SELECT json FROM setting").fetchone()[0])["metrics"] == ["psnr", "ssim",
                                                                                                "mae_y"]
    # ranked: lower is better, so the smaller MAE leads (bicubic is the lower-bound row, unranked)
    (table,) = build_tables(st, protocol="toy-mae", scale=4)
    assert table.metrics == ["mae_y", "accuracy", "psnr"] and table.with_std == ["mae_y"]
    ranked = [r for r in table.rows if not r["reference"]]
    assert results["nearest"]["metrics"]["mae_y"] < results["dim"]["metrics"]["mae_y"]
    assert [r["model"] for r in ranked] == ["nearest", "dim"]
    # compared: a paired bootstrap interval of B - A on the per-image values
    comparison = compare_models(st, "toy-mae", "bicubic", "nearest", scale=4, n_resamples=200)
    (iv,) = [i for i in comparison.intervals if i.metric == "mae_y"]
    nearest = results["nearest"]["metrics"]["mae_y"]
    assert iv.difference == pytest.approx(nearest - got["mae_y"]) and iv.unit == "images"
    # plotted: its CSD counts images with MAE <= x
    fig = plot_csd(st, "toy-mae", metric="mae_y", scale=4)
    assert fig.axes[0].get_xlabel() == "MAE on Y" and "≤" in fig.axes[0].get_ylabel()


def cosine_distance(sr_emb, hr_emb):
    """A toy embedding-pair metric: 1 - cos(SR, HR), lower is better."""
    a, b = np.asarray(sr_emb, np.float64), np.asarray(hr_emb, np.float64)
    return 1 - (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


COS = MetricSpec("cos_dist", "1 - cos", lower_better=True, digits=4, std="cos_dist_std", per_item="images",
                 per_pair=cosine_distance, identical=0.0, summary="toy: cosine distance of the embeddings")


def test_an_embedding_pair_metric_registered_here_is_stored_per_image(tiny_lfw, tmp_path, proto_dir, toy_metrics):
    """A metric of the SR and HR embeddings (as IDS or FR loss) is one MetricSpec with
    ``per_pair``: the runner stores its mean, std and per-image array, and the hr row's is 0."""
    toy_metrics(COS)
    spec = yaml.safe_load((ROOT_PROTOCOLS / "lfw-10fold.yaml").read_text())
    spec.update(name="toy-cos", metrics=["cos_dist", "fr_loss", "accuracy"], primary_metric="cos_dist")
    (proto_dir / "toy-cos.yaml").write_text(yaml.safe_dump(spec))
    store = tmp_path / "r.sqlite"

    def run(model):
        return runner.run(runner.RunOptions(model=model, protocol="toy-cos", scale=4, data_root=str(tiny_lfw),
                                            store=str(store), cache_dir=str(tmp_path / "c"), progress=False))

    got = run("bicubic")["metrics"]
    st = ResultStore(store)
    (rec,) = st.runs(model="bicubic")
    arrays = st.arrays(rec.id)
    # unit embeddings: FR loss = sqrt(2 - 2 cos) = sqrt(2 cos_dist), image by image
    np.testing.assert_allclose(arrays["fr_loss"], np.sqrt(2 * arrays["cos_dist"]), atol=1e-6)
    assert got["cos_dist"] == pytest.approx(arrays["cos_dist"].mean(), rel=1e-12) and got["cos_dist"] > 0
    assert run("hr")["metrics"]["cos_dist"] == 0.0
