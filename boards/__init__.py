"""Boards: amaranth-boards targets, bitstream flows with YoWASP, reports and host drivers.

``bitfold boards`` lists :data:`~.targets.BOARDS`; ``bitfold build`` runs
:func:`~.flow.build_board`; ``bitfold infer`` talks to the UART bridge
(:mod:`.host`). Submodules are imported on use (nothing heavy here).
"""

__all__ = ["flow", "host", "pll", "targets", "tops", "uart"]
