"""Bad evaluator weights are one line naming the evaluator and the file, at construction,
before any image work; facenet's published weights are SHA256-checked (issue 11)."""
import hashlib
import re
import shutil

import numpy as np
import pytest

from benchmark.errors import EvaluatorUnavailable
from benchmark.evaluators import create_evaluator
from benchmark.contracts.evaluator import Evaluator
from benchmark.registry import EVALUATORS
from benchmark.faces.templates import ARCFACE_112x112

VGG = "20180402-114759-vggface2.pt"


def _needs(name):
    why = EVALUATORS.entry(name).why_unavailable()
    if why:
        pytest.skip(why)


def _refused(name, weights, *fragments):
    with pytest.raises(EvaluatorUnavailable) as err:
        create_evaluator(name, weights=str(weights))
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith(f"{name}: ") and str(weights) in msg, msg
    for fragment in fragments:
        assert re.search(fragment, msg), (fragment, msg)
    return msg


def _flatten_gemm_onnx(path, hw=(112, 112), out_dim=8):
    """x (N, 3, h, w) -> Flatten -> Gemm -> (N, out_dim): an ONNX graph of some other network."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    n_in = 3 * hw[0] * hw[1]
    w = np.random.default_rng(0).standard_normal((n_in, out_dim)).astype(np.float32) * 1e-3
    graph = helper.make_graph(
        [helper.make_node("Flatten", ["x"], ["f"], axis=1), helper.make_node("Gemm", ["f", "w"], ["y"])],
        "other", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, *hw])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", out_dim])], [numpy_helper.from_array(w, "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


# --- ONNX evaluators ---------------------------------------------------------------------

@pytest.mark.parametrize("name", ["sface", "arcface-mbf"])
def test_onnx_evaluators_refuse_garbage_and_a_torch_pickle(tmp_path, name):
    _needs(name)
    garbage = tmp_path / "weights.onnx"
    garbage.write_bytes(bytes(range(256)) * 40)
    _refused(name, garbage, "is not an ONNX model onnxruntime can run", "--evaluator-weights")
    import torch

    pickle = tmp_path / VGG
    torch.save({"conv.weight": torch.zeros(2, 2)}, pickle)
    _refused(name, pickle, "is not an ONNX model")


def test_an_onnx_of_another_network_is_refused_before_any_image(tmp_path):
    _needs("sface")
    _refused("sface", _flatten_gemm_onnx(tmp_path / "eight.onnx"),
             r"gives embeddings of shape \(2, 8\) for 2 faces, not \(2, 128\): it is not the sface network")
    _refused("sface", _flatten_gemm_onnx(tmp_path / "small_input.onnx", hw=(32, 32), out_dim=128),
             r"failed on input of shape \(2, 3, 112, 112\)")


def test_the_torch_copy_of_another_onnx_network_is_refused(tmp_path):
    _needs("sface")
    from benchmark.onnx_torch import identity_network

    path = _flatten_gemm_onnx(tmp_path / "eight.onnx")
    with pytest.raises(EvaluatorUnavailable, match=r"^sface: the network in .*eight\.onnx gives embeddings of "
                                                   r"shape \(8,\), not \(128,\)"):
        identity_network("sface", weights=str(path))
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"\x08\x07" + bytes(range(200)))
    with pytest.raises(EvaluatorUnavailable, match=r"^sface: .*garbage\.onnx"):
        identity_network("sface", weights=str(garbage))


# --- a network that fails or misbehaves at run time --------------------------------------

class _Stub(Evaluator):
    name = "stub"
    template = ARCFACE_112x112
    embedding_dim = 4
    behaviour = "ok"

    def _embed_crops(self, crops):
        if self.behaviour == "raise":
            raise RuntimeError("[ONNXRuntimeError] : 2 : INVALID_ARGUMENT : Got invalid dimensions\nmore detail")
        if self.behaviour == "one-row":  # would broadcast into every row of the batch
            return np.ones((1, 4), np.float32)
        return np.ones((len(crops), 4), np.float32)


def test_a_network_error_mid_run_is_one_line_naming_it(tmp_path):
    weights = tmp_path / "stub.bin"
    weights.write_bytes(b"x")
    ev = _Stub(weights=str(weights), batch_size=3)
    faces = np.zeros((5, 3, 112, 96), np.float32)
    assert ev.embed(faces).shape == (5, 4)
    ev.behaviour = "raise"
    with pytest.raises(EvaluatorUnavailable, match=r"^stub: the network in .*stub\.bin failed on input of shape "
                                                   r"\(3, 3, 112, 112\) \(RuntimeError: .*invalid dimensions\)$"):
        ev.embed(faces)
    ev.behaviour = "one-row"
    with pytest.raises(EvaluatorUnavailable, match=r"shape \(1, 4\) for 3 faces, not \(3, 4\)"):
        ev.embed(faces)


# --- dlib ---------------------------------------------------------------------------------

def test_dlib_refuses_garbage_weights(tmp_path):
    _needs("dlib")
    from benchmark.evaluators.dlib_resnet import DlibResnet

    real = DlibResnet.resolve_weights()
    shutil.copy(real.parent / "shape_predictor_5_face_landmarks.dat", tmp_path)
    garbage = tmp_path / "net.dat"
    garbage.write_bytes(b"\0garbage" * 500)
    _refused("dlib", garbage, "is not dlib's face-recognition ResNet")
    (tmp_path / "shape_predictor_5_face_landmarks.dat").write_bytes(b"bad")
    shutil.copy(real, garbage)
    with pytest.raises(EvaluatorUnavailable, match="shape predictor .* is not dlib's 5-point model"):
        create_evaluator("dlib", weights=str(garbage))


# --- facenet ------------------------------------------------------------------------------

def _facenet_state(out=None):
    import torch
    from facenet_pytorch import InceptionResnetV1

    torch.manual_seed(0)
    state = InceptionResnetV1(pretrained=None, classify=False).state_dict()
    if out is not None:
        torch.save(state, out)
    return state


@pytest.mark.parametrize("content", ["garbage", "list", "other-network", "object"])
def test_facenet_refuses_what_is_not_its_state_dict(tmp_path, content):
    import argparse

    import torch

    path = tmp_path / f"{content}.pt"
    if content == "garbage":
        path.write_bytes(b"PK\x03\x04 not really a zip" * 10)
        expect = "is not a torch state dict"
    elif content == "list":
        torch.save([torch.zeros(3)], path)
        expect = "holds a list, not an InceptionResnetV1 state dict"
    elif content == "other-network":
        state = _facenet_state()
        state["last_linear.weight"] = torch.zeros(256, 1792)  # another embedding size
        torch.save(state, path)
        expect = "is not an InceptionResnetV1 checkpoint"
    else:  # a pickled object: weights_only refuses to run its code
        torch.save(argparse.Namespace(a=1), path)
        expect = "is not a torch state dict"
    _refused("facenet-vggface2", path, expect)


def test_facenet_cached_weights_are_checked_against_the_pinned_sha256(tmp_path, monkeypatch):
    from benchmark.evaluators import facenet

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setattr(facenet, "_try_download", lambda url, path: None)
    cached = tmp_path / "checkpoints" / VGG
    cached.parent.mkdir()
    _facenet_state(cached)
    good = hashlib.sha256(cached.read_bytes()).hexdigest()
    monkeypatch.setitem(facenet.FACENET_SHA256, VGG, "0" * 64)
    with pytest.raises(EvaluatorUnavailable) as err:
        create_evaluator("facenet-vggface2")
    msg = str(err.value)
    assert str(cached) in msg and "expected " + "0" * 64 in msg and "\n" not in msg
    assert EVALUATORS.entry("facenet-vggface2").why_unavailable() == msg
    monkeypatch.setitem(facenet.FACENET_SHA256, VGG, good)
    assert create_evaluator("facenet-vggface2").weights_path == cached
    assert EVALUATORS.entry("facenet-vggface2").why_unavailable() is None
    # the user's own file is not the published one: recorded, not pinned
    monkeypatch.setitem(facenet.FACENET_SHA256, VGG, "0" * 64)
    mine = tmp_path / "finetuned.pt"
    shutil.copy(cached, mine)
    assert create_evaluator("facenet-vggface2", weights=str(mine)).describe()["weights_sha256"] == good


def test_facenet_download_is_verified_before_it_is_kept(tmp_path, monkeypatch):
    import torch.hub

    from benchmark.evaluators import facenet

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    payload = b"what the server sent"
    monkeypatch.setattr(torch.hub, "download_url_to_file", lambda url, dst, progress=True: open(dst, "wb").write(payload))
    target = tmp_path / "checkpoints" / VGG
    monkeypatch.setitem(facenet.FACENET_SHA256, VGG, "ab" * 32)
    with pytest.raises(EvaluatorUnavailable) as err:
        facenet.FaceNetVggFace2.resolve_weights()
    msg = str(err.value)
    assert facenet.RELEASE + VGG in msg and "ab" * 32 in msg and hashlib.sha256(payload).hexdigest() in msg
    assert str(target) in msg and "\n" not in msg
    assert not target.exists() and not list(target.parent.iterdir())  # nothing kept, no .part left
    monkeypatch.setitem(facenet.FACENET_SHA256, VGG, hashlib.sha256(payload).hexdigest())
    assert facenet.FaceNetVggFace2.resolve_weights() == target and target.read_bytes() == payload
    assert not list(target.parent.glob("*.part"))


def test_facenet_pins_the_published_vggface2_hash():
    from benchmark.evaluators.facenet import FACENET_SHA256, FaceNetCasia, FaceNetVggFace2

    assert set(FACENET_SHA256) == {FaceNetVggFace2.file_name, FaceNetCasia.file_name}
    assert FaceNetVggFace2.expected_sha256() == "281cebca8662831adb987a874bdcb36e73f5b1c6dc5ee5878f305e985625d99b"
