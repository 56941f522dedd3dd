"""SCface (Grgic, Delac and Grgic 2011): surveillance-camera faces at three distances.

Layout (as distributed): one folder holding
- ``surveillance_cameras_all/NNN_camC_D.jpg``: subject NNN (001..130), camera C (1..5
  visible light, 6 and 7 infrared), distance D (1 = 4.20 m, 2 = 2.60 m, 3 = 1.00 m), and
  ``NNN_cam8.jpg`` (the infrared mugshot camera);
- ``mugshot_frontal_cropped_all/NNN_frontal.JPG``: the high-quality frontal mugshot;
- optionally ``scface_annotations.txt``: one line per image stem, ``NNN_frontal``,
  ``NNN_camC_D`` or ``NNN_cam8``, then four points x y (tab-separated, CRLF, a trailing blank
  line): left eye, right eye, nose tip, mouth centre, left/right as seen in the image. The
  order is read off the numbers of the real list (2,990 stems): in every line the first
  point lies left of the second at about the same height, the third below both and between
  them, the fourth below the third and between the eyes. Points are used as given (the
  list does not say whether pixels count from 0 or 1: at most a one-pixel shift).
``--data-root`` may name that folder or a folder holding ``scface/``.

With the annotations, FaceSets carry ``landmarks`` (N, 4, 2) and are aligned by them
(``benchmark.faces.landmark_alignment``); without, ``landmarks`` is None and the runner uses
MTCNN, which often misses the 4.20 m faces (eyes ~12 px apart). ``aligned_frame`` is None.

Selections (``ScfaceSplit``, identities "001".."130" shared by gallery and probe):
- ``mugshot_protocol(cameras=1..5)`` (scface-mugshot): gallery = every subject's mugshot,
  probes = every subject's image from each camera at each distance, ordered by distance,
  camera, subject; ``probe_distance`` / ``probe_camera`` say which, for rank-1 per distance;
- ``gallery_probe_by_distance(3, 2, cameras=1..5)`` (scface-1m-2.6m): gallery = the 1.00 m
  images of the cameras (several per subject), probes = their 2.60 m images.
Every subject found must have every image a selection asks for: a missing one is an error
naming it, never a smaller set.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Tuple

import numpy as np

from benchmark.errors import DataError, DataMissing, some_names
from benchmark.registry import DATASETS
from benchmark.faces.faceset import FaceSet
from benchmark.faces.gallery_probe import GalleryProbe
from benchmark.faces.roots import find_dataset_folder, open_dataset_folder
from benchmark.faces.selections import selection
from benchmark.faces.survey import Inventory
from benchmark.contracts.dataset import DatasetReader

SURVEILLANCE = "surveillance_cameras_all"
MUGSHOTS = "mugshot_frontal_cropped_all"
ANNOTATIONS = "scface_annotations.txt"
DISTANCE_M = {1: 4.20, 2: 2.60, 3: 1.00}
VISIBLE_CAMERAS = (1, 2, 3, 4, 5)
IR_CAMERAS = (6, 7)
MUGSHOT = 0  # camera and distance code of a mugshot in ScfaceSplit arrays
IR_MUGSHOT_CAMERA = 8
DOWNLOAD_HINT = ("SCface is licensed by the University of Zagreb and never fetched by fhbench: request it at "
                 f"https://www.scface.org/ and put {SURVEILLANCE}/ and {MUGSHOTS}/ (and {ANNOTATIONS}) in one folder")
_CAMERA = re.compile(r"^(?P<subject>\d{3})_cam(?P<camera>[1-7])_(?P<distance>[1-3])$")
_CAM8 = re.compile(r"^(?P<subject>\d{3})_cam8$")
_FRONTAL = re.compile(r"^(?P<subject>\d{3})_frontal$")


@dataclass(frozen=True)
class ScImage:
    relpath: str    # relative to the SCface folder
    stem: str       # e.g. "001_cam1_3", the annotation key
    subject: str    # "001"
    camera: int     # 1..7, 8 for the IR mugshot, 0 (MUGSHOT) for the frontal mugshot
    distance: int   # 1..3, 0 for both mugshots


def parse_stem(stem: str) -> Optional[Tuple[str, int, int]]:
    """(subject, camera, distance) of an SCface image stem, or None when it is not one."""
    for pattern, camera, distance in ((_CAMERA, None, None), (_CAM8, IR_MUGSHOT_CAMERA, 0),
                                      (_FRONTAL, MUGSHOT, 0)):
        m = pattern.match(stem)
        if m:
            if camera is None:
                return m["subject"], int(m["camera"]), int(m["distance"])
            return m["subject"], camera, distance
    return None


def read_annotations(path) -> Dict[str, np.ndarray]:
    """{stem: (4, 2) float64 points} from ``scface_annotations.txt``; DataError names the line."""
    path = Path(path)
    out, line_of = {}, {}
    for lineno, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
        f = line.split()
        if not f:
            continue
        if len(f) != 9 or parse_stem(f[0]) is None:
            raise DataError(f"{path}:{lineno}: expected '<NNN_camC_D | NNN_cam8 | NNN_frontal> x1 y1 x2 y2 "
                            f"x3 y3 x4 y4', got {line.strip()!r}")
        try:
            points = np.array([float(v) for v in f[1:]], dtype=np.float64).reshape(4, 2)
        except ValueError:
            raise DataError(f"{path}:{lineno}: landmark coordinates must be numbers, got {line.strip()!r}") from None
        if not np.all(np.isfinite(points)):
            raise DataError(f"{path}:{lineno}: landmark coordinates must be finite, got {line.strip()!r}")
        if f[0] in out:
            raise DataError(f"{path}:{lineno}: {f[0]} is annotated twice (also line {line_of[f[0]]})")
        out[f[0]], line_of[f[0]] = points, lineno
    if not out:
        raise DataError(f"{path} annotates no images")
    return out


def _holds_scface(root: Path) -> bool:
    return (root / SURVEILLANCE).is_dir()


def _scan(folder: Path, sub: str, kinds: str) -> Tuple[List[ScImage], List[str]]:
    images, unexpected = [], []
    for entry in sorted(os.scandir(folder / sub), key=lambda e: e.name):
        if entry.name.startswith("."):
            continue
        stem, suffix = os.path.splitext(entry.name)
        parsed = parse_stem(stem) if suffix.lower() == ".jpg" and entry.is_file() else None
        if parsed is None or (parsed[1] == MUGSHOT) != (kinds == "mugshot"):
            unexpected.append(f"{sub}/{entry.name}")
        else:
            images.append(ScImage(f"{sub}/{entry.name}", stem, *parsed))
    return images, unexpected


@dataclass
class ScfaceSplit(GalleryProbe):
    """A gallery/probe split with each image's camera (0 = frontal mugshot) and distance
    code (1 = 4.20 m, 2 = 2.60 m, 3 = 1.00 m, 0 = mugshot)."""
    gallery_camera: np.ndarray = None
    gallery_distance: np.ndarray = None
    probe_camera: np.ndarray = None
    probe_distance: np.ndarray = None


@DATASETS.register("scface", summary="SCface (130 people, 5 visible + 2 IR surveillance cameras at 3 distances; licensed)")
class SCface(DatasetReader):
    def __init__(self, data_root):
        self.root = self.image_root = open_dataset_folder(data_root, "scface", _holds_scface, "SCface",
                                                          DOWNLOAD_HINT)
        self.aligned_frame = None
        for sub in (SURVEILLANCE, MUGSHOTS):
            if not (self.root / sub).is_dir():
                raise DataMissing(f"{self.root / sub} is missing; {DOWNLOAD_HINT}")
        cams, odd_cams = _scan(self.root, SURVEILLANCE, "camera")
        mugs, odd_mugs = _scan(self.root, MUGSHOTS, "mugshot")
        unexpected = odd_cams + odd_mugs
        if unexpected:
            raise DataError(f"{self.root} holds {len(unexpected):,} files not named like "
                            f"{SURVEILLANCE}/001_cam1_1.jpg, 001_cam8.jpg or {MUGSHOTS}/001_frontal.JPG: "
                            f"{some_names(unexpected)}")
        self.images = sorted(mugs + cams, key=lambda i: (i.subject, i.camera, i.distance))
        if not self.images:
            raise DataMissing(f"no SCface images in {self.root}; {DOWNLOAD_HINT}")
        self._by_stem = {i.stem: i for i in self.images}
        self.subjects = sorted({i.subject for i in self.images})
        self.annotation_file = self.root / ANNOTATIONS
        self.annotations = None
        if self.annotation_file.is_file():
            self.annotations = read_annotations(self.annotation_file)
            self._check_annotations()

    def _check_annotations(self) -> None:
        missing = [s for s in self.annotations if s not in self._by_stem]
        if missing:
            raise DataError(f"{self.root} lacks {len(missing):,} of the {len(self.annotations):,} images "
                            f"{ANNOTATIONS} annotates ({some_names(sorted(missing))}): an incomplete copy? {DOWNLOAD_HINT}")
        bare = [i.relpath for i in self.images if i.stem not in self.annotations]
        if bare:
            raise DataError(f"{self.annotation_file} does not annotate {len(bare):,} images of {self.root} "
                            f"({some_names(bare)}): the annotations disagree with the files")

    @staticmethod
    def inventory(data_root) -> Inventory:
        folder = find_dataset_folder(data_root, "scface", _holds_scface)
        found, missing = [], []
        for sub in (SURVEILLANCE, MUGSHOTS):
            d = folder / sub
            if d.is_dir():
                found.append(f"{d}/ ({sum(1 for e in os.scandir(d) if not e.name.startswith('.')):,} files)")
            else:
                missing.append(f"{d}/")
        (found if (folder / ANNOTATIONS).is_file() else missing).append(str(folder / ANNOTATIONS))
        return Inventory(found, missing, DOWNLOAD_HINT)

    def _faces(self, images: List[ScImage]) -> FaceSet:
        index = {s: k for k, s in enumerate(self.subjects)}
        landmarks = None
        extra = []
        if self.annotations is not None:
            landmarks = np.stack([self.annotations[i.stem] for i in images]) if images \
                else np.empty((0, 4, 2))
            extra = [self.annotation_file]
        return FaceSet("scface", self.image_root, [i.relpath for i in images],
                       np.array([index[i.subject] for i in images], dtype=np.int64), self.subjects,
                       None, extra_files=extra, landmarks=landmarks)

    @selection
    def all_faces(self) -> FaceSet:
        """Every image, by subject, then mugshot, camera 1..7 x distance 1..3, camera 8."""
        return self._faces(self.images)

    def _required_split(self, gallery: List[str], probe: List[str]) -> Tuple[List[ScImage], List[ScImage]]:
        """The images of these stems, or a DataError naming every missing one."""
        missing = [s for s in gallery + probe if s not in self._by_stem]
        if missing:
            raise DataError(f"{self.root} lacks {len(missing):,} images the selection needs "
                            f"({some_names(missing)}); every subject found ({len(self.subjects)}) needs all of them")
        return [self._by_stem[s] for s in gallery], [self._by_stem[s] for s in probe]

    def _split(self, gallery: List[ScImage], probe: List[ScImage]) -> ScfaceSplit:
        return ScfaceSplit(self._faces(gallery), self._faces(probe), [],
                           np.array([i.camera for i in gallery], np.int64),
                           np.array([i.distance for i in gallery], np.int64),
                           np.array([i.camera for i in probe], np.int64),
                           np.array([i.distance for i in probe], np.int64))

    @selection
    def mugshot_protocol(self, cameras: Iterable[int] = VISIBLE_CAMERAS,
                         distances: Iterable[int] = (1, 2, 3)) -> ScfaceSplit:
        """scface-mugshot: mugshot gallery; probes by distance, camera, subject."""
        cameras, distances = _checked(cameras, "cameras", range(1, 8)), _checked(distances, "distances", DISTANCE_M)
        gallery, probe = self._required_split(
            [f"{s}_frontal" for s in self.subjects],
            [f"{s}_cam{c}_{d}" for d in distances for c in cameras for s in self.subjects])
        return self._split(gallery, probe)

    @selection
    def gallery_probe_by_distance(self, gallery_distance: int = 3, probe_distance: int = 2,
                                  cameras: Iterable[int] = VISIBLE_CAMERAS) -> ScfaceSplit:
        """scface-1m-2.6m: the cameras' ``gallery_distance`` images against their
        ``probe_distance`` images (each by camera, then subject)."""
        cameras = _checked(cameras, "cameras", range(1, 8))
        if gallery_distance == probe_distance:
            raise DataError(f"SCface gallery and probe distance are both {gallery_distance}: "
                            "the probes would be the gallery")
        g, p = _checked([gallery_distance, probe_distance], "distances", DISTANCE_M)
        gallery, probe = self._required_split(
            [f"{s}_cam{c}_{g}" for c in cameras for s in self.subjects],
            [f"{s}_cam{c}_{p}" for c in cameras for s in self.subjects])
        return self._split(gallery, probe)


def _checked(values, what: str, allowed) -> List[int]:
    given = values
    try:
        values = list(values)
    except TypeError:
        values = None
    if values is None or not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in values):
        raise DataError(f"SCface {what} must be a list of integers from {sorted(allowed)}, got {given!r}")
    values = [int(v) for v in values]
    bad = [v for v in values if v not in allowed]
    if bad or not values or len(set(values)) != len(values):
        raise DataError(f"SCface {what} must be distinct values from {sorted(allowed)}, got {values}")
    return values
