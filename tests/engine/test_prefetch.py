"""Background loading of the next chunk (engine/prefetch.py): the order of the items, a bound
on the loads ahead, the loader's error re-raised unchanged at its item, and the runner's use of
it: a bad image in a later chunk fails the run with the one-line error naming it, and nothing
is stored."""
import threading
import time

import numpy as np
import pytest

from benchmark.engine.prefetch import prefetched
from benchmark.engine.runner import RunOptions, run
from benchmark.engine.store import ResultStore
from benchmark.errors import DataError


def test_items_come_back_in_order_with_their_loads():
    got = list(prefetched(lambda i: i * i, range(20), ahead=1))
    assert got == [(i, i * i) for i in range(20)]
    assert list(prefetched(lambda i: -i, [3, 1, 2], ahead=0)) == [(3, -3), (1, -1), (2, -2)]
    assert list(prefetched(lambda i: i, [], ahead=2)) == []


@pytest.mark.parametrize("ahead", [1, 2])
def test_loads_run_ahead_but_never_more_than_ahead(ahead):
    lock, started, consumed = threading.Lock(), [], []

    def load(i):
        with lock:
            started.append(i)
        return i

    for i, _ in prefetched(load, range(8), ahead=ahead):
        time.sleep(0.02)  # a slow consumer: the loader is free to run ahead, and must not pass the bound
        with lock:
            assert max(started) <= i + ahead, (i, started)
        consumed.append(i)
    assert consumed == list(range(8))
    assert started == list(range(8))


def test_loads_overlap_the_consumer():
    """With one chunk ahead, loading and processing overlap: 6 x (50 ms load + 50 ms work) takes
    well under the 600 ms of doing them one after the other."""
    def load(i):
        time.sleep(0.05)
        return i

    t0 = time.perf_counter()
    for _ in prefetched(load, range(6), ahead=1):
        time.sleep(0.05)
    assert time.perf_counter() - t0 < 0.5


def test_the_loaders_error_is_raised_unchanged_at_its_item():
    boom = DataError("cannot decode image Bad_Person/Bad_Person_0001.jpg: not a JPEG")

    def load(i):
        if i == 3:
            raise boom
        return i

    seen = []
    with pytest.raises(DataError) as err:
        for i, _ in prefetched(load, range(6), ahead=1):
            seen.append(i)
    assert err.value is boom and seen == [0, 1, 2]


def test_stopping_early_cancels_the_loads_not_yet_started():
    started = []
    gen = prefetched(lambda i: started.append(i) or i, range(100), ahead=1)
    assert next(gen) == (0, 0)
    gen.close()
    assert len(started) <= 3


def test_refuses_a_negative_bound():
    with pytest.raises(ValueError, match="ahead must be >= 0"):
        list(prefetched(lambda i: i, range(2), ahead=-1))


@pytest.mark.parametrize("prefetch", [0, 1])
def test_a_bad_image_in_a_later_chunk_fails_the_run_in_one_line_and_stores_nothing(tiny_lfw, tmp_path, prefetch):
    images = sorted((tiny_lfw / "aligned-112x96").glob("*/*.jpg"))
    bad = images[-1]
    bad.write_bytes(b"not a jpeg")
    store = tmp_path / "r.sqlite"
    opts = RunOptions(model="bicubic", protocol="lfw-10fold", scale=4, data_root=str(tiny_lfw), store=str(store),
                      cache_dir="", chunk_size=4, batch_size=4, progress=False, prefetch=prefetch)
    with pytest.raises(DataError) as err:
        run(opts)
    message = str(err.value)
    assert bad.name in message and "\n" not in message
    assert ResultStore(str(store)).runs() == []


def test_prefetch_changes_no_stored_number(tiny_lfw, tmp_path):
    results = []
    for prefetch in (0, 1):
        opts = RunOptions(model="bicubic", protocol="lfw-10fold", scale=4, data_root=str(tiny_lfw),
                          store=str(tmp_path / f"r{prefetch}.sqlite"), cache_dir="", chunk_size=4, batch_size=4,
                          progress=False, prefetch=prefetch)
        results.append(run(opts))
    a, b = results
    assert a["metrics"] == b["metrics"]
    assert b["manifest"]["harness"]["prefetch_chunks"] == 1 and a["manifest"]["harness"]["prefetch_chunks"] == 0
    arrays = [ResultStore(str(tmp_path / f"r{p}.sqlite")).arrays(r["id"]) for p, r in zip((0, 1), results)]
    for key in arrays[0]:
        np.testing.assert_array_equal(arrays[0][key], arrays[1][key])
