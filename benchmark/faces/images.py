"""Reading face images: one place that turns files into RGB arrays or a clear error.

Files are decoded with OpenCV from bytes (any path, any extension OpenCV knows), which
gives BGR; everything after this module is RGB. Grayscale is replicated to 3 channels,
alpha is dropped, CMYK JPEGs are converted by libjpeg. Formats OpenCV cannot read have a
decoder registered by suffix (``register_decoder``): ``.raw`` files are the AR face
database's headerless 768x576 RGB (``read_ar_raw``).

Before decoding, the image's size is read from its header (Pillow reads only the header) and
an image over ``max_image_pixels()`` is refused: a 1 MB PNG of 20000x20000 zeros would
otherwise cost gigabytes before anything could say no. Files Pillow cannot identify (formats
only OpenCV knows) are left to OpenCV, whose own limit is 2^30 pixels.
"""
from __future__ import annotations

import io
import os
import warnings
from pathlib import Path
from typing import Callable, Dict, Sequence

import cv2
import numpy as np

from benchmark.errors import ConfigError, DataError

# Face images are well under a megapixel, raw photos (SCface mugshots) a few; 40 MP still takes
# any camera photo while bounding one decode to ~120 MB of RGB (plus OpenCV's temporaries).
MAX_IMAGE_PIXELS = 40_000_000
MAX_IMAGE_PIXELS_ENV = "FHBENCH_MAX_IMAGE_PIXELS"


def max_image_pixels() -> int:
    """The largest image (width x height) decoded: ``$FHBENCH_MAX_IMAGE_PIXELS`` or MAX_IMAGE_PIXELS."""
    text = os.environ.get(MAX_IMAGE_PIXELS_ENV, "").strip()
    if not text:
        return MAX_IMAGE_PIXELS
    try:
        value = int(text.replace("_", ""))
    except ValueError:
        value = 0
    if value <= 0:
        raise ConfigError(f"{MAX_IMAGE_PIXELS_ENV} must be a positive number of pixels, not {text!r}")
    return value


def check_image_size(path, data: np.ndarray) -> None:
    """DataError naming the file when its header declares more than ``max_image_pixels()``."""
    limit = max_image_pixels()
    size = _png_or_jpeg_size(data)
    if size is None:
        size = _pillow_size(path, data)
    if size is None:
        return  # not a header Pillow knows: OpenCV decides (and names a corrupt file)
    w, h = size
    if w * h > limit:
        raise DataError(f"image {path} is {w}x{h} ({w * h:,} pixels), over the limit of {limit:,} "
                        f"pixels; set {MAX_IMAGE_PIXELS_ENV} to allow larger images")


_JPEG_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def _png_or_jpeg_size(data: np.ndarray):
    """(width, height) from a PNG's IHDR or a JPEG's SOF marker, read here so that the size
    of any such image is known exactly (Pillow refuses over 179 MP without saying WxH)."""
    head = data[:24].tobytes()
    if head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR":
        return int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")
    if head[:2] != b"\xff\xd8":
        return None
    buf, i = data.tobytes(), 2
    while i + 9 < len(buf):
        if buf[i] != 0xFF:
            return None  # not a marker where one must be: leave it to the decoder
        marker = buf[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker == 0xD8 or 0xD0 <= marker <= 0xD7 or marker == 0x01:  # no length field
            i += 2
            continue
        if marker in (0xD9, 0xDA):  # end of image, start of scan: no frame header before it
            return None
        length = int.from_bytes(buf[i + 2:i + 4], "big")
        if marker in _JPEG_SOF:
            return int.from_bytes(buf[i + 7:i + 9], "big"), int.from_bytes(buf[i + 5:i + 7], "big")
        i += 2 + length
    return None


def _pillow_size(path, data: np.ndarray):
    """(width, height) as Pillow reads it from the header of other formats (BMP, TIFF, WebP ...)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data.tobytes())) as im:  # parses the header, decodes nothing
                return im.size
    except Image.DecompressionBombError as err:  # over Pillow's own limit (2 x 89 MP), which stands
        raise DataError(f"image {path} is too large to decode ({err})") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError):
        return None


def read_image_bytes(path) -> np.ndarray:
    """The file's bytes as a uint8 array, or DataError naming the file."""
    try:
        return np.fromfile(path, dtype=np.uint8)
    except FileNotFoundError:
        raise DataError(f"image {path} does not exist") from None
    except OSError as err:
        raise DataError(f"image {path} cannot be read: {err.strerror or err}") from None


# The AR face database's .raw files: no header, 768 x 576 RGB triplets, top row first.
RAW_HEIGHT, RAW_WIDTH = 576, 768
RAW_BYTES = RAW_HEIGHT * RAW_WIDTH * 3


# suffix -> decoder (path -> (H, W, 3) uint8 RGB) for files OpenCV cannot read; one line adds one
DECODERS: Dict[str, Callable[[Path], np.ndarray]] = {}


def register_decoder(suffix: str):
    """Decorator: ``@register_decoder(".raw")`` makes ``read_rgb_uint8`` use the function for
    files with that suffix (case-insensitive)."""
    def deco(fn):
        DECODERS[suffix.lower()] = fn
        return fn
    return deco


@register_decoder(".raw")
def read_ar_raw(path) -> np.ndarray:
    """(576, 768, 3) uint8 RGB from an AR ``.raw`` file, or DataError naming the file."""
    path = Path(path)
    data = read_image_bytes(path)
    if data.size != RAW_BYTES:
        raise DataError(f"image {path} has {data.size:,} bytes; an AR .raw image has {RAW_BYTES:,} "
                        f"({RAW_WIDTH} x {RAW_HEIGHT} RGB)")
    return data.reshape(RAW_HEIGHT, RAW_WIDTH, 3)


def decode_unchanged(path, role: str = "image") -> np.ndarray:
    """The file decoded by OpenCV as stored (any channels and depth; BGR order), after the
    size check, or DataError naming the file."""
    data = read_image_bytes(path)
    if data.size:
        check_image_size(path, data)
    img = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
    if img is None:
        raise DataError(f"{role} {path} is corrupt or not an image (unreadable)")
    return img


def read_rgb_uint8(path) -> np.ndarray:
    """(H, W, 3) uint8 RGB, or DataError naming the file."""
    path = Path(path)
    decoder = DECODERS.get(path.suffix.lower())
    if decoder is not None:  # e.g. AR's headerless .raw pixels
        return decoder(path)
    img = decode_unchanged(path)
    if img.dtype == np.uint16:  # 16-bit PNG: keep the 8 most significant bits
        img = (img >> 8).astype(np.uint8)
    if img.dtype != np.uint8:  # float TIFF/EXR/HDR: no agreed mapping to [0, 255]
        raise DataError(f"image {path} has {img.dtype} pixels; use 8- or 16-bit images")
    if img.ndim == 2:
        return np.repeat(img[:, :, None], 3, axis=2)
    if img.shape[2] not in (3, 4):
        raise DataError(f"image {path} has {img.shape[2]} channels; use gray, RGB or RGBA images")
    # OpenCV's channel swap (alpha dropped): the same bytes as a reversed copy, 10x faster
    return cv2.cvtColor(img, cv2.COLOR_BGRA2RGB if img.shape[2] == 4 else cv2.COLOR_BGR2RGB)


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
        np.divide(img.transpose(2, 0, 1), np.float32(255.0), out=out[i])  # float32, no temporary
    return out if out is not None else np.empty((0, 3, 0, 0), np.float32)


def write_rgb(path, image_chw: np.ndarray) -> None:
    """Write a (3, H, W) [0, 1] RGB image as 8-bit (PNG unless the suffix says otherwise)."""
    hwc = np.clip(np.rint(np.asarray(image_chw).transpose(1, 2, 0) * 255.0), 0, 255).astype(np.uint8)
    ok, buf = cv2.imencode(Path(path).suffix or ".png", hwc[:, :, ::-1])
    if not ok:
        raise DataError(f"cannot encode image for {path}")
    buf.tofile(str(path))
