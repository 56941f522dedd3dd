"""Labeled Faces in the Wild: the image folder and the official View 2 pairs.

A data root holds ``pairs.txt`` beside ONE image folder in a known layout
(``<Name>/<Name>_<NNNN>.jpg``): ``aligned-112x96/`` (pre-aligned to the SphereFace
crop, used as is), or the raw 250x250 ``lfw-deepfunneled/``, ``lfw_funneled/`` or
``lfw/`` (detected and aligned with MTCNN). ``--data-root`` may name that folder or
a folder with an ``lfw/`` subfolder.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import List

import numpy as np

from ..errors import DataError
from ..registry import DATASETS
from ..templates import SPHEREFACE_112x96
from .faceset import FaceSet

# Searched in this order; the first present wins (pre-aligned beats raw: no detector noise).
IMAGE_FOLDERS = (("aligned-112x96", SPHEREFACE_112x96), ("lfw-deepfunneled", None),
                 ("lfw_funneled", None), ("lfw", None))
DOWNLOAD_HINT = ("get LFW from http://vis-www.cs.umass.edu/lfw/ (lfw-deepfunneled.tgz and pairs.txt) "
                 "and unpack both into one folder")


@dataclass
class Pairs:
    """Indices into ``faces``; ``fold`` is the 0-based LFW View 2 fold of each pair."""
    faces: FaceSet
    left: np.ndarray
    right: np.ndarray
    is_same: np.ndarray
    fold: np.ndarray
    source: Path


def image_relpath(name: str, number: int) -> str:
    return f"{name}/{name}_{number:04d}.jpg"


@DATASETS.register("lfw", summary="Labeled Faces in the Wild (13,233 images, 5,749 people)")
class LFW:
    def __init__(self, data_root):
        root = Path(data_root).expanduser()
        if not root.is_dir():
            raise DataError(f"LFW data root {root} does not exist; {DOWNLOAD_HINT}")
        if not (root / "pairs.txt").exists() and (root / "lfw").is_dir() and \
                not any((root / f).is_dir() for f, _ in IMAGE_FOLDERS[:3]):
            root = root / "lfw"  # a root that holds several datasets
        self.root = root
        for folder, frame in IMAGE_FOLDERS:
            if (root / folder).is_dir():
                self.image_root, self.aligned_frame = root / folder, frame
                break
        else:
            names = ", ".join(f for f, _ in IMAGE_FOLDERS)
            raise DataError(f"no LFW image folder ({names}) in {root}; {DOWNLOAD_HINT}")

    def pairs(self, filename: str = "pairs.txt") -> Pairs:
        path = self.root / filename
        if not path.is_file():
            raise DataError(f"{path} is missing; {DOWNLOAD_HINT}")
        rows = _parse_pairs(path)
        index, relpaths, names = {}, [], []
        left, right = [], []
        for lineno, a, b, same in rows:
            for rel, side in ((a, left), (b, right)):
                if rel not in index:
                    if not (self.image_root / rel).is_file():
                        raise DataError(f"{path}:{lineno}: image {self.image_root / rel} does not exist")
                    index[rel] = len(relpaths)
                    relpaths.append(rel)
                    names.append(rel.split("/", 1)[0])
                side.append(index[rel])
        identities = sorted(set(names))
        ident_index = {n: i for i, n in enumerate(identities)}
        faces = FaceSet("lfw", self.image_root, relpaths,
                        np.array([ident_index[n] for n in names], dtype=np.int64),
                        identities, self.aligned_frame, extra_files=[path])
        n_folds, per_fold = _header(path)
        fold = np.repeat(np.arange(n_folds), 2 * per_fold)
        return Pairs(faces, np.array(left), np.array(right),
                     np.array([r[3] for r in rows], dtype=bool), fold, path)


def _header(path: Path):
    first = path.read_text(errors="replace").splitlines()[0].split()
    return int(first[0]), int(first[1])


def _parse_pairs(path: Path) -> List[tuple]:
    """Rows (lineno, relpath_a, relpath_b, is_same) of an LFW pairs file.

    Format: a header "<folds> <n>", then per fold n matched lines "Name i j" followed by
    n mismatched lines "Name1 i Name2 j" (tabs or spaces).
    """
    lines = path.read_text(errors="replace").splitlines()
    if not lines:
        raise DataError(f"{path}: empty pairs file")
    head = lines[0].split()
    if len(head) != 2 or not all(h.isdecimal() for h in head):
        raise DataError(f"{path}:1: header must be '<folds> <pairs per fold>', got {lines[0]!r}")
    n_folds, per_fold = int(head[0]), int(head[1])
    body = [(i + 2, ln.split()) for i, ln in enumerate(lines[1:]) if ln.strip()]
    if len(body) != 2 * n_folds * per_fold:
        raise DataError(f"{path}:1: header promises {n_folds} folds x {2 * per_fold} pairs = "
                        f"{2 * n_folds * per_fold} lines, found {len(body)}")
    rows = []
    for k, (lineno, f) in enumerate(body):
        expect_same = (k % (2 * per_fold)) < per_fold
        try:
            if len(f) == 3 and expect_same:
                rows.append((lineno, image_relpath(f[0], int(f[1])), image_relpath(f[0], int(f[2])), True))
            elif len(f) == 4 and not expect_same:
                rows.append((lineno, image_relpath(f[0], int(f[1])), image_relpath(f[2], int(f[3])), False))
            else:
                kind = "matched 'Name i j'" if expect_same else "mismatched 'Name1 i Name2 j'"
                raise DataError(f"{path}:{lineno}: expected a {kind} pair, got {' '.join(f)!r}")
        except ValueError:
            raise DataError(f"{path}:{lineno}: image numbers must be integers, got {' '.join(f)!r}") from None
    return rows
