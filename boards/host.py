"""The host side of the UART bridge: frames to bytes, bytes to class and scores, over pyserial.

The format comes from ``BUILD/boards/NAME/bridge.json`` (written by ``bitfold
build``): every input beat is ``in_bytes`` bytes little-endian holding
``in_elems`` elements of ``in_bits`` bits (element ``i`` at bit ``i*in_bits``);
every result is ``out_bytes`` bytes: the ``classes`` scores, class 0 first,
each ``score_bytes`` bytes little-endian two's complement (``score_bits``
significant), then the class index in ``class_bytes`` bytes little-endian.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from bitfold.artifacts import read_json, write_json

__all__ = ["BRIDGE_SCHEMA", "BridgeFormat", "HostError", "decode_result", "encode_frame",
           "infer_serial", "read_selftest"]

BRIDGE_SCHEMA = 2  # 2: results are the scores, then the class


class HostError(ValueError):
    """The serial link failed: no such port, or the board did not answer in time."""


@dataclass(frozen=True)
class BridgeFormat:
    """Byte format of one board's UART bridge."""

    input_shape: tuple[int, ...]
    in_elems: int
    in_bits: int
    beats_per_frame: int
    class_bits: int
    classes: int
    score_bits: int
    baud: int
    clock_mhz: float

    @property
    def in_bytes(self) -> int:
        return (self.in_elems * self.in_bits + 7) // 8

    @property
    def score_bytes(self) -> int:
        return (self.score_bits + 7) // 8

    @property
    def class_bytes(self) -> int:
        return (self.class_bits + 7) // 8

    @property
    def out_bytes(self) -> int:
        return self.classes * self.score_bytes + self.class_bytes

    @classmethod
    def from_plan(cls, plan, baud: int, clock_mhz: float) -> BridgeFormat:
        return cls(tuple(plan.input_shape), plan.in_elems, plan.stages[0].in_bits,
                   plan.beats_per_frame, plan.class_bits, plan.classes, plan.score_bits, baud,
                   clock_mhz)

    def write(self, path: str | Path) -> Path:
        return write_json(path, {"schema": BRIDGE_SCHEMA, **asdict(self)})

    @classmethod
    def read(cls, path: str | Path) -> BridgeFormat:
        doc = read_json(path, BRIDGE_SCHEMA)
        doc.pop("schema")
        doc["input_shape"] = tuple(doc["input_shape"])
        return cls(**doc)


def encode_frame(fmt: BridgeFormat, frame: np.ndarray) -> bytes:
    """The bytes the host sends for one frame (shape ``fmt.input_shape``, integer elements)."""
    flat = np.asarray(frame).reshape(-1)
    if flat.size != fmt.in_elems * fmt.beats_per_frame:
        raise ValueError(f"a frame has {fmt.in_elems * fmt.beats_per_frame} elements "
                         f"(shape {fmt.input_shape}), not {flat.size}")
    mask = (1 << fmt.in_bits) - 1
    out = bytearray()
    for b in range(fmt.beats_per_frame):
        word = 0
        for i, e in enumerate(flat[b * fmt.in_elems:(b + 1) * fmt.in_elems].tolist()):
            word |= (int(e) & mask) << (i * fmt.in_bits)
        out += word.to_bytes(fmt.in_bytes, "little")
    return bytes(out)


def decode_result(fmt: BridgeFormat, data: bytes) -> tuple[int, list[int]]:
    """``(class, scores)`` from one result's bytes."""
    if len(data) != fmt.out_bytes:
        raise ValueError(f"a result is {fmt.out_bytes} bytes, not {len(data)}")
    sb, mask = fmt.score_bits, (1 << fmt.score_bits) - 1
    scores = []
    for i in range(fmt.classes):
        v = int.from_bytes(data[i * fmt.score_bytes:(i + 1) * fmt.score_bytes], "little") & mask
        scores.append(v - (1 << sb) if v >> (sb - 1) else v)
    cls = int.from_bytes(data[fmt.classes * fmt.score_bytes:], "little") & \
        ((1 << fmt.class_bits) - 1)
    return cls, scores


def infer_serial(fmt: BridgeFormat, port: str, frames: Iterable[np.ndarray],
                 timeout: float = 2.0) -> list[tuple[int, list[int]]]:
    """Send every frame to the board on ``port``; return its ``(class, scores)`` for each."""
    import serial

    results = []
    try:
        link = serial.Serial(port, fmt.baud, timeout=timeout)
    except serial.SerialException as exc:
        raise HostError(f"cannot open {port}: {exc}") from None
    with link:
        link.reset_input_buffer()
        for n, frame in enumerate(frames):
            link.write(encode_frame(fmt, frame))
            data = link.read(fmt.out_bytes)
            if len(data) != fmt.out_bytes:
                raise HostError(f"{port}: frame {n}: {len(data)} of {fmt.out_bytes} result bytes "
                                   f"within {timeout:g}s; is the UART bitstream loaded?")
            results.append(decode_result(fmt, data))
    return results


def read_selftest(port: str, baud: int, clock_hz: float, timeout: float = 2.0) -> dict:
    """Ask a board running the self-test bitstream for its record (any byte triggers it)."""
    import serial

    from .tops import RECORD_BYTES, parse_record

    try:
        link = serial.Serial(port, baud, timeout=timeout)
    except serial.SerialException as exc:
        raise HostError(f"cannot open {port}: {exc}") from None
    with link:
        link.reset_input_buffer()
        link.write(b"?")
        record = link.read(RECORD_BYTES)
    if len(record) != RECORD_BYTES:
        raise HostError(f"{port}: {len(record)} of {RECORD_BYTES} self-test record bytes within "
                        f"{timeout:g}s; is the self-test bitstream loaded?")
    return parse_record(record, clock_hz)
