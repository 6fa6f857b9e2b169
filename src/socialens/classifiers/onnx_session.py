"""An exported encoder run through onnxruntime: padded token batches in, logits (or softmax
probabilities) out.

The encoder family does the tokenizing, length sorting and padding (the same code path as torch),
so the ONNX engine differs from the torch one only in the forward pass. The logits are
(batch, labels) for a sequence classifier (softmax: classification, sigmoid: multilabel) and
(batch, sequence, tags) for a token classifier.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

ONNX_DIR = "onnx"
FP32_FILE = "model.onnx"
INT8_FILE = "model_int8.onnx"
INT8_ENGINE = "onnx-int8"


def int8_model_path(model_dir: str | Path) -> Path:
    return Path(model_dir) / ONNX_DIR / INT8_FILE


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=-1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=-1, keepdims=True)


class OnnxEncoderSession:
    """One onnxruntime CPU session over an exported sequence or token classifier (logits output).

    ``num_threads`` follows socialens.runtime.torch_threads: None or 0 leaves onnxruntime's
    default (one thread per core)."""

    def __init__(self, path: str | Path, num_threads: int | None = None):
        import onnxruntime as ort

        self.path = Path(path)
        self.num_threads = num_threads
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # one request at a time goes through the graph; parallelism is inside each operator
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.inter_op_num_threads = 1
        if num_threads:
            options.intra_op_num_threads = num_threads
        options.log_severity_level = 3  # the harmless fusion notices would otherwise go to stderr
        self.session = ort.InferenceSession(str(self.path), options, providers=["CPUExecutionProvider"])
        self.input_names = [i.name for i in self.session.get_inputs()]

    def logits(self, batch: dict[str, np.ndarray]) -> np.ndarray:
        missing = [name for name in self.input_names if name not in batch]
        if missing:
            raise ValueError(
                f"{self.path}: the tokenizer gave no {missing}; the model expects {self.input_names}"
            )
        feed = {name: np.asarray(batch[name], dtype=np.int64) for name in self.input_names}
        return self.session.run(None, feed)[0]

    def probabilities(self, batch: dict[str, np.ndarray]) -> np.ndarray:
        return softmax(self.logits(batch).astype(np.float64))


__all__ = ["INT8_ENGINE", "OnnxEncoderSession", "int8_model_path", "softmax"]
