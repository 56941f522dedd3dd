"""``fhbench run --backend torch|onnxruntime-fast`` (issue 13): the ONNX evaluator converted to
torch, or on onnxruntime with its PReLUs as convolutions, stores the same task figures as
onnxruntime, its manifest says which backend ran, and they never share cached embeddings."""
import numpy as np
import pytest

from benchmark.engine import runner
from benchmark.engine.store import ResultStore


def run(root, tmp_path, backend, store="r.sqlite"):
    return runner.run(runner.RunOptions(model="bicubic", protocol="lfw-10fold", scale=4, data_root=str(root),
                                        store=str(tmp_path / store), cache_dir=str(tmp_path / "cache"),
                                        progress=False, backend=backend, name=f"bicubic-{backend}"))


@pytest.mark.parametrize("other", ["torch", "onnxruntime-fast"])
def test_other_backends_store_the_same_figures_as_onnxruntime(tiny_lfw, tmp_path, other):
    ort, tch = run(tiny_lfw, tmp_path, "onnxruntime"), run(tiny_lfw, tmp_path, other)
    assert ort["manifest"]["evaluator"]["backend"] == "onnxruntime"
    assert tch["manifest"]["evaluator"]["backend"] == other
    # separate cache entries: the other run embedded every image itself
    assert tch["manifest"]["cache"]["computed"]["hr"] == ort["manifest"]["cache"]["computed"]["hr"] > 0
    assert tch["manifest"]["cache"]["hr"] != ort["manifest"]["cache"]["hr"]
    a, b = ort["metrics"], tch["metrics"]
    assert a["accuracy"] == b["accuracy"] and a["psnr"] == b["psnr"] and a["ssim"] == b["ssim"]
    assert abs(a["fr_loss"] - b["fr_loss"]) < 1e-5
    st = ResultStore(tmp_path / "r.sqlite")
    (ra,), (rb,) = st.runs(model="bicubic-onnxruntime"), st.runs(model=f"bicubic-{other}")
    np.testing.assert_allclose(st.arrays(ra.id)["pair_scores"], st.arrays(rb.id)["pair_scores"], atol=1e-5)


def test_an_unknown_backend_is_one_line(tiny_lfw, tmp_path):
    from click.testing import CliRunner

    from benchmark.cli import main

    res = CliRunner().invoke(main, ["run", "--model", "bicubic", "--protocol", "lfw-10fold", "--data-root",
                                    str(tiny_lfw), "--store", str(tmp_path / "r.sqlite"), "--backend", "tensorrt"])
    assert res.exit_code == 2 and "tensorrt" in res.output
    assert not (tmp_path / "r.sqlite").exists()


def test_the_cli_takes_onnxruntime_fast(tiny_lfw, tmp_path):
    from click.testing import CliRunner

    from benchmark.cli import main

    res = CliRunner().invoke(main, ["run", "--model", "bicubic", "--protocol", "lfw-10fold", "--scale", "4",
                                    "--data-root", str(tiny_lfw), "--store", str(tmp_path / "r.sqlite"),
                                    "--cache-dir", str(tmp_path / "cache"), "--backend", "onnxruntime-fast", "--quiet"])
    assert res.exit_code == 0, res.output
    (row,) = ResultStore(tmp_path / "r.sqlite").runs(model="bicubic")
    assert row.manifest["evaluator"]["backend"] == "onnxruntime-fast"
