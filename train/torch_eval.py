"""The torch side of ``bitfold golden``: eval-mode predictions, traces, and why torch and
the golden model disagree where they do (:mod:`.to_ir` re-exports these)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from bitfold.compiler.ir import Graph
from bitfold.compiler.packed import PackedExecutor

from .hourglass_hw import HourglassHW, heatmaps_nchw
from .trainer import pckh

__all__ = ["explain_disagreements", "golden_pose", "torch_predictions", "torch_trace"]


@torch.no_grad()
def torch_trace(model: torch.nn.Module, x_int: torch.Tensor, input_scale: float,
                batch: int = 1000, dtype: torch.dtype = torch.float32,
                ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Eval-mode predictions and each batch norm's output (the pre-sign values).

    The input is scaled as the trainer does, ``x_int.float() * input_scale``
    (``dtype`` other than float32 is for a model converted with ``.to(dtype)``).
    """
    model.eval()
    preds = []
    captured: dict[str, list[np.ndarray]] = {}
    hooks = []
    for name, mod in model.body.named_children():
        if isinstance(mod, torch.nn.BatchNorm1d | torch.nn.BatchNorm2d):
            captured[f"body.{name}"] = []
            hooks.append(mod.register_forward_hook(
                lambda m, i, o, key=f"body.{name}": captured[key].append(o.numpy().copy())))
    try:
        for i in range(0, len(x_int), batch):
            out = model(x_int[i:i + batch].to(dtype) * input_scale)
            preds.append(out.argmax(1).numpy())
    finally:
        for h in hooks:
            h.remove()
    outs = {k: np.concatenate(v) for k, v in captured.items()}
    return np.concatenate(preds), outs


def torch_predictions(model: torch.nn.Module, x_int: torch.Tensor, input_scale: float,
                      batch: int = 1000) -> np.ndarray:
    """Eval-mode class predictions of the torch model, inputs scaled as in training."""
    with torch.no_grad():
        model.eval()
        if hasattr(model, "input_scale"):  # a residual model: its exact integer streams,
            model.input_scale = input_scale  # as make_model gives it
        return np.concatenate([model(x_int[i:i + batch].float() * input_scale).argmax(1).numpy()
                               for i in range(0, len(x_int), batch)])


def _bn_after(model: torch.nn.Module, source: str) -> str | None:
    """The batch norm that directly follows binary layer ``source`` in the body."""
    names = [f"body.{n}" for n, _ in model.body.named_children()]
    i = names.index(source) + 1
    mod = dict(model.body.named_children())[names[i][5:]] if i < len(names) else None
    return names[i] if isinstance(mod, torch.nn.BatchNorm1d | torch.nn.BatchNorm2d) else None


def explain_disagreements(model: torch.nn.Module, graph: Graph, sources: dict[str, str],
                          x_int: torch.Tensor, input_scale: float,
                          golden: dict[str, np.ndarray]) -> list[dict[str, Any]]:
    """Why torch and the golden model differ on the frames ``x_int``.

    For each frame: the first layer (in execution order) where torch's sign of
    its batch-norm output differs from the golden ``Threshold`` bits, with the
    channels and torch's float32 values there (values near 0 are float ties
    at a threshold); or, when every layer agrees, the top two torch scores and
    their gap (a near-tie of real scores, settled by the integer score rounding).
    """
    if not hasattr(model, "body"):  # a residual network: only the classes are compared
        preds = torch_predictions(model, x_int, input_scale)
        return [{"torch": int(p), "golden": int(g)} for p, g in zip(preds, golden["class"],
                                                                      strict=True)]
    preds, bn = torch_trace(model, x_int, input_scale)
    reports = []
    thresholds = [n for n in graph.nodes if n.kind == "Threshold"]
    for i in range(len(x_int)):
        report: dict[str, Any] = {"torch": int(preds[i]), "golden": int(golden["class"][i])}
        for node in thresholds:
            key = _bn_after(model, sources[node.name])
            if key is None:
                continue
            values = bn[key][i]
            torch_bits = (values >= 0).astype(np.uint8)
            if torch_bits.ndim == 3:  # (C, H, W) -> (H, W, C)
                values, torch_bits = values.transpose(1, 2, 0), torch_bits.transpose(1, 2, 0)
            diff = np.argwhere(torch_bits != golden[node.name][i])
            if len(diff):
                report["first_difference"] = node.name
                report["flipped"] = [
                    {"index": [int(v) for v in d], "torch_value": float(values[tuple(d)]),
                     "golden_bit": int(golden[node.name][i][tuple(d)])} for d in diff[:8]]
                report["flipped_count"] = int(len(diff))
                break
        else:
            scores = bn[_bn_after(model, sources["class"])][i]
            top = np.argsort(-scores, kind="stable")[:2]
            report["first_difference"] = "scores"
            report["torch_top2"] = [{"class": int(c), "score": float(scores[c])} for c in top]
            report["torch_gap"] = float(scores[top[0]] - scores[top[1]])
        reports.append(report)
    return reports


def golden_pose(model: HourglassHW, graph: Graph, data, n: int) -> dict:
    """``bitfold golden`` for a pose build: PCKh@0.5 of the golden heatmaps and of torch's (in
    exact eval) on the first ``n`` test images, and the images whose heatmaps differ."""
    x = data.x_test[:n]
    golden = heatmaps_nchw(PackedExecutor(graph).run(x.numpy().transpose(0, 2, 3, 1),
                                                     keep=graph.outputs)[graph.outputs[0]])
    model.eval()
    model.input_scale = data.input_scale
    with torch.no_grad():
        torch_maps = torch.cat([model(x[i:i + 64].float() * data.input_scale)
                                for i in range(0, n, 64)]).double()
    joints, head, image = data.y_test[:n], data.head_test[:n], data.input_shape[-2:]
    differ = [int(i) for i in torch.nonzero((golden != torch_maps).flatten(1).any(1))]
    return {"schema": 1, "task": "pose", "frames": n, "dataset": data.name, "split": "test",
            "pckh": float(pckh(golden, joints, head, image).mean()),
            "torch_pckh": float(pckh(torch_maps, joints, head, image).mean()),
            "heatmaps_differ": len(differ), "differing_frames": differ[:100]}
