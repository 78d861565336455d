"""The torch side of ``bitfold compile`` and ``bitfold golden``: run -> IR, torch -> predictions.

:func:`lower` turns an :class:`~bitfold.train.export.ExportedNetwork` into a
pre-fold IR graph (``compiler.ir``) without rounding anything that matters:

* A binary layer becomes a ``Layer``, dense or with a convolution's ``Window``, whose
  encoding is ``Binary`` (its sign bits, bit 1 = +1), ``Sparse``, ``Composite`` or
  ``Domain``. Conv weights go from torch's ``(C_out, C_in, k, k)`` to the IR's
  ``(C_out, k, k, C_in)`` (the window's rows); a dense layer after a flatten of a ``(C, H, W)`` map
  gets its columns permuted from torch's channel-major order to the IR's
  ``(H, W, C)`` order.
* Alpha, the input scale, the popcount-to-dot conversion and every batch norm
  after the layer compose into one real affine per channel on the layer's
  integer accumulator, ``slope * acc + offset`` (float64):
  ``alpha * dot = 2 alpha popcount - alpha N`` for bipolar input,
  ``alpha * scale * acc`` for multi-bit input, then
  ``gamma (y - mean) / sqrt(var + eps) + beta``.
* The sign inside the next binary layer becomes ``AffineSign``; a max pool
  between a batch norm and that sign moves after the sign (``sign`` is
  monotone, so max then sign equals sign then OR). The last affine becomes
  ``AffineArgMax``.

``compiler.passes.fold`` then makes everything integer (``bitfold compile``
runs :func:`lower_run`, then the passes). :func:`torch_predictions` and
:func:`explain_disagreements` are what ``bitfold golden`` needs from torch.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bitfold.artifacts import ArtifactError, read_json
from bitfold.compiler.encodings import Binary, Composite, Domain, Encoding, Sparse
from bitfold.compiler.ir import (
    AffineArgMax,
    AffineSign,
    Graph,
    Input,
    Layer,
    MaxPool2d,
    Node,
    Window,
)
from bitfold.compiler.verify import build_graph

from .data import Dataset, load_dataset
from .export import (
    ExportedBatchNorm,
    ExportedBinaryLayer,
    ExportedFlatten,
    ExportedMaxPool,
    ExportedNetwork,
    ExportError,
    export_network,
)
from .hourglass_hw import HourglassHW, lower_hourglass
from .quantizers import FRAC_BITS
from .residual import ResNet8, lower_resnet
from .torch_eval import explain_disagreements, torch_predictions, torch_trace

__all__ = ["binarized_input_encoding", "build_test_set", "check_compilable", "encode_frames",
           "explain_disagreements", "lower", "lower_run", "nchw_to_ir", "read_provenance",
           "torch_predictions", "torch_trace"]


def _encoding(step: ExportedBinaryLayer, planes: np.ndarray) -> Encoding:
    """A layer's weight encoding from its weight bit planes ``(K, C_out, ...)`` in IR order."""
    if step.scheme == "sparse":  # every kept weight is +alpha: polarity 1
        return Sparse(planes[0], np.ones(planes.shape[1], np.uint8))
    if step.scheme == "composite":
        return Composite(planes, step.plane_scale)
    if step.scheme == "domain":
        return Domain(planes[0], step.offset, 1 << FRAC_BITS)
    return Binary(planes[0])


class _Lowering:
    """The state while walking the exported steps: the current tensor and its pending affine."""

    def __init__(self, net: ExportedNetwork) -> None:
        self.net = net
        shape = tuple(net.input_shape)
        ir_shape = (shape[1], shape[2], shape[0]) if len(shape) == 3 else shape
        bipolar = net.input_threshold is not None  # binarized in the network: a bipolar Input
        self.nodes: list[Node] = [Input("input", ir_shape, 1 if bipolar else net.input_bits,
                                        signed=bipolar)]
        self.cur = "input"
        self.kind = "bipolar" if bipolar else "input"  # "input" | "acc" (pending affine) | "bipolar"
        self.torch_shape = shape  # the torch tensor's shape at this point, (C, H, W) or (F,)
        self.perm: np.ndarray | None = None  # IR flat index -> torch flat index after a flatten
        self.slope = self.offset = np.zeros(0)
        self.layer = ""
        self.counts = {"conv": 0, "fc": 0, "pool": 0}
        self.sources: dict[str, str] = {}  # IR node -> torch module

    def name(self, prefix: str) -> str:
        n = self.counts[prefix]
        self.counts[prefix] += 1
        return f"{prefix}{n}"

    def activate(self) -> None:
        """Apply the pending sign: the accumulator becomes a bipolar tensor."""
        if self.kind == "acc":
            node = AffineSign(f"{self.layer}_act", self.cur, self.slope, self.offset)
            self.nodes.append(node)
            self.sources[node.name] = self.sources[self.layer]
            self.cur, self.kind = node.name, "bipolar"

    def binary(self, step: ExportedBinaryLayer) -> None:
        self.activate()
        if self.kind == "input" and step.input_mode != "multibit":
            raise ExportError(f"{step.name}: the first binary layer must take the multi-bit input "
                              "(input_mode='multibit'); sign() of unsigned pixels is always +1")
        if self.kind == "bipolar" and step.input_mode != "binary":
            raise ExportError(f"{step.name}: only the first layer may take multi-bit input; "
                              "this one follows a binary activation or the binarized input")
        bits = (step.weight > 0).astype(np.uint8)
        planes = bits if step.scheme == "composite" else bits[None]  # (K, C_out, ...)
        c_out = planes.shape[1]
        n_in = planes[0, 0].size if step.scheme != "lowrank" else step.inner.shape[1]
        if step.scheme == "lowrank" and (step.kind != "dense" or step.input_mode != "binary"):
            raise ExportError(f"{step.name}: low-rank layers must be dense with binary input")
        if step.kind == "conv2d":
            if len(self.torch_shape) != 3 or self.torch_shape[0] != planes.shape[2]:
                raise ExportError(f"{step.name}: a convolution over {planes.shape[2]} "
                                  f"channels cannot read a tensor of shape {self.torch_shape}")
            self.layer = self.name("conv")
            c, h, w = self.torch_shape
            pad_value = int(step.pad_value) if step.input_mode == "binary" else 0
            window = Window(step.kernel, step.stride, step.pad, pad_value)
            # (K, C_out, C_in, k, k) -> (K, C_out, k, k, C_in), the window's (ky, kx, c) order
            node = Layer(self.layer, self.cur, _encoding(step, planes.transpose(0, 1, 3, 4, 2)),
                         window)
            oh = (h + 2 * step.pad - step.kernel) // step.stride + 1
            ow = (w + 2 * step.pad - step.kernel) // step.stride + 1
            self.torch_shape = (c_out, oh, ow)
        else:
            if int(np.prod(self.torch_shape)) != n_in or len(self.torch_shape) != 1:
                raise ExportError(f"{step.name}: a dense layer of fan-in {n_in} cannot read a "
                                  f"tensor of shape {self.torch_shape} (flatten it first)")
            self.layer = self.name("fc")

            def cols(m: np.ndarray) -> np.ndarray:
                return m if self.perm is None else m[..., self.perm]

            if step.scheme == "lowrank":  # popcounts of the inner matrix, read as integers
                inner = Layer(f"{self.layer}_inner", self.cur,
                              Binary(cols((step.inner > 0).astype(np.uint8))))
                self.nodes.append(inner)
                self.sources[inner.name] = step.name
                node = Layer(self.layer, inner.name, Binary(planes[0]))
            else:
                node = Layer(self.layer, self.cur, _encoding(step, cols(planes)))
            self.torch_shape = (c_out,)
            self.perm = None
        self.nodes.append(node)
        self.sources[self.layer] = step.name
        self.slope, self.offset = self._affine(step, planes, n_in)
        self.cur, self.kind = self.layer, "acc"

    def _affine(self, step: ExportedBinaryLayer, planes: np.ndarray,
                n_in: int) -> tuple[np.ndarray, np.ndarray]:
        """``alpha * dot(x, W)`` as ``slope * acc + offset`` on the IR node's accumulator."""
        alpha = step.alpha.astype(np.float64)
        if step.scheme == "domain":  # acc = S A + m X, W = alpha (s + m / S), S = 2^FRAC_BITS
            alpha = alpha / (1 << FRAC_BITS)
            if step.input_mode == "multibit":  # alpha (A + m/S X) = alpha / S acc
                return alpha * self.net.input_scale, np.zeros_like(alpha)
            # alpha (2A - F + m/S (2X - F)) = alpha / S (2 acc - F (S + m))
            return 2.0 * alpha, -alpha * (n_in * ((1 << FRAC_BITS) + step.offset.astype(np.int64)))
        if step.scheme == "composite":  # acc = sum_k m_k acc_k, W = alpha sum_k m_k / 2^F B_k
            alpha = alpha / (1 << FRAC_BITS)
            n_in = n_in * int(np.sum(step.plane_scale))
        if step.input_mode == "multibit":  # torch sees alpha * dot(x_int * scale, w)
            return alpha * self.net.input_scale, np.zeros_like(alpha)
        if step.scheme == "sparse":  # alpha * sum_mask x = alpha (2 popcount - nnz)
            n_in = planes[0].reshape(len(alpha), -1).sum(axis=1)
        elif step.scheme == "lowrank":  # sum_r a_r (2 p_r - F) = 2 acc - F rowsum(a)
            n_in = n_in * np.where(planes[0] > 0, 1, -1).sum(axis=1)
        return 2.0 * alpha, -alpha * n_in  # alpha * dot = alpha * (2 popcount - N)

    def batch_norm(self, step: ExportedBatchNorm) -> None:
        if self.kind != "acc" or len(step.mean) != len(self.slope):
            raise ExportError(f"{step.name}: batch norm must directly follow a binary layer with "
                              f"{len(step.mean)} output channels")
        inv = step.gamma / np.sqrt(step.var + step.eps)
        self.slope, self.offset = self.slope * inv, (self.offset - step.mean) * inv + step.beta

    def max_pool(self, step: ExportedMaxPool) -> None:
        self.activate()
        if self.kind != "bipolar" or len(self.torch_shape) != 3:
            raise ExportError(f"{step.name}: max pooling is supported on binary feature maps "
                              "after a binary layer, not on the input or after a flatten")
        node = MaxPool2d(self.name("pool"), self.cur, step.kernel, step.stride)
        self.nodes.append(node)
        self.sources[node.name] = step.name
        c, h, w = self.torch_shape
        self.torch_shape = (c, (h - step.kernel) // step.stride + 1,
                            (w - step.kernel) // step.stride + 1)
        self.cur = node.name

    def flatten(self, step: ExportedFlatten) -> None:
        if len(self.torch_shape) == 3:
            c, h, w = self.torch_shape
            self.perm = np.arange(c * h * w).reshape(c, h, w).transpose(1, 2, 0).ravel()
            self.torch_shape = (c * h * w,)

    def finish(self) -> Graph:
        if self.kind != "acc" or len(self.torch_shape) != 1:
            raise ExportError(f"{self.net.model}: the network must end with a dense binary layer "
                              "(and batch norm) giving the class scores")
        if len(self.slope) != self.net.num_classes:
            raise ExportError(f"{self.net.model}: the last layer has {len(self.slope)} outputs, "
                              f"expected {self.net.num_classes} classes")
        self.nodes.append(AffineArgMax("class", self.cur, self.slope, self.offset))
        self.sources["class"] = self.sources[self.layer]
        return build_graph(self.net.model.replace("-", "_"), self.nodes, ["class"])


def lower(net: ExportedNetwork) -> tuple[Graph, dict[str, str]]:
    """Lower an exported network to a pre-fold graph; also return IR node -> torch module names.

    Raises
    ------
    ExportError
        Where the network has a shape the IR cannot express, naming the layer.
    """
    state = _Lowering(net)
    handlers = {ExportedBinaryLayer: state.binary, ExportedBatchNorm: state.batch_norm,
                ExportedMaxPool: state.max_pool, ExportedFlatten: state.flatten}
    for step in net.steps:
        handlers[type(step)](step)
    return state.finish(), state.sources


def check_compilable(run_dir: str | Path, quantizer: str | None) -> None:
    """Refuse a run of the float baseline (``--quantizer float``): it has no binary form.

    Raises
    ------
    ArtifactError
        One line naming the run and what to do instead.
    """
    if quantizer == "float":
        raise ArtifactError(f"{run_dir} was trained with --quantizer float (the float baseline); "
                            "it has no binary form to compile: train without --quantizer float")


def _saved_quantizer(run_dir: str | Path) -> str | None:
    """The quantizer ``RUN/config.json`` names; None when it is missing or broken."""
    try:
        return read_json(Path(run_dir) / "config.json").get("quantizer")
    except ArtifactError:  # the checkpoint's own config decides in lower_run
        return None


def lower_run(run_dir: str | Path) -> tuple[Graph, dict[str, Any]]:
    """Load a trained run, export and lower it; return the pre-fold graph and its provenance.

    The provenance (for ``BUILD/compile.json``) names the run, its data set and
    the torch module behind every IR node; the graph itself holds no paths.
    A float-baseline run is refused (:func:`check_compilable`) before anything is loaded.
    """
    from .trainer import load_run

    check_compilable(run_dir, _saved_quantizer(run_dir))  # early: before the data set loads
    model, config, data = load_run(run_dir)
    check_compilable(run_dir, config.quantizer)
    encoding: dict[str, Any] = {}
    if isinstance(model, ResNet8):  # a residual stream: its own lowering (train/residual.py)
        graph, sources = lower_resnet(model, data.input_bits, data.input_scale, config.model)
    elif isinstance(model, HourglassHW):
        graph, sources = lower_hourglass(model, data.input_bits, data.input_scale,
                                         config.model.replace("-", "_"))
    else:
        net = export_network(model, data.input_bits, data.input_scale, name=config.model)
        graph, sources = lower(net)
        if net.input_threshold is not None:
            encoding = {"input_encoding": binarized_input_encoding(data.input_bits,
                                                                   net.input_threshold)}
    return graph, {
        "run": str(Path(run_dir).resolve()),
        "model": config.model,
        "dataset": config.dataset,
        "data_dir": None if config.data_dir is None else str(Path(config.data_dir).resolve()),
        "input_bits": data.input_bits,
        "input_scale": data.input_scale,
        **encoding,
        "sources": sources,
    }


def binarized_input_encoding(pixel_bits: int, threshold: int) -> dict[str, Any]:
    """``compile.json``'s ``input_encoding`` of a binarized-input run (``--input-bits 1``).

    The table ``bitfold import`` writes for a network that quantizes its input
    (:func:`bitfold.interop.encoding.encode_pixels` reads it): the IR input bit
    of every pixel value, 1 (+1) where ``pixel >= threshold``.
    """
    return {"kind": "lut", "lut": [int(v >= threshold) for v in range(1 << pixel_bits)],
            "bipolar": True, "bits": 1, "pixel_bits": pixel_bits, "threshold": threshold,
            "summary": f"pixel >= {threshold}"}


def encode_frames(provenance: dict[str, Any], pixels: np.ndarray) -> np.ndarray:
    """The IR input of a trained build's test pixels (any layout): encoded where
    ``compile.json`` records an ``input_encoding`` (binarized input), else as they are.

    An imported build's test set (:func:`build_test_set`) comes encoded already,
    so its frames pass unchanged.
    """
    encoding = provenance.get("input_encoding")
    if encoding is None or provenance.get("source") == "onnx":
        return pixels
    from bitfold.interop.encoding import encode_pixels

    return encode_pixels(encoding, pixels).astype(np.uint8)


# --------------------------------------------------------------------------- golden: torch side


def nchw_to_ir(x: torch.Tensor | np.ndarray) -> np.ndarray:
    """Dataset frames ``(N, C, H, W)`` to the IR's ``(N, H, W, C)`` (vectors unchanged)."""
    x = np.asarray(x)
    return x.transpose(0, 2, 3, 1) if x.ndim == 4 else x


def read_provenance(build: str | Path) -> dict[str, Any]:
    """``BUILD/compile.json`` (the run and data set a build came from), or ``{}`` without one."""
    path = Path(build) / "compile.json"
    return read_json(path, 1) if path.is_file() else {}


def build_test_set(build: str | Path, dataset: str | None = None, data_dir: str | None = None,
                   provenance: dict[str, Any] | None = None, encoded: bool = True) -> Dataset:
    """The data set a build is checked against: ``dataset``, else the one compile.json records.

    The recorded data folder is used unless ``data_dir`` is given or another data set is named.
    The test frames are the IR input's values (:func:`encode_frames`: bits for a
    binarized input); ``encoded=False`` keeps a trained build's pixels as they
    are, for torch (an imported build's frames are always encoded).
    """
    prov = read_provenance(build) if provenance is None else provenance
    if prov.get("source") == "onnx":  # bitfold import: test split only, pixels encoded for the IR
        from bitfold.interop.check import imported_dataset

        return imported_dataset(build, prov, dataset, data_dir)
    name = dataset or prov.get("dataset")
    if name is None:
        raise ArtifactError(f"{build}: no compile.json names the data set; pass --dataset")
    same = name == prov.get("dataset")
    data = load_dataset(name, data_dir or (prov.get("data_dir") if same else None))
    if not encoded or "input_encoding" not in prov:
        return data
    def encode(x: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(encode_frames(prov, x.numpy()))

    return replace(data, x_train=encode(data.x_train), x_test=encode(data.x_test), input_bits=1,
                   input_scale=1.0)
