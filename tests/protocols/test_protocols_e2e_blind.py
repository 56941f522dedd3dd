"""The blind protocols end to end (lfw-10fold-blind, lfw-blufr-blind, celeba-blind) on the
small LFW and CelebA fixtures of the other end-to-end tests: every image degraded as the
documented pipeline does it through OpenCV (test_blind_degradation.oracle_lr), the stored
per-image parameters drawn independently, PSNR and IDS against oracles computed here."""
import numpy as np
import pytest

from benchmark.faces.resize import upsample_bicubic
from benchmark.faces.templates import SPHEREFACE_112x96

from e2e_protocols import (  # noqa: F401 (calls, oracle: fixtures, used by name)
    calls, cos, exercise, oracle, psnr_oracle, smaller_copy, stored_arrays, tenfold_loop)
from test_blind_degradation import oracle_lr, oracle_params
from test_protocols_e2e_lfw import lfw, lfw_faces  # noqa: F401 (lfw: a fixture)
from test_protocols_e2e_others import celeba, celeba_faces_x8  # noqa: F401 (celeba: a fixture)


def blind_sr(hr, keys, scale):
    """What the bicubic model returns on the blind LR: MATLAB bicubic up to HR size, clipped."""
    lr_hw = (hr.shape[-2] // scale, hr.shape[-1] // scale)
    lr = np.stack([oracle_lr(h, k, lr_hw) for h, k in zip(hr, keys)])
    return np.clip(upsample_bicubic(lr, hr.shape[-2:]), 0, 1).astype(np.float32)


def check_blind(tmp_path, protocol, bic, hr, keys, sr, oracle):
    arrays = stored_arrays(tmp_path, protocol, "bicubic")
    for name in ("sigma", "r", "noise", "jpeg"):
        np.testing.assert_array_equal(arrays[f"degradation_{name}"], [oracle_params(k)[1][name] for k in keys])
    assert bic["manifest"]["degradation_params"]["arrays"]["x8"] == [
        "degradation_sigma", "degradation_r", "degradation_noise", "degradation_jpeg"]
    assert bic["manifest"]["degradation"]["jpeg_encoder"]["library"] == "opencv"
    m = bic["metrics"]
    assert m["psnr"] == pytest.approx(psnr_oracle(sr, hr).mean(), rel=1e-9)
    hr_emb = oracle.embed([(k, "hr") for k in keys], hr, SPHEREFACE_112x96)
    sr_emb = oracle.embed([(k, "blind-x8") for k in keys], sr, SPHEREFACE_112x96)
    ids = np.array([cos(a, b) for a, b in zip(sr_emb, hr_emb)])
    np.testing.assert_allclose(arrays["ids"], ids, atol=1e-5)
    assert m["idd"] == pytest.approx(np.degrees(np.arccos(np.clip(ids, -1, 1))).mean(), abs=1e-3)
    return sr_emb


def test_lfw_10fold_blind(lfw_shared, lfw, tmp_path, calls, oracle):
    used = list(dict.fromkeys(r for a, b, _, _ in lfw.pairs for r in (a, b)))
    bic, _ = exercise(lfw.root, tmp_path, "lfw-10fold-blind", calls, scale=8, n_images=len(used),
                      n_embedded=2 * len(used))
    hr, keys = lfw_faces(lfw, used)
    sr = blind_sr(hr, keys, 8)
    emb = check_blind(tmp_path, "lfw-10fold-blind", bic, hr, keys, sr, oracle)
    index = {r: i for i, r in enumerate(used)}
    scores = np.array([cos(emb[index[a]], emb[index[b]]) for a, b, _, _ in lfw.pairs])
    acc, _ = tenfold_loop(scores, np.array([p[2] for p in lfw.pairs]), np.array([p[3] for p in lfw.pairs]))
    assert bic["metrics"]["accuracy"] == pytest.approx(acc, abs=1e-12)


def test_lfw_blufr_blind(lfw_shared, lfw, tmp_path, calls, oracle):
    n = len(lfw.blufr_order)
    bic, _ = exercise(lfw.root, tmp_path, "lfw-blufr-blind", calls, scale=8, n_images=n, n_embedded=2 * n)
    hr, keys = lfw_faces(lfw, lfw.blufr_order)
    check_blind(tmp_path, "lfw-blufr-blind", bic, hr, keys, blind_sr(hr, keys, 8), oracle)


def test_celeba_blind(shared_data, celeba, tmp_path, proto_dir, calls, oracle):
    smaller_copy(proto_dir, "celeba-blind", "selection_args", images_per_identity=4)
    files = sorted(f for f, i in celeba.identity.items() if i in celeba.knn_ids)
    bic, _ = exercise(celeba.root, tmp_path, "celeba-blind", calls, scale=8, n_images=len(files),
                      n_embedded=2 * len(files), n_detected=len(files))
    hr, keys, _ = celeba_faces_x8(celeba, files, oracle)
    check_blind(tmp_path, "celeba-blind", bic, hr, keys, blind_sr(hr, keys, 8), oracle)
