"""ONNX SR models (benchmark.contracts.model_adapters.OnnxAdapter): a garbage file, a fixed batch size, and a
graph that fails at run time are each handled before or as one line (issue 11)."""
import re

import numpy as np
import pytest
import torch

from benchmark.contracts.model_adapters import OnnxAdapter, create_model
from benchmark.errors import AdapterError, IncompatibleModelError

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402


def lr_batch(n, h=7, w=6, seed=0):
    return torch.from_numpy(np.random.default_rng(seed).random((n, 3, h, w), dtype=np.float32))


def nearest_oracle(x: np.ndarray, s: int) -> np.ndarray:
    return x.repeat(s, axis=2).repeat(s, axis=3)


def _save(path, nodes, x_shape, inits=(), x_type=TensorProto.FLOAT, opset=13):
    graph = helper.make_graph(nodes, "sr", [helper.make_tensor_value_info("x", x_type, x_shape)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], list(inits))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return str(path)


def up2_onnx(path, x_shape=("n", 3, "h", "w")):
    """Nearest-neighbour x2 (Resize, floor of asymmetric coordinates: exact pixel replication)."""
    scales = numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "scales")
    node = helper.make_node("Resize", ["x", "", "scales"], ["y"], mode="nearest",
                            coordinate_transformation_mode="asymmetric", nearest_mode="floor")
    return _save(path, [node], list(x_shape), [scales])


def test_a_garbage_onnx_file_is_one_line_naming_it(tmp_path):
    path = tmp_path / "x.onnx"
    path.write_bytes(b"definitely not a protobuf \xff\xfe" * 50)
    with pytest.raises(AdapterError) as err:
        create_model(str(path), scale=2)
    msg = str(err.value)
    assert msg.startswith(f"ONNX model {path} cannot be loaded by onnxruntime (") and "\n" not in msg


@pytest.mark.parametrize("fixed", [1, 2])
def test_a_fixed_batch_model_gets_batches_of_exactly_its_size(tmp_path, fixed):
    model = create_model(up2_onnx(tmp_path / "up2.onnx", (fixed, 3, "h", "w")), scale=2)
    assert model.fixed_batch == fixed
    fed = []
    real_run = model.session.run
    model.session = type("Spy", (), {"run": lambda self, out, feed: (fed.append(feed["x"].shape), real_run(out, feed))[1]})()
    lr = lr_batch(5)
    lr[4] = 0.25  # the last image is the one repeated as padding: its output must be its own
    out = model.super_resolve(lr, None).numpy()
    assert out.shape == (5, 3, 14, 12)
    np.testing.assert_array_equal(out, nearest_oracle(lr.numpy(), 2))
    assert set(fed) == {(fixed, 3, 7, 6)} and len(fed) == -(-5 // fixed)


def test_a_fixed_batch_model_passes_the_pre_run_probe(tmp_path):
    model = create_model(up2_onnx(tmp_path / "up2.onnx", (1, 3, "h", "w")), scale=2)
    model.check_compatible((7, 6), (14, 12), 2)


def test_fixed_spatial_input_is_the_declared_input_size(tmp_path):
    model = create_model(up2_onnx(tmp_path / "up2.onnx", ("n", 3, 7, 6)), scale=2)
    assert model.input_size == (7, 6)
    model.check_compatible((7, 6), (14, 12), 2)
    with pytest.raises(IncompatibleModelError, match="expects 7x6 input but gets 14x12"):
        model.check_compatible((14, 12), (28, 24), 2)


@pytest.mark.parametrize("shape,message", [
    (("n", 1, "h", "w"), r"takes 1 channels \['n', 1, 'h', 'w'\]; fhbench feeds RGB"),
    (("n", "h", "w"), r"takes input of rank 3"),
])
def test_a_declared_input_fhbench_cannot_feed_is_refused_on_loading(tmp_path, shape, message):
    path = up2_onnx(tmp_path / "odd.onnx", shape) if len(shape) == 4 else _save(
        tmp_path / "odd.onnx", [helper.make_node("Identity", ["x"], ["y"])], list(shape))
    with pytest.raises(AdapterError, match=re.escape(path) + " " + message):
        create_model(path, scale=2)


def test_a_float16_model_is_refused_on_loading(tmp_path):
    path = _save(tmp_path / "half.onnx", [helper.make_node("Cast", ["x"], ["y"], to=TensorProto.FLOAT)],
                 ["n", 3, "h", "w"], x_type=TensorProto.FLOAT16)
    with pytest.raises(AdapterError, match=r"half\.onnx takes tensor\(float16\) input"):
        create_model(path)


def _one_channel_conv(tmp_path):
    """Declares nothing about its input, but its Conv takes 1 channel: fails at run time."""
    w = numpy_helper.from_array(np.ones((1, 1, 1, 1), np.float32), "w")
    return _save(tmp_path / "gray.onnx", [helper.make_node("Conv", ["x", "w"], ["y"])], None, [w])


def test_a_model_failing_at_run_time_names_model_and_input_shape(tmp_path):
    model = create_model(_one_channel_conv(tmp_path), scale=1)
    with pytest.raises(AdapterError) as err:
        model.super_resolve(lr_batch(3), None)
    msg = str(err.value)
    assert re.match(r"ONNX model .*gray\.onnx failed on input of shape \(3, 3, 7, 6\) \(\w+: ", msg), msg
    assert "\n" not in msg
    # and before any image work: the runner's check_compatible runs one blank batch
    with pytest.raises(IncompatibleModelError, match=r"gray\.onnx failed on input of shape \(2, 3, 7, 6\)"):
        model.check_compatible((7, 6), (7, 6), 1)


def test_a_model_of_the_wrong_output_size_is_refused_before_work(tmp_path):
    model = create_model(up2_onnx(tmp_path / "up2.onnx"), scale=None)
    model.check_compatible((7, 6), (14, 12), None)
    with pytest.raises(IncompatibleModelError, match=r"turns input of shape \(2, 3, 7, 6\) into \(2, 3, 14, 12\), "
                                                     r"not \(2, 3, 28, 24\)"):
        model.check_compatible((7, 6), (28, 24), None)


def test_onnx_adapter_is_the_onnx_branch(tmp_path):
    assert isinstance(create_model(up2_onnx(tmp_path / "m.ONNX")), OnnxAdapter)
