"""A generic identity-folder dataset: ``root/<identity>/<image>``.

For the user's own data. Images are raw (detected and aligned) unless the caller states
the frame they are aligned to. Hidden files and non-image files are ignored; a folder
with no images is an error, never an empty set.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from benchmark.errors import DataError, DataMissing
from benchmark.registry import DATASETS
from benchmark.faces.templates import TEMPLATES
from benchmark.faces.faceset import FaceSet
from benchmark.faces.selections import selection
from benchmark.contracts.dataset import DatasetReader

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".pgm", ".tif", ".tiff", ".webp"}


@DATASETS.register("folder", summary="root/<identity>/<image> (your own data)")
class IdentityFolder(DatasetReader):
    def __init__(self, data_root, aligned: str = None):
        self.root = Path(data_root).expanduser()
        if not self.root.is_dir():
            raise DataMissing(f"identity folder {self.root} does not exist")
        if aligned is not None and aligned not in TEMPLATES:
            raise DataError(f"unknown alignment template {aligned!r}; known: {', '.join(TEMPLATES)}")
        self.aligned_frame = TEMPLATES[aligned] if aligned else None

    @selection
    def faces(self) -> FaceSet:
        relpaths, names = [], []
        for ident in sorted(p for p in self.root.iterdir() if p.is_dir() and not p.name.startswith(".")):
            for img in sorted(ident.iterdir()):
                if img.suffix.lower() in IMAGE_SUFFIXES and not img.name.startswith("."):
                    relpaths.append(f"{ident.name}/{img.name}")
                    names.append(ident.name)
        if not relpaths:
            raise DataMissing(f"{self.root} holds no <identity>/<image> files")
        identities = sorted(set(names))
        index = {n: i for i, n in enumerate(identities)}
        return FaceSet("folder", self.root, relpaths, np.array([index[n] for n in names], np.int64),
                       identities, self.aligned_frame)
