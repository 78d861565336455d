"""System simulation: the cocotb testbench of generated accelerators, runners, scoreboard.

* :mod:`bitfold.sim.frames` (numpy only): input beats and expected outputs;
* :mod:`bitfold.sim.testbench`: the cocotb test (AXI-Stream source and sink with
  pauses, in-order scoreboard, cycle counters), run inside the simulator;
* :mod:`bitfold.sim.runner`: Icarus or Verilator through
  ``cocotb_tools.runner``; :func:`~bitfold.sim.runner.simulate`, the sim folder whole or absent;
* :mod:`bitfold.sim.tools`: the simulators, building a design, tools in process groups;
* :mod:`bitfold.sim.multi`: many designs in one build (the differential and the soak);
* :mod:`bitfold.sim.mutate`: flip a weight bit in generated Verilog (mutation tests).
"""

__all__: list[str] = []
