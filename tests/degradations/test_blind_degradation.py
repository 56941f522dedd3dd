"""The blind degradation: per-image parameters reproducible from the image key alone, within
their ranges, each step against OpenCV / NumPy / SciPy directly; its protocols load."""
import hashlib
import math

import cv2
import numpy as np
import pytest

from benchmark.contracts.degradation import make_degradation
from benchmark.degradations.blind import jpeg_round_trip
from benchmark.engine.protocols import load_protocol
from benchmark.errors import ConfigError, DataError
from benchmark.faces.resize import imresize, to_uint8_levels


def keys(n, salt="k"):
    return [hashlib.sha256(f"{salt}{i}".encode()).hexdigest() for i in range(n)]


def faces(n, h=32, w=24, seed=0):
    rng = np.random.default_rng(seed)
    small = rng.random((n, 3, h // 4, w // 4))
    return np.clip(imresize(small, output_size=(h, w)), 0, 1).astype(np.float32)


def oracle_params(key, seed=0, sigma=(0.1, 10), r=(0.8, 8), noise=(0, 20), jpeg=(60, 100)):
    """The documented draw, written out: PCG64(SeedSequence([seed, int(key, 16)])), uniform
    sigma, r, noise, then an integer quality in [lo, hi]."""
    g = np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, int(key, 16)])))
    return g, {"sigma": g.uniform(*sigma), "r": g.uniform(*r), "noise": g.uniform(*noise),
               "jpeg": int(g.integers(jpeg[0], jpeg[1] + 1))}


def oracle_lr(hr, key, lr_hw):
    """The documented pipeline through OpenCV where it can: GaussianBlur 41x41 with
    BORDER_REFLECT_101, MATLAB bicubic 1/r, noise, uint8, cv2 JPEG, MATLAB bicubic to LR."""
    g, p = oracle_params(key)
    img = hr.transpose(1, 2, 0).astype(np.float64)
    img = cv2.GaussianBlur(img, (41, 41), sigmaX=p["sigma"], sigmaY=p["sigma"], borderType=cv2.BORDER_REFLECT_101)
    x = imresize(img.transpose(2, 0, 1), scale=1 / p["r"]).astype(np.float64)
    x = x + g.standard_normal(x.shape) * (p["noise"] / 255)
    x8 = np.clip(np.round(x * 255), 0, 255).astype(np.uint8)
    ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(x8.transpose(1, 2, 0)[:, :, ::-1]),
                           [cv2.IMWRITE_JPEG_QUALITY, p["jpeg"]])
    assert ok
    back = cv2.imdecode(buf, cv2.IMREAD_COLOR)[:, :, ::-1].transpose(2, 0, 1).astype(np.float32) / 255
    if back.shape[-2:] != tuple(lr_hw):
        back = imresize(back, output_size=lr_hw)
    return to_uint8_levels(back)


def test_same_key_same_params_in_any_batch_order_and_only_the_key_matters():
    d = make_degradation("blind", scale=4)
    ks = keys(40)
    p = d.params(ks)
    assert d.params(ks[::-1]) == p[::-1]
    assert d.params(ks[7:9]) == p[7:9]
    assert make_degradation("blind", scale=8).params(ks) == p   # the level does not change the draw
    assert make_degradation("blind", scale=4, seed=1).params(ks) != p  # the seed does
    for k, got in zip(ks, p):
        assert got == pytest.approx(oracle_params(k)[1], rel=0, abs=0)
    hr = faces(6)
    lr = d(hr, keys=ks[:6])
    lr_rev = d(hr[::-1].copy(), keys=ks[:6][::-1])
    np.testing.assert_array_equal(lr_rev, lr[::-1])
    np.testing.assert_array_equal(d(hr[2:4], keys=ks[2:4]), lr[2:4])


def test_ranges_are_respected_and_spread():
    p = make_degradation("blind", scale=2).params(keys(2000))
    for name, (lo, hi) in {"sigma": (0.1, 10), "r": (0.8, 8), "noise": (0, 20), "jpeg": (60, 100)}.items():
        v = np.array([q[name] for q in p])
        assert v.min() >= lo and v.max() <= hi
        assert v.min() < lo + 0.05 * (hi - lo) and v.max() > hi - 0.05 * (hi - lo)  # uniform: both ends reached
    q = np.array([x["jpeg"] for x in p])
    assert set(q.tolist()) == set(range(60, 101))  # integers, both ends included
    narrow = make_degradation("blind", scale=2, sigma=[1, 2], r=3, noise=[0, 0], jpeg=[90, 95]).params(keys(200))
    assert all(1 <= x["sigma"] <= 2 and x["r"] == 3 and x["noise"] == 0 and 90 <= x["jpeg"] <= 95 for x in narrow)


def test_the_lr_matches_the_documented_pipeline_through_opencv():
    d = make_degradation("blind", scale=4)
    hr, ks = faces(5, 64, 48), keys(5, "x")
    lr = d(hr, keys=ks)
    assert lr.shape == (5, 3, 16, 12) and lr.dtype == np.float32
    for i in range(5):
        np.testing.assert_array_equal(lr[i], oracle_lr(hr[i], ks[i], (16, 12)))


def test_jpeg_round_trip_is_opencv_directly():
    rng = np.random.default_rng(2)
    rgb = (rng.random((3, 20, 28)) * 255).astype(np.uint8)
    for q in (60, 75, 100):
        ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(rgb.transpose(1, 2, 0)[:, :, ::-1]),
                               [cv2.IMWRITE_JPEG_QUALITY, q])
        want = cv2.imdecode(buf, cv2.IMREAD_COLOR)[:, :, ::-1].transpose(2, 0, 1)
        np.testing.assert_array_equal(jpeg_round_trip(rgb, q), want)
    assert not np.array_equal(jpeg_round_trip(rgb, 60), rgb)  # lossy: it did something


def test_spec_records_the_encoder_and_ranges():
    s = make_degradation("blind", scale=8).spec()
    assert s["jpeg_encoder"]["opencv"] == cv2.__version__ and s["jpeg_encoder"]["library"] == "opencv"
    assert (s["sigma"], s["r"], s["noise"], s["jpeg"], s["seed"]) == ([0.1, 10.0], [0.8, 8.0], [0.0, 20.0], [60, 100], 0)


@pytest.mark.parametrize("opts, culprit", [
    ({"sigma": [5, 1]}, "sigma"), ({"r": [0, 2]}, "r"), ({"noise": [-1, 3]}, "noise"), ({"jpeg": [60, 101]}, "jpeg"),
    ({"jpeg": [60.5, 90]}, "jpeg"), ({"sigma": "wide"}, "sigma"), ({"seed": -1}, "seed"), ({"r": [1, math.inf]}, "r")])
def test_out_of_range_options_are_refused_by_name(opts, culprit):
    with pytest.raises(ConfigError, match=culprit):
        make_degradation("blind", scale=4, **opts)


def test_no_keys_or_bad_keys_are_refused():
    d = make_degradation("blind", scale=4)
    with pytest.raises(DataError, match="without keys"):
        d(faces(2))
    with pytest.raises(DataError, match="2 images but 1 keys"):
        d(faces(2), keys=keys(1))
    with pytest.raises(DataError, match="not a hex"):
        d.params(["Ariel_Sharon/Ariel_Sharon_0001.jpg"])


@pytest.mark.parametrize("name", ["lfw-10fold-blind", "lfw-blufr-blind", "celeba-blind"])
def test_the_blind_protocols_load(name):
    p = load_protocol(name)
    assert p.degradation == "blind"
    d = make_degradation(p.degradation, scale=p.default_scale, **p.degradation_options)
    assert d.lr_size((112, 96)) == (112 // p.default_scale, 96 // p.default_scale)
    assert {"ids", "idd", "psnr", "ssim", "fr_loss"} <= set(p.metrics)
    assert (d.sigma, d.r, d.noise, d.jpeg) == ((0.1, 10.0), (0.8, 8.0), (0.0, 20.0), (60, 100))
