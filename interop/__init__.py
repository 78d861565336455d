"""Interchange with ONNX: QONNX / FINN-ONNX import into the IR, export of the IR to QONNX."""
