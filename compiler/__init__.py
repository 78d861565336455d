"""The compiler stage: numpy only, never torch (docs/architecture.md, docs/ir.md).

Modules, imported on demand (nothing heavy happens here):

* ``ir`` -- the IR's frozen dataclasses (``Graph``, node kinds, ``TensorType``); a binary
  ``Layer`` is a ``geometry`` (dense or a ``Window``) times a weight ``encoding``
  (``encodings``: ``binary``, ``sparse``, ``composite``, ``domain``, ``ternary``, one module
  each; ``encoding`` says what one must provide); ``verify`` -- type inference and checks,
  run after every pass; ``schema1`` -- reads graph.json of schema 1;
* ``passes`` -- ``fold_signs_into_thresholds``, ``fold_scores_into_integers``, ``fold``;
* ``serialize`` -- ``BUILD/graph.json`` + ``BUILD/tensors.npz``;
* ``golden`` -- the reference interpreter; ``packed`` -- the fast packed-bit executor;
  ``evaluate`` -- what ``bitfold golden`` reports;
* ``cost`` and ``folding`` -- the cycle and resource model, PE/SIMD optimizers,
  ``BUILD/folding.json``.
"""
