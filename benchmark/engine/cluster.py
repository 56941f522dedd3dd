"""Scale a run out on Dask: ``--cluster local:N | tcp://HOST:PORT | jobqueue:FILE.yaml``.

The client (``fhbench run``) plans the run as in a single process (``runner._plan``: chunks of
whole SR batches, fixed by image position) and sends each chunk to a worker as one *shard*.
A worker builds the run's model, evaluator, HR source and pipeline once per run (a per-process
cache keyed by the run's settings, ``_worker_run``) and keeps them for the run's other shards;
it returns the shard's HR embeddings and SR results (embeddings + per-image metrics). The
client alone writes the per-image caches (only the rows that were missing), scores and stores
the run, exactly once: the stored numbers are those of a single-process run, bit for bit.

Before any shard, each worker checks that it builds the *same* model and evaluator as the
client (their descriptions, which hold the weights' SHA256 and the code fingerprint) and that
it can read the data root (or, with ``--ship-data``, gets the image bytes with each shard).

GPUs: a worker that owns a GPU declares the Dask resource ``GPU`` (``--resources GPU=1``;
``local:N`` with ``--device cuda`` declares one per worker process; a jobqueue YAML says
``gpus_per_worker: 1``). A run on a CUDA device sends its shards with ``resources={"GPU": 1}``,
so only such workers take them.
"""
from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import tempfile
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional

import numpy as np

from benchmark.errors import ConfigError, DataError, FhbenchError, short_error

# --ship-data sends every image of the run through the scheduler: meant for small sets
SHIP_DATA_LIMIT_BYTES = 256 * 2 ** 20
# how long to wait for a remote scheduler, and for a jobqueue cluster's first worker
CONNECT_TIMEOUT_S = 10
FIRST_WORKER_TIMEOUT_S = 600
# worker-side: how many runs' models a worker process keeps (a sweep interleaves cells)
KEEP_RUNS = 3

JOBQUEUE_SYSTEMS = ("slurm", "pbs", "sge", "lsf", "htcondor", "oar", "moab")
# key -> (type, what the message calls it); ``system``, ``cores`` and ``memory`` are required
JOBQUEUE_KEYS = {
    "system": (str, "str"), "jobs": (int, "int"), "cores": (int, "int"), "memory": (str, "str"),
    "processes": (int, "int"), "gpus_per_worker": (int, "int"), "queue": (str, "str"),
    "account": (str, "str"), "walltime": (str, "str"), "interface": (str, "str"),
    "local_directory": (str, "str"), "log_directory": (str, "str"), "python": (str, "str"),
    "job_name": (str, "str"), "job_extra_directives": (list, "list of str"),
    "job_script_prologue": (list, "list of str"), "worker_extra_args": (list, "list of str"),
    "scheduler_options": (dict, "mapping"),
}
JOBQUEUE_REQUIRED = ("system", "cores", "memory")


@dataclass(frozen=True)
class ClusterSpec:
    kind: str                      # local | tcp | jobqueue
    text: str                      # as given
    workers: int = 0               # local: worker processes
    address: str = ""              # tcp: the scheduler
    config: dict = field(default_factory=dict)   # jobqueue: the checked YAML


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
        return ClusterSpec("jobqueue", text, config=load_jobqueue_yaml(text[len("jobqueue:"):]))
    raise ConfigError(f"--cluster {text}: expected local:N, tcp://HOST:PORT or jobqueue:FILE.yaml")


def load_jobqueue_yaml(path: str) -> dict:
    """A dask-jobqueue cluster's YAML, checked: unknown keys and wrong types name the key."""
    import yaml

    p = Path(path).expanduser()
    if not p.is_file():
        raise ConfigError(f"jobqueue file {path} does not exist")
    try:
        data = yaml.safe_load(p.read_text())
    except yaml.YAMLError as err:
        raise ConfigError(f"jobqueue file {path} is not valid YAML: {short_error(err)}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"jobqueue file {path}: expected a mapping of keys, got {type(data).__name__}")
    for key, value in data.items():
        if key not in JOBQUEUE_KEYS:
            raise ConfigError(f"jobqueue file {path}: unknown key {key!r} (known: {', '.join(JOBQUEUE_KEYS)})")
        typ, name = JOBQUEUE_KEYS[key]
        ok = isinstance(value, typ) and not (typ is int and isinstance(value, bool))
        if ok and typ is list:
            ok = all(isinstance(v, str) for v in value)
        if not ok:
            raise ConfigError(f"jobqueue file {path}: key {key!r} must be {name}, got {type(value).__name__}")
        if typ is int and value < 1:
            raise ConfigError(f"jobqueue file {path}: key {key!r} must be an int >= 1, got {value}")
    for key in JOBQUEUE_REQUIRED:
        if key not in data:
            raise ConfigError(f"jobqueue file {path}: key {key!r} is required")
    if data["system"] not in JOBQUEUE_SYSTEMS:
        raise ConfigError(f"jobqueue file {path}: key 'system' must be one of {', '.join(JOBQUEUE_SYSTEMS)}, "
                          f"got {data['system']!r}")
    return {**data, "_path": str(p)}


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
        with client:
            yield client
        return
    if spec.kind == "local":
        cluster = LocalCluster(n_workers=spec.workers, threads_per_worker=1, processes=True,
                               dashboard_address=None, resources={"GPU": 1} if gpu else None)
        with cluster, Client(cluster) as client:
            yield client
        return
    cluster = _jobqueue_cluster(spec.config)
    with cluster, Client(cluster) as client:
        cluster.scale(jobs=spec.config.get("jobs", 1))
        try:
            client.wait_for_workers(1, timeout=FIRST_WORKER_TIMEOUT_S)
        except (OSError, TimeoutError) as err:
            raise FhbenchError(f"--cluster {spec.text}: no worker joined within {FIRST_WORKER_TIMEOUT_S} s "
                               f"({short_error(err)}); check the queue (squeue, qstat)") from None
        yield client


def _jobqueue_cluster(config: dict):
    import dask_jobqueue

    classes = {"slurm": "SLURMCluster", "pbs": "PBSCluster", "sge": "SGECluster", "lsf": "LSFCluster",
               "htcondor": "HTCondorCluster", "oar": "OARCluster", "moab": "MoabCluster"}
    kwargs = {k: v for k, v in config.items() if k not in ("system", "jobs", "gpus_per_worker", "_path")}
    extra = list(kwargs.pop("worker_extra_args", []))
    if config.get("gpus_per_worker"):
        extra += ["--resources", f"GPU={config['gpus_per_worker']}"]
    if extra:
        kwargs["worker_extra_args"] = extra
    try:
        return getattr(dask_jobqueue, classes[config["system"]])(**kwargs)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"jobqueue file {config['_path']}: {short_error(err)}") from None


def n_workers(client) -> int:
    return len(client.scheduler_info().get("workers", {}))


# ---------------------------------------------------------------------------------------------
# What a worker needs to rebuild the run, and the per-process cache of built runs


@dataclass
class WorkerSpec:
    """Everything a worker needs for the run's shards (pickled once per shard; small)."""
    key: str                       # the settings' hash: the worker's cache key
    model: str
    model_scale: Optional[int]     # what create_model got
    check_scale: Optional[int]     # what check_compatible got
    weights: Optional[str]
    evaluator: str
    evaluator_weights: Optional[str]
    clamp: bool
    device: str
    upsampled_input: bool
    batch_size: int
    cache_dir: Optional[str]
    faces: object                  # the client's FaceSet
    hr_size: tuple
    levels: list                   # the client's Levels
    metric_names: List[str]
    crop_border: int
    model_description: dict        # the client's model.describe() (weights SHA256, fingerprint)
    evaluator_description: dict
    ship_data: bool = False
    backend: Optional[str] = None  # an ONNX evaluator's backend (None: its default)
    harness: str = "torch"         # RunOptions.harness: where the non-model stages run
    precision: str = "fp32"        # RunOptions.precision


def spec_key(fields: dict) -> str:
    return hashlib.sha256(repr(sorted((k, repr(v)) for k, v in fields.items())).encode()).hexdigest()[:24]


_RUNS: "OrderedDict[str, WorkerRun]" = OrderedDict()
_RUNS_LOCK = threading.Lock()


def _where() -> str:
    try:
        from distributed import get_worker

        return f"worker {get_worker().address}"
    except ValueError:
        return "this process"


class WorkerRun:
    """One run's model, evaluator, HR source and pipeline in one worker process."""

    def __init__(self, spec: WorkerSpec):
        from benchmark.engine.pipeline import HRSource
        from benchmark.engine.torch_pipeline import make_pipeline
        from benchmark.evaluators import create_evaluator
        from benchmark.metrics.registry import per_image_metrics
        from benchmark.models.adapters import create_model

        where = _where()
        self.lock = threading.Lock()  # one shard at a time per process (a model, a GPU)
        faces = spec.faces
        if spec.ship_data:
            self.shipped = Path(tempfile.mkdtemp(prefix=f"fhbench-ship-{spec.key[:8]}-"))
            faces = dataclasses.replace(faces, image_root=self.shipped)
        elif not Path(faces.image_root).is_dir():
            raise DataError(f"{where} cannot read the data root: {faces.image_root} is not a folder here "
                            "(mount the same path on every worker, or pass --ship-data for small sets)")
        try:
            model = create_model(spec.model, scale=spec.model_scale, weights=spec.weights, clamp=spec.clamp,
                                 device=spec.device, upsampled_input=spec.upsampled_input)
            for level in spec.levels:
                model.check_compatible(level.degradation.lr_size(spec.hr_size), spec.hr_size, spec.check_scale)
            evaluator = create_evaluator(spec.evaluator, weights=spec.evaluator_weights, device=spec.device,
                                         backend=spec.backend)
            evaluator.precision = spec.precision
        except FhbenchError as err:
            raise type(err)(f"{where}: {err}") from None
        _same(where, f"model {spec.model}", model.describe(), spec.model_description)
        _same(where, f"evaluator {spec.evaluator}", evaluator.describe(), spec.evaluator_description)
        registered = {m.name: m for m in per_image_metrics()}
        absent = [n for n in spec.metric_names if n not in registered]
        if absent:
            raise ConfigError(f"{where}: per-image metric {absent[0]} is not registered here (install the "
                              "same plug-ins on every worker)")
        self.hr_source = HRSource(faces, spec.hr_size, spec.cache_dir, spec.device)
        self.pipeline = make_pipeline(spec.harness, model, evaluator, self.hr_source.frame, spec.crop_border,
                                      [registered[n] for n in spec.metric_names], spec.batch_size,
                                      device=spec.device, precision=spec.precision)


def _same(where, what, mine: dict, theirs: dict) -> None:
    """One line naming the first field in which a worker's model/evaluator differs from the client's."""
    for key in ("weights_sha256", "fingerprint", *sorted(set(mine) | set(theirs))):
        if mine.get(key) != theirs.get(key):
            label = "weights SHA256" if key == "weights_sha256" else key
            raise ConfigError(f"{where}: {what} {label} is {_short(mine.get(key))} here but "
                              f"{_short(theirs.get(key))} on the client (the same weights must be on every worker)")


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 24 else text[:21] + "..."


def _worker_run(spec: WorkerSpec) -> WorkerRun:
    with _RUNS_LOCK:
        state = _RUNS.get(spec.key)
        if state is None:
            state = WorkerRun(spec)
            _RUNS[spec.key] = state
            while len(_RUNS) > KEEP_RUNS:
                _RUNS.popitem(last=False)
        _RUNS.move_to_end(spec.key)
        return state


def preflight(spec: WorkerSpec) -> str:
    """Build (and check) the run on this worker before any shard; its address."""
    _worker_run(spec)
    return _where()


def compute_shard(spec: WorkerSpec, shard: dict, *producers: dict) -> dict:
    """One chunk of ``runner._plan`` on a worker: what ``runner._compute_missing`` computes for
    it, returned instead of cached. ``producers``: results of the shards that embed HR faces
    this shard's SR images reuse."""
    from benchmark.engine.chunks import process_chunk
    from benchmark.engine.pipeline import StageTimer

    state = _worker_run(spec)
    with state.lock:
        timer = StageTimer()
        state.pipeline.timer = state.hr_source.timer = timer
        if spec.ship_data:
            for rel, data in shard["files"].items():
                target = state.shipped / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(data)
        before = len(state.hr_source.fallbacks)
        need, rows = shard["need"], shard["hr_rows"]
        hr = state.hr_source.load(need)
        out = {"index": shard["index"], "hr_keys": [shard["keys"][r] for r in rows], "sr": {}}
        known = dict(shard["hr_known"])
        for p in producers:
            known.update(zip(p["hr_keys"], p["hr_emb"]))

        def known_hr_emb(image_keys):
            lost = [k for k in image_keys if k not in known]
            if lost:
                raise FhbenchError(f"{_where()}: the HR embedding of image {lost[0]} is missing; re-run")
            return np.stack([known[k] for k in image_keys])

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
        out["seconds"], out["images"] = dict(timer.seconds), dict(timer.images)
        return out


# ---------------------------------------------------------------------------------------------
# The client's side: send the shards, write what comes back


def compute_on_cluster(client, spec: WorkerSpec, plan, batches, hr_todo, sr_todo, keys, faces, hr_cache,
                       sr_caches, timer, hr_source, dim: int, progress: bool, desc: str, cluster_text: str):
    """Fill the caches from the shards computed on ``client``'s workers; how many images of
    each kind were computed (as ``runner._compute_missing`` returns)."""
    from distributed import as_completed
    from tqdm import tqdm

    computed = {"hr": 0, **{name: 0 for name in sr_caches}}
    if not plan:
        return computed
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
        deps = sorted({produced_by[k] for k in outside if k in produced_by} - {shard["index"]})
        cached = [k for k in outside if k not in produced_by]
        shard["hr_known"] = dict(zip(cached, hr_cache.get(cached, dim)["emb"])) if cached else {}
        shard["deps"] = deps
        if spec.ship_data:
            shard["files"] = {faces.relpaths[i]: (Path(faces.image_root) / faces.relpaths[i]).read_bytes()
                              for i in shard["need"]}
            shipped += sum(len(b) for b in shard["files"].values())
            if shipped > SHIP_DATA_LIMIT_BYTES:
                raise ConfigError(f"--ship-data sends at most {SHIP_DATA_LIMIT_BYTES >> 20} MiB of images; this "
                                  f"run needs more: put the data root on a file system the workers share")
    resources = {"GPU": 1} if str(spec.device).startswith("cuda") else None
    _preflight(client, spec, resources, cluster_text)
    futures, order = {}, sorted(shards, key=lambda s: len(s["deps"]) > 0)
    for shard in order:
        futures[shard["index"]] = client.submit(
            compute_shard, spec, {k: v for k, v in shard.items() if k != "deps"},
            *[futures[d] for d in shard["deps"]], pure=False, resources=resources,
            key=f"fhbench-shard-{spec.key[:12]}-{shard['index']}-{time.time_ns()}")
    needed_later = {d for s in shards for d in s["deps"]}
    total = sum(len(s["need"]) for s in shards)
    bar = tqdm(total=total, unit="img", desc=desc, disable=not progress)
    fallbacks = {}
    done = 0
    try:
        for future in as_completed(list(futures.values())):
            result = _result(future, shards, done, cluster_text)
            n = result["index"]
            if len(result["hr_keys"]):
                hr_cache.put(result["hr_keys"], result["hr_emb"])
                computed["hr"] += len(result["hr_keys"])
            for name, res in result["sr"].items():
                if res["keys"]:
                    sr_caches[name].put(res["keys"], **{k: v for k, v in res.items() if k not in ("keys", "n")})
                computed[name] += res["n"]
            for stage, seconds in result["seconds"].items():
                timer.seconds[stage] = timer.seconds.get(stage, 0.0) + seconds
                timer.images[stage] = timer.images.get(stage, 0) + result["images"].get(stage, 0)
            fallbacks[n] = result["fallbacks"]
            done += 1
            bar.update(len(shards[n]["need"]))
            if n not in needed_later:
                futures.pop(n).release()
    finally:
        bar.close()
        for f in futures.values():
            f.release()
    for n in sorted(fallbacks):  # in plan order, as a single process appends them
        hr_source.fallbacks.extend(f for f in fallbacks[n] if f not in hr_source.fallbacks)
    return computed


def _preflight(client, spec, resources, cluster_text):
    """Build the run on every worker that may take its shards: a worker with other weights,
    without the data root or a plug-in fails now, in one line, before any shard."""
    workers = client.scheduler_info().get("workers", {})
    if not workers:
        try:
            client.wait_for_workers(1, timeout=FIRST_WORKER_TIMEOUT_S)
        except (OSError, TimeoutError) as err:
            raise FhbenchError(f"--cluster {cluster_text}: no worker joined within {FIRST_WORKER_TIMEOUT_S} s "
                               f"({short_error(err)})") from None
        workers = client.scheduler_info().get("workers", {})
    able = [a for a, w in workers.items()
            if not resources or all(w.get("resources", {}).get(r, 0) >= v for r, v in resources.items())]
    if not able:
        raise ConfigError(f"--cluster {cluster_text}: no worker declares the resource GPU that a run on "
                          f"{spec.device} needs (start workers with --resources GPU=1)")
    futures = [client.submit(preflight, spec, workers=[a], allow_other_workers=False, pure=False,
                             key=f"fhbench-preflight-{spec.key[:12]}-{a}-{time.time_ns()}") for a in able]
    try:
        for f in futures:
            _result(f, None, 0, cluster_text)
    finally:
        for f in futures:
            f.release()


def _result(future, shards, done, cluster_text):
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
        what = f"after {done} of {len(shards)} shards" if shards else "before any shard"
        raise FhbenchError(f"lost the Dask scheduler of --cluster {cluster_text} {what} ({short_error(err)}); "
                           "finished shards are cached: re-run to resume") from None
