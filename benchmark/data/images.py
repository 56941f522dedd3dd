"""Reading face images: one place that turns files into RGB arrays or a clear error.

Files are decoded with OpenCV from bytes (any path, any extension OpenCV knows), which
gives BGR; everything after this module is RGB. Grayscale is replicated to 3 channels,
alpha is dropped, CMYK JPEGs are converted by libjpeg. ``.raw`` files are the AR face
database's headerless 768x576 RGB (``benchmark.data.ar.read_ar_raw``).
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

from ..errors import DataError


def read_image_bytes(path) -> np.ndarray:
    """The file's bytes as a uint8 array, or DataError naming the file."""
    try:
        return np.fromfile(path, dtype=np.uint8)
    except FileNotFoundError:
        raise DataError(f"image {path} does not exist") from None
    except OSError as err:
        raise DataError(f"image {path} cannot be read: {err.strerror or err}") from None


def read_rgb_uint8(path) -> np.ndarray:
    """(H, W, 3) uint8 RGB, or DataError naming the file."""
    path = Path(path)
    if path.suffix.lower() == ".raw":  # headerless pixels, as the AR face database ships them
        from .ar import read_ar_raw
        return read_ar_raw(path)
    data = read_image_bytes(path)
    img = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
    if img is None:
        raise DataError(f"image {path} is corrupt or not an image")
    if img.dtype == np.uint16:  # 16-bit PNG: keep the 8 most significant bits
        img = (img >> 8).astype(np.uint8)
    if img.dtype != np.uint8:  # float TIFF/EXR/HDR: no agreed mapping to [0, 255]
        raise DataError(f"image {path} has {img.dtype} pixels; use 8- or 16-bit images")
    if img.ndim == 2:
        return np.repeat(img[:, :, None], 3, axis=2)
    if img.shape[2] == 4:
        img = img[:, :, :3]
    return np.ascontiguousarray(img[:, :, ::-1])


def read_batch(paths: Sequence, expect_hw=None) -> np.ndarray:
    """(N, 3, H, W) float32 RGB in [0, 1]; every image must have the same size."""
    out = None
    for i, p in enumerate(paths):
        img = read_rgb_uint8(p)
        if out is None:
            hw = img.shape[:2] if expect_hw is None else tuple(expect_hw)
            out = np.empty((len(paths), 3) + tuple(hw), dtype=np.float32)
        if img.shape[:2] != out.shape[2:]:
            raise DataError(f"image {p} is {img.shape[0]}x{img.shape[1]}, expected "
                            f"{out.shape[2]}x{out.shape[3]} like the rest of the set")
        out[i] = img.transpose(2, 0, 1) / np.float32(255.0)
    return out if out is not None else np.empty((0, 3, 0, 0), np.float32)


def write_rgb(path, image_chw: np.ndarray) -> None:
    """Write a (3, H, W) [0, 1] RGB image as 8-bit (PNG unless the suffix says otherwise)."""
    hwc = np.clip(np.rint(np.asarray(image_chw).transpose(1, 2, 0) * 255.0), 0, 255).astype(np.uint8)
    ok, buf = cv2.imencode(Path(path).suffix or ".png", hwc[:, :, ::-1])
    if not ok:
        raise DataError(f"cannot encode image for {path}")
    buf.tofile(str(path))
