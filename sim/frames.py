"""Test vectors of a simulation: input beats and expected outputs, packed as the manifest says.

numpy only. The runner writes a :class:`Vectors` file (``vectors.npz``) into the
simulation folder; the cocotb testbench reads it back, so the simulator process
never needs the compiler, the dataset or torch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bitfold.compiler.bitpack import pack_ints

__all__ = ["Vectors", "decode_beat", "decode_output", "expected_outputs", "pack_beats"]


def pack_beats(frames: np.ndarray, elements_per_beat: int, element_bits: int) -> list[int]:
    """Every input beat of ``frames`` as an integer, frame after frame.

    ``frames`` is ``(N, ...)`` in the IR's (H, W, C) layout; each frame is
    flattened row-major and cut into beats of ``elements_per_beat`` elements,
    element ``i`` of a beat at bits ``[i*element_bits, (i+1)*element_bits)``.
    """
    flat = np.asarray(frames).reshape(len(frames), -1).astype(np.int64)
    n, size = flat.shape
    if size % elements_per_beat:
        raise ValueError(f"a frame of {size} elements does not split into beats of "
                         f"{elements_per_beat} elements")
    if flat.size and (flat.min() < 0 or flat.max() >= 1 << element_bits):
        raise ValueError(f"frame elements must lie in 0..{(1 << element_bits) - 1} "
                         f"({element_bits} bits), not {flat.min()}..{flat.max()}")
    return pack_ints(flat.reshape(-1, elements_per_beat), element_bits)


def decode_beat(word: int, output: dict[str, Any]) -> tuple[int, int]:
    """Score and class index of one output beat (``manifest["output"]``)."""
    sc, cl = output["score"], output["class"]
    v = (word >> sc["lsb"]) & ((1 << sc["bits"]) - 1)
    score = v - (1 << sc["bits"]) if sc["signed"] and v >> (sc["bits"] - 1) else v
    return int(score), int((word >> cl["lsb"]) & ((1 << cl["bits"]) - 1))


def decode_output(words: Sequence[int], output: dict[str, Any]) -> tuple[int, list[int]]:
    """Class index and scores of one frame from its output beats (``manifest["output"]``).

    A frame is ``output["beats_per_frame"]`` beats, one per class, class 0 first;
    the class is the index on the last beat.
    """
    if len(words) != output["beats_per_frame"]:
        raise ValueError(f"a frame is {output['beats_per_frame']} output beats, not {len(words)}")
    beats = [decode_beat(w, output) for w in words]
    return beats[-1][1], [score for score, _ in beats]


def expected_outputs(graph, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Class and scores of ``frames`` from the golden model (the packed executor)."""
    from bitfold.compiler.ir import ArgMax, ScoreAffine
    from bitfold.compiler.packed import PackedExecutor

    cls = next(n.name for n in graph.nodes if isinstance(n, ArgMax))
    scores = next(n.name for n in graph.nodes if isinstance(n, ScoreAffine))
    out = PackedExecutor(graph).run(np.asarray(frames), keep=[cls, scores])
    return out[cls].astype(np.int64), out[scores].astype(np.int64)


@dataclass
class Vectors:
    """Input frames (HWC-flattened integers) with the golden class and scores of each."""

    frames: np.ndarray  # (N, elements)
    classes: np.ndarray  # (N,)
    scores: np.ndarray  # (N, classes)

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp.npz")
        np.savez(tmp, frames=self.frames, classes=self.classes, scores=self.scores)
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, path: str | Path) -> Vectors:
        with np.load(path, allow_pickle=False) as f:
            return cls(f["frames"], f["classes"], f["scores"])
