"""The results database: one SQLite file, one row per (model, protocol, level, evaluator).

A run's row, its manifest and its per-item arrays (pair scores, per-image PSNR, ...)
are written in ONE transaction, so a crash or a concurrent run never leaves a partial
result: readers see the old row or the new one.

A row's ``level`` says what the model was given: ``x8`` (one scale), ``sizes`` (every fixed
LR size of the protocol in one run; metrics named ``<metric>@16x12``) or ``hr`` (no
degradation: the reference row, ``reference`` true). Schema 1 (before this field) stored a
``scale`` whose 1 meant the hr row and 0 a run over fixed sizes; such a store is migrated
when it is opened (``migrate``), or read as it is when it cannot be written.

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

from benchmark.errors import ConfigError, FhbenchError
from benchmark.engine.names import check_run_name

SCHEMA_VERSION = 2
SIZES_LEVEL = "sizes"   # a run over every fixed LR size of its protocol
HR_LEVEL = "hr"         # no degradation: SR = HR
GIVEN_LEVEL = "given"   # SR images scored as given (fhbench score --sr --hr): the degradation is not fhbench's

SCHEMA_STATEMENTS = ("""
CREATE TABLE IF NOT EXISTS runs (
    id        INTEGER PRIMARY KEY,
    model     TEXT NOT NULL,
    protocol  TEXT NOT NULL,
    level     TEXT NOT NULL,   -- x8 | sizes | hr | given
    reference INTEGER NOT NULL DEFAULT 0,  -- 1: the hr reference row (SR = HR)
    scale     INTEGER,         -- the scale of an x<scale> level, else NULL
    evaluator TEXT NOT NULL,
    metrics   TEXT NOT NULL,   -- JSON {metric: value}; inf allowed (PSNR of identical images)
    manifest  TEXT NOT NULL,   -- JSON: versions, seeds, hashes, timings
    created   TEXT NOT NULL,
    UNIQUE (model, protocol, level, evaluator)
)""", """
CREATE TABLE IF NOT EXISTS arrays (
    run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    name   TEXT NOT NULL,
    data   BLOB NOT NULL,      -- numpy .npy bytes
    PRIMARY KEY (run_id, name)
)""")
SCHEMA = ";\n".join(SCHEMA_STATEMENTS) + ";\n"
# A schema-1 row read as schema 2: the scale sentinels become explicit levels. Used to read a
# store that cannot be migrated, and by the migration itself (ids, and so arrays, are kept).
SELECT_V1 = ("SELECT id, model, protocol, "
             "CASE scale WHEN 1 THEN 'hr' WHEN 0 THEN 'sizes' ELSE 'x' || scale END AS level, "
             "CASE scale WHEN 1 THEN 1 ELSE 0 END AS reference, CASE WHEN scale > 1 THEN scale END AS scale, "
             "evaluator, metrics, manifest, created FROM runs")
RUN_COLUMNS = "id, model, protocol, level, reference, scale, evaluator, metrics, manifest, created"
SELECT_V2 = f"SELECT {RUN_COLUMNS} FROM runs"
MIGRATE_1_TO_2 = (f"CREATE TABLE runs_v2 AS {SELECT_V1}", "DROP TABLE runs", SCHEMA_STATEMENTS[0],
                  f"INSERT INTO runs ({RUN_COLUMNS}) SELECT {RUN_COLUMNS} FROM runs_v2",
                  "DROP TABLE runs_v2", f"PRAGMA user_version = {SCHEMA_VERSION}")


def level_name(level) -> str:
    """A row's level from what a caller gives: ``x8``, ``sizes``, ``hr``, ``given`` (a folder of
    SR images scored against its ground truth), or an integer scale >= 2 (``8`` -> ``x8``).
    The old sentinels (0, 1) are refused: say ``sizes`` or ``hr``."""
    if isinstance(level, bool):
        raise ConfigError(f"level must be x<scale>, {SIZES_LEVEL!r} or {HR_LEVEL!r}, got {level!r}")
    if isinstance(level, (int, np.integer)):
        if level < 2:
            raise ConfigError(f"scale {level} is not a level: pass {HR_LEVEL!r} or {SIZES_LEVEL!r}")
        return f"x{int(level)}"
    level = str(level)
    if level in (SIZES_LEVEL, HR_LEVEL, GIVEN_LEVEL) or (level[:1] == "x" and level[1:].isdigit() and int(level[1:]) >= 2):
        return level
    raise ConfigError(f"level must be x<scale>, {SIZES_LEVEL!r}, {HR_LEVEL!r} or {GIVEN_LEVEL!r}, got {level!r}")


def level_scale(level: str) -> Optional[int]:
    """``x8`` -> 8; ``sizes`` and ``hr`` -> None."""
    return int(level[1:]) if level.startswith("x") else None


@dataclass
class RunRecord:
    id: int
    model: str
    protocol: str
    level: str                # x8 | sizes | hr
    reference: bool           # the hr reference row (SR = HR)
    scale: Optional[int]      # the scale of an x<scale> level, else None
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
        self.version = SCHEMA_VERSION
        if self.path.exists():
            try:
                self.version = self._open()
            except sqlite3.DatabaseError as err:
                raise FhbenchError(f"results store {self.path} is not a usable SQLite file: {err}") from None

    def _open(self) -> int:
        """The store's schema version after migrating it where it can be written."""
        with self._connect() as con:
            version = con.execute("PRAGMA user_version").fetchone()[0]
            has_runs = con.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name='runs'").fetchone()
            if not has_runs:
                return SCHEMA_VERSION  # empty: the schema comes with the first row
            if version > SCHEMA_VERSION:
                raise FhbenchError(f"results store {self.path} has schema {version}, newer than this fhbench's "
                                   f"{SCHEMA_VERSION}; upgrade fhbench to read it")
            if version == SCHEMA_VERSION:
                return version
            try:
                migrate(con)
            except sqlite3.OperationalError as err:
                if "readonly" in str(err) or "read-only" in str(err):
                    return 1  # read as it is
                raise
            return SCHEMA_VERSION

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

    def check_name(self, model, protocol, level, evaluator, manifest: dict) -> None:
        """Refuse (RunNameTaken) a row name that is stored for a different model."""
        check_run_name(model)
        level = level_name(level)
        if not self.path.exists() or self.version != SCHEMA_VERSION:
            return
        with self._connect() as con:
            self._check_same_model(con, model, protocol, level, evaluator, manifest)

    def _check_same_model(self, con, model, protocol, level, evaluator, manifest) -> None:
        row = con.execute("SELECT manifest FROM runs WHERE model=? AND protocol=? AND level=? AND evaluator=?",
                          (model, protocol, level, evaluator)).fetchone()
        if row is None:
            return
        stored = json.loads(row[0])
        if not same_model(manifest, stored):
            raise RunNameTaken(
                f"run name {model!r} on {protocol} (level {level}, evaluator {evaluator}) is stored for "
                f"{_model_label(stored)}, not {_model_label(manifest)}; pass --name NEW to store this one "
                f"beside it, or --replace to replace it")

    def save(self, model, protocol, level, evaluator, metrics: dict, manifest: dict,
             arrays: Optional[Dict[str, np.ndarray]] = None, replace: bool = False) -> int:
        """Write the row of this key atomically (replacing the same model's row; another
        model's only with ``replace``); return its id. ``level``: ``x8`` (or 8), ``sizes``, ``hr``."""
        check_run_name(model)
        level = level_name(level)
        if self.path.exists() and self.version != SCHEMA_VERSION:
            raise FhbenchError(f"results store {self.path} has schema {self.version} and cannot be migrated "
                               f"(read-only?); nothing was stored")
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
                    con.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
                    if not replace:
                        self._check_same_model(con, model, protocol, level, evaluator, manifest)
                    con.execute("DELETE FROM runs WHERE model=? AND protocol=? AND level=? AND evaluator=?",
                                (model, protocol, level, evaluator))
                    cur = con.execute(
                        "INSERT INTO runs (model, protocol, level, reference, scale, evaluator, metrics, manifest, "
                        "created) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        (model, protocol, level, int(level == HR_LEVEL), level_scale(level), evaluator,
                         json.dumps(metrics), json.dumps(manifest, default=str), created))
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

    def runs(self, protocol=None, level=None, evaluator=None, model=None) -> List[RunRecord]:
        """The stored rows, filtered by protocol, level (``x8``, 8, ``sizes``, ``hr``),
        evaluator and model (None: any), ordered by protocol, level, evaluator, model."""
        if not self.path.exists():  # reading never creates the file
            return []
        level = None if level is None else level_name(level)
        with self._connect() as con:
            if not con.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name='runs'").fetchone():
                return []
            where = [(col, val) for col, val in (("protocol", protocol), ("level", level), ("evaluator", evaluator),
                                                   ("model", model)) if val is not None]
            sql = f"SELECT * FROM ({SELECT_V2 if self.version == SCHEMA_VERSION else SELECT_V1})"
            if where:  # filtered by SQLite: only the rows asked for have their JSON parsed
                sql += " WHERE " + " AND ".join(f"{col} = ?" for col, _ in where)
            rows = con.execute(sql, [val for _, val in where]).fetchall()
        out = [RunRecord(r[0], r[1], r[2], r[3], bool(r[4]), r[5], r[6], json.loads(r[7]), json.loads(r[8]), r[9])
               for r in rows]
        return sorted(out, key=lambda r: (r.protocol, _level_order(r.level), r.evaluator, r.model))

    def arrays(self, run_id: int) -> Dict[str, np.ndarray]:
        if not self.path.exists():
            return {}
        with self._connect() as con:
            rows = con.execute("SELECT name, data FROM arrays WHERE run_id = ?", (run_id,)).fetchall()
        return {name: np.load(io.BytesIO(data), allow_pickle=False) for name, data in rows}


def _level_order(level: str):
    """Scales in numeric order, then a run over fixed sizes, then the hr row."""
    scale = level_scale(level)
    return (0, scale, "") if scale is not None else (1, 0, level)


def migrate(con) -> None:
    """Schema 1 -> 2 in one transaction (foreign keys off while the runs table is rebuilt)."""
    con.execute("PRAGMA foreign_keys = OFF")
    con.execute("BEGIN IMMEDIATE")
    try:
        for statement in MIGRATE_1_TO_2:
            con.execute(statement)
        con.execute("COMMIT")
    except BaseException:
        _rollback(con)
        raise
    finally:
        con.execute("PRAGMA foreign_keys = ON")


def _rollback(con) -> None:
    """Roll back if a transaction is still open: SQLite ends it by itself on some errors
    (SQLITE_FULL), and the rollback's own error would hide the one that matters."""
    if con.in_transaction:
        try:
            con.execute("ROLLBACK")
        except sqlite3.Error:
            pass
