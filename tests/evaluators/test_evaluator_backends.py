"""Evaluator backends (issue 13): SFace and ArcFace-MBF as converted torch modules on --device,
onnxruntime as the reference; facenet on the device, dlib on the CPU.

Oracle: the onnxruntime backend (the default, which produced every stored figure) on the same
faces; real aligned LFW faces when ../shared/data is present, synthetic faces otherwise.
"""
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from benchmark.errors import ConfigError, EvaluatorUnavailable, UnknownNameError
from benchmark.evaluators import create_evaluator
from benchmark.faces.frames import warp_to_template, warp_to_template_torch
from benchmark.faces.templates import ARCFACE_112x112, SPHEREFACE_112x96
from benchmark.registry import EVALUATORS

ONNX = ["sface", "arcface-mbf"]
CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
TOL = 1e-5  # max abs difference between L2-normalised embeddings (issue 13)


def _needs(name):
    why = EVALUATORS.entry(name).why_unavailable()
    if why:
        pytest.skip(why)


def _synthetic_faces(n, seed=0):
    """Smooth random 112x96 RGB faces in [0, 1] (low-frequency noise, bicubic-upsampled)."""
    import cv2

    rng = np.random.default_rng(seed)
    out = np.empty((n, 3, 112, 96), np.float32)
    for i in range(n):
        small = rng.random((14, 12, 3)).astype(np.float32)
        out[i] = np.clip(cv2.resize(small, (96, 112), interpolation=cv2.INTER_CUBIC), 0, 1).transpose(2, 0, 1)
    return out


def _lfw_faces(lfw_root: Path, n: int) -> np.ndarray:
    """n real aligned LFW faces, spread over the whole (sorted) image list."""
    from benchmark.faces.images import read_batch

    files = sorted((lfw_root / "aligned-112x96").glob("*/*.jpg"))
    assert len(files) >= n
    pick = np.linspace(0, len(files) - 1, n).round().astype(int)
    return read_batch([files[i] for i in pick])


def _cache_key(desc: dict) -> str:
    return hashlib.sha256(json.dumps(desc, sort_keys=True).encode()).hexdigest()


# --- equality with onnxruntime -------------------------------------------------------------

# the other backends, each with its largest max abs difference from onnxruntime allowed:
# torch issue 13's 1e-5; onnxruntime-fast 1e-6 (measured within 9e-8, benchmark/onnx_prelu.py)
OTHER_BACKENDS = {"torch": TOL, "onnxruntime-fast": 1e-6}


@pytest.mark.parametrize("backend", OTHER_BACKENDS)
@pytest.mark.parametrize("name", ONNX)
def test_other_backends_match_onnxruntime_on_synthetic_faces(name, backend):
    _needs(name)
    tol = OTHER_BACKENDS[backend]
    ort = create_evaluator(name, batch_size=16)
    other = create_evaluator(name, batch_size=16, backend=backend)
    assert (ort.backend, other.backend) == ("onnxruntime", backend) and other.describe()["backend"] == backend
    assert _cache_key(ort.describe()) != _cache_key(other.describe())  # never mixed in a cache
    if backend == "onnxruntime-fast":
        assert "device" not in other.describe()  # onnxruntime: the CPU whatever --device says
    faces = _synthetic_faces(40)
    a, b = ort.embed(faces), other.embed(faces)
    assert a.shape == b.shape == (40, ort.embedding_dim) and b.dtype == np.float32
    diff = np.abs(a - b).max()
    assert diff < tol, diff
    # and it is a real comparison: the two faces' embeddings differ far more than that
    assert np.abs(a[0] - a[1]).max() > 100 * tol


@pytest.mark.shared_data
@pytest.mark.parametrize("backend", OTHER_BACKENDS)
@pytest.mark.parametrize("name", ONNX)
def test_other_backends_match_onnxruntime_on_1000_real_lfw_faces(name, backend, lfw_shared):
    _needs(name)
    faces = _lfw_faces(lfw_shared, 1000)
    a = create_evaluator(name, batch_size=100).embed(faces)
    b = create_evaluator(name, batch_size=100, backend=backend).embed(faces)
    diff = np.abs(a - b).max()
    print(f"{name}: max abs difference {backend} vs onnxruntime over 1000 LFW faces = {diff:.3g}")
    assert diff < OTHER_BACKENDS[backend], diff
    # the identities come out the same: each face's nearest other face is unchanged
    sa, sb = a @ a.T, b @ b.T
    np.fill_diagonal(sa, -2)
    np.fill_diagonal(sb, -2)
    assert (sa.argmax(1) == sb.argmax(1)).mean() > 0.999


@pytest.mark.parametrize("name", ONNX)
def test_embed_torch_stays_a_tensor_and_equals_embed(name):
    _needs(name)
    ev = create_evaluator(name, batch_size=7, backend="torch")
    faces = _synthetic_faces(10, seed=1)
    out = ev.embed_torch(torch.from_numpy(faces))
    assert isinstance(out, torch.Tensor) and out.dtype == torch.float32 and out.device.type == "cpu"
    np.testing.assert_allclose(out.numpy(), ev.embed(faces), rtol=0, atol=1e-6)
    # the onnxruntime backend takes tensors too (through NumPy) and gives its own embeddings
    ort = create_evaluator(name)
    np.testing.assert_array_equal(ort.embed_torch(torch.from_numpy(faces)).numpy(), ort.embed(faces))


def test_torch_warp_is_the_numpy_warp():
    x = _synthetic_faces(3, seed=2)
    got = warp_to_template_torch(torch.from_numpy(x), SPHEREFACE_112x96, ARCFACE_112x112).numpy()
    np.testing.assert_array_equal(got, warp_to_template(x, SPHEREFACE_112x96, ARCFACE_112x112))
    assert got.shape == (3, 3, 112, 112) and np.all(got[..., :8] == 0) and np.all(got[..., -8:] == 0)
    # a non-translation warp (to facenet's 160x160) goes through the NumPy warp: equal too
    dst = ARCFACE_112x112.resized(160, 160)
    got = warp_to_template_torch(torch.from_numpy(x), SPHEREFACE_112x96, dst).numpy()
    np.testing.assert_array_equal(got, warp_to_template(x, SPHEREFACE_112x96, dst))


@CUDA
@pytest.mark.parametrize("name", ONNX)
def test_torch_backend_on_cuda_matches_onnxruntime(name):
    _needs(name)
    faces = _synthetic_faces(32, seed=3)
    ort = create_evaluator(name).embed(faces)
    ev = create_evaluator(name, backend="torch", device="cuda")
    assert next(ev._net.parameters()).device.type == "cuda"
    assert ev.describe()["device"] == "cuda"
    assert np.abs(ev.embed(faces) - ort).max() < TOL
    out = ev.embed_torch(torch.from_numpy(faces).cuda())
    assert out.device.type == "cuda" and np.abs(out.cpu().numpy() - ort).max() < TOL


# --- what identifies the evaluator ---------------------------------------------------------

def test_default_backend_is_onnxruntime_and_description_names_the_backend():
    _needs("sface")
    ort = create_evaluator("sface")
    tor = create_evaluator("sface", backend="torch")
    assert ort.backend == "onnxruntime" and ort.describe()["backend"] == "onnxruntime"
    assert "device" not in ort.describe()  # onnxruntime runs on the CPU whatever --device says
    assert tor.describe()["backend"] == "torch" and tor.describe()["device"] == "cpu"
    # the rest of the description (weights, crop) is the same; the cache keys differ
    same = {k: v for k, v in tor.describe().items() if k not in ("backend", "device")}
    assert same == {k: v for k, v in ort.describe().items() if k != "backend"}
    assert _cache_key(ort.describe()) != _cache_key(tor.describe())


def test_auto_backend_falls_back_to_onnxruntime_when_the_converter_refuses(monkeypatch):
    _needs("sface")
    from benchmark import onnx_torch

    assert create_evaluator("sface", backend="auto").backend == "torch"

    def refuse(path):
        raise onnx_torch.OnnxConversionError(f"{path}: node 7 uses the ONNX operator Resize")

    monkeypatch.setattr(onnx_torch, "convert_onnx", refuse)
    ev = create_evaluator("sface", backend="auto")
    assert ev.backend == "onnxruntime" and ev.describe()["backend"] == "onnxruntime"
    with pytest.raises(EvaluatorUnavailable) as err:
        create_evaluator("sface", backend="torch")
    msg = str(err.value)
    assert msg.startswith("sface: the torch backend cannot take") and "Resize" in msg and "\n" not in msg


# --- bad options ---------------------------------------------------------------------------

@pytest.mark.parametrize("name,backend", [("sface", "tensorrt"), ("arcface-mbf", "Torch"), ("dlib", "torch"),
                                          ("facenet-vggface2", "onnxruntime")])
def test_unknown_backend_is_a_one_line_config_error(name, backend):
    with pytest.raises(ConfigError) as err:
        create_evaluator(name, backend=backend)
    msg = str(err.value)
    assert repr(backend) in msg and name in msg and "\n" not in msg


def test_precision_other_than_fp32_needs_the_torch_backend():
    # create_evaluator is where both the runner and a Dask worker get their evaluator
    with pytest.raises(ConfigError, match=r"^--precision bf16 needs an evaluator on torch; sface runs on onnxruntime"):
        create_evaluator("sface", precision="bf16")
    assert create_evaluator("sface", backend="torch", precision="bf16").precision == "bf16"
    assert create_evaluator("sface").precision == "fp32"


def test_unknown_evaluator_is_still_an_unknown_name():
    with pytest.raises(UnknownNameError):
        create_evaluator("sfaec", backend="torch")


@pytest.mark.parametrize("device", ["tpu", "cuda:banana"] + ([] if torch.cuda.is_available() else ["cuda"]))
def test_bad_device_for_the_torch_backend_is_a_one_line_config_error(device):
    _needs("sface")
    with pytest.raises(ConfigError) as err:
        create_evaluator("sface", backend="torch", device=device)
    assert repr(device) in str(err.value) and "\n" not in str(err.value)


# --- facenet on the device, dlib on the CPU ------------------------------------------------

def test_facenet_network_is_on_the_device_and_records_it(tmp_path):
    pytest.importorskip("facenet_pytorch")
    from facenet_pytorch import InceptionResnetV1

    torch.manual_seed(0)
    path = tmp_path / "facenet.pt"
    torch.save(InceptionResnetV1(pretrained=None, classify=False).state_dict(), path)
    ev = create_evaluator("facenet-vggface2", weights=str(path), device="cpu")
    assert ev.backend == "torch" and ev.describe()["device"] == "cpu"
    assert {p.device.type for p in ev._net.parameters()} == {"cpu"}
    if torch.cuda.is_available():
        gpu = create_evaluator("facenet-vggface2", weights=str(path), device="cuda")
        assert {p.device.type for p in gpu._net.parameters()} == {"cuda"}
        faces = _synthetic_faces(4)
        assert np.abs(gpu.embed(faces) - ev.embed(faces)).max() < TOL
    else:
        with pytest.raises(ConfigError, match="no CUDA GPU"):
            create_evaluator("facenet-vggface2", weights=str(path), device="cuda")


def test_fhbench_evaluators_says_where_each_runs():
    from click.testing import CliRunner

    from benchmark.cli import main

    lines = CliRunner().invoke(main, ["evaluators"]).output.splitlines()

    def block(name):
        i = next(k for k, line in enumerate(lines) if line.split()[1] == name)
        return lines[i + 1:i + 3]

    licence, where = block("dlib")
    assert licence.strip().startswith("licence: ") and "CPU whatever --device says" in where
    assert "backends: dlib" in where
    _, where = block("sface")
    assert "onnxruntime (default" in where and "torch (on --device" in where
    _, where = block("facenet-vggface2")
    assert "runs on --device" in where


def test_the_cli_offers_exactly_the_onnx_evaluators_backends():
    from benchmark.cli import main
    from benchmark.contracts.evaluator import OnnxEvaluator

    for command in ("run", "sweep", "score"):
        (option,) = [p for p in main.commands[command].params if p.name == "backend"]
        assert sorted(option.type.choices) == sorted(OnnxEvaluator.backends), command
