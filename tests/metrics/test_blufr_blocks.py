"""BLUFR over all trials from one shared pass over the score matrix (issue 13) equals the
per-trial path it replaced.

Oracle: ``per_trial_blufr`` below, the previous body of ``blufr_trials`` kept verbatim: every
trial calls ``blufr_verification`` (its own label-sorted blockwise pass over its test set) and
``blufr_open_set``. Every output field must be identical (not close): the same float32 scores
decide the same thresholds.
"""
from pathlib import Path

import numpy as np
import pytest

from benchmark.errors import MetricError
from benchmark.faces.blufr import BlufrConfig, load_blufr_config
from benchmark.metrics import identification, openset
from benchmark.metrics.openset import (DIR_CURVE_FARS, VR_CURVE_FARS, BlufrResult, TrialSummary,
                                       blufr_open_set, blufr_trials, blufr_verification)

DATA = Path(__file__).resolve().parents[3] / "shared" / "data"
BLUFR_MAT = DATA / "lfw" / "blufr_lfw_config.mat"
FIELDS = ["vr_fars", "vr", "dir_fars", "dir", "vr_curve_fars", "vr_curve", "dir_curve_fars", "dir_curve"]


def per_trial_blufr(features, labels, config, vr_fars=(0.001,), dir_fars=(0.01,),
                    vr_curve_fars=VR_CURVE_FARS, dir_curve_fars=DIR_CURVE_FARS) -> BlufrResult:
    """The per-trial computation ``blufr_trials`` did before the shared pass (the oracle)."""
    array = np.asarray(features)
    n_trials = len(config.test_index)
    vr_points = np.concatenate([np.atleast_1d(vr_fars), np.atleast_1d(vr_curve_fars)])
    dir_points = np.concatenate([np.atleast_1d(dir_fars), np.atleast_1d(dir_curve_fars)])
    n_vr, n_dir = np.atleast_1d(vr_fars).size, np.atleast_1d(dir_fars).size
    vr_rows, dir_rows = [], []
    for trial in range(n_trials):
        vr_rows.append(blufr_verification(array, labels, config.test_index[trial], vr_points))
        dir_rows.append(blufr_open_set(array, labels, config.gallery_index[trial],
                                       config.probe_index[trial], dir_points))
    vr_all, dir_all = np.array(vr_rows), np.array(dir_rows)
    return BlufrResult(
        vr_fars=vr_points[:n_vr], vr=vr_all[:, :n_vr], vr_summary=TrialSummary.of(vr_all[:, :n_vr]),
        dir_fars=dir_points[:n_dir], dir=dir_all[:, :n_dir],
        dir_summary=TrialSummary.of(dir_all[:, :n_dir]),
        vr_curve_fars=vr_points[n_vr:], vr_curve=vr_all[:, n_vr:],
        dir_curve_fars=dir_points[n_dir:], dir_curve=dir_all[:, n_dir:],
    )


def assert_same(got: BlufrResult, expected: BlufrResult):
    for name in FIELDS:
        np.testing.assert_array_equal(getattr(got, name), getattr(expected, name), err_msg=name)
    for name in ("vr_summary", "dir_summary"):
        for part in ("mean_minus_std", "mean", "std"):
            np.testing.assert_array_equal(getattr(getattr(got, name), part),
                                          getattr(getattr(expected, name), part), err_msg=f"{name}.{part}")


def synthetic_config(n_images, n_people, seed, n_trials=10, test_share=0.75, gallery_share=0.3):
    """A config with BLUFR's structure: per trial a test subset (sorted indices), split into a
    gallery and probes (BlufrConfig, as load_blufr_config returns)."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(1, n_people + 1, n_images)
    tests, galleries, probes = [], [], []
    for _ in range(n_trials):
        test = np.sort(rng.choice(n_images, int(n_images * test_share), replace=False))
        in_gallery = rng.random(test.size) < gallery_share
        tests.append(test)
        galleries.append(test[in_gallery])
        probes.append(test[~in_gallery])
    return BlufrConfig([f"img_{i:05d}.jpg" for i in range(n_images)], labels, tests, galleries, probes,
                       Path("synthetic.mat"))


def face_like_features(labels, dim, seed, spread=1.0):
    """Random float32 rows around one centre per identity: rates neither 0 nor 1."""
    rng = np.random.default_rng(seed)
    _, codes = np.unique(labels, return_inverse=True)
    centres = rng.standard_normal((codes.max() + 1, dim)).astype(np.float32)
    return rng.standard_normal((len(labels), dim)).astype(np.float32) * spread + centres[codes]


@pytest.fixture
def small_blocks(monkeypatch):
    monkeypatch.setattr(openset, "BLOCK_ROWS", 13)
    monkeypatch.setattr(identification, "BLOCK_ROWS", 13)
    monkeypatch.setattr(openset, "FLUSH_SCORES", 64)


FARS = dict(vr_fars=(0.0, 0.001, 0.01), dir_fars=(0.01, 0.1),
            vr_curve_fars=(0.0005, 0.05, 0.1, 0.5, 1.0), dir_curve_fars=(0.001, 0.5, 1.0))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_shared_pass_equals_per_trial_on_continuous_scores(small_blocks, seed):
    config = synthetic_config(300, 60, seed)
    features = face_like_features(config.labels, 24, seed + 100)
    expected = per_trial_blufr(features, config.labels, config, **FARS)
    got = blufr_trials(features, config.labels, config, **FARS)
    assert_same(got, expected)
    assert 0 < expected.vr[:, 2].mean() < 1  # the comparison is not all-or-nothing


@pytest.mark.parametrize("seed", [0, 1])
def test_shared_pass_equals_per_trial_with_tied_scores(small_blocks, seed):
    from conftest import exact_unit_rows  # scores k / 64: many exact ties at every threshold

    config = synthetic_config(120, 25, seed + 7)
    rows = exact_unit_rows(120, seed)
    assert_same(blufr_trials(rows, config.labels, config, **FARS),
                per_trial_blufr(rows, config.labels, config, **FARS))


@pytest.mark.parametrize("floor", [0.999, -np.inf, 2.0])
def test_shared_pass_is_exact_whatever_the_sampled_floors(small_blocks, monkeypatch, floor):
    """A floor guessed too high forces the replay; -inf keeps everything."""
    config = synthetic_config(150, 30, 4)
    features = face_like_features(config.labels, 16, 5)
    expected = per_trial_blufr(features, config.labels, config, **FARS)
    monkeypatch.setattr(openset, "_sampled_floor", lambda *a: floor)
    assert_same(blufr_trials(features, config.labels, config, **FARS), expected)


def test_trials_in_several_groups_and_default_fars(small_blocks, monkeypatch):
    monkeypatch.setattr(openset, "TRIALS_PER_PASS", 3)  # 10 trials: passes of 3, 3, 3, 1
    config = synthetic_config(200, 40, 9)
    features = face_like_features(config.labels, 20, 10)
    assert_same(blufr_trials(features, config.labels, config), per_trial_blufr(features, config.labels, config))


def test_a_trial_without_genuine_pairs_is_refused_naming_it():
    config = synthetic_config(40, 10, 1)
    labels = np.arange(40)  # everybody distinct: no genuine pair anywhere
    with pytest.raises(MetricError, match="blufr_trials: the 30 test images give 0 genuine"):
        blufr_trials(face_like_features(labels, 8, 0), labels, config)
    bad = BlufrConfig(config.image_list, config.labels, [config.test_index[0], np.array([0, 0, 1])] * 5,
                      config.gallery_index, config.probe_index, Path("bad.mat"))
    with pytest.raises(MetricError, match="test_index of trial 2 names some rows more than once"):
        blufr_trials(face_like_features(config.labels, 8, 0), config.labels, bad)


@pytest.mark.shared_data
@pytest.mark.skipif(not BLUFR_MAT.is_file(), reason="needs ../shared/data/lfw/blufr_lfw_config.mat")
def test_real_blufr_config_all_outputs_equal_the_per_trial_path():
    config = load_blufr_config(BLUFR_MAT)
    features = face_like_features(config.labels, 128, 0, spread=1.2)
    fars = dict(vr_curve_fars=(1e-4, 1e-3, 1e-2, 1.0))  # the full default grid is the bench's job
    expected = per_trial_blufr(features, config.labels, config, **fars)
    assert 0.05 < expected.vr_summary.mean[0] < 0.95
    assert_same(blufr_trials(features, config.labels, config, **fars), expected)
