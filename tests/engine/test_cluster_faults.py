"""Faults of a ``--cluster`` run: a worker SIGKILLed mid-shard, the scheduler SIGKILLed
mid-run. Results are compared with a single-process run of the same options (never with the
cluster run's own output), shards with an independent list of the images (pairs.txt order,
SHA256 of the files), and every per-image cache write is recorded: none is written twice."""
import hashlib
import logging
import os
import signal
import socket
import subprocess
import sys
from collections import Counter

import pytest

from benchmark.engine import runner
from benchmark.engine.store import ResultStore
from benchmark.errors import FhbenchError
from cluster_fixtures import assert_same_run, cache_rows, env_path, module_cluster, options, record_puts
from conftest import pairs_txt_images

SHARD = 8  # options(): SR batches of 4, chunks of 2 batches


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    with module_cluster(tmp_path_factory.mktemp("cluster")) as c:
        yield c


@pytest.mark.slow
def test_a_worker_killed_mid_shard_is_replaced_and_the_result_is_identical(tiny_lfw, tmp_path, cluster,
                                                                          monkeypatch):
    client, paths = cluster
    monkeypatch.syspath_prepend(str(paths["mods"]))
    monkeypatch.setenv("FHBENCH_TEST_KILL_MARK", str(paths["kill_mark"]))
    opts = dict(model="killer_model:killer")
    puts = record_puts(monkeypatch)
    sharded = runner.run(options(tiny_lfw, tmp_path, "cluster", **opts), client=client)
    assert paths["kill_mark"].is_file()  # a worker did die, mid-shard (in its first SR call)
    assert int(paths["kill_mark"].read_text()) not in client.run(os.getpid).values()  # and was replaced
    single = runner.run(options(tiny_lfw, tmp_path, "single", **opts))  # never killed: not in a worker
    assert_same_run(single, sharded, tmp_path, "single", "cluster")
    assert cache_rows(tmp_path / "cache-single") == cache_rows(tmp_path / "cache-cluster")
    # the re-computed shard was written once: every cache row exactly once, in both runs
    counts = Counter(puts)
    assert len(counts) == 96 and set(counts.values()) == {1}  # (24 HR + 24 SR) x 2 runs


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def doomed_scheduler(tmp_path):
    """(address, scheduler process): a Dask scheduler and 2 workers, each its own process
    (this test kills the scheduler); all stopped at the end."""
    port = _free_port()
    env = {**os.environ, "PYTHONPATH": env_path()}
    scheduler = subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1",
                                  "--port", str(port), "--no-dashboard"], env=env, start_new_session=True,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    workers = subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_worker", f"tcp://127.0.0.1:{port}",
                                "--nworkers", "2", "--nthreads", "1", "--no-dashboard", "--death-timeout", "300"],
                               env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        from distributed import Client

        with Client(f"tcp://127.0.0.1:{port}", timeout="120s") as probe:  # both workers in, before the test
            probe.wait_for_workers(2, timeout=120)
        yield f"tcp://127.0.0.1:{port}", scheduler
    finally:
        for proc in (workers, scheduler):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()


def _shards(root):
    """The run's shards as sets of image keys: 8 images at a time in pairs.txt order."""
    images = pairs_txt_images(root)
    keys = [hashlib.sha256((root / "aligned-112x96" / rel).read_bytes()).hexdigest() for rel in images]
    return [set(keys[s:s + SHARD]) for s in range(0, len(keys), SHARD)]


@pytest.mark.slow
def test_scheduler_lost_mid_run_fails_in_one_line_and_the_rerun_resumes(tiny_lfw, tmp_path, cluster,
                                                                        doomed_scheduler, monkeypatch):
    """The scheduler is SIGKILLed once the first shard is cached: the run fails in one line
    naming the scheduler, stores nothing, and the cache holds whole shards only; the same
    command again computes only the other shards and stores what a single process stores."""
    address, scheduler = doomed_scheduler

    def kill_scheduler_after_first_shard(kind, keys):
        if kind == "sr" and scheduler.poll() is None:
            os.kill(scheduler.pid, signal.SIGKILL)
            scheduler.wait()

    puts = record_puts(monkeypatch, after=kill_scheduler_after_first_shard)
    logged = []  # distributed's own errors (its loggers do not propagate): the user sees one line only
    handler = logging.Handler(level=logging.ERROR)
    handler.emit = logged.append
    logging.getLogger("distributed").addHandler(handler)
    try:
        with pytest.raises(FhbenchError) as err:
            runner.run(options(tiny_lfw, tmp_path, "cluster", cluster=address))
    finally:
        logging.getLogger("distributed").removeHandler(handler)
    assert [r.getMessage() for r in logged] == []
    message = str(err.value)
    assert "\n" not in message and f"lost the Dask scheduler {address}" in message and "re-run" in message
    assert scheduler.returncode == -signal.SIGKILL
    assert not (tmp_path / "cluster.sqlite").exists() or ResultStore(tmp_path / "cluster.sqlite").runs() == []
    rows = cache_rows(tmp_path / "cache-cluster")
    hr = {key for kind, _, key in rows if kind == "hr"}
    sr = {key for kind, _, key in rows if kind == "sr"}
    shards = _shards(tiny_lfw)
    done = [s for s in shards if s <= sr]
    assert len(shards) == 3 and 1 <= len(done) < 3
    assert hr == sr == set().union(*done)  # whole shards only: no shard half-written
    # the same command again (on a live cluster): the finished shards come from the cache
    client = cluster[0]
    first = list(puts)
    resumed = runner.run(options(tiny_lfw, tmp_path, "cluster", cluster=address), client=client)
    left = 24 - len(hr)
    assert resumed["manifest"]["cache"]["computed"] == {"hr": left, "x8": left}
    assert not {key for _, _, key in puts[len(first):]} & hr  # nothing finished was computed again
    assert set(Counter(puts).values()) == {1}  # no cache row written twice
    single = runner.run(options(tiny_lfw, tmp_path, "single"))
    assert_same_run(single, resumed, tmp_path, "single", "cluster", same_computed=False)
    assert cache_rows(tmp_path / "cache-single") == cache_rows(tmp_path / "cache-cluster")


def test_batches_halved_on_workers_reach_the_client_manifest(tiny_lfw, tmp_path, cluster, monkeypatch):
    """A worker's device out of memory: the batch is halved there, and the run's manifest lists
    every halving (with its worker), as a single-process run lists its own."""
    client, paths = cluster
    monkeypatch.syspath_prepend(str(paths["mods"]))
    opts = dict(model="oom_model:OomAbove2", harness="torch")
    single = runner.run(options(tiny_lfw, tmp_path, "single", **opts))
    sharded = runner.run(options(tiny_lfw, tmp_path, "cluster", **opts), client=client)
    assert_same_run(single, sharded, tmp_path, "single", "cluster")
    local = single["manifest"]["harness"]["halved_batches"]
    # 24 SR images in batches of 4, each halved once: 6 halvings, in plan order
    assert local == [{"first_image": first, "batch": 4, "retried_as": 2} for first in range(0, 24, 4)]
    remote = sharded["manifest"]["harness"]["halved_batches"]
    workers = set(client.scheduler_info()["workers"])
    assert all(h.pop("worker") in workers for h in remote)
    assert remote == local
