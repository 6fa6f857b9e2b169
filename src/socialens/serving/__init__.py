"""Serving a trained model: the HTTP classification service (and ONNX inference)."""
