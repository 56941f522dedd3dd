"""The protocol engine: degrade -> super-resolve -> embed -> metrics -> store.

Work is done in chunks of images; each chunk's embeddings and image metrics are cached
on disk (``cache.py``), so a killed run resumes where it stopped. Nothing reaches the
store until every chunk is done and every metric is computed; then the row, manifest and
arrays are written in one transaction.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from tqdm import tqdm

from . import manifest as manifest_mod
from .adapters import check_sr_batch, create_model
from .cache import ChunkCache, default_cache_dir
from .data.images import read_batch
from .degrade import make_degradation, upsample_bicubic
from .errors import ConfigError, FhbenchError
from .evaluators import create_evaluator
from .metrics.image import fr_loss, psnr_y, ssim_y, summarize
from .protocols import load_protocol
from .registry import TASKS
from .store import ResultStore
from .templates import SPHEREFACE_112x96

NO_DEGRADATION_SCALE = 1  # the scale the 'hr' reference row is stored under
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
    cache_dir: Optional[str] = None   # None: default_cache_dir(); "" disables caching
    clamp: bool = False
    upsampled_input: bool = False
    device: str = "cpu"
    progress: bool = True
    name: Optional[str] = None        # the row's model name (default: the model's own)


@dataclass
class StageTimer:
    seconds: dict = field(default_factory=dict)

    def add(self, stage, t0):
        self.seconds[stage] = self.seconds.get(stage, 0.0) + time.perf_counter() - t0


def run(opts: RunOptions) -> dict:
    """Run one model on one protocol at one scale; store and return the result."""
    torch.manual_seed(SEED)
    np.random.seed(SEED)
    started = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    protocol = load_protocol(opts.protocol)
    model = create_model(opts.model, scale=opts.scale or protocol.default_scale, weights=opts.weights,
                         clamp=opts.clamp, device=opts.device, upsampled_input=opts.upsampled_input)
    if model.is_reference_hr:
        scale, degradation = NO_DEGRADATION_SCALE, None
    else:
        scale = opts.scale or protocol.default_scale
        if scale not in protocol.scales:
            raise ConfigError(f"protocol {protocol.name} runs at scales {protocol.scales}, not {scale}")
        degradation = make_degradation(protocol.degradation, scale=scale, **protocol.degradation_options)
    store = ResultStore(opts.store)  # opened early: a bad store path fails before hours of work
    evaluator = create_evaluator(opts.evaluator, weights=opts.evaluator_weights, device=opts.device)
    task = TASKS.get(protocol.task)(protocol, opts.data_root)
    faces = task.faces()
    timer = StageTimer()

    t0 = time.perf_counter()
    data_hash = faces.content_hash()
    timer.add("hash", t0)
    hr_source = _HRSource(faces, opts, timer)
    hr_hw = hr_source.hr_hw
    lr_hw = degradation.lr_size(hr_hw) if degradation else hr_hw
    model.check_compatible(lr_hw, hr_hw, scale)

    cache_root = None if opts.cache_dir == "" else Path(opts.cache_dir or default_cache_dir())
    common = {"data": data_hash, "frame": hr_source.frame.name, "hr_hw": hr_hw,
              "evaluator": evaluator.describe(), "chunk": opts.chunk_size}
    hr_cache = ChunkCache(cache_root, "hr-embeddings", common)
    sr_cache = ChunkCache(cache_root, "sr-results", {
        **common, "degradation": degradation.spec() if degradation else None,
        "model": model.describe(), "clamp": opts.clamp, "crop_border": protocol.crop_border})

    n = len(faces)
    parts = {"sr_emb": [], "hr_emb": [], "psnr": [], "ssim": []}
    bar = tqdm(total=n, unit="img", desc=f"{model.name} {protocol.name} x{scale}", disable=not opts.progress)
    for ci, start in enumerate(range(0, n, opts.chunk_size)):
        idx = np.arange(start, min(n, start + opts.chunk_size))
        hr_part, sr_part = hr_cache.load(ci), sr_cache.load(ci)
        hr = None
        if hr_part is None or sr_part is None:
            hr = hr_source.load(idx)
        if hr_part is None:
            t0 = time.perf_counter()
            hr_part = {"hr_emb": evaluator.embed(hr, hr_source.frame)}
            timer.add("embed", t0)
            hr_cache.save(ci, hr_part)
        if sr_part is None:
            sr_part = _super_resolve_chunk(model, degradation, hr, idx, faces, opts, evaluator,
                                           hr_source.frame, protocol.crop_border, timer, hr_part["hr_emb"])
            sr_cache.save(ci, sr_part)
        parts["hr_emb"].append(hr_part["hr_emb"])
        for k in ("sr_emb", "psnr", "ssim"):
            parts[k].append(sr_part[k])
        bar.update(len(idx))
    bar.close()
    res = {k: np.concatenate(v) for k, v in parts.items()}

    t0 = time.perf_counter()
    metrics, arrays = task.score(res["sr_emb"], res["hr_emb"])
    losses = fr_loss(res["sr_emb"], res["hr_emb"])
    for key, values in (("psnr", res["psnr"]), ("ssim", res["ssim"]), ("fr_loss", losses)):
        s = summarize(values)
        metrics[key], metrics[f"{key}_std"] = s["mean"], s["std"]
        if key == "psnr":
            metrics["psnr_n_inf"] = s["n_inf"]
    arrays.update({"psnr": res["psnr"], "ssim": res["ssim"], "fr_loss": losses})
    timer.add("score", t0)

    manifest = {
        "started": started, "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "environment": manifest_mod.environment(), "seed": SEED,
        "protocol": protocol.spec(), "scale": scale,
        "degradation": degradation.spec() if degradation else None,
        "model": {**model.describe(), "spec": opts.model, "clamp": opts.clamp},
        "evaluator": evaluator.describe(),
        "data": {"root": str(Path(opts.data_root).resolve()), "image_root": str(faces.image_root),
                 "n_images": n, "sha256": data_hash, "hr_size": hr_hw, "lr_size": lr_hw,
                 "frame": hr_source.frame.name, **hr_source.alignment_report()},
        "timing_seconds": timer.seconds,
        "images_per_second": {k: n / v for k, v in timer.seconds.items() if v > 0},
    }
    name = opts.name or model.name
    run_id = store.save(name, protocol.name, scale, evaluator.name, metrics, manifest, arrays)
    return {"id": run_id, "model": name, "protocol": protocol.name, "scale": scale,
            "evaluator": evaluator.name, "metrics": metrics, "manifest": manifest}


def _super_resolve_chunk(model, degradation, hr, idx, faces, opts, evaluator, frame, crop_border, timer,
                         hr_emb):
    keys = [faces.relpaths[i] for i in idx]
    if model.is_reference_hr:
        sr = hr
    else:
        t0 = time.perf_counter()
        lr = degradation(hr)
        if model.wants_upsampled_input:
            lr = upsample_bicubic(lr, hr.shape[-2:])
        timer.add("degrade", t0)
        t0 = time.perf_counter()
        sr = np.empty_like(hr)
        for s in range(0, len(idx), opts.batch_size):
            batch = torch.from_numpy(np.ascontiguousarray(lr[s:s + opts.batch_size]))
            out = model.super_resolve(batch, keys[s:s + opts.batch_size])
            sr[s:s + len(batch)] = check_sr_batch(model.name, out, (len(batch),) + hr.shape[1:],
                                                  first_index=int(idx[s]), keys=keys[s:s + opts.batch_size])
        timer.add("sr", t0)
    t0 = time.perf_counter()
    psnr = psnr_y(sr, hr, crop_border=crop_border)
    ssim = ssim_y(sr, hr, crop_border=crop_border)
    timer.add("image_metrics", t0)
    if model.is_reference_hr:
        return {"sr_emb": hr_emb, "psnr": psnr, "ssim": ssim}  # SR is HR: same embeddings
    t0 = time.perf_counter()
    sr_emb = evaluator.embed(sr, frame)
    timer.add("embed", t0)
    return {"sr_emb": sr_emb, "psnr": psnr, "ssim": ssim}


class _HRSource:
    """HR faces in the canonical frame: read as they are if pre-aligned, else MTCNN-aligned."""

    def __init__(self, faces, opts, timer):
        self.faces, self.timer = faces, timer
        self.aligner = None
        if faces.aligned_frame is not None:
            self.frame = faces.aligned_frame
        else:
            from .data.alignment import MtcnnAligner

            self.frame = SPHEREFACE_112x96
            cache = None if opts.cache_dir == "" else Path(opts.cache_dir or default_cache_dir()) / "alignment"
            self.aligner = MtcnnAligner(template=self.frame, cache_dir=cache, device=opts.device)
        self.fallbacks = []
        first = self.load(np.arange(min(1, len(faces))))
        if len(faces) == 0:
            raise FhbenchError("the protocol selected no images")
        self.hr_hw = tuple(first.shape[-2:])

    def load(self, idx) -> np.ndarray:
        t0 = time.perf_counter()
        paths = [self.faces.image_root / self.faces.relpaths[i] for i in idx]
        if self.aligner is None:
            hr = read_batch(paths, expect_hw=getattr(self, "hr_hw", None))
        else:
            result = self.aligner.align_files(paths)
            hr = result.images
            for i, fb in zip(idx, result.fallback):
                if fb and self.faces.relpaths[i] not in self.fallbacks:
                    self.fallbacks.append(self.faces.relpaths[i])
        self.timer.add("load", t0)
        return hr

    def alignment_report(self) -> dict:
        if self.aligner is None:
            return {"alignment": "pre-aligned"}
        return {"alignment": "mtcnn", "no_face_fallback": "centre crop",
                "n_fallback": len(self.fallbacks), "fallback_images": self.fallbacks}
