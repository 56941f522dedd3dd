"""Labeled Faces in the Wild: the image folder and the official View 2 pairs.

A data root holds ``pairs.txt`` beside ONE image folder in a known layout
(``<Name>/<Name>_<NNNN>.jpg``): ``aligned-112x96/`` (pre-aligned to the SphereFace
crop, used as is), or the raw 250x250 ``lfw-deepfunneled/``, ``lfw_funneled/`` or
``lfw/`` (detected and aligned with MTCNN). ``--data-root`` may name that folder or
a folder with an ``lfw/`` subfolder. Optional beside them: ``people.txt`` (checks that
``all_faces`` sees the complete set) and ``blufr_lfw_config.mat`` (``blufr``).

Selections: ``pairs`` (View 2), ``all_faces`` (every image in the folder, ordered by name
then number; labels by person), ``people(min_images)`` (lfw-ident: the people with at least
that many images; 610 people, 6,733 images for 4 in full LFW) and ``blufr`` (the BLUFR
imageList order, for the config's index vectors).
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import List, Tuple

import numpy as np

from benchmark.errors import DataError, DataMissing, some_names
from benchmark.registry import DATASETS
from benchmark.faces.templates import SPHEREFACE_112x96
from benchmark.faces.blufr import BLUFR_URL, BlufrConfig, load_blufr_config
from benchmark.faces.faceset import FaceSet
from benchmark.faces.roots import find_dataset_folder, inside_root, open_dataset_folder, path_component
from benchmark.faces.selections import selection
from benchmark.faces.survey import Inventory
from benchmark.contracts.dataset import DatasetReader

# Searched in this order; the first present wins (pre-aligned beats raw: no detector noise).
IMAGE_FOLDERS = (("aligned-112x96", SPHEREFACE_112x96), ("lfw-deepfunneled", None),
                 ("lfw_funneled", None), ("lfw", None))
DOWNLOAD_HINT = ("get LFW from http://vis-www.cs.umass.edu/lfw/ (lfw-deepfunneled.tgz and pairs.txt) "
                 "and unpack both into one folder, or run `fhbench datasets --fetch lfw` when online")
BLUFR_FILE = "blufr_lfw_config.mat"
PEOPLE_FILE = "people.txt"
_IMAGE_NAME = re.compile(r"^(?P<name>.+)_(?P<number>\d{4})\.jpg$")


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


def _holds_lfw(root: Path) -> bool:
    return (root / "pairs.txt").exists() or any((root / f).is_dir() for f, _ in IMAGE_FOLDERS[:3])


@DATASETS.register("lfw", summary="Labeled Faces in the Wild (13,233 images, 5,749 people)")
class LFW(DatasetReader):
    def __init__(self, data_root):
        self.root = root = open_dataset_folder(data_root, "lfw", _holds_lfw, "LFW", DOWNLOAD_HINT)
        for folder, frame in IMAGE_FOLDERS:
            if (root / folder).is_dir():
                self.image_root, self.aligned_frame = root / folder, frame
                break
        else:
            names = ", ".join(f for f, _ in IMAGE_FOLDERS)
            raise DataMissing(f"no LFW image folder ({names}) in {root}; {DOWNLOAD_HINT}")

    @staticmethod
    def inventory(data_root) -> Inventory:
        """What ``fhbench datasets`` reports as found and missing."""
        root = find_dataset_folder(data_root, "lfw", _holds_lfw)
        found, missing = [], []
        folder = next((root / f for f, _ in IMAGE_FOLDERS if (root / f).is_dir()), None)
        if folder is None:
            missing.append(f"an image folder in {root} ({', '.join(f for f, _ in IMAGE_FOLDERS)})")
        else:
            n = sum(1 for e in os.scandir(folder) if e.is_dir() and not e.name.startswith("."))
            found.append(f"{folder}/ ({n:,} people)")
        for item in ("pairs.txt", PEOPLE_FILE, BLUFR_FILE):
            (found if (root / item).is_file() else missing).append(str(root / item))
        return Inventory(found, missing, DOWNLOAD_HINT + f"; BLUFR: {BLUFR_FILE} from {BLUFR_URL}",
                         fetchable=True)

    @selection
    def all_faces(self) -> FaceSet:
        """Every image of the folder, by name then number; labels index the sorted names.

        Files other than ``<Name>/<Name>_<NNNN>.jpg`` (hidden ones aside) are an error, and so
        is a folder that disagrees with ``people.txt`` when that file is there.
        """
        relpaths, names, unexpected = [], [], []
        for person in sorted(os.scandir(self.image_root), key=lambda e: e.name):
            if person.name.startswith("."):
                continue
            if not person.is_dir():
                unexpected.append(person.name)
                continue
            numbers = []
            for entry in os.scandir(person.path):
                m = _IMAGE_NAME.match(entry.name)
                if m and m["name"] == person.name and entry.is_file():
                    numbers.append(int(m["number"]))
                elif not entry.name.startswith("."):
                    unexpected.append(f"{person.name}/{entry.name}")
            for k in sorted(numbers):
                relpaths.append(image_relpath(person.name, k))
                names.append(person.name)
        if unexpected:
            raise DataError(f"{self.image_root} holds {len(unexpected):,} files not named "
                            f"<Name>/<Name>_<NNNN>.jpg ({some_names(sorted(unexpected))}); remove them")
        if not relpaths:
            raise DataMissing(f"{self.image_root} holds no LFW images; {DOWNLOAD_HINT}")
        extra = []
        people = self.root / PEOPLE_FILE
        if people.is_file():
            self._check_people(people, relpaths)
            extra.append(people)
        identities = sorted(set(names))
        index = {n: i for i, n in enumerate(identities)}
        return FaceSet("lfw", self.image_root, relpaths, np.array([index[n] for n in names], np.int64),
                       identities, self.aligned_frame, extra_files=extra)

    def _check_people(self, people: Path, relpaths: List[str]) -> None:
        expected = [image_relpath(name, k) for _, name, n in _parse_people(people) for k in range(1, n + 1)]
        have, want = set(relpaths), set(expected)
        missing = [r for r in expected if r not in have]
        if missing:
            raise DataError(f"{self.image_root} lacks {len(missing):,} of the {len(want):,} images {people} "
                            f"lists ({some_names(missing)}): an incomplete download? {DOWNLOAD_HINT}")
        stray = sorted(have - want)
        if stray:
            raise DataError(f"{self.image_root} holds {len(stray):,} images {people} does not list "
                            f"({some_names(stray)}): the people list disagrees with the files")

    @selection
    def people(self, min_images: int = 4) -> FaceSet:
        """lfw-ident: every image of the people with at least ``min_images`` images (in
        ``all_faces`` order); labels index the kept people, sorted by name."""
        faces = self.all_faces()
        counts = np.bincount(faces.labels, minlength=len(faces.identities))
        rows = np.flatnonzero(counts[faces.labels] >= min_images)
        if rows.size == 0:
            raise DataMissing(f"no person in {self.image_root} has {min_images} or more images")
        kept = np.flatnonzero(counts >= min_images)
        relabel = np.full(len(faces.identities), -1, np.int64)
        relabel[kept] = np.arange(len(kept))
        return FaceSet("lfw", self.image_root, [faces.relpaths[r] for r in rows], relabel[faces.labels[rows]],
                       [faces.identities[k] for k in kept], self.aligned_frame, extra_files=faces.extra_files)

    @selection
    def blufr(self, filename: str = BLUFR_FILE) -> Tuple[FaceSet, BlufrConfig]:
        """lfw-blufr: the faces in the config's imageList order (so its 0-based index vectors
        are rows of the FaceSet) and the config. Labels index the sorted person names; an
        imageList image absent from the folder, or a BLUFR label that disagrees with the
        names, is an error."""
        config = load_blufr_config(inside_root(self.root, filename, "LFW BLUFR config (option filename)"))
        relpaths = config.relative_paths()
        for i, r in enumerate(relpaths):  # load_blufr_config refused separators; this is the join's own guard
            inside_root(self.image_root, r, f"{config.source}: imageList{{{i + 1}}}")
        missing = [(i, r) for i, r in enumerate(relpaths) if not (self.image_root / r).is_file()]
        if missing:
            i, r = missing[0]
            raise DataError(f"{config.source}: imageList{{{i + 1}}} {config.image_list[i]} is not in "
                            f"{self.image_root} ({len(missing):,} of {len(relpaths):,} images missing: "
                            f"{some_names([m[1] for m in missing])}); {DOWNLOAD_HINT}")
        names = [r.split("/", 1)[0] for r in relpaths]
        name_of = {}
        for i, (label, name) in enumerate(zip(config.labels, names)):
            if name_of.setdefault(int(label), name) != name:
                raise DataError(f"{config.source}: labels{{{i + 1}}} = {label} is {name_of[int(label)]} "
                                f"elsewhere but {config.image_list[i]} here")
        identities = sorted(set(names))
        index = {n: i for i, n in enumerate(identities)}
        faces = FaceSet("lfw", self.image_root, relpaths, np.array([index[n] for n in names], np.int64),
                        identities, self.aligned_frame, extra_files=[config.source])
        return faces, config

    @selection
    def pairs(self, filename: str = "pairs.txt") -> Pairs:
        path = inside_root(self.root, filename, "LFW pairs file (option filename)")
        if not path.is_file():
            raise DataMissing(f"{path} is missing; {DOWNLOAD_HINT}")
        rows = parse_pairs(path)
        index, relpaths, names = {}, [], []
        left, right = [], []
        for lineno, a, b, _, _ in rows:
            for rel, side in ((a, left), (b, right)):
                if rel not in index:
                    inside_root(self.image_root, rel, f"{path}:{lineno}: image")
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
        return Pairs(faces, np.array(left), np.array(right), np.array([r[3] for r in rows], dtype=bool),
                     np.array([r[4] for r in rows], dtype=np.int64), path)


def _parse_people(path: Path) -> List[tuple]:
    """Rows (lineno, name, number of images) of people.txt (a fold count, then per fold a
    people count and "Name<TAB>n" lines) or peopleDevTrain/DevTest.txt (a count, then lines)."""
    rows, seen = [], {}
    for lineno, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
        f = line.split()
        if not f or (len(f) == 1 and f[0].isdecimal()):
            continue  # blank, or a fold / people count
        if len(f) != 2 or not f[1].isdecimal() or int(f[1]) < 1:
            raise DataError(f"{path}:{lineno}: expected 'Name<TAB>number of images', got {line.strip()!r}")
        path_component(f[0], f"{path}:{lineno}: name")
        if f[0] in seen:
            raise DataError(f"{path}:{lineno}: {f[0]} is listed twice (also line {seen[f[0]]})")
        seen[f[0]] = lineno
        rows.append((lineno, f[0], int(f[1])))
    if not rows:
        raise DataError(f"{path} lists no people")
    return rows


def pair_list_lines(path: Path) -> List[tuple]:
    """(lineno, fields, is_genuine, fold) per pair line of a list in LFW's pairs.txt layout (LFW's own
    lists and fhbench's CelebA list): a header "<folds> <n>", then per fold n genuine lines
    followed by n impostor lines; blank lines ignored. Header and line count are checked."""
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
    return [(lineno, f, (k % (2 * per_fold)) < per_fold, k // (2 * per_fold)) for k, (lineno, f) in enumerate(body)]


def parse_pairs(path: Path) -> List[tuple]:
    """Rows (lineno, relpath_a, relpath_b, is_same, fold) of an LFW pairs file: matched lines
    "Name i j", mismatched lines "Name1 i Name2 j" (tabs or spaces)."""
    rows = []
    for lineno, f, expect_same, fold in pair_list_lines(path):
        for name in (f[0], f[2]) if len(f) == 4 else f[:1]:
            path_component(name, f"{path}:{lineno}: name")
        try:
            if len(f) == 3 and expect_same:
                rows.append((lineno, image_relpath(f[0], int(f[1])), image_relpath(f[0], int(f[2])), True, fold))
            elif len(f) == 4 and not expect_same:
                rows.append((lineno, image_relpath(f[0], int(f[1])), image_relpath(f[2], int(f[3])), False, fold))
            else:
                kind = "matched 'Name i j'" if expect_same else "mismatched 'Name1 i Name2 j'"
                raise DataError(f"{path}:{lineno}: expected a {kind} pair, got {' '.join(f)!r}")
        except ValueError:
            raise DataError(f"{path}:{lineno}: image numbers must be integers, got {' '.join(f)!r}") from None
    return rows


def write_pairs_subset(lfw_root, out_root, pairs_per_fold: int) -> Path:
    """An LFW root at ``out_root`` whose pairs.txt keeps the first ``pairs_per_fold`` matched and
    the first ``pairs_per_fold`` mismatched pairs of each fold (the official order), its image
    folder linked to ``lfw_root``'s: a quick, still 10-fold lfw-10fold for benchmarks and tests."""
    lfw_root, out_root = Path(lfw_root), Path(out_root)
    lines = (lfw_root / "pairs.txt").read_text().splitlines()
    folds, per_fold = (int(v) for v in lines[0].split())
    if not 1 <= pairs_per_fold <= per_fold:
        raise DataError(f"pairs_per_fold must be 1..{per_fold}, got {pairs_per_fold}")
    keep = [f"{folds}\t{pairs_per_fold}"]
    for f in range(folds):
        block = lines[1 + 2 * per_fold * f: 1 + 2 * per_fold * (f + 1)]
        keep += block[:pairs_per_fold] + block[per_fold:per_fold + pairs_per_fold]
    out_root.mkdir(parents=True, exist_ok=True)
    (out_root / "pairs.txt").write_text("\n".join(keep) + "\n")
    folder = "aligned-112x96"
    (out_root / folder).symlink_to((lfw_root / folder).resolve())
    return out_root
