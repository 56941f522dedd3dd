"""PReLU as depthwise 1x1 convolutions, so that onnxruntime keeps a face network in its blocked
layout on x86 CPUs (the evaluators' ``onnxruntime-fast`` backend).

Why: onnxruntime runs convolutions on x86 in a blocked channel layout (NCHWc) but has no
blocked PReLU, so around every PReLU it reorders the tensor back to NCHW and forth again, and
its PReLU branches on each value's sign. In SFace that was 42 % of the time (ReorderInput,
ReorderOutput and PRelu in onnxruntime's profile, 64 faces of LFW-like input). Written with
ops it does block (a depthwise convolution, ReLU, Add), SFace ran 1.6x faster on LFW faces
(62 -> 98 faces/s on 2 cores) and ArcFace-MBF about as much.

The rewrite gives each PReLU's output exactly, value for value. ONNX's PReLU is ``x`` for
``x >= 0`` and ``slope * x`` below; per channel ``c`` with slope ``s``:

    r = Relu(-1 * x)          depthwise 1x1 convolution with weight -1 (exact), then ReLU
    y = (x + r) + (-s) * r    Add, then a depthwise 1x1 convolution with weight -s, then Add

For ``x > 0``: r = 0, so y = (x + 0) + (-s * 0) = x. For ``x < 0``: r = -x exactly, x + r = 0
exactly, and 0 + (-s)(-x) = s * x, the one rounding PReLU itself makes. (A fused multiply-add
of the last two steps is exact too: one addend is always zero.) Only the sign of an exact zero
may differ, and an input of -inf gives NaN (-inf + inf) where PReLU gives -inf: a network with
infinite activations yields no usable embedding either way, and fhbench refuses a non-finite
embedding in one line. (Relu(x) + (-s) * Relu(-x) is the same value and was 10 % faster still,
but a NaN would then survive only if ReLU passes NaN through, which a vectorised max(x, 0) need
not do; here the term x itself carries it.) The rest of the graph is untouched, but
onnxruntime then computes some of it in the blocked layout with other roundings (batch
normalisations folded into convolutions), so the embeddings are not bit for bit
onnxruntime's: within 9e-8 (SFace; ArcFace-MBF identical) on 1,000 real LFW faces. Hence a
backend of its own, recorded in the manifest and the cache keys; the reference stays plain
onnxruntime.

Only PReLUs whose slope is a per-channel constant, shaped (C, 1, 1) or (1, C, 1, 1), on a
4-D input with C channels (as shape inference finds it) are rewritten; any other is left as it is.
"""
from __future__ import annotations

import numpy as np

_SUFFIX = "__fhbench_prelu"


def _channels(value_info) -> int:
    """The channel count of a 4-D tensor's value info, or 0 when unknown or not 4-D."""
    dims = value_info.type.tensor_type.shape.dim
    return int(dims[1].dim_value) if len(dims) == 4 and dims[1].HasField("dim_value") else 0


def prelu_as_depthwise_convs(model) -> int:
    """Rewrite, in place, each per-channel PReLU of ``model`` (an onnx.ModelProto) as above;
    returns how many were rewritten."""
    import onnx
    from onnx import helper, numpy_helper

    graph = model.graph
    known = onnx.shape_inference.infer_shapes(model).graph
    infos = {v.name: v for v in list(known.value_info) + list(known.input) + list(known.output)}
    slopes = {i.name: i for i in graph.initializer}
    taken = {name for node in graph.node for name in list(node.input) + list(node.output)} | set(slopes)
    nodes, rewritten, replaced_slopes = [], 0, set()
    for node in graph.node:
        slope = slopes.get(node.input[1]) if node.op_type == "PRelu" and len(node.input) == 2 else None
        s = numpy_helper.to_array(slope) if slope is not None else None
        channels = _channels(infos[node.input[0]]) if node.input[0] in infos else 0
        per_channel = (s is not None and s.dtype == np.float32 and s.ndim in (3, 4) and s.shape[-2:] == (1, 1)
                       and (s.ndim == 3 or s.shape[0] == 1) and s.shape[-3] == channels > 1)
        prefix = f"{node.output[0]}{_SUFFIX}{rewritten}"
        if not per_channel or any(name.startswith(prefix) for name in taken):
            nodes.append(node)
            continue
        x, y = node.input[0], node.output[0]
        minus_one, minus_slope = f"{prefix}_minus_one", f"{prefix}_minus_slope"
        graph.initializer.extend([
            numpy_helper.from_array(np.full((channels, 1, 1, 1), -1.0, np.float32), minus_one),
            numpy_helper.from_array((-s).reshape(channels, 1, 1, 1).astype(np.float32), minus_slope),
        ])
        negated, r, x_plus_r, scaled = (f"{prefix}_{part}" for part in ("negated", "r", "x_plus_r", "scaled"))
        depthwise = {"group": channels, "kernel_shape": [1, 1]}
        nodes += [
            helper.make_node("Conv", [x, minus_one], [negated], **depthwise),
            helper.make_node("Relu", [negated], [r]),
            helper.make_node("Add", [x, r], [x_plus_r]),
            helper.make_node("Conv", [r, minus_slope], [scaled], **depthwise),
            helper.make_node("Add", [x_plus_r, scaled], [y]),
        ]
        replaced_slopes.add(slope.name)
        rewritten += 1
    del graph.node[:]
    graph.node.extend(nodes)
    used = {name for node in nodes for name in node.input}
    unused = [i for i in graph.initializer if i.name in replaced_slopes and i.name not in used]
    for initializer in unused:  # the old slopes, unless another node reads them
        graph.initializer.remove(initializer)
    return rewritten
