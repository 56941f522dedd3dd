"""The AR face database (Martinez and Benavente 1998): ``m-001-01.raw`` / ``w-056-26.bmp``.

File names are ``<sex>-<person>-<session>.<ext>``: sex ``m`` (men) or ``w`` (women), a
three-digit person number, a session 1..26 (01..13 the first day, 14..26 the same 13
conditions two weeks later; 01 and 14 are the neutral faces). Either case is accepted.
The images may sit anywhere under the AR folder (``--data-root`` names it, or a folder
holding ``ar/``), in the original distribution's headerless ``.raw`` (768 x 576, 8-bit RGB,
interleaved, row by row: ``read_ar_raw``) or converted to any image format OpenCV reads
(``.bmp`` and so on). They are raw photos: FaceSets have ``aligned_frame`` None and the
runner detects and aligns them with MTCNN.

``cmc_split`` (ar-cmc): the first 50 men and the first 50 women by person number that have
both a session-14 image (the gallery: neutral, second day) and a session-01 image (the
probe: neutral, first day). The published setting names "50 men and 50 women, gallery day
14, probe day 1" but not which ones; taking the lowest numbers is reproducible, and matches
the 50 + 50 people of Martinez's widely used cropped AR subset where those are complete.
People passed over for lacking an image are listed in ``GalleryProbe.notes``.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Tuple

import numpy as np

from benchmark.errors import DataError, DataMissing, some_names
from benchmark.registry import DATASETS
from benchmark.faces.faceset import FaceSet
from benchmark.faces.gallery_probe import GalleryProbe
from benchmark.faces.roots import find_dataset_folder, open_dataset_folder
from benchmark.faces.selections import selection
from benchmark.faces.survey import Inventory
from benchmark.contracts.dataset import DatasetReader

SESSIONS = range(1, 27)
FIRST_DAY = range(1, 14)  # sessions 14..26 were taken 14 days later
SEXES = {"m": "men", "w": "women"}
IMAGE_SUFFIXES = {".raw", ".bmp", ".png", ".jpg", ".jpeg", ".ppm", ".pgm", ".tif", ".tiff"}
_NAME = re.compile(r"^(?P<sex>[mw])-(?P<person>\d{3})-(?P<session>\d{2})\.[a-z]+$", re.IGNORECASE)
DOWNLOAD_HINT = ("the AR face database is licensed by its authors and never fetched by fhbench: request it "
                 "from Aleix Martinez (https://www2.ece.ohio-state.edu/~aleix/ARdatabase.html) and put its "
                 "m-001-01.raw / .bmp files in one folder")


@dataclass(frozen=True)
class ArImage:
    relpath: str
    sex: str       # "m" or "w"
    person: int
    session: int

    @property
    def identity(self) -> str:
        return f"{self.sex}-{self.person:03d}"


def parse_name(name: str):
    """(sex, person, session) of an AR file name, or None when it is not one."""
    m = _NAME.match(name)
    if not m or Path(name).suffix.lower() not in IMAGE_SUFFIXES:
        return None
    person, session = int(m["person"]), int(m["session"])
    if person < 1 or session not in SESSIONS:
        return None
    return m["sex"].lower(), person, session


def _holds_ar(root: Path) -> bool:
    return False  # AR files may sit in any subfolder: an ar/ folder, when there is one, is the dataset


def _scan(folder: Path) -> Tuple[List[ArImage], List[str]]:
    """AR images under ``folder`` and the image-like files with other names (relative paths)."""
    images, unexpected = [], []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        rel_dir = Path(dirpath).relative_to(folder)
        for name in sorted(filenames):
            if name.startswith("."):
                continue
            rel = (rel_dir / name).as_posix()
            parsed = parse_name(name)
            if parsed:
                images.append(ArImage(rel, *parsed))
            elif Path(name).suffix.lower() in IMAGE_SUFFIXES:
                unexpected.append(rel)
    return images, unexpected


@DATASETS.register("ar", summary="AR face database (126 people, 26 images each over two days; licensed)")
class AR(DatasetReader):
    def __init__(self, data_root):
        self.root = self.image_root = open_dataset_folder(data_root, "ar", _holds_ar, "AR", DOWNLOAD_HINT)
        self.aligned_frame = None
        images, unexpected = _scan(self.root)
        if not images:  # first: a data root holding other datasets is not a bad AR folder
            raise DataMissing(f"no AR images (m-001-01.raw, w-001-14.bmp, ...) in {self.root}; {DOWNLOAD_HINT}")
        if unexpected:
            raise DataError(f"{self.root} holds {len(unexpected):,} images not named like m-001-01.raw "
                            f"(sex m/w, person 001.., session 01..26): {some_names(unexpected)}; rename or remove them")
        by_key: Dict[tuple, ArImage] = {}
        for img in images:
            key = (img.sex, img.person, img.session)
            if key in by_key:
                raise DataError(f"{self.root}: {by_key[key].relpath} and {img.relpath} are both "
                                f"{img.identity} session {img.session:02d}; keep one")
            by_key[key] = img
        self.images = [by_key[k] for k in sorted(by_key)]
        self._by_key = by_key

    @staticmethod
    def inventory(data_root) -> Inventory:
        folder = find_dataset_folder(data_root, "ar", _holds_ar)
        images, _ = _scan(folder) if folder.is_dir() else ([], [])
        if not images:
            return Inventory([], [f"AR images (m-001-01.raw / .bmp) in {folder}"], DOWNLOAD_HINT)
        people = {(i.sex, i.person) for i in images}
        men = sum(1 for s, _ in people if s == "m")
        return Inventory([f"{folder}/ ({len(images):,} images: {men} men, {len(people) - men} women)"],
                         [], DOWNLOAD_HINT)

    def _faces(self, images: List[ArImage], identities: List[str]) -> FaceSet:
        index = {n: i for i, n in enumerate(identities)}
        return FaceSet("ar", self.image_root, [i.relpath for i in images],
                       np.array([index[i.identity] for i in images], dtype=np.int64), identities, None)

    @selection
    def all_faces(self) -> FaceSet:
        """Every AR image, by sex, person and session; labels index the sorted identities."""
        return self._faces(self.images, sorted({i.identity for i in self.images}))

    @selection
    def cmc_split(self, n_men: int = 50, n_women: int = 50, gallery_session: int = 14,
                  probe_session: int = 1) -> GalleryProbe:
        """ar-cmc: one gallery image (``gallery_session``) and one probe image
        (``probe_session``) each of the first ``n_men`` men and ``n_women`` women (by person
        number) that have both; see the module notes."""
        chosen, notes = [], []
        for sex, wanted in (("m", n_men), ("w", n_women)):
            people = sorted({i.person for i in self.images if i.sex == sex})
            taken, passed = [], []
            for person in people:
                if len(taken) == wanted:
                    break
                lacks = [s for s in (gallery_session, probe_session) if (sex, person, s) not in self._by_key]
                if lacks:
                    passed.append(f"{sex}-{person:03d} (no session {', '.join(f'{s:02d}' for s in lacks)})")
                else:
                    taken.append(person)
            if len(taken) < wanted:
                raise DataError(f"{self.root}: only {len(taken)} {SEXES[sex]} have both a session "
                                f"{gallery_session:02d} and a session {probe_session:02d} image, {wanted} "
                                f"needed" + (f"; passed over: {some_names(passed)}" if passed else ""))
            notes += [f"AR {p} passed over" for p in passed]
            chosen += [(sex, p) for p in taken]
        identities = [f"{s}-{p:03d}" for s, p in chosen]
        gallery = self._faces([self._by_key[(s, p, gallery_session)] for s, p in chosen], identities)
        probe = self._faces([self._by_key[(s, p, probe_session)] for s, p in chosen], identities)
        return GalleryProbe(gallery, probe, notes)
