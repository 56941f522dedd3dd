"""The per-image result cache on its own: what is missing, what comes back (order, NaN for
values not computed), subsets of a larger table, persistence across instances, and errors."""
import sqlite3

import numpy as np
import pytest

from benchmark.engine.cache import ImageResultCache
from benchmark.errors import FhbenchError


@pytest.fixture(params=["disk", "memory"])
def make_cache(request, tmp_path):
    root = tmp_path / "cache" if request.param == "disk" else None
    return lambda setting={"evaluator": "x"}: ImageResultCache(root, "sr", setting, metrics=("psnr", "ssim"))


def test_missing_then_get_in_the_order_asked(make_cache):
    cache = make_cache()
    keys = [f"img{i}" for i in range(6)]
    emb = np.arange(18, dtype=np.float32).reshape(6, 3)
    assert cache.missing(keys).tolist() == list(range(6))
    cache.put(keys[:4], emb[:4], psnr=np.array([30.0, 31, 32, 33]), ssim=np.array([0.5, 0.6, 0.7, 0.8]))
    assert cache.missing(keys).tolist() == [4, 5]
    cache.put(keys[4:], emb[4:])  # no PSNR/SSIM (HR faces, natural LR)
    assert cache.missing(keys).size == 0
    asked = ["img5", "img0", "img3", "img0"]  # any order, repeats allowed
    got = cache.get(asked, 3)
    np.testing.assert_array_equal(got["emb"], emb[[5, 0, 3, 0]])
    assert np.isnan(got["psnr"][0]) and got["psnr"][1:].tolist() == [30.0, 33.0, 30.0]
    assert np.isnan(got["ssim"][0]) and got["ssim"][2] == 0.8


def test_a_subset_of_a_large_table_reads_only_what_is_asked(make_cache):
    cache = make_cache()
    n = 5000
    keys = [f"face-{i:05d}" for i in range(n)]
    emb = np.random.default_rng(0).standard_normal((n, 4)).astype(np.float32)
    cache.put(keys, emb)
    pick = [4999, 17, 2500, 17]
    np.testing.assert_array_equal(cache.get([keys[i] for i in pick], 4)["emb"], emb[pick])
    assert cache.missing([keys[3], "not-there", keys[4000]]).tolist() == [1]


def test_results_persist_across_instances_and_settings_are_separate(tmp_path):
    a = ImageResultCache(tmp_path, "sr", {"evaluator": "x"}, metrics=("psnr",))
    a.put(["k"], np.ones((1, 2), np.float32), psnr=np.array([40.0]))
    again = ImageResultCache(tmp_path, "sr", {"evaluator": "x"}, metrics=("psnr",))
    assert again.missing(["k"]).size == 0 and again.get(["k"], 2)["psnr"][0] == 40.0
    other = ImageResultCache(tmp_path, "sr", {"evaluator": "y"}, metrics=("psnr",))
    assert other.missing(["k"]).tolist() == [0] and other.path != again.path
    # the metrics a cache holds are part of its setting
    more = ImageResultCache(tmp_path, "sr", {"evaluator": "x"}, metrics=("psnr", "lpips"))
    assert more.missing(["k"]).tolist() == [0] and more.path != again.path


def test_only_the_caches_own_metrics_are_stored(make_cache):
    with pytest.raises(FhbenchError, match=r"holds the metrics \['psnr', 'ssim'\], not \['lpips'\]"):
        make_cache().put(["a"], np.zeros((1, 2), np.float32), lpips=np.array([0.1]))


def test_asking_for_an_absent_entry_names_it(make_cache):
    cache = make_cache()
    cache.put(["a"], np.zeros((1, 2), np.float32))
    with pytest.raises(FhbenchError, match="lost 1 entries .*first: b"):
        cache.get(["a", "b"], 2)


def test_a_corrupt_cache_file_says_which_and_what_to_do(tmp_path):
    first = ImageResultCache(tmp_path, "hr", {"evaluator": "x"})
    first.path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(FhbenchError, match=r"cache file .*\.sqlite is unusable .*delete it"):
        ImageResultCache(tmp_path, "hr", {"evaluator": "x"})


def test_a_failed_batch_leaves_no_row(tmp_path):
    cache = ImageResultCache(tmp_path, "sr", {"evaluator": "x"})
    with pytest.raises(sqlite3.Error):  # row "a" is written, then row 2's key cannot be bound
        cache.put(["a", ["not", "a", "key"]], np.zeros((2, 2), np.float32))
    with sqlite3.connect(cache.path) as con:
        assert con.execute("SELECT COUNT(*) FROM items").fetchone()[0] == 0
