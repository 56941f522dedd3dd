"""MATLAB's ``imresize(..., 'bicubic')``: cubic kernel a = -0.5, antialiasing when shrinking
(kernel stretched by 1/scale), MATLAB's coordinate map u = x/scale + 0.5 (1 - 1/scale) and
mirror-symmetric borders; done as two matrix products, float64 inside, float32 out.
"""
from __future__ import annotations

import math
from typing import Optional, Tuple

import numpy as np


def _cubic(x):
    ax = np.abs(x)
    ax2, ax3 = ax * ax, ax * ax * ax
    return ((1.5 * ax3 - 2.5 * ax2 + 1) * (ax <= 1)
            + (-0.5 * ax3 + 2.5 * ax2 - 4 * ax + 2) * ((ax > 1) & (ax <= 2)))


def resize_matrix(in_len: int, out_len: int, scale: float) -> np.ndarray:
    """(out_len, in_len) weights of MATLAB's ``contributions`` for one dimension."""
    kernel_width = 4.0
    if scale < 1:
        kernel_width /= scale
    x = np.arange(1, out_len + 1, dtype=np.float64)
    u = x / scale + 0.5 * (1 - 1 / scale)
    left = np.floor(u - kernel_width / 2)
    taps = int(math.ceil(kernel_width)) + 2
    idx = left[:, None] + np.arange(taps)[None, :]          # 1-based candidate indices
    dist = u[:, None] - idx
    w = scale * _cubic(scale * dist) if scale < 1 else _cubic(dist)
    w /= w.sum(1, keepdims=True)
    mirror = np.concatenate([np.arange(in_len), np.arange(in_len - 1, -1, -1)])
    cols = mirror[np.mod(idx.astype(np.int64) - 1, 2 * in_len)]
    m = np.zeros((out_len, in_len))
    np.add.at(m, (np.repeat(np.arange(out_len), taps), cols.ravel()), w.ravel())
    return m


def imresize(images, scale: Optional[float] = None, output_size: Optional[Tuple[int, int]] = None) -> np.ndarray:
    """MATLAB bicubic imresize of (N, 3, H, W) or (3, H, W) float images; not clipped."""
    x = np.asarray(images, dtype=np.float64)
    single = x.ndim == 3
    if single:
        x = x[None]
    h, w = x.shape[-2:]
    if output_size is not None:
        oh, ow = output_size
        sh, sw = oh / h, ow / w
    elif scale is not None:
        sh = sw = float(scale)
        oh, ow = int(math.ceil(h * scale)), int(math.ceil(w * scale))
    else:
        raise ValueError("imresize needs scale or output_size")
    mh, mw = resize_matrix(h, oh, sh), resize_matrix(w, ow, sw)
    # MATLAB resizes the dimension with the smaller scale first.
    if sh <= sw:
        out = np.einsum("oh,nchw->ncow", mh, x)
        out = np.einsum("pw,ncow->ncop", mw, out)
    else:
        out = np.einsum("pw,nchw->nchp", mw, x)
        out = np.einsum("oh,nchp->ncop", mh, out)
    out = out.astype(np.float32)
    return out[0] if single else out


def to_uint8_levels(x) -> np.ndarray:
    """Quantise [0, 1] values to 8-bit levels as MATLAB's uint8() does (round half away)."""
    v = np.clip(np.asarray(x, dtype=np.float64), 0, 1) * 255.0
    return (np.floor(v + 0.5) / 255.0).astype(np.float32)


def upsample_bicubic(lr, hr_hw) -> np.ndarray:
    """MATLAB bicubic upsampling of an LR batch to the HR size (not clipped)."""
    return imresize(lr, output_size=tuple(hr_hw))


def upsampled_model_input(lr, hr_hw) -> np.ndarray:
    """What a model that wants upsampled input is fed (runner, sample grids, training): the
    LR bicubic-upsampled to the HR size, clipped to [0, 1], the interface's range (bicubic
    overshoots to about -0.03 near edges)."""
    return np.clip(upsample_bicubic(lr, hr_hw), 0.0, 1.0)
