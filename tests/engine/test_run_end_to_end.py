"""The whole engine through the CLI on a miniature LFW root the test builds itself:
degrade -> SR -> embed -> metrics -> store -> leaderboard, and the bad-input paths."""
import json
import sqlite3
import textwrap

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from benchmark.cli import main
from benchmark.faces.images import read_batch
from benchmark.contracts.degradation import make_degradation
from benchmark.faces.resize import upsample_bicubic
from benchmark.evaluators import create_evaluator
from benchmark.metrics.image import psnr_y
from conftest import pairs_txt_images

N_PEOPLE, PER_PERSON = 8, 3


def _smooth_face(rng):
    """A smooth random 112x96 RGB image (low-frequency noise), uint8."""
    small = rng.random((14, 12, 3))
    return np.clip(cv2.resize(small, (96, 112), interpolation=cv2.INTER_CUBIC) * 255, 0, 255).astype(np.uint8)


@pytest.fixture
def mini_lfw(tmp_path):
    """pairs.txt (10 folds x 2 matched + 2 mismatched) beside aligned-112x96/<Name>/<Name>_NNNN.jpg."""
    rng = np.random.default_rng(0)
    root = tmp_path / "lfw"
    names = [f"Person_{chr(65 + i)}" for i in range(N_PEOPLE)]
    for name in names:
        (root / "aligned-112x96" / name).mkdir(parents=True)
        for k in range(1, PER_PERSON + 1):
            cv2.imwrite(str(root / "aligned-112x96" / name / f"{name}_{k:04d}.png"), _smooth_face(rng))
    lines = ["10\t2"]
    for fold in range(10):
        for j in range(2):
            a = names[(fold + j) % N_PEOPLE]
            lines.append(f"{a}\t1\t{2 + j}")
        for j in range(2):
            a, b = names[(fold + j) % N_PEOPLE], names[(fold + j + 3) % N_PEOPLE]
            lines.append(f"{a}\t{1 + j}\t{b}\t3")
    (root / "pairs.txt").write_text("\n".join(lines) + "\n")
    return root


@pytest.fixture
def mini_lfw_jpg_names(mini_lfw):
    """LFW names its files .jpg; keep PNG bytes (lossless) under the .jpg names."""
    for p in (mini_lfw / "aligned-112x96").rglob("*.png"):
        p.rename(p.with_suffix(".jpg"))
    return mini_lfw


def cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def _rows(store):
    if not store.exists():
        return []
    with sqlite3.connect(store) as con:
        return con.execute("SELECT model, protocol, level, evaluator, metrics, manifest FROM runs").fetchall()


def run_args(root, store, cache, *extra):
    return ["run", "--protocol", "lfw-10fold", "--data-root", root, "--store", store,
            "--cache-dir", cache, "--quiet", *extra]


def test_hr_and_bicubic_runs_store_rows_and_rank(mini_lfw_jpg_names, tmp_path):
    root, store, cache = mini_lfw_jpg_names, tmp_path / "r.sqlite", tmp_path / "cache"
    res = cli(*run_args(root, store, cache, "--model", "hr"))
    assert res.exit_code == 0, res.output
    res = cli(*run_args(root, store, cache, "--model", "bicubic", "--scale", "8"))
    assert res.exit_code == 0, res.output
    rows = {r[0]: r for r in _rows(store)}
    assert set(rows) == {"hr", "bicubic"}
    assert rows["hr"][2] == "hr" and rows["bicubic"][2] == "x8"
    hr_m, bic_m = json.loads(rows["hr"][4]), json.loads(rows["bicubic"][4])
    assert hr_m["psnr"] == float("inf") and hr_m["psnr_n_inf"] == len(set(pairs_txt_images(root)))
    assert hr_m["ssim"] == 1.0 and hr_m["fr_loss"] == pytest.approx(0.0, abs=1e-6)
    assert np.isfinite(bic_m["psnr"]) and bic_m["ssim"] < 1

    # Independent of the runner: degrade, upsample, and score the same images by hand.
    paths = pairs_txt_images(root)
    hr = read_batch(paths)
    lr = make_degradation("bicubic", scale=8)(hr)
    sr = np.clip(upsample_bicubic(lr, (112, 96)), 0, 1)
    assert bic_m["psnr"] == pytest.approx(psnr_y(sr, hr).mean(), rel=1e-9)
    ev = create_evaluator("sface")
    e_sr = ev.embed(sr)
    e_hr = ev.embed(hr)
    assert bic_m["fr_loss"] == pytest.approx(np.linalg.norm(e_sr - e_hr, axis=1).mean(), rel=1e-4)

    manifest = json.loads(rows["bicubic"][5])
    assert manifest["evaluator"]["weights_sha256"] and manifest["data"]["sha256"]
    assert manifest["degradation"]["name"] == "bicubic" and manifest["scale"] == 8
    assert manifest["environment"]["packages"]["torch"] and manifest["seed"] == 0
    assert manifest["data"]["n_images"] == len(paths)

    board = cli("leaderboard", "--store", store)
    assert board.exit_code == 0
    assert "hr (no degradation)" in board.output and "| bicubic (no SR) |" in board.output
    latex = cli("leaderboard", "--store", store, "--format", "latex")
    assert r"\begin{tabular}" in latex.output


@pytest.fixture
def user_models(tmp_path, monkeypatch):
    (tmp_path / "usermodels.py").write_text(textwrap.dedent("""
        import torch
        def nan_model(lr):
            out = torch.nn.functional.interpolate(lr, scale_factor=8, mode="bilinear")
            out[3, 0, 5, 5] = float("nan")
            return out
        def small_model(lr):
            return torch.nn.functional.interpolate(lr, scale_factor=4, mode="bilinear")
        def bright_model(lr):
            return torch.nn.functional.interpolate(lr, scale_factor=8, mode="bilinear") + 0.5
    """))
    monkeypatch.syspath_prepend(str(tmp_path))


@pytest.mark.parametrize("model,message", [
    ("usermodels:nan_model", "NaN or inf for image 3"),
    ("usermodels:small_model", "returned shape"),
    ("usermodels:bright_model", "outside [0, 1]"),
    ("bicubik", "unknown model 'bicubik'; did you mean bicubic"),
])
def test_bad_models_fail_cleanly_and_write_nothing(mini_lfw_jpg_names, tmp_path, user_models, model, message):
    store = tmp_path / "r.sqlite"
    res = cli(*run_args(mini_lfw_jpg_names, store, "", "--model", model, "--scale", "8"))
    assert res.exit_code == 2
    assert message in res.output and res.output.startswith("fhbench: error:")
    assert len(res.output.strip().splitlines()) == 1
    assert _rows(store) == []


def test_clamp_flag_accepts_out_of_range_model(mini_lfw_jpg_names, tmp_path, user_models):
    store = tmp_path / "r.sqlite"
    res = cli(*run_args(mini_lfw_jpg_names, store, "", "--model", "usermodels:bright_model", "--scale", "8", "--clamp"))
    assert res.exit_code == 0, res.output
    (row,) = _rows(store)
    assert json.loads(row[5])["model"]["clamp"] is True


@pytest.mark.parametrize("args,message", [
    (["--protocol", "lfw-10fld"], "unknown protocol 'lfw-10fld'"),
    (["--evaluator", "sfac"], "unknown evaluator 'sfac'"),
    (["--scale", "3"], "not 3"),
])
def test_unknown_names_and_scales(mini_lfw_jpg_names, tmp_path, args, message):
    base = ["run", "--model", "bicubic", "--data-root", mini_lfw_jpg_names, "--store", tmp_path / "r.sqlite",
            "--cache-dir", "", "--quiet"]
    if "--protocol" not in args:
        base += ["--protocol", "lfw-10fold"]
    res = cli(*base, *args)
    assert res.exit_code == 2 and message in res.output
    assert _rows(tmp_path / "r.sqlite") == []


def test_corrupt_image_and_bad_pairs_are_named(mini_lfw_jpg_names, tmp_path):
    root = mini_lfw_jpg_names
    victim = root / "aligned-112x96" / "Person_B" / "Person_B_0002.jpg"
    victim.write_bytes(b"\xff\xd8 not really a jpeg")
    res = cli(*run_args(root, tmp_path / "r.sqlite", "", "--model", "bicubic"))
    assert res.exit_code == 2 and "Person_B_0002.jpg" in res.output and "corrupt" in res.output
    victim.unlink()
    res = cli(*run_args(root, tmp_path / "r.sqlite", "", "--model", "bicubic"))
    assert res.exit_code == 2 and "pairs.txt:" in res.output and "Person_B_0002.jpg" in res.output
    assert _rows(tmp_path / "r.sqlite") == []


def test_interrupted_run_writes_nothing_and_resumes_from_cache(mini_lfw_jpg_names, tmp_path, monkeypatch):
    from benchmark.engine import runner
    from benchmark.evaluators.sface import SFace

    store, cache = tmp_path / "r.sqlite", tmp_path / "cache"
    calls = {"n": 0}
    real_embed = SFace.embed

    def flaky_embed(self, images, frame=None):
        calls["n"] += 1
        if calls["n"] == 3:  # chunk 0: HR + SR embedded and cached; killed in chunk 1
            raise KeyboardInterrupt
        return real_embed(self, images, frame)

    monkeypatch.setattr(SFace, "embed", flaky_embed)
    # chunks are whole SR batches: 2 batches of 5 per chunk
    opts = runner.RunOptions(model="bicubic", protocol="lfw-10fold", scale=4, data_root=str(mini_lfw_jpg_names),
                             store=str(store), cache_dir=str(cache), chunk_size=10, batch_size=5, progress=False)
    with pytest.raises(KeyboardInterrupt):
        runner.run(opts)
    assert _rows(store) == []
    calls["n"] = -100  # never interrupt again; count the embeddings the resumed run needs
    runner.run(opts)
    n_chunks = -(-len(pairs_txt_images(mini_lfw_jpg_names)) // 10)
    # chunk 0 is fully cached: only the HR and SR embeddings of the other chunks remain
    assert calls["n"] + 100 == 2 * (n_chunks - 1)
    assert len(_rows(store)) == 1
    # A third run is all cache hits: no embedding at all.
    calls["n"] = -100
    runner.run(opts)
    assert calls["n"] == -100
