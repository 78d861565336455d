"""bitfold: binary neural networks from factorized training to a verified FPGA accelerator.

The stages are subpackages: ``bitfold.train``, ``bitfold.compiler``, ... This
module stays light; it imports no stage.
"""

import os as _os

# MKL's default kernels may round differently from run to run depending on
# buffer alignment; strict conditional numerical reproducibility makes CPU
# training (and so --seed and --resume) bit-exact. It must be set before torch
# loads MKL, which happens after this package is imported by any bitfold entry
# point; a program that imports torch first should set MKL_CBWR itself.
_os.environ.setdefault("MKL_CBWR", "AUTO,STRICT")

__version__ = "0.1.0"
__all__ = ["__version__"]
