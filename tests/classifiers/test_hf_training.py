"""The shared Hugging Face toolkit: length-sorted batching, the weighted trainer's loss, quiet logging."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import pytest

from socialens.classifiers.hf_training import (
    balanced_class_weights,
    length_sorted_outputs,
    length_sorted_scores,
    make_trainer_class,
    sigmoid,
)
from socialens.core.runtime import quiet_transformers

TEXTS = ["a much longer sentence than the others here", "short", "a middle one", "x"]


@pytest.fixture(scope="module")
def tokenizer():
    from transformers import AutoTokenizer

    from socialens.core.models import resolve_model

    return AutoTokenizer.from_pretrained(resolve_model("builtin:minilm-l6"))


def echo(batch):
    """Each sub-token's id and attention, per position: what the batch held."""
    ids = np.asarray(batch["input_ids"], dtype=np.float64)
    return np.stack([ids, np.asarray(batch["attention_mask"], dtype=np.float64)], axis=-1)


@pytest.mark.parametrize("side", ["right", "left"])
def test_per_token_rows_come_back_in_input_order_without_padding(tokenizer, side):
    tokenizer.padding_side = side
    try:
        enc = tokenizer(TEXTS, truncation=True, max_length=16, padding=False)
        done = []
        rows, latency = length_sorted_outputs(
            tokenizer, enc, echo, 2, "np", lambda *a: done.append(a), per_token=True
        )
    finally:
        tokenizer.padding_side = "right"
    for ids, row in zip(enc["input_ids"], rows, strict=True):
        assert row[:, 0].tolist() == ids and row[:, 1].tolist() == [1.0] * len(ids)
    assert all(t > 0 for t in latency)
    assert done == [("predict", 2, 4), ("predict", 4, 4)]


def test_length_sorted_scores_restores_order(tokenizer):
    def first_id_and_length(batch):
        ids = np.asarray(batch["input_ids"])
        return np.stack([ids[:, 1], np.asarray(batch["attention_mask"]).sum(axis=1)], axis=-1)

    rows, _ = length_sorted_scores(tokenizer, TEXTS, first_id_and_length, 16, 3, "np")
    enc = tokenizer(TEXTS)
    assert rows == [[ids[1], len(ids)] for ids in enc["input_ids"]]
    assert length_sorted_scores(tokenizer, [], first_id_and_length, 16, 3, "np") == ([], [])


def test_sigmoid_is_stable_at_both_ends():
    with np.errstate(all="raise"):
        out = sigmoid(np.array([-1000.0, 0.0, 1000.0, 2.0]))
    assert out.tolist()[:3] == [0.0, 0.5, 1.0]
    assert out[3] == pytest.approx(1 / (1 + np.exp(-2.0)))


def test_weighted_loss_ignores_minus_100_labels():
    """The weighted cross-entropy skips -100 (padding, non-first sub-tokens) like the model's own."""
    import torch
    from transformers import TrainingArguments

    class Out:
        def __init__(self, logits):
            self.logits = logits

    logits = torch.tensor([[[2.0, 0.0], [0.0, 1.0], [5.0, -5.0]]])
    labels = torch.tensor([[0, 1, -100]])
    trainer_class = make_trainer_class()
    trainer = trainer_class.__new__(trainer_class)  # compute_loss needs no model or data
    trainer.class_weights = [1.0, 3.0]
    trainer.args = TrainingArguments(output_dir="/nonexistent", report_to=[])
    loss = trainer.compute_loss(lambda **_: Out(logits), {"labels": labels})
    expected = torch.nn.functional.cross_entropy(
        logits[0, :2], labels[0, :2], weight=torch.tensor([1.0, 3.0])
    )
    assert float(loss) == pytest.approx(float(expected))
    assert balanced_class_weights([0, 0, 1], 2) == pytest.approx([0.75, 1.5])


def test_quiet_transformers_restores_verbosity():
    from transformers.utils import logging as hf_logging

    before = hf_logging.get_verbosity()
    with quiet_transformers(False):
        assert hf_logging.get_verbosity() == hf_logging.ERROR
        assert not hf_logging.is_progress_bar_enabled()
    assert hf_logging.get_verbosity() == before and hf_logging.is_progress_bar_enabled()
    with quiet_transformers(True):
        assert hf_logging.get_verbosity() == before
