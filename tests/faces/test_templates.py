"""Alignment templates: the similarity fit (against skimage), exact 112x96 -> 112x112
padding, the resize convention (against cv2.resize) and landmark-preserving warps."""
import cv2
import numpy as np
import pytest
from skimage.transform import SimilarityTransform

from benchmark.faces.frames import warp_to_template
from benchmark.faces.templates import ARCFACE_112x112, SPHEREFACE_112x96, TEMPLATES, FaceTemplate, similarity_transform


def skimage_similarity(src, dst) -> np.ndarray:
    """The 2x3 least-squares similarity src -> dst according to scikit-image."""
    if hasattr(SimilarityTransform, "from_estimate"):  # skimage >= 0.26
        tform = SimilarityTransform.from_estimate(src, dst)
    else:
        tform = SimilarityTransform()
        assert tform.estimate(src, dst)
    return tform.params[:2]


def similarity_matrix(angle_deg, scale, tx, ty) -> np.ndarray:
    a = np.deg2rad(angle_deg)
    return np.array([[scale * np.cos(a), -scale * np.sin(a), tx],
                     [scale * np.sin(a), scale * np.cos(a), ty]])


def apply(m, pts):
    return pts @ m[:, :2].T + m[:, 2]


@pytest.mark.parametrize("seed", range(8))
def test_similarity_matches_skimage_on_noisy_random_points(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(3, 20))
    src = rng.uniform(0, 200, (n, 2))
    truth = similarity_matrix(rng.uniform(-180, 180), rng.uniform(0.2, 5), *rng.uniform(-50, 50, 2))
    dst = apply(truth, src) + rng.normal(0, 2.0, (n, 2))  # noise: a least-squares fit, not exact
    np.testing.assert_allclose(similarity_transform(src, dst), skimage_similarity(src, dst),
                               rtol=1e-9, atol=1e-9)


def test_similarity_recovers_an_exact_transform():
    src = ARCFACE_112x112.points
    truth = similarity_matrix(17.0, 1.7, 12.5, -4.25)
    np.testing.assert_allclose(similarity_transform(src, apply(truth, src)), truth, atol=1e-10)


def test_similarity_refuses_reflection_like_skimage():
    # A mirrored point set: the best proper similarity is not the mirror itself.
    rng = np.random.default_rng(3)
    src = rng.uniform(0, 100, (6, 2))
    dst = src * [-1.0, 1.0]
    m = similarity_transform(src, dst)
    assert np.linalg.det(m[:, :2]) > 0
    np.testing.assert_allclose(m, skimage_similarity(src, dst), atol=1e-9)


def test_template_points_against_skimage():
    for src in TEMPLATES.values():
        for dst in TEMPLATES.values():
            np.testing.assert_allclose(similarity_transform(src.points, dst.points),
                                       skimage_similarity(src.points, dst.points), atol=1e-9)
    # SphereFace 112x96 is the ArcFace template shifted 8 px left: a pure translation.
    np.testing.assert_allclose(similarity_transform(SPHEREFACE_112x96.points, ARCFACE_112x112.points),
                               [[1, 0, 8], [0, 1, 0]], atol=1e-9)


def test_sphereface_to_arcface_is_exact_zero_padding():
    rng = np.random.default_rng(0)
    x = rng.random((3, 3, 112, 96), dtype=np.float32)
    out = warp_to_template(x, SPHEREFACE_112x96, ARCFACE_112x112)
    assert out.shape == (3, 3, 112, 112) and out.dtype == np.float32
    assert np.array_equal(out, np.pad(x, ((0, 0), (0, 0), (0, 0), (8, 8))))
    # ... and back: cropping 8 px off each side, bit for bit.
    back = warp_to_template(out, ARCFACE_112x112, SPHEREFACE_112x96)
    assert np.array_equal(back, x)


def test_resized_template_hand_computed():
    t = SPHEREFACE_112x96.resized(224, 192)
    assert (t.height, t.width) == (224, 192)
    # left eye (30.2946, 51.6963): ((x + 0.5) * 2 - 0.5, (y + 0.5) * 2 - 0.5)
    assert t.landmarks[0] == pytest.approx((61.0892, 103.8926), abs=1e-9)
    half = ARCFACE_112x112.resized(56, 56)
    # right mouth corner (70.7299, 92.2041): ((x + 0.5) / 2 - 0.5, (y + 0.5) / 2 - 0.5)
    assert half.landmarks[4] == pytest.approx((35.11495, 45.85205), abs=1e-9)


@pytest.mark.parametrize("hw", [(224, 192), (150, 131), (448, 384)])
def test_resized_template_follows_cv2_resize_pixel_centres(hw):
    # A ramp whose value is the source x (resp. y) coordinate: cv2.resize (bilinear)
    # reports, at each output pixel, the source coordinate it sampled. Reading the
    # resized ramp at a resized landmark must give back the original landmark.
    src = SPHEREFACE_112x96
    h, w = hw
    ramp_x = np.tile(np.arange(src.width, dtype=np.float64), (src.height, 1))
    ramp_y = np.tile(np.arange(src.height, dtype=np.float64)[:, None], (1, src.width))
    big_x = cv2.resize(ramp_x, (w, h), interpolation=cv2.INTER_LINEAR)[0]
    big_y = cv2.resize(ramp_y, (w, h), interpolation=cv2.INTER_LINEAR)[:, 0]
    for (x, y), (x2, y2) in zip(src.landmarks, src.resized(h, w).landmarks):
        assert np.interp(x2, np.arange(w), big_x) == pytest.approx(x, abs=1e-6)
        assert np.interp(y2, np.arange(h), big_y) == pytest.approx(y, abs=1e-6)


def render_dots(points, hw, sigma):
    """(1, 3, H, W) float32: a Gaussian dot at each (x, y), same in all channels."""
    yy, xx = np.mgrid[0:hw[0], 0:hw[1]]
    img = np.zeros(hw)
    for x, y in points:
        img += np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * sigma ** 2))
    return np.repeat(img[None, None].astype(np.float32), 3, axis=1)


def dot_centres(img, near, radius=6):
    """Intensity centroid of channel 0 within ``radius`` px of each expected point."""
    yy, xx = np.mgrid[0:img.shape[-2], 0:img.shape[-1]]
    out = []
    for x, y in near:
        w = img[0, 0] * (((xx - x) ** 2 + (yy - y) ** 2) <= radius ** 2)
        assert w.sum() > 1.0, f"no dot near ({x:.1f}, {y:.1f})"
        out.append(((w * xx).sum() / w.sum(), (w * yy).sum() / w.sum()))
    return np.array(out)


def test_generic_warp_moves_landmarks_onto_the_destination_template():
    # A made-up 200x180 frame: the ArcFace face rotated 20 degrees, scaled 1.6, shifted.
    m = similarity_matrix(20.0, 1.6, 40.0, 5.0)
    pts = apply(m, ARCFACE_112x112.points)
    tilted = FaceTemplate("tilted", 200, 180, tuple(map(tuple, pts)))
    img = render_dots(tilted.points, (200, 180), sigma=3.0)
    out = warp_to_template(img, tilted, ARCFACE_112x112)
    assert out.shape == (1, 3, 112, 112)
    np.testing.assert_allclose(dot_centres(out, ARCFACE_112x112.points), ARCFACE_112x112.points, atol=0.05)


def test_warp_from_a_larger_rendering_of_the_source_frame():
    # SR output is the 112x96 frame at 224x192: the template is resized implicitly. A wrong
    # pixel-centre convention (x * 2 instead of (x + 0.5) * 2 - 0.5) would be 0.25 px off.
    src = SPHEREFACE_112x96.resized(224, 192)
    img = render_dots(src.points, (224, 192), sigma=3.0)
    out = warp_to_template(img, SPHEREFACE_112x96, ARCFACE_112x112)
    assert out.shape == (1, 3, 112, 112)
    np.testing.assert_allclose(dot_centres(out, ARCFACE_112x112.points), ARCFACE_112x112.points, atol=0.05)
