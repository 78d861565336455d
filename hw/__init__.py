"""bitfold.hw: the streaming XNOR-popcount dataflow accelerator (docs/architecture.md, section 5).

Amaranth components that talk through ``amaranth.lib.stream`` interfaces
(:mod:`.mvu`, built with a weight encoding of :mod:`.weights` and the memories of
:mod:`.roms`; sparse layers' :mod:`.index_mvu` and :mod:`.group_mvu`; composite layers'
bit-serial :mod:`.serial_mvu`; :mod:`.swu`, :mod:`.pool`, :mod:`.score`, :mod:`.streams`), the
plan of a network's typed stages (:mod:`.stages`) from the IR and a folding (:mod:`.plan`), the
dataflow top (:mod:`.top`), Verilog and wrapper emission (:mod:`.generate`) and
an ``amaranth.sim`` driver for whole networks (:mod:`.simulate`). Nothing here
imports torch.
"""

__all__: list[str] = []
