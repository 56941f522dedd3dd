"""Smoke runs of the ipunet and cface trainers on real faces, then their checkpoints through
`fhbench run`.

Each trainer runs its smoke config (baselines/configs/smoke/, SFace as the identity network)
through `fhbench train` on 8 real aligned LFW faces (4 people x 2, <identity>/<image> in
tmp_path); the logged loss must fall. The weights are then evaluated end to end with
`fhbench run --model NAME --weights ...` on the miniature LFW root (ipunet on lfw-10fold
rendered at 128x128, its training size), and the stored PSNR is checked against the same
weights applied by hand to the same degraded faces.
"""
import json
import sqlite3
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from baselines import cface, ipunet
from benchmark.training.trainer import read_checkpoint
from benchmark.cli import main
from benchmark.faces.images import read_batch
from benchmark.contracts.degradation import make_degradation
from benchmark.faces.resize import upsample_bicubic
from benchmark.faces.frames import fit_to_hr_size
from benchmark.metrics.image import psnr_y
from conftest import pairs_txt_images

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = ROOT / "baselines" / "configs" / "smoke"


def cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def _log(path: Path):
    return [json.loads(line) for line in path.read_text().splitlines() if "loss" in json.loads(line)]


def _stored(store: Path):
    with sqlite3.connect(store) as con:
        rows = con.execute("SELECT model, scale, metrics, manifest FROM runs").fetchall()
    assert len(rows) == 1
    return rows[0][0], rows[0][1], json.loads(rows[0][2]), json.loads(rows[0][3])


def test_ipunet_smoke_trains_and_evaluates_at_128(train_faces, tiny_lfw, tmp_path, monkeypatch):
    out = tmp_path / "runs"
    res = cli("train", "ipunet", "--config", CONFIGS / "ipunet.yaml", "--data-root", train_faces, "--out", out,
              "--device", "cpu")
    assert res.exit_code == 0, res.output
    log = _log(out / "ipunet" / "scalars.jsonl")
    assert len(log) == 10
    loss = [r["loss"] for r in log]
    # batches of 4 of the 8 faces: steps 1-2 and 9-10 each cover all 8 (one epoch)
    assert np.mean(loss[-2:]) < 0.5 * np.mean(loss[:2]), loss
    assert all(r["loss"] == pytest.approx(r["embedding"] + 5 * r["pixel"], rel=1e-5) for r in log)
    weights = out / "ipunet" / "ipunet-x1.pt"
    assert read_checkpoint(weights, "ipunet")["identity_network"]["name"] == "sface"

    # lfw-10fold rendered at 128x128 (pad 112x96 to 112x112, resize), as ipunet was trained
    protocols = tmp_path / "protocols"
    protocols.mkdir()
    spec = (ROOT / "protocols" / "lfw-10fold.yaml").read_text().replace("name: lfw-10fold", "name: lfw-10fold-128")
    (protocols / "lfw-10fold-128.yaml").write_text(spec + "hr_size: [128, 128]\n")
    monkeypatch.setenv("FHBENCH_PROTOCOLS", str(protocols))
    store = tmp_path / "r.sqlite"
    base = ["run", "--model", "ipunet", "--weights", weights, "--data-root", tiny_lfw, "--store", store,
            "--cache-dir", "", "--quiet"]
    res = cli(*base, "--protocol", "lfw-10fold-128", "--scale", "8")
    assert res.exit_code == 0, res.output
    model, scale, metrics, manifest = _stored(store)
    assert (model, scale) == ("ipunet", 8) and np.isfinite(metrics["accuracy"])
    assert manifest["model"]["wants_upsampled_input"] and manifest["data"]["hr_size"] == [128, 128]

    # by hand: render, degrade, upsample, the trained U-Net in eval mode, clamp, PSNR per image
    hr = fit_to_hr_size(read_batch(pairs_txt_images(tiny_lfw)), (128, 128))
    x = np.clip(upsample_bicubic(make_degradation("bicubic", scale=8)(hr), (128, 128)), 0, 1)  # input in [0, 1]
    ckpt = read_checkpoint(weights, "ipunet")
    net = ipunet.build(ipunet.IPUNetOptions(**ckpt["model_options"]), 1)
    net.load_state_dict(ckpt["model_state"])
    with torch.no_grad():
        sr = net.eval()(torch.from_numpy(x)).clamp(0, 1).numpy()
    assert metrics["psnr"] == pytest.approx(psnr_y(sr, hr).mean(), abs=1e-3)


def test_cface_smoke_trains_all_four_stages_and_evaluates(train_faces, tiny_lfw, tmp_path, monkeypatch):
    monkeypatch.setenv("FHBENCH_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "runs"
    res = cli("train", "cface", "--config", CONFIGS / "cface.yaml", "--data-root", train_faces, "--out", out,
              "--device", "cpu")
    assert res.exit_code == 0, res.output
    log = _log(out / "cface" / "scalars.jsonl")
    assert [r["stage"] for r in log] == ["mse"] * 20 + ["cface"] * 2 + ["recognition"] * 2 + ["cface_joint"] * 3
    mse = [r["loss"] for r in log if r["stage"] == "mse"]
    assert np.mean(mse[-2:]) < 0.5 * np.mean(mse[:2]), mse          # steps 1-2 and 19-20: all 8 faces
    last = log[-1]
    assert all(np.isfinite(last[k])
               for k in ("perceptual", "adversarial", "si", "compare", "d_real", "d_fake", "triplet"))
    assert 0 < last["si"] <= 2 and last["compare"] >= 0                 # distances of unit vectors
    # every face has exactly one other image of its person: its compare face
    tables = list((tmp_path / "cache" / "compare-faces").glob("*.npz"))
    assert len(tables) == 1
    table = np.load(tables[0])["neighbours"]
    names = sorted(p.relative_to(train_faces).as_posix() for p in train_faces.rglob("*.jpg"))
    for i, row in enumerate(table):
        assert row[1] == row[2] == -1 and names[row[0]].split("/")[0] == names[i].split("/")[0] and row[0] != i

    weights = out / "cface" / "cface-x4.pt"
    store = tmp_path / "r.sqlite"
    res = cli("run", "--model", "cface", "--weights", weights, "--protocol", "lfw-10fold", "--scale", "4",
              "--data-root", tiny_lfw, "--store", store, "--cache-dir", "", "--quiet")
    assert res.exit_code == 0, res.output
    model, scale, metrics, manifest = _stored(store)
    assert (model, scale) == ("cface", 4) and np.isfinite(metrics["accuracy"])
    assert manifest["model"]["trained"]["identity_network"]["name"] == "sface"

    hr = read_batch(pairs_txt_images(tiny_lfw))
    lr = make_degradation("bicubic", scale=4)(hr)
    ckpt = read_checkpoint(weights, "cface")
    gen = cface.build(cface.CFaceOptions(**ckpt["model_options"]), 4).generator
    gen.load_state_dict({k[len("generator."):]: v for k, v in ckpt["model_state"].items()
                         if k.startswith("generator.")})
    with torch.no_grad():
        sr = gen.eval()(torch.from_numpy(lr)).clamp(0, 1).numpy()
    assert metrics["psnr"] == pytest.approx(psnr_y(sr, hr).mean(), abs=1e-3)
