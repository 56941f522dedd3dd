"""The per-image pipeline, shared by ``run``, ``samples`` and ``report``:
HR faces -> level (a degradation) -> SR, checked -> per-image metrics -> embeddings.

``runner`` decides which images to compute and caches the results; this module says how
one batch of images is processed, so a sample grid shows exactly what a run scored. The
``hr`` reference is no special case: it is the identity model on the ``none`` degradation,
and an SR image equal to its HR image takes each metric's value for identical images
(PSNR inf, SSIM 1, FR loss 0) and the HR embedding, whichever model produced it.
"""
from __future__ import annotations

import inspect
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np
import torch

from benchmark.engine.cache import default_cache_dir
from benchmark.errors import AdapterError, FhbenchError, MetricError
from benchmark.faces.frames import fit_to_hr_size, hr_frame
from benchmark.faces.images import read_batch
from benchmark.faces.resize import upsampled_model_input
from benchmark.faces.templates import SPHEREFACE_112x96
from benchmark.contracts.model import check_sr_batch


@dataclass
class StageTimer:
    """Seconds and images per stage; the prefetch thread adds to it beside the main one."""
    seconds: dict = field(default_factory=dict)
    images: dict = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, stage, t0, n_images=0):
        elapsed = time.perf_counter() - t0
        with self.lock:
            self.seconds[stage] = self.seconds.get(stage, 0.0) + elapsed
            self.images[stage] = self.images.get(stage, 0) + n_images

    def rates(self) -> dict:
        """Images per second of each stage that processed images."""
        return {k: self.images[k] / v for k, v in self.seconds.items() if v > 0 and self.images.get(k)}


@dataclass
class Level:
    """One degradation level of a run: ``name`` (``x8``, ``16x12``, ``hr``) and its
    degradation (``none`` for the hr reference)."""
    name: str
    degradation: object


def degrade(degradation, hr: np.ndarray, keys: Optional[Sequence[str]] = None) -> np.ndarray:
    """``degradation(hr)``; a degradation that draws per-image parameters also gets the
    images' content keys (``keys=``), so a set is the same on every machine and shard."""
    if keys is not None and _takes_keys(degradation):
        return degradation(hr, keys=list(keys))
    return degradation(hr)


def _takes_keys(degradation) -> bool:
    try:
        return "keys" in inspect.signature(degradation.__call__).parameters
    except (TypeError, ValueError):
        return False


class ImagePipeline:
    """How one batch of HR faces becomes SR faces, per-image metrics and embeddings.

    ``model`` is an ``SRAdapter`` already checked with ``check_compatible``; ``evaluator``
    embeds (None: no embeddings, as for sample grids); ``pixel_metrics`` are the registered
    per-image metrics to compute (PSNR, SSIM, plug-ins)."""

    def __init__(self, model, evaluator=None, frame=None, crop_border: int = 0, pixel_metrics=(),
                 batch_size: int = 32, timer: Optional[StageTimer] = None):
        self.model, self.evaluator, self.frame = model, evaluator, frame
        self.crop_border, self.pixel_metrics, self.batch_size = crop_border, list(pixel_metrics), batch_size
        self.timer = timer or StageTimer()
        # SR batches the device had no memory for, halved and retried (the manifest lists them);
        # the NumPy path never halves, the torch pipeline appends
        self.halved: List[dict] = []

    def to_device(self, hr):
        """Where the stages take a chunk's HR faces: here NumPy as they are
        (``torch_pipeline.TorchImagePipeline`` moves them to the device once)."""
        return hr

    def model_input(self, level: Level, hr: np.ndarray, keys=None) -> np.ndarray:
        """The LR faces of ``level`` as the model is fed them (bicubic-upsampled to the HR
        size, clipped to [0, 1], for a model that wants upsampled input)."""
        t0 = time.perf_counter()
        lr = degrade(level.degradation, hr, keys)
        if self.model.wants_upsampled_input:
            lr = upsampled_model_input(lr, hr.shape[-2:])
        self.timer.add("degrade", t0, len(hr))
        return lr

    def super_resolve(self, lr: np.ndarray, hr_shape, idx, names: List[str]) -> np.ndarray:
        """SR of ``lr`` in batches of ``batch_size`` (the caller cuts whole batches), each
        output checked (shape, range, NaN); ``hr_shape`` is (N, 3, H, W)."""
        t0 = time.perf_counter()
        sr = np.empty(hr_shape, dtype=np.float32)
        written = np.zeros(len(idx), dtype=bool)
        for s in range(0, len(idx), self.batch_size):
            e = min(s + self.batch_size, len(idx))
            batch = torch.from_numpy(np.ascontiguousarray(lr[s:e]))
            out = call_model(self.model, batch, names[s:e], int(idx[s]))
            sr[s:e] = check_sr_batch(self.model.name, out, (e - s,) + tuple(hr_shape[1:]),
                                     first_index=int(idx[s]), keys=names[s:e])
            written[s:e] = True
        if not written.all():  # never score an uninitialised buffer
            raise FhbenchError(f"internal error: model {self.model.name} was not called for image "
                               f"{int(idx[np.flatnonzero(~written)[0]])}; nothing was stored")
        self.timer.add("sr", t0, len(idx))
        return sr

    def image_metrics(self, sr: np.ndarray, hr: np.ndarray, same: np.ndarray) -> Dict[str, np.ndarray]:
        """Each per-image metric of (sr, hr); rows where SR equals HR (``same``) take the
        metric's value for identical images (NaN where it declares none)."""
        if not self.pixel_metrics:
            return {}
        t0 = time.perf_counter()
        differ = np.flatnonzero(~same)
        a, b = (sr, hr) if len(differ) == len(sr) else (sr[differ], hr[differ])  # no copy when all differ
        out = per_image_metric_values(self.pixel_metrics, len(sr), differ,
                                      lambda fn: fn(a, b, crop_border=self.crop_border))
        self.timer.add("image_metrics", t0, len(sr) - int(same.sum()))
        return out

    def embed(self, images: np.ndarray) -> np.ndarray:
        t0 = time.perf_counter()
        emb = self.evaluator.embed(images, self.frame)
        self.timer.add("embed", t0, len(images))
        return emb

    def process(self, level: Level, hr: np.ndarray, idx, names: List[str], keys: List[str],
                hr_emb: np.ndarray) -> Dict[str, np.ndarray]:
        """{"emb": SR embeddings, <metric>: per-image values} of whole SR batches;
        ``hr_emb`` holds the embeddings of ``hr`` (identical SR images reuse them)."""
        sr = self.super_resolve(self.model_input(level, hr, keys), hr.shape, idx, names)
        same = np.array([np.array_equal(s, h) for s, h in zip(sr, hr)], dtype=bool)
        values = self.image_metrics(sr, hr, same)
        emb = np.array(hr_emb, dtype=np.float32, copy=True)
        if not same.all():
            differ = np.flatnonzero(~same)
            emb[differ] = self.embed(sr[differ])
        return {"emb": emb, **values}


def per_image_metric_values(metrics, n: int, differ: np.ndarray, values_of,
                            joint: bool = True) -> Dict[str, np.ndarray]:
    """{metric name: (n,) float64}: each metric's values for the images at ``differ`` (those
    whose SR differs from HR), its identical value (NaN: none) for the others. ``values_of(fn)``
    applies a metric's function (its ``per_image``, or its ``joint`` form when ``joint`` and two
    or more of ``metrics`` share that form, called once for them all) to the differing images.
    Both pipelines fill their per-image metrics through this."""
    shared = Counter(m.joint for m in metrics if joint and m.joint is not None)
    joint_values: Dict[Callable, Dict[str, np.ndarray]] = {}
    out = {}
    for m in metrics:
        values = np.full(n, np.nan if m.identical is None else m.identical, dtype=np.float64)
        if len(differ):
            if shared.get(m.joint, 0) > 1:
                if m.joint not in joint_values:
                    joint_values[m.joint] = values_of(m.joint)
                if m.name not in joint_values[m.joint]:
                    raise MetricError(f"metric {m.name}: its joint form {getattr(m.joint, '__name__', m.joint)} "
                                      f"gave no values for it (only for: {', '.join(joint_values[m.joint])})")
                values[differ] = np.asarray(joint_values[m.joint][m.name], dtype=np.float64)
            else:
                values[differ] = np.asarray(values_of(m.per_image), dtype=np.float64)
        out[m.name] = values
    return out


def call_model(model, batch, names, first_index, pass_oom: bool = False):
    """The model's output for one batch; its exceptions (even ``sys.exit``) become one line
    naming the model and the batch. ``pass_oom``: the device's out-of-memory error is passed on
    as it is, for the caller to halve the batch (``torch_stages.halving_on_oom``)."""
    where = f"images {first_index}..{first_index + len(batch) - 1} (first: {names[0]})"
    try:
        return model.super_resolve(batch, names)
    except FhbenchError:
        raise
    except torch.OutOfMemoryError:
        if pass_oom:
            raise
        raise AdapterError(f"model {model.name} ran out of device memory on {where}: lower --batch-size; "
                           "nothing was stored") from None
    except SystemExit as err:
        raise AdapterError(f"model {model.name} called sys.exit({err.code!r}) on {where}; nothing was stored") from None
    except Exception as err:
        message = str(err).strip().splitlines()
        raise AdapterError(f"model {model.name} raised {type(err).__name__} on {where}: "
                           f"{message[0] if message else ''}") from None


class HRSource:
    """HR faces in the run's frame: pre-aligned images read as they are, raw photos aligned by
    their given landmarks or by MTCNN; then rendered at ``hr_size`` (None: the frame's)."""

    def __init__(self, faces, hr_size, cache_dir: Optional[str] = None, device: str = "cpu",
                 timer: Optional[StageTimer] = None):
        self.faces, self.timer = faces, timer or StageTimer()
        base = faces.aligned_frame or SPHEREFACE_112x96
        self.hr_size = tuple(hr_size) if hr_size else base.size
        self.frame = hr_frame(base, self.hr_size)
        self.aligner = None
        self.fallbacks = []
        if faces.aligned_frame is None and faces.landmarks is None:
            from benchmark.faces.alignment import MtcnnAligner

            cache = None if cache_dir == "" else Path(cache_dir or default_cache_dir()) / "alignment"
            self.aligner = MtcnnAligner(template=self.frame, cache_dir=cache, device=device)

    def load(self, idx) -> np.ndarray:
        t0 = time.perf_counter()
        paths = [self.faces.image_root / self.faces.relpaths[i] for i in idx]
        if self.faces.aligned_frame is not None:
            hr = read_batch(paths, expect_hw=self.faces.aligned_frame.size)
            if hr.shape[-2:] != self.hr_size:
                hr = fit_to_hr_size(hr, self.hr_size)
        elif self.faces.landmarks is not None:
            from benchmark.faces.landmark_alignment import align_faces

            hr = align_faces(self.faces, self.frame, idx)
        else:
            result = self.aligner.align_files(paths)
            hr = result.images
            for i, fb in zip(idx, result.fallback):
                if fb and self.faces.relpaths[i] not in self.fallbacks:
                    self.fallbacks.append(self.faces.relpaths[i])
        self.timer.add("load", t0, len(idx))
        return hr

    def alignment_report(self) -> dict:
        if self.faces.aligned_frame is not None:
            return {"alignment": "pre-aligned"}
        if self.aligner is None:
            return {"alignment": "given landmarks"}
        return {"alignment": "mtcnn", "no_face_fallback": "centre crop",
                "n_fallback": len(self.fallbacks), "fallback_images": self.fallbacks}
