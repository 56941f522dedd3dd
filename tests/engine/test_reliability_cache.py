"""The per-image cache never hands back a number it did not store (issue 11).

Damaged rows (a changed PSNR, a truncated embedding, a renamed key) count as missing and are
recomputed; a damaged or foreign SQLite file, or a cache folder that cannot be written, is one
line naming the file or folder, from every method, before any work."""
import os
import re
import shutil
import sqlite3

import numpy as np
import pytest

from benchmark.engine import cache as cache_mod
from benchmark.engine.cache import ImageResultCache, check_cache_dir
from benchmark.errors import FhbenchError

DIM = 4
KEYS = ["a/1.jpg", "b/2.jpg", "c/3.jpg"]
EMB = np.arange(12, dtype=np.float32).reshape(3, DIM) / 10
PSNR = np.array([30.5, 31.25, np.inf])
SSIM = np.array([0.5, 0.75, 1.0])


def _filled(tmp_path, **kw):
    cache = ImageResultCache(tmp_path / "cache", "sr", {"evaluator": "x"}, metrics=("psnr", "ssim"), **kw)
    cache.put(KEYS, EMB, psnr=PSNR, ssim=SSIM)
    return cache


def _sql(cache, statement, *args):
    with sqlite3.connect(cache.path) as con:
        con.execute(statement, args)
    con.close()


def _one_line(err):
    assert "\n" not in str(err.value) and "Traceback" not in str(err.value)
    return str(err.value)


def test_altered_rows_are_missing_then_recomputed(tmp_path):
    cache = _filled(tmp_path)
    assert cache.missing(KEYS, DIM).size == 0
    changed = np.array([99.0, SSIM[0]], "<f8").tobytes()
    _sql(cache, "UPDATE items SET metrics = ? WHERE image = ?", changed, KEYS[0])  # a changed PSNR
    _sql(cache, "UPDATE items SET emb = substr(emb, 1, 8) WHERE image = ?", KEYS[2])  # a truncated blob
    assert cache.missing(KEYS, DIM).tolist() == [0, 2]
    assert cache.missing(KEYS).tolist() == [0, 2]  # the checksum alone sees both, without the dim
    with pytest.raises(FhbenchError) as err:
        cache.get(KEYS, DIM)
    msg = _one_line(err)
    assert str(cache.path) in msg and "entry a/1.jpg" in msg and "checksum" in msg
    with pytest.raises(FhbenchError, match=r"entry c/3\.jpg .*embedding of 8 bytes, expected 16"):
        cache.get(KEYS[1:], DIM)
    # what the runner does next: recompute the missing rows and put them again
    redo = cache.missing(KEYS, DIM)
    cache.put([KEYS[i] for i in redo], EMB[redo], psnr=PSNR[redo], ssim=SSIM[redo])
    assert cache.missing(KEYS, DIM).size == 0
    got = cache.get(KEYS, DIM)
    np.testing.assert_array_equal(got["emb"], EMB)
    assert got["psnr"].tolist() == PSNR.tolist() and got["ssim"].tolist() == SSIM.tolist()


@pytest.mark.parametrize("statement", [
    "UPDATE items SET metrics = zeroblob(16) WHERE image = 'b/2.jpg'",      # other values, right size
    "UPDATE items SET metrics = substr(metrics, 1, 8) WHERE image = 'b/2.jpg'",  # PSNR only
    "UPDATE items SET metrics = 'high' WHERE image = 'b/2.jpg'",
    "UPDATE items SET emb = 'abcdefghijklmnop' WHERE image = 'b/2.jpg'",  # 16 bytes, as text
    "UPDATE items SET image = 'b/9.jpg' WHERE image = 'b/2.jpg'",     # a row under another key
    "UPDATE items SET checksum = zeroblob(16) WHERE image = 'b/2.jpg'",
])
def test_any_changed_column_is_caught(tmp_path, statement):
    cache = _filled(tmp_path)
    _sql(cache, statement)
    asked = KEYS + ["b/9.jpg"]
    assert 1 in cache.missing(asked, DIM).tolist() and 3 in cache.missing(asked, DIM).tolist()
    with pytest.raises(FhbenchError, match="damaged|lost"):
        cache.get(asked[1:2] if "b/9" not in statement else asked[3:], DIM)


def test_an_embedding_of_another_dimension_is_missing_and_refused(tmp_path):
    cache = ImageResultCache(tmp_path, "hr", {"evaluator": "x"})
    cache.put(["k"], np.ones((1, 3), np.float32))  # intact row, but 3 values
    assert cache.missing(["k"]).size == 0
    assert cache.missing(["k"], 4).tolist() == [0]
    assert ImageResultCache(tmp_path, "hr", {"evaluator": "x"}, dim=4).missing(["k"]).tolist() == [0]
    with pytest.raises(FhbenchError, match=r"entry k .*12 bytes, expected 16"):
        cache.get(["k"], 4)
    with pytest.raises(FhbenchError, match=r"shape \(1, 3\) .* dimension 4"):
        ImageResultCache(tmp_path, "hr", {"evaluator": "x"}, dim=4).put(["k"], np.ones((1, 3), np.float32))


@pytest.mark.parametrize("where", ["disk", "memory"])
def test_nan_minus_zero_and_inf_round_trip_with_valid_checksums(tmp_path, where):
    cache = ImageResultCache(tmp_path if where == "disk" else None, "sr", {"evaluator": "x"}, dim=2,
                             metrics=("psnr", "ssim"))
    cache.put(["n", "z", "i"], np.ones((3, 2), np.float32), psnr=np.array([np.nan, -0.0, np.inf]),
              ssim=np.array([0.25, -0.0, 1.0]))
    assert cache.missing(["n", "z", "i"]).size == 0
    got = cache.get(["n", "z", "i"], 2)
    assert np.isnan(got["psnr"][0]) and got["psnr"][1:].tolist() == [0.0, np.inf]
    assert got["ssim"].tolist() == [0.25, 0.0, 1.0]


# --- damaged files ----------------------------------------------------------------------

def _big(tmp_path):
    cache = ImageResultCache(tmp_path / "cache", "sr", {"evaluator": "x"}, dim=128)
    keys = [f"img{i:05d}" for i in range(2000)]
    cache.put(keys, np.random.default_rng(0).standard_normal((2000, 128)).astype(np.float32))
    return cache, keys


def _garble_middle(path):
    """Random bytes over every page but the first (SQLite's header and schema) and the last."""
    size = path.stat().st_size
    assert size > 100_000
    with open(path, "r+b") as f:
        f.seek(4096)
        f.write(np.random.default_rng(1).integers(0, 256, size - 8192, dtype=np.uint8).tobytes())


@pytest.mark.parametrize("damage", ["garbled-middle", "not-sqlite"])
def test_a_damaged_file_is_one_line_in_every_method(tmp_path, damage):
    cache, keys = _big(tmp_path)
    if damage == "garbled-middle":
        _garble_middle(cache.path)
    else:
        cache.path.write_bytes(b"this is not sqlite" * 10_000)
    expect = re.escape(str(cache.path)) + r" is unusable .*delete it"
    calls = {"constructor": lambda: ImageResultCache(tmp_path / "cache", "sr", {"evaluator": "x"}, dim=128),
             "missing": lambda: cache.missing(keys[:5]),
             "get": lambda: cache.get(keys[:5], 128),
             "put": lambda: cache.put(["new"], np.ones((1, 128), np.float32))}
    for name, call in calls.items():
        with pytest.raises(FhbenchError, match=expect) as err:
            call()
        _one_line(err)


def test_a_file_of_another_setting_is_refused(tmp_path):
    a = ImageResultCache(tmp_path, "sr", {"evaluator": "x"})
    a.put(["k"], np.ones((1, 2), np.float32))
    b_path = ImageResultCache(tmp_path, "sr", {"evaluator": "y"}).path
    shutil.copyfile(a.path, b_path)  # x's results under y's name
    with pytest.raises(FhbenchError, match=re.escape(str(b_path)) + " holds the results of another setting"):
        ImageResultCache(tmp_path, "sr", {"evaluator": "y"})


# --- cache folders that cannot be written ------------------------------------------------

def _expect_folder_error(make, folder_text):
    with pytest.raises(FhbenchError) as err:
        make()
    msg = _one_line(err)
    assert folder_text in msg and "--cache-dir" in msg and "--no-cache" in msg
    return msg


def test_a_cache_folder_that_is_a_file(tmp_path):
    root = tmp_path / "cache"
    root.write_text("not a folder")
    _expect_folder_error(lambda: ImageResultCache(root, "hr", {"e": 1}), str(root))
    assert root.read_text() == "not a folder"
    root2 = tmp_path / "cache2"
    root2.mkdir()
    (root2 / "sr").write_text("")  # the kind's sub-folder is a file
    _expect_folder_error(lambda: ImageResultCache(root2, "sr", {"e": 1}), str(root2 / "sr"))


def test_check_cache_dir_is_the_same_check_up_front(tmp_path):
    check_cache_dir(None)  # in memory: nothing to check
    check_cache_dir(tmp_path / "fine")
    assert (tmp_path / "fine" / "hr").is_dir() and (tmp_path / "fine" / "sr").is_dir()
    assert not [p for p in (tmp_path / "fine").rglob("*") if p.is_file()]  # the write test leaves nothing
    (tmp_path / "file").write_text("")
    _expect_folder_error(lambda: check_cache_dir(tmp_path / "file"), str(tmp_path / "file"))


def test_a_read_only_cache_folder_as_os_access_reports_it(tmp_path, monkeypatch):
    real_access = os.access
    monkeypatch.setattr(cache_mod.os, "access",
                        lambda p, mode: False if str(p).startswith(str(tmp_path)) else real_access(p, mode))
    msg = _expect_folder_error(lambda: ImageResultCache(tmp_path / "c", "hr", {"e": 1}), str(tmp_path / "c" / "hr"))
    assert "read-only" in msg
    assert not list((tmp_path / "c").rglob("*.sqlite"))


def test_a_read_only_mount_is_found_by_trying(tmp_path, monkeypatch):
    """root passes os.access on a read-only mount: the write test catches it."""
    def refuse(*a, **kw):
        raise OSError(30, "Read-only file system")
    monkeypatch.setattr(cache_mod.tempfile, "NamedTemporaryFile", refuse)
    msg = _expect_folder_error(lambda: ImageResultCache(tmp_path, "hr", {"e": 1}), str(tmp_path / "hr"))
    assert "Read-only file system" in msg


def test_a_chmod_read_only_folder(tmp_path):
    if os.geteuid() == 0:
        pytest.skip("root writes into a 0o500 folder; covered by the os.access and write-test cases")
    folder = tmp_path / "ro"
    (folder / "hr").mkdir(parents=True)
    (folder / "hr").chmod(0o500)
    try:
        _expect_folder_error(lambda: ImageResultCache(folder, "hr", {"e": 1}), str(folder / "hr"))
    finally:
        (folder / "hr").chmod(0o700)
