"""Identity metrics of the face-restoration papers, per image, from the SR and HR embeddings.

- ``ids``: identity similarity, the cosine similarity of the SR and HR embeddings (higher is
  better; 1 for identical faces). GFPGAN, CodeFormer and DifFace report it with ArcFace.
- ``idd``: identity distance ("Deg."), the angle between the two embeddings in degrees (lower
  is better; 0 for identical faces), as VQFR reports it; ``idd_rad`` is the same angle in
  radians, as RestoreFormer++ reports it.

Both are computed from the embeddings as the evaluator returns them (its rows are L2-unit
already), normalised here once more so that an unnormalised plug-in evaluator still gives a
cosine. For unit embeddings FR loss (their Euclidean distance) is sqrt(2 - 2 IDS) and
2 sin(IDD / 2): three views of one quantity, reported side by side.

The angle is computed as 2 atan2(|a - b|, |a + b|) of the unit rows (Kahan's formula), not
as arccos(IDS): arccos loses half of the digits near IDS = 1, where good restorations live
(an angle of 0.01 degrees would come out as about 0.03 from float32 rounding of the cosine).
"""
from __future__ import annotations

import math
from typing import Any, Tuple

import numpy as np

from benchmark.errors import MetricError
from benchmark.metrics.image import fr_loss  # noqa: F401  (registered first: FR loss precedes IDS)
from benchmark.contracts.metric import MetricSpec, register_metric


def _unit_rows(name: str, sr_emb: Any, hr_emb: Any) -> Tuple[np.ndarray, np.ndarray]:
    arrays = []
    for which, emb in (("sr_emb", sr_emb), ("hr_emb", hr_emb)):
        if hasattr(emb, "detach"):
            emb = emb.detach().cpu().numpy()
        array = np.asarray(emb, dtype=np.float64)
        if array.ndim != 2:
            raise MetricError(f"{name}: {which} must be (N, D), got shape {array.shape}")
        arrays.append(array)
    a, b = arrays
    if a.shape != b.shape:
        raise MetricError(f"{name}: sr_emb has shape {a.shape} but hr_emb has shape {b.shape}")
    out = []
    for which, array in (("sr_emb", a), ("hr_emb", b)):
        norms = np.linalg.norm(array, axis=1)
        bad = np.flatnonzero(~np.isfinite(norms) | (norms == 0))
        if len(bad):
            raise MetricError(f"{name}: {which} row {int(bad[0])} is zero or not finite; "
                              "its angle is undefined")
        out.append(array / norms[:, None])
    return out[0], out[1]


def identity_similarity(sr_emb: Any, hr_emb: Any) -> np.ndarray:
    """IDS per image: cos(SR, HR) = <a, b> / (|a| |b|), in [-1, 1]; (N,) float64."""
    a, b = _unit_rows("ids", sr_emb, hr_emb)
    return np.clip(np.einsum("ij,ij->i", a, b), -1.0, 1.0)


def identity_angle_rad(sr_emb: Any, hr_emb: Any) -> np.ndarray:
    """The angle between the SR and HR embeddings in radians, in [0, pi]; (N,) float64."""
    a, b = _unit_rows("idd", sr_emb, hr_emb)
    return 2.0 * np.arctan2(np.linalg.norm(a - b, axis=1), np.linalg.norm(a + b, axis=1))


def identity_angle_deg(sr_emb: Any, hr_emb: Any) -> np.ndarray:
    """IDD per image: the angle between the SR and HR embeddings in degrees, in [0, 180]."""
    return identity_angle_rad(sr_emb, hr_emb) * (180.0 / math.pi)


register_metric(MetricSpec("ids", "IDS", digits=4, std="ids_std", per_item="images",
                           per_pair=identity_similarity, identical=1.0,
                           summary="identity similarity: cosine of the SR and HR embeddings, per image"))
register_metric(MetricSpec("idd", "IDD (deg)", lower_better=True, digits=2, unit=" deg", std="idd_std",
                           per_item="images", per_pair=identity_angle_deg, identical=0.0,
                           summary="identity distance: angle between the SR and HR embeddings in degrees"))
register_metric(MetricSpec("idd_rad", "IDD (rad)", lower_better=True, digits=4, unit=" rad", std="idd_rad_std",
                           per_item="images", per_pair=identity_angle_rad, identical=0.0,
                           summary="identity distance: angle between the SR and HR embeddings in radians"))
