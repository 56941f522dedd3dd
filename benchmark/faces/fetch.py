"""Downloading LFW (the only dataset fhbench fetches: CelebA, AR and SCface need the user's
licence and are never downloaded).

``fetch_lfw(data_root)`` puts into ``data_root/lfw/`` what ``benchmark.datasets.lfw.LFW`` reads:
``pairs.txt``, ``people.txt`` and one image folder (``lfw-deepfunneled/`` by default), from
the official site, each checked against its published MD5 (the values torchvision checks;
those of pairs.txt and people.txt also match ../shared/data/lfw). Pieces already there are
kept. Nothing half-done is left behind: a download goes to a hidden temporary file or folder
inside ``data_root/lfw`` and is renamed into place only when complete, verified and (for the
archive) fully extracted. Offline, it fails with one line saying so and where to get LFW by
hand.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.request
from pathlib import Path
from typing import Callable, Optional

from benchmark.errors import DataError

LFW_URL = "http://vis-www.cs.umass.edu/lfw/"
# variant -> (archive, the folder it unpacks to, MD5 of the archive)
LFW_ARCHIVES = {
    "deepfunneled": ("lfw-deepfunneled.tgz", "lfw-deepfunneled", "68331da3eb755a505a502b5aacb3c201"),
    "funneled": ("lfw-funneled.tgz", "lfw_funneled", "1b42dfed7d15c9b2dd63d5e5840c86ad"),
    "original": ("lfw.tgz", "lfw", "a17d05bd522c52d84eca14327a23d494"),
}
LFW_LISTS = {"pairs.txt": "9f1ba174e4e1c508ff7cdf10ac338a7d", "people.txt": "450f0863dd89e85e73936a6d71a3474b"}
CHUNK = 1 << 20


def _md5(path: Path) -> str:
    h = hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def _download(url: str, target: Path, md5: str, opener: Callable, timeout: float) -> None:
    """``url`` into ``target`` (a new file), or DataError; the caller removes ``target``."""
    h = hashlib.md5()
    try:
        with opener(url, timeout=timeout) as response, open(target, "wb") as out:
            for block in iter(lambda: response.read(CHUNK), b""):
                h.update(block)
                out.write(block)
    except (urllib.error.URLError, OSError) as err:
        reason = getattr(err, "reason", None) or err
        raise DataError(f"cannot download {url} ({reason}): is this machine offline? Get LFW by hand from "
                        f"{LFW_URL} (lfw-deepfunneled.tgz, pairs.txt, people.txt) and unpack it into one folder") from None
    if h.hexdigest() != md5:
        raise DataError(f"{url} has MD5 {h.hexdigest()}, expected {md5}: a corrupt or changed download; "
                        "nothing was kept")


def _extract(archive: Path, into: Path, folder: str) -> Path:
    try:
        with tarfile.open(archive, "r:*") as tar:
            tar.extractall(into, filter="data")  # refuses absolute paths, '..', devices, odd links
    except (tarfile.TarError, OSError) as err:
        raise DataError(f"cannot unpack {archive.name}: {err}") from None
    if not (into / folder).is_dir():
        raise DataError(f"{archive.name} does not hold the {folder}/ folder it should")
    return into / folder


def fetch_lfw(data_root, variant: str = "deepfunneled", base_url: str = LFW_URL,
              opener: Optional[Callable] = None, timeout: float = 60.0, log: Callable = print) -> Path:
    """Download LFW into ``data_root/lfw`` (see the module notes); returns that folder."""
    if variant not in LFW_ARCHIVES:
        raise DataError(f"unknown LFW variant {variant!r}; choose from {', '.join(LFW_ARCHIVES)}")
    opener = opener or urllib.request.urlopen
    dest = Path(data_root).expanduser() / "lfw"
    dest.mkdir(parents=True, exist_ok=True)
    for name, md5 in LFW_LISTS.items():
        if (dest / name).is_file() and _md5(dest / name) == md5:
            continue
        fd, tmp = tempfile.mkstemp(dir=dest, prefix=f".{name}.", suffix=".part")
        os.close(fd)
        try:
            log(f"downloading {base_url}{name}")
            _download(base_url + name, Path(tmp), md5, opener, timeout)
            os.replace(tmp, dest / name)
        finally:
            Path(tmp).unlink(missing_ok=True)
    archive, folder, md5 = LFW_ARCHIVES[variant]
    if not (dest / folder).is_dir():
        work = Path(tempfile.mkdtemp(dir=dest, prefix=".fetch-"))
        try:
            log(f"downloading {base_url}{archive} (about 100-250 MB)")
            _download(base_url + archive, work / archive, md5, opener, timeout)
            os.replace(_extract(work / archive, work / "unpacked", folder), dest / folder)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    return dest
