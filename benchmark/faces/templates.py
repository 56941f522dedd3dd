"""Face alignment templates: where the five landmarks (left eye, right eye, nose tip,
left and right mouth corner; x, y in pixels, image left/right) sit in an aligned crop.

The canonical frame of fhbench is the SphereFace 112x96 crop (the one
../shared/data/lfw/aligned-112x96 uses). Every evaluator derives its own crop from
the frame its input images are in by a similarity warp between two templates, so a
112x96 face becomes the 112x112 ArcFace crop by padding 8 px left and right, exactly.
This module is the geometry (where the points are, and where they go when a frame is
resized or padded); ``frames.py`` moves the pixels.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Tuple

import numpy as np

_ARCFACE_112 = np.array([[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366],
                         [41.5493, 92.3655], [70.7299, 92.2041]], dtype=np.float64)


@dataclass(frozen=True)
class FaceTemplate:
    name: str
    height: int
    width: int
    landmarks: Tuple[Tuple[float, float], ...]  # 5 (x, y) pairs, pixel units

    @property
    def points(self) -> np.ndarray:
        return np.asarray(self.landmarks, dtype=np.float64)

    @property
    def size(self) -> Tuple[int, int]:
        return (self.height, self.width)

    def resized(self, height: int, width: int) -> "FaceTemplate":
        """The same face frame rendered at another resolution (e.g. 224x192 SR output).

        Pixel centres map as x' = (x + 0.5) * W'/W - 0.5, the convention of cv2.resize.
        """
        sx, sy = width / self.width, height / self.height
        pts = [((x + 0.5) * sx - 0.5, (y + 0.5) * sy - 0.5) for x, y in self.landmarks]
        return FaceTemplate(f"{self.name}@{height}x{width}", height, width, tuple(pts))

    def padded(self, top: int, bottom: int, left: int, right: int) -> "FaceTemplate":
        """The frame with zero borders added: the points move by (left, top)."""
        if not (top or bottom or left or right):
            return self
        return FaceTemplate(f"{self.name}+pad", self.height + top + bottom, self.width + left + right,
                            tuple((x + left, y + top) for x, y in self.landmarks))


def _as_template(name, h, w, pts):
    return FaceTemplate(name, h, w, tuple((float(x), float(y)) for x, y in pts))


ARCFACE_112x112 = _as_template("arcface-112x112", 112, 112, _ARCFACE_112)
# SphereFace / CosFace 112x96: the ArcFace template 8 px to the left.
SPHEREFACE_112x96 = _as_template("sphereface-112x96", 112, 96, _ARCFACE_112 - [8.0, 0.0])

# The FFHQ 512x512 crop of the blind face-restoration models (GFPGAN, CodeFormer, ...):
# facexlib's FaceRestoreHelper face_template for face_size 512 (scaled for other sizes).
FFHQ_512x512 = _as_template("ffhq-512x512", 512, 512, [[192.98138, 239.94708], [318.90277, 240.1936],
                                                     [256.63416, 314.01935], [201.26117, 371.41043],
                                                     [313.08905, 371.15118]])

TEMPLATES = {t.name: t for t in (ARCFACE_112x112, SPHEREFACE_112x96, FFHQ_512x512)}


def similarity_transform(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity (rotation, uniform scale, translation) mapping src -> dst.

    Umeyama (1991), no reflection; returns the 2x3 matrix for cv2.warpAffine.
    """
    src = np.asarray(src, np.float64)
    dst = np.asarray(dst, np.float64)
    mu_s, mu_d = src.mean(0), dst.mean(0)
    s, d = src - mu_s, dst - mu_d
    cov = d.T @ s / len(src)
    u, sig, vt = np.linalg.svd(cov)
    fix = np.eye(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        fix[1, 1] = -1
    rot = u @ fix @ vt
    scale = np.trace(np.diag(sig) @ fix) / s.var(0).sum()
    t = mu_d - scale * rot @ mu_s
    return np.hstack([scale * rot, t[:, None]])


def template_transform(src: FaceTemplate, dst: FaceTemplate) -> np.ndarray:
    return similarity_transform(src.points, dst.points)
