"""A model's native frame is honoured by every protocol that does not pin its HR size (issue 12):
the design card's `fhbench run --model csrip --protocol lfw-blufr` renders the faces at the
model's 192x192 (the 112x96 crop padded to square, then resized) instead of refusing."""
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import torch
import yaml
from click.testing import CliRunner

from benchmark.engine import runner
from benchmark.contracts.model import SRAdapter
from benchmark.cli import main
from benchmark.faces.images import read_batch
from benchmark.contracts.degradation import make_degradation
from benchmark.errors import IncompatibleModelError
from benchmark.faces.frames import fit_to_hr_size
from benchmark.reporting.leaderboard import build_tables, format_tables
from benchmark.metrics.image import psnr_y
from benchmark.engine.store import ResultStore
from conftest import pairs_txt_images


class Native192(SRAdapter):
    """A stand-in for a trained C-SRIP: 24x24 -> 192x192 by pixel replication."""

    name = "native192"
    scale = 8
    output_size = (192, 192)
    input_size = (24, 24)

    def __init__(self, scale=None, weights=None, **_):
        pass

    def super_resolve(self, lr, keys):
        return torch.nn.functional.interpolate(lr, scale_factor=8.0, mode="nearest")


def options(root, tmp_path, protocol, model="test_native_frame:Native192"):
    return runner.RunOptions(model=model, protocol=protocol, scale=8, data_root=str(root),
                             store=str(tmp_path / "r.sqlite"), cache_dir=str(tmp_path / "cache"), progress=False)


def test_lfw_10fold_renders_faces_in_the_models_frame(tiny_lfw, tmp_path):
    result = runner.run(options(tiny_lfw, tmp_path, "lfw-10fold"))
    data = result["manifest"]["data"]
    assert tuple(data["hr_size"]) == (192, 192) and data["hr_size_from"] == "model"
    assert "+pad" in data["frame"]  # the SphereFace crop padded to square
    # oracle: the 112x96 faces padded to square and resized, degraded x8, replicated back
    hr = fit_to_hr_size(read_batch(pairs_txt_images(tiny_lfw)), (192, 192))
    lr = make_degradation("bicubic", scale=8)(hr)
    sr = lr.repeat(8, axis=2).repeat(8, axis=3)
    assert result["metrics"]["psnr"] == pytest.approx(psnr_y(sr, hr).mean(), abs=1e-9)
    # beside a row scored in the dataset's 112x96 frame, the leaderboard says so
    runner.run(options(tiny_lfw, tmp_path, "lfw-10fold", model="bicubic"))
    (table,) = build_tables(ResultStore(tmp_path / "r.sqlite"), protocol="lfw-10fold", scale=8)
    assert table.hr_sizes == {"native192": "192x192", "bicubic (no SR)": "112x96"}
    md = format_tables([table], "md")
    assert "HR frames differ: 112x96: bicubic (no SR); 192x192: native192" in md


def test_lfw_blufr_runs_the_design_cards_example(tiny_lfw, tmp_path):
    names = sorted(p.name for p in (tiny_lfw / "aligned-112x96").rglob("*.jpg"))
    labels = [sorted({n.rsplit("_", 1)[0] for n in names}).index(n.rsplit("_", 1)[0]) + 1 for n in names]
    image_list = np.empty((len(names), 1), dtype=object)
    image_list[:, 0] = names
    every = np.arange(1, len(names) + 1, dtype=np.float64).reshape(-1, 1)

    def cell(v):
        out = np.empty((10, 1), dtype=object)
        for t in range(10):
            out[t, 0] = v
        return out

    scipy.io.savemat(tiny_lfw / "blufr_lfw_config.mat", {
        "imageList": image_list, "labels": np.array(labels, np.float64).reshape(-1, 1),
        "testIndex": cell(every), "galIndex": cell(every[[0, 3, 6, 9]]),  # image 1 of the first 4 people
        "probIndex": cell(np.delete(every, [0, 3, 6, 9]))})             # the rest: 4 people unknown
    res = CliRunner().invoke(main, ["run", "--model", "test_native_frame:Native192", "--protocol", "lfw-blufr",
                                    "--scale", "8", "--data-root", str(tiny_lfw), "--store", str(tmp_path / "r.sqlite"),
                                    "--cache-dir", str(tmp_path / "cache"), "--quiet"], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    (rec,) = ResultStore(tmp_path / "r.sqlite").runs(protocol="lfw-blufr")
    assert rec.manifest["data"]["hr_size"] == [192, 192] and 0 <= rec.metrics["vr"] <= 1


def test_a_protocol_that_pins_another_hr_size_still_refuses(tiny_lfw, tmp_path, proto_dir):
    spec = yaml.safe_load((Path(__file__).resolve().parents[2] / "protocols" / "lfw-10fold.yaml").read_text())
    spec.update(name="lfw-10fold-128", hr_size=[128, 128])
    (proto_dir / "lfw-10fold-128.yaml").write_text(yaml.safe_dump(spec))
    with pytest.raises(IncompatibleModelError, match="outputs 192x192 but the protocol's HR size is 128x128"):
        runner.run(options(tiny_lfw, tmp_path, "lfw-10fold-128"))
    assert not (tmp_path / "r.sqlite").exists()
