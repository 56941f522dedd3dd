"""Batched torch imresize, 8-bit quantisation, PSNR and SSIM on Y (issue 13) against their
NumPy references (benchmark.faces.resize, benchmark.metrics.image) and skimage as oracles."""
import math

import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from benchmark.errors import MetricError
from benchmark.faces import resize
from benchmark.faces.resize_torch import (imresize_torch, resize_matrix_torch, to_uint8_levels_torch,
                                          upsampled_model_input_torch)
from benchmark.metrics.image import psnr_y, ssim_y
from benchmark.engine.image_metrics_torch import psnr_y_torch, rgb_to_y_torch, ssim_y_torch

CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def _images(n, h, w, seed=0):
    rng = np.random.default_rng(seed)
    x = gaussian_filter(rng.random((n, 3, h, w)), sigma=(0, 0, 1.5, 1.5))
    x = (x - x.min()) / (x.max() - x.min())
    return x  # float64 in [0, 1], with detail at every scale


def _pairs(n, h, w, seed=0, noise=0.04):
    hr = _images(n, h, w, seed)
    sr = np.clip(hr + noise * np.random.default_rng(seed + 1).standard_normal(hr.shape), 0, 1)
    return sr, hr


# --- imresize ------------------------------------------------------------------------------

# (in HxW, kwargs): integer and non-integer factors, odd sizes, down and up, unequal scales
# (both dimension orders of MATLAB's "smaller scale first" rule)
RESIZES = [
    ((112, 96), dict(scale=1 / 8)), ((112, 96), dict(scale=1 / 4)), ((112, 96), dict(scale=0.3)),
    ((113, 97), dict(scale=1 / 3)), ((14, 12), dict(scale=8)), ((15, 13), dict(scale=2.5)),
    ((112, 96), dict(output_size=(17, 11))), ((21, 9), dict(output_size=(112, 96))),
    ((40, 30), dict(output_size=(23, 61))), ((40, 30), dict(output_size=(61, 23))),
    ((7, 5), dict(output_size=(7, 5))),
]


@pytest.mark.parametrize("hw,kw", RESIZES)
def test_imresize_float64_equals_the_numpy_reference(hw, kw):
    x = _images(3, *hw)
    expected = resize.imresize(x, **kw)  # float64 inside, float32 out
    got = imresize_torch(torch.from_numpy(x), **kw)
    assert got.dtype == torch.float64 and tuple(got.shape) == expected.shape
    # the reference's float32 cast is the only difference
    assert np.abs(got.numpy() - expected).max() <= 1e-6
    np.testing.assert_array_equal(got.float().numpy(), expected)


@pytest.mark.parametrize("hw,kw", RESIZES[:6])
def test_imresize_float32_within_float32_rounding(hw, kw):
    x = _images(2, *hw).astype(np.float32)
    got = imresize_torch(torch.from_numpy(x), **kw)
    assert got.dtype == torch.float32
    assert np.abs(got.numpy() - resize.imresize(x, **kw)).max() < 2e-6


def test_imresize_single_image_and_hand_computed_constant():
    # bicubic weights sum to 1: a constant image stays that constant at any size
    x = torch.full((3, 11, 7), 0.25, dtype=torch.float64)
    out = imresize_torch(x, output_size=(5, 13))
    assert tuple(out.shape) == (3, 5, 13) and torch.allclose(out, torch.tensor(0.25, dtype=torch.float64),
                                                              atol=1e-15, rtol=0)
    # upscaling by 2, a ramp along W: the interior reproduces the linear ramp (a cubic with
    # a = -0.5 reproduces linear functions), 0.5 px sample centres -> x/2 - 0.25
    ramp = torch.arange(8, dtype=torch.float64).expand(1, 1, 4, 8)
    up = imresize_torch(ramp, scale=2)[0, 0, 0]
    np.testing.assert_allclose(up[4:12].numpy(), np.arange(4, 12) / 2 - 0.25, atol=1e-12)


def test_resize_matrices_are_cached_per_device_and_dtype():
    a = resize_matrix_torch(112, 14, 1 / 8, "cpu", torch.float64)
    assert resize_matrix_torch(112, 14, 1 / 8, "cpu", torch.float64) is a
    b = resize_matrix_torch(112, 14, 1 / 8, "cpu", torch.float32)
    assert b is not a and b.dtype == torch.float32
    np.testing.assert_array_equal(a.numpy(), resize.resize_matrix(112, 14, 1 / 8))


def test_uint8_levels_bit_for_bit_including_halves():
    # exact halves (k + 0.5) / 255 round away from zero, as MATLAB's uint8(); out of range clips
    halves = (np.arange(255) + 0.5) / 255.0
    x = np.concatenate([halves, np.linspace(-0.2, 1.2, 2001), _images(1, 9, 9).ravel()])
    for dtype in (np.float64, np.float32):
        xt = torch.from_numpy(x.astype(dtype))
        got = to_uint8_levels_torch(xt)
        assert got.dtype == torch.float32
        np.testing.assert_array_equal(got.numpy(), resize.to_uint8_levels(x.astype(dtype)))
    assert float(to_uint8_levels_torch(torch.tensor([0.5 / 255], dtype=torch.float64))) == 1 / np.float32(255)
    assert float(to_uint8_levels_torch(torch.tensor([1.2]))) == 1.0


def test_upsampled_model_input_matches_reference():
    lr = resize.to_uint8_levels(resize.imresize(_images(2, 112, 96), scale=1 / 8))
    got = upsampled_model_input_torch(torch.from_numpy(lr).double(), (112, 96))
    np.testing.assert_allclose(got.numpy(), resize.upsampled_model_input(lr, (112, 96)), atol=1e-6, rtol=0)
    assert float(got.min()) >= 0 and float(got.max()) <= 1


# --- PSNR / SSIM ---------------------------------------------------------------------------

@pytest.mark.parametrize("shape,crop", [((5, 3, 32, 32), 0), ((4, 3, 112, 96), 4), ((3, 3, 23, 17), 2),
                                        ((2, 3, 128, 128), 0)])
def test_psnr_ssim_float64_equal_the_numpy_reference(shape, crop):
    sr, hr = _pairs(shape[0], *shape[2:])
    p = psnr_y_torch(torch.from_numpy(sr), torch.from_numpy(hr), crop)
    s = ssim_y_torch(torch.from_numpy(sr), torch.from_numpy(hr), crop)
    assert p.dtype == s.dtype == torch.float64 and p.shape == s.shape == (shape[0],)
    assert np.abs(p.numpy() - psnr_y(sr, hr, crop)).max() <= 1e-6
    assert np.abs(s.numpy() - ssim_y(sr, hr, crop)).max() <= 1e-7
    # float32 input, float64 arithmetic: the reference widens float32 the same way
    sr32, hr32 = sr.astype(np.float32), hr.astype(np.float32)
    p32 = psnr_y_torch(torch.from_numpy(sr32), torch.from_numpy(hr32), crop)
    s32 = ssim_y_torch(torch.from_numpy(sr32), torch.from_numpy(hr32), crop, chunk=2)
    assert np.abs(p32.numpy() - psnr_y(sr32, hr32, crop)).max() <= 1e-6
    assert np.abs(s32.numpy() - ssim_y(sr32, hr32, crop)).max() <= 1e-7


def test_psnr_ssim_equal_skimage_on_y():
    sr, hr = _pairs(3, 40, 36, seed=5)
    y = lambda im: 16.0 + 65.481 * im[0] + 128.553 * im[1] + 24.966 * im[2]  # noqa: E731
    c = 3
    exp_p, exp_s = [], []
    for a, b in zip(sr, hr):
        ya, yb = y(a)[c:-c, c:-c], y(b)[c:-c, c:-c]
        exp_p.append(peak_signal_noise_ratio(yb, ya, data_range=255))
        _, m = structural_similarity(ya, yb, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
                                     data_range=255, full=True)
        exp_s.append(m[5:-5, 5:-5].mean())
    p = psnr_y_torch(torch.from_numpy(sr), torch.from_numpy(hr), c).numpy()
    s = ssim_y_torch(torch.from_numpy(sr), torch.from_numpy(hr), c).numpy()
    assert np.abs(p - exp_p).max() <= 1e-6 and np.abs(s - exp_s).max() <= 1e-7


def test_identical_images_give_inf_psnr_and_ssim_one():
    _, hr = _pairs(3, 24, 24)
    t = torch.from_numpy(hr)
    p = psnr_y_torch(t, t.clone())
    assert torch.isinf(p).all() and (p > 0).all()
    np.testing.assert_array_equal(p.numpy(), psnr_y(hr, hr))
    np.testing.assert_allclose(ssim_y_torch(t, t.clone()).numpy(), 1.0, atol=1e-12)
    # one identical pair among others: only that image is inf
    sr = hr.copy()
    sr[1] += 0.01
    p = psnr_y_torch(torch.from_numpy(sr), t).numpy()
    assert math.isinf(p[0]) and math.isfinite(p[1]) and math.isinf(p[2])


def test_hand_computed_uniform_offset_and_y():
    hr = np.full((1, 3, 16, 16), 0.5)
    sr = hr + 10 / 219  # Y moves by exactly 10 (65.481 + 128.553 + 24.966 = 219)
    p = float(psnr_y_torch(torch.from_numpy(sr), torch.from_numpy(hr))[0])
    assert abs(p - 10 * math.log10(255 ** 2 / 100)) < 1e-9
    white = torch.ones(1, 3, 2, 2, dtype=torch.float64)
    assert torch.allclose(rgb_to_y_torch(white), torch.tensor(235.0, dtype=torch.float64))


def test_float32_arithmetic_is_close():
    sr, hr = _pairs(4, 64, 64, seed=3)
    a, b = torch.from_numpy(sr).float(), torch.from_numpy(hr).float()
    assert np.abs(psnr_y_torch(a, b, dtype=torch.float32).numpy() - psnr_y(sr, hr)).max() < 1e-3
    assert np.abs(ssim_y_torch(a, b, dtype=torch.float32).numpy() - ssim_y(sr, hr)).max() < 1e-5


def test_bad_input_is_refused_like_the_reference():
    good = torch.zeros(2, 3, 16, 16)
    with pytest.raises(MetricError, match="crop_border"):
        psnr_y_torch(good, good, crop_border=8)
    with pytest.raises(MetricError, match=r"\(2, 16, 16, 3\)"):
        psnr_y_torch(torch.zeros(2, 16, 16, 3), torch.zeros(2, 16, 16, 3))
    with pytest.raises(MetricError, match="dtype"):
        psnr_y_torch(good.to(torch.uint8), good.to(torch.uint8))
    with pytest.raises(MetricError, match="need at least 11x11"):
        ssim_y_torch(torch.zeros(1, 3, 10, 30), torch.zeros(1, 3, 10, 30))
    with pytest.raises(MetricError, match="but hr has shape"):
        ssim_y_torch(torch.zeros(1, 3, 16, 16), torch.zeros(1, 3, 16, 17))
    bad = good.clone()
    bad[1, 0, 3, 3] = float("nan")
    with pytest.raises(MetricError, match="sr image 1"):
        ssim_y_torch(bad, good)


@CUDA
def test_cuda_equals_cpu():
    sr, hr = _pairs(4, 112, 96)
    a, b = torch.from_numpy(sr), torch.from_numpy(hr)
    np.testing.assert_allclose(psnr_y_torch(a.cuda(), b.cuda()).cpu().numpy(), psnr_y(sr, hr), atol=1e-6, rtol=0)
    np.testing.assert_allclose(ssim_y_torch(a.cuda(), b.cuda()).cpu().numpy(), ssim_y(sr, hr), atol=1e-7, rtol=0)
    x = torch.from_numpy(_images(2, 112, 96))
    np.testing.assert_allclose(imresize_torch(x.cuda(), scale=1 / 8).cpu().numpy(),
                               resize.imresize(x.numpy(), scale=1 / 8), atol=1e-6, rtol=0)
