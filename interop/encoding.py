"""How dataset pixels become an imported network's input, both ONNX's and the IR's.

An imported model takes float input; bitfold's data sets hold integer pixels.
:class:`InputScale` is the agreed map (``pixel / 255`` by default, as torchvision's
``ToTensor`` gives), computed in float32 exactly as the frames handed to qonnx
are. The importer tabulates what the model's input quantizer makes of every
pixel value; that table (``compile.json``'s ``input_encoding``) turns pixels into
IR input frames, e.g. ``pixel >= 128`` for TFC's binarized MNIST.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import numpy as np

from .errors import InteropError

__all__ = ["InputScale", "encode_pixels"]


@dataclass(frozen=True)
class InputScale:
    """``pixel * numerator / denominator`` in float32 (a division when the numerator is 1)."""

    numerator: float
    denominator: int

    @classmethod
    def parse(cls, text: str | float) -> InputScale:
        """``"1/255"``, ``"1"`` or ``"0.00390625"``; anything else is a one-line error."""
        s = str(text).strip()
        try:
            if "/" in s:
                num, den = s.split("/")
                scale = cls(float(num), int(den))
            else:
                scale = cls(float(s), 1)
        except ValueError:
            raise InteropError(f"--input-scale {text!r}: expected a number or a fraction such "
                               "as 1/255") from None
        if not (scale.numerator > 0 and scale.denominator > 0 and np.isfinite(scale.numerator)):
            raise InteropError(f"--input-scale {text!r}: must be positive")
        return scale

    @property
    def text(self) -> str:
        num = f"{self.numerator:g}"
        return num if self.denominator == 1 else f"{num}/{self.denominator}"

    @property
    def fraction(self) -> Fraction:
        return Fraction(self.numerator) / self.denominator

    def apply(self, pixels: np.ndarray) -> np.ndarray:
        """The model's float32 input for integer ``pixels``."""
        x = np.asarray(pixels).astype(np.float32)
        if self.numerator != 1:
            x = x * np.float32(self.numerator)
        return x / np.float32(self.denominator) if self.denominator != 1 else x


def encode_pixels(encoding: dict[str, Any], pixels: np.ndarray) -> np.ndarray:
    """IR input values (uint8 or int64, same shape) of integer ``pixels`` through the table."""
    lut = np.asarray(encoding["lut"], dtype=np.int64)
    p = np.asarray(pixels)
    if p.dtype.kind not in "iu":
        raise InteropError(f"input pixels must be integers, not {p.dtype}")
    if p.size and (p.min() < 0 or p.max() >= len(lut)):
        raise InteropError(f"pixel values {p.min()}..{p.max()} outside the imported network's "
                           f"0..{len(lut) - 1} (it was imported with --input-bits "
                           f"{encoding.get('pixel_bits')})")
    return lut[p]
