"""ONNX -> torch conversion of the face-recognition graphs (benchmark.onnx_torch).

Oracle: onnxruntime running the same ONNX file, on real aligned LFW faces; gradients are
checked against central finite differences in float64.
"""
from pathlib import Path

import numpy as np
import pytest
import torch

from benchmark.evaluators import create_evaluator
from benchmark.onnx_torch import (OnnxConversionError, convert_onnx, identity_network)
from benchmark.registry import EVALUATORS
from benchmark.faces.frames import warp_to_template
from benchmark.faces.templates import SPHEREFACE_112x96

onnx = pytest.importorskip("onnx")

# How each evaluator feeds onnxruntime (sface.py, arcface_mbf.py), written out by hand.
FEEDS = {"sface": lambda crops: crops * 255.0,
         "arcface-mbf": lambda crops: (crops * 255.0 - 127.5) / 127.5}
# One image of each of 8 people (LFW names), so the batch holds 8 different faces.
PEOPLE = ["Ariel_Sharon", "Colin_Powell", "Donald_Rumsfeld", "George_W_Bush",
          "Gerhard_Schroeder", "Hugo_Chavez", "Jacques_Chirac", "Tony_Blair"]


def _needs(name):
    why = EVALUATORS.entry(name).why_unavailable()
    if why:
        pytest.skip(why)


def _lfw_crops(lfw_root: Path, evaluator) -> np.ndarray:
    from benchmark.faces.images import read_batch

    faces = read_batch([lfw_root / "aligned-112x96" / p / f"{p}_0001.jpg" for p in PEOPLE])
    return warp_to_template(faces, SPHEREFACE_112x96, evaluator.template)


@pytest.mark.parametrize("name", ["sface", "arcface-mbf"])
def test_torch_matches_onnxruntime_on_real_faces_in_one_batch(name, lfw_shared):
    _needs(name)
    ev = create_evaluator(name)
    crops = _lfw_crops(lfw_shared, ev)
    reference = ev._embed_crops(crops)                    # onnxruntime, raw (unnormalised) output
    net = identity_network(name)
    with torch.no_grad():
        out = net(torch.from_numpy(FEEDS[name](crops)).float()).numpy()
    assert out.shape == reference.shape == (8, ev.embedding_dim)
    assert np.abs(out - reference).max() < 1e-4 * max(1.0, np.abs(reference).max())
    cosine = (out * reference).sum(1) / np.linalg.norm(out, axis=1) / np.linalg.norm(reference, axis=1)
    assert cosine.min() > 0.9999
    # eval mode: each face's embedding does not depend on the rest of the batch
    with torch.no_grad():
        alone = net(torch.from_numpy(FEEDS[name](crops[3:4])).float()).numpy()
    np.testing.assert_allclose(alone[0], out[3], atol=1e-4)


def test_sface_gradient_matches_finite_differences(lfw_shared):
    _needs("sface")
    crops = _lfw_crops(lfw_shared, create_evaluator("sface"))[:2]
    net = identity_network("sface").double()
    x = torch.from_numpy(crops * 255.0).double().requires_grad_(True)
    weights = torch.linspace(-1, 1, 128, dtype=torch.float64)
    loss = lambda t: (net(t) * weights).sum()                   # noqa: E731
    loss(x).backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    direction = torch.from_numpy(np.random.default_rng(0).standard_normal(x.shape))
    eps = 1e-6  # small enough that no PReLU kink lies within +-eps (the loss is piecewise smooth)
    with torch.no_grad():
        numeric = (loss(x + eps * direction) - loss(x - eps * direction)) / (2 * eps)
    analytic = (x.grad * direction).sum()
    assert abs(float(numeric - analytic)) <= 1e-6 * max(1.0, abs(float(analytic)))


def test_identity_network_is_frozen_and_in_eval_mode():
    _needs("sface")
    net = identity_network("sface")
    assert not any(p.requires_grad for p in net.parameters())
    assert not any(m.training for m in net.modules())


def _count_ops(path, op):
    return sum(n.op_type == op for n in onnx.load(str(path)).graph.node)


@pytest.mark.parametrize("name,n_bn", [("sface", 29), ("arcface-mbf", 1)])
def test_batchnorm_layers_are_kept_as_in_the_graph(name, n_bn):
    """SFace keeps 29 unfolded BN layers (statistics to update); w600k_mbf only the last one."""
    _needs(name)
    net = identity_network(name)
    path = EVALUATORS.get(name).resolve_weights()
    bns = [m for m in net.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    assert len(bns) == _count_ops(path, "BatchNormalization") == n_bn
    # ONNX momentum 0.9 (running = 0.9 running + 0.1 batch) is torch's momentum 0.1
    assert all(abs(m.momentum - 0.1) < 1e-6 for m in bns)


def _tiny_graph(path, op_node=None):
    """Conv(pads 1, stride 2, bias) -> BN -> PRelu per channel -> Sub const -> PRelu shared slope -> Flatten
    -> Gemm(transB=0, alpha, beta)."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(1)
    inits = {
        "w": rng.standard_normal((4, 3, 3, 3)).astype(np.float32), "b": rng.standard_normal(4).astype(np.float32),
        "g": rng.random(4).astype(np.float32) + 0.5, "be": rng.standard_normal(4).astype(np.float32),
        "m": rng.standard_normal(4).astype(np.float32), "v": rng.random(4).astype(np.float32) + 0.5,
        "s": rng.random((4, 1, 1)).astype(np.float32), "c": np.array([0.25], np.float32),
        "shared": np.array([0.3], np.float32),
        "fw": rng.standard_normal((4 * 3 * 3, 5)).astype(np.float32), "fb": rng.standard_normal(5).astype(np.float32),
    }
    nodes = [
        helper.make_node("Conv", ["x", "w", "b"], ["c1"], kernel_shape=[3, 3], pads=[1, 1, 1, 1], strides=[2, 2]),
        helper.make_node("BatchNormalization", ["c1", "g", "be", "m", "v"], ["b1"], epsilon=1e-3, momentum=0.9),
        helper.make_node("PRelu", ["b1", "s"], ["p1"]),
        helper.make_node("Sub", ["p1", "c"], ["s1"]),
        helper.make_node("PRelu", ["s1", "shared"], ["p2"]),
        helper.make_node("Flatten", ["p2"], ["f1"], axis=1),
        helper.make_node("Gemm", ["f1", "fw", "fb"], ["y"], alpha=0.5, beta=2.0, transB=0),
    ]
    if op_node is not None:
        nodes.append(op_node)
    graph = helper.make_graph(
        nodes, "tiny", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 6, 6])],
        [helper.make_tensor_value_info(nodes[-1].output[0], TensorProto.FLOAT, None)],
        [numpy_helper.from_array(v, k) for k, v in inits.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 11)])
    model.ir_version = 6
    onnx.save(model, str(path))
    return path


def test_hand_built_graph_matches_onnxruntime(tmp_path):
    import onnxruntime as ort

    path = _tiny_graph(tmp_path / "tiny.onnx")
    x = np.random.default_rng(2).standard_normal((3, 3, 6, 6)).astype(np.float32)
    reference = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    with torch.no_grad():
        out = convert_onnx(path)(torch.from_numpy(x)).numpy()
    assert out.shape == (3, 5)
    np.testing.assert_allclose(out, reference, rtol=1e-5, atol=1e-5)


def test_unsupported_operator_is_named(tmp_path):
    from onnx import helper

    path = _tiny_graph(tmp_path / "relu.onnx", helper.make_node("Relu", ["y"], ["z"], name="the_relu"))
    with pytest.raises(OnnxConversionError, match="the_relu uses the ONNX operator Relu"):
        convert_onnx(path)


def test_unreadable_file_is_named(tmp_path):
    bogus = tmp_path / "bogus.onnx"
    bogus.write_bytes(b"not onnx")
    with pytest.raises(OnnxConversionError, match="bogus.onnx is not a readable ONNX file"):
        convert_onnx(bogus)
