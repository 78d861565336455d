"""Test frames of an imported build, and the golden model against qonnx's execution of the model.

An imported build's ``compile.json`` has ``"source": "onnx"``, the input
encoding and the ONNX tensor of the class scores; ``BUILD/model.onnx`` is the
cleaned model itself. :func:`test_pixels` reads a data set's test split (a
test-only ``npz`` folder is enough); :func:`onnx_agreement` runs the frames
through the golden model (pixels encoded) and through qonnx's ``execute_onnx``
(pixels scaled) and reports where the classes differ.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .encoding import InputScale, encode_pixels
from .errors import InteropError

__all__ = ["ONNX_FILE", "imported_dataset", "is_imported", "onnx_agreement", "test_pixels"]

ONNX_FILE = "model.onnx"


def is_imported(prov: dict[str, Any]) -> bool:
    """True for the provenance (``compile.json``) of a build written by ``bitfold import``."""
    return prov.get("source") == "onnx"


def _npz_test(directory: Path) -> tuple[np.ndarray, np.ndarray]:
    path = directory / "test.npz"
    if not path.is_file():
        raise InteropError(f"{directory}: no test.npz; an npz test set holds x (N, H, W) or "
                           "(N, C, H, W) uint8 and y (N,) class indices")
    try:
        with np.load(path, allow_pickle=False) as f:
            x, y = f["x"], f["y"]
    except (OSError, ValueError, KeyError) as exc:
        raise InteropError(f"{path}: not an npz with arrays x and y ({exc})") from None
    if x.ndim == 3:
        x = x[:, None]
    if x.dtype.kind not in "iu" or x.ndim != 4 or y.ndim != 1 or len(x) != len(y):
        raise InteropError(f"{path}: x {x.dtype} {x.shape} and y {y.shape}; expected integer "
                           "pixels (N, H, W) or (N, C, H, W) and labels (N,)")
    return x, y.astype(np.int64)


def test_pixels(name: str, data_dir: str | None) -> tuple[np.ndarray, np.ndarray]:
    """The test split of data set ``name``: integer pixels ``(N, C, H, W)`` and labels."""
    if name == "npz":
        if not data_dir:
            raise InteropError("--dataset npz needs --data-dir DIR (a folder with test.npz)")
        return _npz_test(Path(data_dir))
    from bitfold.train.data import load_dataset

    data = load_dataset(name, data_dir)
    return data.x_test.numpy(), data.y_test.numpy()


def _frames(encoding: dict[str, Any], pixels: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """IR frames ``(N, H, W, C)`` (or ``(N, F)``) of pixels ``(N, C, H, W)``."""
    x = encode_pixels(encoding, pixels)
    if len(shape) == 3:
        x = x.transpose(0, 2, 3, 1)
    else:
        x = x.reshape(len(x), -1)
    if x.shape[1:] != tuple(shape):
        raise InteropError(f"test frames of shape {list(pixels.shape[1:])} do not fit the "
                           f"imported network's input {list(shape)} (IR layout)")
    return x


def imported_dataset(build: str | Path, prov: dict[str, Any], dataset: str | None,
                     data_dir: str | None) -> Any:
    """The test set of an imported build as the trainer's ``Dataset``, pixels already encoded.

    The frames are the IR input's values (bits for a bipolar input) in ``(N, C, H, W)``
    order, so every stage reading a build's test set takes them as they are.
    """
    import torch

    from bitfold.compiler.serialize import load_graph
    from bitfold.train.data import Dataset

    name = dataset or prov.get("dataset")
    if name is None:
        raise InteropError(f"{build}: the import named no data set; pass --dataset (and "
                           "--data-dir)")
    same = name == prov.get("dataset")
    pixels, labels = test_pixels(name, data_dir or (prov.get("data_dir") if same else None))
    graph = load_graph(build)
    shape = graph.types[graph.inputs[0]].shape
    x = _frames(prov["input_encoding"], pixels, shape)
    x = x.transpose(0, 3, 1, 2) if x.ndim == 4 else x
    empty = torch.zeros((0, *x.shape[1:]), dtype=torch.int64)
    enc = prov["input_encoding"]
    return Dataset(name, empty, torch.zeros(0, dtype=torch.int64), torch.from_numpy(x.copy()),
                   torch.from_numpy(labels), input_bits=int(enc["bits"]), input_scale=1.0,
                   num_outputs=int(labels.max()) + 1 if len(labels) else 0)


def onnx_agreement(graph: Any, model: Any, encoding: dict[str, Any], score_tensor: str,
                   pixels: np.ndarray, labels: np.ndarray | None,
                   reference_frames: int = 256) -> dict[str, Any]:
    """Golden classes against qonnx's on the same frames; the report for ``golden.json``.

    The golden model reads the encoded pixels, qonnx the scaled ones
    (``encoding['input_scale']``); qonnx's class is the argmax (ties to the lowest
    index) of ``score_tensor``. The report has golden ``accuracy``,
    ``onnx_accuracy``, ``onnx_agreement``, ``onnx_disagreement_count`` and the
    first 100 differing frames.
    """
    from bitfold.compiler.evaluate import evaluate_golden

    from .onnx_model import execute_frames

    shape = graph.types[graph.inputs[0]].shape
    x_ir = _frames(encoding, pixels, shape)
    scale = InputScale.parse(encoding["input_scale"])
    scores = execute_frames(model, scale.apply(pixels).reshape(len(pixels), *_onnx_shape(model)),
                            score_tensor)
    onnx_pred = scores.reshape(len(pixels), -1).argmax(axis=1)
    report, _ = evaluate_golden(graph, x_ir, labels, onnx_pred, reference_frames)
    out = {k: v for k, v in report.items() if not k.startswith("torch") and
           k not in ("agreement", "disagreement_count", "disagreements")}
    out.update(reference="qonnx execute_onnx", onnx_accuracy=report.get("torch_accuracy"),
               onnx_agreement=report["agreement"],
               onnx_disagreement_count=report["disagreement_count"],
               onnx_disagreements=report["disagreements"][:100])
    return out


def _onnx_shape(model: Any) -> tuple[int, ...]:
    return tuple(int(d) for d in model.get_tensor_shape(model.graph.input[0].name))[1:]
