"""The results database: one SQLite file, one row per (model, protocol, scale, evaluator).

A run's row, its manifest and its per-item arrays (pair scores, per-image PSNR, ...)
are written in ONE transaction, so a crash or a concurrent run never leaves a partial
result: readers see the old row or the new one. ``scale`` 1 means "no degradation"
(the ``hr`` reference row).

The file is created with the first row, never before: a run that fails leaves no empty store.
A row's name belongs to one model: saving another model (another fingerprint, see
``same_model``) under a stored name is refused unless ``replace=True``, so two models
that share a default name (``v1/model.pt`` and ``v2/model.pt``) never overwrite each other.
"""
from __future__ import annotations

import io
import json
import sqlite3
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np

from benchmark.errors import FhbenchError
from benchmark.engine.names import check_run_name

SCHEMA_STATEMENTS = ("""
CREATE TABLE IF NOT EXISTS runs (
    id        INTEGER PRIMARY KEY,
    model     TEXT NOT NULL,
    protocol  TEXT NOT NULL,
    scale     INTEGER NOT NULL,
    evaluator TEXT NOT NULL,
    metrics   TEXT NOT NULL,   -- JSON {metric: value}; inf allowed (PSNR of identical images)
    manifest  TEXT NOT NULL,   -- JSON: versions, seeds, hashes, timings
    created   TEXT NOT NULL,
    UNIQUE (model, protocol, scale, evaluator)
)""", """
CREATE TABLE IF NOT EXISTS arrays (
    run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    name   TEXT NOT NULL,
    data   BLOB NOT NULL,      -- numpy .npy bytes
    PRIMARY KEY (run_id, name)
)""")
SCHEMA = ";\n".join(SCHEMA_STATEMENTS) + ";\n"


@dataclass
class RunRecord:
    id: int
    model: str
    protocol: str
    scale: int
    evaluator: str
    metrics: Dict[str, float]
    manifest: dict
    created: str


class RunNameTaken(FhbenchError):
    """A run's name is stored for a different model."""


def same_model(manifest_a, manifest_b) -> bool:
    """Whether two runs' manifests describe the same model: equal identities (the fingerprint
    without fhbench's own model code); where a row has none, equal fingerprints; where either
    predates fingerprints (or its model had none), equal kind and weights hash. A manifest
    without a model (written by hand) matches anything."""
    a, b = (m.get("model") if isinstance(m, dict) else None for m in (manifest_a, manifest_b))
    if not isinstance(a, dict) or not isinstance(b, dict):
        return True
    if a.get("identity") and b.get("identity"):
        return a["identity"] == b["identity"]
    if a.get("fingerprint") and b.get("fingerprint"):
        return a["fingerprint"] == b["fingerprint"]
    if a.get("kind") != b.get("kind"):
        return False
    # a folder's old hash was of its listing, not its content: not comparable
    return a.get("kind") == "folder" or a.get("weights_sha256") == b.get("weights_sha256")


def _model_label(manifest) -> str:
    model = manifest.get("model") if isinstance(manifest, dict) else None
    if not isinstance(model, dict):
        return "an unknown model"
    return f"{model.get('kind', '?')} model {model.get('spec') or model.get('name')}"


class ResultStore:
    def __init__(self, path):
        self.path = Path(path).expanduser()
        if self.path.exists():
            try:
                with self._connect() as con:
                    con.executescript(SCHEMA)
            except sqlite3.DatabaseError as err:
                raise FhbenchError(f"results store {self.path} is not a usable SQLite file: {err}") from None

    @contextmanager
    def _connect(self):
        # timeout: a concurrent run holding the write lock is waited for, not failed.
        con = sqlite3.connect(str(self.path), timeout=120, isolation_level=None)
        try:
            con.execute("PRAGMA foreign_keys = ON")
            yield con
        finally:
            con.close()

    def check_writable(self) -> None:
        """Fail now, not after hours of work, when a row could not be written: a write
        transaction on the store (rolled back), or a file created beside where it will be."""
        if self.path.is_dir():
            raise FhbenchError(f"results store {self.path} is a folder; pass a file path with --store")
        if self.path.exists():
            try:
                with self._connect() as con:
                    con.execute("BEGIN IMMEDIATE")
                    try:
                        con.execute("CREATE TABLE fhbench_write_probe (x)")
                    finally:
                        con.execute("ROLLBACK")
            except sqlite3.Error as err:
                raise FhbenchError(f"results store {self.path} cannot be written: {err}") from None
            return
        folder = self.path.parent
        while not folder.exists():  # the folders are made with the first row
            folder = folder.parent
        try:
            if not folder.is_dir():
                raise NotADirectoryError(f"{folder} is not a folder")
            with tempfile.NamedTemporaryFile(dir=folder, prefix=".fhbench-probe-"):
                pass
        except OSError as err:
            raise FhbenchError(f"results store {self.path} cannot be created: "
                               f"{err.strerror or err} ({folder})") from None

    def check_name(self, model, protocol, scale, evaluator, manifest: dict) -> None:
        """Refuse (RunNameTaken) a row name that is stored for a different model."""
        check_run_name(model)
        if not self.path.exists():
            return
        with self._connect() as con:
            self._check_same_model(con, model, protocol, scale, evaluator, manifest)

    def _check_same_model(self, con, model, protocol, scale, evaluator, manifest) -> None:
        row = con.execute("SELECT manifest FROM runs WHERE model=? AND protocol=? AND scale=? AND evaluator=?",
                          (model, protocol, int(scale), evaluator)).fetchone()
        if row is None:
            return
        stored = json.loads(row[0])
        if not same_model(manifest, stored):
            raise RunNameTaken(
                f"run name {model!r} on {protocol} (scale {scale}, evaluator {evaluator}) is stored for "
                f"{_model_label(stored)}, not {_model_label(manifest)}; pass --name NEW to store this one "
                f"beside it, or --replace to replace it")

    def save(self, model, protocol, scale, evaluator, metrics: dict, manifest: dict,
             arrays: Optional[Dict[str, np.ndarray]] = None, replace: bool = False) -> int:
        """Write the row of this key atomically (replacing the same model's row; another
        model's only with ``replace``); return its id."""
        check_run_name(model)
        created = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        blobs = {}
        for name, arr in (arrays or {}).items():
            buf = io.BytesIO()
            np.save(buf, np.asarray(arr), allow_pickle=False)
            blobs[name] = buf.getvalue()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            with self._connect() as con:
                con.execute("BEGIN IMMEDIATE")
                try:
                    # the schema comes with the first row, in its transaction (executescript would commit)
                    for statement in SCHEMA_STATEMENTS:
                        con.execute(statement)
                    if not replace:
                        self._check_same_model(con, model, protocol, scale, evaluator, manifest)
                    con.execute("DELETE FROM runs WHERE model=? AND protocol=? AND scale=? AND evaluator=?",
                                (model, protocol, int(scale), evaluator))
                    cur = con.execute(
                        "INSERT INTO runs (model, protocol, scale, evaluator, metrics, manifest, created) "
                        "VALUES (?, ?, ?, ?, ?, ?, ?)",
                        (model, protocol, int(scale), evaluator, json.dumps(metrics),
                         json.dumps(manifest, default=str), created))
                    run_id = cur.lastrowid
                    for name, blob in blobs.items():
                        con.execute("INSERT INTO arrays (run_id, name, data) VALUES (?, ?, ?)", (run_id, name, blob))
                    con.execute("COMMIT")
                except BaseException:
                    _rollback(con)
                    raise
        except sqlite3.Error as err:  # the first error (disk full, read-only), not the rollback's
            raise FhbenchError(f"results store {self.path}: {err}; nothing was stored") from None
        return run_id

    def runs(self, protocol=None, scale=None, evaluator=None, model=None) -> List[RunRecord]:
        where, args = [], []
        for col, val in (("protocol", protocol), ("scale", scale), ("evaluator", evaluator), ("model", model)):
            if val is not None:
                where.append(f"{col} = ?")
                args.append(val)
        sql = "SELECT id, model, protocol, scale, evaluator, metrics, manifest, created FROM runs"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY protocol, scale, evaluator, model"
        if not self.path.exists():  # reading never creates the file
            return []
        with self._connect() as con:
            rows = con.execute(sql, args).fetchall()
        return [RunRecord(r[0], r[1], r[2], r[3], r[4], json.loads(r[5]), json.loads(r[6]), r[7])
                for r in rows]

    def arrays(self, run_id: int) -> Dict[str, np.ndarray]:
        if not self.path.exists():
            return {}
        with self._connect() as con:
            rows = con.execute("SELECT name, data FROM arrays WHERE run_id = ?", (run_id,)).fetchall()
        return {name: np.load(io.BytesIO(data), allow_pickle=False) for name, data in rows}


def _rollback(con) -> None:
    """Roll back if a transaction is still open: SQLite ends it by itself on some errors
    (SQLITE_FULL), and the rollback's own error would hide the one that matters."""
    if con.in_transaction:
        try:
            con.execute("ROLLBACK")
        except sqlite3.Error:
            pass
