"""The protocol engine: degrade -> super-resolve -> embed -> metrics -> store.

One run = one model on one protocol at one level (a scale; or every fixed LR size of an
``lr_sizes`` protocol) with one evaluator. Per image, the HR embedding and, per level, the SR
embedding, PSNR and SSIM are cached on disk by image content (``cache.py``): a second protocol
over the same images and degradation, or a re-run, or a run resumed after a kill, computes only
what is missing. Nothing reaches the store until every image is done and every metric is
computed; then the row, manifest and arrays are written in one transaction.

The ``hr`` model is the upper bound: no degradation, SR = HR (PSNR inf, SSIM 1, FR loss 0 by
definition), stored at scale 1.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np
import torch
from tqdm import tqdm

from benchmark.contracts.degradation import make_degradation
from benchmark.engine import manifest as manifest_mod
from benchmark.engine.cache import ImageResultCache, check_cache_dir, default_cache_dir
from benchmark.engine.levels import protocol_levels
from benchmark.engine.names import check_run_name
from benchmark.engine.chunks import process_chunk
from benchmark.engine.pipeline import HRSource, ImagePipeline, Level, StageTimer
from benchmark.engine.prefetch import prefetched
from benchmark.engine.torch_pipeline import HARNESSES, harness_setting, make_pipeline
from benchmark.engine.torch_stages import DEFAULT_PRECISION, check_precision
from benchmark.engine.protocols import list_protocols, load_protocol
from benchmark.engine.store import HR_LEVEL, ResultStore, level_scale
from benchmark.errors import ConfigError, DataError, DataMissing, IncompatibleModelError
from benchmark.evaluators import create_evaluator
from benchmark.contracts.evaluator import torch_device
from benchmark.metrics.image import summarize
from benchmark.contracts.metric import pair_metrics, per_image_metrics
from benchmark.contracts.model_adapters import create_model
from benchmark.registry import TASKS
from benchmark.contracts.metric_keys import at_level

SEED = 0


@dataclass
class RunOptions:
    model: str
    protocol: str
    scale: Optional[int] = None
    evaluator: str = "sface"
    data_root: str = "data"
    store: str = "results/fhbench.sqlite"
    weights: Optional[str] = None
    evaluator_weights: Optional[str] = None
    batch_size: int = 32
    chunk_size: int = 512
    cache_dir: Optional[str] = None   # None: default_cache_dir(); "" keeps results in memory only
    clamp: bool = False
    upsampled_input: bool = False
    device: str = "cpu"
    backend: Optional[str] = None     # an ONNX evaluator's backend: onnxruntime (None: its default), torch, auto
    precision: str = "fp32"           # the SR model's and the torch evaluator's: fp32, fp16, bf16 (autocast)
    harness: str = "auto"             # torch: the non-model stages on --device; numpy: the serial reference
    prefetch: int = 1                 # chunks decoded ahead in a background thread (0: none)
    progress: bool = True
    name: Optional[str] = None        # the row's model name (default: the model's own)
    replace: bool = False             # replace a row of the same name that holds another model
    cluster: Optional[str] = None     # local:N | tcp://HOST:PORT | jobqueue:FILE.yaml (engine/cluster.py)
    ship_data: bool = False           # with a cluster: send the image bytes with each shard

    def resolved_harness(self) -> str:
        """``auto``: torch on a GPU (or for fp16/bf16), the NumPy reference on the CPU, which keeps
        every stored figure and cache bit for bit (the torch stages' CPU speed measured mixed on
        a loaded 2-core machine: benchmarks/bench_pipeline.py)."""
        if self.harness != "auto":
            return self.harness
        on_gpu = str(self.device).startswith("cuda")
        return "torch" if on_gpu or self.precision != DEFAULT_PRECISION else "numpy"

    def check(self, client=None) -> None:
        """Refuse options out of range before any work (the CLI's click ranges say the same);
        ``client``: the ``distributed.Client`` the run was given, if any."""
        for option, value, low in (("--batch-size", self.batch_size, 1), ("chunk_size", self.chunk_size, 1)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ConfigError(f"{option} must be an integer >= {low}, got {value!r}")
        if self.scale is not None and (isinstance(self.scale, bool) or not isinstance(self.scale, int)
                                       or self.scale < 1):
            raise ConfigError(f"--scale must be a positive integer, got {self.scale!r}")
        if self.name is not None:
            check_run_name(self.name)
        check_precision(self.precision)
        if self.harness not in HARNESSES:
            raise ConfigError(f"harness must be one of {', '.join(HARNESSES)}, got {self.harness!r}")
        if self.harness == "numpy" and self.precision != DEFAULT_PRECISION:
            raise ConfigError(f"--precision {self.precision} needs the torch harness (the NumPy path is fp32)")
        if isinstance(self.prefetch, bool) or not isinstance(self.prefetch, int) or self.prefetch < 0:
            raise ConfigError(f"prefetch must be an integer >= 0, got {self.prefetch!r}")
        torch_device("--device", self.device)  # cuda without CUDA: one line, before any work
        if self.cluster is not None:
            from benchmark.engine.cluster import check_reachable, parse_cluster

            spec = parse_cluster(self.cluster)
            if client is None:  # a client given (run_all's, a sweep's) is the cluster used
                check_reachable(spec)
        elif self.ship_data and client is None:
            raise ConfigError("--ship-data needs --cluster")


@dataclass
class RunSetup:
    """What one run is, decided and checked before any image is read."""
    protocol: object
    store: ResultStore
    cache_root: Optional[Path]
    model: object
    level: str                 # the row's level: x8, sizes (every fixed LR size) or hr
    levels: List[Level]
    name: str                  # the row's name
    evaluator: object
    task: object
    faces: object
    degraded: np.ndarray       # indices of the faces the protocol degrades
    # {metric@level: relpaths of the images a counts_nan metric could not measure} (_score)
    failures: Dict[str, List[str]] = field(default_factory=dict)


def run(opts: RunOptions, client=None) -> dict:
    """Run one model on one protocol at one level; store and return the result.

    With ``opts.cluster`` (or a ``distributed.Client`` given as ``client``), the images to
    compute go to the cluster's workers in shards (``engine/cluster.py``); this process still
    writes the caches, scores and stores, and the stored numbers are the same bit for bit."""
    opts.check(client)
    torch.manual_seed(SEED)
    np.random.seed(SEED)
    started = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    setup = prepare(opts)
    protocol, model, levels, evaluator = setup.protocol, setup.model, setup.levels, setup.evaluator
    timer = StageTimer()
    t0 = time.perf_counter()
    keys = setup.faces.image_keys()
    data_hash = setup.faces.content_hash(keys)
    timer.add("hash", t0, len(setup.faces))
    # the protocol's HR size; where it pins none, the model's native one; else the dataset's frame
    native = model.native_hr_size()
    hr_source = HRSource(setup.faces, protocol.hr_size or native, opts.cache_dir, opts.device, timer)
    hr_hw = hr_source.hr_size  # every path renders faces at hr_size
    for level in levels:
        model.check_compatible(level.degradation.lr_size(hr_hw), hr_hw, level_scale(setup.level))
    # the registered per-image metrics (PSNR, SSIM, plug-ins), where the protocol has a true HR
    pixel_metrics = ([m for m in per_image_metrics() if not m.opt_in or m.name in protocol.metrics]
                     if protocol.image_metrics else [])
    description = model.describe()  # after check_compatible: the model as it runs here
    hr_cache, sr_caches = _caches(setup, hr_source.frame, hr_hw, pixel_metrics, opts, description)
    pipeline = make_pipeline(opts.resolved_harness(), model, evaluator, hr_source.frame, protocol.crop_border, pixel_metrics,
                             opts.batch_size, timer, opts.device, opts.precision)
    desc = f"{setup.name} {protocol.name} {_level_label(setup.level, levels)}"
    if client is None and opts.cluster is None:
        computed = _compute_missing(pipeline, levels, hr_source, keys, setup.faces, setup.degraded, hr_cache,
                                    sr_caches, opts, desc)
        halved = list(pipeline.halved)
    else:
        halved = []
        computed = _compute_on_cluster(client, setup, opts, hr_source, keys, data_hash, hr_cache, sr_caches,
                                       pixel_metrics, description, timer, desc, halved)
    t0 = time.perf_counter()
    metrics, arrays = _score(setup, keys, hr_cache, sr_caches, pixel_metrics)
    timer.add("score", t0)
    manifest = {
        "started": started, "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        **_manifest(setup, opts, description, hr_source, data_hash, hr_cache, sr_caches, computed,
                    "protocol" if protocol.hr_size else "model" if native else "dataset frame"),
        "harness": _harness_record(opts, halved),
        "timing_seconds": timer.seconds, "images_per_second": timer.rates()}
    run_id = setup.store.save(setup.name, protocol.name, setup.level, evaluator.name, metrics, manifest, arrays,
                              replace=opts.replace)
    return {"id": run_id, "model": setup.name, "protocol": protocol.name, "level": setup.level,
            "scale": level_scale(setup.level),
            "evaluator": evaluator.name, "metrics": metrics, "manifest": manifest}


def prepare(opts: RunOptions) -> RunSetup:
    """Resolve and check everything a run needs, cheapest and likeliest failures first, so a
    bad option, store, model, name or list fails in seconds, before any image work."""
    protocol = load_protocol(opts.protocol)
    store = ResultStore(opts.store)
    store.check_writable()
    cache_root = None if opts.cache_dir == "" else Path(opts.cache_dir or default_cache_dir())
    if cache_root is not None:
        check_cache_dir(cache_root)
    model = create_model(opts.model, scale=opts.scale or protocol.default_scale, weights=opts.weights,
                         clamp=opts.clamp, device=opts.device, upsampled_input=opts.upsampled_input)
    row_level, levels = _levels(protocol, model, opts.scale)
    name = opts.name or model.name
    evaluator = create_evaluator(opts.evaluator, weights=opts.evaluator_weights, device=opts.device,
                                 backend=opts.backend, precision=opts.precision)
    check_run_name(name)
    if not opts.replace:  # a name taken by another model fails now, not after the work
        store.check_name(name, protocol.name, row_level, evaluator.name, {"model": _model_record(model, opts)})
    task = TASKS.get(protocol.task)(protocol, opts.data_root)
    task.scoring_device = scoring_device(opts.device)
    faces = task.faces()
    if len(faces) == 0:
        raise DataError(f"protocol {protocol.name} selected no images under {opts.data_root}")
    degraded = task.degraded()
    degraded = np.arange(len(faces)) if degraded is None else np.asarray(degraded, dtype=np.int64)
    return RunSetup(protocol, store, cache_root, model, row_level, levels, name, evaluator, task,
                    faces, degraded)


def _model_record(model, opts, description: Optional[dict] = None) -> dict:
    """The manifest's model: its description, its identity (``same_model``) and how it was named."""
    return {**(description or model.describe()), "identity": model.identity(), "spec": opts.model,
            "clamp": opts.clamp}


def _caches(setup: RunSetup, frame, hr_hw, pixel_metrics, opts, description: dict):
    """(HR cache, {level: SR cache}): keyed by everything that can change a cached value."""
    model, evaluator, protocol = setup.model, setup.evaluator, setup.protocol
    # a model that cannot be fingerprinted may have changed since its results were cached
    sr_cache_root = setup.cache_root if model.fingerprint() is not None else None
    dim = evaluator.embedding_dim
    common = {"frame": frame.name, "hr_hw": hr_hw, "evaluator": evaluator.describe()}
    hr_cache = ImageResultCache(setup.cache_root, "hr", common, dim=dim)
    sr_setting = {**common, "model": description, "clamp": opts.clamp, "crop_border": protocol.crop_border,
                  "image_metrics": protocol.image_metrics,
                  # a conv net's output moves (~1e-7) with the batch size; pure per-pixel code does not
                  "batch_size": None if model.batch_invariant else opts.batch_size,
                  **harness_setting(opts.resolved_harness(), opts.device, opts.precision)}
    sr_caches = {lv.name: ImageResultCache(sr_cache_root, "sr", {**sr_setting, "degradation": lv.degradation.spec()},
                                           dim=dim, metrics=[m.name for m in pixel_metrics])
                 for lv in setup.levels}
    return hr_cache, sr_caches


def _score(setup: RunSetup, keys, hr_cache, sr_caches, pixel_metrics):
    """(metrics, arrays): the task's metrics of every level, and the per-image metrics' mean,
    std and per-image array (``<name>@<level>`` for a protocol with fixed LR sizes)."""
    protocol, degraded, dim = setup.protocol, setup.degraded, setup.evaluator.embedding_dim
    hr_emb = hr_cache.get(keys, dim)["emb"]
    counts_inf = {m.name for m in pixel_metrics if m.counts_inf}
    counts_nan = {m.name for m in pixel_metrics if m.counts_nan}
    level_embs, image_metrics, arrays = {}, {}, {}
    name_levels = bool(protocol.lr_sizes)
    for level in setup.levels:
        emb = hr_emb.copy()
        res = sr_caches[level.name].get([keys[i] for i in degraded], dim)
        emb[degraded] = res["emb"]
        per_image = {m.name: res[m.name] for m in pixel_metrics}
        same = np.all(res["emb"] == hr_emb[degraded], axis=1)
        for m in pair_metrics():  # from the SR and HR embeddings (FR loss, plug-ins)
            values = np.asarray(m.per_pair(res["emb"], hr_emb[degraded]), dtype=np.float64)
            if m.identical is not None:  # equal embeddings: the metric's value for identical inputs
                values[same] = m.identical
            per_image[m.name] = values
        level_embs[level.name] = emb
        for key, values in _degradation_params(level, [keys[i] for i in degraded]).items():
            arrays[at_level(key, level.name if name_levels else None)] = values
        if protocol.image_metrics:
            suffix = level.name if name_levels else None
            for key, values in per_image.items():
                if key in counts_nan:  # images it could not measure: counted, named, left out of the mean
                    failed = np.isnan(values)
                    setup.failures[at_level(key, suffix)] = [setup.faces.relpaths[i] for i in degraded[failed]]
                    image_metrics[at_level(f"{key}_n_failed", suffix)] = int(failed.sum())
                    s = summarize(values[~failed]) if (~failed).any() else {"mean": np.nan, "std": np.nan}
                else:
                    s = summarize(values)
                image_metrics[at_level(key, suffix)] = s["mean"]
                image_metrics[at_level(f"{key}_std", suffix)] = s["std"]
                if key in counts_inf:  # how many images a mean left out (PSNR of identical images)
                    image_metrics[at_level(f"{key}_n_inf", suffix)] = s["n_inf"]
                arrays[at_level(key, suffix)] = values
    metrics, task_arrays = setup.task.score(hr_emb, level_embs, name_levels)
    metrics.update(image_metrics)
    arrays.update(task_arrays)
    return metrics, arrays


def _manifest(setup: RunSetup, opts, description, hr_source, data_hash, hr_cache, sr_caches, computed,
              hr_size_from) -> dict:
    """The run's record: versions, seed, protocol, levels, model, evaluator, data, cache."""
    levels, faces, hr_hw = setup.levels, setup.faces, hr_source.hr_size
    return {
        "environment": manifest_mod.environment(), "seed": SEED,
        "protocol": setup.protocol.spec(), "level": setup.level, "scale": level_scale(setup.level),
        "levels": {lv.name: lv.degradation.spec() for lv in levels},
        "degradation": levels[0].degradation.spec() if len(levels) == 1 else None,
        "model": _model_record(setup.model, opts, description),
        "evaluator": setup.evaluator.describe(),
        "data": {"root": str(Path(opts.data_root).resolve()), "image_root": str(Path(faces.image_root).resolve()),
                 "n_images": len(faces), "n_degraded": int(len(setup.degraded)), "sha256": data_hash,
                 "hr_size": hr_hw, "frame": hr_source.frame.name, "hr_size_from": hr_size_from,
                 "lr_sizes": {lv.name: lv.degradation.lr_size(hr_hw) for lv in levels},
                 "extra_files": [str(p) for p in faces.extra_files],
                 # what the selection left out and why (e.g. AR people lacking a session)
                 "notes": list(setup.task.notes), **hr_source.alignment_report()},
        "cache": {"hr": str(hr_cache.path), "sr": {k: str(c.path) for k, c in sr_caches.items()},
                  "sr_cached": setup.cache_root is not None and setup.model.fingerprint() is not None,
                  **({} if setup.model.fingerprint() is not None or setup.cache_root is None else
                     {"why_not": "the model cannot be fingerprinted (no source file): its results are "
                                 "recomputed on every run"}),
                  # images this run computed (the rest came from the cache)
                  "computed": computed},
        "batch_size": opts.batch_size,
        # what each opt-in per-image metric measured with (landmark backend, points, normaliser)
        **({"image_metric_settings": settings} if (settings := {
            m.name: m.per_image.describe() for m in per_image_metrics()
            if m.opt_in and m.name in setup.protocol.metrics and setup.protocol.image_metrics
            and hasattr(m.per_image, "describe")}) else {}),
        **({"metric_failures": {"images": setup.failures,
                                "why": "the metric could not measure them (e.g. no face found): NaN in its "
                                       "array, left out of its mean, counted in <metric>_n_failed"}}
           if setup.failures else {}),
        # a degradation that draws per-image parameters (blind): where the run stores them
        **({"degradation_params": {
            "arrays": {lv.name: [at_level(k, lv.name if setup.protocol.lr_sizes else None)
                                 for k in _degradation_params(lv, [])] for lv in levels},
            "order": "the degraded images in protocol order (data.n_degraded values each)"}}
           if any(hasattr(lv.degradation, "params") for lv in levels) else {}),
    }


def _harness_record(opts, halved: list) -> dict:
    """The manifest's harness: where the non-model stages ran, in what precision the networks ran,
    the decode prefetch, and the SR batches the device had no memory for (halved and retried)."""
    return {"impl": opts.resolved_harness(), "asked": opts.harness, "device": str(opts.device), "precision": opts.precision,
            "prefetch_chunks": opts.prefetch if opts.cluster is None else None,
            # kNN/CMC/BLUFR score blocks' products (benchmark.score_blocks); null: NumPy on the CPU
            "scoring_device": scoring_device(opts.device),
            "halved_batches": halved}


def scoring_device(device: str) -> Optional[str]:
    """Where identification scoring multiplies: the run's device, or None (NumPy) on the CPU,
    which keeps CPU figures on the one NumPy path."""
    return None if str(device) == "cpu" else str(device)


def _degradation_params(level, keys) -> Dict[str, np.ndarray]:
    """``degradation_<param>`` arrays of a degradation that draws per-image parameters
    (``params(keys)``, e.g. blind), one value per image of ``keys``; {} for the others."""
    params = getattr(level.degradation, "params", None)
    if params is None:
        return {}
    names = getattr(level.degradation, "param_names", ())
    drawn = params(keys)
    return {f"degradation_{n}": np.array([d[n] for d in drawn], dtype=np.float64) for n in names}


def _levels(protocol, model, scale: Optional[int]):
    """(the row's level, the run's levels) for this protocol, model and ``--scale``. A model
    that pins its degradation runs on it at each of the protocol's levels."""
    if model.pinned_degradation:
        return _pinned_levels(protocol, model)
    return protocol_levels(protocol, scale)


def _pinned_levels(protocol, model):
    """The identity model on the ``none`` degradation is the reference row (level ``hr``),
    whatever ``--scale`` says; an lr_sizes protocol names its levels as for any model."""
    if model.pinned_degradation != "none":  # no other pinned degradation has a row level
        raise ConfigError(f"model {model.name} pins degradation {model.pinned_degradation!r}; "
                          f"only 'none' (the HR reference) can be pinned")
    names = protocol.level_names if protocol.lr_sizes else [HR_LEVEL]
    return HR_LEVEL, [Level(n, make_degradation("none")) for n in names]


def _level_label(row_level, levels) -> str:
    if row_level == HR_LEVEL:
        return "hr"
    return levels[0].name if len(levels) == 1 else f"{len(levels)} LR sizes"


def _first_of_each_key(indices: np.ndarray, keys: List[str]) -> np.ndarray:
    """``indices`` without repeats of an image key (identical files are computed once)."""
    seen, out = set(), []
    for i in indices:
        if keys[i] not in seen:
            seen.add(keys[i])
            out.append(i)
    return np.array(out, dtype=np.int64)


def _compute_missing(pipeline: ImagePipeline, levels, hr_source, keys, faces, degraded, hr_cache, sr_caches,
                     opts, desc) -> Dict[str, int]:
    """Fill the caches: HR embeddings of every face, SR results of every degraded face and level.
    Returns how many images of each kind this call computed (``hr`` and each level's name).

    The SR model sees fixed batches: the unique degraded images in protocol order, cut every
    ``batch_size`` images, whatever is cached. A batch with any image missing is recomputed
    whole, so a run resumed after a kill feeds the model exactly the batches an uninterrupted
    run does, and stores bit-identical results (a conv net's output moves with its batch).
    Only the missing images of a batch are written: a cached value is never overwritten."""
    batches, hr_todo, sr_todo, plan = _plan(keys, faces, degraded, hr_cache, sr_caches, opts)
    dim = pipeline.evaluator.embedding_dim
    computed = {"hr": 0, **{name: 0 for name in sr_caches}}
    total = sum(len(need) for need, _ in plan)
    bar = tqdm(total=total, unit="img", desc=desc, disable=not opts.progress or total == 0)

    def cache_hr_emb(image_keys, emb):  # before the chunk's SR work reads them back
        hr_cache.put(image_keys, emb)
        computed["hr"] += len(image_keys)

    # the next chunk is decoded and aligned in the background while this one is processed
    for (need, wanted), hr in prefetched(lambda chunk: hr_source.load(chunk[0]), plan, ahead=opts.prefetch):
        hr_rows = np.array([r for r, i in enumerate(need) if i in hr_todo], dtype=np.int64)
        sr_indices = {name: np.concatenate([batches[b] for b in todo]) for name, todo in wanted.items() if todo}
        result = process_chunk(pipeline, levels, hr, need, hr_rows, sr_indices, [keys[i] for i in need],
                               [faces.relpaths[i] for i in need], cache_hr_emb,
                               lambda image_keys: hr_cache.get(image_keys, dim)["emb"])
        for name, (idx, values) in result.sr.items():
            write = np.array([k for k, i in enumerate(idx) if i in sr_todo[name]], dtype=np.int64)
            if len(write):
                sr_caches[name].put([keys[idx[k]] for k in write], **{k: v[write] for k, v in values.items()})
            computed[name] += len(idx)
        bar.update(len(need))
    bar.close()
    return computed


def _compute_on_cluster(client, setup: RunSetup, opts, hr_source, keys, data_hash, hr_cache, sr_caches,
                        pixel_metrics, description, timer, desc, halved: list) -> Dict[str, int]:
    """``_compute_missing`` on a Dask cluster: the same plan, each chunk a shard on a worker
    (``engine/cluster.py``); the cluster starts only when something is missing."""
    from contextlib import ExitStack

    from benchmark.engine import cluster as cl

    batches, hr_todo, sr_todo, plan = _plan(keys, setup.faces, setup.degraded, hr_cache, sr_caches, opts)
    if not plan:
        return {"hr": 0, **{name: 0 for name in sr_caches}}
    fields = dict(model=opts.model, model_scale=opts.scale or setup.protocol.default_scale,
                  check_scale=level_scale(setup.level), weights=opts.weights,
                  evaluator=opts.evaluator, evaluator_weights=opts.evaluator_weights, backend=opts.backend,
                  clamp=opts.clamp,
                  device=opts.device, upsampled_input=opts.upsampled_input, batch_size=opts.batch_size,
                  cache_dir=opts.cache_dir, hr_size=tuple(hr_source.hr_size), levels=setup.levels,
                  metric_names=[m.name for m in pixel_metrics], crop_border=setup.protocol.crop_border,
                  model_description=description, evaluator_description=setup.evaluator.describe(),
                  ship_data=opts.ship_data, harness=opts.resolved_harness(), precision=opts.precision)
    key = cl.spec_key({**{k: v for k, v in fields.items() if k != "levels"}, "data": data_hash,
                       "image_root": str(setup.faces.image_root),
                       "levels": [(lv.name, lv.degradation.spec()) for lv in setup.levels]})
    spec = cl.WorkerSpec(key=key, faces=setup.faces, **fields)
    with ExitStack() as stack:
        text = opts.cluster or getattr(client, "scheduler", None) and client.scheduler.address or "client"
        if client is None:
            client = stack.enter_context(cl.connect(cl.parse_cluster(opts.cluster),
                                                    gpu=str(opts.device).startswith("cuda")))
        elif isinstance(client, cl.LazyClient):  # run_all's one cluster for every protocol
            client = client.get()
        return cl.compute_on_cluster(client, spec, plan, batches, hr_todo, sr_todo, keys, setup.faces, hr_cache,
                                     sr_caches, timer, hr_source, setup.evaluator.embedding_dim, opts.progress,
                                     desc, text, halved)


def _plan(keys, faces, degraded, hr_cache, sr_caches, opts):
    """(SR batches, HR images to embed, {level: SR images to write}, chunks): each chunk is
    (images to load, {level: indices of the batches to compute}); chunks of whole batches
    bound the images in memory, and the HR work rides along."""
    unique = _first_of_each_key(np.arange(len(faces)), keys)
    hr_todo = set(unique[hr_cache.missing([keys[i] for i in unique])].tolist())
    sr_unique = _first_of_each_key(degraded, keys)
    bs = opts.batch_size
    batches = [sr_unique[s:s + bs] for s in range(0, len(sr_unique), bs)]
    todo_batches, sr_todo = {}, {}
    for name, cache in sr_caches.items():
        missing = set(sr_unique[cache.missing([keys[i] for i in sr_unique])].tolist())
        todo_batches[name] = [b for b, batch in enumerate(batches) if missing.intersection(batch.tolist())]
        sr_todo[name] = missing
    per_chunk = max(1, opts.chunk_size // bs)
    plan = []
    for c in range(0, len(batches), per_chunk):
        chunk = range(c, min(c + per_chunk, len(batches)))
        wanted = {name: [b for b in todo if b in chunk] for name, todo in todo_batches.items()}
        for_sr = {int(i) for todo in wanted.values() for b in todo for i in batches[b]}
        need = [int(i) for b in chunk for i in batches[b] if i in hr_todo or i in for_sr]
        if need:
            plan.append((np.array(need, dtype=np.int64), wanted))
    hr_only = sorted(hr_todo - set(sr_unique.tolist()))
    plan += [(np.array(hr_only[s:s + opts.chunk_size], dtype=np.int64), {})
             for s in range(0, len(hr_only), opts.chunk_size)]
    return batches, hr_todo, sr_todo, plan


@dataclass
class AllResult:
    results: List[dict]
    skipped: Dict[str, str]   # protocol -> why it did not run (its data is absent, ...)
    failed: Dict[str, str] = field(default_factory=dict)  # protocol -> the error that stopped it


def run_all(opts: RunOptions, protocols: Optional[List[str]] = None, on_result=None) -> AllResult:
    """``--protocol all``: every protocol whose data is present under ``opts.data_root``.

    A protocol is skipped, with the reason, when its data is absent (``DataMissing``), when
    ``opts.scale`` is not one of its scales, or when the model cannot run it (its scale or
    input size: ``IncompatibleModelError``). ``opts.scale`` does not apply to ``lr_sizes``
    protocols: they run their own sizes. Corrupt or malformed data (any other DataError) fails
    that protocol: the others still run, and the caller reports the failure (non-zero exit).
    Other errors (a model returning NaN, ...) stop everything, as in a single run.
    """
    opts.check()
    if opts.cluster is None:
        return _run_each(opts, protocols, on_result, None)
    from benchmark.engine.cluster import LazyClient

    with LazyClient(opts.cluster, gpu=str(opts.device).startswith("cuda")) as client:  # one cluster for all
        return _run_each(opts, protocols, on_result, client)


def _run_each(opts: RunOptions, protocols, on_result, client) -> AllResult:
    results, skipped, failed = [], {}, {}
    for name in protocols or list_protocols():
        protocol = load_protocol(name)
        scale = opts.scale
        if protocol.lr_sizes:
            scale = None
        elif scale is not None and scale not in protocol.scales:
            skipped[name] = f"runs at scales {protocol.scales}, not {scale}"
            continue
        try:
            result = run(RunOptions(**{**opts.__dict__, "protocol": name, "scale": scale}), client=client)
        except (DataMissing, IncompatibleModelError) as err:
            skipped[name] = str(err)
            continue
        except DataError as err:
            failed[name] = str(err)
            continue
        results.append(result)
        if on_result:
            on_result(result)
    return AllResult(results, skipped, failed)
