"""``fhbench score --sr DIR --hr DIR``: any folder of restored faces scored against its ground
truth. Oracles: ``fhbench run`` of the same model (an independent path: dataset reader,
pipeline, cache), NumPy PSNR of each pair written here, and hand-built folders for the
refusals (one line naming the file, nothing stored, no output folder)."""
import csv
import json
import shutil
import sqlite3

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from benchmark.cli import main
from benchmark.engine.store import ResultStore

from conftest import LFW_ALIGNED, pairs_txt_images
from test_degrade_score import sr_folder


def cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def rows(store):
    if not store.exists():
        return 0
    with sqlite3.connect(store) as con:
        return con.execute("SELECT COUNT(*) FROM runs").fetchone()[0]


def psnr_y_oracle(sr_path, hr_path):
    """BT.601 Y PSNR (peak 255) of two files, from the README's definition, in NumPy (pixels
    k / 255 in float32, as every fhbench image batch holds them)."""
    def y(path):
        rgb = (cv2.imread(str(path), cv2.IMREAD_COLOR)[:, :, ::-1] / np.float32(255)).astype(np.float64)
        return 16 + 65.481 * rgb[..., 0] + 128.553 * rgb[..., 1] + 24.966 * rgb[..., 2]
    return 10 * np.log10(255.0 ** 2 / np.mean((y(sr_path) - y(hr_path)) ** 2))


@pytest.fixture
def hr_dir(tiny_lfw, tmp_path):
    """The ground truth as a plain folder: the 24 faces of tiny_lfw's pairs, as JPEG files."""
    out = tmp_path / "gt"
    for p in pairs_txt_images(tiny_lfw):
        dest = out / p.relative_to(tiny_lfw / "aligned-112x96")
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(p, dest)
    return out


@pytest.fixture
def noisy(hr_dir, tmp_path):
    """SR images (PNG) that are the HR faces plus noise: every pair has a finite PSNR."""
    out, rng = tmp_path / "noisy", np.random.default_rng(1)
    for p in sorted(hr_dir.rglob("*.jpg")):
        img = cv2.imread(str(p), cv2.IMREAD_COLOR).astype(np.float64)
        dest = (out / p.relative_to(hr_dir)).with_suffix(".png")
        dest.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(dest), np.clip(np.rint(img + rng.normal(0, 6, img.shape)), 0, 255).astype(np.uint8))
    return out


def score(sr, hr, tmp_path, *extra):
    return cli("score", "--sr", sr, "--hr", hr, "--store", tmp_path / "r.sqlite", "--out", tmp_path / "out",
               "--cache-dir", "", "--quiet", *extra)


def test_free_form_score_equals_fhbench_run(tiny_lfw, hr_dir, tmp_path):
    lr = tmp_path / "lr"
    assert cli("degrade", "--protocol", "lfw-10fold", "--scale", 4, "--out", lr, "--data-root", tiny_lfw,
               "--cache-dir", "").exit_code == 0
    sr = sr_folder(lr, tmp_path / "mymodel")
    res = score(sr, hr_dir, tmp_path, "--aligned", "sphereface-112x96")
    assert res.exit_code == 0, res.output
    res = cli("run", "--model", "test_degrade_score:quantised_bicubic", "--name", "qbic", "--protocol",
              "lfw-10fold", "--scale", 4, "--data-root", tiny_lfw, "--store", tmp_path / "r.sqlite",
              "--cache-dir", "", "--quiet")
    assert res.exit_code == 0, res.output
    st = ResultStore(tmp_path / "r.sqlite")
    (free,), (run,) = st.runs(protocol="folder:gt"), st.runs(model="qbic")
    assert (free.model, free.level) == ("mymodel", "given")
    a, b = st.arrays(free.id), st.arrays(run.id)
    # the run's arrays are in pairs.txt order, the free-form score's in key order: map by path
    order = [str(p.relative_to(tiny_lfw / "aligned-112x96").with_suffix("")) for p in pairs_txt_images(tiny_lfw)]
    pairs = json.loads((tmp_path / "out" / "pairs.json").read_text())["pairs"]
    at = [[q["key"] for q in pairs].index(k) for k in order]
    for key in ("psnr", "ssim", "ids", "idd", "fr_loss"):
        np.testing.assert_array_equal(a[key][at], b[key], err_msg=key)
        assert free.metrics[key] == pytest.approx(run.metrics[key], rel=1e-12), key


def test_pairs_by_relative_path_and_counts_missing_files(hr_dir, noisy, tmp_path):
    gone = sorted(noisy.rglob("*.png"))[5]  # a gap: a sorted-names pairing would shift every later pair
    gone.unlink()
    res = score(noisy, hr_dir, tmp_path)
    assert res.exit_code == 2 and "lacks 1 of 24 images" in res.output and "--allow-missing" in res.output
    assert rows(tmp_path / "r.sqlite") == 0 and not (tmp_path / "out").exists()
    res = score(noisy, hr_dir, tmp_path, "--allow-missing", "--aligned", "sphereface-112x96")
    assert res.exit_code == 0, res.output
    assert "1 of 24 HR images have no SR file" in res.output
    with open(tmp_path / "out" / "per_image.csv") as f:
        table = list(csv.DictReader(f))
    assert len(table) == 24
    expect = {}
    for row in table:
        if row["sr_file"]:
            expect[row["key"]] = psnr_y_oracle(noisy / row["sr_file"], hr_dir / row["hr_file"])
            assert float(row["psnr"]) == pytest.approx(expect[row["key"]], abs=1e-9)
            assert row["hr_file"] == row["key"] + ".jpg" and row["sr_file"] == row["key"] + ".png"
        else:
            assert (row["status"], row["psnr"], row["ids[sface]"]) == ("missing", "", "")
            assert noisy / (row["key"] + ".png") == gone
    (run,) = ResultStore(tmp_path / "r.sqlite").runs()
    assert run.metrics["psnr"] == pytest.approx(np.mean(list(expect.values())), abs=1e-9)  # over the 23 scored
    assert (run.metrics["n_scored"], run.metrics["n_missing"]) == (23, 1)
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())["evaluators"]["sface"]
    assert summary["metrics"]["ids"]["n_scored"] == 23 and summary["metrics"]["ids"]["n_missing"] == 1
    conv = summary["conventions"]
    assert conv["psnr_ssim"]["name"] == "fhbench" and conv["evaluator"]["weights_sha256"]
    assert "sphereface-112x96" in conv["alignment"]
    board = cli("leaderboard", "--store", tmp_path / "r.sqlite").output
    assert "folder:gt, given SR images" in board and "1 of 24 SR files missing" in board
    res = cli("report", "-o", tmp_path / "report.html", "--store", tmp_path / "r.sqlite")
    assert res.exit_code == 0 and "folder:gt" in (tmp_path / "report.html").read_text(), res.output


def _grey(p):
    cv2.imwrite(str(p), np.zeros((112, 96), np.uint8))


def _rgba(p):
    cv2.imwrite(str(p), np.zeros((112, 96, 4), np.uint8))


def _small(p):
    cv2.imwrite(str(p), np.zeros((110, 96, 3), np.uint8))


def _deep(p):
    cv2.imwrite(str(p), np.zeros((112, 96, 3), np.uint16))


@pytest.mark.parametrize("spoil, says", [
    (lambda sr, hr: (sr / "stray.png").write_bytes(next(hr.rglob("*.jpg")).read_bytes()),
     "holds 1 image(s) with no ground truth in --hr"),
    (lambda sr, hr: _grey(next(sr.rglob("*.png"))), "is grey-scale"),
    (lambda sr, hr: _rgba(next(sr.rglob("*.png"))), "alpha channel (RGBA)"),
    (lambda sr, hr: _small(next(sr.rglob("*.png"))), "is 110x96, its HR image"),
    (lambda sr, hr: _deep(next(sr.rglob("*.png"))), "uint16 pixels"),
    (lambda sr, hr: next(sr.rglob("*.png")).write_bytes(b"not a png"), "unreadable"),
    (lambda sr, hr: next(hr.rglob("*.jpg")).write_bytes(b""), "unreadable"),
    (lambda sr, hr: shutil.copyfile(next(sr.rglob("*.png")), next(sr.rglob("*.png")).with_suffix(".jpg")),
     "two images of one name"),
    (lambda sr, hr: [p.unlink() for p in list(sr.rglob("*.png"))], "holds no images"),
])
def test_bad_folders_are_one_line_naming_the_file_and_nothing_is_stored(hr_dir, noisy, tmp_path, spoil, says):
    spoil(noisy, hr_dir)
    res = score(noisy, hr_dir, tmp_path, "--aligned", "sphereface-112x96")
    assert res.exit_code == 2 and says in res.output, res.output
    assert len(res.output.strip().splitlines()) == 1
    assert rows(tmp_path / "r.sqlite") == 0 and not (tmp_path / "out").exists()


@pytest.mark.parametrize("labels, says", [
    ("Nobody/Nobody_0001.jpg Nobody\n", "names 'Nobody/Nobody_0001.jpg', which is not an image of --hr"),
    ("FIRST one\n", "gives no identity for 23 HR image(s)"),
    ("just-one-field\n", "expected '<relative path> <identity>'"),
])
def test_bad_labels_are_one_line(hr_dir, noisy, tmp_path, labels, says):
    first = sorted(hr_dir.rglob("*.jpg"))[0].relative_to(hr_dir).with_suffix("")  # a key without its suffix
    (tmp_path / "labels.txt").write_text(labels.replace("FIRST", str(first)))
    res = score(noisy, hr_dir, tmp_path, "--labels", tmp_path / "labels.txt", "--aligned", "sphereface-112x96")
    assert res.exit_code == 2 and says in res.output and len(res.output.strip().splitlines()) == 1, res.output
    assert rows(tmp_path / "r.sqlite") == 0


def test_one_set_holds_like_for_like_rows(hr_dir, noisy, tmp_path):
    assert score(noisy, hr_dir, tmp_path, "--aligned", "sphereface-112x96").exit_code == 0
    res = score(noisy, hr_dir, tmp_path, "--aligned", "sphereface-112x96", "--convention", "basicsr", "--name", "b")
    assert res.exit_code == 2 and "scored with convention 'fhbench', not 'basicsr'" in res.output, res.output
    next(hr_dir.rglob("*.jpg")).write_bytes(cv2.imencode(".jpg", np.full((112, 96, 3), 9, np.uint8))[1].tobytes())
    res = score(noisy, hr_dir, tmp_path, "--aligned", "sphereface-112x96", "--name", "c")
    assert res.exit_code == 2 and "was scored against other HR images" in res.output, res.output
    assert rows(tmp_path / "r.sqlite") == 1


def test_labels_add_rank1_and_verification(hr_dir, noisy, tmp_path):
    lines = [f"{p.relative_to(hr_dir)}\t{p.parent.name}" for p in sorted(hr_dir.rglob("*.jpg"))]
    (tmp_path / "labels.txt").write_text("# path identity\n" + "\n".join(lines) + "\n")
    res = score(noisy, hr_dir, tmp_path, "--labels", tmp_path / "labels.txt", "--aligned", "sphereface-112x96")
    assert res.exit_code == 0, res.output
    (run,) = ResultStore(tmp_path / "r.sqlite").runs()
    assert 0 <= run.metrics["rank1"] <= 1 and 0 <= run.metrics["eer"] <= 1 and 0 <= run.metrics["auc"] <= 1
    assert run.metrics["verification_n_pairs"] == 24 * 23 // 2
    if LFW_ALIGNED.is_dir():  # real faces (tiny_lfw copies them): SFace tells people apart;
        assert run.metrics["auc"] > 0.5  # synthetic ones carry no identity, so no such claim


def test_each_evaluator_gets_its_own_row_with_the_whole_manifest(hr_dir, noisy, tmp_path):
    res = score(noisy, hr_dir, tmp_path, "--aligned", "sphereface-112x96", "--metrics", "psnr,ids",
                "--evaluator", "sface", "--evaluator", "arcface-mbf")
    assert res.exit_code == 0, res.output
    runs = ResultStore(tmp_path / "r.sqlite").runs()
    assert sorted(r.evaluator for r in runs) == ["arcface-mbf", "sface"]
    for r in runs:
        assert r.manifest["data"] == {"n_images": 24, "hr_size": [112, 96]}
        assert r.manifest["evaluator"]["name"] == r.evaluator


def test_the_backend_is_passed_to_the_evaluator_and_recorded(hr_dir, noisy, tmp_path):
    res = score(noisy, hr_dir, tmp_path, "--aligned", "sphereface-112x96", "--metrics", "ids",
                "--backend", "onnxruntime-fast")
    assert res.exit_code == 0, res.output
    (run,) = ResultStore(tmp_path / "r.sqlite").runs()
    assert run.manifest["evaluator"]["backend"] == "onnxruntime-fast"


def test_mtcnn_alignment_is_stated(hr_dir, noisy, tmp_path):
    res = score(noisy, hr_dir, tmp_path, "--metrics", "psnr,ids")
    assert res.exit_code == 0, res.output
    pairs = json.loads((tmp_path / "out" / "pairs.json").read_text())
    assert "MTCNN" in pairs["conventions"]["sface"]["alignment"]
    with open(tmp_path / "out" / "per_image.csv") as f:
        table = list(csv.DictReader(f))
    assert {r["alignment"] for r in table} <= {"mtcnn", "mtcnn-no-face-centre-crop"}
    assert set(table[0]) >= {"psnr", "ids[sface]"} and "ssim" not in table[0]


@pytest.mark.parametrize("args, says", [
    (["--protocol", "lfw-10fold"], "not both"),
    (["--convention", "matlab"], "Invalid value for '--convention'"),
    (["--metrics", "rank1"], "need --labels FILE"),
    (["--metrics", "psnr,bogus"], "'bogus' is not a per-image"),
    (["--metrics", "lmd_2d106"], "need --aligned faces"),
    (["--aligned"], "is 112x96: FFHQ-aligned faces are square"),
    (["--crop-border", "50", "--aligned", "sphereface-112x96"], "too small for --crop-border 50 and SSIM"),
])
def test_bad_options_are_refused(hr_dir, noisy, tmp_path, args, says):
    res = score(noisy, hr_dir, tmp_path, *args)
    assert res.exit_code == 2 and says in res.output, res.output
    assert rows(tmp_path / "r.sqlite") == 0
