"""``ImagePipeline`` with the harness on the device (issue 13): a chunk's HR faces go to the
device once; degradation, upsampling, SR with its output checks, per-image metrics and the
evaluator's crop and network run there as batched torch ops, and only the embeddings and the
per-image metrics come back as NumPy. The stages are ``torch_stages``; the numbers are the NumPy
pipeline's (see there for the tolerances), which stays the reference.
"""
from __future__ import annotations

import time
from typing import Dict, List

import numpy as np
import torch

from benchmark.engine.pipeline import ImagePipeline, Level, call_model
from benchmark.engine.torch_stages import (DEFAULT_PRECISION, autocast, halving_on_oom, harness_threads,
                                           image_metrics_torch, model_input_torch, same_images)
from benchmark.errors import FhbenchError
from benchmark.contracts.model import check_sr_batch_torch


class TorchImagePipeline(ImagePipeline):
    """The per-image pipeline on ``device``; ``precision`` (fp32, fp16, bf16) is the SR model's
    autocast (the evaluator carries its own). ``halved``: the batches the device had no memory
    for, each split in two and retried (the manifest reports them)."""

    def __init__(self, model, evaluator=None, frame=None, crop_border: int = 0, pixel_metrics=(),
                 batch_size: int = 32, timer=None, device="cpu", precision: str = DEFAULT_PRECISION):
        super().__init__(model, evaluator, frame, crop_border, pixel_metrics, batch_size, timer)
        self.device, self.precision = torch.device(device), precision

    def to_device(self, hr):
        """A chunk's HR faces on the device, once for its HR embeddings and all its levels."""
        if isinstance(hr, torch.Tensor):
            return hr.to(self.device)
        t0 = time.perf_counter()
        out = torch.from_numpy(np.ascontiguousarray(hr, dtype=np.float32)).to(self.device)
        self.timer.add("to_device", t0, len(hr))
        return out

    def model_input(self, level: Level, hr, keys=None) -> torch.Tensor:
        t0 = time.perf_counter()
        with harness_threads(self.device):
            lr = model_input_torch(level.degradation, self.to_device(hr), keys, self.model.wants_upsampled_input)
        self.timer.add("degrade", t0, len(hr))
        return lr

    def super_resolve(self, lr, hr_shape, idx, names: List[str]) -> torch.Tensor:
        """SR of ``lr`` in batches of ``batch_size``, each checked, kept on the device; a batch
        the device has no memory for is halved and retried (``halved``)."""
        t0 = time.perf_counter()
        lr = self.to_device(lr)
        parts = []
        refuse = None if self.model.batch_invariant else (
            f"model {self.model.name}'s output depends on its batch, so fhbench does not halve it")
        for s in range(0, len(idx), self.batch_size):
            e = min(s + self.batch_size, len(idx))
            parts.append(halving_on_oom(lambda a, b: self._sr_batch(lr, a, b, hr_shape, idx, names), s, e,
                                        lambda a, n, half: self.halved.append(
                                            {"first_image": int(idx[a]), "batch": n, "retried_as": half}),
                                        refuse))
        sr = torch.cat(parts) if parts else lr.new_empty((0,) + tuple(hr_shape[1:]))
        if len(sr) != len(idx):  # never score an uninitialised buffer
            raise FhbenchError(f"internal error: SR of {len(idx)} images gave {len(sr)}; nothing was stored")
        self.timer.add("sr", t0, len(idx))
        return sr

    def _sr_batch(self, lr, s, e, hr_shape, idx, names) -> torch.Tensor:
        with autocast(self.device, self.precision):
            out = call_model(self.model, lr[s:e], names[s:e], int(idx[s]), pass_oom=True)
        out = out.to(self.device) if isinstance(out, torch.Tensor) else out
        with harness_threads(self.device):
            return check_sr_batch_torch(self.model.name, out, (e - s,) + tuple(hr_shape[1:]),
                                        first_index=int(idx[s]), keys=names[s:e]).to(self.device)

    def image_metrics(self, sr, hr, same) -> Dict[str, np.ndarray]:
        if not self.pixel_metrics:
            return {}
        t0 = time.perf_counter()
        with harness_threads(self.device):
            out = image_metrics_torch(self.pixel_metrics, sr, hr, same, self.crop_border)
        self.timer.add("image_metrics", t0, len(sr) - int(same.sum()))
        return out

    def embed(self, images) -> np.ndarray:
        """Embeddings of device (or NumPy) faces, as NumPy: through the evaluator's
        ``embed_torch`` (its crop and network on the device) where it has one."""
        t0 = time.perf_counter()
        if hasattr(self.evaluator, "embed_torch"):
            emb = self.evaluator.embed_torch(self.to_device(images), self.frame).cpu().numpy()
        else:
            as_numpy = images.cpu().numpy() if isinstance(images, torch.Tensor) else images
            emb = self.evaluator.embed(as_numpy, self.frame)
        self.timer.add("embed", t0, len(images))
        return np.asarray(emb, dtype=np.float32)

    def process(self, level: Level, hr, idx, names: List[str], keys: List[str],
                hr_emb: np.ndarray) -> Dict[str, np.ndarray]:
        hr = self.to_device(hr)
        sr = self.super_resolve(self.model_input(level, hr, keys), hr.shape, idx, names)
        with harness_threads(self.device):
            same = same_images(sr, hr)
        values = self.image_metrics(sr, hr, same)
        emb = np.array(hr_emb, dtype=np.float32, copy=True)
        differ = torch.nonzero(~same).flatten()
        if len(differ):
            emb[differ.cpu().numpy()] = self.embed(sr[differ])
        return {"emb": emb, **values}


# torch: these stages on --device; numpy: the serial reference path; auto: torch on a GPU (RunOptions)
HARNESSES = ("auto", "torch", "numpy")


def make_pipeline(harness: str, model, evaluator, frame, crop_border: int, pixel_metrics, batch_size: int,
                  timer=None, device="cpu", precision: str = DEFAULT_PRECISION) -> ImagePipeline:
    """The run's per-image pipeline: ``TorchImagePipeline`` on ``device`` (harness ``torch``) or
    the NumPy reference ``ImagePipeline`` (harness ``numpy``, fp32 only)."""
    if harness == "numpy":
        return ImagePipeline(model, evaluator, frame, crop_border, pixel_metrics, batch_size, timer)
    return TorchImagePipeline(model, evaluator, frame, crop_border, pixel_metrics, batch_size, timer,
                              device=device, precision=precision)


def harness_setting(harness: str, device, precision: str) -> dict:
    """What the SR cache key and the manifest record of the harness: nothing for the NumPy
    reference in fp32 (the caches written before issue 13 stay valid); the torch harness's
    device type (float64 sums may round differently on CUDA) and a precision other than fp32."""
    out = {} if harness == "numpy" else {"harness": "torch", "harness_device": torch.device(device).type}
    if precision != DEFAULT_PRECISION:
        out["precision"] = precision
    return out
