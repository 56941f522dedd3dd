"""Scale a run out on Dask: ``--cluster local:N | tcp://HOST:PORT | jobqueue:FILE.yaml``.

The client (``fhbench run``) plans the run as in a single process (``runner._plan``: chunks of
whole SR batches, fixed by image position) and sends each chunk to a worker as one *shard*.
Each worker builds the run's model, evaluator, HR source and pipeline once, in a Dask worker
plugin (``cluster_plugin.RunPlugin``), and keeps them for the run's shards; a shard returns its
HR embeddings and SR results (embeddings + per-image metrics). The client alone writes the
per-image caches (only rows still missing: a row is never written twice), scores and stores the
run, exactly once: the stored numbers are those of a single-process run, bit for bit.

Before any shard, each worker checks that it builds the *same* model and evaluator as the
client (their descriptions, which hold the weights' SHA256 and the code fingerprint) and that
it can read the data root (or, with ``--ship-data``, gets the image bytes with each shard).

GPUs: a worker that owns a GPU declares the Dask resource ``GPU`` (``--resources GPU=1``;
``local:N`` with ``--device cuda`` declares one per worker process; a jobqueue YAML says
``gpus_per_worker: 1``). A run on a CUDA device sends its shards with ``resources={"GPU": 1}``,
so only such workers build the run and take them.

Faults: a worker lost mid-shard has its shard recomputed by Dask elsewhere (the same batches,
so the same numbers); the scheduler lost stops the run with one line naming it, every shard
that arrived before is in the cache (each written whole as it arrives), and re-running
computes only the rest.
"""
from __future__ import annotations

import contextlib
import hashlib
import logging
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Literal, Optional

import numpy as np

from benchmark.engine.cluster_plugin import RunPlugin, WorkerSpec, has_resources, run_state
from benchmark.errors import ConfigError, FhbenchError, short_error
from benchmark.typed_yaml import convert, read_yaml_mapping

# --ship-data sends every image of the run through the scheduler: meant for small sets
SHIP_DATA_LIMIT_BYTES = 256 * 2 ** 20
# how long to wait for a remote scheduler, and for a jobqueue cluster's first worker
CONNECT_TIMEOUT_S = 10
FIRST_WORKER_TIMEOUT_S = 600

@dataclass
class JobqueueConfig:
    """A dask-jobqueue cluster's YAML (``--cluster jobqueue:FILE.yaml``); the keys not listed
    under "ours" are passed to the dask-jobqueue class as they are."""
    system: Literal["slurm", "pbs", "sge", "lsf", "htcondor", "oar", "moab"]
    cores: int
    memory: str
    jobs: int = 1                                  # ours: jobs to submit
    gpus_per_worker: Optional[int] = None          # ours: each worker declares GPU=N
    processes: Optional[int] = None
    queue: Optional[str] = None
    account: Optional[str] = None
    walltime: Optional[str] = None
    interface: Optional[str] = None
    local_directory: Optional[str] = None
    log_directory: Optional[str] = None
    python: Optional[str] = None
    job_name: Optional[str] = None
    job_extra_directives: Optional[List[str]] = None
    job_script_prologue: Optional[List[str]] = None
    worker_extra_args: Optional[List[str]] = None
    scheduler_options: Optional[Dict[str, Any]] = None


JOBQUEUE_CLASSES = {"slurm": "SLURMCluster", "pbs": "PBSCluster", "sge": "SGECluster", "lsf": "LSFCluster",
                    "htcondor": "HTCondorCluster", "oar": "OARCluster", "moab": "MoabCluster"}


@dataclass(frozen=True)
class ClusterSpec:
    kind: str                      # local | tcp | jobqueue
    text: str                      # as given
    workers: int = 0               # local: worker processes
    address: str = ""              # tcp: the scheduler
    config: Optional[JobqueueConfig] = None   # jobqueue: the checked YAML
    path: str = ""                 # jobqueue: its file


def parse_cluster(text: str) -> ClusterSpec:
    """``local:N``, ``tcp://HOST:PORT`` or ``jobqueue:FILE.yaml``; anything else is a ConfigError."""
    if not isinstance(text, str) or not text.strip():
        raise ConfigError(f"--cluster {text!r}: expected local:N, tcp://HOST:PORT or jobqueue:FILE.yaml")
    text = text.strip()
    if text.startswith("local:"):
        n = text[len("local:"):]
        if not n.isdigit() or int(n) < 1:
            raise ConfigError(f"--cluster {text}: local:N needs a number of worker processes N >= 1")
        return ClusterSpec("local", text, workers=int(n))
    if text.startswith("tcp://"):
        host, _, port = text[len("tcp://"):].rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ConfigError(f"--cluster {text}: expected tcp://HOST:PORT of a running Dask scheduler")
        return ClusterSpec("tcp", text, address=text)
    if text.startswith("jobqueue:"):
        path = text[len("jobqueue:"):]
        return ClusterSpec("jobqueue", text, config=load_jobqueue_yaml(path), path=path)
    raise ConfigError(f"--cluster {text}: expected local:N, tcp://HOST:PORT or jobqueue:FILE.yaml")


def check_reachable(spec: ClusterSpec) -> None:
    """A ``tcp://`` scheduler that nothing answers at is one line now, before any image is read
    (a TCP connection only: the Dask handshake comes when the run has work for it)."""
    if spec.kind != "tcp":
        return
    host, _, port = spec.address[len("tcp://"):].rpartition(":")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as err:
        raise ConfigError(f"--cluster {spec.text}: no Dask scheduler reachable at {spec.address} "
                          f"({short_error(err)})") from None


def load_jobqueue_yaml(path: str) -> JobqueueConfig:
    """A dask-jobqueue cluster's YAML, read by the typed loader: an unknown key or a wrong type
    is one line naming the file, the key and the type expected."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise ConfigError(f"jobqueue file {path} does not exist")
    config = convert(read_yaml_mapping(p), JobqueueConfig, "", p)
    for name in ("cores", "jobs", "processes", "gpus_per_worker"):
        value = getattr(config, name)
        if value is not None and value < 1:
            raise ConfigError(f"{p}: {name}: must be an integer >= 1, got {value}")
    return config


@contextlib.contextmanager
def connect(spec: ClusterSpec, gpu: bool = False):
    """A ``distributed.Client`` on the cluster ``spec`` describes; a cluster this starts is closed
    on exit. ``gpu``: local workers declare one ``GPU`` resource each."""
    from distributed import Client, LocalCluster

    if spec.kind == "tcp":
        try:
            client = Client(spec.address, timeout=f"{CONNECT_TIMEOUT_S}s")
        except (OSError, TimeoutError) as err:
            raise ConfigError(f"--cluster {spec.text}: no Dask scheduler reachable at {spec.address} "
                              f"({short_error(err)})") from None
        try:
            yield client
        finally:
            _close(client)
        return
    if spec.kind == "local":
        cluster = LocalCluster(n_workers=spec.workers, threads_per_worker=1, processes=True,
                               dashboard_address=None, resources={"GPU": 1} if gpu else None)
        with cluster, Client(cluster) as client:
            yield client
        return
    cluster = _jobqueue_cluster(spec.config, spec.path)
    with cluster, Client(cluster) as client:
        cluster.scale(jobs=spec.config.jobs)
        try:
            client.wait_for_workers(1, timeout=FIRST_WORKER_TIMEOUT_S)
        except (OSError, TimeoutError) as err:
            raise FhbenchError(f"--cluster {spec.text}: no worker joined within {FIRST_WORKER_TIMEOUT_S} s "
                               f"({short_error(err)}); check the queue (squeue, qstat)") from None
        yield client


def _close(client) -> None:
    """Close a client of a remote scheduler. When that scheduler is gone, distributed logs its
    cancelled reconnection as a traceback: the run's own one-line error says it all."""
    if client.status == "running":
        client.close()
        return
    logging.disable(logging.CRITICAL)
    try:
        client.close()
    finally:
        logging.disable(logging.NOTSET)


class LazyClient:
    """One cluster for several runs (``--protocol all``): connected when a run first needs it
    (nothing to compute, no cluster started), closed when the ``with`` block ends."""

    def __init__(self, text: str, gpu: bool = False):
        self.spec, self.gpu = parse_cluster(text), gpu
        self._stack = contextlib.ExitStack()
        self._client = None

    def get(self):
        if self._client is None:
            self._client = self._stack.enter_context(connect(self.spec, gpu=self.gpu))
        return self._client

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._stack.close()


def _jobqueue_cluster(config: JobqueueConfig, path: str):
    import dataclasses

    import dask_jobqueue

    kwargs = {k: v for k, v in dataclasses.asdict(config).items()
              if v is not None and k not in ("system", "jobs", "gpus_per_worker")}
    extra = list(kwargs.pop("worker_extra_args", []))
    if config.gpus_per_worker:
        extra += ["--resources", f"GPU={config.gpus_per_worker}"]
    if extra:
        kwargs["worker_extra_args"] = extra
    try:
        return getattr(dask_jobqueue, JOBQUEUE_CLASSES[config.system])(**kwargs)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"jobqueue file {path}: {short_error(err)}") from None


def spec_key(fields: dict) -> str:
    """A run's settings as a short hash (names its worker plugin and shard keys)."""
    return hashlib.sha256(repr(sorted((k, repr(v)) for k, v in fields.items())).encode()).hexdigest()[:24]


def n_workers(client) -> int:
    return len(client.scheduler_info().get("workers", {}))


def compute_shard(run_name: str, shard: dict, *producers: dict) -> dict:
    """One chunk of ``runner._plan`` on a worker: what ``runner._compute_missing`` computes for
    it, returned instead of cached. ``producers``: results of the shards that embed HR faces
    this shard's SR images reuse."""
    from benchmark.engine.chunks import process_chunk
    from benchmark.engine.pipeline import StageTimer

    state = run_state(run_name)  # built once on this worker by the run's RunPlugin
    spec = state.spec
    with state.lock:
        timer = StageTimer()
        state.pipeline.timer = state.hr_source.timer = timer
        if spec.ship_data:
            for rel, data in shard["files"].items():
                target = state.shipped / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(data)
        before = len(state.hr_source.fallbacks)
        halved_before = len(state.pipeline.halved)
        need, rows = shard["need"], shard["hr_rows"]
        hr = state.hr_source.load(need)
        out = {"index": shard["index"], "hr_keys": [shard["keys"][r] for r in rows], "sr": {}}
        known = dict(shard["hr_known"])
        for p in producers:
            known.update(zip(p["hr_keys"], p["hr_emb"]))

        def known_hr_emb(image_keys):
            lost = [k for k in image_keys if k not in known]
            if lost:
                raise FhbenchError(f"worker {_address()}: the HR embedding of image {lost[0]} is missing; re-run")
            return np.stack([known[k] for k in image_keys]).astype(np.float32, copy=False)

        result = process_chunk(state.pipeline, spec.levels, hr, need, rows,
                               {name: idx for name, (idx, _) in shard["sr"].items()}, shard["keys"],
                               [spec.faces.relpaths[i] for i in need], lambda ks, emb: known.update(zip(ks, emb)),
                               known_hr_emb)
        out["hr_emb"] = result.hr_emb if len(rows) else np.empty((0, 0), np.float32)
        row_of = {int(i): r for r, i in enumerate(need)}
        for name, (idx, values) in result.sr.items():
            write = shard["sr"][name][1]
            keys = [shard["keys"][row_of[int(i)]] for i in idx]
            out["sr"][name] = {"keys": [keys[k] for k in write], "n": len(idx),
                               **{k: v[write] for k, v in values.items()}}
        out["fallbacks"] = state.hr_source.fallbacks[before:]
        # SR batches this worker's device had no memory for (halved and retried), for the manifest
        out["halved"] = [{**h, "worker": _address()} for h in state.pipeline.halved[halved_before:]]
        out["seconds"], out["images"] = dict(timer.seconds), dict(timer.images)
        return out


# ---------------------------------------------------------------------------------------------
# The client's side: send the shards, write what comes back


def compute_on_cluster(client, spec: WorkerSpec, plan, batches, hr_todo, sr_todo, keys, faces, hr_cache,
                       sr_caches, timer, hr_source, dim: int, progress: bool, desc: str, cluster_text: str,
                       halved: list):
    """Fill the caches from the shards computed on ``client``'s workers; how many images of
    each kind were computed (as ``runner._compute_missing`` returns). The workers' halved SR
    batches are appended to ``halved`` in plan order."""
    from distributed import as_completed
    from tqdm import tqdm

    computed = {"hr": 0, **{name: 0 for name in sr_caches}}
    if not plan:
        return computed
    shards = _shards(spec, plan, batches, hr_todo, sr_todo, keys, faces, hr_cache, dim)
    where = _scheduler_name(client, cluster_text)
    plugin = _start_run(client, spec, where)
    futures = {}
    bar = tqdm(total=sum(len(s["need"]) for s in shards), unit="img", desc=desc, disable=not progress)
    try:
        for shard in sorted(shards, key=lambda s: len(s["deps"]) > 0):  # producers first
            futures[shard["index"]] = client.submit(
                compute_shard, plugin.name, {k: v for k, v in shard.items() if k != "deps"},
                *[futures[d] for d in shard["deps"]], pure=False, resources=plugin.resources,
                key=f"fhbench-shard-{spec.key[:12]}-{shard['index']}-{time.time_ns()}")
        needed_later = {d for s in shards for d in s["deps"]}
        fallbacks, halvings, done = {}, {}, 0
        for future in as_completed(list(futures.values())):
            result = _result(future, f"after {done} of {len(shards)} shards", where)
            n = result["index"]
            _write_shard(result, hr_cache, sr_caches, computed, timer)
            fallbacks[n], halvings[n] = result["fallbacks"], result["halved"]
            done += 1
            bar.update(len(shards[n]["need"]))
            if n not in needed_later:
                futures.pop(n).release()
    finally:
        bar.close()
        for f in futures.values():
            f.release()
        _end_run(client, plugin)
    for n in sorted(fallbacks):  # in plan order, as a single process appends them
        hr_source.fallbacks.extend(f for f in fallbacks[n] if f not in hr_source.fallbacks)
        halved.extend(halvings[n])
    return computed


def _shards(spec, plan, batches, hr_todo, sr_todo, keys, faces, hr_cache, dim) -> List[dict]:
    """The plan's chunks as shards: images to load, HR rows to embed, SR batches per level,
    the shards whose HR embeddings they reuse (``deps``) or the cached ones (``hr_known``)."""
    shards, produced_by = [], {}
    for n, (need, wanted) in enumerate(plan):
        rows = np.array([r for r, i in enumerate(need) if i in hr_todo], dtype=np.int64)
        shard_keys = [keys[i] for i in need]
        for r in rows:
            produced_by.setdefault(shard_keys[r], n)
        sr = {}
        for name, wanted_batches in wanted.items():
            if wanted_batches:
                idx = np.concatenate([batches[b] for b in wanted_batches])
                write = np.array([k for k, i in enumerate(idx) if i in sr_todo[name]], dtype=np.int64)
                sr[name] = (idx, write)
        shards.append({"index": n, "need": need, "hr_rows": rows, "keys": shard_keys, "sr": sr})
    shipped = 0
    for shard in shards:
        own = {shard["keys"][r] for r in shard["hr_rows"]}
        sr_keys = {keys[i] for idx, _ in shard["sr"].values() for i in idx}
        outside = sorted(sr_keys - own)
        cached = [k for k in outside if k not in produced_by]
        shard["hr_known"] = dict(zip(cached, hr_cache.get(cached, dim)["emb"])) if cached else {}
        shard["deps"] = sorted({produced_by[k] for k in outside if k in produced_by} - {shard["index"]})
        if spec.ship_data:
            shard["files"] = {faces.relpaths[i]: (Path(faces.image_root) / faces.relpaths[i]).read_bytes()
                              for i in shard["need"]}
            shipped += sum(len(b) for b in shard["files"].values())
            if shipped > SHIP_DATA_LIMIT_BYTES:
                raise ConfigError(f"--ship-data sends at most {SHIP_DATA_LIMIT_BYTES >> 20} MiB of images; this "
                                  f"run needs more: put the data root on a file system the workers share")
    return shards


# one lock per cache file: concurrent sweep cells of one client share HR (and SR) caches
_WRITE_LOCKS: Dict[str, threading.Lock] = {}
_WRITE_LOCKS_GUARD = threading.Lock()


def _write_shard(result: dict, hr_cache, sr_caches, computed: dict, timer) -> None:
    """Cache one shard's results as it arrives, each cache's rows in one transaction. Only rows
    still missing are written: a row another cell of a sweep wrote meanwhile stays as it is,
    so no image is ever written twice (with possibly other last bits)."""
    if len(result["hr_keys"]):
        _put_missing(hr_cache, result["hr_keys"], {"emb": result["hr_emb"]})
        computed["hr"] += len(result["hr_keys"])
    for name, res in result["sr"].items():
        if res["keys"]:
            _put_missing(sr_caches[name], res["keys"], {k: v for k, v in res.items() if k not in ("keys", "n")})
        computed[name] += res["n"]
    for stage, seconds in result["seconds"].items():
        timer.seconds[stage] = timer.seconds.get(stage, 0.0) + seconds
        timer.images[stage] = timer.images.get(stage, 0) + result["images"].get(stage, 0)


def _put_missing(cache, keys: List[str], values: Dict[str, np.ndarray]) -> None:
    with _WRITE_LOCKS_GUARD:
        lock = _WRITE_LOCKS.setdefault(str(cache.path or id(cache)), threading.Lock())
    with lock:
        rows = cache.missing(keys)
        if len(rows):
            cache.put([keys[r] for r in rows], **{k: np.asarray(v)[rows] for k, v in values.items()})


def _scheduler_name(client, cluster_text: str) -> str:
    """How errors name the cluster: its scheduler's address, and the --cluster text if other."""
    address = getattr(getattr(client, "scheduler", None), "address", None) or "?"
    return address if cluster_text in (address, "client") else f"{address} (--cluster {cluster_text})"


def _start_run(client, spec: WorkerSpec, where: str) -> RunPlugin:
    """Register the run's plugin: every worker able to take its shards builds the run now; a
    worker with other weights, without the data root or a plug-in fails it, in one line, before
    any shard is sent."""
    workers = client.scheduler_info().get("workers", {})
    if not workers:
        try:
            client.wait_for_workers(1, timeout=FIRST_WORKER_TIMEOUT_S)
        except (OSError, TimeoutError) as err:
            raise FhbenchError(f"Dask scheduler {where}: no worker joined within {FIRST_WORKER_TIMEOUT_S} s "
                               f"({short_error(err)})") from None
        workers = client.scheduler_info().get("workers", {})
    plugin = RunPlugin(spec)
    if not any(has_resources(w.get("resources", {}), plugin.resources) for w in workers.values()):
        raise ConfigError(f"Dask scheduler {where}: no worker declares the resource GPU that a run on "
                          f"{spec.device} needs (start workers with --resources GPU=1)")
    try:
        client.register_plugin(plugin)
    except FhbenchError:
        _end_run(client, plugin)
        raise
    except Exception as err:  # noqa: BLE001 - a worker's own crash, or the scheduler lost
        _end_run(client, plugin)
        raise FhbenchError(f"Dask scheduler {where}: a worker could not build the run: {short_error(err)}") from None
    return plugin


def _end_run(client, plugin: RunPlugin) -> None:
    """Unregister the run's plugin (frees its models on the workers); nothing to do, and
    nothing to wait for, once the scheduler is gone."""
    if client.status != "running":
        return
    with contextlib.suppress(Exception):  # noqa: BLE001 - the run's own error (if any) matters more
        client.unregister_worker_plugin(plugin.name)


def _result(future, progress: str, where: str):
    """A future's result; errors as one line (the worker's FhbenchError as it is)."""
    from distributed import KilledWorker

    try:
        return future.result()
    except FhbenchError:
        raise
    except KilledWorker as err:
        raise FhbenchError(f"a shard killed {short_error(err)}: Dask gave up on it after repeated worker "
                           "deaths (out of memory?); finished shards are cached: re-run to resume") from None
    except Exception as err:  # noqa: BLE001 - scheduler lost, cancelled, comm errors
        if future.status == "error":
            raise FhbenchError(f"a shard failed on a worker: {short_error(err)}") from None
        raise FhbenchError(f"lost the Dask scheduler {where} {progress} ({short_error(err)}); "
                           "finished shards are cached: re-run to resume") from None


def _address() -> str:
    from distributed import get_worker

    return get_worker().address
