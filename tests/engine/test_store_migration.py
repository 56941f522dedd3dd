"""Stores written before explicit levels (schema 1: ``scale`` 1 = the hr row, 0 = a run over
fixed LR sizes) still open: migrated in place where they can be written, read as they are
where they cannot. The fixture was written by the code of 841e3ff (tests/fixtures/)."""
import json
import shutil
import sqlite3
import subprocess

import numpy as np
import pytest

from benchmark.engine.store import SCHEMA_VERSION, ResultStore
from benchmark.errors import FhbenchError
from benchmark.reporting.leaderboard import build_tables, format_tables
from pathlib import Path

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "store-v1.sqlite"


def raw_rows(path):
    with sqlite3.connect(path) as con:
        return con.execute("SELECT id, model, protocol, scale, evaluator, metrics FROM runs ORDER BY id").fetchall()


def expected_levels():
    """What each schema-1 row is, from its raw scale column (read with plain SQL)."""
    return {rid: ("hr" if scale == 1 else "sizes" if scale == 0 else f"x{scale}")
            for rid, _, _, scale, _, _ in raw_rows(FIXTURE)}


@pytest.fixture
def old_store(tmp_path):
    path = tmp_path / "old.sqlite"
    shutil.copyfile(FIXTURE, path)
    return path


def test_the_fixture_is_a_schema_1_store():
    with sqlite3.connect(FIXTURE) as con:
        assert con.execute("PRAGMA user_version").fetchone()[0] == 0
        columns = [c[1] for c in con.execute("PRAGMA table_info(runs)")]
    assert "level" not in columns and "scale" in columns
    assert {scale for *_, scale, _, _ in [r[:4] + r[4:] for r in raw_rows(FIXTURE)]} >= {0, 1}


def test_an_old_store_is_migrated_with_every_row_metric_and_array(old_store):
    before = raw_rows(old_store)
    with sqlite3.connect(old_store) as con:
        arrays_before = con.execute("SELECT run_id, name, data FROM arrays ORDER BY run_id, name").fetchall()
    st = ResultStore(old_store)
    assert st.version == SCHEMA_VERSION
    with sqlite3.connect(old_store) as con:
        assert con.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert con.execute("SELECT run_id, name, data FROM arrays ORDER BY run_id, name").fetchall() == arrays_before
    runs = {r.id: r for r in st.runs()}
    levels = expected_levels()
    assert {rid: r.level for rid, r in runs.items()} == levels
    for rid, model, protocol, scale, evaluator, metrics in before:
        r = runs[rid]
        assert (r.model, r.protocol, r.evaluator) == (model, protocol, evaluator)
        assert r.reference == (scale == 1) and r.scale == (scale if scale > 1 else None)
        assert r.metrics == json.loads(metrics)
    # arrays still belong to their runs
    (ident,) = [r for r in runs.values() if r.protocol == "lfw-ident" and not r.reference]
    np.testing.assert_allclose(st.arrays(ident.id)["cmc@7x6"], np.linspace(0.25, 1, 10))


def test_a_migrated_store_takes_new_rows_and_keeps_its_names(old_store):
    st = ResultStore(old_store)
    st.save("bicubic", "lfw-10fold", "x4", "sface", {"accuracy": 0.5}, {"model": {"kind": "builtin", "name": "bicubic"}})
    rows = [(r.model, r.level) for r in st.runs(protocol="lfw-10fold")]
    assert rows.count(("bicubic", "x4")) == 1 and ("hr", "hr") in rows and ("bicubic", "x8") in rows


def test_a_read_only_old_store_is_read_as_it_is(tmp_path):
    """A store on a read-only file system cannot be migrated: it is read through the old
    schema, and saving to it is refused before anything is written."""
    mount = tmp_path / "ro"
    mount.mkdir()
    shutil.copyfile(FIXTURE, mount / "old.sqlite")
    if subprocess.run(["mount", "--bind", "-o", "ro", str(mount), str(mount)], capture_output=True).returncode:
        pytest.skip("cannot make a read-only mount here")
    try:
        subprocess.run(["mount", "-o", "remount,bind,ro", str(mount)], capture_output=True)
        st = ResultStore(mount / "old.sqlite")
        if st.version == SCHEMA_VERSION:
            pytest.skip("the bind mount is writable here")
        assert st.version == 1
        assert {r.id: r.level for r in st.runs()} == expected_levels()
        # the same tables as after migration
        copy = tmp_path / "copy.sqlite"
        shutil.copyfile(FIXTURE, copy)
        assert format_tables(build_tables(st), "md") == format_tables(build_tables(ResultStore(copy)), "md")
        with pytest.raises(FhbenchError, match="schema 1 and cannot be migrated"):
            st.save("x", "lfw-10fold", "x4", "sface", {"accuracy": 0.5}, {})
    finally:
        subprocess.run(["umount", str(mount)], capture_output=True)


def test_a_newer_store_is_refused_in_one_line(tmp_path):
    path = tmp_path / "new.sqlite"
    shutil.copyfile(FIXTURE, path)
    ResultStore(path)  # migrated to the current schema
    with sqlite3.connect(path) as con:
        con.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(FhbenchError, match=f"schema {SCHEMA_VERSION + 1}, newer than this fhbench's"):
        ResultStore(path)


def test_old_sentinels_are_not_levels(tmp_path):
    st = ResultStore(tmp_path / "r.sqlite")
    for bad in (0, 1, "x1", "8", "scale"):
        with pytest.raises(FhbenchError, match="level"):
            st.save("m", "lfw-10fold", bad, "sface", {"accuracy": 0.5}, {})
    assert not (tmp_path / "r.sqlite").exists()
