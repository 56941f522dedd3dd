"""The results store (replace per key, atomic saves, concurrent writers) and the
leaderboards built from it (ranking, bold best, the hr reference row, formats)."""
import csv
import io
import json
import multiprocessing
import sqlite3

import numpy as np
import pytest

from benchmark.engine import store as store_mod
from benchmark.errors import FhbenchError
from benchmark.reporting.leaderboard import build_tables, format_tables
from benchmark.engine.store import ResultStore

PROTOCOL = "lfw-10fold"  # the shipped protocol: primary metric accuracy


@pytest.fixture(autouse=True)
def shipped_protocols_only(monkeypatch):
    monkeypatch.delenv("FHBENCH_PROTOCOLS", raising=False)


def table_rows(path, sql):
    with sqlite3.connect(path) as con:
        return con.execute(sql).fetchall()


# --- store ----------------------------------------------------------------------------

def test_save_round_trip(tmp_path):
    st = ResultStore(tmp_path / "sub" / "r.sqlite")  # parent folders are created
    arrays = {"scores": np.linspace(-1, 1, 7, dtype=np.float32),
              "is_same": np.array([True, False, True]),
              "folds": np.arange(12, dtype=np.int64).reshape(3, 4)}
    metrics = {"accuracy": 0.9, "psnr": float("inf")}
    rid = st.save("m", PROTOCOL, 8, "sface", metrics, {"seed": 0, "path": tmp_path}, arrays)
    (run,) = st.runs()
    assert (run.id, run.model, run.protocol, run.scale, run.evaluator) == (rid, "m", PROTOCOL, 8, "sface")
    assert run.metrics == metrics and run.manifest == {"seed": 0, "path": str(tmp_path)}
    back = st.arrays(rid)
    assert set(back) == set(arrays)
    for k, v in arrays.items():
        assert back[k].dtype == v.dtype and np.array_equal(back[k], v)


def test_save_replaces_per_key_only(tmp_path):
    st = ResultStore(tmp_path / "r.sqlite")
    st.save("a", PROTOCOL, 8, "sface", {"accuracy": 0.1}, {}, {"x": np.zeros(2)})
    st.save("a", PROTOCOL, 4, "sface", {"accuracy": 0.2}, {})
    st.save("a", PROTOCOL, 8, "dlib", {"accuracy": 0.3}, {})
    st.save("b", PROTOCOL, 8, "sface", {"accuracy": 0.4}, {})
    rid = st.save("a", PROTOCOL, 8, "sface", {"accuracy": 0.5}, {}, {"y": np.ones(3)})
    got = {(r.model, r.scale, r.evaluator): r.metrics["accuracy"] for r in st.runs()}
    assert got == {("a", 8, "sface"): 0.5, ("a", 4, "sface"): 0.2, ("a", 8, "dlib"): 0.3,
                   ("b", 8, "sface"): 0.4}
    assert list(st.arrays(rid)) == ["y"]
    # The replaced row's arrays went with it.
    assert table_rows(st.path, "SELECT COUNT(*) FROM arrays")[0][0] == 1
    assert [r.model for r in st.runs(level=8, evaluator="sface")] == ["a", "b"]


def assert_old_row_intact(st, old_id):
    (run,) = st.runs()
    assert run.id == old_id and run.metrics == {"accuracy": 0.5}
    assert np.array_equal(st.arrays(old_id)["a"], np.arange(3))
    assert table_rows(st.path, "SELECT run_id, name FROM arrays") == [(old_id, "a")]


def test_failed_array_leaves_the_old_row(tmp_path):
    st = ResultStore(tmp_path / "r.sqlite")
    old = st.save("m", PROTOCOL, 8, "sface", {"accuracy": 0.5}, {}, {"a": np.arange(3)})
    bad = {"a": np.arange(4), "b": np.array([{"x": 1}, None], dtype=object)}  # not storable without pickle
    with pytest.raises(ValueError):
        st.save("m", PROTOCOL, 8, "sface", {"accuracy": 0.9}, {}, bad)
    assert_old_row_intact(st, old)


def test_crash_half_way_through_the_arrays_leaves_the_old_row(tmp_path, monkeypatch):
    st = ResultStore(tmp_path / "r.sqlite")
    old = st.save("m", PROTOCOL, 8, "sface", {"accuracy": 0.5}, {}, {"a": np.arange(3)})
    real_save, calls = np.save, []

    def save_then_crash(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt  # e.g. Ctrl-C between two arrays
        return real_save(*args, **kwargs)

    monkeypatch.setattr(store_mod.np, "save", save_then_crash)
    with pytest.raises(KeyboardInterrupt):
        st.save("m", PROTOCOL, 8, "sface", {"accuracy": 0.9}, {}, {"a": np.arange(5), "b": np.arange(6)})
    assert len(calls) == 2
    monkeypatch.undo()
    assert_old_row_intact(st, old)
    # The store is still usable: the lock was released.
    st.save("m", PROTOCOL, 8, "sface", {"accuracy": 0.7}, {})
    assert [r.metrics["accuracy"] for r in st.runs()] == [0.7]


def test_not_a_database(tmp_path):
    bad = tmp_path / "r.sqlite"
    bad.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(FhbenchError, match="not a usable SQLite file"):
        ResultStore(bad)


def _writer(path, worker, saves):
    st = ResultStore(path)
    for i in range(saves):
        value = worker * 100 + i
        st.save(f"w{worker}-{i % 5}", PROTOCOL, 8, "sface", {"accuracy": value}, {"worker": worker},
                {"v": np.full(4, value), "w": np.full(2, worker)})
        st.save("shared", PROTOCOL, 8, "sface", {"accuracy": value}, {"worker": worker},
                {"v": np.full(4, value), "w": np.full(2, worker)})


def test_concurrent_writers(tmp_path):
    path = tmp_path / "r.sqlite"
    ctx = multiprocessing.get_context("spawn")  # no fork of a parent that may hold torch threads
    procs = [ctx.Process(target=_writer, args=(path, w, 10)) for w in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0] * 4
    st = ResultStore(path)
    runs = {r.model: r for r in st.runs()}
    # Keys w<k>-<j> were saved twice (i = j and j + 5): the later save wins.
    expected = {f"w{w}-{j}": w * 100 + j + 5 for w in range(4) for j in range(5)}
    assert set(runs) == set(expected) | {"shared"}
    for model, value in expected.items():
        assert runs[model].metrics["accuracy"] == value
    # The shared key: exactly one row, the last save of some worker, with that save's arrays.
    shared = runs["shared"]
    assert shared.metrics["accuracy"] in {w * 100 + 9 for w in range(4)}
    for r in runs.values():  # every row has exactly its own arrays
        arrays = st.arrays(r.id)
        assert np.array_equal(arrays["v"], np.full(4, r.metrics["accuracy"]))
        assert np.array_equal(arrays["w"], np.full(2, r.manifest["worker"]))
    assert table_rows(path, "SELECT COUNT(*) FROM arrays")[0][0] == 2 * len(runs)


# --- leaderboard ----------------------------------------------------------------------

def lb_metrics(acc, eer, psnr):
    return {"accuracy": acc, "accuracy_std": 0.01, "auc": acc + 0.02, "eer": eer,
            "psnr": psnr, "psnr_std": 1.0, "ssim": 0.5, "ssim_std": 0.1, "fr_loss": 0.3, "fr_loss_std": 0.05}


@pytest.fixture
def board(tmp_path):
    st = ResultStore(tmp_path / "r.sqlite")
    st.save("hr", PROTOCOL, "hr", "sface", lb_metrics(0.99, 0.01, float("inf")), {})
    st.save("alpha", PROTOCOL, 8, "sface", lb_metrics(0.80, 0.20, 25.0), {})
    st.save("beta_sr", PROTOCOL, 8, "sface", lb_metrics(0.90, 0.15, 24.0), {})
    st.save("gamma", PROTOCOL, 8, "sface", lb_metrics(0.85, 0.10, 26.0), {})
    st.save("alpha", PROTOCOL, 4, "sface", lb_metrics(0.95, 0.05, 30.0), {})
    st.save("gamma", PROTOCOL, 4, "sface", lb_metrics(0.93, 0.06, 31.0), {})
    return st


def test_tables_rank_by_primary_metric_with_reference_first(board):
    tables = {t.scale: t for t in build_tables(board)}
    assert set(tables) == {4, 8}
    assert [r["model"] for r in tables[8].rows] == ["hr (no degradation)", "beta_sr", "gamma", "alpha"]
    assert [r["model"] for r in tables[4].rows] == ["hr (no degradation)", "alpha", "gamma"]
    for t in tables.values():
        assert t.primary == "accuracy" and t.evaluator == "sface" and t.protocol == PROTOCOL
        assert [r["reference"] for r in t.rows] == [True] + [False] * (len(t.rows) - 1)
        assert "accuracy_std" not in t.metrics  # shown as +- beside the accuracy
    assert [t.scale for t in build_tables(board, scale=4)] == [4]


def md_cells(text, model):
    (line,) = [ln for ln in text.splitlines() if ln.startswith(f"| {model} |")]
    return [c.strip() for c in line.strip("|").split("|")]


def test_markdown_bolds_best_but_never_the_reference(board):
    md = format_tables(build_tables(board, scale=8), "md")
    assert "### lfw-10fold, x8, evaluator sface" in md
    head = md_cells(md, "Model")
    assert head == ["Model", "Acc (%)", "AUC (%)", "EER (%)", "PSNR (dB)", "SSIM", "FR loss"]
    ref = md_cells(md, "hr (no degradation)")
    assert ref == ["hr (no degradation)", "99.00 ± 1.00", "101.00", "1.00", "inf", "0.5000", "0.3000"]
    assert not any("**" in c for c in ref)  # best everywhere, but it is the upper bound
    beta, gamma, alpha = md_cells(md, "beta_sr"), md_cells(md, "gamma"), md_cells(md, "alpha")
    assert beta[1] == "**90.00 ± 1.00**" and gamma[1] == "85.00 ± 1.00" and alpha[1] == "80.00 ± 1.00"
    assert gamma[3] == "**10.00**" and beta[3] == "15.00"  # EER: lower is better
    assert gamma[4] == "**26.00**" and alpha[4] == "25.00"
    # Ties are all bold (SSIM and FR loss are equal for every model).
    assert all(row[5] == "**0.5000**" and row[6] == "**0.3000**" for row in (alpha, beta, gamma))


def test_reference_row_in_every_scale_table(board):
    md = format_tables(build_tables(board), "md")
    assert md.count("| hr (no degradation) |") == 2
    assert "lfw-10fold, x4, evaluator sface" in md and "lfw-10fold, x8, evaluator sface" in md


def test_latex(board):
    tex = format_tables(build_tables(board, scale=8), "latex")
    lines = tex.splitlines()
    assert r"\begin{tabular}{lrrrrrr}" in lines and r"\end{tabular}" in lines
    assert r"Model & Acc (\%) & AUC (\%) & EER (\%) & PSNR (dB) & SSIM & FR loss \\" in lines
    (ref,) = [ln for ln in lines if ln.startswith("hr (no degradation)")]
    assert r"\textbf" not in ref and r"99.00 $\pm$ 1.00" in ref
    (beta,) = [ln for ln in lines if ln.startswith(r"beta\_sr")]
    assert r"\textbf{90.00 $\pm$ 1.00}" in beta
    (alpha,) = [ln for ln in lines if ln.startswith("alpha")]
    assert r"\textbf{9" not in alpha and r"\textbf{8" not in alpha
    assert r"99.00 $\pm$ 1.00 & 101.00 & 1.00 & $\infty$ &" in ref  # the hr row's PSNR of identical images
    assert "booktabs" in lines[0]


def test_latex_escapes_special_characters(tmp_path):
    st = ResultStore(tmp_path / "r.sqlite")
    st.save("net_50%&#1", "lfw-blufr", 8, "sface", {"vr": 0.5, "vr_std": 0.01, "vr_lower": 0.49}, {})
    tex = format_tables(build_tables(st), "latex")
    (head,) = [ln for ln in tex.splitlines() if ln.startswith("Model &")]
    assert r"VR@0.1\% $\mu$-$\sigma$ (\%)" in head and "μ" not in head and "σ" not in head
    (row,) = [ln for ln in tex.splitlines() if ln.startswith("net")]
    assert row.startswith(r"net\_50\%\&\#1 & \textbf{50.00 $\pm$ 1.00} & \textbf{49.00} &")
    assert all(ord(c) < 128 for c in tex)  # pdflatex without inputenc tricks


def test_csv_columns(board):
    text = format_tables(build_tables(board, scale=8), "csv")
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0] == ["protocol", "level", "evaluator", "model", "reference", "accuracy", "accuracy_std",
                       "auc", "eer", "psnr", "psnr_std", "ssim", "ssim_std", "fr_loss", "fr_loss_std", "best"]
    assert [r[3] for r in rows[1:]] == ["hr (no degradation)", "beta_sr", "gamma", "alpha"]
    assert [r[4] for r in rows[1:]] == ["1", "0", "0", "0"]
    assert rows[2][:6] == [PROTOCOL, "x8", "sface", "beta_sr", "0", "0.9"]
    assert float(rows[1][9]) == float("inf")
    # the best marks, by hand: beta_sr has the highest accuracy and AUC, gamma the lowest EER and
    # highest PSNR, SSIM and FR loss tie; the hr reference is never best
    assert [r[-1] for r in rows[1:]] == ["", "accuracy;auc;ssim;fr_loss", "eer;psnr;ssim;fr_loss", "ssim;fr_loss"]


def _no_constants(name):
    raise ValueError(f"non-standard JSON constant {name}")


def test_json_is_standard_json(board):
    text = format_tables(build_tables(board), "json")
    data = json.loads(text, parse_constant=_no_constants)  # Infinity/NaN are not JSON
    assert [(t["protocol"], t["scale"], t["evaluator"]) for t in data] == [(PROTOCOL, 4, "sface"),
                                                                          (PROTOCOL, 8, "sface")]
    assert [r["model"] for r in data[1]["rows"]] == ["hr (no degradation)", "beta_sr", "gamma", "alpha"]
    assert data[1]["rows"][1]["metrics"]["accuracy"] == 0.9
    assert data[1]["rows"][0]["metrics"]["psnr"] == "inf"  # the hr row: identical images
    # best values marked (the hr row's inf PSNR and 0.01 EER are not candidates)
    assert data[1]["best"] == {"accuracy": 0.9, "auc": 0.92, "eer": 0.1, "psnr": 26.0, "ssim": 0.5, "fr_loss": 0.3}
    assert [r["best"] for r in data[1]["rows"]] == [[], ["accuracy", "auc", "ssim", "fr_loss"],
                                                   ["eer", "psnr", "ssim", "fr_loss"], ["ssim", "fr_loss"]]


def test_reference_only_store_still_shows_a_table(tmp_path):
    st = ResultStore(tmp_path / "r.sqlite")
    st.save("hr", PROTOCOL, "hr", "sface", lb_metrics(0.99, 0.01, float("inf")), {})
    (table,) = build_tables(st)
    assert table.level == "hr" and [r["model"] for r in table.rows] == ["hr (no degradation)"]
    assert "lfw-10fold, no degradation, evaluator sface" in format_tables([table], "md")


def test_empty_store(tmp_path):
    st = ResultStore(tmp_path / "r.sqlite")
    with pytest.raises(FhbenchError, match=r"no runs in .*r\.sqlite.*fhbench run"):
        build_tables(st)
    with pytest.raises(FhbenchError, match="no runs in .* for protocol=lfw-10fold"):
        build_tables(st, protocol=PROTOCOL)


def test_missing_scale(board):
    with pytest.raises(FhbenchError, match="at scale 2"):
        build_tables(board, scale=2)
