"""The boards bitfold builds for: amaranth-boards platforms plus what the flow needs to know.

Resources are declared by amaranth-boards; a board here adds its family's
resource model (for the fit check), its capacity, its UART and its two LEDs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = ["BOARDS", "Board", "get_board"]


def _icebreaker():
    from amaranth_boards.icebreaker import ICEBreakerPlatform

    return ICEBreakerPlatform()


def _ulx3s_85f():
    from amaranth_boards.ulx3s import ULX3S_85F_Platform

    return ULX3S_85F_Platform()


def _orangecrab_25f():
    from amaranth.build import Attrs
    from amaranth_boards.orangecrab_r0_2 import OrangeCrabR0_2_25FPlatform
    from amaranth_boards.resources import UARTResource

    platform = OrangeCrabR0_2_25FPlatform()
    # no USB-UART bridge on the board: a 3.3 V serial cable on the Feather header TX/RX pins
    platform.add_resources([UARTResource(0, rx="0", tx="1", conn=("io", 0),
                                         attrs=Attrs(IO_TYPE="LVCMOS33"))])
    return platform


def _leds(*names: tuple[str, int, str | None]):
    def request(platform):
        out = []
        for name, number, sub in names:
            res = platform.request(name, number)
            out.append((getattr(res, sub) if sub else res).o)
        return tuple(out)
    return request


@dataclass(frozen=True)
class Board:
    """A board target.

    ``luts`` and ``brams`` are the device's LUT4s and block RAMs (iCE40 EBR of
    4 kbit, ECP5 DP16KD of 18 kbit), ``dsps`` its multipliers (iCE40 SB_MAC16,
    ECP5 MULT18X18D); ``family`` names the cost model's resource model.
    """

    name: str
    description: str
    family: str  # "ice40" | "ecp5"
    device: str
    package: str
    clock_mhz: float
    luts: int
    brams: int
    platform: Callable
    leds: Callable  # platform -> (pass LED, fail LED) output signals
    bitstream_ext: str
    extra_tools: dict = field(default_factory=dict)  # env var -> executable, not on PyPI
    dsps: int = 0

    def summary(self) -> str:
        return (f"{self.name:<16}{self.device:<12}{self.package:<8}{self.clock_mhz:>6g} MHz"
                f"{self.luts:>8} LUTs{self.brams:>5} BRAMs  {self.description}")


BOARDS: dict[str, Board] = {b.name: b for b in (
    Board("icebreaker", "1BitSquared iCEBreaker", "ice40", "iCE40UP5K", "SG48", 12.0, 5280, 30,
          _icebreaker, _leds(("led_g", 0, None), ("led_r", 0, None)), "bin", dsps=8),
    Board("ulx3s-85f", "Radiona ULX3S, 85k LUT", "ecp5", "LFE5U-85F", "BG381", 25.0, 83640, 208,
          _ulx3s_85f, _leds(("led", 0, None), ("led", 7, None)), "bit", dsps=156),
    Board("orangecrab-25f", "Good Stuff Dept. OrangeCrab r0.2, 25k LUT (UART on Feather TX/RX)",
          "ecp5", "LFE5U-25F", "MG285", 48.0, 24288, 56,
          _orangecrab_25f, _leds(("rgb_led", 0, "g"), ("rgb_led", 0, "r")), "bit",
          {"DFU_SUFFIX": "dfu-suffix"}, dsps=28),
)}


def get_board(name: str) -> Board:
    """The board called ``name``; a ValueError lists the known ones otherwise."""
    try:
        return BOARDS[name]
    except KeyError:
        raise ValueError(f"unknown board {name!r}; known: {', '.join(BOARDS)}") from None
