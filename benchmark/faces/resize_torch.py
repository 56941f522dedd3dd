"""MATLAB's ``imresize(..., 'bicubic')`` and 8-bit quantisation as batched torch ops, on any device.

The same definitions as ``benchmark.faces.resize`` (the NumPy reference, which the tests use as
the oracle): cubic kernel a = -0.5, antialiasing when shrinking, MATLAB's coordinate map and
mirror-symmetric borders, as one (out, in) resampling matrix per dimension; the dimension with
the smaller scale is resized first, as MATLAB does. The matrices are the reference's own
(``resize.resize_matrix``, float64), built once per (in, out, scale) and cached per device and
dtype, then applied with two matrix products over the whole batch.

Precision: the products run in ``dtype`` (default: float64 for float64 input, else float32).
In float64 the result equals the NumPy reference to ~1e-15 before its final float32 cast; in
float32 to ~1e-6 on [0, 1] images. Unlike the reference, the result keeps the compute dtype
(cast it with ``.float()`` for the reference's float32).
"""
from __future__ import annotations

import math
import threading
from functools import lru_cache
from typing import Optional, Tuple

import torch

from benchmark.faces.resize import resize_matrix

_LOCK = threading.Lock()  # the runner's background workers may resize at the same time


@lru_cache(maxsize=None)
def _matrix_float64(in_len: int, out_len: int, scale: float) -> torch.Tensor:
    return torch.from_numpy(resize_matrix(in_len, out_len, scale))


@lru_cache(maxsize=256)
def _matrix_on(in_len: int, out_len: int, scale: float, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    return _matrix_float64(in_len, out_len, scale).to(device=device, dtype=dtype)


def resize_matrix_torch(in_len: int, out_len: int, scale: float, device="cpu",
                        dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """The (out_len, in_len) MATLAB bicubic weights for one dimension, cached per device/dtype."""
    with _LOCK:
        return _matrix_on(int(in_len), int(out_len), float(scale), torch.device(device), dtype)


def _sizes(h: int, w: int, scale: Optional[float], output_size: Optional[Tuple[int, int]]):
    """((oh, ow), (sh, sw)) exactly as ``resize.imresize`` computes them."""
    if output_size is not None:
        oh, ow = output_size
        return (int(oh), int(ow)), (oh / h, ow / w)
    if scale is not None:
        s = float(scale)
        return (int(math.ceil(h * scale)), int(math.ceil(w * scale))), (s, s)
    raise ValueError("imresize needs scale or output_size")


def imresize_torch(images: torch.Tensor, scale: Optional[float] = None,
                   output_size: Optional[Tuple[int, int]] = None,
                   dtype: Optional[torch.dtype] = None) -> torch.Tensor:
    """MATLAB bicubic imresize of an (N, C, H, W) or (C, H, W) float tensor, on its device;
    not clipped. ``dtype``: the compute and result dtype (default float64 for float64 input,
    else float32)."""
    if not torch.is_floating_point(images):
        raise TypeError(f"imresize_torch expects a float tensor, got {images.dtype}")
    if dtype is None:
        dtype = torch.float64 if images.dtype == torch.float64 else torch.float32
    single = images.dim() == 3
    x = (images[None] if single else images).to(dtype)
    h, w = x.shape[-2:]
    (oh, ow), (sh, sw) = _sizes(h, w, scale, output_size)
    mh = resize_matrix_torch(h, oh, sh, x.device, dtype)
    mw = resize_matrix_torch(w, ow, sw, x.device, dtype)
    # MATLAB resizes the dimension with the smaller scale first.
    if sh <= sw:
        out = torch.matmul(mh, x)            # (oh, h) @ (..., h, w) -> (..., oh, w)
        out = torch.matmul(out, mw.T)        # (..., oh, w) @ (w, ow) -> (..., oh, ow)
    else:
        out = torch.matmul(x, mw.T)
        out = torch.matmul(mh, out)
    return out[0] if single else out


def to_uint8_levels_torch(x: torch.Tensor) -> torch.Tensor:
    """Quantise [0, 1] values to 8-bit levels as MATLAB's uint8() does (round half away from
    zero; clipped first): float32 out, bit for bit ``resize.to_uint8_levels`` (computed in
    float64 like it)."""
    v = x.to(torch.float64).clamp(0, 1) * 255.0
    return (torch.floor(v + 0.5) / 255.0).to(torch.float32)


def upsample_bicubic_torch(lr: torch.Tensor, hr_hw, dtype: Optional[torch.dtype] = None) -> torch.Tensor:
    """MATLAB bicubic upsampling of an LR batch to the HR size (not clipped)."""
    return imresize_torch(lr, output_size=tuple(hr_hw), dtype=dtype)


def upsampled_model_input_torch(lr: torch.Tensor, hr_hw, dtype: Optional[torch.dtype] = None) -> torch.Tensor:
    """``resize.upsampled_model_input`` on the device: bicubic upsampled, clipped to [0, 1]."""
    return upsample_bicubic_torch(lr, hr_hw, dtype).clamp(0.0, 1.0)
