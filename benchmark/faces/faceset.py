"""The unit of data a protocol works on: face images with identity labels."""
from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional

import numpy as np

from benchmark.errors import DataError
from benchmark.faces.templates import FaceTemplate
from benchmark.faces.images import read_image_bytes
from benchmark.faces.roots import stays_inside


@dataclass
class FaceSet:
    dataset: str
    image_root: Path
    relpaths: List[str]            # relative to image_root; also the keys of caches and SR folders
    labels: np.ndarray             # int identity index per image
    identities: List[str]          # name of each identity index
    aligned_frame: Optional[FaceTemplate]  # None: raw photos that must be detected and aligned
    extra_files: List[Path] = field(default_factory=list)  # lists/configs the protocol read
    # (N, 4 or 5, 2) float (x, y) in source-image pixels, in template order (eyes, nose,
    # mouth centre or corners), when the dataset ships them; None: detect with MTCNN
    landmarks: Optional[np.ndarray] = None

    def __post_init__(self):
        # Everyone joins image_root / relpath (runner, caches, SR folders): the last guard
        # against a list entry that leads out of the dataset (readers check first, by name).
        for rel in self.relpaths:
            if not stays_inside(rel):
                raise DataError(f"{self.dataset} face set: image {rel!r} is not a path inside {self.image_root}")

    def __len__(self):
        return len(self.relpaths)

    def paths(self) -> List[Path]:
        return [self.image_root / r for r in self.relpaths]

    def subset(self, indices) -> "FaceSet":
        """The faces at ``indices`` (in that order), with the same identity list."""
        idx = np.asarray(indices, dtype=np.int64)
        changes = {"relpaths": [self.relpaths[i] for i in idx],
                   "labels": None if self.labels is None else np.asarray(self.labels)[idx]}
        if self.landmarks is not None:
            changes["landmarks"] = np.asarray(self.landmarks)[idx]
        return dataclasses.replace(self, **changes)

    def image_keys(self, indices=None) -> List[str]:
        """Per image (of ``indices``, default all), the hex SHA256 of its file bytes, followed
        (when the set gives landmarks) by the landmarks' float64 bytes: what an image's aligned
        face depends on, so the key of the per-image result cache (``benchmark/engine/cache.py``).
        Identical files share a key."""
        landmarks = self.landmarks
        keys = []
        for i in range(len(self.relpaths)) if indices is None else indices:
            rel = self.relpaths[i]
            h = hashlib.sha256(read_image_bytes(self.image_root / rel))
            if landmarks is not None:
                h.update(np.asarray(landmarks[i], dtype=np.float64).tobytes())
            keys.append(h.hexdigest())
        return keys

    def content_hash(self, image_keys: Optional[List[str]] = None) -> str:
        """SHA256 over every image's relative path and key, then the extra files: the data
        hash of the run manifest (changes if any pixel, landmark or the list changes)."""
        h = hashlib.sha256()
        for rel, key in zip(self.relpaths, image_keys if image_keys is not None else self.image_keys()):
            h.update(rel.encode() + b"\0" + bytes.fromhex(key))
        for extra in self.extra_files:
            h.update(extra.name.encode() + b"\0" + hashlib.sha256(extra.read_bytes()).digest())
        return h.hexdigest()

