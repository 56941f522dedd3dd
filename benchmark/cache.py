"""On-disk cache of per-image results, shared by every protocol and resumed after a kill.

What a face becomes under one setting (its HR embedding; or its SR embedding, PSNR and SSIM
under one degradation, model and evaluator) depends only on the image's content, not on the
protocol that asked for it. So results are cached per image, keyed by the image's content
key (``FaceSet.image_keys``: SHA256 of the file bytes, plus the landmarks when they are
given), in one SQLite file per setting: ``<root>/<kind>/<hash of the setting>.sqlite``.
``lfw-blufr`` after ``lfw-10fold`` at the same scale recomputes nothing for the 7,701 images
they share, and a re-run recomputes nothing at all.

Every batch of new results is one transaction, so a killed run leaves whole rows or none, and
the next run resumes with the images that are missing. The setting's JSON is stored in the
file (table ``setting``) for inspection.
"""
from __future__ import annotations

import hashlib
import json
import os
import sqlite3
from contextlib import contextmanager
from pathlib import Path
from typing import Dict, Iterable, Optional, Sequence

import numpy as np

from .errors import FhbenchError

CACHE_VERSION = 2  # bump when what a cached value means changes

SCHEMA = """
CREATE TABLE IF NOT EXISTS setting (json TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS items (
    image TEXT PRIMARY KEY,    -- FaceSet.image_keys() entry
    emb   BLOB NOT NULL,       -- float32 embedding
    psnr  REAL,                -- NULL where not computed (HR cache, natural-LR probes)
    ssim  REAL
);
"""


def default_cache_dir() -> Path:
    env = os.environ.get("FHBENCH_CACHE")
    return Path(env) if env else Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "fhbench"


def key_hash(key: dict) -> str:
    return hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:32]


class ImageResultCache:
    """Per-image results of one setting; ``root=None`` keeps them in memory only."""

    def __init__(self, root: Optional[Path], kind: str, setting: dict):
        self.setting = {**setting, "cache_version": CACHE_VERSION}
        self._memory: Dict[str, tuple] = {}
        self.path = None
        if root is not None:
            folder = Path(root) / kind
            folder.mkdir(parents=True, exist_ok=True)
            self.path = folder / f"{key_hash(self.setting)}.sqlite"
            try:
                with self._connect() as con:
                    con.executescript(SCHEMA)
                    if con.execute("SELECT COUNT(*) FROM setting").fetchone()[0] == 0:
                        con.execute("INSERT INTO setting VALUES (?)", (json.dumps(self.setting, default=str),))
            except sqlite3.DatabaseError as err:
                raise FhbenchError(f"cache file {self.path} is unusable ({err}); delete it to rebuild it") from None

    @contextmanager
    def _connect(self):
        con = sqlite3.connect(str(self.path), timeout=120, isolation_level=None)
        try:
            yield con
        finally:
            con.close()

    def missing(self, keys: Sequence[str]) -> np.ndarray:
        """Indices into ``keys`` whose results are not cached."""
        have = self._present(set(keys))
        return np.array([i for i, k in enumerate(keys) if k not in have], dtype=np.int64)

    def _present(self, wanted: set) -> set:
        if self.path is None:
            return wanted & set(self._memory)
        with self._connect() as con:
            return {row[0] for row in self._select(con, "items.image", wanted)}

    @staticmethod
    def _select(con, columns: str, wanted: set) -> list:
        """Rows of ``items`` whose image is in ``wanted``: a join with a temporary table, so a
        protocol asking for 10k images of a 200k-image cache (CelebA) reads those 10k only."""
        con.execute("CREATE TEMP TABLE wanted (image TEXT PRIMARY KEY)")
        con.executemany("INSERT OR IGNORE INTO wanted VALUES (?)", ((k,) for k in wanted))
        return con.execute(f"SELECT {columns} FROM items JOIN wanted ON items.image = wanted.image").fetchall()

    def put(self, keys: Sequence[str], emb: np.ndarray, psnr: Optional[np.ndarray] = None,
            ssim: Optional[np.ndarray] = None) -> None:
        """Store one batch in one transaction."""
        emb = np.ascontiguousarray(emb, dtype=np.float32)
        rows = [(k, emb[i].tobytes(), None if psnr is None else float(psnr[i]),
                 None if ssim is None else float(ssim[i])) for i, k in enumerate(keys)]
        if self.path is None:
            self._memory.update({r[0]: r[1:] for r in rows})
            return
        with self._connect() as con:
            con.execute("BEGIN IMMEDIATE")
            try:
                con.executemany("INSERT OR REPLACE INTO items VALUES (?, ?, ?, ?)", rows)
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise

    def get(self, keys: Sequence[str], dim: int) -> Dict[str, np.ndarray]:
        """{"emb": (N, dim) float32, "psnr": (N,), "ssim": (N,)} in ``keys`` order (NaN where
        a value was not computed); every key must be present."""
        found = dict(self._rows(set(keys)))
        absent = [k for k in keys if k not in found]
        if absent:
            raise FhbenchError(f"cache {self.path or 'in memory'} lost {len(absent)} entries during the run "
                               f"(first: {absent[0]}); re-run")
        emb = np.empty((len(keys), dim), dtype=np.float32)
        psnr = np.empty(len(keys))
        ssim = np.empty(len(keys))
        for i, k in enumerate(keys):
            blob, p, s = found[k]
            emb[i] = np.frombuffer(blob, dtype=np.float32)
            psnr[i] = np.nan if p is None else p
            ssim[i] = np.nan if s is None else s
        return {"emb": emb, "psnr": psnr, "ssim": ssim}

    def _rows(self, wanted: set) -> Iterable[tuple]:
        if self.path is None:
            return ((k, v) for k, v in self._memory.items() if k in wanted)
        with self._connect() as con:
            rows = self._select(con, "items.image, emb, psnr, ssim", wanted)
        return ((r[0], r[1:]) for r in rows)
