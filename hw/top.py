"""The dataflow top: every stage of a :class:`~.plan.Plan` running concurrently.

Stages are joined in stream order; each edge gets a
:class:`~.streams.WidthConverter` when the producer's and consumer's word sizes
differ, and a :class:`~.streams.StreamFIFO` of the plan's depth after it, or,
where that depth is at most 2 (the edge only decouples the two stages'
handshakes), a :class:`~.streams.SkidBuffer` right at the producer's output, so
that no stage's stall logic waits on a converter's combinational ready.
"""

from __future__ import annotations

from amaranth.hdl import Module, unsigned
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from .plan import HardwareError, Plan, Stage
from .score import result_layout
from .streams import SkidBuffer, StreamFIFO, WidthConverter

__all__ = ["Dataflow", "stage_component"]


def stage_component(stage: Stage) -> wiring.Component:
    """The Amaranth component of one planned stage (:meth:`~.stages.Stage.component`)."""
    return stage.component()


class Dataflow(wiring.Component):
    """A whole network: input words in (``plan.in_elems`` elements), ``plan.classes`` beats out.

    Each frame's result is ``plan.classes`` :func:`~.score.result_layout` beats,
    class 0 first: beat ``c`` is score ``c`` (``plan.score_bits`` signed bits),
    the argmax of scores ``0 .. c`` and ``last`` (set on the final beat, whose
    argmax is the frame's class). That is one beat per cycle of the score unit,
    whose ``classes`` cycles per frame the folding's cycle model already counts,
    so the output never sets the pace.

    Raises
    ------
    HardwareError
        When ``plan.cycles_per_frame`` is below ``plan.classes`` (a plan not from
        :func:`~.plan.build_plan`: the output would be the bottleneck).
    """

    def __init__(self, plan: Plan) -> None:
        if not isinstance(plan, Plan):
            raise TypeError(f"plan must be a Plan, not {type(plan).__name__}")
        if plan.cycles_per_frame < plan.classes:
            raise HardwareError(f"plan {plan.graph!r}: {plan.cycles_per_frame} cycles per frame "
                                f"cannot stream its {plan.classes} result beats (one per class "
                                f"and cycle); fold for at least {plan.classes} cycles per frame")
        self.plan = plan
        first = plan.stages[0]
        super().__init__({
            "i_stream": In(stream.Signature(unsigned(first.in_elems * first.in_bits))),
            "o_stream": Out(stream.Signature(result_layout(plan.score_bits, plan.class_bits))),
        })

    def elaborate(self, platform) -> Module:
        m = Module()
        src = wiring.flipped(self.i_stream)
        prev: Stage | None = None
        for stage in self.plan.stages:
            if prev is not None:
                skid = stage.fifo_depth <= 2
                if skid:  # right at the producer: its stall logic sees a registered ready
                    src = self._buffer(m, stage, src, prev.out_elems, 2)
                if prev.out_elems != stage.in_elems:
                    conv = WidthConverter(prev.out_elems, stage.in_elems, stage.in_bits)
                    m.submodules[f"{stage.name}_conv"] = conv
                    wiring.connect(m, src, conv.i_stream)
                    src = conv.o_stream
                if not skid:  # a FIFO's depth counts the consumer's words
                    src = self._buffer(m, stage, src, stage.in_elems, stage.fifo_depth)
            comp = stage_component(stage)
            m.submodules[stage.name] = comp
            wiring.connect(m, src, comp.i_stream)
            src = comp.o_stream
            prev = stage
        wiring.connect(m, src, wiring.flipped(self.o_stream))
        return m

    @staticmethod
    def _buffer(m: Module, stage: Stage, src, elems: int, depth: int):
        """A FIFO of ``depth`` (a skid buffer for 2) ``elems``-element words on ``src``."""
        width = elems * stage.in_bits
        fifo = SkidBuffer(width) if depth <= 2 else StreamFIFO(width, depth)
        m.submodules[f"{stage.name}_fifo"] = fifo
        wiring.connect(m, src, fifo.i_stream)
        return fifo.o_stream
