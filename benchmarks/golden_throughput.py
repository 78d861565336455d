"""Packed golden executor vs torch float32 CPU inference: frames per second, one run.

For each model (default ``sfc`` and ``lfc``, MNIST-shaped 1x28x28 8-bit input)
the same network is built once: torch runs it in eval mode with its binary
weights materialized (``alpha * sign(W)`` as plain float32 tensors, so no
parametrization is recomputed per call); the compiler lowers and folds it and
the packed executor runs the integer graph on one thread (numpy; the multi-bit
first layer is an exact float64 product through a one-thread BLAS, and a second
timing runs it bit-serially). Both classify the same frames, each in batches
of its best size (``--batch`` for torch, ``--golden-batch`` for the packed
executor); each is timed ``--repeats`` times and the best is kept. Torch runs
with its default threads and with one.
Weights are untrained (batch-norm statistics from real frames, random biases):
throughput does not depend on their values, and the two must still agree.
(With the initial zero biases, a channel whose dots happen to sum to 0 over the
statistics batch gets its threshold exactly at dot = 0, and float32 rounding
decides the frames that land there: an exact tie, not a folding error.)

    .venv/bin/python benchmarks/golden_throughput.py --data-dir ../shared/data/mnist
"""

from __future__ import annotations

import os

# The packed executor is measured on one thread: numpy's BLAS (the first layer's product)
# is pinned before numpy loads. Torch is measured with its default threads and with one.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse  # noqa: E402
import platform
import time

import numpy as np
import torch
from torch.nn.utils import parametrize

from bitfold.compiler.packed import PackedExecutor
from bitfold.compiler.passes import fold
from bitfold.train.data import load_dataset
from bitfold.train.export import export_network
from bitfold.train.layers import binary_layers
from bitfold.train.to_ir import lower, nchw_to_ir
from bitfold.train.trainer import TrainConfig, make_model


def build(name: str, data) -> torch.nn.Module:
    torch.manual_seed(0)
    model = make_model(TrainConfig(model=name, dataset=data.name, param="dense",
                                   alpha="analytic"), data)
    bns = [m for m in model.modules()
           if isinstance(m, torch.nn.BatchNorm1d | torch.nn.BatchNorm2d)]
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():  # batch-norm statistics from real frames, biases like trained ones
        for bn in bns:
            bn.momentum = 1.0
        model.train()
        model(data.x_train[:1000].float() * data.input_scale)
        for bn in bns:
            bn.bias.copy_(0.1 * torch.randn(bn.bias.shape, generator=g))
    return model.eval()


def materialize(model: torch.nn.Module) -> torch.nn.Module:
    for _, layer in binary_layers(model):
        parametrize.remove_parametrizations(layer, "weight", leave_parametrized=True)
    return model


def best_of(fn, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def measure(name: str, data, x_torch: torch.Tensor, x_ir: np.ndarray, batch: int,
            golden_batch: int, repeats: int) -> str:
    """One table row: both executors on the same frames, best of ``repeats``."""
    model = build(name, data)
    graph = fold(lower(export_network(model, data.input_bits, data.input_scale, name))[0])
    model = materialize(model)
    executor = PackedExecutor(graph)
    serial = PackedExecutor(graph, bit_serial=True)
    preds: dict[str, np.ndarray] = {}

    def run_golden() -> None:
        preds["golden"] = executor.run(x_ir, keep=["class"], batch=golden_batch)["class"]

    def run_serial() -> None:
        preds["serial"] = serial.run(x_ir, keep=["class"], batch=golden_batch)["class"]

    @torch.no_grad()
    def run_torch() -> None:
        preds["torch"] = torch.cat([
            model(x_torch[i:i + batch].float() * data.input_scale).argmax(1)
            for i in range(0, len(x_torch), batch)]).numpy()

    fps_g = len(x_ir) / best_of(run_golden, repeats)
    fps_s = len(x_ir) / best_of(run_serial, repeats)
    fps_t = len(x_ir) / best_of(run_torch, repeats)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    fps_t1 = len(x_ir) / best_of(run_torch, repeats)
    torch.set_num_threads(threads)
    bits = sum(n.weight.size for n in graph.nodes if n.kind == "BinaryDense")
    agree = float(np.mean(preds["golden"] == preds["torch"]))
    assert np.array_equal(preds["golden"], preds["serial"])
    return (f"| {name} | {bits} | {fps_g:,.0f} | {fps_s:,.0f} | {fps_t:,.0f} | "
            f"{fps_g / fps_t:.2f} | {fps_t1:,.0f} | {fps_g / fps_t1:.2f} | {agree:.4f} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="sfc,lfc")
    ap.add_argument("--dataset", default="mnist")
    ap.add_argument("--data-dir", default="../shared/data/mnist")
    ap.add_argument("--frames", type=int, default=10000)
    ap.add_argument("--batch", type=int, default=1000, help="torch batch size")
    ap.add_argument("--golden-batch", type=int, default=128,
                    help="packed executor batch size (smaller batches stay in cache)")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()

    data = load_dataset(args.dataset, args.data_dir)
    x_torch = data.x_test[:args.frames]
    x_ir = nchw_to_ir(x_torch.numpy()).astype(np.int64)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores (load {load:.1f}), "
          f"torch {torch.__version__} "
          f"({torch.get_num_threads()} threads), numpy {np.__version__}; {len(x_ir)} "
          f"{data.name} test frames, batch {args.batch} (torch) / {args.golden_batch} (golden), "
          f"best of {args.repeats}")
    print(f"| model | weight bits | packed golden (frames/s) | golden, bit-serial first layer | "
          f"torch float32, {torch.get_num_threads()} threads | golden / torch | torch, 1 thread | "
          f"golden / torch 1 thread | agreement |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name in args.models.split(","):
        print(measure(name, data, x_torch, x_ir, args.batch, args.golden_batch, args.repeats))

if __name__ == "__main__":
    main()
