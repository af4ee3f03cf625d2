"""The registered architectures (vetohash.architectures) as ONNX graphs, built from the spec and the weight
arrays alone with the `onnx` helper API: no torch, no export step.

The graph computes what the torch module (vetohash.networks) computes in evaluation mode: dropout is the
identity, and batch norm is folded into the convolution before it (in float64, then rounded to float32), so
outputs agree with torch's to float32 rounding (vetohash.engines states the tolerance and tests pin it).
Input "images" is (N, channels, size, size) float32, output "embeddings" is (N, bits) float32.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from .architectures import CopyParams, PaperParams
from .specs import ModelSpec

OPSET = 17
INPUT, OUTPUT = "images", "embeddings"
BN_EPS = 1e-5  # torch's BatchNorm2d default, which vetohash.networks uses


class _Graph:
    """Nodes and initialisers under construction, with fresh names for intermediate values."""

    def __init__(self) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.weights: list[onnx.TensorProto] = []
        self.count = 0

    def constant(self, array: np.ndarray) -> str:
        name = f"w{len(self.weights)}"
        self.weights.append(numpy_helper.from_array(np.ascontiguousarray(array), name))
        return name

    def op(self, kind: str, inputs: list[str], output: str | None = None, **attributes: Any) -> str:
        self.count += 1
        out = output or f"t{self.count}"
        self.nodes.append(helper.make_node(kind, inputs, [out], **attributes))
        return out

    def conv(self, x: str, weight: np.ndarray, bias: np.ndarray, stride: int, pad: tuple[int, int]) -> str:
        k = weight.shape[2]
        return self.op("Conv", [x, self.constant(weight.astype(np.float32)), self.constant(bias.astype(np.float32))],
                       kernel_shape=[k, k], strides=[stride, stride], pads=[pad[0], pad[0], pad[1], pad[1]])

    def conv_bn(self, x: str, arrays: Mapping[str, np.ndarray], conv: str, bn: str, stride: int, pad: int) -> str:
        """A bias-free convolution followed by batch norm, folded into one convolution."""
        scale = arrays[f"{bn}.weight"].astype(np.float64) / np.sqrt(arrays[f"{bn}.running_var"].astype(np.float64)
                                                                    + BN_EPS)
        weight = arrays[f"{conv}.weight"].astype(np.float64) * scale[:, None, None, None]
        bias = arrays[f"{bn}.bias"].astype(np.float64) - arrays[f"{bn}.running_mean"].astype(np.float64) * scale
        return self.conv(x, weight, bias, stride, (pad, pad))

    def dense(self, x: str, arrays: Mapping[str, np.ndarray], prefix: str) -> str:
        return self.op("Gemm", [x, self.constant(arrays[f"{prefix}.weight"]), self.constant(arrays[f"{prefix}.bias"])],
                       output=OUTPUT, transB=1)

    def model(self, spec: ModelSpec) -> onnx.ModelProto:
        pre = spec.preprocess
        graph = helper.make_graph(
            self.nodes, spec.name, [helper.make_tensor_value_info(INPUT, TensorProto.FLOAT,
                                                                   ["n", pre.channels, pre.size, pre.size])],
            [helper.make_tensor_value_info(OUTPUT, TensorProto.FLOAT, ["n", spec.bits])], self.weights)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="vetohash")
        onnx.checker.check_model(model)
        return model


def build_graph(spec: ModelSpec, arrays: Mapping[str, np.ndarray]) -> onnx.ModelProto:
    """The ONNX model of `spec`'s network with the given (checked) weights."""
    g = _Graph()
    if spec.arch["type"] == "paper-cnn":
        _paper(g, PaperParams.of(spec.arch), arrays)
    else:
        _copy(g, CopyParams.of(spec.arch), arrays)
    return g.model(spec)


def _paper(g: _Graph, p: PaperParams, arrays: Mapping[str, np.ndarray]) -> None:
    before = (p.kernel - 1) // 2  # as vetohash.networks.paper_cnn: the extra row/column goes after
    x = g.conv(INPUT, arrays["1.weight"], arrays["1.bias"], 1, (before, p.kernel - 1 - before))
    x = g.op("Relu", [x])
    x = g.op("MaxPool" if p.pool == "max" else "AveragePool", [x], kernel_shape=[2, 2], strides=[2, 2])
    x = g.op("Flatten", [g.op("GlobalAveragePool", [x])])
    g.dense(x, arrays, "7")


def _copy(g: _Graph, p: CopyParams, arrays: Mapping[str, np.ndarray]) -> None:
    x = INPUT
    if p.mirror:  # the image and its left-right mirror in one batch of 2N
        flipped = g.op("Slice", [x, g.constant(np.array([-1])), g.constant(np.array([np.iinfo(np.int64).min])),
                                 g.constant(np.array([3])), g.constant(np.array([-1]))])
        x = g.op("Concat", [x, flipped], axis=0)
    x = g.op("Relu", [g.conv_bn(x, arrays, "features.0", "features.1", 1, 1)])
    for stage in range(p.stages):
        block = f"features.{3 + stage}"
        body = g.op("Relu", [g.conv_bn(x, arrays, f"{block}.body.0", f"{block}.body.1", 2, 1)])
        body = g.conv_bn(body, arrays, f"{block}.body.3", f"{block}.body.4", 1, 1)
        skip = g.conv_bn(x, arrays, f"{block}.skip.0", f"{block}.skip.1", 2, 0)
        x = g.op("Relu", [g.op("Add", [body, skip])])
    # GeM pooling, p = 3
    x = g.op("Clip", [x, g.constant(np.array(1e-6, np.float32))])
    x = g.op("Pow", [x, g.constant(np.array(3.0, np.float32))])
    x = g.op("ReduceMean", [x], axes=[2, 3], keepdims=0)
    x = g.op("Pow", [x, g.constant(np.array(1.0 / 3, np.float32))])
    if p.mirror:  # (2N, F) -> (2, N, F), the mean of the two halves
        features = p.stage_channels()[-1][1]
        x = g.op("ReduceMean", [g.op("Reshape", [x, g.constant(np.array([2, -1, features]))])], axes=[0],
                 keepdims=0)
    g.dense(x, arrays, "head")
