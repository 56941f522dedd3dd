"""Faces of a free-form score, cut for the face-recognition evaluators.

Every evaluator takes faces in fhbench's frame (SphereFace 112x96) and derives its own crop
from it (``contracts/evaluator.py``). Each HR image gives one 2x3 matrix into that frame, and the
SAME matrix cuts its SR image, so an identity metric measures the restoration, never a
difference in detection:

- ``aligned="ffhq"``: the faces are pre-aligned FFHQ-style (GFPGAN, CodeFormer, ...): the
  five points of facexlib's 512x512 ``face_template`` (``templates.FFHQ_512x512``), scaled
  to the image size (facexlib scales it by ``face_size / 512``).
- ``aligned="sphereface-112x96"``: the faces are in fhbench's own frame at any size (what
  ``fhbench degrade`` and ``fhbench run`` use); at 112x96 the matrix is the identity and the
  pixels go to the evaluator untouched, exactly as ``fhbench run`` feeds them.
- ``aligned=None``: MTCNN (facenet-pytorch, offline) on each HR image, its five landmarks
  mapped onto the frame (``faces/alignment.py``: face choice, cache); an HR image where MTCNN
  finds no face gets the centre-crop fallback, and is counted and named in every output.

The warp is ``alignment.warp_face``: bilinear, after an area reduction when it shrinks more
than 2x (a 512 px face to 112 px would alias otherwise).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional

import numpy as np

from benchmark.errors import ConfigError
from benchmark.faces.templates import FFHQ_512x512, SPHEREFACE_112x96, similarity_transform

FRAME = SPHEREFACE_112x96
ALIGNED_FRAMES = {"ffhq": FFHQ_512x512, "sphereface-112x96": SPHEREFACE_112x96}


@dataclass
class FaceCuts:
    """One matrix per pair (into ``FRAME``) and how it was found."""
    matrices: List[Optional[np.ndarray]]   # None: the image is already FRAME at its size
    mode: str
    fallback: List[str] = field(default_factory=list)  # keys MTCNN found no face in

    def describe(self) -> str:
        if self.mode == "mtcnn":
            return (f"MTCNN (facenet-pytorch) on each HR image, five landmarks onto {FRAME.name}; the same warp "
                    f"cuts the SR image; no face: centre crop ({len(self.fallback)} images)")
        template = ALIGNED_FRAMES[self.mode]
        as_is = sum(m is None for m in self.matrices)
        if as_is == len(self.matrices):
            return f"pre-aligned {template.name} at {FRAME.height}x{FRAME.width}: fed to the evaluators as they are"
        return (f"pre-aligned {template.name} (its five points scaled to each image's size), warped onto "
                f"{FRAME.name}; the same warp for SR and HR" + (f" ({as_is} images already in it, fed as they are)"
                                                                if as_is else ""))


def check_aligned(aligned: Optional[str]) -> None:
    if aligned is not None and aligned not in ALIGNED_FRAMES:
        raise ConfigError(f"--aligned {aligned!r}: known frames are {', '.join(ALIGNED_FRAMES)}")


def face_cuts(hr_paths, sizes, aligned: Optional[str], keys, cache_dir=None, device: str = "cpu") -> FaceCuts:
    """The matrix of each pair, from its HR image (see the module notes)."""
    if aligned is not None:
        template = ALIGNED_FRAMES[aligned]
        out = []
        for h, w in sizes:
            m = similarity_transform(template.resized(h, w).points, FRAME.points)
            identity = (h, w) == FRAME.size and np.allclose(m, [[1, 0, 0], [0, 1, 0]], atol=1e-9)
            out.append(None if identity else m)
        return FaceCuts(out, aligned)
    from benchmark.faces.alignment import MtcnnAligner, fallback_matrix

    result = MtcnnAligner(template=FRAME, cache_dir=cache_dir, device=device).align_files(hr_paths)
    out, fallback = [], []
    for k, (h, w) in enumerate(sizes):
        if result.fallback[k]:
            out.append(fallback_matrix((h, w), FRAME))
            fallback.append(keys[k])
        else:
            out.append(similarity_transform(result.landmarks[k].astype(np.float64), FRAME.points))
    return FaceCuts(out, "mtcnn", fallback)


def cut(image_rgb8: np.ndarray, matrix: Optional[np.ndarray]) -> np.ndarray:
    """(H, W, 3) uint8 -> (3, 112, 96) float32 in [0, 1] in ``FRAME``."""
    if matrix is None:
        return image_rgb8.transpose(2, 0, 1) / np.float32(255.0)
    from benchmark.faces.alignment import warp_face

    return warp_face(image_rgb8, matrix, FRAME.size)
