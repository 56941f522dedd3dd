"""The harness's stages as batched torch ops on the run's device (issue 13): degradation,
upsampling for models that want it, the SR output checks, per-image metrics, the precision
the SR model and the evaluator run in, and halving a batch the device has no memory for.

Same numbers as the NumPy path (``engine/pipeline.py``, which stays the reference and the
tests' oracle): the resampling runs in float64 (``HARNESS_DTYPE``) and is cast to float32
where the reference casts, so the 8-bit LR and the upsampled model input are the same bytes
(checked on real LFW faces); PSNR/SSIM on Y run in float64 and agree with the NumPy oracles to
~1e-12 dB / ~1e-15. A degradation or metric without a torch form goes through its NumPy form
(one round trip to the CPU), so a plug-in never has to provide one.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Callable, Dict, List, Optional

import numpy as np
import torch

from benchmark.engine.pipeline import degrade, per_image_metric_values
from benchmark.errors import AdapterError, ConfigError
from benchmark.faces.resize_torch import upsampled_model_input_torch
from benchmark.metrics.image import psnr_y, ssim_y
from benchmark.engine.image_metrics_torch import psnr_y_torch, ssim_y_torch

HARNESS_DTYPE = torch.float64  # float64 resampling: the reference's bytes after its float32 cast

PRECISIONS = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
DEFAULT_PRECISION = "fp32"

# On the CPU the float64 ops run 8 images at a time: their temporaries then stay in the cache
# (a whole 512-image chunk at once is memory-bound: measured 4-15x slower on this 2-core CPU,
# benchmarks/bench_pipeline.py); a GPU takes the whole batch.
CPU_CHUNK = 8


@contextmanager
def harness_threads(device: torch.device):
    """One intra-op thread for the harness's small CPU ops (8-image chunks gain nothing from
    more, and on a loaded machine each parallel section waits for its threads: measured 6x
    slower with 2); the SR model and the evaluator keep torch's setting."""
    if device.type != "cpu":
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def chunked(fn: Callable[[int, int], torch.Tensor], n: int, device: torch.device) -> torch.Tensor:
    """``fn(0, n)`` on a GPU; on the CPU the concatenation of ``fn(s, e)`` over CPU_CHUNK slices."""
    if device.type != "cpu" or n <= CPU_CHUNK:
        return fn(0, n)
    return torch.cat([fn(s, min(s + CPU_CHUNK, n)) for s in range(0, n, CPU_CHUNK)])

# the built-in per-image metrics' torch forms, keyed by their NumPy form (a plug-in that
# re-registers "psnr" with its own function is not silently swapped for ours)
_TORCH_FORMS: Dict[Callable, Callable] = {psnr_y: psnr_y_torch, ssim_y: ssim_y_torch}


def check_precision(precision: str) -> str:
    if precision not in PRECISIONS:
        raise ConfigError(f"--precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    return precision


def autocast(device: torch.device, precision: str):
    """The context the SR model and the evaluator's network run in: nothing for fp32,
    torch.autocast to float16/bfloat16 otherwise (CPU and CUDA both take either)."""
    if precision == DEFAULT_PRECISION:
        return torch.autocast(device.type, enabled=False)
    return torch.autocast(device.type, dtype=PRECISIONS[precision])


def degrade_torch(degradation, hr: torch.Tensor, keys: Optional[List[str]] = None) -> torch.Tensor:
    """The LR faces of ``hr`` (float32, on its device): the degradation's ``degrade_torch`` where
    it has one, else its NumPy form with one round trip (keys passed as ``pipeline.degrade`` does)."""
    torch_form = getattr(degradation, "degrade_torch", None)
    if torch_form is not None:
        return chunked(lambda s, e: torch_form(hr[s:e]), len(hr), hr.device)
    lr = degrade(degradation, hr.detach().cpu().numpy(), keys)
    return torch.from_numpy(np.ascontiguousarray(lr, dtype=np.float32)).to(hr.device)


def model_input_torch(degradation, hr: torch.Tensor, keys, wants_upsampled: bool) -> torch.Tensor:
    """``ImagePipeline.model_input`` on the device: LR, bicubic-upsampled to the HR size and
    clipped to [0, 1] for a model that wants it (float64, then float32 as the reference)."""
    lr = degrade_torch(degradation, hr, keys)
    if wants_upsampled:
        hr_hw = hr.shape[-2:]
        lr = chunked(lambda s, e: upsampled_model_input_torch(lr[s:e], hr_hw, dtype=HARNESS_DTYPE).float(),
                     len(lr), lr.device)
    return lr


def image_metrics_torch(metrics, sr: torch.Tensor, hr: torch.Tensor, same: torch.Tensor,
                        crop_border: int) -> Dict[str, np.ndarray]:
    """``ImagePipeline.image_metrics`` on the device: each metric of the images that differ
    from their HR image (float64), the metric's identical value (NaN: none) for the others."""
    differ = torch.nonzero(~same).flatten()
    a, b = (sr, hr) if len(differ) == len(sr) else (sr[differ], hr[differ])  # no copy when all differ

    on_host: List[np.ndarray] = []  # a and b as NumPy, copied off a GPU once for all the metrics

    def values_of(fn):
        # On the CPU the NumPy forms, which read the tensors' memory, are the fast ones (a
        # thread pool and compiled kernels; torch's float64 SSIM was 3x slower there even
        # against the OpenCV filter before them), and PSNR and SSIM share their Y (the joint
        # form); a GPU runs each metric's torch form.
        torch_form = _TORCH_FORMS.get(fn) if a.device.type != "cpu" else None
        if torch_form is not None:
            return chunked(lambda s, e: torch_form(a[s:e], b[s:e], crop_border=crop_border), len(a),
                           a.device).cpu().numpy()
        if not on_host:
            on_host.extend((a.cpu().numpy(), b.cpu().numpy()))
        return fn(*on_host, crop_border=crop_border)

    return per_image_metric_values(metrics, len(sr), differ.cpu().numpy(), values_of,
                                   joint=a.device.type == "cpu")


def same_images(sr: torch.Tensor, hr: torch.Tensor) -> torch.Tensor:
    """(N,) bool: SR image i equals HR image i exactly (``np.array_equal`` per image)."""
    hr = hr.to(sr.dtype)
    if sr.device.type != "cpu" or sr.dtype == torch.bfloat16:  # NumPy has no bfloat16
        return (sr == hr).flatten(1).all(1)
    # NumPy on the tensors' memory: 2.7x torch's single-threaded comparison and reduction
    equal = sr.detach().numpy() == hr.detach().numpy()
    return torch.from_numpy(equal.reshape(len(equal), -1).all(1) if len(equal) else np.zeros(0, dtype=bool))


def is_out_of_memory(err: BaseException) -> bool:
    return isinstance(err, torch.OutOfMemoryError)


def halving_on_oom(run: Callable[[int, int], torch.Tensor], start: int, stop: int,
                   on_halve: Callable[[int, int, int], None], refuse: Optional[str] = None) -> torch.Tensor:
    """``run(start, stop)``, or, when the device runs out of memory, the two halves of
    [start, stop) run the same way and concatenated (``on_halve(start, size, half)`` records
    it). One image that does not fit is a one-line error, not a crash; so is any batch when
    ``refuse`` says why halving would change the result (a model whose output depends on the
    batch: its batch size is part of its cache key)."""
    try:
        return run(start, stop)
    except torch.OutOfMemoryError:
        if stop - start == 1:
            raise AdapterError(f"the device ran out of memory on a batch of one image (image {start}); "
                               "nothing was stored (free device memory or use a smaller model)") from None
        if refuse:
            raise AdapterError(f"the device ran out of memory on a batch of {stop - start} images; {refuse}; "
                               f"nothing was stored (re-run with --batch-size {(stop - start + 1) // 2})") from None
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    half = (stop - start + 1) // 2
    on_halve(start, stop - start, half)
    first = halving_on_oom(run, start, start + half, on_halve)
    return torch.cat([first, halving_on_oom(run, start + half, stop, on_halve)])
