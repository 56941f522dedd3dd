"""``fhbench leaderboard --scale`` (and plot/compare's ``--scale``) take a scale as 8 or x8, or
a row level without a scale: hr, sizes, given. A folder scored by ``fhbench score`` (level
given) can be picked out like any scale; 0 and 1, the old sentinels, are refused in one line."""
import numpy as np
import pytest
from click.testing import CliRunner

from benchmark.cli import main
from benchmark.engine.store import ResultStore


@pytest.fixture
def store(tmp_path):
    st = ResultStore(tmp_path / "r.sqlite")
    st.save("folder:mine", "folder:mine", "given", "sface", {"psnr": 27.5}, {"model": {"kind": "folder", "identity": "f"}},
            {"psnr": np.array([27.0, 28.0])})
    for name, level, psnr in (("hr", "hr", np.inf), ("bicubic", "x8", 24.9), ("bicubic", "x4", 29.9)):
        st.save(name, "lfw-10fold", level, "sface", {"psnr": psnr, "accuracy": 0.9},
                {"model": {"kind": "builtin", "identity": name}},
                {"psnr": np.array([psnr, psnr])})
    return tmp_path / "r.sqlite"


def _leaderboard(store, *args):
    return CliRunner().invoke(main, ["leaderboard", "--store", str(store), "--format", "csv", *args])


def test_given_rows_are_picked_out_by_scale(store):
    out = _leaderboard(store, "--scale", "given")
    assert out.exit_code == 0, out.output
    assert "folder:mine" in out.output and "bicubic" not in out.output


@pytest.mark.parametrize("scale", ["8", "x8"])
def test_a_scale_as_number_or_level_name(store, scale):
    out = _leaderboard(store, "--scale", scale)
    assert out.exit_code == 0, out.output
    assert "x8" in out.output and "x4" not in out.output and "folder:mine" not in out.output


@pytest.mark.parametrize("scale,message", [("1", "1 is not a scale (>= 2); the reference row is 'hr'"),
                                           ("0", "0 is not a scale"),
                                           ("x1", "x1 is not a scale"),
                                           ("eight", "'eight': expected a scale such as 8 or x8, or hr, sizes or given")])
def test_bad_scales_are_one_line(store, scale, message):
    out = _leaderboard(store, "--scale", scale)
    assert out.exit_code == 2 and message in out.output and "--scale" in out.output
