"""The results database: one SQLite file, one row per (model, protocol, scale, evaluator).

A run's row, its manifest and its per-item arrays (pair scores, per-image PSNR, ...)
are written in ONE transaction, so a crash or a concurrent run never leaves a partial
result: readers see the old row or the new one. ``scale`` 1 means "no degradation"
(the ``hr`` reference row).
"""
from __future__ import annotations

import io
import json
import sqlite3
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np

from .errors import FhbenchError

SCHEMA = """
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
);
CREATE TABLE IF NOT EXISTS arrays (
    run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    name   TEXT NOT NULL,
    data   BLOB NOT NULL,      -- numpy .npy bytes
    PRIMARY KEY (run_id, name)
);
"""


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


class ResultStore:
    def __init__(self, path):
        self.path = Path(path).expanduser()
        self.path.parent.mkdir(parents=True, exist_ok=True)
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

    def save(self, model, protocol, scale, evaluator, metrics: dict, manifest: dict,
             arrays: Optional[Dict[str, np.ndarray]] = None) -> int:
        """Replace the row of this key atomically; return its id."""
        created = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        with self._connect() as con:
            con.execute("BEGIN IMMEDIATE")
            try:
                con.execute("DELETE FROM runs WHERE model=? AND protocol=? AND scale=? AND evaluator=?",
                            (model, protocol, int(scale), evaluator))
                cur = con.execute(
                    "INSERT INTO runs (model, protocol, scale, evaluator, metrics, manifest, created) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (model, protocol, int(scale), evaluator, json.dumps(metrics),
                     json.dumps(manifest, default=str), created))
                run_id = cur.lastrowid
                for name, arr in (arrays or {}).items():
                    buf = io.BytesIO()
                    np.save(buf, np.asarray(arr), allow_pickle=False)
                    con.execute("INSERT INTO arrays (run_id, name, data) VALUES (?, ?, ?)",
                                (run_id, name, buf.getvalue()))
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise
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
        with self._connect() as con:
            rows = con.execute(sql, args).fetchall()
        return [RunRecord(r[0], r[1], r[2], r[3], r[4], json.loads(r[5]), json.loads(r[6]), r[7])
                for r in rows]

    def arrays(self, run_id: int) -> Dict[str, np.ndarray]:
        with self._connect() as con:
            rows = con.execute("SELECT name, data FROM arrays WHERE run_id = ?", (run_id,)).fetchall()
        return {name: np.load(io.BytesIO(data), allow_pickle=False) for name, data in rows}
