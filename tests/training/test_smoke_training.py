"""Smoke runs of the reference trainers on real faces, then their checkpoints through `fhbench run`.

Each trainer trains with its smoke config (baselines/configs/smoke/) on 8 real aligned LFW
faces (4 people x 2, laid out as <identity>/<image> in tmp_path) through `fhbench train`;
the logged loss must fall. The weights it writes are then evaluated end to end with
`fhbench run --model NAME --weights ... --protocol lfw-10fold` on the miniature LFW root,
and the stored PSNR is checked against the same weights applied by hand.
"""
import json
import sqlite3
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from benchmark.cli import main
from benchmark.faces.images import read_batch
from benchmark.contracts.degradation import make_degradation
from benchmark.contracts.evaluator import sha256_file
from benchmark.metrics.image import psnr_y
from conftest import pairs_txt_images

CONFIGS = Path(__file__).resolve().parents[2] / "baselines" / "configs" / "smoke"


def cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def _losses(log: Path):
    """(stage, record) of each logged step, in order."""
    rows = [json.loads(line) for line in log.read_text().splitlines()]
    return [(r["stage"], r) for r in rows if "loss" in r]


@pytest.mark.parametrize("name", ["srresnet", "srresnet-fr"])
def test_srresnet_smoke_trains_and_evaluates(name, train_faces, tiny_lfw, tmp_path):
    out = tmp_path / "runs"
    res = cli("train", name, "--config", CONFIGS / f"{name}.yaml", "--data-root", train_faces, "--out", out,
              "--device", "cpu")
    assert res.exit_code == 0, res.output
    assert "(complete)" in res.output
    weights = out / name / f"{name}-x4.pt"

    losses = _losses(out / name / "scalars.jsonl")
    mse = [r["loss"] for stage, r in losses if stage == "mse"]
    assert len(mse) == 20 and np.mean(mse[-3:]) < 0.5 * mse[0]     # the same 8 faces at every step
    if name == "srresnet-fr":
        fr = [r for stage, r in losses if stage == "fr-finetune"]
        assert len(fr) == 6
        assert fr[0]["loss"] == pytest.approx(2 * fr[0]["mse"], rel=1e-5)   # balanced 50/50
        assert fr[-1]["loss"] < fr[0]["loss"] and fr[-1]["fr"] < fr[0]["fr"]
        ckpt = torch.load(weights, weights_only=True)
        assert ckpt["identity_network"]["name"] == "sface"

    store = tmp_path / "r.sqlite"
    res = cli("run", "--model", name, "--weights", weights, "--protocol", "lfw-10fold", "--scale", 4,
              "--data-root", tiny_lfw, "--store", store, "--cache-dir", "", "--quiet")
    assert res.exit_code == 0, res.output
    with sqlite3.connect(store) as con:
        (model, scale, metrics, manifest), = con.execute("SELECT model, scale, metrics, manifest FROM runs")
    metrics, manifest = json.loads(metrics), json.loads(manifest)
    assert (model, scale) == (name, 4)
    assert manifest["model"]["weights_sha256"] == sha256_file(weights)
    assert manifest["model"]["trained"]["model"] == name and manifest["model"]["trained"]["complete"]

    # the same weights applied by hand: MATLAB-bicubic x4 LR -> SRResNet -> clamp -> PSNR on Y
    from baselines.srresnet import SRResNet

    ckpt = torch.load(weights, weights_only=True)
    net = SRResNet(4, **ckpt["model_options"])
    net.load_state_dict(ckpt["model_state"])
    hr = read_batch(pairs_txt_images(tiny_lfw))
    lr = make_degradation("bicubic", scale=4)(hr)
    with torch.no_grad():
        sr = net.eval()(torch.from_numpy(np.asarray(lr, np.float32))).clamp(0, 1).numpy()
    assert metrics["psnr"] == pytest.approx(psnr_y(sr, hr).mean(), rel=1e-4)


def test_csrip_smoke_trains_and_evaluates(train_faces, tiny_lfw, tmp_path):
    """Priors, then the cascade; the weights evaluated on lfw-psnr (192x192 HR, 24x24 LR)."""
    out = tmp_path / "runs"
    res = cli("train", "csrip", "--config", CONFIGS / "csrip.yaml", "--data-root", train_faces, "--out", out,
              "--device", "cpu")
    assert res.exit_code == 0, res.output
    weights = out / "csrip" / "csrip-x8.pt"
    losses = _losses(out / "csrip" / "scalars.jsonl")
    priors = [r["ce"] for stage, r in losses if stage == "priors"]
    cascade = [r for stage, r in losses if stage == "cascade"]
    assert len(priors) == 5 and priors[-1] < priors[0]
    assert len(cascade) == 6 and cascade[-1]["ssim"] < 0.9 * cascade[0]["ssim"]
    assert cascade[-1]["loss"] == pytest.approx(cascade[-1]["ssim"] + 0.001 * cascade[-1]["identity"], rel=1e-5)

    store = tmp_path / "r.sqlite"
    res = cli("run", "--model", "csrip", "--weights", weights, "--protocol", "lfw-psnr", "--scale", 8,
              "--data-root", tiny_lfw, "--store", store, "--cache-dir", "", "--quiet")
    assert res.exit_code == 0, res.output
    with sqlite3.connect(store) as con:
        (model, scale, metrics, manifest), = con.execute("SELECT model, scale, metrics, manifest FROM runs")
    metrics, manifest = json.loads(metrics), json.loads(manifest)
    assert (model, scale) == ("csrip", 8)
    assert manifest["model"]["weights_sha256"] == sha256_file(weights)

    # by hand: 112x96 padded 8 px left and right to the 112x112 square, MATLAB-bicubic to 192x192,
    # LR = MATLAB-bicubic 24x24 (8-bit), SR = the cascade's 8x output; PSNR on Y, mean over images
    from baselines.csrip import CSRIP, CSRIPOptions
    from benchmark.faces.resize import imresize

    ckpt = torch.load(weights, weights_only=True)
    net = CSRIP(CSRIPOptions(**ckpt["model_options"]), 8)
    net.load_state_dict(ckpt["model_state"])
    faces = read_batch(sorted((tiny_lfw / "aligned-112x96").rglob("*.jpg")))
    hr = np.clip(imresize(np.pad(faces, ((0, 0), (0, 0), (0, 0), (8, 8))), output_size=(192, 192)), 0, 1)
    lr = make_degradation("bicubic", scale=8)(hr)
    assert lr.shape[-2:] == (24, 24)
    with torch.no_grad():
        sr = net.eval()(torch.from_numpy(np.asarray(lr, np.float32))).numpy()
    assert metrics["psnr"] == pytest.approx(psnr_y(sr, hr).mean(), rel=1e-4)
