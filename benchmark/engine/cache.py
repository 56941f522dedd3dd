"""On-disk cache of per-image results, shared by every protocol and resumed after a kill.

What a face becomes under one setting (its HR embedding; or its SR embedding and per-image
metrics under one degradation, model and evaluator) depends only on the image's content, not on the
protocol that asked for it. So results are cached per image, keyed by the image's content
key (``FaceSet.image_keys``: SHA256 of the file bytes, plus the landmarks when they are
given), in one SQLite file per setting: ``<root>/<kind>/<hash of the setting>.sqlite``.
``lfw-blufr`` after ``lfw-10fold`` at the same scale recomputes nothing for the 7,701 images
they share, and a re-run recomputes nothing at all.

Every batch of new results is one transaction, so a killed run leaves whole rows or none, and
the next run resumes with the images that are missing. The setting's JSON is stored in the
file (table ``setting``) for inspection.

The per-image metrics are whatever the setting names (``metrics``: PSNR, SSIM, a plug-in's
LPIPS, ...), stored per row as float64 values in that order (NaN where not computed), so a
new per-image metric needs no new column.

A cached number is only ever returned if it is the one that was stored: every row carries a
checksum (first 16 bytes of SHA256 over its key, embedding bytes and metric values as stored),
and a row whose checksum or embedding length is wrong counts as missing (``missing`` lists
it, so it is recomputed and replaced) and is never returned (``get`` raises). SQLite's own
page checks catch a damaged file; the checksum catches damage inside a row's bytes.
"""
from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import struct
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Dict, Iterable, Optional, Sequence

import numpy as np

from benchmark.errors import FhbenchError

# bump when what a cached value means changes (3: per-row checksums; 4: named metric values)
CACHE_VERSION = 4

SCHEMA = """
CREATE TABLE IF NOT EXISTS setting (json TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS items (
    image   TEXT PRIMARY KEY,  -- FaceSet.image_keys() entry
    emb     BLOB NOT NULL,     -- float32 embedding
    metrics BLOB NOT NULL,     -- float64 value of each of the setting's metrics, NaN where not computed
    checksum BLOB NOT NULL     -- row_checksum(image, emb, metrics)
);
"""

# SQLite result codes that mean the file itself is damaged or not a database.
_CORRUPT = {"SQLITE_CORRUPT", "SQLITE_NOTADB"}
# ... and those that mean the folder or file cannot be written (or opened) here.
_UNWRITABLE = {"SQLITE_READONLY", "SQLITE_CANTOPEN", "SQLITE_PERM", "SQLITE_IOERR", "SQLITE_FULL",
               "SQLITE_AUTH"}
_USE_ANOTHER = "pass --cache-dir DIR to cache elsewhere, or --no-cache to keep results in memory only"


def default_cache_dir() -> Path:
    env = os.environ.get("FHBENCH_CACHE")
    return Path(env) if env else Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "fhbench"


def key_hash(key: dict) -> str:
    return hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:32]


def row_checksum(key, emb: bytes, metrics: bytes) -> Optional[bytes]:
    """16 bytes of SHA256 over one row as stored; None where a column has an impossible type."""
    if not isinstance(key, str) or not isinstance(emb, bytes) or not isinstance(metrics, bytes):
        return None
    h = hashlib.sha256()
    for part in (key.encode("utf-8", "surrogatepass"), emb, metrics):
        h.update(struct.pack("<Q", len(part)) + part)
    return h.digest()[:16]


class ImageResultCache:
    """Per-image results of one setting; ``root=None`` keeps them in memory only.

    ``dim`` (the embedding dimension, optional) makes ``missing`` count an embedding of any
    other length as missing; ``missing(keys, dim)`` and ``get(keys, dim)`` may give it per call.
    ``metrics`` names the per-image values each row holds (part of the setting).
    """

    def __init__(self, root: Optional[Path], kind: str, setting: dict, dim: Optional[int] = None,
                 metrics: Sequence[str] = ()):
        self.metrics = tuple(metrics)
        self.setting = {**setting, "metrics": list(self.metrics), "cache_version": CACHE_VERSION}
        self.dim = dim
        self._memory: Dict[str, tuple] = {}
        self.path = None
        if root is not None:
            folder = _usable_folder(Path(root) / kind)
            self.path = folder / f"{key_hash(self.setting)}.sqlite"
            if self.path.exists() and (not self.path.is_file() or not os.access(self.path, os.R_OK | os.W_OK)):
                raise FhbenchError(f"cache file {self.path} is not a writable file; delete it, or {_USE_ANOTHER}")
            mine = json.dumps(self.setting, default=str)
            with self._connect() as con:
                con.executescript(SCHEMA)
                con.execute("BEGIN IMMEDIATE")  # two runs starting together write the setting once
                stored = con.execute("SELECT json FROM setting").fetchall()
                if not stored:
                    con.execute("INSERT INTO setting VALUES (?)", (mine,))
                con.execute("COMMIT")
                if any(_json_or_none(row[0]) != json.loads(mine) for row in stored):
                    # a file renamed or copied into another setting's name: its numbers mean something else
                    raise FhbenchError(f"cache file {self.path} holds the results of another setting; "
                                       "delete it to rebuild it")

    @contextmanager
    def _connect(self):
        """A connection whose SQLite errors become one line naming the file and what to do;
        binding errors (a caller passing a non-string key) are left as they are."""
        con = None
        try:
            con = sqlite3.connect(str(self.path), timeout=120, isolation_level=None)
            yield con
        except sqlite3.DatabaseError as err:
            name = getattr(err, "sqlite_errorname", None)
            if name is None and isinstance(err, sqlite3.ProgrammingError):
                raise
            raise FhbenchError(_describe(self.path, err, name)) from None
        finally:
            if con is not None:
                con.close()

    def _dim(self, dim: Optional[int]) -> Optional[int]:
        return self.dim if dim is None else int(dim)

    def missing(self, keys: Sequence[str], dim: Optional[int] = None) -> np.ndarray:
        """Indices into ``keys`` whose results are not cached, or are cached but damaged
        (checksum mismatch, or an embedding that is not ``dim`` float32 values)."""
        dim = self._dim(dim)
        good = {k for k, row in self._rows(set(keys)) if self._problem(k, row, dim) is None}
        return np.array([i for i, k in enumerate(keys) if k not in good], dtype=np.int64)

    @staticmethod
    def _select(con, columns: str, wanted: set) -> list:
        """Rows of ``items`` whose image is in ``wanted``: a join with a temporary table, so a
        protocol asking for 10k images of a 200k-image cache (CelebA) reads those 10k only."""
        con.execute("CREATE TEMP TABLE wanted (image TEXT PRIMARY KEY)")
        con.executemany("INSERT OR IGNORE INTO wanted VALUES (?)", ((k,) for k in wanted))
        return con.execute(f"SELECT {columns} FROM items JOIN wanted ON items.image = wanted.image").fetchall()

    def put(self, keys: Sequence[str], emb: np.ndarray, **metrics: Optional[np.ndarray]) -> None:
        """Store one batch in one transaction (a damaged row of the same key is replaced);
        ``metrics``: one array per metric name of this cache (None or absent: not computed)."""
        emb = np.ascontiguousarray(emb, dtype=np.float32)
        dim = self.dim
        where = self.path or "in memory"
        if emb.ndim != 2 or len(emb) != len(keys) or (dim is not None and emb.shape[1] != dim):
            raise FhbenchError(f"cache {where}: refusing to store embeddings of shape "
                               f"{emb.shape} for {len(keys)} images" + (f" of dimension {dim}" if dim else ""))
        unknown = sorted(set(metrics) - set(self.metrics))
        if unknown:
            raise FhbenchError(f"cache {where} holds the metrics {list(self.metrics)}, not {unknown}")
        values = np.full((len(keys), len(self.metrics)), np.nan)
        for j, name in enumerate(self.metrics):
            if metrics.get(name) is not None:
                values[:, j] = np.asarray(metrics[name], dtype=np.float64).reshape(len(keys))
        rows = []
        for i, k in enumerate(keys):
            blob, vals = emb[i].tobytes(), values[i].astype("<f8").tobytes()
            # str(k) only for the checksum: a non-string key still fails to bind below
            rows.append((k, blob, vals, row_checksum(k if isinstance(k, str) else str(k), blob, vals)))
        if self.path is None:
            self._memory.update({r[0]: r[1:] for r in rows})
            return
        with self._connect() as con:
            con.execute("BEGIN IMMEDIATE")
            try:
                con.executemany("INSERT OR REPLACE INTO items VALUES (?, ?, ?, ?)", rows)
                con.execute("COMMIT")
            except BaseException:
                try:
                    con.execute("ROLLBACK")
                except sqlite3.Error:
                    pass  # the transaction is gone with the connection; the first error says why
                raise

    def get(self, keys: Sequence[str], dim: int) -> Dict[str, np.ndarray]:
        """{"emb": (N, dim) float32, <metric>: (N,) float64 for each of this cache's metrics}
        in ``keys`` order (NaN where a value was not computed); every key must be present and
        intact."""
        found = dict(self._rows(set(keys)))
        absent = [k for k in keys if k not in found]
        if absent:
            raise FhbenchError(f"cache {self.path or 'in memory'} lost {len(absent)} entries during the run "
                               f"(first: {absent[0]}); re-run")
        for k in keys:
            problem = self._problem(k, found[k], dim)
            if problem:
                raise FhbenchError(f"cache {self.path or 'in memory'}: entry {k} is damaged ({problem}); "
                                   "re-run to recompute it, or delete the file")
        emb = np.empty((len(keys), dim), dtype=np.float32)
        values = np.empty((len(keys), len(self.metrics)))
        for i, k in enumerate(keys):
            blob, vals, _ = found[k]
            emb[i] = np.frombuffer(blob, dtype=np.float32)
            values[i] = np.frombuffer(vals, dtype="<f8")
        return {"emb": emb, **{name: values[:, j].copy() for j, name in enumerate(self.metrics)}}

    def _problem(self, key, row, dim: Optional[int]) -> Optional[str]:
        """Why a stored row must not be used, or None."""
        blob, vals, checksum = row
        if not isinstance(blob, bytes) or (dim is not None and len(blob) != 4 * dim):
            size = len(blob) if isinstance(blob, (bytes, str)) else "?"
            return f"embedding of {size} bytes, expected {4 * dim if dim is not None else 'a multiple of 4'}"
        if len(blob) % 4:
            return f"embedding of {len(blob)} bytes, not float32 values"
        if not isinstance(vals, bytes) or len(vals) != 8 * len(self.metrics):
            return f"metric values of the wrong size, expected {len(self.metrics)} float64 values"
        expected = row_checksum(key, blob, vals)
        if expected is None or checksum != expected:
            return "checksum mismatch"
        return None

    def _rows(self, wanted: set) -> Iterable[tuple]:
        """(key, (emb, metrics, checksum)) of the stored rows among ``wanted``."""
        if self.path is None:
            return [(k, v) for k, v in self._memory.items() if k in wanted]
        with self._connect() as con:
            # as BLOB: an embedding altered into text is compared by its bytes, never decoded
            rows = self._select(con, "items.image, CAST(emb AS BLOB), CAST(metrics AS BLOB), checksum", wanted)
        return [(r[0], r[1:]) for r in rows]


def _json_or_none(text):
    try:
        return json.loads(text)
    except (TypeError, ValueError):
        return None


def check_cache_dir(root: Optional[Path], kinds: Sequence[str] = ("hr", "sr")) -> None:
    """Fail now, before any image is hashed or read, when the cache folders under ``root``
    cannot be written (``root=None``: in memory, nothing to check)."""
    if root is not None:
        for kind in kinds:
            _usable_folder(Path(root) / kind)


def _usable_folder(folder: Path) -> Path:
    """``folder``, created if needed, after checking that files can be written in it: a file in
    the way or a read-only folder fails here, before any work, not at the first ``put``."""
    for p in [folder] + list(folder.parents):
        if p.exists() and not p.is_dir():
            raise FhbenchError(f"cache folder {folder} cannot be created: {p} is a file; {_USE_ANOTHER}")
        if p.is_dir():
            break
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise FhbenchError(f"cache folder {folder} cannot be created ({err.strerror or err}); {_USE_ANOTHER}") from None
    if not os.access(folder, os.W_OK | os.X_OK):
        raise FhbenchError(f"cache folder {folder} is read-only; {_USE_ANOTHER}")
    try:  # os.access says yes to root even on a read-only mount: try it
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".write-test-"):
            pass
    except OSError as err:
        raise FhbenchError(f"cache folder {folder} is not writable ({err.strerror or err}); {_USE_ANOTHER}") from None
    return folder


def _describe(path, err, name) -> str:
    if name in _CORRUPT:
        return f"cache file {path} is unusable ({err}); delete it to rebuild it"
    if name in _UNWRITABLE:
        return f"cache file {path} cannot be written ({err}); {_USE_ANOTHER}"
    if name in ("SQLITE_BUSY", "SQLITE_LOCKED"):
        return f"cache file {path} stayed locked by another process for 2 minutes ({err}); retry later"
    return f"cache file {path} is unusable ({err}); delete it to rebuild it"
