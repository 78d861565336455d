"""Packing of input beats and decoding of output beats, as manifest.json describes them."""

from __future__ import annotations

import numpy as np
import pytest

from bitfold.hw.simulate import pack, unpack
from bitfold.sim.frames import Vectors, decode_beat, decode_output, pack_beats


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


OUTPUT = {"beats_per_frame": 3, "score": {"lsb": 0, "bits": 8, "signed": True},
          "class": {"lsb": 8, "bits": 2}, "last": "m_axis_tlast"}


def _beats(scores: list[int], cls: int) -> list[int]:
    """A frame's beats: every score with a running index (here ``cls`` on the last only)."""
    return [(s & 0xFF) | ((cls if k == len(scores) - 1 else 0) << 8) for k, s in enumerate(scores)]


def test_output_beats_decode_class_and_signed_scores() -> None:
    scores = [-5, 127, -128]
    words = _beats(scores, 1)
    assert decode_output(words, OUTPUT) == (1, scores)
    assert [decode_beat(w, OUTPUT) for w in words] == [(-5, 0), (127, 0), (-128, 1)]
    assert [unpack(w, 1, 8, signed=True)[0] for w in words] == scores
    with pytest.raises(ValueError, match=r"^a frame is 3 output beats, not 2$"):
        decode_output(words[:2], OUTPUT)


def test_scoreboard_counts_frames_not_beats_and_checks_tlast() -> None:
    from bitfold.sim.testbench import Scoreboard

    scores = np.array([[1, 9, 3], [-4, -2, -8], [0, 0, 0]])
    board = Scoreboard(Vectors(np.zeros((3, 4)), np.array([1, 1, 0]), scores), OUTPUT)
    done = [board.check((w, int(k == 2))) for f in range(2)
            for k, w in enumerate(_beats(scores[f].tolist(), 1))]
    assert done == [False, False, True] * 2
    assert (board.checked, board.mismatches, board.got) == (2, 0, [1, 1])
    # a frame whose tlast comes a beat early is a mismatch, and frames stay counted right
    for k, w in enumerate(_beats([0, 0, 0], 0)):
        board.check((w, int(k == 1)))
    assert (board.checked, board.mismatches) == (3, 1)
    assert board.first["frame"] == 2 and board.first["got"]["tlast"] == [0, 1, 0]


def test_vectors_round_trip(tmp_path) -> None:
    v = Vectors(np.arange(12).reshape(3, 4), np.array([0, 1, 2]), np.arange(9).reshape(3, 3))
    w = Vectors.load(v.save(tmp_path / "v.npz"))
    for a, b in ((v.frames, w.frames), (v.classes, w.classes), (v.scores, w.scores)):
        np.testing.assert_array_equal(a, b)
