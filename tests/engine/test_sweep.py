"""``fhbench sweep``: a grid of runs; stored cells are skipped, a failing cell does not stop
the others. Each done cell's stored metrics are compared with a plain single run's."""
import textwrap
from pathlib import Path

import numpy as np
import pytest
import yaml
from click.testing import CliRunner

from benchmark.cli import main
from benchmark.engine import runner
from benchmark.engine.store import ResultStore
from benchmark.engine.sweep import load_sweep
from benchmark.errors import ConfigError
from cluster_fixtures import env_path

BAD_MODEL = """
import torch
def nan_model(lr):
    out = torch.nn.functional.interpolate(lr, scale_factor=8, mode="bilinear")
    out[0, 0, 0, 0] = float("nan")
    return out
"""


@pytest.fixture
def sweep_setup(tiny_lfw, tmp_path, proto_dir, monkeypatch):
    spec = yaml.safe_load((Path(__file__).resolve().parents[2] / "protocols" / "lfw-10fold.yaml").read_text())
    spec["options"]["pair_mode"] = "sr-hr"  # another protocol over the same images
    (proto_dir / "toy-b.yaml").write_text(yaml.safe_dump({**spec, "name": "toy-b"}))
    (tmp_path / "sweepmodels.py").write_text(BAD_MODEL)
    monkeypatch.syspath_prepend(str(tmp_path))
    path = tmp_path / "sweep.yaml"
    path.write_text(textwrap.dedent("""
        models: [bicubic, nearest, {model: "sweepmodels:nan_model", name: broken}]
        protocols: [lfw-10fold, toy-b]
        scales: [8]
        evaluators: [sface]
        exclude:
          - {model: broken, protocol: toy-b}
    """))
    return path


def sweep_cli(path, tmp_path, tiny_lfw, *extra):
    return CliRunner().invoke(main, ["sweep", str(path), "--data-root", str(tiny_lfw), "--store",
                                     str(tmp_path / "s.sqlite"), "--cache-dir", str(tmp_path / "cache"),
                                     "--quiet", *extra])


def test_sweep_runs_the_grid_reports_a_failing_cell_and_skips_on_rerun(sweep_setup, tiny_lfw, tmp_path):
    res = sweep_cli(sweep_setup, tmp_path, tiny_lfw)
    assert res.exit_code == 1, res.output
    assert "5 cells: 4 done, 0 skipped, 1 failed" in res.output
    assert "failed broken lfw-10fold x8 sface: model sweepmodels:nan_model" in res.output or "NaN" in res.output
    rows = ResultStore(tmp_path / "s.sqlite").runs()
    assert sorted((r.model, r.protocol) for r in rows) == [
        ("bicubic", "lfw-10fold"), ("bicubic", "toy-b"), ("nearest", "lfw-10fold"), ("nearest", "toy-b")]
    # every done cell stored what a plain single run stores
    for model, protocol in (("bicubic", "toy-b"), ("nearest", "lfw-10fold")):
        ref = runner.run(runner.RunOptions(model=model, protocol=protocol, scale=8, data_root=str(tiny_lfw),
                                           store=str(tmp_path / f"ref-{model}-{protocol}.sqlite"), cache_dir="",
                                           progress=False))
        (row,) = [r for r in rows if (r.model, r.protocol) == (model, protocol)]
        assert row.metrics == ref["metrics"]
        arrays = ResultStore(tmp_path / "s.sqlite").arrays(row.id)
        ref_arrays = ResultStore(tmp_path / f"ref-{model}-{protocol}.sqlite").arrays(ref["id"])
        assert arrays.keys() == ref_arrays.keys()
        assert all(np.array_equal(arrays[k], ref_arrays[k], equal_nan=True) for k in arrays)
    again = sweep_cli(sweep_setup, tmp_path, tiny_lfw)
    assert again.exit_code == 1 and "5 cells: 0 done, 4 skipped, 1 failed" in again.output
    assert len(ResultStore(tmp_path / "s.sqlite").runs()) == 4


@pytest.mark.parametrize("text,message", [
    ("models: [bicubik]\nprotocols: [lfw-10fold]\n", "unknown model 'bicubik'"),
    ("models: [bicubic]\nprotocols: [lfw-10fld]\n", "protocol 'lfw-10fld'"),
    ("models: [bicubic]\nprotocols: [lfw-10fold]\nevaluators: [sfac]\n", "unknown evaluator 'sfac'"),
    ("models: [bicubic]\nprotocols: [lfw-10fold]\nscale: [8]\n", "unknown key 'scale'"),
    ("models: bicubic\nprotocols: [lfw-10fold]\n", "key 'models' must be a non-empty list"),
    ("models: [{model: bicubic, wieghts: x}]\nprotocols: [lfw-10fold]\n", "unknown key 'wieghts'"),
    ("protocols: [lfw-10fold]\n", "key 'models' is required"),
    ("models: [bicubic]\nprotocols: [lfw-10fold]\nscales: [3]\n", "has no cell"),
])
def test_bad_sweep_files_fail_in_one_line(tmp_path, text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_sweep(path)
    assert message in str(err.value) and str(path) in str(err.value) and "\n" not in str(err.value)
    res = CliRunner().invoke(main, ["sweep", str(path), "--store", str(tmp_path / "s.sqlite"), "--quiet"])
    assert res.exit_code == 2 and message in res.output and len(res.output.strip().splitlines()) == 1


@pytest.mark.slow
def test_sweep_on_local_2_reports_the_failing_cell_and_stores_what_single_runs_store(sweep_setup, tiny_lfw,
                                                                                     tmp_path, monkeypatch):
    """``--cluster local:2``: 2 good models x 2 protocols done (cells in parallel on the
    workers), the broken model's cell failed with its error, a summary table, exit status 1."""
    monkeypatch.setenv("PYTHONPATH", env_path(tmp_path))  # the workers import sweepmodels
    res = sweep_cli(sweep_setup, tmp_path, tiny_lfw, "--cluster", "local:2")
    assert res.exit_code == 1, res.output
    assert "5 cells: 4 done, 0 skipped, 1 failed" in res.output
    failed = [line for line in res.output.splitlines() if line.startswith("failed ")]
    assert len(failed) == 1 and failed[0].startswith("failed broken lfw-10fold x8 sface: ")
    assert "model sweepmodels:nan_model returned NaN" in failed[0]
    table = [line.split() for line in res.output.splitlines() if line.split()[:1] in (["bicubic"], ["nearest"])]
    assert sorted((r[0], r[1], r[4]) for r in table) == [
        ("bicubic", "lfw-10fold", "done"), ("bicubic", "toy-b", "done"),
        ("nearest", "lfw-10fold", "done"), ("nearest", "toy-b", "done")]
    rows = ResultStore(tmp_path / "s.sqlite").runs()
    assert len(rows) == 4
    for row in rows:
        ref = runner.run(runner.RunOptions(model=row.model, protocol=row.protocol, scale=8, data_root=str(tiny_lfw),
                                           store=str(tmp_path / f"ref-{row.model}-{row.protocol}.sqlite"),
                                           cache_dir="", progress=False))
        assert row.metrics == ref["metrics"]
        arrays = ResultStore(tmp_path / "s.sqlite").arrays(row.id)
        ref_arrays = ResultStore(tmp_path / f"ref-{row.model}-{row.protocol}.sqlite").arrays(ref["id"])
        assert arrays.keys() == ref_arrays.keys()
        assert all(arrays[k].tobytes() == ref_arrays[k].tobytes() for k in arrays)
