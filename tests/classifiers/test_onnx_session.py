"""OnnxEncoderSession: onnxruntime over an exported (untrained-head) MiniLM matches torch exactly in fp32."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import pytest

from socialens.classifiers.onnx_session import OnnxEncoderSession, int8_model_path, softmax

TEXTS = [
    "a much longer sentence than the others, with many more tokens in it than any other one",
    "x",
    "the weather will be sunny",
    "",
]


def test_softmax_is_stable_and_normalised():
    logits = np.array([[1000.0, 1000.0, -1000.0], [0.0, np.log(3.0), 0.0]])
    probs = softmax(logits)
    assert np.allclose(probs.sum(axis=1), 1.0)
    assert probs[0].tolist() == pytest.approx([0.5, 0.5, 0.0])
    assert probs[1].tolist() == pytest.approx([0.2, 0.6, 0.2])


@pytest.fixture(scope="module")
def untrained_dir(tmp_path_factory):
    """A MiniLM with a fresh 3-label head saved as a socialens model dir and exported (no training:
    the fp32 graph must reproduce torch whatever the weights)."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from socialens.classifiers.encoder import EncoderClassifier, EncoderParams
    from socialens.core.models import resolve_model
    from socialens.core.types import LabelSchema
    from socialens.serving.onnx_export import export_onnx

    path = resolve_model("builtin:minilm-l6")
    clf = EncoderClassifier(EncoderParams(eval_batch_size=2, num_threads=1))
    clf.tokenizer_ = AutoTokenizer.from_pretrained(path)
    clf.model_ = AutoModelForSequenceClassification.from_pretrained(path, num_labels=3).eval()
    clf.schema = LabelSchema.from_names(["a", "b", "c"])
    model_dir = tmp_path_factory.mktemp("session") / "model"
    clf.save(model_dir)
    report = export_onnx(model_dir)
    assert report.agreement is None
    return model_dir


@pytest.mark.slow
def test_fp32_session_reproduces_torch_across_batch_shapes(untrained_dir):
    from socialens.classifiers.encoder import EncoderClassifier

    torch_clf = EncoderClassifier.load(untrained_dir, engine="torch")
    expected, _ = torch_clf._scores(TEXTS)  # batches of 2: both padded and unpadded shapes
    fp32 = EncoderClassifier.load(untrained_dir, engine="torch")
    fp32.onnx_ = OnnxEncoderSession(untrained_dir / "onnx" / "model.onnx", num_threads=1)
    got, latency = fp32._scores(TEXTS)
    assert np.abs(np.array(got) - np.array(expected)).max() < 1e-5
    assert len(latency) == len(TEXTS) and all(t > 0 for t in latency)
    int8 = EncoderClassifier.load(untrained_dir)
    assert int8.onnx_.path == int8_model_path(untrained_dir)
    assert np.abs(np.array(int8._scores(TEXTS)[0]) - np.array(expected)).max() < 0.05


@pytest.mark.slow
def test_session_names_missing_inputs(untrained_dir):
    session = OnnxEncoderSession(int8_model_path(untrained_dir))
    assert session.input_names[:2] == ["input_ids", "token_type_ids"]
    with pytest.raises(ValueError, match="the model expects"):
        session.logits({"input_ids": np.ones((1, 3), dtype=np.int64)})
    probs = session.probabilities({name: np.ones((2, 5), dtype=np.int64) for name in session.input_names})
    assert probs.shape == (2, 3) and np.allclose(probs.sum(axis=1), 1.0)
