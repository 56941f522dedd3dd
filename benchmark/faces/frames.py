"""Moving aligned faces between frames (``templates.py`` holds the geometry; this module
moves the pixels): a warp from one template to another, and rendering a frame at another
size.

Warps: when two templates differ by an integer translation only (112x96 -> the 112x112
ArcFace crop), the warp is exact zero padding / cropping, on NumPy arrays and on torch
tensors alike; any other warp is cv2's bilinear similarity warp.

Another size: an HR size with the frame's aspect ratio is a plain resize; any other HR size
(e.g. 128x128 or 192x192 from the SphereFace 112x96 frame) first PADS the aligned face with
zeros, symmetrically, to the HR aspect ratio (width round(h*W/H), or height round(w*H/W); an
odd extra pixel goes right / bottom), then resizes. Nothing is cropped: 112x96 padded 8 px
left and right is exactly the 112x112 ArcFace crop, so a square HR face is that crop rendered
at the HR size. Resizing is MATLAB bicubic (``faces.resize.imresize``), clipped to [0, 1].
``hr_frame`` gives the template of the result, so evaluators still find the face.
"""
from __future__ import annotations

from typing import Optional, Tuple

import cv2
import numpy as np

from benchmark.faces.resize import imresize
from benchmark.faces.templates import FaceTemplate, template_transform


def warp_images(images: np.ndarray, matrix: np.ndarray, out_hw: Tuple[int, int],
                interpolation=cv2.INTER_LINEAR) -> np.ndarray:
    """Warp a batch (N, 3, H, W) float32 with one 2x3 matrix; outside pixels become 0."""
    n = images.shape[0]
    h, w = out_hw
    out = np.empty((n, 3, h, w), dtype=np.float32)
    for i in range(n):
        hwc = np.ascontiguousarray(images[i].transpose(1, 2, 0))
        out[i] = cv2.warpAffine(hwc, matrix, (w, h), flags=interpolation,
                                borderMode=cv2.BORDER_CONSTANT, borderValue=0).transpose(2, 0, 1)
    return out


def _integer_offset(matrix: np.ndarray) -> Optional[Tuple[int, int]]:
    """(dx, dy) when the 2x3 similarity is a pure integer translation, else None."""
    lin, t = matrix[:, :2], matrix[:, 2]
    if np.allclose(lin, np.eye(2), atol=1e-6) and np.allclose(t, np.round(t), atol=1e-6):
        return int(round(t[0])), int(round(t[1]))
    return None


def _shift(images, dx: int, dy: int, out_hw):
    """Exact translation with zero fill, for a NumPy array or a torch tensor (on its device)."""
    n, c, h, w = images.shape
    oh, ow = out_hw
    if hasattr(images, "new_zeros"):  # torch
        out = images.new_zeros((n, c, oh, ow))
    else:
        out = np.zeros((n, c, oh, ow), dtype=images.dtype)
    ys, yd = max(0, -dy), max(0, dy)
    xs, xd = max(0, -dx), max(0, dx)
    hh, ww = min(h - ys, oh - yd), min(w - xs, ow - xd)
    if hh > 0 and ww > 0:
        out[:, :, yd:yd + hh, xd:xd + ww] = images[:, :, ys:ys + hh, xs:xs + ww]
    return out


def warp_to_template(images: np.ndarray, src: FaceTemplate, dst: FaceTemplate) -> np.ndarray:
    """Re-crop a batch aligned to ``src`` (at its own resolution) into ``dst``."""
    if images.shape[-2:] != src.size:
        src = src.resized(*images.shape[-2:])
    m = template_transform(src, dst)
    offset = _integer_offset(m)
    if offset is not None:
        return _shift(images, offset[0], offset[1], dst.size)
    return warp_images(images, m, dst.size)


def warp_to_template_torch(images, src: FaceTemplate, dst: FaceTemplate):
    """``warp_to_template`` on a torch batch, on its device: an integer translation is the
    same exact padding / cropping; any other warp goes through the NumPy warp (a round trip
    to the CPU)."""
    if tuple(images.shape[-2:]) != src.size:
        src = src.resized(*images.shape[-2:])
    m = template_transform(src, dst)
    offset = _integer_offset(m)
    if offset is not None:
        return _shift(images, offset[0], offset[1], dst.size)
    import torch

    out = warp_images(images.detach().cpu().numpy(), m, dst.size)
    return torch.from_numpy(out).to(images.device)


def padded_size(hw: Tuple[int, int], target_hw: Tuple[int, int]) -> Tuple[int, int, int, int]:
    """(top, bottom, left, right) zero padding that gives ``hw`` the aspect of ``target_hw``."""
    h, w = hw
    th, tw = target_hw
    if h * tw == w * th:
        return (0, 0, 0, 0)
    if tw * h > th * w:  # the target is wider: pad the width
        extra = int(round(h * tw / th)) - w
        return (0, 0, extra // 2, extra - extra // 2)
    extra = int(round(w * th / tw)) - h
    return (extra // 2, extra - extra // 2, 0, 0)


def fit_to_hr_size(images: np.ndarray, hr_size: Tuple[int, int]) -> np.ndarray:
    """(N, 3, h, w) aligned faces -> (N, 3, H, W) by the pad-then-resize rule."""
    top, bottom, left, right = padded_size(images.shape[-2:], hr_size)
    if top or bottom or left or right:
        images = np.pad(images, ((0, 0), (0, 0), (top, bottom), (left, right)))
    if tuple(images.shape[-2:]) == tuple(hr_size):
        return np.ascontiguousarray(images, dtype=np.float32)
    return np.clip(imresize(images, output_size=tuple(hr_size)), 0.0, 1.0)


def hr_frame(source: FaceTemplate, hr_size: Tuple[int, int]) -> FaceTemplate:
    """The frame of the HR faces: ``source`` padded and resized by the same rule."""
    padded = source.padded(*padded_size(source.size, hr_size))
    return padded if padded.size == tuple(hr_size) else padded.resized(*hr_size)
