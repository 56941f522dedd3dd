"""The blind degradation of the face-restoration papers ("CelebA-Test"-style synthetic LR).

Per image, at the HR size (as GFPGAN's and CodeFormer's pipelines degrade):

1. Gaussian blur, isotropic, standard deviation ``sigma`` px, a 41 x 41 kernel (GFPGAN's
   ``blur_kernel_size``) normalised to sum 1, mirrored borders (OpenCV's BORDER_REFLECT_101);
2. bicubic downsampling by ``r`` (MATLAB ``imresize(I, 1/r)``: ceil(H / r) x ceil(W / r),
   antialiased; r < 1 upsamples);
3. Gaussian noise of standard deviation ``sigma_n`` on the 0..255 scale, then clipping and
   rounding to 8-bit levels (as GFPGAN does before its JPEG step);
4. JPEG at quality ``q`` through OpenCV (``cv2.imencode``, RGB written as BGR, baseline,
   not optimised, OpenCV's default chroma subsampling; the OpenCV and libjpeg versions are
   recorded in ``spec()``), decoded back;
5. bicubic resizing (MATLAB imresize) to the level's LR size (HR / scale, or the protocol's
   fixed LR size) and 8-bit quantisation. The model therefore always gets the protocol's LR
   size, whatever ``r`` was drawn: GFPGAN resizes back to the HR size instead (its networks
   take 512 x 512 input); a model that wants that gets it with ``--upsampled-input``.

The four parameters are drawn per image, uniformly from the ranges given (defaults: the
CelebA-Test ranges sigma 0.1-10, r 0.8-8, sigma_n 0-20, q 60-100, q an integer), together
with the noise, from a NumPy PCG64 generator seeded by (``seed``, the image's content key,
the SHA256 of its file). So an image gets the same degradation on every machine, in every
batch and in every ``--cluster`` shard, and the same image in two datasets too.
``params(keys)`` returns them; the runner stores them with the run.
"""
from __future__ import annotations

import math
import re
from typing import Dict, List, Optional, Sequence

import numpy as np

from benchmark.contracts.degradation import Degradation, divided_size
from benchmark.errors import ConfigError, DataError
from benchmark.faces.resize import imresize, to_uint8_levels
from benchmark.registry import DEGRADATIONS

KERNEL_SIZE = 41
DEFAULTS = {"sigma": (0.1, 10.0), "r": (0.8, 8.0), "noise": (0.0, 20.0), "jpeg": (60, 100)}
PARAM_NAMES = ("sigma", "r", "noise", "jpeg")   # the order they are drawn in


def _key_int(key: str) -> int:
    if not isinstance(key, str) or not re.fullmatch(r"[0-9a-fA-F]{1,128}", key):
        raise DataError(f"blind degradation: image key {key!r} is not a hex content hash")
    return int(key, 16)


def _range(name: str, value, low: float, high: float, integer: bool = False):
    """A [lo, hi] option: a pair (or one number for a fixed value), inside [low, high]."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = (value, value)
    if (not isinstance(value, (list, tuple)) or len(value) != 2
            or any(isinstance(v, bool) or not isinstance(v, (int, float)) for v in value)):
        raise ConfigError(f"blind degradation: {name} must be a number or a [min, max] pair, got {value!r}")
    lo, hi = value
    if integer and (lo != int(lo) or hi != int(hi)):
        raise ConfigError(f"blind degradation: {name} must be integers, got {value!r}")
    if not (math.isfinite(lo) and math.isfinite(hi) and low <= lo <= hi <= high):
        raise ConfigError(f"blind degradation: {name} must satisfy {low} <= min <= max <= {high}, got {value!r}")
    return (int(lo), int(hi)) if integer else (float(lo), float(hi))


def jpeg_encoder() -> dict:
    """What encodes the JPEG step: OpenCV's version and the libjpeg it was built with."""
    import cv2

    build = cv2.getBuildInformation()
    match = re.search(r"^\s*JPEG:\s*(.+)$", build, re.MULTILINE)
    return {"library": "opencv", "opencv": cv2.__version__, "libjpeg": match.group(1).strip() if match else None,
            "flags": {"IMWRITE_JPEG_QUALITY": "q", "IMWRITE_JPEG_OPTIMIZE": 0, "IMWRITE_JPEG_PROGRESSIVE": 0},
            "chroma_subsampling": "OpenCV default (4:2:0)", "channel_order": "RGB written as BGR"}


def jpeg_round_trip(rgb_uint8: np.ndarray, quality: int) -> np.ndarray:
    """(3, H, W) RGB uint8 -> JPEG at ``quality`` through OpenCV -> (3, H, W) RGB uint8."""
    import cv2

    bgr = np.ascontiguousarray(rgb_uint8.transpose(1, 2, 0)[:, :, ::-1])
    ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, int(quality), cv2.IMWRITE_JPEG_OPTIMIZE, 0,
                                         cv2.IMWRITE_JPEG_PROGRESSIVE, 0])
    if not ok:
        raise DataError(f"blind degradation: OpenCV could not JPEG-encode a {bgr.shape} image")
    out = cv2.imdecode(buf, cv2.IMREAD_COLOR)
    return np.ascontiguousarray(out[:, :, ::-1].transpose(2, 0, 1))


def gaussian_kernel(sigma: float, size: int = KERNEL_SIZE) -> np.ndarray:
    half = size // 2
    k = np.exp(-0.5 * (np.arange(-half, half + 1, dtype=np.float64) / sigma) ** 2)
    return k / k.sum()


@DEGRADATIONS.register("blind", summary="blur, downsampling by r, noise, JPEG: per-image random (CelebA-Test style)")
class BlindDegradation(Degradation):
    name = "blind"
    param_names = PARAM_NAMES

    def __init__(self, scale: Optional[int] = None, size=None, sigma=DEFAULTS["sigma"], r=DEFAULTS["r"],
                 noise=DEFAULTS["noise"], jpeg=DEFAULTS["jpeg"], seed: int = 0):
        if (scale is None) == (size is None):
            raise ConfigError("blind degradation needs exactly one of scale or size")
        if scale is not None and (isinstance(scale, bool) or not isinstance(scale, int) or scale < 1):
            raise ConfigError(f"blind degradation: scale must be a positive integer, got {scale!r}")
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise ConfigError(f"blind degradation: seed must be a non-negative integer, got {seed!r}")
        self.scale, self.size, self.seed = scale, tuple(size) if size else None, seed
        self.sigma = _range("sigma", sigma, 1e-3, 50.0)
        self.r = _range("r", r, 0.1, 64.0)
        self.noise = _range("noise", noise, 0.0, 255.0)
        self.jpeg = _range("jpeg", jpeg, 1, 100, integer=True)

    def lr_size(self, hr_hw):
        if self.size:
            return self.size
        return divided_size(hr_hw, self.scale)

    def _generator(self, key: str) -> np.random.Generator:
        return np.random.Generator(np.random.PCG64(np.random.SeedSequence([self.seed, _key_int(key)])))

    def _draw(self, rng: np.random.Generator) -> Dict[str, float]:
        return {"sigma": float(rng.uniform(*self.sigma)), "r": float(rng.uniform(*self.r)),
                "noise": float(rng.uniform(*self.noise)),
                "jpeg": int(rng.integers(self.jpeg[0], self.jpeg[1], endpoint=True))}

    def params(self, keys: Sequence[str]) -> List[Dict[str, float]]:
        """Each image's parameters (sigma, r, noise, jpeg), from its content key alone."""
        return [self._draw(self._generator(k)) for k in keys]

    def degrade_one(self, hr: np.ndarray, key: str, lr_hw) -> np.ndarray:
        """One (3, H, W) float HR face in [0, 1] -> its (3, h, w) LR face (8-bit levels)."""
        from scipy.ndimage import correlate1d

        rng = self._generator(key)
        p = self._draw(rng)
        k = gaussian_kernel(p["sigma"])
        x = np.asarray(hr, dtype=np.float64)
        x = correlate1d(correlate1d(x, k, axis=-1, mode="mirror"), k, axis=-2, mode="mirror")
        x = imresize(x, scale=1.0 / p["r"]).astype(np.float64)
        x = x + rng.standard_normal(x.shape) * (p["noise"] / 255.0)
        x8 = np.clip(np.round(x * 255.0), 0, 255).astype(np.uint8)
        x = jpeg_round_trip(x8, p["jpeg"]).astype(np.float32) / 255.0
        if x.shape[-2:] != tuple(lr_hw):
            x = imresize(x, output_size=tuple(lr_hw))
        return to_uint8_levels(x)

    def __call__(self, hr, keys=None):
        hr = np.asarray(hr)
        if keys is None:
            raise DataError("blind degradation draws its parameters per image from the image's content key; "
                            "it was called without keys")
        if len(keys) != len(hr):
            raise DataError(f"blind degradation: {len(hr)} images but {len(keys)} keys")
        lr_hw = self.lr_size(hr.shape[-2:])
        out = np.empty(hr.shape[:-2] + tuple(lr_hw), dtype=np.float32)
        for i, key in enumerate(keys):
            out[i] = self.degrade_one(hr[i], key, lr_hw)
        return out

    def spec(self):
        return {"name": self.name, "scale": self.scale, "size": self.size, "seed": self.seed,
                "sigma": list(self.sigma), "r": list(self.r), "noise": list(self.noise), "jpeg": list(self.jpeg),
                "blur_kernel": f"isotropic Gaussian {KERNEL_SIZE}x{KERNEL_SIZE}, mirrored borders",
                "downsampling": "MATLAB bicubic imresize(I, 1/r)", "noise_scale": "0..255, clipped and rounded",
                "resize_to_lr": "MATLAB bicubic imresize to the level's LR size, 8-bit levels",
                "draw": "uniform per image, PCG64 seeded by SeedSequence([seed, int(sha256 key, 16)]); "
                        "order sigma, r, noise, jpeg, then the noise image",
                "jpeg_encoder": jpeg_encoder()}
