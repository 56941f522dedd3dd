"""Aligning faces from landmarks a dataset ships (SCface's four points), instead of MTCNN.

Points are (x, y) in source-image pixels, left/right as seen in the image:
- 5 points: the template order (left eye, right eye, nose tip, left and right mouth
  corner), mapped onto ``template.points``;
- 4 points: left eye, right eye, nose tip, mouth centre, mapped onto the template's eyes,
  nose and the mean of its two mouth corners.
The map is the least-squares similarity of ``benchmark.faces.templates.similarity_transform``;
the warp is ``alignment.warp_face`` (bilinear, box-reduced first when it shrinks by more
than 2x, black outside the photo). Any FaceTemplate works, including one resized to a
low-resolution size (``SPHEREFACE_112x96.resized(16, 14)``): a natural LR probe then comes
out at the LR size directly, without an HR detour.
"""
from __future__ import annotations

from typing import Optional

import numpy as np

from benchmark.errors import DataError
from benchmark.faces.templates import FaceTemplate, similarity_transform
from benchmark.faces.alignment import warp_face
from benchmark.faces.faceset import FaceSet
from benchmark.faces.images import read_rgb_uint8


def template_points(template: FaceTemplate, n_points: int) -> np.ndarray:
    """The template's landmarks in the order of ``n_points`` (4 or 5) source points."""
    pts = template.points
    if n_points == 5:
        return pts
    if n_points == 4:
        return np.vstack([pts[:3], pts[3:5].mean(axis=0)])
    raise DataError(f"landmark alignment takes 4 or 5 points, got {n_points}")


def landmark_matrix(landmarks, template: FaceTemplate) -> np.ndarray:
    """2x3 similarity mapping (4 or 5, 2) source points onto ``template``."""
    src = np.asarray(landmarks, dtype=np.float64)
    if src.ndim != 2 or src.shape[1] != 2 or not np.all(np.isfinite(src)):
        raise DataError(f"landmarks must be finite (4 or 5, 2) (x, y) points, got shape {src.shape}")
    dst = template_points(template, len(src))
    if np.ptp(src, axis=0).max() < 1e-6:
        raise DataError(f"landmarks {src.tolist()} are all one point; they cannot place a face")
    return similarity_transform(src, dst)


def align_image(image: np.ndarray, landmarks, template: FaceTemplate) -> np.ndarray:
    """(H, W, 3) uint8 RGB -> (3, h, w) float32 RGB in [0, 1] at the template size."""
    return warp_face(image, landmark_matrix(landmarks, template), template.size)


def align_faces(faces: FaceSet, template: FaceTemplate, indices: Optional[np.ndarray] = None) -> np.ndarray:
    """(N, 3, h, w) float32: ``faces`` (or the rows ``indices``) warped by their own
    landmarks; an image whose landmarks are bad is named in the error."""
    if faces.landmarks is None:
        raise DataError(f"{faces.dataset} faces in {faces.image_root} carry no landmarks; align them with MTCNN")
    rows = np.arange(len(faces)) if indices is None else np.asarray(indices, dtype=np.int64)
    out = np.empty((len(rows), 3) + template.size, dtype=np.float32)
    for k, r in enumerate(rows):
        path = faces.image_root / faces.relpaths[r]
        try:
            out[k] = align_image(read_rgb_uint8(path), faces.landmarks[r], template)
        except DataError as err:
            if str(path) in str(err):
                raise
            raise DataError(f"image {path}: {err}") from None
    return out
