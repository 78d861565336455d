"""QONNX / FINN-ONNX binary networks -> bitfold IR (``bitfold import``).

The cleaned graph (:func:`~bitfold.interop.onnx_model.load_model`, weight
quantizers folded into constants) is walked node by node. Every ONNX tensor is
one of:

* :class:`_Raw`: the graph input before its quantizer (elementwise scalar
  arithmetic and layout changes pending);
* :class:`_Act`: a quantized tensor the IR holds (bipolar, or the unsigned
  multi-bit input), whose ONNX value is ``alpha * x + beta`` of the IR value
  ``x``, with its element order (:mod:`~bitfold.interop.layout`);
* :class:`_Acc`: a binary layer's accumulator and the elementwise nodes after it
  (a :class:`~bitfold.interop.chain.Chain`).

A quantizer on an accumulator becomes ``AffineSign`` with the thresholds the
chain's own execution gives; the graph output (or a final ``Softmax``,
``ArgMax`` or ``TopK``) becomes ``AffineArgMax`` with the exactly composed
affine. ``compiler.passes.fold`` then makes the graph integer, as for a trained
run. Anything the IR cannot express is refused by
:class:`~bitfold.interop.errors.UnsupportedNodeError`, before anything is written.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import numpy as np

from bitfold.compiler.ir import AffineArgMax, Graph, Input, Node, TensorType
from bitfold.compiler.passes import DEFAULT_SCORE_BITS, fold
from bitfold.compiler.verify import build_graph

from .chain import Chain, Step, attr
from .encoding import InputScale
from .errors import InteropError, UnsupportedNodeError
from .layers import acc_step, act_step
from .layout import canonical, reshaped, scalar, transposed
from .quantizers import input_levels
from .values import FINAL_OPS, LAYOUT_OPS, MVU_OPS, _Acc, _Act, _Final, _Raw

__all__ = ["ImportedNetwork", "import_model"]

@dataclass
class ImportedNetwork:
    """What :func:`import_model` returns: the folded IR and how frames enter it.

    ``encoding`` maps input pixels to the IR input (``lut``: IR value per pixel
    value); ``score_tensor`` is the ONNX tensor holding the class scores the IR's
    ``ArgMax`` decides on (the graph output, or the input of a final ``Softmax``).
    """

    graph: Graph
    encoding: dict[str, Any]
    score_tensor: str
    onnx_nodes: int
    sources: dict[str, str] = field(default_factory=dict)


class _Importer:
    def __init__(self, model: Any, name: str, scale: InputScale, input_bits: int) -> None:
        self.model, self.scale, self.input_bits = model, scale, input_bits
        self.name = name
        self.nodes: list[Node] = []
        self.types: dict[str, TensorType] = {}
        self.values: dict[str, Any] = {}
        self.sources: dict[str, str] = {}
        self.encoding: dict[str, Any] | None = None
        self.used: set[str] = set()

    # ----------------------------------------------------------------- helpers

    def const(self, name: str) -> np.ndarray | None:
        return self.model.get_initializer(name) if name else None

    def ir_name(self, node: Any, suffix: str = "") -> str:
        base = re.sub(r"[^A-Za-z0-9_]", "_", (node.name or node.output[0]) + suffix)
        base = base if re.match(r"[A-Za-z_]", base) else f"n_{base}"
        out, i = base, 1
        while out in self.used:
            out, i = f"{base}_{i}", i + 1
        self.used.add(out)
        self.sources[out] = node.name or node.output[0]
        return out

    def add(self, node: Node, t: TensorType | None = None) -> str:
        self.nodes.append(node)
        if t is not None:
            self.types[node.name] = t
        return node.name

    def computed(self, node: Any) -> list[str]:
        return [i for i in node.input if i and self.const(i) is None]

    # ----------------------------------------------------------------- the walk

    def check_structure(self) -> None:
        """Refuse joins (a residual ``Add``) and forks before anything else."""
        consumers: dict[str, list[str]] = {}
        for node in self.model.graph.node:
            ins = self.computed(node)
            if len(ins) > 1 and node.op_type not in MVU_OPS:
                raise UnsupportedNodeError(node, f"it combines {len(ins)} computed tensors "
                                           f"({', '.join(ins)}): a residual connection or a "
                                           "branch join, which the IR has not yet")
            for i in ins:
                consumers.setdefault(i, []).append(node.name or node.output[0])
        for tensor, users in consumers.items():
            if len(users) > 1:
                node = self.model.find_consumer(tensor)
                raise UnsupportedNodeError(node, f"tensor {tensor!r} feeds {len(users)} nodes "
                                           f"({', '.join(users)}): a branching graph; bitfold "
                                           "imports one chain of layers")

    def run(self, score_bits: int) -> ImportedNetwork:
        self.check_structure()
        graph_in = self.model.graph.input[0].name
        shape = tuple(int(d) for d in self.model.get_tensor_shape(graph_in))
        if len(shape) not in (2, 4) or shape[0] != 1:
            raise InteropError(f"graph input {graph_in!r} has shape {list(shape)}; bitfold "
                               "imports images (1, C, H, W) or vectors (1, F)")
        self.input_shape = shape[1:]
        self.values[graph_in] = _Raw(canonical(shape[1:]), Chain([Fraction(1)], [Fraction(0)]))
        for node in self.model.graph.node:
            self.step(node)
        out = self.values.get(self.model.graph.output[0].name)
        acc = out.acc if isinstance(out, _Final) else out
        if not isinstance(acc, _Acc):
            raise InteropError(f"graph output {self.model.graph.output[0].name!r} is not a "
                               "binary layer's real-valued class scores; bitfold imports "
                               "classifiers whose last layer gives scores (optionally then "
                               "Softmax/ArgMax/TopK)")
        if len(acc.shape) != 1 or acc.pool is not None:
            raise InteropError(f"the class scores {acc.tensor!r} have shape {list(acc.shape)}; "
                               "the last layer must be dense (scores of shape (1, classes))")
        slope, offset = acc.chain.affine()
        name = self.ir_name(self.model.find_producer(acc.tensor), "_class")
        self.add(AffineArgMax(name, acc.ir, slope, offset))
        graph = fold(build_graph(self.name, self.nodes, [name]), score_bits)
        return ImportedNetwork(graph, self.encoding, acc.tensor, len(self.model.graph.node),
                               self.sources)

    def step(self, node: Any) -> None:
        op = node.op_type
        ins = self.computed(node)
        if not ins:
            raise UnsupportedNodeError(node, "all its inputs are constants that qonnx's "
                                       "constant folding left unfolded")
        x = self.values.get(ins[0])
        if x is None:
            raise UnsupportedNodeError(node, f"its input {ins[0]!r} is not produced by a "
                                       "supported node")
        if isinstance(x, _Final):
            if op in FINAL_OPS:
                self.values[node.output[0]] = x
                return
            raise UnsupportedNodeError(x.node, f"a {x.node.op_type} in the middle of the network "
                                       f"(node {node.name or node.output[0]!r} reads its result)",
                                       "bitfold takes Softmax/LogSoftmax/ArgMax/TopK only as the "
                                       "last nodes, after the class scores")
        handler = getattr(self, f"_{type(x).__name__[1:].lower()}", None)
        out = handler(node, x) if handler else None
        if out is None:
            raise UnsupportedNodeError(node, f"not supported on {_what(x)}", _supported(x))
        self.values[node.output[0]] = out

    # ----------------------------------------------------------------- the graph input

    def _raw(self, node: Any, x: _Raw) -> Any:
        op = node.op_type
        if op in LAYOUT_OPS:
            return _Raw(self.layout(node, x.perm), x.chain)
        if op in ("Add", "Sub", "Mul", "Div"):
            operands = [None if i == node.input[0] and self.const(i) is None else
                        np.array([scalar(node, self.const(i))], np.float32) for i in node.input]
            return _Raw(x.perm, Chain(x.chain.mul, x.chain.add,
                                      [*x.chain.steps, Step(node, operands)]))
        if op in ("BipolarQuant", "Quant", "MultiThreshold", "Sign"):
            return self.quantize_input(node, x)
        if op in MVU_OPS:  # no input quantizer: the pixels themselves are the multi-bit input
            k, c = x.chain.affine()
            act = self.input_node(x.perm, False, self.input_bits,
                                  list(range(2 ** self.input_bits)), "pixel (no quantizer)")
            act.alpha = Fraction(float(k[0])) * self.scale.fraction
            act.beta = Fraction(float(c[0]))
            return self._act(node, act)
        return None

    def input_node(self, perm: np.ndarray, bipolar: bool, bits: int, lut: list[int],
                   summary: str) -> _Act:
        flat = np.sort(perm.reshape(-1))
        if not np.array_equal(flat, np.arange(flat.size)):
            raise InteropError("the input's layout changes are not a permutation")
        ir_shape = (self.input_shape[1], self.input_shape[2], self.input_shape[0]) \
            if len(self.input_shape) == 3 else self.input_shape
        t = TensorType(ir_shape, 1 if bipolar else bits, bipolar)
        self.add(Input("input", ir_shape, t.bits, bipolar), t)
        self.used.add("input")
        self.encoding = {"kind": "lut", "lut": [int(v) for v in lut], "bipolar": bipolar,
                         "bits": t.bits, "input_scale": self.scale.text,
                         "pixel_bits": self.input_bits, "summary": summary}
        return _Act("input", perm, bipolar, Fraction(1), Fraction(0))

    def quantize_input(self, node: Any, x: _Raw) -> _Act:
        pixels = np.arange(2 ** self.input_bits)
        values = self.scale.apply(pixels)[:, None]
        level = input_levels(node, self.model)
        step = Step(node, level.operands)
        out = x.chain.execute(values, step)[:, 0].astype(np.float64)
        q = (out - float(level.beta)) / float(level.alpha)
        if level.bipolar:
            if not np.all(np.isin(q, (-1.0, 1.0))):
                raise UnsupportedNodeError(node, "some input value gives neither binary level "
                                           "(Sign(0) is 0 in ONNX)")
            lut = (q > 0).astype(int)
            on = np.flatnonzero(lut)
            summary = f"pixel >= {on[0]}" if on.size and np.all(lut[on[0]:] == 1) \
                else "lookup table"
            act = self.input_node(x.perm, True, 1, list(lut), summary)
        else:
            lut = np.rint(q).astype(int)
            if not np.allclose(q, lut) or lut.min() < 0:
                raise UnsupportedNodeError(node, "the input quantizer's levels are not the "
                                           "integers 0, 1, ...")
            summary = "identity" if np.array_equal(lut, pixels) else "lookup table"
            act = self.input_node(x.perm, False, level.bits, list(lut), summary)
        act.alpha, act.beta = level.alpha, level.beta
        return act

    def layout(self, node: Any, perm: np.ndarray) -> np.ndarray:
        if node.op_type == "Reshape":
            return reshaped(node, perm, self.const(node.input[1]))
        if node.op_type == "Flatten":
            if attr(node, "axis", 1) != 1:
                raise UnsupportedNodeError(node, "only Flatten(axis=1) keeps the batch axis")
            return perm.reshape(-1)
        return transposed(node, perm, attr(node, "perm", None))

    # ----------------------------------------------------------------- binary activations

    def _act(self, node: Any, x: _Act) -> Any:
        return act_step(self, node, x)

    # ----------------------------------------------------------------- accumulators

    def _acc(self, node: Any, x: _Acc) -> Any:
        return acc_step(self, node, x)


def _what(x: Any) -> str:
    return {"_Raw": "the graph input before its quantizer", "_Act": "binary activations",
            "_Acc": "a layer's accumulator"}[type(x).__name__]


def _supported(x: Any) -> str:
    if isinstance(x, _Raw):
        return ("supported on the input: Reshape/Flatten/Transpose, Add/Sub/Mul/Div by a scalar, "
                "then BipolarQuant, Quant (unsigned), MultiThreshold or Sign, or a binary layer")
    if isinstance(x, _Act):
        return ("supported on activations: MatMul/Gemm/Conv with binary weights, "
                "XnorPopcountMatMul, MaxPool, Pad (constant), Reshape/Flatten/Transpose, "
                "Add/Mul by a scalar")
    return ("supported after a layer: BatchNormalization, Add/Sub/Mul/Div by per-channel "
            "constants, Cast, MaxPool, then BipolarQuant, 1-bit Quant, MultiThreshold (one threshold) "
            "or Sign; or, after the last layer, the graph output or Softmax/ArgMax/TopK")


def import_model(model: Any, name: str, scale: InputScale, input_bits: int = 8,
                 score_bits: int = DEFAULT_SCORE_BITS) -> ImportedNetwork:
    """Lower a cleaned, weight-folded QONNX model to a folded, verified IR graph.

    Parameters
    ----------
    model : qonnx ModelWrapper
        From :func:`~bitfold.interop.onnx_model.fold_weight_quantizers`.
    name : str
        The graph's name (an identifier).
    scale : InputScale
        How a pixel becomes the model's float input (``pixel / 255``, say).
    input_bits : int
        Width of the pixels the encoding is tabulated for (8: uint8 images).
    score_bits : int
        Signed width of the integer class scores (as ``bitfold compile``).
    """
    return _Importer(model, name, scale, input_bits).run(score_bits)
