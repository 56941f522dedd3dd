"""CelebA (Liu et al. 2015): ``img_align_celeba/``, ``identity_CelebA.txt``, ``list_eval_partition.txt``.

Layout (as downloaded from the CelebA site): one folder holding the two list files beside
``img_align_celeba/NNNNNN.jpg`` (202,599 JPEGs, 178x218; a Kaggle-style doubled
``img_align_celeba/img_align_celeba/`` is accepted too). ``--data-root`` may name that
folder or a folder with a ``celeba/`` subfolder. The lists have one line per image,
``000001.jpg 2880`` (identity 1..10,177) and ``000001.jpg 0`` (0 train, 1 validation,
2 test), with CRLF line ends; both must name the same files in the same order.

The images are CelebA's own "aligned" crops, not the fhbench 112x96 frame, so FaceSets
have ``aligned_frame`` None and the runner detects and aligns them with MTCNN.

Selections are computed from the two lists alone (``CelebaLists``), so they can be checked
without the images; ``CelebA`` then refuses an image folder that disagrees with the lists
(a partial download or stray files), naming the files.

- ``knn_faces``: the identities with exactly 30 images in the test partition (no identity
  is in two partitions in the real lists: 259 identities, 7,770 images).
- ``verification_pairs`` (celeba-10fold), drawn from the test partition as LFW View 2 is
  built (folds disjoint in identity), with ``SeededDraw(seed)`` (``benchmark.faces.seeded``:
  PCG64 words only, so identical on any machine and NumPy release):
  1. the partition's identities, ascending by number, are shuffled by ``permutation``;
     fold f takes the shuffled identities f, f + n_folds, f + 2 n_folds, ...;
  2. per fold, in fold order, the fold's images (ascending file name) give the genuine
     candidates: every same-identity pair (a, b), a before b, enumerated by a then b;
     ``below(number of candidates)`` is drawn until n_genuine / n_folds distinct ones
     are picked; then impostor pairs: two ``below(number of fold images)`` draws per try,
     rejected when the identities match or the (unordered) pair was already drawn,
     until n_impostor / n_folds are picked, each stored with the earlier file first;
  3. the list is fold by fold, genuine pairs then impostor pairs, each block sorted by
     file names (like LFW's pairs.txt: 10 x (300 matched + 300 mismatched)).
  ``write_pairs_file`` (or, from the lists alone, ``write_pair_draw``) writes it in
  pairs.txt style; ``CelebA.pairs(file)`` reads it back.
"""
from __future__ import annotations

import os
import re
import tempfile
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Tuple

import numpy as np

from benchmark.errors import DataError, DataMissing, some_names
from benchmark.registry import DATASETS
from benchmark.faces.faceset import FaceSet
from benchmark.datasets.lfw import Pairs, pair_list_lines
from benchmark.faces.seeded import SeededDraw
from benchmark.faces.roots import find_dataset_folder, inside_root, open_dataset_folder
from benchmark.faces.selections import selection
from benchmark.faces.survey import Inventory
from benchmark.contracts.dataset import DatasetReader

IMAGE_FOLDER = "img_align_celeba"
IDENTITY_FILE = "identity_CelebA.txt"
PARTITION_FILE = "list_eval_partition.txt"
PARTITIONS = {0: "train", 1: "validation", 2: "test"}
TEST = 2
DOWNLOAD_HINT = ("CelebA is licensed for non-commercial research and never fetched by fhbench: download "
                 f"{IMAGE_FOLDER}.zip, {IDENTITY_FILE} and {PARTITION_FILE} from "
                 "https://mmlab.ie.cuhk.edu.hk/projects/CelebA.html and put them in one folder")
_NAME = re.compile(r"^\d{6}\.jpg$")


def _read_list(path: Path, what: str, valid) -> Tuple[List[str], np.ndarray]:
    """(file names, int values) of a CelebA list file "<NNNNNN.jpg> <int>" per line."""
    if not path.is_file():
        raise DataMissing(f"{path} is missing; {DOWNLOAD_HINT}")
    names, values, seen = [], [], {}
    with open(path, "r", encoding="ascii", errors="replace", newline=None) as f:  # CRLF -> \n
        for lineno, line in enumerate(f, 1):
            fields = line.split()
            if not fields:
                continue
            if len(fields) != 2 or not _NAME.match(fields[0]) or not fields[1].isdecimal() \
                    or not valid(int(fields[1])):
                raise DataError(f"{path}:{lineno}: expected '<NNNNNN.jpg> <{what}>', got {line.strip()!r}")
            if fields[0] in seen:
                raise DataError(f"{path}:{lineno}: {fields[0]} is listed twice (also line {seen[fields[0]]})")
            seen[fields[0]] = lineno
            names.append(fields[0])
            values.append(int(fields[1]))
    if not names:
        raise DataError(f"{path} lists no images")
    return names, np.array(values, dtype=np.int64)


@dataclass(frozen=True)
class PairDraw:
    """Pairs as rows of ``CelebaLists.names``: left, right, is_same, fold (0-based)."""
    left: np.ndarray
    right: np.ndarray
    is_same: np.ndarray
    fold: np.ndarray
    seed: int


@dataclass(frozen=True)
class CelebaLists:
    """The two CelebA list files, checked against each other; row i is image ``names[i]``."""
    names: List[str]
    identity: np.ndarray   # int64 identity number per image
    partition: np.ndarray  # int64 0 train / 1 validation / 2 test per image
    files: Tuple[Path, Path]

    @classmethod
    def load(cls, folder) -> "CelebaLists":
        folder = Path(folder)
        id_path, part_path = folder / IDENTITY_FILE, folder / PARTITION_FILE
        names, identity = _read_list(id_path, "identity", lambda v: v >= 1)
        part_names, partition = _read_list(part_path, "0|1|2", lambda v: v in PARTITIONS)
        if part_names != names:
            k = next((i for i, (a, b) in enumerate(zip(names, part_names)) if a != b),
                     min(len(names), len(part_names)))
            a = names[k] if k < len(names) else "nothing"
            b = part_names[k] if k < len(part_names) else "nothing"
            raise DataError(f"{part_path} disagrees with {id_path}: image {k + 1} is {b} there and "
                            f"{a} here ({len(part_names):,} vs {len(names):,} images)")
        return cls(names, identity, partition, (id_path, part_path))

    def knn_selection(self, partition: int = TEST, images_per_identity: int = 30) -> np.ndarray:
        """Rows (ascending) of the images of every identity that has exactly
        ``images_per_identity`` images in ``partition``."""
        rows = np.flatnonzero(self.partition == partition)
        ids, counts = np.unique(self.identity[rows], return_counts=True)
        keep = ids[counts == images_per_identity]
        return rows[np.isin(self.identity[rows], keep)]

    def draw_pairs(self, seed: int = 0, n_genuine: int = 3000, n_impostor: int = 3000,
                   n_folds: int = 10, partition: int = TEST) -> PairDraw:
        """The celeba-10fold pairs; the algorithm is in the module notes."""
        if n_folds < 1 or n_genuine % n_folds or n_impostor % n_folds:
            raise DataError(f"CelebA pairs: {n_genuine} genuine and {n_impostor} impostor pairs do not "
                            f"split evenly into {n_folds} folds")
        g_per, i_per = n_genuine // n_folds, n_impostor // n_folds
        rows = np.flatnonzero(self.partition == partition)
        ids = np.unique(self.identity[rows])
        if len(ids) < n_folds:
            raise DataError(f"CelebA partition {partition} has {len(ids)} identities, fewer than {n_folds} folds")
        draw = SeededDraw(seed)
        shuffled = ids[draw.permutation(len(ids))]
        left, right, same, fold = [], [], [], []
        for f in range(n_folds):
            fold_rows = rows[np.isin(self.identity[rows], shuffled[f::n_folds])]
            for a, b, s in (*_genuine(fold_rows, self.identity, g_per, draw, f),
                            *_impostor(fold_rows, self.identity, i_per, draw, f)):
                left.append(a), right.append(b), same.append(s), fold.append(f)
        return PairDraw(np.array(left, np.int64), np.array(right, np.int64), np.array(same, bool),
                        np.array(fold, np.int64), int(seed))


def _genuine(rows: np.ndarray, identity: np.ndarray, n: int, draw: SeededDraw, f: int):
    by_identity = defaultdict(list)  # rows ascending, so each group is too
    for r in rows:
        by_identity[int(identity[r])].append(int(r))
    pairs, seen = [], defaultdict(int)
    for r in rows:  # by a, then b
        group = by_identity[int(identity[r])]
        seen[int(identity[r])] += 1
        pairs.extend((int(r), b) for b in group[seen[int(identity[r])]:])
    if len(pairs) < n:
        raise DataError(f"CelebA pairs: fold {f + 1} has {len(pairs)} same-identity pairs, fewer than {n}")
    picked = set()
    while len(picked) < n:
        picked.add(draw.below(len(pairs)))
    return [(int(pairs[k][0]), int(pairs[k][1]), True) for k in sorted(picked)]


def _impostor(rows: np.ndarray, identity: np.ndarray, n: int, draw: SeededDraw, f: int):
    ids, counts = np.unique(identity[rows], return_counts=True)
    available = (counts.sum() ** 2 - (counts ** 2).sum()) // 2
    if available < n:
        raise DataError(f"CelebA pairs: fold {f + 1} has {available} different-identity pairs, fewer than {n}")
    picked = set()
    while len(picked) < n:
        a, b = rows[draw.below(len(rows))], rows[draw.below(len(rows))]
        if identity[a] != identity[b]:
            picked.add((int(min(a, b)), int(max(a, b))))
    return [(a, b, False) for a, b in sorted(picked)]


def _holds_celeba(root: Path) -> bool:
    return (root / IDENTITY_FILE).exists()


def _image_dir(folder: Path) -> Path:
    images = folder / IMAGE_FOLDER
    nested = images / IMAGE_FOLDER  # the Kaggle archive unpacks to img_align_celeba/img_align_celeba/
    if nested.is_dir() and not (images / "000001.jpg").exists():
        return nested
    return images


@DATASETS.register("celeba", summary="CelebA (202,599 images, 10,177 identities; non-commercial licence)")
class CelebA(DatasetReader):
    def __init__(self, data_root):
        self.root = open_dataset_folder(data_root, "celeba", _holds_celeba, "CelebA", DOWNLOAD_HINT)
        self.lists = CelebaLists.load(self.root)
        self.image_root = _image_dir(self.root)
        self.aligned_frame = None  # CelebA's own crop, not the fhbench frame: align with MTCNN
        if not self.image_root.is_dir():
            raise DataMissing(f"{self.image_root} is missing; {DOWNLOAD_HINT}")
        self._check_images()

    @staticmethod
    def inventory(data_root) -> Inventory:
        """What ``fhbench datasets`` reports as found and missing."""
        root = find_dataset_folder(data_root, "celeba", _holds_celeba)
        found, missing = [], []
        for item in (IDENTITY_FILE, PARTITION_FILE):
            (found if (root / item).is_file() else missing).append(str(root / item))
        images = _image_dir(root)
        if images.is_dir():
            n = sum(1 for e in os.scandir(images) if not e.name.startswith("."))
            found.append(f"{images}/ ({n:,} files)")
        else:
            missing.append(f"{images}/")
        return Inventory(found, missing, DOWNLOAD_HINT)

    def _check_images(self) -> None:
        """Every listed image on disk and nothing else (hidden files aside), or a DataError."""
        present = {e.name for e in os.scandir(self.image_root) if not e.name.startswith(".")}
        listed = set(self.lists.names)
        missing = [n for n in self.lists.names if n not in present]
        if missing:
            raise DataError(f"{self.image_root} lacks {len(missing):,} of the {len(listed):,} images "
                            f"{IDENTITY_FILE} lists ({some_names(missing)}): an incomplete download? {DOWNLOAD_HINT}")
        stray = sorted(present - listed)
        if stray:
            raise DataError(f"{self.image_root} holds {len(stray):,} files that {IDENTITY_FILE} does not list "
                            f"({some_names(stray)}): the identity list disagrees with the files; "
                            "remove them or use the matching lists")

    def _faces(self, rows: np.ndarray, extra: Optional[List[Path]] = None) -> FaceSet:
        ident = self.lists.identity[rows]
        numbers = sorted(set(int(i) for i in ident))
        index = {n: k for k, n in enumerate(numbers)}
        return FaceSet("celeba", self.image_root, [self.lists.names[r] for r in rows],
                       np.array([index[int(i)] for i in ident], dtype=np.int64),
                       [str(n) for n in numbers], None, extra_files=list(extra or self.lists.files))

    @selection
    def all_faces(self) -> FaceSet:
        return self._faces(np.arange(len(self.lists.names)))

    @selection
    def knn_faces(self, partition: int = TEST, images_per_identity: int = 30) -> FaceSet:
        """celeba-knn: the identities with exactly ``images_per_identity`` images in ``partition``."""
        rows = self.lists.knn_selection(partition, images_per_identity)
        if rows.size == 0:
            raise DataMissing(f"no CelebA identity has exactly {images_per_identity} images in partition "
                              f"{partition} ({PARTITIONS.get(partition, '?')})")
        return self._faces(rows)

    @selection
    def verification_pairs(self, seed: int = 0, n_genuine: int = 3000, n_impostor: int = 3000,
                           n_folds: int = 10, partition: int = TEST) -> Pairs:
        """celeba-10fold: the seeded pair draw of the module notes as a ``Pairs``."""
        d = self.lists.draw_pairs(seed, n_genuine, n_impostor, n_folds, partition)
        return self._pairs(d.left, d.right, d.is_same, d.fold, self.lists.files[0], list(self.lists.files))

    @selection
    def pairs(self, filename=None) -> Pairs:
        """A pair list written by ``write_pairs_file`` (a name inside the CelebA folder, or
        an absolute path inside it; anything outside is refused); None draws the default
        list (seed 0, 3,000 + 3,000 pairs, 10 folds)."""
        if filename is None:
            return self.verification_pairs()
        path = inside_root(self.root, filename, "CelebA pair list (option filename)", allow_absolute=True)
        row_of = {n: i for i, n in enumerate(self.lists.names)}
        left, right, same, fold = [], [], [], []
        for lineno, f, a, b, s in _parse_celeba_pairs(path):
            for name, ident in (a, b):
                if name not in row_of:
                    raise DataError(f"{path}:{lineno}: {name} is not in {IDENTITY_FILE}")
                if self.lists.identity[row_of[name]] != ident:
                    raise DataError(f"{path}:{lineno}: {name} is identity {self.lists.identity[row_of[name]]} "
                                    f"in {IDENTITY_FILE}, not {ident}")
            left.append(row_of[a[0]]), right.append(row_of[b[0]]), same.append(s), fold.append(f)
        return self._pairs(np.array(left), np.array(right), np.array(same, bool), np.array(fold), path,
                           [path, *self.lists.files])

    def _pairs(self, left, right, same, fold, source, extra) -> Pairs:
        # The FaceSet holds each image once, in order of first appearance (as LFW's pairs do).
        order = list(dict.fromkeys(int(r) for pair in zip(left, right) for r in pair))
        position = {r: k for k, r in enumerate(order)}
        faces = self._faces(np.array(order, dtype=np.int64), extra)
        return Pairs(faces, np.array([position[int(r)] for r in left], np.int64),
                     np.array([position[int(r)] for r in right], np.int64),
                     np.asarray(same, bool), np.asarray(fold, np.int64), Path(source))


def write_pairs_file(pairs: Pairs, path) -> Path:
    """Write ``pairs`` in LFW pairs.txt style with CelebA names, atomically:
    a header "<folds>\t<pairs per fold and kind>", then per fold the genuine lines
    "<identity>\t<file>\t<file>" and the impostor lines "<identity>\t<file>\t<identity>\t<file>".
    """
    faces = pairs.faces
    rows = [(faces.identities[faces.labels[a]], faces.relpaths[a], faces.identities[faces.labels[b]],
             faces.relpaths[b]) for a, b in zip(pairs.left, pairs.right)]
    return _write_pair_lines(Path(path), rows, pairs.is_same, pairs.fold)


def write_pair_draw(lists: CelebaLists, draw: PairDraw, path) -> Path:
    """``write_pairs_file`` for a draw made from the list files alone (no images needed)."""
    rows = [(str(lists.identity[a]), lists.names[a], str(lists.identity[b]), lists.names[b])
            for a, b in zip(draw.left, draw.right)]
    return _write_pair_lines(Path(path), rows, draw.is_same, draw.fold)


def _write_pair_lines(path: Path, rows, is_same: np.ndarray, fold: np.ndarray) -> Path:
    n_folds = int(fold.max()) + 1 if len(fold) else 0
    per_fold = np.bincount(fold[is_same], minlength=n_folds)
    per_fold_imp = np.bincount(fold[~is_same], minlength=n_folds)
    if n_folds == 0 or len(set(per_fold)) != 1 or not np.array_equal(per_fold, per_fold_imp):
        raise DataError(f"cannot write {path}: pairs.txt style needs the same number of genuine and "
                        "impostor pairs in every fold")
    expected = np.repeat(np.arange(n_folds), 2 * per_fold[0])
    expected_same = np.tile(np.repeat([True, False], per_fold[0]), n_folds)
    if not (np.array_equal(fold, expected) and np.array_equal(is_same, expected_same)):
        raise DataError(f"cannot write {path}: pairs must run fold by fold, genuine before impostor")
    lines = [f"{n_folds}\t{per_fold[0]}"]
    for (ia, fa, ib, fb), same in zip(rows, is_same):
        lines.append(f"{ia}\t{fa}\t{fb}" if same else f"{ia}\t{fa}\t{ib}\t{fb}")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", newline="\n") as f:
            f.write("\n".join(lines) + "\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _parse_celeba_pairs(path: Path) -> List[tuple]:
    """Rows (lineno, fold, (file_a, id_a), (file_b, id_b), is_same) of a ``write_pairs_file`` list."""
    if not path.is_file():
        raise DataMissing(f"CelebA pair list {path} is missing; write it with benchmark.datasets.celeba.write_pairs_file")
    rows = []
    for lineno, f, same, fold in pair_list_lines(path):
        shape = ("id", "file", "file") if same else ("id", "file", "id", "file")
        ok = len(f) == len(shape) and all(
            x.isdecimal() if kind == "id" else bool(_NAME.match(x)) for x, kind in zip(f, shape))
        if not ok:
            kind = "a genuine '<id> <file> <file>'" if same else "an impostor '<id> <file> <id> <file>'"
            raise DataError(f"{path}:{lineno}: expected {kind} line, got {' '.join(f)!r}")
        a = (f[1], int(f[0]))
        b = (f[2], int(f[0])) if same else (f[3], int(f[2]))
        rows.append((lineno, fold, a, b, same))
    return rows
