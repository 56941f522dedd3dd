"""``fhbench degrade`` / ``score`` for a protocol with fixed LR sizes (``lr_sizes``): every size
in one go, as ``fhbench run`` runs it; one subfolder per size; the scored row (level
``sizes``) holds exactly the figures ``fhbench run`` stores for the same model."""
import json

import cv2
import numpy as np
import pytest
import torch
import yaml
from click.testing import CliRunner

from benchmark.cli import main
from benchmark.contracts.degradation import make_degradation
from benchmark.engine.store import ResultStore
from benchmark.faces.images import read_batch
from benchmark.faces.resize import upsample_bicubic

from conftest import pairs_txt_images

SIZES = [[14, 12], [28, 24]]


def cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def sized_bicubic(lr):
    """A model outside fhbench that takes any LR size: MATLAB bicubic up to 112x96, 8-bit levels."""
    x = lr.numpy() if hasattr(lr, "numpy") else np.asarray(lr)
    up = np.clip(upsample_bicubic(x, (112, 96)), 0, 1)
    return torch.from_numpy((np.rint(up.astype(np.float64) * 255) / 255).astype(np.float32))


@pytest.fixture
def toy_sizes(proto_dir):
    (proto_dir / "toy-sizes.yaml").write_text(yaml.safe_dump({
        "name": "toy-sizes", "summary": "toy", "dataset": "lfw", "degradation": "bicubic", "task": "pairs-10fold",
        "lr_sizes": SIZES, "metrics": ["accuracy@14x12", "accuracy@28x24", "psnr@14x12", "psnr@28x24"],
        "primary_metric": "accuracy@28x24"}))
    return "toy-sizes"


def test_lr_sizes_degrade_and_score_equal_run(tiny_lfw, tmp_path, toy_sizes):
    lr = tmp_path / "lr"
    res = cli("degrade", "--protocol", toy_sizes, "--out", lr, "--data-root", tiny_lfw, "--cache-dir", "")
    assert res.exit_code == 0, res.output
    manifest = json.loads((lr / "fhbench-degrade.json").read_text())
    assert manifest["level"] == "sizes" and manifest["scale"] is None
    assert {k: v["lr_size"] for k, v in manifest["levels"].items()} == {"14x12": [14, 12], "28x24": [28, 24]}
    images = pairs_txt_images(tiny_lfw)
    hr = read_batch(images)
    sr_dir = tmp_path / "sr"
    for h, w in SIZES:
        want = np.rint(make_degradation("bicubic", size=(h, w))(hr) * 255).astype(np.uint8)
        for img, p in zip(want, images):
            rel = p.relative_to(tiny_lfw / "aligned-112x96").with_suffix(".png")
            got = cv2.imread(str(lr / f"{h}x{w}" / rel), cv2.IMREAD_UNCHANGED)[:, :, ::-1].transpose(2, 0, 1)
            np.testing.assert_array_equal(got, img)
            sr = (sized_bicubic(got[None].astype(np.float32) / 255)[0].numpy() * 255).round().astype(np.uint8)
            (sr_dir / f"{h}x{w}" / rel).parent.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(sr_dir / f"{h}x{w}" / rel), sr.transpose(1, 2, 0)[:, :, ::-1])
    store = tmp_path / "r.sqlite"
    res = cli("score", "--sr", sr_dir, "--protocol", toy_sizes, "--degraded", lr, "--data-root", tiny_lfw,
              "--store", store, "--cache-dir", "", "--name", "mine")
    assert res.exit_code == 0, res.output
    res = cli("run", "--model", "test_degrade_score_sizes:sized_bicubic", "--name", "ref2",
              "--protocol", toy_sizes, "--data-root", tiny_lfw, "--store", store, "--cache-dir", "", "--quiet")
    assert res.exit_code == 0, res.output
    st = ResultStore(store)
    (mine,), (ref,) = st.runs(model="mine"), st.runs(model="ref2")
    assert mine.level == ref.level == "sizes"
    a, b = st.arrays(mine.id), st.arrays(ref.id)
    for key in ("psnr@14x12", "psnr@28x24", "ids@14x12", "ssim@28x24", "pair_scores@14x12"):
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)
    for key in ("accuracy@14x12", "accuracy@28x24"):
        assert mine.metrics[key] == ref.metrics[key]


def test_lr_sizes_score_wants_one_subfolder_per_size(tiny_lfw, tmp_path, toy_sizes):
    sr = tmp_path / "flat"
    sr.mkdir()
    (sr / "Someone").mkdir()
    res = cli("score", "--sr", sr, "--protocol", toy_sizes, "--data-root", tiny_lfw, "--store", tmp_path / "r.sqlite",
              "--cache-dir", "")
    assert res.exit_code == 2 and "holds 'Someone', not one of the LR-size subfolders" in res.output, res.output
    res = cli("score", "--sr", sr, "--protocol", toy_sizes, "--scale", 4, "--data-root", tiny_lfw,
              "--store", tmp_path / "r.sqlite", "--cache-dir", "")
    assert res.exit_code == 2 and "leave out --scale" in res.output
    assert not (tmp_path / "r.sqlite").exists()
