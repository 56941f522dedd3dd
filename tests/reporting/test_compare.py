"""Paired comparisons: McNemar's exact test against scipy's binomial test and a hand-worked
case, paired bootstrap intervals (coverage on synthetic data, within-stratum resampling,
seeded), the comparison of two stored runs, and the runs that must not be compared."""
import json

import numpy as np
import pytest
from click.testing import CliRunner
from scipy.stats import binomtest

from benchmark.cli import main
from benchmark.reporting.compare import (bootstrap_difference, compare_models, compare_runs, format_comparison, mcnemar_exact,
                                         parse_folds, verification_correct)
from benchmark.errors import FhbenchError
from benchmark.engine.store import ResultStore

PROTOCOL = "lfw-10fold"


@pytest.fixture(autouse=True)
def shipped_protocols_only(monkeypatch):
    monkeypatch.delenv("FHBENCH_PROTOCOLS", raising=False)


# --- McNemar ---------------------------------------------------------------------------

def test_mcnemar_hand_worked():
    # 2 pairs only A gets right, 8 only B, 5 both, 3 neither.
    a = [1, 1, 0, 0, 0, 0, 0, 0, 0, 0] + [1] * 5 + [0] * 3
    b = [0, 0, 1, 1, 1, 1, 1, 1, 1, 1] + [1] * 5 + [0] * 3
    res = mcnemar_exact(np.array(a, bool), np.array(b, bool))
    assert (res.n_pairs, res.only_a_correct, res.only_b_correct) == (18, 2, 8)
    # p = 2 P(X <= 2), X ~ Bin(10, 1/2) = 2 (1 + 10 + 45) / 1024
    assert res.p_value == pytest.approx(112 / 1024, rel=1e-12)


def test_mcnemar_edge_cases():
    same = np.array([True, False, True])
    assert mcnemar_exact(same, same).p_value == 1.0  # no discordant pair
    balanced = np.array([True, False]), np.array([False, True])
    assert mcnemar_exact(*balanced).p_value == 1.0  # 2 P(X <= 1 | n = 2) = 1.5, capped
    assert mcnemar_exact(np.ones(6, bool), np.zeros(6, bool)).p_value == pytest.approx(2 / 64)
    with pytest.raises(FhbenchError, match="one length"):
        mcnemar_exact(np.ones(3, bool), np.ones(4, bool))


@pytest.mark.parametrize("seed", range(6))
def test_mcnemar_against_scipy_binomtest(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(20, 400))
    a = rng.random(n) < 0.8
    b = rng.random(n) < rng.uniform(0.6, 0.95)
    n01 = sum(1 for x, y in zip(a, b) if x and not y)  # counted by hand
    n10 = sum(1 for x, y in zip(a, b) if y and not x)
    res = mcnemar_exact(a, b)
    assert (res.only_a_correct, res.only_b_correct) == (n01, n10)
    expected = binomtest(n01, n01 + n10, 0.5, alternative="two-sided").pvalue
    assert res.p_value == pytest.approx(expected, rel=1e-9, abs=1e-300)


# --- bootstrap -------------------------------------------------------------------------

def test_bootstrap_covers_the_true_difference():
    n, true_diff, noise = 400, 0.3, 0.5
    covered = 0
    for seed in range(40):
        rng = np.random.default_rng(100 + seed)
        a = rng.normal(0, 1, n)
        b = a + true_diff + rng.normal(0, noise, n)
        est, low, high = bootstrap_difference(a, b, n_resamples=1000, seed=seed)
        assert est == pytest.approx(np.mean(b - a))
        # the percentile interval is about the normal one: +- 1.96 sd / sqrt(n)
        assert high - low == pytest.approx(2 * 1.96 * np.std(b - a) / np.sqrt(n), rel=0.15)
        covered += low <= true_diff <= high
    assert covered >= 34  # nominal 95 % of 40 = 38; binomial 1st percentile ~ 34


def test_bootstrap_is_deterministic_with_the_seed():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=300), rng.normal(0.1, 1, size=300)
    first = bootstrap_difference(a, b, n_resamples=2000, seed=7)
    assert bootstrap_difference(a, b, n_resamples=2000, seed=7) == first
    assert bootstrap_difference(a, b, n_resamples=2000, seed=8) != first


def test_bootstrap_resamples_within_strata():
    # Stratum 0: B beats A on every item (d = 1); stratum 1: a tie everywhere (d = 0). Any
    # within-stratum resample gives mean(1, 0) = 0.5; pooled resampling would scatter.
    a = np.zeros(20)
    b = np.r_[np.ones(10), np.zeros(10)]
    strata = np.r_[np.zeros(10), np.ones(10)]
    assert bootstrap_difference(a, b, strata, n_resamples=500) == (0.5, 0.5, 0.5)
    _, low, high = bootstrap_difference(a, b, None, n_resamples=500)
    assert low < 0.5 < high
    # the estimate is the mean of stratum means, not the pooled mean
    est, _, _ = bootstrap_difference(np.zeros(4), np.array([1.0, 0.0, 0.0, 0.0]), [0, 1, 1, 1], n_resamples=10)
    assert est == pytest.approx((1.0 + 0.0) / 2)


# --- stored runs -----------------------------------------------------------------------

def pairs(rng, quality, n_per_fold=30):
    fold = np.repeat(np.arange(10), n_per_fold)
    same = np.tile(np.arange(n_per_fold) % 2 == 0, 10)
    return {"pair_scores": np.where(same, quality, 0) + rng.normal(0, 0.5, len(same)),
            "pair_is_same": same, "pair_fold": fold}


def images(rng, mean, n=50):
    return {"psnr": rng.normal(mean, 1.0, n), "ssim": rng.uniform(0.5, 0.9, n), "fr_loss": rng.uniform(0, 1, n)}


@pytest.fixture
def store(tmp_path):
    rng = np.random.default_rng(3)
    st = ResultStore(tmp_path / "r.sqlite")
    base_images = images(rng, 25)
    st.save("bicubic", PROTOCOL, 8, "sface", {"accuracy": 0.8}, {}, {**pairs(rng, 0.6), **base_images})
    better = {k: v + 0.5 if k == "psnr" else v for k, v in base_images.items()}
    st.save("srnet", PROTOCOL, 8, "sface", {"accuracy": 0.9}, {}, {**pairs(rng, 1.2), **better})
    hr_images = {**images(rng, 0), "psnr": np.full(50, np.inf)}
    st.save("hr", PROTOCOL, "hr", "sface", {"accuracy": 0.99}, {}, {**pairs(rng, 2.0), **hr_images})
    return st


def run_of(store, model, **kw):
    scale = kw.pop("scale", None)
    (run,) = store.runs(protocol=kw.pop("protocol", PROTOCOL), model=model, level=scale, **kw)
    return run


def test_compare_two_stored_runs(store):
    c = compare_models(store, PROTOCOL, "bicubic", "srnet", n_resamples=2000, seed=1)
    assert (c.protocol, c.scale, c.evaluator, c.model_a, c.model_b) == (PROTOCOL, 8, "sface", "bicubic", "srnet")
    a, b = (store.arrays(run_of(store, m).id) for m in ("bicubic", "srnet"))
    # decisions by hand: the threshold of each fold is chosen on the other nine
    correct = {}
    for name, arr in (("a", a), ("b", b)):
        s, same, fold = arr["pair_scores"], arr["pair_is_same"], arr["pair_fold"]
        out = np.empty(len(s), bool)
        for f in range(10):
            train = fold != f
            cands = np.r_[-np.inf, (np.unique(s[train])[1:] + np.unique(s[train])[:-1]) / 2, np.inf]
            acc = [np.mean((s[train] > t) == same[train]) for t in cands]
            t = cands[int(np.argmax(acc))]
            out[~train] = (s[~train] > t) == same[~train]
        correct[name] = out
    n01 = int(np.sum(correct["a"] & ~correct["b"]))
    n10 = int(np.sum(~correct["a"] & correct["b"]))
    assert (c.mcnemar.only_a_correct, c.mcnemar.only_b_correct) == (n01, n10)
    assert c.mcnemar.p_value == pytest.approx(binomtest(n01, n01 + n10).pvalue)
    iv = {i.metric: i for i in c.intervals}
    assert set(iv) == {"accuracy", "psnr", "ssim", "fr_loss"}
    assert iv["accuracy"].value_a == pytest.approx(correct["a"].mean())  # equal folds: fold mean = pooled
    assert iv["accuracy"].difference == pytest.approx(correct["b"].mean() - correct["a"].mean())
    assert iv["accuracy"].low <= iv["accuracy"].difference <= iv["accuracy"].high
    # PSNR of srnet is exactly bicubic's + 0.5 on every image: no spread at all
    assert (iv["psnr"].difference, iv["psnr"].low, iv["psnr"].high) == pytest.approx((0.5, 0.5, 0.5))
    assert iv["ssim"].low == iv["ssim"].high == 0
    assert iv["accuracy"].unit == "pairs within folds" and iv["psnr"].unit == "images"
    text = format_comparison(c)
    assert "A = bicubic, B = srnet; differences are B - A" in text
    assert f"only A right {n01}, only B right {n10}" in text
    json.loads(format_comparison(c, "json"))


def test_stored_fold_thresholds_are_used():
    arrays = {"pair_scores": np.array([0.1, 0.5, 0.9, 0.3]), "pair_is_same": np.array([False, True, True, True]),
              "pair_fold": np.array([0, 0, 1, 1]), "fold_threshold": np.array([0.4, 0.95])}
    # fold 0: 0.1 > 0.4 no (right, impostor), 0.5 > 0.4 yes (right); fold 1: 0.9, 0.3 > 0.95 no (both wrong)
    assert verification_correct(arrays).tolist() == [True, True, False, False]


def test_hr_pairs_with_any_scale_and_inf_psnr_is_noted(store):
    c = compare_models(store, PROTOCOL, "bicubic", "hr", n_resamples=200)
    assert c.scale == 8 and "psnr" not in {i.metric for i in c.intervals}
    assert c.notes == ["no psnr difference: psnr is inf for some images of hr (identical to HR)"]


def test_rank1_from_per_probe_ranks(tmp_path):
    st = ResultStore(tmp_path / "r.sqlite")
    ranks_a = np.array([[1, 2, 1, 5], [1, 1, 3, 2]])  # 2 repeats x 4 probes
    ranks_b = np.array([[1, 1, 1, 5], [1, 1, 1, 1]])
    st.save("a", PROTOCOL, 8, "sface", {}, {}, {"probe_rank": ranks_a})
    st.save("b", PROTOCOL, 8, "sface", {}, {}, {"probe_rank": ranks_b})
    (iv,) = compare_models(st, PROTOCOL, "a", "b", n_resamples=300).intervals
    assert iv.metric == "rank1" and iv.unit == "probes within repeats"
    assert (iv.value_a, iv.value_b) == (pytest.approx((2 / 4 + 2 / 4) / 2), pytest.approx((3 / 4 + 4 / 4) / 2))
    assert iv.difference == pytest.approx(0.375)


def test_runs_that_cannot_be_compared(store):
    store.save("srnet", PROTOCOL, 4, "sface", {}, {}, {})
    store.save("bicubic", PROTOCOL, 8, "facenet", {}, {}, {})
    store.save("other", "lfw-other", 8, "sface", {}, {}, {})
    with pytest.raises(FhbenchError, match="different evaluators: bicubic with facenet, srnet with sface"):
        compare_runs(store, run_of(store, "bicubic", evaluator="facenet"), run_of(store, "srnet", scale=8))
    with pytest.raises(FhbenchError, match="different scales: bicubic at x8, srnet at x4; pass --scale"):
        compare_runs(store, run_of(store, "bicubic", evaluator="sface"), run_of(store, "srnet", scale=4))
    with pytest.raises(FhbenchError, match="different protocols: other on lfw-other, srnet on lfw-10fold"):
        compare_runs(store, run_of(store, "other", protocol="lfw-other"), run_of(store, "srnet", scale=8))
    with pytest.raises(FhbenchError, match=r"srnet has several runs on lfw-10fold \(x4 with sface, x8 with sface\); "
                                           "pass --scale$"):
        compare_models(store, PROTOCOL, "bicubic", "srnet", evaluator="sface")
    with pytest.raises(FhbenchError,
                       match=r"no run of model nope on protocol lfw-10fold \(models with runs: bicubic, hr, srnet\)$"):
        compare_models(store, PROTOCOL, "nope", "srnet")
    with pytest.raises(FhbenchError, match="got srnet twice"):
        compare_models(store, PROTOCOL, "srnet", "srnet")


def test_runs_on_different_pairs_or_images(tmp_path):
    rng = np.random.default_rng(0)
    st = ResultStore(tmp_path / "r.sqlite")
    p = pairs(rng, 1.0)
    st.save("a", PROTOCOL, 8, "sface", {}, {}, p)
    st.save("b", PROTOCOL, 8, "sface", {}, {}, {**p, "pair_is_same": ~p["pair_is_same"]})
    with pytest.raises(FhbenchError, match="scored on different pairs .pair_is_same differ"):
        compare_models(st, PROTOCOL, "a", "b")
    st.save("c", PROTOCOL, 8, "sface", {}, {}, {"psnr": np.ones(3)})
    st.save("d", PROTOCOL, 8, "sface", {}, {}, {"psnr": np.ones(4)})
    with pytest.raises(FhbenchError, match="scored 3 and 4 images"):
        compare_models(st, PROTOCOL, "c", "d")
    st.save("e", PROTOCOL, 8, "sface", {}, {}, {})
    with pytest.raises(FhbenchError, match="store no per-pair, per-probe or per-image arrays"):
        compare_models(st, PROTOCOL, "e", "c")


def test_cli_compare(store):
    res = CliRunner().invoke(main, ["compare", "bicubic", "srnet", "--protocol", PROTOCOL, "--resamples", "500",
                                    "--format", "md", "--store", str(store.path)])
    assert res.exit_code == 0, res.output
    assert "| accuracy |" in res.output and "McNemar exact test on 300 pair decisions" in res.output
    res = CliRunner().invoke(main, ["compare", "bicubic", "srnet", "--protocol", PROTOCOL, "--evaluator", "dlib",
                                    "--store", str(store.path)])
    assert res.exit_code == 2
    assert "model bicubic has no run on lfw-10fold with evaluator dlib (its runs use sface)" in res.output


# --- a subset of folds -----------------------------------------------------------------

def test_folds_keep_only_those_folds_pairs(store):
    c = compare_models(store, PROTOCOL, "bicubic", "srnet", folds=[8, 6, 7, 10, 9], n_resamples=500)
    a, b = (store.arrays(run_of(store, m).id) for m in ("bicubic", "srnet"))
    ca, cb = verification_correct(a), verification_correct(b)  # thresholds of the whole protocol
    keep = a["pair_fold"] >= 5  # stored folds 5..9 are pairs.txt's 6..10
    n01, n10 = int(np.sum(ca[keep] & ~cb[keep])), int(np.sum(~ca[keep] & cb[keep]))
    assert (c.mcnemar.n_pairs, c.mcnemar.only_a_correct, c.mcnemar.only_b_correct) == (150, n01, n10)
    assert c.mcnemar.p_value == pytest.approx(binomtest(n01, n01 + n10).pvalue)
    (iv,) = c.intervals  # accuracy only: images have no fold
    assert iv.metric == "accuracy" and c.folds == [6, 7, 8, 9, 10]
    assert iv.value_a == pytest.approx(np.mean([ca[a["pair_fold"] == f].mean() for f in range(5, 10)]))
    assert iv.difference == pytest.approx(cb[keep].mean() - ca[keep].mean())  # equal folds
    assert c.notes == ["per-image metrics and ranks are left out: they are not stored per fold"]
    assert "pairs of folds 6, 7, 8, 9, 10" in format_comparison(c)
    everything = compare_models(store, PROTOCOL, "bicubic", "srnet", n_resamples=500)
    assert everything.mcnemar.n_pairs == 300 and everything.folds is None


def test_folds_outside_the_protocol_or_without_pairs(store, tmp_path):
    with pytest.raises(FhbenchError, match=r"--folds: lfw-10fold has folds 1..10, not 0, 11$"):
        compare_models(store, PROTOCOL, "bicubic", "srnet", folds=[0, 5, 11])
    st = ResultStore(tmp_path / "images.sqlite")
    st.save("c", PROTOCOL, 8, "sface", {}, {}, {"psnr": np.ones(3)})
    st.save("d", PROTOCOL, 8, "sface", {}, {}, {"psnr": np.zeros(3)})
    with pytest.raises(FhbenchError, match="store no folds of pairs"):
        compare_models(st, PROTOCOL, "c", "d", folds=[1])


@pytest.mark.parametrize("text,folds", [("6-10", [6, 7, 8, 9, 10]), ("1,3,5-7", [1, 3, 5, 6, 7]),
                                        (" 2 , 2-3", [2, 3]), ("4", [4])])
def test_parse_folds(text, folds):
    assert parse_folds(text) == folds


@pytest.mark.parametrize("text,match", [("6-", "'6-' is not a fold number"), ("a", "'a' is not a fold number"),
                                        ("10-6", "'10-6' is not a range"), ("0-3", "'0-3' is not a range"),
                                        ("1,,2", "'' is not a fold number"),
                                        ("1-10000000000", "goes past fold 10000")])
def test_malformed_folds(text, match):
    with pytest.raises(FhbenchError, match=match):
        parse_folds(text)


def test_cli_compare_folds(store):
    res = CliRunner().invoke(main, ["compare", "bicubic", "srnet", "--protocol", PROTOCOL, "--folds", "6-10",
                                    "--resamples", "200", "--format", "json", "--store", str(store.path)])
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    assert out["folds"] == [6, 7, 8, 9, 10] and out["mcnemar"]["n_pairs"] == 150
    res = CliRunner().invoke(main, ["compare", "bicubic", "srnet", "--protocol", PROTOCOL, "--folds", "x",
                                    "--store", str(store.path) + ".absent"])
    assert res.exit_code == 2 and "--folds: 'x' is not a fold number" in res.output
