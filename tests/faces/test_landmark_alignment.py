"""Aligning a face from given landmarks (4 points: eyes, nose, mouth centre; or 5) to any
template, including one resized to an LR size. Oracles: a real aligned LFW face moved by a
known similarity must come back; the matrix must be the known similarity's inverse."""
import re

import cv2
import numpy as np
import pytest

from benchmark.faces.faceset import FaceSet
from benchmark.faces.landmark_alignment import align_faces, align_image, landmark_matrix, template_points
from benchmark.errors import DataError
from benchmark.faces.templates import ARCFACE_112x112, SPHEREFACE_112x96

from conftest import LFW_ALIGNED


def aligned_face():
    """A real 112x96 aligned LFW face (RGB), or a smooth synthetic one without ../shared/data."""
    path = LFW_ALIGNED / "Colin_Powell" / "Colin_Powell_0001.jpg"
    if path.is_file():
        return cv2.imread(str(path))[:, :, ::-1].copy()
    small = np.random.default_rng(0).random((14, 12, 3))
    return (cv2.resize(small, (96, 112), interpolation=cv2.INTER_CUBIC).clip(0, 1) * 255).astype(np.uint8)


def similarity(scale, degrees, tx, ty):
    a = np.deg2rad(degrees)
    return np.array([[scale * np.cos(a), -scale * np.sin(a), tx], [scale * np.sin(a), scale * np.cos(a), ty]])


def apply(m, pts):
    return pts @ m[:, :2].T + m[:, 2]


def test_four_template_points_use_the_mouth_centre():
    pts = template_points(SPHEREFACE_112x96, 4)
    # ArcFace template minus 8 px in x; mouth centre by hand: mean of the two corners.
    np.testing.assert_allclose(pts[:3], [[30.2946, 51.6963], [65.5318, 51.5014], [48.0252, 71.7366]])
    np.testing.assert_allclose(pts[3], [(33.5493 + 62.7299) / 2, (92.3655 + 92.2041) / 2])
    np.testing.assert_allclose(template_points(SPHEREFACE_112x96, 5), SPHEREFACE_112x96.points)


@pytest.mark.parametrize("n", [4, 5])
def test_matrix_inverts_a_known_similarity(n):
    move = similarity(2.5, 20.0, 130.0, -40.0)
    source_points = apply(move, template_points(ARCFACE_112x112, n))
    m = landmark_matrix(source_points, ARCFACE_112x112)
    inverse = np.linalg.inv(np.vstack([move, [0, 0, 1]]))[:2]
    np.testing.assert_allclose(m, inverse, atol=1e-9)


@pytest.mark.parametrize("n", [4, 5])
def test_a_moved_face_comes_back(n):
    face = aligned_face()
    move = similarity(1.8, -12.0, 60.0, 70.0)
    photo = cv2.warpAffine(face, move, (320, 300), flags=cv2.INTER_CUBIC)
    points = apply(move, template_points(SPHEREFACE_112x96, n))
    out = align_image(photo, points, SPHEREFACE_112x96)
    assert out.shape == (3, 112, 96) and out.dtype == np.float32
    back = out.transpose(1, 2, 0) * 255
    inner = (slice(8, -8), slice(8, -8))  # the border loses pixels to the two resamplings
    err = np.abs(back[inner] - face[inner]).mean()
    other = np.abs(np.roll(face, 6, axis=1)[inner].astype(float) - face[inner]).mean()
    assert err < 4.0 and err < other / 3, (err, other)


@pytest.mark.skipif(not LFW_ALIGNED.is_dir(), reason="needs ../shared/data/lfw: the tolerance holds for a real face, "
                    "not for the synthetic noise face")
def test_lr_template_gives_the_face_at_lr_size():
    face = aligned_face()
    move = similarity(2.0, 8.0, 40.0, 30.0)
    photo = cv2.warpAffine(face, move, (300, 320), flags=cv2.INTER_CUBIC)
    points = apply(move, template_points(SPHEREFACE_112x96, 4))
    lr = SPHEREFACE_112x96.resized(16, 14)
    out = align_image(photo, points, lr)
    assert out.shape == (3, 16, 14)
    # Oracle: the aligned face box-reduced to 16x14 directly.
    expected = cv2.resize(face, (14, 16), interpolation=cv2.INTER_AREA).astype(float)
    err = np.abs(out.transpose(1, 2, 0) * 255 - expected)[2:-2, 2:-2].mean()
    assert err < 6.0, err


@pytest.mark.parametrize("points,message", [
    (np.zeros((3, 2)), "4 or 5 points, got 3"),
    (np.zeros((4, 3)), "shape (4, 3)"),
    (np.array([[1, 2], [3, np.nan], [5, 6], [7, 8]]), "finite"),
    (np.full((4, 2), 7.0), "all one point"),
])
def test_bad_landmarks(points, message):
    with pytest.raises(DataError, match=re.escape(message)):
        landmark_matrix(points, SPHEREFACE_112x96)


def test_align_faces_needs_landmarks_and_names_the_image(tmp_path):
    face = aligned_face()
    cv2.imwrite(str(tmp_path / "a.png"), face[:, :, ::-1])
    pts = template_points(SPHEREFACE_112x96, 4)
    faces = FaceSet("t", tmp_path, ["a.png", "b.png"], np.array([0, 0]), ["x"], None,
                    landmarks=np.stack([pts, np.full((4, 2), 3.0)]))
    out = align_faces(faces, SPHEREFACE_112x96, indices=[0])
    np.testing.assert_allclose(out[0].transpose(1, 2, 0) * 255, face, atol=0.51)  # identity warp
    with pytest.raises(DataError, match=re.escape(str(tmp_path / "b.png"))):
        align_faces(faces, SPHEREFACE_112x96)
    faces.landmarks = None
    with pytest.raises(DataError, match="carry no landmarks"):
        align_faces(faces, SPHEREFACE_112x96)
