"""Pairing a folder of SR images with its ground-truth folder, by relative path.

An image's **key** is its path relative to its folder without the suffix
(``Ariel_Sharon/Ariel_Sharon_0001``), so ``x.png`` restored from ``x.jpg`` pairs with it; the
HR folder defines the set. Never by sorted names: a renamed, missing or extra file cannot
shift every pair after it. Files whose suffix is not an image suffix are ignored and listed
(a README, fhbench's own manifests); hidden files and folders (``.name``) are skipped.

Refused, in one line naming the first culprit: an empty HR folder; two images of one folder
with one key (``a.png`` and ``a.jpg``); an SR image with no HR image (extra); an HR image with
no SR image (missing) unless ``allow_missing``, which keeps it in the pairing as missing;
an image that is unreadable, grey-scale, RGBA, not 8-bit, or whose SR and HR sizes differ
(``read_rgb8``, ``check_pairs``). Colour is decoded once, here, as RGB.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np
from tqdm import tqdm

from benchmark.errors import DataError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


@dataclass
class Pair:
    key: str                  # relative path without suffix
    hr: str                   # the HR file, relative to the HR folder
    sr: Optional[str]         # the SR file, relative to the SR folder; None: missing
    hr_sha256: str = ""
    sr_sha256: str = ""
    size: Tuple[int, int] = (0, 0)  # (H, W)


@dataclass
class Pairing:
    sr_dir: Path
    hr_dir: Path
    pairs: List[Pair]         # in key order (a deterministic order; the pairing itself is by key)
    ignored: Dict[str, List[str]] = field(default_factory=dict)  # folder role -> non-image files

    @property
    def missing(self) -> List[str]:
        return [p.key for p in self.pairs if p.sr is None]

    @property
    def scored(self) -> List[Pair]:
        return [p for p in self.pairs if p.sr is not None]

    def hr_sha256(self) -> str:
        """One hash of the ground truth: every key with its HR file's content hash."""
        h = hashlib.sha256()
        for p in self.pairs:
            h.update(f"{p.key}\0{p.hr_sha256}\n".encode())
        return h.hexdigest()

    def manifest(self) -> dict:
        return {"rule": "by relative path without suffix (never by sorted names); the HR folder defines the set",
                "sr_dir": str(self.sr_dir.resolve()), "hr_dir": str(self.hr_dir.resolve()),
                "n_hr": len(self.pairs), "n_scored": len(self.scored), "n_missing": len(self.missing),
                "ignored_files": self.ignored, "hr_sha256": self.hr_sha256(),
                "pairs": [{"key": p.key, "hr": p.hr, "sr": p.sr, "hr_sha256": p.hr_sha256, "sr_sha256": p.sr_sha256,
                           "size": list(p.size)} for p in self.pairs]}


def _images(folder: Path, role: str) -> Tuple[Dict[str, str], List[str]]:
    """{key: relative file} of the images under ``folder``, and the non-image files."""
    if not folder.is_dir():
        raise DataError(f"--{role} {folder} is not a folder")
    found, ignored = {}, []
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder)
        if any(part.startswith(".") for part in rel.parts) or not path.is_file():
            continue
        if path.suffix.lower() not in IMAGE_SUFFIXES:
            ignored.append(rel.as_posix())
            continue
        key = rel.with_suffix("").as_posix()
        if key in found:
            raise DataError(f"--{role} {folder} holds two images of one name, {found[key]!r} and "
                            f"{rel.as_posix()!r}; keep one")
        found[key] = rel.as_posix()
    return found, ignored


def pair_folders(sr_dir, hr_dir, allow_missing: bool = False) -> Pairing:
    """Pair every HR image with the SR image of its key (see the module notes)."""
    sr_dir, hr_dir = Path(sr_dir), Path(hr_dir)
    hr, hr_ignored = _images(hr_dir, "hr")
    sr, sr_ignored = _images(sr_dir, "sr")
    if not hr:
        raise DataError(f"--hr {hr_dir} holds no images ({', '.join(IMAGE_SUFFIXES)})")
    if not sr:
        raise DataError(f"--sr {sr_dir} holds no images ({', '.join(IMAGE_SUFFIXES)})")
    extra = sorted(set(sr) - set(hr))
    if extra:
        raise DataError(f"--sr {sr_dir} holds {len(extra)} image(s) with no ground truth in --hr {hr_dir}, "
                        f"first {sr[extra[0]]!r} (pairs are by relative path: is it the right folder?)")
    missing = sorted(set(hr) - set(sr))
    if missing and not allow_missing:
        raise DataError(f"--sr {sr_dir} lacks {len(missing)} of {len(hr)} images, first {missing[0]!r} "
                        f"(for {hr[missing[0]]!r} in --hr); pass --allow-missing to score the others and count them")
    pairs = [Pair(k, hr[k], sr.get(k)) for k in sorted(hr)]
    return Pairing(sr_dir, hr_dir, pairs, {k: v for k, v in (("hr", hr_ignored), ("sr", sr_ignored)) if v})


def read_rgb8(path, role: str = "image") -> np.ndarray:
    """(H, W, 3) uint8 RGB of an 8-bit 3-channel image file; one line naming the file for
    anything else (unreadable, grey-scale, RGBA, 16-bit)."""
    from benchmark.faces.images import decode_unchanged

    img = decode_unchanged(path, role)
    if img.ndim == 2 or img.shape[2] == 1:
        raise DataError(f"{role} {path} is grey-scale; write 3-channel RGB")
    if img.shape[2] == 4:
        raise DataError(f"{role} {path} has an alpha channel (RGBA); write 3-channel RGB")
    if img.dtype != np.uint8:
        raise DataError(f"{role} {path} has {img.dtype} pixels; write 8-bit RGB")
    return np.ascontiguousarray(img[:, :, ::-1])  # OpenCV decodes BGR: the one conversion


def check_pairs(pairing: Pairing, progress: bool = True) -> None:
    """Read every file once before any work: each must be a readable 8-bit RGB image and each
    SR image the size of its HR image. Fills each pair's content hashes and size."""
    for p in tqdm(pairing.pairs, desc="checking images", unit="pair", disable=not progress, leave=False):
        hr_path = pairing.hr_dir / p.hr
        hr = read_rgb8(hr_path, "HR image")
        p.hr_sha256 = hashlib.sha256(hr_path.read_bytes()).hexdigest()
        p.size = tuple(hr.shape[:2])
        if p.sr is None:
            continue
        sr_path = pairing.sr_dir / p.sr
        sr = read_rgb8(sr_path, "SR image")
        if sr.shape != hr.shape:
            raise DataError(f"SR image {sr_path} is {sr.shape[0]}x{sr.shape[1]}, its HR image {hr_path} is "
                            f"{hr.shape[0]}x{hr.shape[1]}; SR and HR must have one size")
        p.sr_sha256 = hashlib.sha256(sr_path.read_bytes()).hexdigest()


def read_labels(path, pairing: Pairing) -> Dict[str, str]:
    """{key: identity} from a labels file: one ``<relative path> <identity>`` per line (tab,
    comma or spaces between; ``#`` comments and blank lines skipped; the path with or without
    its suffix). A path that names no HR image, a key given twice, or an HR image without a
    label: one line naming it."""
    import re

    path = Path(path)
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise DataError(f"--labels {path} cannot be read ({type(err).__name__})") from None
    keys = {p.key for p in pairing.pairs}
    by_file = {p.hr: p.key for p in pairing.pairs}
    labels: Dict[str, str] = {}
    for n, line in enumerate(lines, 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = re.split(r"\t|,|\s+", line, maxsplit=1)
        if len(parts) != 2 or not parts[1].strip():
            raise DataError(f"--labels {path} line {n}: expected '<relative path> <identity>', got {line!r}")
        rel, identity = parts[0].strip(), parts[1].strip()
        key = by_file.get(rel, rel if rel in keys else None)
        if key is None:
            raise DataError(f"--labels {path} line {n} names {rel!r}, which is not an image of --hr {pairing.hr_dir}")
        if key in labels:
            raise DataError(f"--labels {path} line {n} labels {rel!r} a second time")
        labels[key] = identity
    unlabelled = [p.hr for p in pairing.pairs if p.key not in labels]
    if unlabelled:
        raise DataError(f"--labels {path} gives no identity for {len(unlabelled)} HR image(s), first {unlabelled[0]!r}")
    return labels
