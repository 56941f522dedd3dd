"""MTCNN alignment: face choice, warp geometry, no-face fallback, cache, errors, and
agreement with the pre-aligned LFW crops on real raw LFW photos."""
import hashlib
import math
from pathlib import Path

import cv2
import numpy as np
import pytest

from benchmark.faces import alignment
from benchmark.faces.alignment import MtcnnAligner, choose_face, fallback_crop_box, fallback_matrix, warp_face
from benchmark.errors import DataError
from benchmark.faces.templates import SPHEREFACE_112x96

DATA = Path(__file__).resolve().parents[3] / "shared" / "data"
RAW = DATA / "lfw-raw-mini"
ALIGNED = DATA / "lfw" / "aligned-112x96"
needs_raw_lfw = pytest.mark.skipif(not (RAW.is_dir() and ALIGNED.is_dir()),
                                   reason="needs ../shared/data/lfw-raw-mini and lfw/aligned-112x96")


def _write(path, rgb):
    assert cv2.imwrite(str(path), rgb[:, :, ::-1] if rgb.ndim == 3 else rgb)
    return path


def _ramp(h, w):
    """R = x, G = y, B = 128 (uint8, exact for x, y < 256): bilinear and box averaging
    reproduce a linear ramp exactly, so the expected warp output is known in closed form."""
    y, x = np.mgrid[0:h, 0:w]
    return np.stack([x, y, np.full_like(x, 128)], axis=-1).astype(np.uint8)


def _no_detector(*_args, **_kwargs):
    raise AssertionError("MTCNN ran although every image was in the cache")


# ---- face choice ----------------------------------------------------------------

def test_choose_face_centre_weighted_size_hand_computed():
    # 250x250 image, centre (125, 125).
    edge_big = [0, 0, 120, 120]          # area 14400, offset^2 65^2+65^2 = 8450 -> -2500
    centred = [85, 75, 165, 175]         # area 8000, offset 0                 ->  8000
    assert choose_face(np.array([edge_big, centred]), (250, 250)) == 1
    near_bigger = [80, 60, 190, 190]     # area 14300, offset^2 10^2 + 0 = 100 -> 14100
    assert choose_face(np.array([edge_big, centred, near_bigger]), (250, 250)) == 2
    # Non-square image: centre is (W/2, H/2) = (200, 50).
    assert choose_face(np.array([[0, 0, 40, 40], [180, 30, 220, 70]]), (100, 400)) == 1


# ---- warp geometry ----------------------------------------------------------------

def _expected_ramp(matrix, out_hw):
    """Source (x, y) of every output pixel centre: the inverse of the 2x3 matrix."""
    inv = np.linalg.inv(np.vstack([matrix, [0, 0, 1]]))
    v, u = np.mgrid[0:out_hw[0], 0:out_hw[1]]
    x = inv[0, 0] * u + inv[0, 1] * v + inv[0, 2]
    y = inv[1, 0] * u + inv[1, 1] * v + inv[1, 2]
    return x, y


@pytest.mark.parametrize("scale", [0.8, 0.25])  # 0.25 goes through the INTER_AREA reduction
def test_warp_face_reproduces_ramp_under_rotation_and_scale(scale):
    img = _ramp(256, 256)
    a = math.radians(30)
    c, s = scale * math.cos(a), scale * math.sin(a)
    side = int(256 * scale * 1.6)  # the rotated source fits inside, with black around it
    centre = (side - 1) / 2 - np.array([[c, -s], [s, c]]) @ [127.5, 127.5]
    matrix = np.array([[c, -s, centre[0]], [s, c, centre[1]]])
    out = warp_face(img, matrix, (side, side))
    assert out.shape == (3, side, side) and out.dtype == np.float32
    x, y = _expected_ramp(matrix, (side, side))
    inside = (x > 4) & (x < 251) & (y > 4) & (y < 251)  # away from the black border
    # cv2 quantises sample positions to 1/32 px (of the reduced image when scale < 0.5).
    np.testing.assert_allclose(out[0][inside], x[inside] / 255, atol=1e-3)
    np.testing.assert_allclose(out[1][inside], y[inside] / 255, atol=1e-3)
    np.testing.assert_allclose(out[2][inside], 128 / 255, atol=1e-6)
    reach = 1 + 1 / scale  # one (reduced) source pixel beyond the edge may blend in
    far = (x < -reach) | (x > 255 + reach) | (y < -reach) | (y > 255 + reach)
    assert np.all(out[:, far] == 0)  # outside: black
    assert inside.mean() > 0.2 and far.mean() > 0.2


def test_warp_face_does_not_alias_when_shrinking_a_lot():
    checker = (np.indices((1000, 1000)).sum(0) % 2 * 255).astype(np.uint8)
    img = np.repeat(checker[:, :, None], 3, axis=2)
    matrix = np.array([[0.1, 0, 0], [0, 0.1, 0]])  # 1000 px -> 100 px, u = x / 10
    out = warp_face(img, matrix, (100, 100))
    # The true local mean, away from row/column 0 (whose pixels half overhang the edge).
    np.testing.assert_allclose(out[:, 1:, 1:], 0.5, atol=0.01)
    # Sanity of the fixture: plain bilinear sampling of it is far from the mean.
    naive = cv2.warpAffine(img.astype(np.float32) / 255, matrix, (100, 100), flags=cv2.INTER_LINEAR)
    assert np.abs(naive - 0.5).max() > 0.4


# ---- fallback ---------------------------------------------------------------------

def test_fallback_box_for_lfw_size_hand_computed():
    # 0.52 * 250 = 130 high, 130 * 96 / 112 = 111.43 wide, centre (125, 0.47 * 250 = 117.5).
    x0, y0, w, h = fallback_crop_box((250, 250), SPHEREFACE_112x96)
    np.testing.assert_allclose([x0, y0, w, h], [125 - 130 * 96 / 112 / 2, 52.5, 130 * 96 / 112, 130])


def test_no_face_gives_flagged_centre_crop(tmp_path):
    grey = _write(tmp_path / "grey.png", np.full((250, 250, 3), 128, np.uint8))
    ramp = _write(tmp_path / "ramp.png", _ramp(250, 250))
    res = MtcnnAligner(cache_dir=None).align_files([grey, ramp])
    assert res.fallback.tolist() == [True, True] and res.n_fallback == 2
    assert res.fallback_paths == [grey, ramp]
    assert np.isnan(res.landmarks).all() and np.isnan(res.probability).all()
    assert res.images.shape == (2, 3, 112, 96)
    np.testing.assert_allclose(res.images[0], 128 / 255, atol=1e-6)
    # Resize of the box x0 = 69.2857, y0 = 52.5, 111.43 x 130 to 96 x 112 (cv2.resize
    # pixel centres): source x = x0 + (u + 0.5) * 111.43 / 96 - 0.5, y likewise.
    u = np.arange(96)
    v = np.arange(112)
    x = 69.28571428571429 + (u + 0.5) * (111.42857142857143 / 96) - 0.5
    y = 52.5 + (v + 0.5) * (130 / 112) - 0.5
    np.testing.assert_allclose(res.images[1, 0], np.broadcast_to(x / 255, (112, 96)), atol=2e-4)
    np.testing.assert_allclose(res.images[1, 1], np.broadcast_to(y[:, None] / 255, (112, 96)), atol=2e-4)


# ---- errors -----------------------------------------------------------------------

def test_corrupt_or_missing_file_raises_data_error_naming_it(tmp_path):
    bad = tmp_path / "broken face.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 this is not a jpeg")
    with pytest.raises(DataError, match="broken face.jpg"):
        MtcnnAligner().align_files([bad])
    with pytest.raises(DataError, match="nobody.jpg"):
        MtcnnAligner().align_files([tmp_path / "nobody.jpg"])


def test_empty_list():
    res = MtcnnAligner().align_files([])
    assert res.images.shape == (0, 3, 112, 96) and res.n_fallback == 0


# ---- cache ------------------------------------------------------------------------

def test_cache_layout_hit_and_recovery(tmp_path, monkeypatch):
    files = [_write(tmp_path / "grey.png", np.full((250, 250, 3), 90, np.uint8)),
             _write(tmp_path / "ramp.png", _ramp(200, 240))]
    cache = tmp_path / "cache"
    first = MtcnnAligner(cache_dir=cache).align_files(files)
    assert not first.from_cache.any()
    folder = cache / "sphereface-112x96"
    expected = {hashlib.sha256(f.read_bytes()).hexdigest() + ".npz" for f in files}
    assert {p.name for p in folder.iterdir()} == expected  # and no temporary files left

    monkeypatch.setattr(MtcnnAligner, "detect", _no_detector)
    second = MtcnnAligner(cache_dir=cache).align_files(files)
    assert second.from_cache.all()
    assert second.fallback.tolist() == first.fallback.tolist() == [True, True]
    np.testing.assert_array_equal(second.images, first.images)

    # An unreadable entry is redone (so the detector runs again) and rewritten.
    monkeypatch.undo()
    entry = folder / (hashlib.sha256(files[0].read_bytes()).hexdigest() + ".npz")
    entry.write_bytes(b"PK\x03\x04 truncated")
    third = MtcnnAligner(cache_dir=cache).align_files(files)
    assert third.from_cache.tolist() == [False, True]
    with np.load(entry) as z:
        assert bool(z["fallback"])


def test_interrupted_cache_write_leaves_no_file(tmp_path, monkeypatch):
    img = _write(tmp_path / "grey.png", np.full((250, 250, 3), 60, np.uint8))
    real_savez = np.savez

    def savez_then_killed(f, **arrays):
        real_savez(f, **arrays)
        f.truncate(10)  # a half-written entry ...
        raise KeyboardInterrupt  # ... when the run is killed

    monkeypatch.setattr(alignment.np, "savez", savez_then_killed)
    with pytest.raises(KeyboardInterrupt):
        MtcnnAligner(cache_dir=tmp_path / "cache").align_files([img])
    assert list((tmp_path / "cache" / "sphereface-112x96").iterdir()) == []


# ---- real LFW photos ----------------------------------------------------------------

@pytest.fixture(scope="module")
def lfw_aligned(tmp_path_factory):
    paths = sorted(RAW.glob("*/*.jpg"))
    cache = tmp_path_factory.mktemp("align-cache")
    return paths, cache, MtcnnAligner(cache_dir=cache, batch_size=32).align_files(paths)


def _reference(paths):
    ref = [cv2.imread(str(ALIGNED / p.parent.name / p.name))[:, :, ::-1] for p in paths]
    return np.stack(ref).transpose(0, 3, 1, 2).astype(np.float32) / 255


@needs_raw_lfw
def test_lfw_raw_matches_prealigned_crops(lfw_aligned):
    paths, _, res = lfw_aligned
    assert len(paths) == 100 and res.n_fallback == 0
    ref = _reference(paths)
    mad = np.abs(res.images - ref).mean(axis=(1, 2, 3))
    corr = np.array([np.corrcoef(a.ravel(), b.ravel())[0, 1] for a, b in zip(res.images, ref)])
    # Measured: MAD mean 0.037, median 0.033, 90th percentile 0.058, max 0.110;
    # correlation median 0.96, min 0.77 (different MTCNN port, JPEG re-encoding of the
    # reference). A landmark order swap or a one-pixel shift raises the MAD mean.
    assert mad.mean() < 0.045 and np.median(mad) < 0.042
    assert np.quantile(mad, 0.9) < 0.075 and mad.max() < 0.15
    assert np.median(corr) > 0.93 and corr.min() > 0.7


@needs_raw_lfw
def test_lfw_landmarks_are_in_template_order(lfw_aligned):
    _, _, res = lfw_aligned
    lm = res.landmarks  # left eye, right eye, nose, mouth left, mouth right
    t = SPHEREFACE_112x96.points
    assert t[0, 0] < t[1, 0] and t[3, 0] < t[4, 0]
    assert (lm[:, 0, 0] < lm[:, 1, 0]).all() and (lm[:, 3, 0] < lm[:, 4, 0]).all()
    eyes_y, mouth_y = lm[:, :2, 1].mean(1), lm[:, 3:, 1].mean(1)
    assert ((eyes_y < lm[:, 2, 1]) & (lm[:, 2, 1] < mouth_y)).all()
    assert (res.probability > 0.9).all()


@needs_raw_lfw
def test_lfw_fallback_crop_frames_the_average_face(lfw_aligned):
    _, _, res = lfw_aligned
    m = fallback_matrix((250, 250), SPHEREFACE_112x96)
    mean_lm = res.landmarks.mean(0).astype(np.float64)
    mapped = mean_lm @ m[:, :2].T + m[:, 2]
    assert np.abs(mapped - SPHEREFACE_112x96.points).max() < 3.0  # px in the 112x96 crop


@needs_raw_lfw
def test_lfw_second_run_reads_cache_only(lfw_aligned, monkeypatch):
    paths, cache, first = lfw_aligned
    monkeypatch.setattr(MtcnnAligner, "detect", _no_detector)
    second = MtcnnAligner(cache_dir=cache).align_files(paths)
    assert second.from_cache.all()
    np.testing.assert_array_equal(second.images, first.images)
    np.testing.assert_array_equal(second.landmarks, first.landmarks)


@needs_raw_lfw
def test_grayscale_png_of_another_size_is_aligned(tmp_path, lfw_aligned):
    paths, _, _ = lfw_aligned
    colour = cv2.imread(str(paths[0]))
    grey = cv2.resize(cv2.cvtColor(colour, cv2.COLOR_BGR2GRAY), (300, 300), interpolation=cv2.INTER_CUBIC)
    gpath = _write(tmp_path / "grey face.png", grey)
    res = MtcnnAligner().align_files([gpath, paths[0]])  # two sizes in one chunk
    assert res.fallback.tolist() == [False, False]
    g = res.images[0]
    np.testing.assert_array_equal(g[0], g[1])
    np.testing.assert_array_equal(g[1], g[2])
    ref = _reference(paths[:1])[0]
    ref_grey = 0.299 * ref[0] + 0.587 * ref[1] + 0.114 * ref[2]
    assert np.abs(g[0] - ref_grey).mean() < 0.06
