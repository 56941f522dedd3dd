"""What the cluster tests share (tests/engine/test_cluster*.py, test_sweep.py): one Dask
cluster per test module, run options on the tiny LFW, comparisons of two stored runs and of
two per-image caches, a recorder of every per-image cache write, and test models that
workers import (one SIGKILLs its worker mid-shard, one logs each time it is built, one "runs out
of device memory" on batches above 2 images).

The module cluster has two worker processes of one thread each: ``cpu`` and ``gpu``, the
second declaring the Dask resource ``GPU=1`` (faked: it runs on the CPU), so a test can check
that shards needing a GPU go to it alone.
"""
import contextlib
import os
import sqlite3
import sys
from pathlib import Path

import numpy as np

from benchmark.engine import runner
from benchmark.engine.cache import ImageResultCache
from benchmark.engine.store import ResultStore

REPO = Path(__file__).resolve().parents[1]

KILLER = """
import os, signal
from pathlib import Path
import torch

def killer(lr):
    '''Bicubic x8; the first call inside a Dask worker SIGKILLs that worker, mid-shard.'''
    try:
        from distributed import get_worker
        get_worker()
        in_worker = True
    except (ImportError, ValueError):
        in_worker = False
    mark = Path(os.environ["FHBENCH_TEST_KILL_MARK"])
    if in_worker:
        try:
            fd = os.open(mark, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            fd = None
        if fd is not None:
            os.write(fd, str(os.getpid()).encode())
            os.close(fd)
            os.kill(os.getpid(), signal.SIGKILL)
    return torch.nn.functional.interpolate(lr, scale_factor=8, mode="bicubic", align_corners=False).clamp(0, 1)
"""

COUNTED = """
import os
import torch

def build(scale=None, weights=None):
    '''A factory: each call appends this process's id to $FHBENCH_TEST_BUILD_LOG.'''
    with open(os.environ["FHBENCH_TEST_BUILD_LOG"], "a") as log:
        log.write(f"{os.getpid()}\\n")
    def bicubic(lr):
        return torch.nn.functional.interpolate(lr, scale_factor=8, mode="bicubic", align_corners=False).clamp(0, 1)
    return bicubic
"""

OOM = """
import torch

from benchmark.contracts.model import SRAdapter


class OomAbove2(SRAdapter):
    '''Bicubic x8 (per image: batch-invariant) that 'runs out of device memory' above 2 images.'''
    name, scale, batch_invariant = "oom-above-2", 8, True

    def __init__(self, scale=None, weights=None):
        pass

    def super_resolve(self, lr, keys):
        if len(lr) > 2:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return torch.nn.functional.interpolate(lr, scale_factor=8, mode="bicubic", align_corners=False).clamp(0, 1)
"""


def env_path(*extra) -> str:
    """PYTHONPATH for worker processes: this checkout first (they import its code)."""
    parts = [str(REPO), *map(str, extra)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    return os.pathsep.join(dict.fromkeys(parts))


@contextlib.contextmanager
def module_cluster(folder: Path):
    """(client, {"mods", "kill_mark", "build_log"}): a ``cpu`` and a ``gpu`` worker process whose
    environment imports this checkout and the test models written to ``folder/mods``."""
    from distributed import Client, Nanny, Scheduler, SpecCluster

    mods = folder / "mods"
    mods.mkdir()
    (mods / "killer_model.py").write_text(KILLER)
    (mods / "counted_model.py").write_text(COUNTED)
    (mods / "oom_model.py").write_text(OOM)
    env = {"PYTHONPATH": env_path(mods), "FHBENCH_TEST_KILL_MARK": str(folder / "killed"),
           "FHBENCH_TEST_BUILD_LOG": str(folder / "builds.log")}
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)  # the nannies start (and restart) their workers with it
    sys.path.insert(0, str(mods))  # spawned workers start with this process's sys.path
    workers = {name: {"cls": Nanny, "options": {"nthreads": 1, "resources": res}}
               for name, res in (("cpu", {}), ("gpu", {"GPU": 1}))}
    try:
        with SpecCluster(workers=workers, scheduler={"cls": Scheduler, "options": {"dashboard": False, "dashboard_address": None}}) \
                as cluster, Client(cluster) as client:
            client.wait_for_workers(2)
            yield client, {"mods": mods, "kill_mark": folder / "killed", "build_log": folder / "builds.log"}
    finally:
        sys.path.remove(str(mods))
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def options(root, tmp_path, tag, **kw):
    # 24 images, SR batches of 4, chunks (shards) of 2 batches: 3 shards
    return runner.RunOptions(**{"model": "bicubic", "protocol": "lfw-10fold", "scale": 8, "data_root": str(root),
                                "store": str(tmp_path / f"{tag}.sqlite"), "cache_dir": str(tmp_path / f"cache-{tag}"),
                                "batch_size": 4, "chunk_size": 8, "progress": False, **kw})


def assert_same_run(a, b, tmp_path, tag_a, tag_b, same_computed=True):
    """Stored metrics and arrays of run ``a`` (store tag_a) equal those of ``b``, bit for bit."""
    (ra,), (rb,) = ResultStore(tmp_path / f"{tag_a}.sqlite").runs(), ResultStore(tmp_path / f"{tag_b}.sqlite").runs()
    assert ra.metrics.keys() == rb.metrics.keys()
    for k in ra.metrics:
        x, y = np.float64(ra.metrics[k]), np.float64(rb.metrics[k])
        assert x.tobytes() == y.tobytes(), k
    arr_a, arr_b = ResultStore(tmp_path / f"{tag_a}.sqlite").arrays(a["id"]), \
        ResultStore(tmp_path / f"{tag_b}.sqlite").arrays(b["id"])
    assert arr_a.keys() == arr_b.keys() and arr_a
    for k in arr_a:
        assert arr_a[k].dtype == arr_b[k].dtype and arr_a[k].tobytes() == arr_b[k].tobytes(), k
    if same_computed:
        assert a["manifest"]["cache"]["computed"] == b["manifest"]["cache"]["computed"]


def cache_rows(folder):
    """{(kind, file name, image key): (emb, metrics)} of every per-image cache file under ``folder``."""
    rows = {}
    for path in sorted(Path(folder).rglob("*.sqlite")):
        with sqlite3.connect(path) as con:
            for image, emb, metrics in con.execute("SELECT image, emb, metrics FROM items"):
                rows[(path.parent.name, path.name, image)] = (bytes(emb), bytes(metrics))
    return rows


def record_puts(monkeypatch, after=None):
    """Every ``ImageResultCache.put`` of this process, as (kind, cache file, image key) in
    order; ``after(kind, keys)`` runs after each."""
    writes = []
    real = ImageResultCache.put

    def put(self, keys, emb, **metrics):
        real(self, keys, emb, **metrics)
        kind = Path(self.path).parent.name if self.path else "memory"
        writes.extend((kind, str(self.path or id(self)), k) for k in keys)
        if after is not None:
            after(kind, list(keys))

    monkeypatch.setattr(ImageResultCache, "put", put)
    return writes


def shard_tasks(stream):
    """{worker address: shard tasks it ran} from a ``distributed.get_task_stream`` record."""
    out = {}
    for task in stream.data:
        if str(task["key"]).startswith("fhbench-shard-"):
            out.setdefault(task["worker"], []).append(task["key"])
    return out
