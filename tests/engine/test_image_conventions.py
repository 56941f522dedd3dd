"""``--convention basicsr|pyiqa``: each reproduces its library's value on a fixed image pair.

The oracles are re-implementations, written here from the published definitions, of
BasicSR's ``calculate_psnr`` / ``calculate_ssim`` (``test_y_channel=True``: OpenCV BGR uint8
images, ``bgr2ycbcr`` on float32 [0, 1] returned as float32, ``cv2.filter2D`` with the
11-tap Gaussian, the [5:-5, 5:-5] valid region) and of pyiqa's default ``psnr`` (RGB, data
range 1, eps 1e-8) and ``ssim`` (Y of YIQ x 255 rounded, ``fspecial`` window as float32, valid
``conv2d``, data range 255, ``relu`` on the contrast-structure map), in torch float32 as
pyiqa runs.
"""
import math

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from benchmark.errors import ConfigError
from benchmark.engine.image_conventions import CONVENTIONS, convention


@pytest.fixture(scope="module")
def pair():
    """A fixed 8-bit pair: a smooth face-like pattern and a noisy, blurred copy (BGR uint8)."""
    rng = np.random.default_rng(7)
    yy, xx = np.mgrid[0:72, 0:64]
    base = np.stack([128 + 90 * np.sin(xx / 9.0 + c) * np.cos(yy / 11.0 - c) for c in (0.0, 0.7, 1.9)], axis=-1)
    hr = np.clip(np.rint(base + rng.normal(0, 4, base.shape)), 0, 255).astype(np.uint8)
    sr = cv2.GaussianBlur(hr, (5, 5), 1.2).astype(np.float64) + rng.normal(0, 5, hr.shape)
    return np.clip(np.rint(sr), 0, 255).astype(np.uint8), hr


def as_batch(bgr):
    """fhbench's input: (1, 3, H, W) RGB float32 k / 255."""
    return (bgr[:, :, ::-1].transpose(2, 0, 1)[None] / np.float32(255)).astype(np.float32)


# --- BasicSR, from basicsr/metrics/psnr_ssim.py and basicsr/utils/color_util.py ---------------
def basicsr_to_y(img):
    img = img.astype(np.float32) / 255.0
    y = np.dot(img, [24.966, 128.553, 65.481]) + 16.0   # BGR order
    y = (y / 255.0).astype(np.float32)                   # _convert_output_type_range(float32)
    return y * 255.0


def basicsr_psnr(img, img2, crop_border):
    if crop_border:
        img, img2 = img[crop_border:-crop_border, crop_border:-crop_border], img2[crop_border:-crop_border, crop_border:-crop_border]
    a, b = basicsr_to_y(img).astype(np.float64), basicsr_to_y(img2).astype(np.float64)
    mse = np.mean((a - b) ** 2)
    return float("inf") if mse == 0 else 10.0 * np.log10(255.0 * 255.0 / mse)


def basicsr_ssim(img, img2, crop_border):
    if crop_border:
        img, img2 = img[crop_border:-crop_border, crop_border:-crop_border], img2[crop_border:-crop_border, crop_border:-crop_border]
    a, b = basicsr_to_y(img).astype(np.float64), basicsr_to_y(img2).astype(np.float64)
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    k = cv2.getGaussianKernel(11, 1.5)
    w = np.outer(k, k.transpose())
    f = lambda x: cv2.filter2D(x, -1, w)[5:-5, 5:-5]  # noqa: E731
    mu1, mu2 = f(a), f(b)
    s1, s2, s12 = f(a ** 2) - mu1 ** 2, f(b ** 2) - mu2 ** 2, f(a * b) - mu1 * mu2
    m = ((2 * mu1 * mu2 + c1) * (2 * s12 + c2)) / ((mu1 ** 2 + mu2 ** 2 + c1) * (s1 + s2 + c2))
    return float(m.mean())


# --- pyiqa, from pyiqa/archs/psnr_arch.py, ssim_arch.py, utils/color_util.py ------------------
def pyiqa_psnr(x, y):
    mse = torch.mean((x - y) ** 2, dim=[1, 2, 3])
    return float(10 * torch.log10(1.0 ** 2 / (mse + 1e-8)))


def pyiqa_ssim(x, y):
    yiq = torch.tensor([[0.299, 0.587, 0.114], [0.5959, -0.2746, -0.3213], [0.2115, -0.5227, 0.3112]]).t()

    def to_y(img):
        out = torch.matmul(img.permute(0, 2, 3, 1), yiq).permute(0, 3, 1, 2)[:, [0]] * 255
        return out.round().to(torch.float64)

    a, b = to_y(x), to_y(y)
    m = n = 5.0
    gy, gx = np.ogrid[-m:m + 1, -n:n + 1]
    h = np.exp(-(gx * gx + gy * gy) / (2.0 * 1.5 * 1.5))
    h /= h.sum()
    win = torch.from_numpy(h).float().repeat(1, 1, 1, 1).to(a)
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    f = lambda t: F.conv2d(t, win, stride=1, padding=0, groups=1)  # noqa: E731
    mu1, mu2 = f(a), f(b)
    s1, s2, s12 = f(a * a) - mu1 ** 2, f(b * b) - mu2 ** 2, f(a * b) - mu1 * mu2
    cs = F.relu((2 * s12 + c2) / (s1 + s2 + c2))
    return float((((2 * mu1 * mu2 + c1) / (mu1 ** 2 + mu2 ** 2 + c1)) * cs).mean())


@pytest.mark.parametrize("crop_border", [0, 4])
def test_basicsr_convention_reproduces_basicsr(pair, crop_border):
    sr, hr = pair
    conv = convention("basicsr")
    assert conv.psnr(as_batch(sr), as_batch(hr), crop_border)[0] == pytest.approx(basicsr_psnr(sr, hr, crop_border),
                                                                                   abs=1e-9)
    assert conv.ssim(as_batch(sr), as_batch(hr), crop_border)[0] == pytest.approx(basicsr_ssim(sr, hr, crop_border),
                                                                                   abs=1e-10)
    assert conv.psnr(as_batch(hr), as_batch(hr), crop_border)[0] == math.inf


def test_pyiqa_convention_reproduces_pyiqa(pair):
    sr, hr = pair
    x, y = torch.from_numpy(as_batch(sr)), torch.from_numpy(as_batch(hr))
    conv = convention("pyiqa")
    # pyiqa's PSNR runs in float32: agreement to its float32 rounding
    assert conv.psnr(as_batch(sr), as_batch(hr))[0] == pytest.approx(pyiqa_psnr(x, y), abs=1e-4)
    assert conv.ssim(as_batch(sr), as_batch(hr))[0] == pytest.approx(pyiqa_ssim(x, y), abs=1e-6)
    assert conv.psnr(as_batch(hr), as_batch(hr))[0] == pytest.approx(80.0)  # eps 1e-8: never inf


def test_the_conventions_differ_on_this_pair(pair):
    """The choice matters here: RGB vs Y PSNR, YIQ-rounded vs BT.601 Y SSIM."""
    sr, hr = (as_batch(x) for x in pair)
    psnr = {n: c.psnr(sr, hr, 0)[0] for n, c in CONVENTIONS.items()}
    ssim = {n: c.ssim(sr, hr, 0)[0] for n, c in CONVENTIONS.items()}
    assert abs(psnr["pyiqa"] - psnr["basicsr"]) > 0.1
    assert abs(ssim["pyiqa"] - ssim["basicsr"]) > 1e-4
    assert abs(psnr["fhbench"] - psnr["basicsr"]) < 1e-4  # one formula; BasicSR's float32 Y only


def test_every_convention_describes_itself_and_unknown_is_refused():
    for name, conv in CONVENTIONS.items():
        d = conv.describe(4)
        assert d["name"] == name and d["crop_border"] == 4 and d["y_formula"] and d["data_range"]
    with pytest.raises(ConfigError, match="unknown --convention 'matlab'"):
        convention("matlab")
