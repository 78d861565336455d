"""Reading an ONNX model with qonnx and executing it (whole, or a few of its nodes).

:func:`load_model` reads a QONNX / FINN-ONNX file and cleans it with qonnx's own
transforms (shape inference, constant folding, readable names); the importer
reads a copy whose weight quantizers are folded into constants as well.
:func:`execute_frames` runs the model on many frames with qonnx's
``execute_onnx`` (which executes QONNX's custom ops), a batch at a time;
:func:`run_nodes` runs a handful of the model's nodes on values of our choosing,
which is how the importer learns what the model's own float32 arithmetic does
with each integer accumulator.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .errors import InteropError

__all__ = ["execute_frames", "fold_weight_quantizers", "load_model", "run_nodes"]

DOMAIN = "qonnx.custom_op.general"
# Old spellings of the QONNX/FINN custom op domains, all executed by qonnx's general ops.
OLD_DOMAINS = ("onnx.brevitas", "finn", "finn.custom_op.general", "qonnx.custom_op.general")
CUSTOM_OPS = ("Quant", "BipolarQuant", "Trunc", "MultiThreshold", "XnorPopcountMatMul")


def _quiet(fn, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*args, **kwargs)


def load_model(path: str | Path) -> Any:
    """The model at ``path`` as a cleaned qonnx ``ModelWrapper`` (quantizer nodes kept).

    The cleaning is qonnx's ``cleanup`` (shape inference, constant folding, transposes
    folded into weight quantizers, unused tensors removed) without its renaming, so
    node and tensor names are the model's own (unnamed nodes become ``Op_index``).

    Raises :class:`InteropError` for a missing or unreadable file, or a graph
    qonnx cannot clean up (a one-line message naming the file).
    """
    import onnx
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.transformation.fold_constants import FoldConstants
    from qonnx.transformation.general import (
        GiveUniqueParameterTensors,
        RemoveStaticGraphInputs,
        RemoveUnusedTensors,
        SortGraph,
    )
    from qonnx.transformation.infer_datatypes import InferDataTypes
    from qonnx.transformation.infer_shapes import InferShapes
    from qonnx.transformation.quant_constant_folding import FoldTransposeIntoQuantInit

    path = Path(path)
    if not path.is_file():
        raise InteropError(f"{path}: no such file; give the path of a QONNX or FINN-ONNX model")
    try:
        proto = onnx.load(str(path))
    except Exception as exc:  # protobuf raises its own DecodeError, among others
        raise InteropError(f"{path}: not an ONNX model ({type(exc).__name__}: {exc})") from None
    for node in proto.graph.node:
        if node.op_type in CUSTOM_OPS and node.domain in OLD_DOMAINS:
            node.domain = DOMAIN
    constants = {t.name for t in proto.graph.initializer}
    inputs = [i.name for i in proto.graph.input if i.name not in constants]
    if len(inputs) != 1 or len(proto.graph.output) != 1:
        raise InteropError(f"{path}: the graph has inputs {inputs} and "
                           f"{len(proto.graph.output)} outputs; bitfold imports networks with "
                           "one image input and one output")
    for i, node in enumerate(proto.graph.node):  # every node named: errors and the IR name them
        node.name = node.name or f"{node.op_type}_{i}"
    try:
        model = _quiet(ModelWrapper, proto)
        # qonnx's cleanup, less its renaming: the user's node and tensor names stay
        for t in (InferShapes(), GiveUniqueParameterTensors(),
                  FoldConstants(exclude_op_types=["Quant", "BipolarQuant"]),
                  FoldTransposeIntoQuantInit(), RemoveUnusedTensors(), RemoveStaticGraphInputs(),
                  SortGraph(), InferShapes(), InferDataTypes()):
            model = _quiet(model.transform, t)
    except Exception as exc:
        raise InteropError(f"{path}: qonnx could not clean up the graph ({type(exc).__name__}: "
                           f"{exc}); check it runs with qonnx's execute_onnx") from None
    return model


def fold_weight_quantizers(model: Any) -> Any:
    """A copy of ``model`` with every node of constant inputs folded, weight quantizers too."""
    from qonnx.transformation.fold_constants import FoldConstants

    return _quiet(copy.deepcopy(model).transform, FoldConstants(exclude_op_types=[]))


def _with_batch(model: Any, batch: int) -> Any:
    from qonnx.transformation.change_batchsize import ChangeBatchSize
    from qonnx.transformation.infer_shapes import InferShapes

    return _quiet(_quiet(copy.deepcopy(model).transform, ChangeBatchSize(batch)).transform,
                  InferShapes())


def execute_frames(model: Any, x: np.ndarray, tensor: str | None = None,
                   batch: int = 500) -> np.ndarray:
    """Run ``model`` with qonnx's ``execute_onnx`` on frames ``x`` (float32, batch first).

    Returns the graph output, or the intermediate ``tensor`` when named, for
    every frame (``batch`` frames per execution; batch sizes are set with qonnx's
    ``ChangeBatchSize``).
    """
    from qonnx.core.onnx_exec import execute_onnx

    x = np.ascontiguousarray(x, dtype=np.float32)
    name_in = model.graph.input[0].name
    name_out = tensor or model.graph.output[0].name
    sized: dict[int, Any] = {}
    outs = []
    for start in range(0, len(x), batch):
        part = x[start:start + batch]
        if len(part) not in sized:
            sized[len(part)] = _with_batch(model, len(part))
        ctx = _quiet(execute_onnx, sized[len(part)], {name_in: part},
                     return_full_exec_context=tensor is not None)
        outs.append(np.asarray(ctx[name_out]))
    return np.concatenate(outs) if outs else np.zeros((0,), np.float32)


def run_nodes(nodes: Sequence[Any], constants: dict[str, np.ndarray],
              feeds: dict[str, np.ndarray], output: str) -> np.ndarray:
    """Execute ``nodes`` (ONNX ``NodeProto``) alone with qonnx on the values ``feeds``.

    ``constants`` are the initializers the nodes read; the result is the tensor
    ``output``. The nodes run exactly as in the whole model (same op
    implementations), on inputs of any batch size.
    """
    from onnx import TensorProto, helper
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.core.onnx_exec import execute_onnx
    from qonnx.transformation.infer_shapes import InferShapes
    from qonnx.util.basic import qonnx_make_model

    inputs = [helper.make_tensor_value_info(k, TensorProto.FLOAT, list(v.shape))
              for k, v in feeds.items()]
    graph = helper.make_graph(list(nodes), "bitfold_probe", inputs,
                              [helper.make_tensor_value_info(output, TensorProto.FLOAT, None)])
    model = ModelWrapper(qonnx_make_model(graph, producer_name="bitfold"))
    for k, v in constants.items():
        model.set_initializer(k, np.asarray(v))
    model = _quiet(model.transform, InferShapes())
    feeds = {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in feeds.items()}
    return np.asarray(_quiet(execute_onnx, model, feeds)[output])
