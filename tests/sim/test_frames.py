"""Packing of input beats and decoding of output beats, as manifest.json describes them."""

from __future__ import annotations

import numpy as np
import pytest

from bitfold.hw.simulate import pack, unpack
from bitfold.sim.frames import Vectors, decode_output, pack_beats


def test_beats_pack_like_the_amaranth_helpers() -> None:
    rng = np.random.default_rng(0)
    for bits, per_beat in ((1, 16), (5, 64), (8, 7), (3, 2)):
        frames = rng.integers(0, 1 << bits, (3, 4 * per_beat))
        want = [pack(beat, bits) for f in frames for beat in f.reshape(-1, per_beat)]
        assert pack_beats(frames, per_beat, bits) == want


def test_pack_refuses_elements_out_of_range_and_ragged_frames() -> None:
    with pytest.raises(ValueError, match=r"^frame elements must lie in 0\.\.31 \(5 bits\)"):
        pack_beats(np.array([[0, 32]]), 2, 5)
    with pytest.raises(ValueError, match=r"^a frame of 3 elements does not split"):
        pack_beats(np.zeros((1, 3), int), 2, 5)


def test_output_beats_decode_class_and_signed_scores() -> None:
    out = {"class": {"lsb": 0, "bits": 2},
           "scores": {"lsb": 2, "bits": 8, "count": 3, "signed": True}}
    scores = [-5, 127, -128]
    word = 2 | (pack(scores, 8) << 2)
    assert decode_output(word, out) == (2, scores)
    assert unpack(word >> 2, 3, 8, signed=True) == scores


def test_vectors_round_trip(tmp_path) -> None:
    v = Vectors(np.arange(12).reshape(3, 4), np.array([0, 1, 2]), np.arange(9).reshape(3, 3))
    w = Vectors.load(v.save(tmp_path / "v.npz"))
    for a, b in ((v.frames, w.frames), (v.classes, w.classes), (v.scores, w.scores)):
        np.testing.assert_array_equal(a, b)
