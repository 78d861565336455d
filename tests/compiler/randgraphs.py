"""Random lowered (pre-fold) graphs and inputs for property tests.

Hypothesis draws the structure (so failures shrink to small graphs); a drawn
seed fills weights, slopes and offsets. Slopes include zeros, negatives and
values that put the crossing point exactly on an integer, where ``>=`` and
``sign(0) = +1`` matter.
"""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

from bitfold.compiler.encodings import ENCODINGS, Binary
from bitfold.compiler.ir import (
    Add,
    AffineArgMax,
    AffineSign,
    AvgPool2d,
    Graph,
    Input,
    Layer,
    MaxPool2d,
    Node,
    Requantize,
    TensorType,
    Upsample2d,
    Window,
)
from bitfold.compiler.verify import build_graph, channel_ranges


def _affine(rng: np.random.Generator, c: int, lo: int, hi: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel slopes/offsets whose crossing points fall inside (and on the edges of) lo..hi."""
    slope = np.empty(c)
    offset = np.empty(c)
    for i in range(c):
        style = rng.integers(0, 6)
        k = float(rng.choice([-1, 1]) * rng.uniform(0.01, 3.0))
        if style == 0:
            k = 0.0
        elif style == 1:
            k = float(rng.choice([-2, -1, -0.5, 0.5, 1, 2]))
        a0 = int(rng.integers(lo - 1, hi + 2))
        if style in (1, 2):  # crossing exactly at an integer: a tie at a0
            b = -k * a0
        else:
            b = -k * (a0 + float(rng.uniform(-1, 1)))
        if k == 0.0:
            b = float(rng.choice([-1.0, 0.0, 1.0]))
        slope[i], offset[i] = k, b
    return slope, offset


SCHEMES = ("binary", "sparse", "composite", "lowrank", "domain")


def _weights(rng: np.random.Generator, scheme: str, shape: tuple[int, ...]) -> dict:
    """The attributes of the encoding ``scheme`` with weight ``shape`` ``(C_out, ...)``."""
    if scheme == "sparse":
        density = float(rng.choice([0.05, 0.3, 0.5, 0.9]))
        return {"mask": (rng.random(shape) < density).astype(np.uint8),
                "polarity": rng.integers(0, 2, shape[0])}
    if scheme == "composite":
        k = int(rng.integers(1, 4))
        return {"weight": rng.integers(0, 2, (k, *shape)),
                "plane_scale": rng.integers(1, 300, k)}
    if scheme == "ternary":
        mask = (rng.random(shape) < float(rng.choice([0.0, 0.3, 0.7, 1.0]))).astype(np.uint8)
        return {"mask": mask, "sign": mask & rng.integers(0, 2, shape)}
    if scheme == "domain":
        scale = int(rng.choice([1, 3, 256]))
        return {"weight": rng.integers(0, 2, shape), "scale": scale,
                "offset": rng.integers(-2 * scale, 2 * scale + 1, shape[0])}
    return {"weight": rng.integers(0, 2, shape)}


def _encoding(rng: np.random.Generator, scheme: str, shape: tuple[int, ...]):
    """A random encoding ``scheme`` (``lowrank``'s outer layer: binary) of weight ``shape``."""
    return ENCODINGS.get(scheme, Binary)(**_weights(rng, scheme, shape))


def _range(node: Layer, shape: tuple[int, ...], bipolar: bool, hi: int) -> tuple[int, int]:
    t = TensorType(shape, 1, True) if bipolar else TensorType(shape, int(hi).bit_length(), False)
    ranges = channel_ranges(node, t)
    return min(r[0] for r in ranges), max(r[1] for r in ranges)


@st.composite
def lowered_graphs(draw, max_layers: int = 3, schemes: tuple[str, ...] = ("binary",),
                   last: tuple[str, ...] | None = None) -> Graph:
    """A random pre-fold graph: [conv|dense -> AffineSign -> pool?]* -> dense -> AffineArgMax.

    Each binary layer is drawn from ``schemes`` (the last one from ``last``, if given): an
    encoding's name (``binary``, ``sparse``, ``composite``, ``domain``, ``ternary``) or
    ``lowrank`` (a dense layer on bipolar input becomes a binary dense layer whose
    popcounts a second one reads as multi-bit input).
    """
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    image = draw(st.booleans())
    bipolar_in = draw(st.integers(0, 4)) == 0
    bits = 1 if bipolar_in else draw(st.integers(1, 8))
    if image:
        shape = (draw(st.integers(2, 7)), draw(st.integers(2, 7)), draw(st.integers(1, 3)))
    else:
        shape = (draw(st.integers(1, 70)),)
    nodes: list[Node] = [Input("x", shape, bits, signed=bipolar_in)]
    cur, cur_shape, cur_bipolar, cur_hi = "x", shape, bipolar_in, (1 << bits) - 1
    for i in range(draw(st.integers(0, max_layers))):
        scheme = draw(st.sampled_from(schemes))
        if len(cur_shape) == 3 and draw(st.booleans()):
            h, w, c = cur_shape
            k = draw(st.integers(1, 3))
            pad = draw(st.integers(0, k))
            if h + 2 * pad < k or w + 2 * pad < k:
                pad = k
            stride = draw(st.integers(1, 2))
            c_out = draw(st.integers(1, 5))
            pad_value = (int(rng.choice([-1, 1])) if cur_bipolar
                         else int(rng.integers(0, cur_hi + 1)))
            nodes.append(Layer(f"conv{i}", cur, _encoding(rng, scheme, (c_out, k, k, c)),
                               Window(k, stride, pad, pad_value)))
            lo, hi = _range(nodes[-1], cur_shape, cur_bipolar, cur_hi)
            cur_shape = ((h + 2 * pad - k) // stride + 1, (w + 2 * pad - k) // stride + 1, c_out)
        else:
            c_out = draw(st.integers(1, 40))
            fan_in = int(np.prod(cur_shape))
            if scheme == "lowrank" and cur_bipolar:
                rank = draw(st.integers(1, 8))
                nodes.append(Layer(f"fc{i}_inner", cur, Binary(rng.integers(0, 2, (rank, fan_in)))))
                cur, cur_shape, cur_bipolar, cur_hi = f"fc{i}_inner", (rank,), False, fan_in
                fan_in = rank
            nodes.append(Layer(f"fc{i}", cur, _encoding(rng, scheme, (c_out, fan_in))))
            lo, hi = _range(nodes[-1], cur_shape, cur_bipolar, cur_hi)
            cur_shape = (c_out,)
        slope, offset = _affine(rng, c_out, lo, hi)
        nodes.append(AffineSign(f"act{i}", nodes[-1].name, slope, offset))
        cur, cur_bipolar, cur_hi = f"act{i}", True, 1
        if len(cur_shape) == 3 and draw(st.booleans()):
            k = draw(st.integers(1, 2))
            s = draw(st.integers(1, 2))
            if cur_shape[0] >= k and cur_shape[1] >= k:
                nodes.append(MaxPool2d(f"pool{i}", cur, k, s))
                cur = f"pool{i}"
                h, w, c = cur_shape
                cur_shape = ((h - k) // s + 1, (w - k) // s + 1, c)
    classes = draw(st.integers(1, 6))
    fan_in = int(np.prod(cur_shape))
    scheme = draw(st.sampled_from(last or schemes))
    nodes.append(Layer("fc_out", cur, _encoding(rng, scheme, (classes, fan_in))))
    lo, hi = _range(nodes[-1], cur_shape, cur_bipolar, cur_hi)
    slope, offset = _affine(rng, classes, lo, hi)
    if draw(st.booleans()):  # scores that tie often
        slope = np.round(slope)
        offset = np.round(offset)
    nodes.append(AffineArgMax("out", "fc_out", slope, offset))
    return build_graph(f"random{seed}", nodes, ["out"])


def random_inputs(graph: Graph, n: int, seed: int) -> np.ndarray:
    """``n`` random frames for the graph's input (bits for a bipolar input)."""
    t = graph.types[graph.inputs[0]]
    hi = 1 if t.bipolar else t.hi
    rng = np.random.default_rng(seed)
    x = rng.integers(0, hi + 1, (n, *t.shape))
    x[: n // 4] = rng.choice([0, hi], (n // 4, *t.shape))  # extremes hit the range edges
    return x


def _requantize(rng: np.random.Generator, name: str, src: str, c: int, lo: int, hi: int,
                bits: int) -> Requantize:
    """A random ``Requantize`` of accumulators ``lo .. hi``: some channels saturate."""
    mult = rng.integers(-9, 10, c)
    mult[rng.random(c) < 0.2] = 0
    shift = int(rng.integers(0, 7))
    span = max(abs(lo), abs(hi), 1)
    bias = rng.integers(-span * 4, span * 4 + 1, c)
    return Requantize(name, src, mult, bias, shift, bits)


@st.composite
def residual_graphs(draw, max_blocks: int = 3, hardware: bool = False) -> Graph:
    """A random pre-fold residual network on an image:
    conv -> Requantize, then blocks ``AffineSign -> conv -> Requantize -> Add(skip)`` (a strided
    block's skip average-pooled, a wider block's skip zero-extended; sometimes upsampled back
    and added to the stream before it, an hourglass' join), then ``AffineSign`` (after a global
    average pool, sometimes) -> dense -> ``AffineArgMax``. Pre-activation slopes are >= 0 (a
    stream's sign cannot be negated into the layer that made it). ``hardware``: only what
    the generator builds (no upsampling joins, no global pool)."""
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    h, w = 2 * draw(st.integers(1, 4)), 2 * draw(st.integers(1, 4))
    c = draw(st.integers(1, 3))
    bipolar_in = draw(st.integers(0, 4)) == 0
    bits = 1 if bipolar_in else draw(st.integers(1, 8))
    stream_bits = draw(st.integers(2, 12))
    nodes: list[Node] = [Input("x", (h, w, c), bits, signed=bipolar_in)]
    c_out = draw(st.integers(1, 4))
    nodes.append(Layer("stem", "x", _encoding(rng, "binary", (c_out, 3, 3, c)),
                       Window(3, 1, 1, int(rng.choice([-1, 1])) if bipolar_in else 0)))
    lo, hi = _range(nodes[-1], (h, w, c), bipolar_in, (1 << bits) - 1)
    nodes.append(_requantize(rng, "r0", "stem", c_out, lo, hi, stream_bits))
    cur, shape = "r0", (h, w, c_out)
    for i in range(draw(st.integers(0, max_blocks))):
        h, w, c = shape
        block_in = cur
        stride = 2 if h % 2 == 0 and w % 2 == 0 and draw(st.booleans()) else 1
        k = draw(st.sampled_from([1, 3]))
        c_next = c + draw(st.integers(0, 2))
        slope, offset = _affine(rng, c, -(1 << (stream_bits - 1)), (1 << (stream_bits - 1)) - 1)
        nodes.append(AffineSign(f"a{i}", cur, np.abs(slope), offset))
        nodes.append(Layer(f"conv{i}", f"a{i}", _encoding(rng, "binary", (c_next, k, k, c)),
                           Window(k, stride, k // 2, int(rng.choice([-1, 1])))))
        lo, hi = _range(nodes[-1], shape, True, 1)
        nodes.append(_requantize(rng, f"q{i}", f"conv{i}", c_next, lo, hi, stream_bits))
        skip = cur
        if stride == 2:
            nodes.append(AvgPool2d(f"down{i}", cur, 2, 2))
            skip = f"down{i}"
        nodes.append(Add(f"r{i + 1}", f"q{i}", skip, stream_bits))
        cur, shape = f"r{i + 1}", (h // stride, w // stride, c_next)
        if not hardware and stride == 2 and c_next == c and draw(st.booleans()):  # back up
            nodes.append(Upsample2d(f"up{i}", cur, 2))
            nodes.append(Add(f"j{i}", f"up{i}", block_in, stream_bits))
            cur, shape = f"j{i}", (h, w, c_next)
    h, w, c = shape
    if not hardware and h == w and draw(st.booleans()):
        nodes.append(AvgPool2d("gap", cur, h, 1))
        cur, shape = "gap", (1, 1, c)
    slope, offset = _affine(rng, c, -(1 << (stream_bits - 1)), (1 << (stream_bits - 1)) - 1)
    nodes.append(AffineSign("a_out", cur, np.abs(slope), offset))
    classes = draw(st.integers(1, 5))
    fan_in = int(np.prod(shape))
    nodes.append(Layer("fc_out", "a_out", _encoding(rng, "binary", (classes, fan_in))))
    lo, hi = _range(nodes[-1], shape, True, 1)
    slope, offset = _affine(rng, classes, lo, hi)
    nodes.append(AffineArgMax("out", "fc_out", slope, offset))
    return build_graph(f"residual{seed}", nodes, ["out"])
