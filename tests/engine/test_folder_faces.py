"""The face cut of a free-form score: a face placed in an FFHQ 512x512 crop by facexlib's
template (the placement built here with OpenCV from the published five points) is cut back
into fhbench's 112x96 frame; and a 112x96 face in fhbench's frame goes to the evaluators as
it is."""
import cv2
import numpy as np

from benchmark.engine.folder_faces import cut, face_cuts

FFHQ_POINTS = np.array([[192.98138, 239.94708], [318.90277, 240.1936], [256.63416, 314.01935],
                        [201.26117, 371.41043], [313.08905, 371.15118]], np.float32)
SPHEREFACE_POINTS = np.array([[30.2946, 51.6963], [65.5318, 51.5014], [48.0252, 71.7366],
                              [33.5493, 92.3655], [62.7299, 92.2041]], np.float32)


def test_ffhq_crop_is_cut_back_to_the_frame(tiny_lfw):
    face = cv2.imread(str(sorted((tiny_lfw / "aligned-112x96").rglob("*.jpg"))[0]))[:, :, ::-1]
    # place the 112x96 face in a 512x512 FFHQ crop (OpenCV's own similarity fit of the two templates)
    m, _ = cv2.estimateAffinePartial2D(SPHEREFACE_POINTS, FFHQ_POINTS, method=cv2.LMEDS)
    canvas = cv2.warpAffine(np.ascontiguousarray(face), m, (512, 512), flags=cv2.INTER_CUBIC)
    cuts = face_cuts(None, [(512, 512)], "ffhq", ["k"])
    back = cut(canvas, cuts.matrices[0])
    assert back.shape == (3, 112, 96)
    inner = (slice(None), slice(20, 100), slice(16, 80))  # the face, away from the frame's edge
    err = np.abs(back[inner] - face.transpose(2, 0, 1)[inner] / 255.0)
    assert err.mean() < 0.03  # a cut misplaced by a few pixels gives several times this
    shifted = cut(canvas, cuts.matrices[0] + np.array([[0, 0, 4], [0, 0, 0]]))
    assert np.abs(shifted[inner] - face.transpose(2, 0, 1)[inner] / 255.0).mean() > 2 * err.mean()


def test_a_face_in_fhbench_frame_is_fed_as_it_is():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (112, 96, 3), dtype=np.uint8)
    cuts = face_cuts(None, [(112, 96), (224, 192)], "sphereface-112x96", ["a", "b"])
    assert cuts.matrices[0] is None and cuts.matrices[1] is not None
    np.testing.assert_array_equal(cut(img, None), img.transpose(2, 0, 1) / np.float32(255))
    np.testing.assert_allclose(cuts.matrices[1], [[0.5, 0, -0.25], [0, 0.5, -0.25]], atol=1e-9)
