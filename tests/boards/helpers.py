"""A small network and a UART line model for the board tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from bitfold.artifacts import write_json
from bitfold.compiler.encodings import Binary
from bitfold.compiler.folding import evaluate_folding
from bitfold.compiler.ir import (
    ArgMax,
    Graph,
    Input,
    Layer,
    ScoreAffine,
    Threshold,
)
from bitfold.compiler.serialize import save_graph
from bitfold.compiler.verify import build_graph


def tiny_graph() -> Graph:
    rng = np.random.default_rng(0)
    nodes = [Input("input", (4, 4, 1), 4),
             Layer("fc0", "input", Binary(rng.integers(0, 2, (8, 16)))),
             Threshold("reg", "fc0", rng.integers(-10, 10, 8)),
             Layer("fc1", "reg", Binary(rng.integers(0, 2, (3, 8)))),
             ScoreAffine("scores", "fc1", np.array([2, -1, 1]), np.array([0, 5, -3])),
             ArgMax("class", "scores")]
    return build_graph("tiny", nodes, ["class"])


def tiny_folding(graph: Graph, clock_mhz: float = 12.0, device: str = "ice40"):
    return evaluate_folding(graph, {"fc0": (2, 4), "fc1": (1, 2)}, clock_mhz, device)


def tiny_build(tmp_path: Path, clock_mhz: float = 12.0, device: str = "ice40") -> Path:
    tmp_path.mkdir(parents=True, exist_ok=True)
    graph = tiny_graph()
    save_graph(graph, tmp_path)
    write_json(tmp_path / "folding.json", tiny_folding(graph, clock_mhz, device).to_json())
    return tmp_path


async def uart_send(ctx, pin, data: bytes, divisor: int) -> None:
    """Drive ``pin`` with 8N1 frames of ``data``."""
    for byte in data:
        for bit in [0, *((byte >> i) & 1 for i in range(8)), 1]:
            ctx.set(pin, bit)
            await ctx.tick().repeat(divisor)


async def uart_receive(ctx, pin, n: int, divisor: int, max_cycles: int = 200_000) -> bytes:
    """Read ``n`` 8N1 bytes from ``pin`` (sampling mid-bit)."""
    out = bytearray()
    waited = 0
    while len(out) < n:
        while ctx.get(pin):
            await ctx.tick()
            waited += 1
            if waited > max_cycles:
                raise TimeoutError(f"{len(out)} of {n} bytes after {max_cycles} cycles")
        await ctx.tick().repeat(divisor + divisor // 2)
        byte = 0
        for i in range(8):
            byte |= ctx.get(pin) << i
            await ctx.tick().repeat(divisor)
        assert ctx.get(pin) == 1, "stop bit must be high"
        out.append(byte)
    return bytes(out)
