"""bitfold: binary neural networks from factorized training to a verified FPGA accelerator.

The stages are subpackages: ``bitfold.train``, ``bitfold.compiler``, ... This
module stays light; it imports no stage.
"""

import os as _os

# MKL's default kernels may round differently from run to run depending on
# buffer alignment, and under load MKL may change its thread count from call to
# call; strict conditional numerical reproducibility with a fixed thread count
# makes CPU training (and so --seed and --resume) bit-exact. They must be set
# before torch runs its first MKL kernel, which happens after this package is
# imported by any bitfold entry point; a program that runs torch first should
# set MKL_CBWR and MKL_DYNAMIC itself.
_os.environ.setdefault("MKL_CBWR", "AUTO,STRICT")
_os.environ.setdefault("MKL_DYNAMIC", "FALSE")
# OpenMP threads that spin while they wait take the cores from everything else on a
# busy machine: torch float32 at batch 512 on 2 loaded cores ran 7,870 frames/s
# spinning and 200,032 waiting passively (bitfold bench, load 2.5). The policy only
# says how idle threads wait; results are the same.
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"
__all__ = ["__version__"]
