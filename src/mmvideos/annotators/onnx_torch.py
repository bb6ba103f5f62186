"""A float ONNX network that is one chain of layers, rebuilt as a PyTorch module for the GPU.

PyPI's onnxruntime wheel runs on the CPU only, so an ONNX tagger (YAMNet's float copy, see
:mod:`mmvideos.annotators.onnx_float`) would leave a GPU pod idle. ``chain_module`` reads the
graph's nodes and initialisers and builds the same network as an ``nn.Sequential``, which then
runs where torch runs (on CUDA, channels-last; float32, see :mod:`mmvideos.annotators.audio` on why not bfloat16).

Supported: a graph with one data input, whose every node takes the previous node's output (plus
initialisers) and is one of ``Conv`` (any groups, strides, dilations and explicit pads; uneven
pads, such as TensorFlow's "SAME" at stride 2, become a zero pad before the convolution),
``Relu``, ``Clip`` (ReLU6), ``GlobalAveragePool``, ``Flatten`` (axis 1), ``Reshape`` to
``[0, -1]`` (keep the batch) and ``Gemm``. That covers MobileNet-style taggers such as YAMNet;
anything else is refused with the node it stopped at (onnx2torch, the general converter, stops
at opset 17 and at YAMNet's opset-19 Reshape). The rebuilt network gives onnxruntime's logits to
float32 rounding (tests/test_annotators.py).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import onnx
    import torch

SUPPORTED = ("Conv", "Relu", "Clip", "GlobalAveragePool", "Flatten", "Reshape", "Gemm")


def chain_module(model: onnx.ModelProto) -> torch.nn.Sequential:
    """The network of ``model`` as an ``nn.Sequential`` in float32, in eval mode (module docstring)."""
    from onnx import numpy_helper
    from torch import nn

    weights = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    weights |= {n.output[0]: numpy_helper.to_array(n.attribute[0].t) for n in model.graph.node
                if n.op_type == "Constant" and n.attribute and n.attribute[0].name == "value"}
    inputs = [i.name for i in model.graph.input if i.name not in weights]
    if len(inputs) != 1:
        raise ValueError(f"a chain has one data input, this graph has {len(inputs)}: {inputs}")
    current = inputs[0]
    layers = []
    for node in model.graph.node:
        if node.op_type == "Constant":
            continue
        where = f"node {node.name or node.output[0]!r} ({node.op_type})"
        if node.op_type not in SUPPORTED:
            raise ValueError(f"{where}: not one of the operators a chain may hold, {', '.join(SUPPORTED)}")
        data = [name for name in node.input if name and name not in weights]
        if data != [current]:
            raise ValueError(f"{where}: the graph is not one chain (the node reads {data}, the chain is at {current!r})")
        layers.append(_layer(node, [weights.get(name) for name in node.input[1:]], where))
        current = node.output[0]
    if current != model.graph.output[0].name:
        raise ValueError(f"the chain ends at {current!r}, not at the graph's output {model.graph.output[0].name!r}")
    return nn.Sequential(*layers).eval()


def _layer(node: onnx.NodeProto, inputs: list[np.ndarray | None], where: str) -> torch.nn.Module:
    import onnx
    import torch
    from torch import nn

    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
    op = node.op_type
    if op == "Relu":
        return nn.ReLU()
    if op == "Clip":  # opset >= 11: bounds as inputs; before: as attributes
        low = inputs[0] if len(inputs) > 0 and inputs[0] is not None else attrs.get("min", -np.inf)
        high = inputs[1] if len(inputs) > 1 and inputs[1] is not None else attrs.get("max", np.inf)
        return nn.Hardtanh(float(low), float(high))
    if op == "GlobalAveragePool":
        return nn.AdaptiveAvgPool2d(1)
    if op == "Flatten":
        if attrs.get("axis", 1) != 1:
            raise ValueError(f"{where}: only Flatten at axis 1 is supported, got {attrs['axis']}")
        return nn.Flatten(1)
    if op == "Reshape":
        if inputs[0] is None or inputs[0].tolist() != [0, -1]:
            raise ValueError(f"{where}: only a Reshape to [0, -1] (keep the batch) is supported")
        return nn.Flatten(1)
    if op == "Gemm":
        if attrs.get("transA", 0):
            raise ValueError(f"{where}: Gemm with transA is not supported")
        weight = inputs[0] if attrs.get("transB", 0) else inputs[0].T  # -> [out, in]
        linear = nn.Linear(weight.shape[1], weight.shape[0], bias=len(inputs) > 1)
        with torch.no_grad():
            linear.weight.copy_(torch.tensor(attrs.get("alpha", 1.0) * weight))
            if len(inputs) > 1:
                linear.bias.copy_(torch.tensor(np.broadcast_to(attrs.get("beta", 1.0) * inputs[1], weight.shape[:1])))
        return linear
    return _conv(attrs, inputs, where)


def _conv(attrs: dict, inputs: list[np.ndarray | None], where: str) -> torch.nn.Module:
    import torch
    from torch import nn

    if attrs.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET"):
        raise ValueError(f"{where}: Conv with auto_pad is not supported; export with explicit pads")
    weight = inputs[0]
    if weight.ndim != 4:
        raise ValueError(f"{where}: only 2-D convolutions are supported, got a {weight.ndim - 2}-D kernel")
    top, left, bottom, right = attrs.get("pads", (0, 0, 0, 0))
    groups = attrs.get("group", 1)
    conv = nn.Conv2d(weight.shape[1] * groups, weight.shape[0], tuple(weight.shape[2:]),
                     stride=tuple(attrs.get("strides", (1, 1))), dilation=tuple(attrs.get("dilations", (1, 1))),
                     groups=groups, bias=len(inputs) > 1,
                     padding=(top, left) if (top, left) == (bottom, right) else 0)
    with torch.no_grad():
        conv.weight.copy_(torch.tensor(weight))
        if len(inputs) > 1:
            conv.bias.copy_(torch.tensor(inputs[1]))
    if (top, left) == (bottom, right):
        return conv
    return nn.Sequential(nn.ZeroPad2d((left, right, top, bottom)), conv)
