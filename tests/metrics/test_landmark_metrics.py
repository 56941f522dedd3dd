"""LMD / NME with dlib's 68-point predictor and InsightFace's 2d106det, against the libraries
called directly here; faces without a detectable face are counted and named, not dropped."""
import glob
import os

import cv2
import numpy as np
import pytest
import yaml

from benchmark.engine import runner
from benchmark.engine.protocols import PROTOCOL_DIRS
from benchmark.engine.store import ResultStore
from benchmark.errors import ConfigError, DataError
from benchmark.faces.images import read_batch
from benchmark.faces.resize import upsample_bicubic
from benchmark.metrics import landmarks as L
from benchmark.contracts.metric import metric_spec
from benchmark.contracts.degradation import make_degradation

from conftest import LFW_ALIGNED, pairs_txt_images


@pytest.fixture
def faces(lfw_shared):
    paths = sorted(glob.glob(str(LFW_ALIGNED / "Colin_Powell" / "*.jpg")))[:6]
    hr = read_batch(paths)
    sr = np.clip(upsample_bicubic(make_degradation("bicubic", scale=4)(hr), (112, 96)), 0, 1).astype(np.float32)
    return sr, hr


def u8(x):
    return np.ascontiguousarray(np.clip(np.rint(x.transpose(1, 2, 0) * 255), 0, 255).astype(np.uint8))


def test_dlib68_against_dlib_directly(faces):
    import dlib
    import face_recognition_models

    sr, hr = faces
    det = dlib.get_frontal_face_detector()
    pred = dlib.shape_predictor(face_recognition_models.pose_predictor_model_location())
    want_lmd, want_nme = [], []
    for s, h in zip(sr, hr):
        rects = det(u8(h), 1)
        if not len(rects):
            want_lmd.append(np.nan), want_nme.append(np.nan)
            continue
        r = max(rects, key=lambda r: r.area())
        ph = np.array([[p.x, p.y] for p in pred(u8(h), r).parts()], float)
        ps = np.array([[p.x, p.y] for p in pred(u8(s), r).parts()], float)
        d = np.sqrt(((ps - ph) ** 2).sum(1)).mean()
        want_lmd.append(d), want_nme.append(d / np.hypot(*(ph[36] - ph[45])))
    assert not np.isnan(want_lmd).all()
    np.testing.assert_allclose(metric_spec("lmd_dlib68").per_image(sr, hr), want_lmd, rtol=1e-12)
    np.testing.assert_allclose(metric_spec("nme_dlib68").per_image(sr, hr), want_nme, rtol=1e-12)
    np.testing.assert_array_equal(np.nan_to_num(metric_spec("lmd_dlib68").per_image(hr, hr), nan=-1) <= 0, True)


def test_2d106_against_onnxruntime_directly(faces):
    import onnxruntime as ort

    sr, hr = faces
    sess = ort.InferenceSession(str(L.model_path("2d106")), providers=["CPUExecutionProvider"])
    s = 192 / 112  # the 112x96 frame's longer side spans the 192 input, centred

    def pts(img):
        m = np.float32([[s, 0, 96 - s * 48], [0, s, 96 - s * 56]])
        crop = cv2.warpAffine(u8(img)[:, :, ::-1], m, (192, 192))  # BGR, as insightface reads
        blob = cv2.dnn.blobFromImage(crop, 1.0, (192, 192), (0, 0, 0), swapRB=True)
        out = sess.run(None, {sess.get_inputs()[0].name: blob})[0].reshape(-1, 2).astype(np.float64)
        inv = cv2.invertAffineTransform(m)
        return ((out + 1) * 96) @ inv[:, :2].T.astype(np.float64) + inv[:, 2]

    want = [np.linalg.norm(pts(a) - pts(b), axis=1).mean() for a, b in zip(sr, hr)]
    iod = [np.linalg.norm(pts(b)[35] - pts(b)[93]) for b in hr]
    np.testing.assert_allclose(metric_spec("lmd_2d106").per_image(sr, hr), want, rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(metric_spec("nme_2d106").per_image(sr, hr), np.divide(want, iod), rtol=1e-4, atol=1e-4)
    # the outer eye corners of both backends agree on a real face (the normalisers are alike)
    _, h68 = L.landmarks_dlib68(hr[:1], hr[:1])
    _, h106 = L.landmarks_2d106(hr[:1], hr[:1])
    if not np.isnan(h68).any():
        assert np.abs(h68[0, [36, 45]] - h106[0, [35, 93]]).max() < 4


def test_no_face_is_nan_not_zero():
    blank = np.full((2, 3, 112, 96), 0.5, np.float32)
    assert np.isnan(metric_spec("lmd_dlib68").per_image(blank, blank)).all()


def test_missing_or_corrupt_model_files_and_unknown_backends(tmp_path, monkeypatch):
    with pytest.raises(ConfigError, match="unknown landmark backend 'sift'"):
        L.model_path("sift")
    monkeypatch.setenv("FHBENCH_LANDMARKS_DLIB68", str(tmp_path / "none.dat"))
    with pytest.raises(DataError, match=r"none\.dat of backend dlib68 is missing"):
        L.landmarks_dlib68(np.zeros((1, 3, 8, 8)), np.zeros((1, 3, 8, 8)))
    bad = tmp_path / "bad.dat"
    bad.write_bytes(b"\x00" * 100)
    monkeypatch.setenv("FHBENCH_LANDMARKS_DLIB68", str(bad))
    with pytest.raises(DataError, match=r"bad\.dat is corrupt"):
        L.landmarks_dlib68(np.zeros((1, 3, 8, 8)), np.zeros((1, 3, 8, 8)))
    monkeypatch.setenv("FHBENCH_LANDMARKS_2D106", str(bad))
    with pytest.raises(DataError, match=r"bad\.dat is corrupt"):
        L.landmarks_2d106(np.zeros((1, 3, 8, 8)), np.zeros((1, 3, 8, 8)))


def test_a_run_counts_and_names_faces_without_landmarks(tiny_lfw, lfw_shared, tmp_path, proto_dir):
    blank_rel = "Hugo_Chavez/Hugo_Chavez_0002.jpg"
    # no face, and not flat (a flat image is its own bicubic SR: identical images take LMD 0)
    noise = np.random.default_rng(0).integers(0, 256, (112, 96, 3)).astype(np.uint8)
    assert cv2.imwrite(str(tiny_lfw / "aligned-112x96" / blank_rel), noise)
    spec = yaml.safe_load((PROTOCOL_DIRS[0] / "lfw-10fold.yaml").read_text())
    spec.update(name="toy-lmd", metrics=["lmd_dlib68", "lmd_dlib68_std", "nme_dlib68", "lmd_2d106", "accuracy"],
                primary_metric="lmd_dlib68")
    (proto_dir / "toy-lmd.yaml").write_text(yaml.safe_dump(spec))
    res = runner.run(runner.RunOptions(model="bicubic", protocol="toy-lmd", scale=4, data_root=str(tiny_lfw),
                                       store=str(tmp_path / "r.sqlite"), cache_dir="", progress=False))
    m, man = res["metrics"], res["manifest"]
    rels = [str(p.relative_to(tiny_lfw / "aligned-112x96")) for p in pairs_txt_images(tiny_lfw)]
    st = ResultStore(tmp_path / "r.sqlite")
    (row,) = st.runs(model="bicubic")
    arr = st.arrays(row.id)["lmd_dlib68"]
    failed = [r for r, v in zip(rels, arr) if np.isnan(v)]
    assert blank_rel in failed and m["lmd_dlib68_n_failed"] == len(failed)
    assert man["metric_failures"]["images"]["lmd_dlib68"] == failed
    assert m["lmd_dlib68"] == pytest.approx(np.nanmean(arr), rel=1e-12) and m["lmd_dlib68"] > 0
    assert m["lmd_2d106_n_failed"] == 0 and np.isfinite(m["lmd_2d106"])
    s = man["image_metric_settings"]["lmd_dlib68"]
    assert (s["backend"], s["points"]) == ("dlib68", 68) and len(s["sha256"]) == 64
    assert metric_spec("nme_dlib68").header == "NME dlib 68 pt (/IOD)"


def test_protocols_that_do_not_list_landmarks_do_not_compute_them(tiny_lfw, tmp_path, monkeypatch):
    def boom(*a, **k):
        raise AssertionError("landmarks computed")

    monkeypatch.setattr(L, "_distances", boom)
    res = runner.run(runner.RunOptions(model="bicubic", protocol="lfw-10fold", scale=8, data_root=str(tiny_lfw),
                                       store=str(tmp_path / "r.sqlite"), cache_dir="", progress=False))
    assert not any(k.startswith(("lmd", "nme")) for k in res["metrics"])
