"""benchmark/onnx_prelu.py: per-channel PReLUs rewritten as depthwise convolutions give the
same values as PReLU, run by onnxruntime itself (the oracle: the unrewritten graph), and any
PReLU the rewrite cannot express exactly is left alone."""
import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from benchmark.onnx_prelu import prelu_as_depthwise_convs

C = 6


def graph_with_prelu(slope: np.ndarray, slope_from_node: bool = False, conv_first: bool = True):
    """x (N, C, 5, 7) -> [1x1 conv] -> PReLU(slope) -> y: the PReLU's input comes out of a convolution,
    as in the face networks, so onnxruntime can block it."""
    nodes, inits = [], []
    source = "x"
    if conv_first:
        weight = np.random.default_rng(1).normal(size=(C, C, 1, 1)).astype(np.float32)
        inits.append(numpy_helper.from_array(weight, "w"))
        nodes.append(helper.make_node("Conv", ["x", "w"], ["conv"], kernel_shape=[1, 1]))
        source = "conv"
    if slope_from_node:  # a slope computed in the graph, not a constant
        inits.append(numpy_helper.from_array(slope, "half_slope"))
        nodes.append(helper.make_node("Add", ["half_slope", "half_slope"], ["slope"]))
    else:
        inits.append(numpy_helper.from_array(slope, "slope"))
    nodes.append(helper.make_node("PRelu", [source, "slope"], ["y"]))
    graph = helper.make_graph(nodes, "prelu", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", C, 5, 7])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", C, 5, 7])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


def run(model, x):
    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    return session.run(None, {"x": x})[0]


def inputs():
    """Positive, negative, zero, tiny and large values, in every channel."""
    rng = np.random.default_rng(0)
    x = rng.normal(scale=3.0, size=(4, C, 5, 7)).astype(np.float32)
    x[0, :, 0, :3] = [0.0, -0.0, 1e-30]
    x[1, :, 1, :2] = [-1e30, 1e30]
    return x


@pytest.mark.parametrize("shape", [(C, 1, 1), (1, C, 1, 1)])
@pytest.mark.parametrize("conv_first", [True, False])
def test_per_channel_prelus_become_convolutions_with_the_same_values(shape, conv_first):
    slope = np.array([0.25, -0.5, 0.0, 1.0, 3.7, -2.0], np.float32).reshape(shape)  # negative, 0 and > 1 too
    model = graph_with_prelu(slope, conv_first=conv_first)
    x = inputs()
    expected = run(model, x)
    assert prelu_as_depthwise_convs(model) == 1
    onnx.checker.check_model(model)
    ops = [node.op_type for node in model.graph.node]
    assert "PRelu" not in ops and ops.count("Conv") == 2 + conv_first
    assert "slope" not in {i.name for i in model.graph.initializer}  # the old slope is gone
    got = run(model, x)
    np.testing.assert_array_equal(got, expected)  # bit for bit (-0 and +0 compare equal)
    if not conv_first:  # and PReLU's definition: x where x >= 0, slope * x below
        np.testing.assert_array_equal(got, np.where(x >= 0, x, slope.reshape(1, C, 1, 1) * x))


@pytest.mark.parametrize("slope, why", [
    (np.full((7,), 0.25, np.float32), "a slope over the last axis (W), not the channels"),
    (np.full((1, 1, 1), 0.25, np.float32), "one slope for every channel: no per-channel weights to build"),
])
def test_prelus_it_cannot_express_exactly_are_left_alone(slope, why):
    model = graph_with_prelu(slope)
    x = inputs()
    expected = run(model, x)
    assert prelu_as_depthwise_convs(model) == 0, why
    assert [n.op_type for n in model.graph.node].count("PRelu") == 1
    np.testing.assert_array_equal(run(model, x), expected)


def test_a_slope_computed_in_the_graph_is_left_alone():
    model = graph_with_prelu(np.full((C, 1, 1), 0.125, np.float32), slope_from_node=True)
    assert prelu_as_depthwise_convs(model) == 0
