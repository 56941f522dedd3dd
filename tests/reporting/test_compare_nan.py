"""``fhbench compare`` on per-image arrays holding NaN (LMD where the landmark detector found
no face, a free-form score's missing SR file): the paired test drops those images from both
runs and says how many and why, instead of the old note that blamed inf (identical images)."""
import math

import numpy as np
import pytest

from benchmark.engine.store import ResultStore
from benchmark.reporting.compare import compare_models, format_comparison


@pytest.fixture
def store(tmp_path):
    st = ResultStore(tmp_path / "r.sqlite")
    lmd_a = np.array([1.0, np.nan, 2.0, 3.0, 4.0, 5.0, 6.0])
    lmd_b = np.array([1.5, 2.5, np.nan, 3.0, 3.5, 4.0, np.nan])
    ssim = np.linspace(0.5, 0.9, 7)
    for name, lmd, psnr in (("a", lmd_a, np.full(7, 30.0)), ("b", lmd_b, np.array([31.0] * 6 + [math.inf]))):
        st.save(name, "folder:toy", "given", "sface", {"lmd_dlib68": float(np.nanmean(lmd))},
                {"model": {"kind": "folder", "identity": name}},
                {"lmd_dlib68": lmd, "psnr": psnr, "ssim": ssim + (0.01 if name == "b" else 0)})
    return st


def test_nan_items_are_dropped_and_counted(store):
    c = compare_models(store, "folder:toy", "a", "b", n_resamples=500, seed=1)
    (lmd,) = [iv for iv in c.intervals if iv.metric == "lmd_dlib68"]
    # NaN in a at 1, in b at 2 and 6: the items kept are 0, 3, 4, 5
    a = np.array([1.0, 3.0, 4.0, 5.0])
    b = np.array([1.5, 3.0, 3.5, 4.0])
    assert lmd.difference == pytest.approx(np.mean(b - a)) and (lmd.value_a, lmd.value_b) == (a.mean(), b.mean())
    note = [n for n in c.notes if n.startswith("lmd_dlib68")]
    assert note == ["lmd_dlib68: 3 of 7 images dropped from the paired comparison (NaN in 1 of a, 2 of b: the metric "
                    "could not measure them, e.g. no face found or no SR file); the interval is over the other 4"]
    # inf (an SR image identical to HR) keeps its own note; a metric without NaN or inf has none
    assert any(n.startswith("no psnr difference: psnr is inf for some images of b") for n in c.notes)
    assert not any(n.startswith("ssim") for n in c.notes)
    text = format_comparison(c)
    assert "3 of 7 images dropped" in text and "identical to HR" in text


def test_all_nan_leaves_no_difference_and_says_so(tmp_path):
    st = ResultStore(tmp_path / "r.sqlite")
    for name in ("a", "b"):
        st.save(name, "folder:toy", "given", "sface", {}, {"model": {"kind": "folder", "identity": name}},
                {"lmd_dlib68": np.array([np.nan, np.nan]) if name == "a" else np.array([1.0, 2.0])})
    with pytest.raises(Exception, match="2 of 2 images dropped .* no image is left"):
        compare_models(st, "folder:toy", "a", "b", n_resamples=10)
