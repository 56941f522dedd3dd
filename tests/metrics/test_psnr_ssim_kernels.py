"""PSNR and SSIM through the compiled kernels (benchmark/psnr_ssim_kernels.py) against a plain
float64 NumPy/SciPy oracle, tighter than the skimage tests allow, on every input layout and float
type the metrics accept."""
import numpy as np
import pytest
from scipy.ndimage import correlate1d

from benchmark.errors import MetricError
from benchmark.metrics import image
from benchmark.metrics.image import psnr_ssim_y, psnr_y, rgb_to_y, ssim_of_planes, ssim_y

from test_image_metrics import face_like_pairs, luma_oracle


def gauss_valid(plane):
    """The 11-tap Gaussian (sigma 1.5, normalised) along both axes, 'valid' region only."""
    offsets = np.arange(11) - 5.0
    window = np.exp(-0.5 * (offsets / 1.5) ** 2)
    window /= window.sum()
    both = correlate1d(correlate1d(plane, window, axis=0), window, axis=1)
    return both[5:-5, 5:-5]


def ssim_oracle(x, y, peak=255.0, nonnegative_cs=False):
    """SSIM's formula with five filtered moments, written out (population variances)."""
    c1, c2 = (0.01 * peak) ** 2, (0.03 * peak) ** 2
    mu_x, mu_y = gauss_valid(x), gauss_valid(y)
    var_x = gauss_valid(x * x) - mu_x**2
    var_y = gauss_valid(y * y) - mu_y**2
    cov = gauss_valid(x * y) - mu_x * mu_y
    luminance = (2 * mu_x * mu_y + c1) / (mu_x**2 + mu_y**2 + c1)
    contrast_structure = (2 * cov + c2) / (var_x + var_y + c2)
    if nonnegative_cs:
        contrast_structure = np.maximum(contrast_structure, 0)
    return (luminance * contrast_structure).mean()


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64, np.longdouble, ">f4", ">f8"])
@pytest.mark.parametrize("crop", [0, 3])
def test_every_float_type_gives_the_oracle(dtype, crop, monkeypatch):
    # chunks of 2 on the pool; float16, long double and big-endian floats (which numba does
    # not take) are cast to float64 as Y's formula is
    monkeypatch.setattr(image, "_CHUNK_VALUES", 2 * 29 * 31)
    sr, hr = face_like_pairs(5, 29, 31, seed=11, noise=0.06)
    sr, hr = sr.astype(dtype), hr.astype(dtype)
    inner = (slice(crop, 29 - crop), slice(crop, 31 - crop))
    y_sr = [luma_oracle(s.astype(np.float64))[inner] for s in sr]
    y_hr = [luma_oracle(h.astype(np.float64))[inner] for h in hr]
    got = psnr_ssim_y(sr, hr, crop_border=crop)
    np.testing.assert_allclose(got["ssim"], [ssim_oracle(s, h) for s, h in zip(y_sr, y_hr)], rtol=0, atol=1e-13)
    expected_psnr = [10 * np.log10(255.0**2 / np.mean((s - h) ** 2)) for s, h in zip(y_sr, y_hr)]
    np.testing.assert_allclose(got["psnr"], expected_psnr, rtol=0, atol=1e-11)


def test_psnr_is_the_formula_on_rgb_to_y_bit_for_bit():
    # The kernel's Y is rgb_to_y's (the same float64 operations in the same order): PSNR is
    # 10 log10(255^2 / mean((Y_sr - Y_hr)^2)) to the last bit.
    sr, hr = face_like_pairs(6, 40, 36, seed=12)
    difference = rgb_to_y(sr) - rgb_to_y(hr)
    expected = 10.0 * np.log10(255.0**2 / (difference * difference).mean(axis=(1, 2)))
    np.testing.assert_array_equal(psnr_y(sr, hr), expected)


def test_non_contiguous_inputs_give_the_same_values():
    # a channels-last array seen as (N, 3, H, W), a reversed batch, a strided crop
    sr, hr = face_like_pairs(4, 24, 26, seed=13)
    expected = psnr_ssim_y(sr, hr)
    channels_last = np.ascontiguousarray(sr.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)
    assert not channels_last.flags.c_contiguous
    got = psnr_ssim_y(channels_last, hr)
    np.testing.assert_array_equal(got["psnr"], expected["psnr"])
    np.testing.assert_array_equal(got["ssim"], expected["ssim"])
    reversed_got = psnr_ssim_y(sr[::-1], hr[::-1])
    np.testing.assert_array_equal(reversed_got["ssim"], expected["ssim"][::-1])
    wide_sr = np.zeros((4, 3, 24, 52), np.float32)
    wide_sr[..., ::2] = sr
    np.testing.assert_array_equal(ssim_y(wide_sr[..., ::2], hr), expected["ssim"])
    # float32 against float64 (a kernel compiled for the pair): float32 widens exactly
    mixed = psnr_ssim_y(sr, hr.astype(np.float64))
    both64 = psnr_ssim_y(sr.astype(np.float64), hr.astype(np.float64))
    np.testing.assert_array_equal(mixed["psnr"], both64["psnr"])
    np.testing.assert_array_equal(mixed["ssim"], both64["ssim"])
    np.testing.assert_array_equal(mixed["ssim"], expected["ssim"])


@pytest.mark.parametrize("nonnegative_cs", [False, True])
def test_ssim_of_planes_on_another_peak_and_clipped_cs(nonnegative_cs):
    # anti-correlated planes make the contrast-structure term negative: clipping must matter
    rng = np.random.default_rng(14)
    x = rng.random((3, 19, 23))
    y = np.stack([1 - x[0], rng.random((19, 23)), x[2]])
    got = ssim_of_planes(x, y, peak=1.0, nonnegative_cs=nonnegative_cs)
    expected = [ssim_oracle(a, b, peak=1.0, nonnegative_cs=nonnegative_cs) for a, b in zip(x, y)]
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-13)
    assert (got[0] >= 0) == nonnegative_cs


def test_a_bad_hr_image_is_named_when_every_sr_image_is_finite(monkeypatch):
    monkeypatch.setattr(image, "_CHUNK_VALUES", 2 * 16 * 16)
    sr, hr = face_like_pairs(5, 16, 16, seed=15)
    hr[3, 2, 15, 15] = -np.inf  # the last pixel of the last row: the scan reaches the end
    for metric in (psnr_y, ssim_y, psnr_ssim_y):
        with pytest.raises(MetricError, match=f"^{metric.__name__}: hr image 3 contains NaN or inf$"):
            metric(sr, hr)
    sr[1, 0, 0, 0] = np.nan  # sr is named first, as before
    with pytest.raises(MetricError, match="^psnr_y: sr image 1 contains NaN or inf$"):
        psnr_y(sr, hr)


def test_a_nan_hidden_by_the_crop_is_not_an_error():
    sr, hr = face_like_pairs(2, 20, 20, seed=16)
    sr[1, :, 0, :] = np.nan  # the top row only, cut away by crop_border=1
    assert np.isfinite(psnr_ssim_y(sr, hr, crop_border=1)["ssim"]).all()


def test_without_a_writable_cache_the_kernels_compile_in_memory():
    # numba refuses cache=True when it finds nowhere to write (a read-only install and home);
    # allowing only the IPython locator, which declines ordinary files, is that situation.
    import os
    import subprocess
    import sys

    script = ("import numpy as np; from benchmark import psnr_ssim_kernels; from benchmark.metrics import image; "
              "print(type(psnr_ssim_kernels.luma_moments._cache).__name__, "
              "repr(float(image.ssim_y(np.ones((1, 3, 12, 12)), np.zeros((1, 3, 12, 12)))[0])))")
    env = dict(os.environ, NUMBA_CACHE_LOCATOR_CLASSES="_IPythonCacheLocator")
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    cache, value = done.stdout.split()
    assert cache == "NullCache"
    assert float(value) == pytest.approx(7526.5025 / 55487.5025, abs=1e-12)  # white against black


def test_without_numba_the_metrics_say_so_in_one_line():
    # numba missing, or built for another NumPy (ImportError either way): a MetricError naming
    # numba, not a traceback from inside the metric
    import subprocess
    import sys

    script = ("import sys; sys.modules['numba'] = None\n"
              "import numpy as np\n"
              "from benchmark.errors import MetricError\n"
              "from benchmark.metrics import image\n"
              "try:\n"
              "    image.psnr_y(np.zeros((1, 3, 4, 4)), np.ones((1, 3, 4, 4)))\n"
              "except MetricError as err:\n"
              "    print(err)\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    message = done.stdout.strip()
    assert "\n" not in message
    assert message.startswith("PSNR and SSIM on the CPU need numba (setup.cfg pins it), which did not import: ")
