"""Rendering an aligned face frame at another size: pad to the target's aspect, then resize.

An HR size with the frame's aspect ratio is a plain resize; any other HR size (e.g. 128x128
or 192x192 from the SphereFace 112x96 frame) first PADS the aligned face with zeros,
symmetrically, to the HR aspect ratio (width round(h*W/H), or height round(w*H/W); an odd
extra pixel goes right / bottom), then resizes. Nothing is cropped: 112x96 padded 8 px left
and right is exactly the 112x112 ArcFace crop, so a square HR face is that crop rendered at
the HR size. Resizing is MATLAB bicubic (``benchmark.degrade.imresize``), clipped to [0, 1].
``hr_frame`` gives the template of the result, so evaluators still find the face.
"""
from __future__ import annotations

from typing import Tuple

import numpy as np

from benchmark.faces.resize import imresize
from benchmark.faces.templates import FaceTemplate


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
    top, bottom, left, right = padded_size(source.size, hr_size)
    padded = FaceTemplate(f"{source.name}+pad" if top or bottom or left or right else source.name,
                          source.height + top + bottom, source.width + left + right,
                          tuple((x + left, y + top) for x, y in source.landmarks))
    return padded if padded.size == tuple(hr_size) else padded.resized(*hr_size)
