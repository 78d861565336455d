"""The CPU side of ``bitfold bench``: torch float, torch binary and the packed golden executor.

:func:`cpu_baselines` times each on the build's test frames at every batch
size of :data:`BATCHES` (the engines are described in :mod:`bitfold.bench`'s
docstring); :func:`machine` says what it ran on.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from bitfold.machine import machine

__all__ = ["BATCHES", "cpu_baselines", "float_twin", "machine"]

BATCHES = (1, 8, 32, 128, 512)


def _rate(call: Callable[[], Any], frames: int, min_s: float, repeats: int) -> float:
    """Frames/s of ``call`` (which processes ``frames`` frames): best of ``repeats`` rounds of
    at least ``min_s`` seconds each."""
    call()  # warm-up: first-call allocations, lazy kernels
    best = float("inf")
    for _ in range(repeats):
        calls, t0 = 0, time.perf_counter()
        while True:
            call()
            calls += 1
            elapsed = time.perf_counter() - t0
            if elapsed >= min_s:
                break
        best = min(best, elapsed / calls)
    return frames / best


def _tiled(x, n: int):
    """The first ``n`` frames of ``x`` (an array or a tensor), repeated when ``x`` has fewer."""
    reps = -(-n // len(x))
    if reps == 1:
        return x[:n]
    if isinstance(x, np.ndarray):
        return np.concatenate([x] * reps)[:n]
    import torch

    return torch.cat([x] * reps)[:n]


def float_twin(model, config, data):
    """The same architecture as ``model`` in float32: plain real weights, hard-tanh for sign.

    Built fresh rather than copied: removing a parametrization from a deep copy
    would delete the weight property from the class the original shares.
    """
    import torch

    from bitfold.train.layers import binary_layers
    from bitfold.train.models import build_model

    twin = build_model(config.model, data.input_shape, data.num_outputs, 0.0,
                       getattr(model, "input_binarizer", None))
    own = model.state_dict()
    twin.load_state_dict({k: own[k] for k in twin.state_dict() if k in own}, strict=False)
    layers = dict(binary_layers(model))
    for name, layer in binary_layers(twin):
        with torch.no_grad():
            layer.weight.copy_(layers[name].real_weight())
        layer.activation = "hardtanh"  # as in the float baseline (--quantizer float)
    return twin.eval().requires_grad_(False)


def cpu_baselines(build: str | Path, frames: int = 512, batches: tuple[int, ...] = BATCHES,
                  min_s: float = 0.2, repeats: int = 3, threads: int | None = None,
                  progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Measure each CPU baseline at each batch size; see :mod:`bitfold.bench`'s docstring."""
    from bitfold.compiler.packed import PackedExecutor
    from bitfold.compiler.serialize import load_graph
    from bitfold.train.to_ir import build_test_set, encode_frames, nchw_to_ir, read_provenance

    build = Path(build)
    graph = load_graph(build)
    prov = read_provenance(build)
    threads = threads or os.cpu_count() or 1
    data = build_test_set(build, provenance=prov, encoded=False)  # torch binarizes its own input
    n = min(frames, len(data.x_test))
    x_int = data.x_test[:n]
    x_ir = encode_frames(prov, nchw_to_ir(x_int.numpy()))
    out = graph.outputs[0]
    executor = PackedExecutor(graph)
    pool = ThreadPoolExecutor(threads)

    def golden(x: np.ndarray) -> np.ndarray:
        if threads == 1 or len(x) < 2 * threads:
            return executor.run(x, keep=[out], batch=len(x))[out]
        parts = np.array_split(x, threads)
        return np.concatenate([r[out] for r in pool.map(
            lambda p: executor.run(p, keep=[out], batch=len(p)), parts)])

    runners: dict[str, Callable[[Any], Any]] = {"golden-packed": golden}
    inputs: dict[str, Any] = {"golden-packed": x_ir}
    golden_classes = golden(x_ir)
    labels = data.y_test[:n].numpy()
    result: dict[str, Any] = {"frames": n, "dataset": data.name, "threads": threads,
                              "golden_accuracy": float((golden_classes == labels).mean())}
    run = prov.get("run")
    if run and Path(run, "checkpoint.pt").is_file():
        torch_runners, x_float = _torch_runners(run, data, x_int)
        runners.update(torch_runners)
        inputs["torch-float"] = inputs["torch-binary"] = x_float
        torch_classes = runners["torch-binary"](x_float).numpy()
        result["torch_accuracy"] = float((torch_classes == labels).mean())
        result["torch_golden_agreement"] = float((torch_classes == golden_classes).mean())
    else:
        result["note"] = (f"no trained run at {run!r} (compile.json): torch baselines skipped"
                          if run else "compile.json names no run: torch baselines skipped")
    try:
        rows = _rates(runners, inputs, batches, min_s, repeats, threads, progress)
    finally:
        pool.shutdown()
    result["rows"] = rows
    result["best"] = {name: max((r for r in rows if r["name"] == name), key=lambda r: r["fps"])
                      for name in runners}
    return result


def _torch_runners(run: str, data, x_int) -> tuple[dict[str, Callable[[Any], Any]], Any]:
    """``torch-float`` and ``torch-binary`` of the trained ``run`` (classes of a float batch),
    and the frames as their float input."""
    import torch
    from torch.nn.utils import parametrize

    from bitfold.train.layers import binary_layers
    from bitfold.train.trainer import load_run

    model, config, _ = load_run(run)
    twin = float_twin(model, config, data)
    for _, layer in binary_layers(model):  # deploy form: alpha * sign(W) as plain tensors
        parametrize.remove_parametrizations(layer, "weight", leave_parametrized=True)

    @torch.no_grad()
    def binary(x):
        return model(x).argmax(1)

    @torch.no_grad()
    def real(x):
        return twin(x).argmax(1)

    return {"torch-float": real, "torch-binary": binary}, x_int.float() * data.input_scale


def _rates(runners: dict[str, Callable[[Any], Any]], inputs: dict[str, Any],
           batches: tuple[int, ...], min_s: float, repeats: int, threads: int,
           progress: Callable[[str], None] | None) -> list[dict[str, Any]]:
    """Frames/s and latency of every runner at every batch size, torch on ``threads``."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    rows = []
    try:
        for name in ("torch-float", "torch-binary", "golden-packed"):
            if name not in runners:
                continue
            for b in batches:
                xb = _tiled(inputs[name], b)
                fn = runners[name]
                fps = _rate(lambda fn=fn, xb=xb: fn(xb), b, min_s, repeats)
                rows.append({"name": name, "batch": b, "fps": fps, "latency_ms": 1e3 * b / fps})
                if progress:
                    progress(f"{name} batch {b}: {fps:,.0f} frames/s")
    finally:
        torch.set_num_threads(previous)
    return rows
