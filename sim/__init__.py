"""System simulation: the cocotb testbench of generated accelerators, runners, scoreboard.

* :mod:`bitfold.sim.frames` (numpy only): input beats and expected outputs;
* :mod:`bitfold.sim.testbench`: the cocotb test (AXI-Stream source and sink with
  pauses, in-order scoreboard, cycle counters), run inside the simulator;
* :mod:`bitfold.sim.runner`: Icarus or Verilator through
  ``cocotb_tools.runner.get_runner``; :func:`~bitfold.sim.runner.simulate`;
* :mod:`bitfold.sim.mutate`: flip a weight bit in generated Verilog (mutation tests).
"""

__all__: list[str] = []
