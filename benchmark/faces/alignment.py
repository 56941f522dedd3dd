"""Detect and align raw face photos to a FaceTemplate, with an on-disk landmark cache.

Pipeline per image: read as RGB uint8 (``images.read_rgb_uint8``), detect faces with
facenet-pytorch's MTCNN (its P/R/O-net weights ship in the wheel, so this works
offline), choose one face (``choose_face``), map its five landmarks onto the template
points with the least-squares similarity transform, and warp (``warp_face``).

Conventions:
- Landmarks are (x, y) in source-image pixels with pixel centres at integer
  coordinates (OpenCV's convention), in MTCNN's order: left eye, right eye, nose tip,
  left mouth corner, right mouth corner, left/right as seen in the image. That is the
  template order (``benchmark.faces.templates``). On the 100 lfw-raw-mini photos, shifting
  the landmarks by half a pixel either way only moves the result further from the
  pre-aligned LFW crops, so no offset is applied.
- Output: (N, 3, H, W) float32 RGB in [0, 1] at the template size. The warp is
  bilinear (cv2.INTER_LINEAR, as insightface's norm_crop and the default of the MATLAB
  imtransform used for the SphereFace crops); it never leaves [0, 1], so nothing is
  clipped. Pixels the warp pulls from outside the photo are black (0).
- No face found: the fallback is the centre crop ``fallback_crop_box`` resized to the
  template size, flagged in ``AlignmentResult.fallback``; its landmarks and
  probability are NaN.
- Cache: ``cache_dir/<template name>/<sha256 of the file bytes>.npz`` holds the chosen
  landmarks, probability and fallback flag (not pixels: the warp is cheap and exact to
  redo). It is written to a hidden temporary file and renamed, so a killed run leaves
  the whole entry or none (at worst a stray ``.<sha>.*.tmp`` file, never read). A hit
  does not run (or even load) MTCNN. Entries written by another detector
  configuration (``DETECTOR_ID``) or unreadable ones are redone.
"""
from __future__ import annotations

import hashlib
import os
import tempfile
import zipfile
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

import cv2
import numpy as np
from tqdm import tqdm

from benchmark.errors import FhbenchError
from benchmark.faces.templates import SPHEREFACE_112x96, FaceTemplate, similarity_transform
from benchmark.faces.images import read_rgb_uint8

# MTCNN settings (facenet-pytorch defaults) and the face choice rule; part of the
# cache entries, so changing either invalidates them.
MIN_FACE_SIZE = 20
THRESHOLDS = (0.6, 0.7, 0.7)
PYRAMID_FACTOR = 0.709
CENTRE_WEIGHT = 2.0
DETECTOR_ID = (f"facenet-pytorch MTCNN min_face={MIN_FACE_SIZE} thresholds={THRESHOLDS} "
               f"factor={PYRAMID_FACTOR}; choice area-{CENTRE_WEIGHT}*offset^2")

# Where the template frame sits in a raw LFW photo, measured from the MTCNN landmarks
# of the 100 lfw-raw-mini photos (median frame height 133 of 250 px, frame centre
# 117.5 px from the top) and of 200 lfw-deepfunneled photos (132.8 and 116.9 px):
# the fallback crop is FALLBACK_HEIGHT x the shorter image side high, centred
# horizontally, with its centre FALLBACK_CENTRE_Y x the image height from the top.
FALLBACK_HEIGHT = 0.52
FALLBACK_CENTRE_Y = 0.47

# One MTCNN call holds at most this many pixels (about 64 LFW photos), so a batch of
# large photos does not exhaust memory; a single larger photo still goes alone.
MAX_PIXELS_PER_CALL = 4_000_000


@dataclass
class AlignmentResult:
    """Aligned faces and, per input path, how they were found (all in input order)."""
    paths: List[Path]
    images: np.ndarray       # (N, 3, H, W) float32 RGB in [0, 1], template size
    landmarks: np.ndarray    # (N, 5, 2) float32 source-image (x, y); NaN where fallback
    probability: np.ndarray  # (N,) float32 MTCNN face probability; NaN where fallback
    fallback: np.ndarray     # (N,) bool: no face found, centre crop used
    from_cache: np.ndarray   # (N,) bool: landmarks came from the cache, MTCNN not run

    @property
    def n_fallback(self) -> int:
        return int(self.fallback.sum())

    @property
    def fallback_paths(self) -> List[Path]:
        return [p for p, fb in zip(self.paths, self.fallback) if fb]


@dataclass(frozen=True)
class Detection:
    """The face chosen in one image, or None fields when there is none."""
    landmarks: Optional[np.ndarray]  # (5, 2) float64
    probability: Optional[float]


def choose_face(boxes: np.ndarray, image_hw: Tuple[int, int]) -> int:
    """Index of the face to keep among ``boxes`` (K, 4) = x1, y1, x2, y2 in pixels.

    Rule: maximise box area - 2 * (squared distance from the box centre to the image
    centre), both in px^2 -- the person LFW centred its photo on wins over a larger
    face at the edge, and a bigger face wins over a nearby small one in the
    background. (The "center_weighted_size" rule of facenet-pytorch and insightface.)
    The image centre is (W/2, H/2); ties go to the lower index.
    """
    boxes = np.asarray(boxes, dtype=np.float64)
    h, w = image_hw
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    cx = (boxes[:, 0] + boxes[:, 2]) / 2 - w / 2
    cy = (boxes[:, 1] + boxes[:, 3]) / 2 - h / 2
    return int(np.argmax(area - CENTRE_WEIGHT * (cx * cx + cy * cy)))


def fallback_crop_box(image_hw: Tuple[int, int], template: FaceTemplate) -> Tuple[float, float, float, float]:
    """(x0, y0, width, height) of the no-face crop, in pixel-edge units (the image spans
    [0, W] x [0, H]); it has the template's aspect ratio (see FALLBACK_HEIGHT)."""
    h, w = image_hw
    box_h = FALLBACK_HEIGHT * min(h, w)
    box_w = box_h * template.width / template.height
    return (w - box_w) / 2, FALLBACK_CENTRE_Y * h - box_h / 2, box_w, box_h


def fallback_matrix(image_hw: Tuple[int, int], template: FaceTemplate) -> np.ndarray:
    """2x3 matrix that resizes ``fallback_crop_box`` onto the template frame, with the
    pixel-centre convention of cv2.resize: u = (x + 0.5 - x0) * W_t / box_w - 0.5."""
    x0, y0, box_w, _ = fallback_crop_box(image_hw, template)
    s = template.width / box_w
    return np.array([[s, 0.0, (0.5 - x0) * s - 0.5],
                     [0.0, s, (0.5 - y0) * s - 0.5]])


def warp_face(image: np.ndarray, matrix: np.ndarray, out_hw: Tuple[int, int]) -> np.ndarray:
    """(H, W, 3) uint8 RGB -> (3, h, w) float32 in [0, 1] through the 2x3 ``matrix``
    (source pixel -> output pixel), bilinear, black outside the source.

    A warp that shrinks by more than 2x would make bilinear taps skip source pixels and
    alias (large photos, e.g. SCface mugshots), so the image is first reduced with
    cv2.INTER_AREA (box averaging) to the warp's scale and the matrix adjusted.
    """
    src = image.astype(np.float32) / np.float32(255.0)
    scale = float(np.sqrt(abs(np.linalg.det(matrix[:, :2]))))
    if scale < 0.5:
        h, w = src.shape[:2]
        nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
        src = cv2.resize(src, (nw, nh), interpolation=cv2.INTER_AREA)
        fx, fy = nw / w, nh / h
        # A reduced pixel x' is the original x = (x' + 0.5) / fx - 0.5.
        undo = np.array([[1 / fx, 0, 0.5 / fx - 0.5], [0, 1 / fy, 0.5 / fy - 0.5], [0, 0, 1]])
        matrix = matrix @ undo
    oh, ow = out_hw
    out = cv2.warpAffine(src, matrix, (ow, oh), flags=cv2.INTER_LINEAR,
                         borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    return out.transpose(2, 0, 1)


class MtcnnAligner:
    """Aligns raw face photos to ``template`` (default: the canonical SphereFace 112x96).

    ``cache_dir`` None disables the cache. ``batch_size`` is the most images per MTCNN
    call; images of equal size are batched together (MTCNN needs equal sizes), within
    consecutive chunks of ``batch_size`` input paths.
    """

    def __init__(self, template: FaceTemplate = SPHEREFACE_112x96, cache_dir=None,
                 device: str = "cpu", batch_size: int = 32):
        if batch_size < 1:
            raise FhbenchError(f"alignment batch_size must be >= 1, got {batch_size}")
        self.template = template
        self.cache_dir = None if cache_dir is None else Path(cache_dir) / template.name
        self.device = device
        self.batch_size = batch_size
        self._mtcnn = None

    def align_files(self, paths: Sequence) -> AlignmentResult:
        """Align every image file in ``paths``; DataError names a missing or corrupt file."""
        paths = [Path(p) for p in paths]
        n = len(paths)
        result = AlignmentResult(
            paths=paths,
            images=np.empty((n, 3) + self.template.size, dtype=np.float32),
            landmarks=np.full((n, 5, 2), np.nan, dtype=np.float32),
            probability=np.full(n, np.nan, dtype=np.float32),
            fallback=np.zeros(n, dtype=bool),
            from_cache=np.zeros(n, dtype=bool))
        with tqdm(total=n, desc="aligning faces", unit="img", leave=False, disable=None) as bar:
            for start in range(0, n, self.batch_size):
                self._align_chunk(range(start, min(n, start + self.batch_size)), result)
                bar.update(min(n, start + self.batch_size) - start)
        return result

    def detect(self, images: np.ndarray) -> List[Detection]:
        """Run MTCNN on equally sized (B, H, W, 3) uint8 RGB images; one Detection each."""
        boxes, probs, points = self._detector().detect(images, landmarks=True)
        found = []
        for box, prob, pts in zip(boxes, probs, points):
            if box is None:
                found.append(Detection(None, None))
                continue
            k = choose_face(box, images.shape[1:3])
            found.append(Detection(np.asarray(pts[k], np.float64), float(prob[k])))
        return found

    def _align_chunk(self, indices: range, result: AlignmentResult) -> None:
        images, digests, detections = {}, {}, {}
        for i in indices:
            images[i] = read_rgb_uint8(result.paths[i])
            if self.cache_dir is None:
                continue
            # A second read of the file, from the OS cache: read_rgb_uint8 keeps its bytes.
            digests[i] = hashlib.sha256(result.paths[i].read_bytes()).hexdigest()
            cached = self._cache_load(digests[i])
            if cached is not None:
                detections[i] = cached
                result.from_cache[i] = True
        by_size = defaultdict(list)
        for i in indices:
            if i not in detections:
                by_size[images[i].shape].append(i)
        for shape, group in by_size.items():
            per_call = max(1, min(self.batch_size, MAX_PIXELS_PER_CALL // (shape[0] * shape[1])))
            for s in range(0, len(group), per_call):
                part = group[s:s + per_call]
                for i, det in zip(part, self.detect(np.stack([images[i] for i in part]))):
                    detections[i] = det
                    if self.cache_dir is not None:
                        self._cache_store(digests[i], det)
        for i in indices:
            det = detections[i]
            if det.landmarks is None:
                matrix = fallback_matrix(images[i].shape[:2], self.template)
                result.fallback[i] = True
            else:
                matrix = similarity_transform(det.landmarks, self.template.points)
                result.landmarks[i] = det.landmarks
                result.probability[i] = det.probability
            result.images[i] = warp_face(images[i], matrix, self.template.size)

    def _detector(self):
        if self._mtcnn is None:
            try:
                import torch
                from facenet_pytorch import MTCNN
            except ImportError as err:
                raise FhbenchError(f"aligning raw photos needs facenet-pytorch ({err}); "
                                   "pip install facenet-pytorch, or use pre-aligned images") from None
            self._mtcnn = MTCNN(min_face_size=MIN_FACE_SIZE, thresholds=list(THRESHOLDS),
                                factor=PYRAMID_FACTOR, select_largest=False,
                                device=torch.device(self.device))
        return self._mtcnn

    def _cache_path(self, digest: str) -> Path:
        return self.cache_dir / f"{digest}.npz"

    def _cache_load(self, digest: str) -> Optional[Detection]:
        try:
            with np.load(self._cache_path(digest)) as entry:
                if str(entry["detector"]) != DETECTOR_ID:
                    return None
                if bool(entry["fallback"]):
                    return Detection(None, None)
                return Detection(entry["landmarks"].astype(np.float64), float(entry["probability"]))
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
            return None  # no entry, or an unreadable one: detect again and (over)write it

    def _cache_store(self, digest: str, det: Detection) -> None:
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        fallback = det.landmarks is None
        fd, tmp = tempfile.mkstemp(dir=self.cache_dir, prefix=f".{digest}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                np.savez(f, detector=np.array(DETECTOR_ID), fallback=np.array(fallback),
                         landmarks=np.full((5, 2), np.nan) if fallback else det.landmarks,
                         probability=np.array(np.nan if fallback else det.probability))
            os.replace(tmp, self._cache_path(digest))
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
