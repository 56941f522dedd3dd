"""The worker side of a cluster run: what a worker builds once per run, and the Dask
``WorkerPlugin`` that builds and keeps it.

The client registers one ``RunPlugin`` per run (``client.register_plugin``): every worker
that may take the run's shards (it declares the resources they need, e.g. ``GPU``) builds the
run's model, evaluator, HR source and pipeline once, in ``setup``, and checks them against the
client's (weights SHA256, code fingerprint, data root, plug-ins); a worker that joins later
builds it when it registers. Registration fails, in one line naming the worker, if any worker
cannot build the run, so a bad worker stops the run before any shard. Each shard then finds
the built run with ``run_state``; the client unregisters the plugin when the run ends, which
frees the model and removes shipped images.
"""
from __future__ import annotations

import asyncio
import dataclasses
import shutil
import tempfile
import threading
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional

from benchmark.engine.allocator import keep_large_buffers
from benchmark.errors import ConfigError, DataError, FhbenchError


@dataclass
class WorkerSpec:
    """Everything a worker needs for the run's shards (sent once, with the plugin)."""
    key: str                       # the settings' hash (names the plugin)
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
    harness: str = "numpy"         # RunOptions.resolved_harness(): where the non-model stages run
    precision: str = "fp32"        # RunOptions.precision


def shard_resources(device: str) -> Optional[dict]:
    """The Dask resources a run's shards need: a GPU for a run on a CUDA device."""
    return {"GPU": 1} if str(device).startswith("cuda") else None


def has_resources(declared: dict, needed: Optional[dict]) -> bool:
    return not needed or all(declared.get(r, 0) >= v for r, v in needed.items())


class WorkerRun:
    """One run's model, evaluator, HR source and pipeline in one worker process."""

    def __init__(self, spec: WorkerSpec, where: str = "this process", scratch: Optional[str] = None):
        from benchmark.engine.pipeline import HRSource
        from benchmark.engine.torch_pipeline import make_pipeline
        from benchmark.evaluators import create_evaluator
        from benchmark.contracts.metric import per_image_metrics
        from benchmark.contracts.model_adapters import create_model

        self.spec = spec
        self.lock = threading.Lock()  # one shard at a time per process (a model, a GPU)
        self.shipped = None
        faces = spec.faces
        if spec.ship_data:
            # in the worker's scratch folder (Dask's local directory), removed with the run
            self.shipped = Path(tempfile.mkdtemp(prefix=f"fhbench-ship-{spec.key[:8]}-", dir=scratch))
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
                                         backend=spec.backend, precision=spec.precision)
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

    def close(self) -> None:
        if self.shipped is not None:
            shutil.rmtree(self.shipped, ignore_errors=True)


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


try:
    from distributed import WorkerPlugin
except ImportError:  # distributed is optional until a run asks for --cluster
    WorkerPlugin = object


class RunPlugin(WorkerPlugin):
    """Builds one run on a worker (once) and keeps it until the client unregisters it."""

    idempotent = False

    def __init__(self, spec: WorkerSpec):
        self.spec = spec
        self.resources = shard_resources(spec.device)
        # unique per run: two sweep cells with the same settings each own (and remove) theirs
        self.name = f"fhbench-run-{spec.key[:12]}-{uuid.uuid4().hex[:8]}"
        self.run: Optional[WorkerRun] = None
        self.error: Optional[BaseException] = None
        self.skipped = ""
        self.ready = threading.Event()  # set when setup has built (or failed to build) the run

    def __getstate__(self):
        return {"spec": self.spec, "resources": self.resources, "name": self.name}

    def __setstate__(self, state):
        self.__init__(state["spec"])
        self.resources, self.name = state["resources"], state["name"]

    async def setup(self, worker):
        try:
            if not has_resources(worker.state.total_resources, self.resources):
                self.skipped = f"worker {worker.address} lacks the resources {self.resources}"
                return
            where = f"worker {worker.address}"
            keep_large_buffers()  # as the CLI does for its own process
            # off the event loop: loading a model takes seconds, heartbeats must go on
            self.run = await asyncio.get_running_loop().run_in_executor(None, WorkerRun, self.spec, where,
                                                                        worker.local_directory)
        except Exception as err:
            self.error = err
            raise
        finally:
            self.ready.set()

    def teardown(self, worker):
        if self.run is not None:
            self.run.close()
        self.run = None


def run_state(name: str) -> WorkerRun:
    """The run a shard belongs to, as this worker's ``RunPlugin`` built it."""
    from distributed import get_worker

    worker = get_worker()
    plugin = worker.plugins.get(name)
    if plugin is None:
        raise FhbenchError(f"worker {worker.address}: run {name} is not registered here (it ended?); re-run")
    plugin.ready.wait()
    if plugin.error is not None:
        raise plugin.error
    if plugin.run is None:
        raise FhbenchError(f"worker {worker.address}: run {name} was not built here ({plugin.skipped})")
    return plugin.run
