"""The unit of data a protocol works on: face images with identity labels."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional

import numpy as np

from ..templates import FaceTemplate


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

    def __len__(self):
        return len(self.relpaths)

    def paths(self) -> List[Path]:
        return [self.image_root / r for r in self.relpaths]

    def content_hash(self) -> str:
        """SHA256 over every image's relative path and bytes, then the extra files: the data
        hash of the run manifest (changes if any pixel or the list changes)."""
        h = hashlib.sha256()
        for rel in self.relpaths:
            h.update(rel.encode() + b"\0")
            h.update(hashlib.sha256((self.image_root / rel).read_bytes()).digest())
        for extra in self.extra_files:
            h.update(extra.name.encode() + b"\0" + hashlib.sha256(extra.read_bytes()).digest())
        return h.hexdigest()
