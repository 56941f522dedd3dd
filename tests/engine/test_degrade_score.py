"""``fhbench degrade`` writes a protocol's LR inputs; a folder of SR images made from them by
another program is scored by ``fhbench score`` with exactly the figures ``fhbench run`` gives
the same model; bad folders are refused in one line, and nothing is stored."""
import hashlib
import json
import sqlite3

import cv2
import numpy as np
import pytest
import torch
from click.testing import CliRunner

from benchmark.cli import main
from benchmark.contracts.degradation import make_degradation
from benchmark.engine.exchange import lr_relpath
from benchmark.engine.store import ResultStore
from benchmark.errors import DataError
from benchmark.faces.images import read_batch
from benchmark.faces.resize import upsample_bicubic

from conftest import pairs_txt_images


def quantised_bicubic(lr):
    """A model outside fhbench, as a callable: MATLAB bicubic x4 up, clipped, 8-bit levels."""
    x = lr.numpy() if hasattr(lr, "numpy") else np.asarray(lr)
    up = np.clip(upsample_bicubic(x, (x.shape[-2] * 4, x.shape[-1] * 4)), 0, 1)
    return torch.from_numpy((np.rint(up.astype(np.float64) * 255) / 255).astype(np.float32))


def cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture
def degraded(tiny_lfw, tmp_path):
    out = tmp_path / "lr"
    res = cli("degrade", "--protocol", "lfw-10fold", "--scale", 4, "--out", out, "--data-root", tiny_lfw,
              "--cache-dir", "")
    assert res.exit_code == 0, res.output
    return out


def test_degrade_writes_the_lr_of_every_image_with_a_manifest(tiny_lfw, degraded):
    images = pairs_txt_images(tiny_lfw)
    manifest = json.loads((degraded / "fhbench-degrade.json").read_text())
    rels = [str(p.relative_to(tiny_lfw / "aligned-112x96")) for p in images]
    assert [im["relpath"] for im in manifest["images"]] == rels
    assert [im["key"] for im in manifest["images"]] == [hashlib.sha256(p.read_bytes()).hexdigest() for p in images]
    assert (manifest["protocol"], manifest["scale"], manifest["lr_size"], manifest["hr_size"]) == (
        "lfw-10fold", 4, [28, 24], [112, 96])
    want = make_degradation("bicubic", scale=4)(read_batch(images))
    pngs = sorted(p for p in degraded.rglob("*") if p.is_file() and p.suffix == ".png")
    assert len(pngs) == len(images)
    for rel, lr in zip(rels, want):
        bgr = cv2.imread(str(degraded / rel.replace(".jpg", ".png")), cv2.IMREAD_UNCHANGED)
        np.testing.assert_array_equal(bgr[:, :, ::-1].transpose(2, 0, 1), np.rint(lr * 255).astype(np.uint8))


def test_degrade_refuses_to_overwrite_unless_asked(tiny_lfw, degraded):
    marker = degraded / "mine.txt"
    marker.write_text("keep")
    res = cli("degrade", "--protocol", "lfw-10fold", "--scale", 4, "--out", degraded, "--data-root", tiny_lfw,
              "--cache-dir", "")
    assert res.exit_code == 2 and "not empty" in res.output and "--overwrite" in res.output
    assert marker.read_text() == "keep"
    res = cli("degrade", "--protocol", "lfw-10fold", "--scale", 8, "--out", degraded, "--data-root", tiny_lfw,
              "--cache-dir", "", "--overwrite")
    assert res.exit_code == 0, res.output
    assert not marker.exists() and json.loads((degraded / "fhbench-degrade.json").read_text())["scale"] == 8
    assert [p.name for p in degraded.parent.iterdir() if p.name.startswith(".")] == []  # no leftovers


def test_degrade_blind_records_each_images_parameters(tiny_lfw, tmp_path):
    out = tmp_path / "blind"
    res = cli("degrade", "--protocol", "lfw-10fold-blind", "--scale", 8, "--out", out, "--data-root", tiny_lfw,
              "--cache-dir", "")
    assert res.exit_code == 0, res.output
    manifest = json.loads((out / "fhbench-degrade.json").read_text())
    g = np.random.Generator(np.random.PCG64(np.random.SeedSequence([0, int(manifest["images"][0]["key"], 16)])))
    assert manifest["images"][0]["params"]["sigma"] == g.uniform(0.1, 10)
    assert manifest["degradation"]["jpeg_encoder"]["opencv"] == cv2.__version__


@pytest.mark.parametrize("rel", ["../escape.jpg", "/etc/passwd", "a/../../b.jpg", ""])
def test_hostile_relpaths_cannot_leave_the_folder(rel):
    with pytest.raises(DataError, match="not inside"):
        lr_relpath(rel)


def sr_folder(lr_dir, sr_dir):
    """Another program's SR outputs: each LR PNG, bicubic x4 up, as <relpath>.png."""
    for p in sorted(lr_dir.rglob("*.png")):
        bgr = cv2.imread(str(p), cv2.IMREAD_COLOR)
        lr = bgr[:, :, ::-1].transpose(2, 0, 1)[None].astype(np.float32) / 255
        sr = (quantised_bicubic(lr)[0].numpy() * 255).round().astype(np.uint8)
        dest = sr_dir / p.relative_to(lr_dir)
        dest.parent.mkdir(parents=True, exist_ok=True)
        assert cv2.imwrite(str(dest), sr.transpose(1, 2, 0)[:, :, ::-1])
    return sr_dir


def test_score_equals_run_of_the_same_model(tiny_lfw, degraded, tmp_path):
    sr = sr_folder(degraded, tmp_path / "mymodel")
    store, cache = tmp_path / "r.sqlite", tmp_path / "cache"
    res = cli("score", "--sr", sr, "--protocol", "lfw-10fold", "--scale", 4, "--degraded", degraded,
              "--data-root", tiny_lfw, "--store", store, "--cache-dir", cache)
    assert res.exit_code == 0, res.output
    res = cli("run", "--model", "test_degrade_score:quantised_bicubic", "--name", "qbic", "--protocol",
              "lfw-10fold", "--scale", 4, "--data-root", tiny_lfw, "--store", store, "--cache-dir", cache, "--quiet")
    assert res.exit_code == 0, res.output
    res = cli("run", "--model", "bicubic", "--protocol", "lfw-10fold", "--scale", 4, "--data-root", tiny_lfw,
              "--store", store, "--cache-dir", cache, "--quiet")
    st = ResultStore(store)
    (folder,), (run,), (bic,) = st.runs(model="mymodel"), st.runs(model="qbic"), st.runs(model="bicubic")
    for key in ("psnr", "ssim", "fr_loss", "ids", "idd", "accuracy", "auc"):
        assert folder.metrics[key] == pytest.approx(run.metrics[key], rel=1e-12, abs=1e-12), key
    a, b = st.arrays(folder.id), st.arrays(run.id)
    np.testing.assert_array_equal(a["psnr"], b["psnr"])
    np.testing.assert_array_equal(a["ids"], b["ids"])
    # and the unquantised bicubic model of fhbench run: the 8-bit rounding of the PNGs only
    assert folder.metrics["psnr"] == pytest.approx(bic.metrics["psnr"], abs=0.05)
    assert folder.metrics["ids"] == pytest.approx(bic.metrics["ids"], abs=2e-3)


def rows(store):
    if not store.exists():
        return 0
    with sqlite3.connect(store) as con:
        return con.execute("SELECT COUNT(*) FROM runs").fetchone()[0]


@pytest.mark.parametrize("spoil, says", [
    (lambda d: next(d.rglob("*.png")).unlink(), "lacks 1 of 24 SR images, first"),
    (lambda d: (d / "notes.txt").write_text("x"), "does not name, first 'notes.txt'"),
    (lambda d: cv2.imwrite(str(next(d.rglob("*.png"))), np.zeros((112, 96), np.uint8)), "grey-scale"),
    (lambda d: cv2.imwrite(str(next(d.rglob("*.png"))), np.zeros((112, 96, 4), np.uint8)), "alpha channel"),
    (lambda d: cv2.imwrite(str(next(d.rglob("*.png"))), np.zeros((110, 96, 3), np.uint8)), "is 110x96, expected"),
    (lambda d: next(d.rglob("*.png")).write_bytes(b"not a png"), "unreadable"),
])
def test_bad_sr_folders_are_refused_in_one_line_and_nothing_is_stored(tiny_lfw, degraded, tmp_path, spoil, says):
    sr = sr_folder(degraded, tmp_path / "bad")
    spoil(sr)
    store = tmp_path / "r.sqlite"
    res = cli("score", "--sr", sr, "--protocol", "lfw-10fold", "--scale", 4, "--data-root", tiny_lfw,
              "--store", store, "--cache-dir", "")
    assert res.exit_code == 2 and says in res.output, res.output
    assert len(res.output.strip().splitlines()) == 1
    assert rows(store) == 0


def test_score_on_a_protocol_passes_the_backend(tiny_lfw, degraded, tmp_path):
    sr = sr_folder(degraded, tmp_path / "fast")
    res = cli("score", "--sr", sr, "--protocol", "lfw-10fold", "--scale", 4, "--degraded", degraded,
              "--data-root", tiny_lfw, "--store", tmp_path / "r.sqlite", "--cache-dir", "", "--backend",
              "onnxruntime-fast", "--quiet")
    assert res.exit_code == 0, res.output
    (row,) = ResultStore(tmp_path / "r.sqlite").runs(model="fast")
    assert row.manifest["evaluator"]["backend"] == "onnxruntime-fast"


def test_score_checks_the_degrade_manifest(tiny_lfw, degraded, tmp_path):
    sr = sr_folder(degraded, tmp_path / "m")
    res = cli("score", "--sr", sr, "--protocol", "lfw-10fold", "--scale", 8, "--degraded", degraded,
              "--data-root", tiny_lfw, "--store", tmp_path / "r.sqlite", "--cache-dir", "")
    assert res.exit_code == 2 and "holds lfw-10fold x4, not lfw-10fold x8" in res.output
    assert rows(tmp_path / "r.sqlite") == 0


@pytest.mark.parametrize("args, says", [
    (["degrade", "--protocol", "lfw-10fold", "--scale", 3], "runs at scales [2, 4, 8], not 3"),
    (["degrade", "--protocol", "lfw-ident", "--scale", 4], "runs every LR size of its own (7x6, 14x12, 16x14, "
                                                           "18x16) in one go, as fhbench run; leave out --scale"),
    (["degrade", "--protocol", "lfw-10fold-blnd"], "did you mean lfw-10fold-blind"),
    (["score", "--sr", "NOWHERE", "--protocol", "lfw-10fold"], "is not a folder"),
])
def test_bad_options_are_one_line(tiny_lfw, tmp_path, args, says):
    args = [a if a != "NOWHERE" else tmp_path / "nowhere" for a in args]
    if args[0] == "degrade":
        args += ["--out", tmp_path / "out"]
    res = cli(*args, "--data-root", tiny_lfw)
    assert res.exit_code == 2 and says in res.output and len(res.output.strip().splitlines()) == 1, res.output
    assert not (tmp_path / "out").exists()
