"""PSNR / SSIM on Y, rgb_to_y, summarize and fr_loss against skimage and hand-computed cases."""
import math

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from benchmark.errors import MetricError
from benchmark.metrics import image
from benchmark.metrics.image import fr_loss, psnr_ssim_y, psnr_y, rgb_to_y, ssim_y, summarize


def luma_oracle(rgb_image):
    """BT.601 Y of one (3, H, W) RGB image in [0, 1], written out independently."""
    r, g, b = (rgb_image[c].astype(np.float64) for c in range(3))
    return 16.0 + 65.481 * r + 128.553 * g + 24.966 * b


def skimage_ssim_valid(y_sr, y_hr):
    """skimage's SSIM map, averaged over the 'valid' region (5 px cut from every side)."""
    _, ssim_map = structural_similarity(
        y_sr, y_hr, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
        data_range=255, full=True,
    )
    return ssim_map[5:-5, 5:-5].mean()


def face_like_pairs(n, height, width, seed=0, noise=0.04):
    """Smooth random RGB images (hr) and noisy versions of them (sr), float32 in [0, 1]."""
    rng = np.random.default_rng(seed)
    hr = gaussian_filter(rng.random((n, 3, height, width)), sigma=(0, 0, 3, 3))
    hr = (hr - hr.min()) / (hr.max() - hr.min())
    sr = np.clip(hr + noise * rng.standard_normal(hr.shape), 0, 1)
    return sr.astype(np.float32), hr.astype(np.float32)


# --- rgb_to_y -----------------------------------------------------------------------------

@pytest.mark.parametrize(
    "rgb, expected_y",
    [
        ((1.0, 1.0, 1.0), 235.0),  # 16 + 65.481 + 128.553 + 24.966
        ((0.0, 0.0, 0.0), 16.0),
        ((1.0, 0.0, 0.0), 81.481),  # 16 + 65.481
        ((0.0, 1.0, 0.0), 144.553),  # 16 + 128.553
        ((0.0, 0.0, 1.0), 40.966),  # 16 + 24.966
        ((0.5, 0.5, 0.5), 125.5),  # 16 + 0.5 * 219
    ],
)
def test_rgb_to_y_pure_colours(rgb, expected_y):
    batch = np.broadcast_to(np.array(rgb, np.float32)[None, :, None, None], (2, 3, 4, 5))
    y = rgb_to_y(batch)
    assert y.shape == (2, 4, 5) and y.dtype == np.float64
    np.testing.assert_allclose(y, expected_y, rtol=0, atol=1e-12)


def test_rgb_to_y_is_not_rounded_and_reads_rgb_order():
    image_rgb = np.zeros((3, 1, 1), np.float32)
    image_rgb[0] = 0.25  # only red: 16 + 0.25 * 65.481 = 32.37025
    y = rgb_to_y(image_rgb)  # one (3, H, W) image is a batch of one
    assert y.shape == (1, 1, 1)
    assert y[0, 0, 0] == pytest.approx(32.37025, abs=1e-12)


def test_rgb_to_y_accepts_torch():
    torch = pytest.importorskip("torch")
    sr, _ = face_like_pairs(2, 8, 9)
    np.testing.assert_allclose(rgb_to_y(torch.from_numpy(sr)), [luma_oracle(im) for im in sr], atol=1e-12)


# --- PSNR -----------------------------------------------------------------------------------

def test_psnr_matches_skimage_on_y():
    sr, hr = face_like_pairs(5, 37, 41, seed=1)
    expected = [
        peak_signal_noise_ratio(luma_oracle(h), luma_oracle(s), data_range=255) for s, h in zip(sr, hr)
    ]
    np.testing.assert_allclose(psnr_y(sr, hr), expected, rtol=0, atol=1e-10)


def test_psnr_hand_computed_uniform_offset():
    # Grey 0.5 vs grey 0.6: Y differs by 0.1 * 219 = 21.9 everywhere, MSE = 21.9^2,
    # PSNR = 20 log10(255 / 21.9) = 21.3214... dB.
    sr = np.full((1, 3, 16, 16), 0.5)
    hr = np.full((1, 3, 16, 16), 0.6)
    assert psnr_y(sr, hr)[0] == pytest.approx(20 * math.log10(255 / 21.9), abs=1e-9)


def test_psnr_is_per_image_not_pooled():
    # Image 0 differs by 21.9 in Y (PSNR 21.32 dB), image 1 is identical (inf): per image.
    hr = np.full((2, 3, 12, 12), 0.6)
    sr = hr.copy()
    sr[0] = 0.5
    values = psnr_y(sr, hr)
    assert values[0] == pytest.approx(20 * math.log10(255 / 21.9), abs=1e-9)
    assert values[1] == math.inf


def test_psnr_identical_images_is_inf():
    _, hr = face_like_pairs(3, 12, 12)
    assert np.all(psnr_y(hr, hr.copy()) == np.inf)


def test_crop_border_matches_skimage_on_cropped_y():
    sr, hr = face_like_pairs(3, 40, 36, seed=2)
    c = 4
    expected_psnr = [
        peak_signal_noise_ratio(luma_oracle(h)[c:-c, c:-c], luma_oracle(s)[c:-c, c:-c], data_range=255)
        for s, h in zip(sr, hr)
    ]
    expected_ssim = [
        skimage_ssim_valid(luma_oracle(s)[c:-c, c:-c], luma_oracle(h)[c:-c, c:-c]) for s, h in zip(sr, hr)
    ]
    np.testing.assert_allclose(psnr_y(sr, hr, crop_border=c), expected_psnr, rtol=0, atol=1e-10)
    np.testing.assert_allclose(ssim_y(sr, hr, crop_border=c), expected_ssim, rtol=0, atol=1e-8)


def test_crop_border_removes_border_differences():
    _, hr = face_like_pairs(1, 30, 30)
    sr = hr.copy()
    sr[:, :, :3, :] = 0.0  # damage only the top 3 rows
    assert np.isfinite(psnr_y(sr, hr)[0])
    assert psnr_y(sr, hr, crop_border=3)[0] == math.inf
    assert ssim_y(sr, hr, crop_border=3)[0] == pytest.approx(1.0, abs=1e-12)


# --- SSIM -----------------------------------------------------------------------------------

@pytest.mark.parametrize("shape", [(4, 37, 41), (2, 11, 11), (1, 11, 30)])
def test_ssim_matches_skimage_valid_region(shape):
    sr, hr = face_like_pairs(*shape, seed=3)
    expected = [skimage_ssim_valid(luma_oracle(s), luma_oracle(h)) for s, h in zip(sr, hr)]
    np.testing.assert_allclose(ssim_y(sr, hr), expected, rtol=0, atol=1e-8)


def test_ssim_chunks_agree_with_skimage(monkeypatch):
    # Three images of 20x20 per chunk, seven images: chunks of 3, 3 and 1.
    monkeypatch.setattr(image, "_CHUNK_VALUES", 3 * 20 * 20)
    sr, hr = face_like_pairs(7, 20, 20, seed=4, noise=0.1)
    expected = [skimage_ssim_valid(luma_oracle(s), luma_oracle(h)) for s, h in zip(sr, hr)]
    np.testing.assert_allclose(ssim_y(sr, hr), expected, rtol=0, atol=1e-8)
    expected_psnr = [
        peak_signal_noise_ratio(luma_oracle(h), luma_oracle(s), data_range=255) for s, h in zip(sr, hr)
    ]
    np.testing.assert_allclose(psnr_y(sr, hr), expected_psnr, rtol=0, atol=1e-10)


def test_chunks_on_threads_raise_for_the_first_bad_image(monkeypatch):
    # Chunks of 3 run on the pool; images 7 and 4 are bad: the message names 4, as a serial
    # loop over the chunks would, whichever chunk finishes first.
    monkeypatch.setattr(image, "_CHUNK_VALUES", 3 * 20 * 20)
    sr, hr = face_like_pairs(9, 20, 20, seed=5)
    sr[7, 1, 3, 3] = np.inf
    sr[4, 0, 2, 2] = np.nan
    for metric in (psnr_y, ssim_y, psnr_ssim_y):
        with pytest.raises(MetricError, match=f"^{metric.__name__}: sr image 4 contains NaN or inf$"):
            metric(sr, hr)


def test_psnr_ssim_y_is_skimage_and_the_two_metrics_bit_for_bit(monkeypatch):
    # The joint form (Y once) in chunks of 3 over 8 images with a crop, one pair identical:
    # skimage's values, and exactly psnr_y's and ssim_y's (the engine swaps it in for them).
    monkeypatch.setattr(image, "_CHUNK_VALUES", 3 * 20 * 20)
    sr, hr = face_like_pairs(8, 24, 24, seed=7, noise=0.08)
    sr[5] = hr[5]
    crop = 2
    y_sr = [luma_oracle(s)[crop:-crop, crop:-crop] for s in sr]
    y_hr = [luma_oracle(h)[crop:-crop, crop:-crop] for h in hr]
    got = psnr_ssim_y(sr, hr, crop_border=crop)
    assert sorted(got) == ["psnr", "ssim"]
    with np.errstate(divide="ignore"):
        expected_psnr = [peak_signal_noise_ratio(h, s, data_range=255) for s, h in zip(y_sr, y_hr)]
    np.testing.assert_allclose(got["psnr"], expected_psnr, rtol=0, atol=1e-10)
    assert got["psnr"][5] == math.inf
    np.testing.assert_allclose(got["ssim"], [skimage_ssim_valid(s, h) for s, h in zip(y_sr, y_hr)],
                               rtol=0, atol=1e-8)
    np.testing.assert_array_equal(got["psnr"], psnr_y(sr, hr, crop_border=crop))
    np.testing.assert_array_equal(got["ssim"], ssim_y(sr, hr, crop_border=crop))
    empty = np.zeros((0, 3, 24, 24), dtype=np.float32)
    assert [v.shape for v in psnr_ssim_y(empty, empty).values()] == [(0,), (0,)]


def test_ssim_of_extreme_neighbours_in_one_chunk_matches_skimage():
    # SSIM's arithmetic runs on the whole filtered stack, whose border rows mix neighbouring
    # maps: black, white, a checkerboard and noise side by side must still give skimage's values.
    rng = np.random.default_rng(8)
    size = 16
    checker = (np.indices((size, size)).sum(0) % 2).astype(np.float32)
    hr = np.stack([np.zeros((3, size, size)), np.ones((3, size, size)), np.broadcast_to(checker, (3, size, size)),
                   rng.random((3, size, size))]).astype(np.float32)
    sr = np.stack([hr[1], hr[0], 1 - hr[2], np.clip(hr[3] + 0.3 * rng.standard_normal((3, size, size)), 0, 1)])
    sr = sr.astype(np.float32)
    expected = [skimage_ssim_valid(luma_oracle(s), luma_oracle(h)) for s, h in zip(sr, hr)]
    np.testing.assert_allclose(ssim_y(sr, hr), expected, rtol=0, atol=1e-8)
    np.testing.assert_allclose(psnr_ssim_y(sr, hr)["ssim"], expected, rtol=0, atol=1e-8)


def _ssim_in_child(queue, sr, hr):
    queue.put(ssim_y(sr, hr))


def test_a_forked_child_computes_with_its_own_pool(monkeypatch):
    # The parent's pool has threads; a forked child inherits the pool but not its threads,
    # and waited forever on it before the pool was forgotten at fork.
    import multiprocessing

    monkeypatch.setattr(image, "_CHUNK_VALUES", 3 * 20 * 20)
    sr, hr = face_like_pairs(7, 20, 20, seed=6)
    expected = ssim_y(sr, hr)  # in the parent: the pool now has threads
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    child = context.Process(target=_ssim_in_child, args=(queue, sr, hr))
    child.start()
    try:
        got = queue.get(timeout=60)
    finally:
        child.join(5)
        if child.is_alive():
            child.kill()
    np.testing.assert_array_equal(got, expected)


def test_ssim_hand_computed_constant_images():
    # Constant images: variances and covariance are 0, so the contrast-structure term is
    # C2 / C2 = 1 and SSIM = (2 a b + C1) / (a^2 + b^2 + C1) with a = 235 (white), b = 16
    # (black), C1 = 2.55^2 = 6.5025: 7526.5025 / 55487.5025 = 0.135642...
    sr = np.ones((1, 3, 12, 12))
    hr = np.zeros((1, 3, 12, 12))
    assert ssim_y(sr, hr)[0] == pytest.approx(7526.5025 / 55487.5025, abs=1e-12)


def test_ssim_identical_is_one():
    _, hr = face_like_pairs(2, 16, 16)
    np.testing.assert_allclose(ssim_y(hr, hr), 1.0, atol=1e-12)


def test_psnr_ssim_accept_torch_and_single_image():
    torch = pytest.importorskip("torch")
    sr, hr = face_like_pairs(1, 20, 20, seed=5)
    expected = skimage_ssim_valid(luma_oracle(sr[0]), luma_oracle(hr[0]))
    assert ssim_y(torch.from_numpy(sr[0]), torch.from_numpy(hr[0]))[0] == pytest.approx(expected, abs=1e-8)
    expected_psnr = peak_signal_noise_ratio(luma_oracle(hr[0]), luma_oracle(sr[0]), data_range=255)
    assert psnr_y(torch.from_numpy(sr), hr)[0] == pytest.approx(expected_psnr, abs=1e-10)


# --- bad input ------------------------------------------------------------------------------

def test_shape_mismatch_names_both_shapes():
    with pytest.raises(MetricError, match=r"\(2, 3, 16, 16\).*\(2, 3, 16, 17\)"):
        psnr_y(np.zeros((2, 3, 16, 16)), np.zeros((2, 3, 16, 17)))


def test_ssim_refuses_images_smaller_than_window():
    with pytest.raises(MetricError, match="10x12"):
        ssim_y(np.zeros((1, 3, 10, 12)), np.zeros((1, 3, 10, 12)))
    # 20 px minus 5 px on each side leaves 10 px: refused too.
    with pytest.raises(MetricError, match="10x10"):
        ssim_y(np.zeros((1, 3, 20, 20)), np.zeros((1, 3, 20, 20)), crop_border=5)


def test_bad_crop_and_layout_and_nan_are_refused():
    good = np.zeros((2, 3, 16, 16))
    with pytest.raises(MetricError, match="crop_border"):
        psnr_y(good, good, crop_border=-1)
    with pytest.raises(MetricError, match="crop_border"):
        psnr_y(good, good, crop_border=8)  # nothing left
    with pytest.raises(MetricError, match=r"\(2, 16, 16, 3\)"):
        psnr_y(np.zeros((2, 16, 16, 3)), np.zeros((2, 16, 16, 3)))  # channels-last
    with pytest.raises(MetricError, match="dtype"):
        psnr_y(np.zeros((2, 3, 16, 16), np.uint8), np.zeros((2, 3, 16, 16), np.uint8))
    bad = good.copy()
    bad[1, 0, 3, 3] = np.nan
    with pytest.raises(MetricError, match="sr image 1"):
        ssim_y(bad, good)


# --- summarize ------------------------------------------------------------------------------

def test_summarize_finite_values():
    result = summarize([1.0, 2.0, 3.0, 4.0])
    assert result["mean"] == 2.5
    assert result["std"] == pytest.approx(math.sqrt(1.25))  # ddof=0
    assert (result["n"], result["n_inf"]) == (4, 0)
    assert result["mean_finite"] == 2.5


def test_summarize_reports_inf_instead_of_averaging_it_away():
    result = summarize(np.array([30.0, np.inf, 40.0]))
    assert result["mean"] == math.inf
    assert math.isnan(result["std"])
    assert (result["n"], result["n_inf"]) == (3, 1)
    assert result["mean_finite"] == 35.0
    assert result["std_finite"] == 5.0


def test_summarize_refuses_nan_and_empty():
    with pytest.raises(MetricError, match="value 1 is NaN"):
        summarize([1.0, np.nan])
    with pytest.raises(MetricError, match="no values"):
        summarize([])


# --- fr_loss --------------------------------------------------------------------------------

def test_fr_loss_hand_computed():
    sr = np.array([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]], np.float32)
    hr = np.array([[0.0, 1.0], [0.0, 1.0], [0.8, 0.6]], np.float32)
    # sqrt(1 + 1), 0, sqrt(0.2^2 + 0.2^2) = sqrt(0.08)
    np.testing.assert_allclose(fr_loss(sr, hr), [math.sqrt(2), 0.0, math.sqrt(0.08)], atol=1e-7)


def test_fr_loss_checks_shapes():
    with pytest.raises(MetricError, match=r"\(3, 4\).*\(3, 5\)"):
        fr_loss(np.zeros((3, 4)), np.zeros((3, 5)))
    with pytest.raises(MetricError, match="sr_emb"):
        fr_loss(np.zeros(4), np.zeros(4))
