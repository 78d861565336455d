"""PLL divider search against the primitives' formulas and limits; the lock-held reset."""

from __future__ import annotations

import math

import numpy as np
import pytest
from amaranth.sim import Simulator

from bitfold.boards.pll import (
    FAMILIES,
    LockReset,
    choose_clock,
    lowest_clock,
    pll_config,
    pll_outputs,
    pll_range,
)

INPUTS = [("ice40", 12.0), ("ecp5", 25.0), ("ecp5", 48.0)]


def _brute_force(family: str, fin: float) -> np.ndarray:
    """Every output the primitive's formula gives within its limits (the spec, in floats)."""
    lim, outs = FAMILIES[family], []

    def inside(x: float, lo_hi: tuple[float, float]) -> bool:
        return lo_hi[0] - 1e-9 <= x <= lo_hi[1] + 1e-9

    if family == "ice40":
        for divr in range(16):
            pfd = fin / (divr + 1)
            for divf in range(128):
                vco = pfd * (divf + 1)
                for divq in range(1, 7):
                    if inside(pfd, lim.pfd) and inside(vco, lim.vco):
                        outs.append(vco / 2 ** divq)
    else:
        clkop = np.arange(1, 129)
        for clki in range(1, 129):
            pfd = fin / clki
            if not inside(pfd, lim.pfd):
                continue
            for clkfb in range(1, 81):
                out, vco = pfd * clkfb, pfd * clkfb * clkop
                if ((vco >= lim.vco[0] - 1e-9) & (vco <= lim.vco[1] + 1e-9)).any():
                    outs.append(out)
    outs = np.array(outs)
    outs = outs[(outs >= lim.output[0] - 1e-9) & (outs <= lim.output[1] + 1e-9)]
    return np.unique(np.round(outs, 9))  # one entry per frequency, float noise aside


@pytest.fixture(scope="module")
def achievable() -> dict[tuple[str, float], np.ndarray]:
    return {key: _brute_force(*key) for key in INPUTS}


def _check_formula_and_limits(cfg) -> None:
    lim, p = FAMILIES[cfg.family], cfg.params
    if cfg.family == "ice40":
        assert 0 <= p["DIVR"] <= 15 and 0 <= p["DIVF"] <= 127 and 1 <= p["DIVQ"] <= 6
        pfd = cfg.input_mhz / (p["DIVR"] + 1)
        vco = pfd * (p["DIVF"] + 1)
        out = vco / 2 ** p["DIVQ"]
        edges = [17, 26, 44, 66, 101]
        assert p["FILTER_RANGE"] == 1 + sum(pfd >= e for e in edges)
    else:
        assert 1 <= p["CLKI_DIV"] <= 128 and 1 <= p["CLKFB_DIV"] <= 80
        assert 1 <= p["CLKOP_DIV"] <= 128 and p["CLKOP_CPHASE"] == p["CLKOP_DIV"] - 1
        pfd = cfg.input_mhz / p["CLKI_DIV"]
        out = pfd * p["CLKFB_DIV"]
        vco = out * p["CLKOP_DIV"]
    assert cfg.output_mhz == pytest.approx(out, rel=1e-12)
    assert cfg.pfd_mhz == pytest.approx(pfd, rel=1e-12)
    assert cfg.vco_mhz == pytest.approx(vco, rel=1e-12)
    for value, (lo, hi) in ((pfd, lim.pfd), (vco, lim.vco), (out, lim.output)):
        assert lo <= value <= hi


@pytest.mark.parametrize("family,fin", INPUTS)
def test_highest_output_at_or_below_many_requests(family, fin, achievable) -> None:
    outs = achievable[(family, fin)]
    lo, hi = pll_range(family, fin)
    assert (lo, hi) == pytest.approx((outs[0], outs[-1]))
    rng = np.random.default_rng(1)
    requests = np.concatenate([rng.uniform(lo, FAMILIES[family].output[1], 300), outs[::7],
                               [lo, hi, 36.0, 40.0, 48.0, 100.0]])
    for request in requests:
        cfg = pll_config(family, fin, float(request))
        _check_formula_and_limits(cfg)
        assert cfg.output_mhz <= request * (1 + 1e-9)
        best = outs[outs <= request * (1 + 1e-9)].max()  # nothing achievable is closer below
        assert cfg.output_mhz == pytest.approx(best, rel=1e-9)


@pytest.mark.parametrize("family,fin", INPUTS)
def test_every_listed_output_obeys_the_formula_and_limits(family, fin, achievable) -> None:
    listed = pll_outputs(family, fin)
    assert len(listed) == len(achievable[(family, fin)])
    assert [c.output_mhz for c in listed] == sorted({c.output_mhz for c in listed})
    for cfg in listed:
        _check_formula_and_limits(cfg)


def test_known_settings_match_icepll_and_ecppll() -> None:
    ice = pll_config("ice40", 12.0, 48.0)  # icepll -i 12 -o 48
    assert (ice.output_mhz, dict(ice.params)) == (48.0, {"DIVR": 0, "DIVF": 63, "DIVQ": 4,
                                                          "FILTER_RANGE": 1})
    ecp = pll_config("ecp5", 12.0, 48.0)  # ecppll's table: 12 -> 48 is 1, 4, 12 (VCO 576)
    assert (ecp.params["CLKI_DIV"], ecp.params["CLKFB_DIV"], ecp.params["CLKOP_DIV"]) == (1, 4, 12)
    assert ecp.vco_mhz == 576.0
    assert pll_config("ice40", 12.0, 47.9).output_mhz == 47.25  # 12 * 63 / 2**4, the step below 48


@pytest.mark.parametrize("family,fin,request_mhz,message", [
    ("ice40", 12.0, 10.0, r"^the ice40 PLL makes nothing at or below 10 MHz from 12 MHz; it makes "
                          r"16\.125 to 270 MHz$"),
    ("ice40", 12.0, 300.0, r"^300 MHz is above the ice40 PLL's 275 MHz output limit; it makes "
                           r"16\.125 to 270 MHz from 12 MHz$"),
    ("ecp5", 25.0, 9.0, r"^the ecp5 PLL makes nothing at or below 9 MHz from 25 MHz; it makes "),
    ("ecp5", 25.0, 0.0, r"^a clock frequency must be a positive number of MHz, not 0\.0$"),
    ("ecp5", 25.0, math.nan, r"^a clock frequency must be a positive number of MHz, not nan$"),
    ("ice40", 5.0, 48.0, r"^ice40 PLL input must be 10 to 133 MHz, not 5\.0$"),
    ("gowin", 27.0, 48.0, r"^no PLL model for family 'gowin'; known: ice40, ecp5$"),
])
def test_impossible_requests_are_refused_in_one_line(family, fin, request_mhz, message) -> None:
    with pytest.raises(ValueError, match=message) as info:
        pll_config(family, fin, request_mhz)
    assert "\n" not in str(info.value)


def test_the_oscillator_is_a_clock_too() -> None:
    below = choose_clock("ice40", 12.0, 14.0)  # under the PLL's range: the oscillator itself
    assert (below.mhz, below.pll) == (12.0, None)
    same = choose_clock("ecp5", 25.0, 25.0)  # the PLL would only copy the oscillator
    assert (same.mhz, same.pll) == (25.0, None)
    fast = choose_clock("ice40", 12.0, 40.0)
    assert fast.pll is not None and fast.mhz == fast.pll.output_mhz == 39.75
    assert fast.to_json()["clock_source"] == "pll" and fast.to_json()["oscillator_mhz"] == 12.0
    with pytest.raises(ValueError, match=r"^no clock at or below 5 MHz: the board has its 12 MHz "
                                         r"oscillator and the ice40 PLL's 16\.125 to 270 MHz; ask "
                                         r"for at least 12 MHz$"):
        choose_clock("ice40", 12.0, 5.0)
    assert lowest_clock("ice40", 12.0).mhz == 12.0
    assert lowest_clock("ecp5", 25.0).mhz == 10.0


def test_reset_is_held_until_lock_has_lasted() -> None:
    dut = LockReset(hold_cycles=5)
    trace: list[int] = []

    async def tb(ctx):
        for lock in [0] * 4 + [1] * 12 + [0] * 3 + [1] * 12:
            ctx.set(dut.lock, lock)
            await ctx.tick()
            trace.append(ctx.get(dut.rst))

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(tb)
    sim.run()
    # trace[i] is rst after tick i; lock rises before tick 4 and must pass two synchronizer
    # stages, count five cycles and leave through the reset register: rst falls on the 8th
    # tick with lock high
    assert trace[:4] == [1] * 4
    first = trace.index(0)
    assert first == 4 + 2 + 5 and trace[first:16] == [0] * (16 - first)
    # lock lost: reset back (after the synchronizer and the register), held again in full
    assert trace[16 + 3] == 1
    again = trace.index(0, 19)
    assert again == 19 + 2 + 5 and trace[again:] == [0] * (len(trace) - again)
    with pytest.raises(ValueError, match=r"^hold_cycles must be a positive integer, not 0$"):
        LockReset(0)
