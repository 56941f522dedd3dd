"""B - A over replicate pairs (seeds): the t summary against scipy's paired t test and a
hand-worked case, stored replicates against one-pair comparisons, and the replicates that
must not be summarised together."""
import json

import numpy as np
import pytest
from click.testing import CliRunner
from scipy import stats

from benchmark.cli import main
from benchmark.engine.store import ResultStore
from benchmark.errors import FhbenchError
from benchmark.reporting.compare import compare_models
from benchmark.reporting.compare_replicates import compare_replicates, format_replicates, t_summary

PROTOCOL = "lfw-10fold"


@pytest.fixture(autouse=True)
def shipped_protocols_only(monkeypatch):
    monkeypatch.delenv("FHBENCH_PROTOCOLS", raising=False)


def test_t_summary_hand_worked():
    # d = 1, 2, 3: mean 2, sd 1; t(2)'s cdf is F(x) = 1/2 + x / (2 sqrt(2 + x^2)), so F(q) = 0.975 at
    # q^2 = 2 0.95^2 / (1 - 0.95^2) (q = 4.3027), and the half width is q / sqrt(3)
    s = t_summary("psnr", [10, 10, 10], [11, 12, 13])
    assert s.differences == [1, 2, 3] and s.mean_difference == 2 and s.sd_difference == 1
    half = np.sqrt(2 * 0.95 ** 2 / (1 - 0.95 ** 2)) / np.sqrt(3)
    assert (s.low, s.high) == (pytest.approx(2 - half, rel=1e-12), pytest.approx(2 + half, rel=1e-12))
    # t = 2 / (1 / sqrt 3) = 2 sqrt 3, and p = 2 (1 - F(t)) = 1 - t / sqrt(2 + t^2) = 1 - sqrt(12 / 14)
    assert s.p_value == pytest.approx(1 - np.sqrt(12 / 14), rel=1e-12)


@pytest.mark.parametrize("seed", range(5))
def test_t_summary_against_scipy(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(2, 12))
    a = rng.normal(0.9, 0.01, n)
    b = a + rng.normal(rng.uniform(-0.01, 0.01), 0.005, n)
    confidence = float(rng.uniform(0.8, 0.99))
    s = t_summary("accuracy", a, b, confidence)
    assert s.p_value == pytest.approx(stats.ttest_rel(b, a).pvalue, rel=1e-9)
    d = b - a
    low, high = stats.t.interval(confidence, n - 1, loc=d.mean(), scale=stats.sem(d))
    assert (s.low, s.high) == (pytest.approx(low, rel=1e-9), pytest.approx(high, rel=1e-9))
    assert s.sd_difference == pytest.approx(np.std(d, ddof=1))


def test_t_summary_without_spread_or_pairs():
    s = t_summary("psnr", [1.0, 2.0], [1.5, 2.5])
    assert s.p_value is None and s.low == s.high == s.mean_difference == 0.5
    with pytest.raises(FhbenchError, match="at least 2 pairs of values, got 1 and 1"):
        t_summary("psnr", [1.0], [2.0])


# --- stored replicates ---------------------------------------------------------------------

def pairs(rng, quality, n_per_fold=30):
    fold = np.repeat(np.arange(10), n_per_fold)
    same = np.tile(np.arange(n_per_fold) % 2 == 0, 10)
    return {"pair_scores": np.where(same, quality, 0) + rng.normal(0, 0.5, len(same)),
            "pair_is_same": same, "pair_fold": fold}


@pytest.fixture
def store(tmp_path):
    """Three seeds of a control (a1..a3) and of an idea (b1..b3), x8, SFace."""
    rng = np.random.default_rng(7)
    st = ResultStore(tmp_path / "r.sqlite")
    for i in (1, 2, 3):
        for arm, quality, psnr in (("a", 0.8, 25.0), ("b", 0.8 + 0.2 * i, 25.0 + 0.1 * i)):
            arrays = {**pairs(rng, quality), "psnr": rng.normal(psnr, 0.5, 40), "ssim": rng.uniform(0.5, 0.9, 40)}
            st.save(f"{arm}{i}", PROTOCOL, 8, "sface", {}, {}, arrays)
    return st


def test_replicates_summarise_each_pairs_difference(store):
    pairs_ = [("a1", "b1"), ("a2", "b2"), ("a3", "b3")]
    r = compare_replicates(store, PROTOCOL, pairs_, n_resamples=300)
    singles = [compare_models(store, PROTOCOL, a, b, n_resamples=300) for a, b in pairs_]
    assert [(c.model_a, c.model_b) for c in r.pairs] == pairs_
    by_metric = {s.metric: s for s in r.summaries}
    assert set(by_metric) == {"accuracy", "psnr", "ssim"}
    for metric, s in by_metric.items():
        d = [next(iv.difference for iv in c.intervals if iv.metric == metric) for c in singles]
        assert s.differences == pytest.approx(d, abs=1e-12)
        assert s.mean_difference == pytest.approx(np.mean(d))
        assert s.p_value == pytest.approx(stats.ttest_1samp(d, 0).pvalue, rel=1e-9)
        assert s.values_a == pytest.approx([next(iv.value_a for iv in c.intervals if iv.metric == metric)
                                            for c in singles])
    text = format_replicates(r)
    assert "lfw-10fold, x8, evaluator sface: 3 replicate pairs (A_i, B_i); differences are B - A" in text
    assert "  3. A = a3, B = b3: accuracy " in text and "McNemar p = " in text
    assert json.loads(format_replicates(r, "json"))["summaries"][0]["metric"] == "accuracy"
    assert "| accuracy |" in format_replicates(r, "md")


def test_replicates_that_must_not_be_summarised(store):
    with pytest.raises(FhbenchError, match="at least 2 pairs of models, got 1"):
        compare_replicates(store, PROTOCOL, [("a1", "b1")])
    with pytest.raises(FhbenchError, match="a1 appears more than once"):
        compare_replicates(store, PROTOCOL, [("a1", "b1"), ("a1", "b2")])
    rng = np.random.default_rng(0)
    store.save("a4", PROTOCOL, 4, "sface", {}, {}, pairs(rng, 1.0))
    store.save("b4", PROTOCOL, 4, "sface", {}, {}, pairs(rng, 1.0))
    with pytest.raises(FhbenchError, match=r"must share scale and evaluator: a1 / b1 at x8 with sface; "
                                           r"a4 / b4 at x4 with sface"):
        compare_replicates(store, PROTOCOL, [("a1", "b1"), ("a4", "b4")])
    other = pairs(rng, 1.0, n_per_fold=20)  # another pairs list
    store.save("a5", PROTOCOL, 8, "sface", {}, {}, other)
    store.save("b5", PROTOCOL, 8, "sface", {}, {}, {**other, "pair_scores": other["pair_scores"] + 0.1})
    with pytest.raises(FhbenchError, match="replicates a1 and a5 were scored on different test items"):
        compare_replicates(store, PROTOCOL, [("a1", "b1"), ("a5", "b5")])


def test_cli_compare_with_replicates(store):
    base = ["compare", "a1", "b1", "--protocol", PROTOCOL, "--resamples", "200", "--store", str(store.path)]
    res = CliRunner().invoke(main, base + ["--replicate", "a2", "b2", "--replicate", "a3", "b3"])
    assert res.exit_code == 0, res.output
    assert "3 replicate pairs" in res.output and "t-test p" in res.output
    res = CliRunner().invoke(main, base + ["--replicate", "a2", "b2", "--folds", "6-10", "--format", "json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    assert [s["metric"] for s in out["summaries"]] == ["accuracy"]
    assert all(p["folds"] == [6, 7, 8, 9, 10] and p["mcnemar"]["n_pairs"] == 150 for p in out["pairs"])
    res = CliRunner().invoke(main, base + ["--replicate", "a2", "nope"])
    assert res.exit_code == 2 and "no run of model nope on protocol lfw-10fold" in res.output
