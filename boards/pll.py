"""The boards' PLLs: divider search, the primitives as ``Instance``s, and the clock a top runs at.

Two primitives, each with the limits of its family's PLL:

* iCE40 ``SB_PLL40_PAD`` (the iCEBreaker's 12 MHz oscillator is on pin 35, the
  UP5K PLL's own pad), SIMPLE feedback: ``f_pfd = f_in / (DIVR + 1)``,
  ``f_vco = f_pfd * (DIVF + 1)``, ``f_out = f_vco / 2**DIVQ``; the limits are
  icepll's (in and PFD 10-133 MHz, VCO 533-1066 MHz, out 16-275 MHz) and
  ``FILTER_RANGE`` follows from the PFD frequency.
* ECP5 ``EHXPLLL``, fed back from CLKOP: ``f_pfd = f_in / CLKI_DIV``,
  ``f_out = f_pfd * CLKFB_DIV``, ``f_vco = f_out * CLKOP_DIV``; the limits are
  ecppll's (in 8-400 MHz, PFD 3.125-400 MHz, VCO 400-800 MHz, out 10-400 MHz).

:func:`pll_config` picks the highest output at or below a requested frequency;
:func:`choose_clock` adds the board's oscillator itself as one more choice (for
clocks below the PLL's range). :func:`pll_domain` runs a clock domain from the
PLL (:class:`PLLClock`), holds its reset until the PLL has locked (and 15 us
longer, which also covers the iCE40 block RAMs' start-up) and constrains the
clock for nextpnr at the PLL's frequency.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from fractions import Fraction
from functools import lru_cache
from types import MappingProxyType
from typing import Any

from amaranth.hdl import ClockDomain, ClockSignal, Const, Elaboratable, Instance, Module, Signal
from amaranth.lib import io
from amaranth.lib.cdc import FFSynchronizer

__all__ = ["FAMILIES", "FIRST_TARGET_MHZ", "BoardClock", "LockReset", "PLLClock", "PLLConfig",
           "choose_clock", "lowest_clock", "pll_config", "pll_domain", "pll_outputs", "pll_range"]


@dataclass(frozen=True)
class _Family:
    primitive: str
    input: tuple[float, float]
    pfd: tuple[float, float]
    vco: tuple[float, float]
    output: tuple[float, float]


FAMILIES = {"ice40": _Family("SB_PLL40_PAD", (10, 133), (10, 133), (533, 1066), (16, 275)),
            "ecp5": _Family("EHXPLLL", (8, 400), (3.125, 400), (400, 800), (10, 400))}
# the clock a build tries first when none is stated (the flow then follows nextpnr's Fmax)
FIRST_TARGET_MHZ = {"ice40": 48.0, "ecp5": 100.0}
RESET_HOLD_S = 15e-6  # after lock; iCE40 block RAMs read zeros for ~3 us after configuration
_REL_TOL = 1e-9  # a request typed as a printed frequency still selects it


@dataclass(frozen=True)
class PLLConfig:
    """One PLL setting: the primitive, its divider parameters and the frequencies they give."""

    family: str
    input_mhz: float
    output_mhz: float
    pfd_mhz: float
    vco_mhz: float
    params: MappingProxyType = field(hash=False)  # read-only: configs are cached

    @property
    def primitive(self) -> str:
        return FAMILIES[self.family].primitive

    def to_json(self) -> dict[str, Any]:
        return {"primitive": self.primitive, "input_mhz": self.input_mhz,
                "output_mhz": self.output_mhz, "pfd_mhz": self.pfd_mhz, "vco_mhz": self.vco_mhz,
                "params": dict(self.params)}


def _within(x: Fraction, limits: tuple[float, float]) -> bool:
    return Fraction(limits[0]) <= x <= Fraction(limits[1])


def _ice40_filter_range(pfd: Fraction) -> int:
    return next((i + 1 for i, edge in enumerate((17, 26, 44, 66, 101)) if pfd < edge), 6)


def _ice40(fin: Fraction, lim: _Family):
    for divr in range(16):
        pfd = fin / (divr + 1)
        if not _within(pfd, lim.pfd):
            continue
        for divf in range(128):
            vco = pfd * (divf + 1)
            if not _within(vco, lim.vco):
                continue
            for divq in range(1, 7):
                params = {"DIVR": divr, "DIVF": divf, "DIVQ": divq,
                          "FILTER_RANGE": _ice40_filter_range(pfd)}
                yield vco / 2 ** divq, pfd, vco, params, (divr, divq)


def _ecp5(fin: Fraction, lim: _Family):
    for clki in range(1, 129):
        pfd = fin / clki
        if not _within(pfd, lim.pfd):
            continue
        for clkfb in range(1, 81):
            out = pfd * clkfb
            first = max(1, math.ceil(Fraction(lim.vco[0]) / out))
            for clkop in range(first, min(128, math.floor(Fraction(lim.vco[1]) / out)) + 1):
                vco = out * clkop
                if _within(vco, lim.vco):
                    params = {"CLKI_DIV": clki, "CLKFB_DIV": clkfb, "CLKOP_DIV": clkop,
                              "CLKOP_CPHASE": clkop - 1, "CLKOP_FPHASE": 0}
                    # ties: the highest PFD, then the VCO nearest mid-range (as ecppll)
                    yield out, pfd, vco, params, (clki, abs(vco - 600))


def _check_family(family: str) -> _Family:
    if family not in FAMILIES:
        raise ValueError(f"no PLL model for family {family!r}; known: {', '.join(FAMILIES)}")
    return FAMILIES[family]


@lru_cache(maxsize=8)
def pll_outputs(family: str, input_mhz: float) -> tuple[PLLConfig, ...]:
    """Every distinct output frequency the PLL makes from ``input_mhz``, ascending.

    Raises ValueError for an unknown family or an input outside the PLL's range.
    """
    lim = _check_family(family)
    if not (isinstance(input_mhz, (int, float)) and math.isfinite(input_mhz)) \
            or not _within(Fraction(input_mhz), lim.input):
        raise ValueError(f"{family} PLL input must be {lim.input[0]:g} to {lim.input[1]:g} MHz, "
                         f"not {input_mhz!r}")
    fin = Fraction(input_mhz)
    best: dict[Fraction, tuple] = {}
    for out, pfd, vco, params, rank in (_ice40 if family == "ice40" else _ecp5)(fin, lim):
        if _within(out, lim.output) and (out not in best or rank < best[out][3]):
            best[out] = (pfd, vco, params, rank)
    return tuple(PLLConfig(family, float(fin), float(out), float(pfd), float(vco),
                           MappingProxyType(params))
                 for out, (pfd, vco, params, _) in sorted(best.items()))


def pll_range(family: str, input_mhz: float) -> tuple[float, float]:
    """The lowest and highest output frequency (MHz) the PLL makes from ``input_mhz``."""
    outs = pll_outputs(family, input_mhz)
    return outs[0].output_mhz, outs[-1].output_mhz


def _check_request(request_mhz: float) -> None:
    if isinstance(request_mhz, bool) or not isinstance(request_mhz, (int, float)) \
            or not math.isfinite(request_mhz) or request_mhz <= 0:
        raise ValueError(f"a clock frequency must be a positive number of MHz, not {request_mhz!r}")


def pll_config(family: str, input_mhz: float, request_mhz: float) -> PLLConfig:
    """The PLL setting with the highest output at or below ``request_mhz``.

    Raises ValueError (one line, naming the achievable range) when the request
    is below the lowest output or above the PLL's output limit.
    """
    _check_request(request_mhz)
    outs = pll_outputs(family, input_mhz)
    lo, hi = outs[0].output_mhz, outs[-1].output_mhz
    lim = FAMILIES[family]
    if request_mhz > lim.output[1]:
        raise ValueError(f"{request_mhz:g} MHz is above the {family} PLL's {lim.output[1]:g} MHz "
                         f"output limit; it makes {lo:g} to {hi:g} MHz from {input_mhz:g} MHz")
    ceiling = request_mhz * (1 + _REL_TOL)
    fits = [c for c in outs if c.output_mhz <= ceiling]
    if not fits:
        raise ValueError(f"the {family} PLL makes nothing at or below {request_mhz:g} MHz from "
                         f"{input_mhz:g} MHz; it makes {lo:g} to {hi:g} MHz")
    return fits[-1]


@dataclass(frozen=True)
class BoardClock:
    """The clock a board top runs at: a PLL output, or the oscillator itself (``pll`` None)."""

    mhz: float
    oscillator_mhz: float
    pll: PLLConfig | None

    def to_json(self) -> dict[str, Any]:
        return {"clock_mhz": self.mhz, "oscillator_mhz": self.oscillator_mhz,
                "clock_source": "pll" if self.pll is not None else "oscillator",
                "pll": None if self.pll is None else self.pll.to_json()}


def choose_clock(family: str, oscillator_mhz: float, request_mhz: float) -> BoardClock:
    """The fastest clock at or below ``request_mhz``: a PLL output or the oscillator.

    The oscillator counts as one more choice, so a board still runs at a clock below
    its PLL's range. Raises ValueError (one line, with the choices) when nothing is
    at or below the request, or the request is above the PLL's limit.
    """
    _check_request(request_mhz)
    lo, hi = pll_range(family, oscillator_mhz)
    if request_mhz > FAMILIES[family].output[1]:
        pll_config(family, oscillator_mhz, request_mhz)  # raises the limit's message
    osc = BoardClock(float(oscillator_mhz), float(oscillator_mhz), None)
    ceiling = request_mhz * (1 + _REL_TOL)
    if request_mhz < lo:
        if oscillator_mhz <= ceiling:
            return osc
        raise ValueError(f"no clock at or below {request_mhz:g} MHz: the board has its "
                         f"{oscillator_mhz:g} MHz oscillator and the {family} PLL's {lo:g} to "
                         f"{hi:g} MHz; ask for at least {min(lo, oscillator_mhz):g} MHz")
    cfg = pll_config(family, oscillator_mhz, request_mhz)
    if oscillator_mhz <= ceiling and oscillator_mhz >= cfg.output_mhz:
        return osc  # the oscillator is as fast: no PLL needed
    return BoardClock(cfg.output_mhz, float(oscillator_mhz), cfg)


def lowest_clock(family: str, oscillator_mhz: float) -> BoardClock:
    """The slowest clock a board has (for a design too slow for every choice)."""
    lo, _ = pll_range(family, oscillator_mhz)
    return choose_clock(family, oscillator_mhz, min(lo, oscillator_mhz))


def _instance(cfg: PLLConfig, clk_in, clk_out, lock) -> Instance:
    p = cfg.params
    if cfg.family == "ice40":
        return Instance("SB_PLL40_PAD", p_FEEDBACK_PATH="SIMPLE", p_PLLOUT_SELECT="GENCLK",
                        p_DIVR=Const(p["DIVR"], 4), p_DIVF=Const(p["DIVF"], 7),
                        p_DIVQ=Const(p["DIVQ"], 3), p_FILTER_RANGE=Const(p["FILTER_RANGE"], 3),
                        i_PACKAGEPIN=clk_in, i_RESETB=Const(1), i_BYPASS=Const(0),
                        o_PLLOUTGLOBAL=clk_out, o_LOCK=lock)
    return Instance("EHXPLLL", a_ICP_CURRENT="12", a_LPF_RESISTOR="8", a_MFG_ENABLE_FILTEROPAMP="1",
                    a_MFG_GMCREF_SEL="2",
                    p_PLLRST_ENA="DISABLED", p_INTFB_WAKE="DISABLED", p_STDBY_ENABLE="DISABLED",
                    p_DPHASE_SOURCE="DISABLED", p_OUTDIVIDER_MUXA="DIVA", p_CLKOP_ENABLE="ENABLED",
                    p_FEEDBK_PATH="CLKOP", p_CLKI_DIV=p["CLKI_DIV"], p_CLKFB_DIV=p["CLKFB_DIV"],
                    p_CLKOP_DIV=p["CLKOP_DIV"], p_CLKOP_CPHASE=p["CLKOP_CPHASE"],
                    p_CLKOP_FPHASE=p["CLKOP_FPHASE"],
                    i_CLKI=clk_in, i_CLKFB=clk_out, i_RST=Const(0), i_STDBY=Const(0),
                    i_PHASESEL0=Const(0), i_PHASESEL1=Const(0), i_PHASEDIR=Const(1),
                    i_PHASESTEP=Const(1), i_PHASELOADREG=Const(1), i_PLLWAKESYNC=Const(0),
                    i_ENCLKOP=Const(0), o_CLKOP=clk_out, o_LOCK=lock)


class LockReset(Elaboratable):
    """``rst`` high until ``lock`` has been high ``hold_cycles`` cycles running; again if it drops.

    ``lock`` is asynchronous (two flip-flops synchronize it); the logic is in the
    reset-less domain ``domain``, so the reset it makes never resets itself.
    """

    def __init__(self, hold_cycles: int, domain: str = "sync") -> None:
        if not isinstance(hold_cycles, int) or hold_cycles < 1:
            raise ValueError(f"hold_cycles must be a positive integer, not {hold_cycles!r}")
        self.hold_cycles, self.domain = hold_cycles, domain
        self.lock = Signal()
        self.rst = Signal(init=1)

    def elaborate(self, platform) -> Module:
        m = Module()
        locked = Signal()
        m.submodules.lock_sync = FFSynchronizer(self.lock, locked, o_domain=self.domain)
        timer = Signal(range(self.hold_cycles + 1), reset_less=True)
        with m.If(~locked):
            m.d[self.domain] += timer.eq(0)
        with m.Elif(timer != self.hold_cycles):
            m.d[self.domain] += timer.eq(timer + 1)
        # registered: the reset fans out to the whole design, so no logic may sit before it
        held = Signal(init=1, reset_less=True)
        m.d[self.domain] += held.eq(~locked | (timer != self.hold_cycles))
        m.d.comb += self.rst.eq(held)
        return m


class PLLClock(Elaboratable):
    """The board oscillator through a PLL: ``clk`` out, and ``rst`` held until it has locked.

    The oscillator pin (the platform's ``default_clk``) feeds the primitive: raw
    into the iCE40 PLL's pad, through an input buffer into the ECP5's CLKI.
    ``rst`` stays high until LOCK has been high for :data:`RESET_HOLD_S`, and goes
    back up if the PLL loses lock (:class:`LockReset`). The owner drives a clock
    domain from ``clk`` and ``rst``.
    """

    def __init__(self, cfg: PLLConfig) -> None:
        if not isinstance(cfg, PLLConfig):
            raise ValueError(f"PLLClock needs a PLLConfig, not {cfg!r}")
        self.cfg = cfg
        self.hold_cycles = max(1, math.ceil(RESET_HOLD_S * cfg.output_mhz * 1e6))
        self.clk = Signal(attrs={"keep": 1})  # keeps its name through synthesis for the constraint
        self.rst = Signal(init=1)

    def elaborate(self, platform) -> Module:
        m = Module()
        pin = platform.request(platform.default_clk, dir="-")
        if self.cfg.family == "ice40":
            clk_in = pin.io
        else:
            m.submodules.clk_buf = buf = io.Buffer("i", pin)
            clk_in = buf.i
        m.domains.pll = ClockDomain("pll", reset_less=True, local=True)
        m.d.comb += ClockSignal("pll").eq(self.clk)
        m.submodules.lock_reset = hold = LockReset(self.hold_cycles, "pll")
        m.submodules.pll = _instance(self.cfg, clk_in, self.clk, hold.lock)
        m.d.comb += self.rst.eq(hold.rst)
        return m


def pll_domain(m: Module, platform, cfg: PLLConfig, name: str = "sync") -> ClockDomain:
    """Add a :class:`PLLClock` to ``m`` and a clock domain ``name`` run from it, constrained."""
    m.submodules.clock = pll = PLLClock(cfg)
    domain = ClockDomain(name)
    m.domains += domain
    m.d.comb += [domain.clk.eq(pll.clk), domain.rst.eq(pll.rst)]
    platform.add_clock_constraint(pll.clk, cfg.output_mhz * 1e6)
    return domain
