"""The llm_head family: the real built-in SmolLM2-135M with a LoRA-trained classification head,
a dozen demo examples, one torch thread."""

from __future__ import annotations

import json
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest

from socialens.classifiers.base import get_family, load_classifier
from socialens.classifiers.llm_head import LLMHeadClassifier, LLMHeadParams
from socialens.core.types import Status
from socialens.data.datasets import load_dataset, load_dataset_config

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def demo():
    raw = load_dataset(load_dataset_config("builtin:reddit-misinfo-demo"))
    examples = [ex for part in raw.splits.values() for ex in part]
    train, test = [], []
    for label in raw.schema.names:
        of_label = [ex for ex in examples if ex.label == label]
        train += of_label[:4]
        test += of_label[10:12]
    return raw.schema, train, test


def test_fit_predict_save_load(demo, tmp_path):
    schema, train, test = demo
    assert get_family("llm_head") is LLMHeadClassifier
    steps = []
    params = LLMHeadParams(epochs=2, batch_size=4, max_length=64, num_threads=1, learning_rate=1e-3, lora_r=8)
    model = LLMHeadClassifier(params, seed=0, progress=lambda stage, done, total: steps.append((stage, done)))
    model.fit(train, schema=schema)
    assert [done for stage, done in steps if stage == "train"] == [1, 2, 3, 4, 5, 6]
    losses = model.training_["train_loss_by_epoch"]
    assert len(losses) == 2 and losses[1] < losses[0]
    assert model.training_["peak_rss_mb"] > 200 and model.training_["train_examples_per_s"] > 0
    records = model.predict(test)
    assert [r.id for r in records] == [ex.id for ex in test]
    for record in records:
        assert record.status is Status.OK and record.raw_output is None
        assert set(record.scores) == set(schema.names) and abs(sum(record.scores.values()) - 1) < 1e-5
        assert record.predicted == max(record.scores, key=record.scores.get)
    # The trained head has learned something about its own training set.
    assert sum(r.predicted == r.gold for r in model.predict(train)) >= 6
    model.save(tmp_path / "head")
    config = json.loads((tmp_path / "head" / "adapter_config.json").read_text())
    assert config["task_type"] == "SEQ_CLS" and "score" in config["modules_to_save"]
    loaded = load_classifier(tmp_path / "head")
    assert isinstance(loaded, LLMHeadClassifier)
    again = loaded.predict(test)
    for a, b in zip(records, again, strict=True):
        assert a.predicted == b.predicted
        assert all(abs(a.scores[k] - b.scores[k]) < 1e-5 for k in a.scores)


def test_gemma_base_model_head_starts_uniform_and_learns(demo):
    """Gemma 3 270M: its final hidden states are large (norms in the hundreds), so the head starts
    at zero; the first loss is then ln(#labels), not ~10 as with transformers' N(0, 0.02) head."""
    import math

    schema, train, test = demo
    params = LLMHeadParams(
        model="builtin:gemma3-270m", epochs=2, batch_size=6, max_length=48, num_threads=1, lora_r=4
    )
    model = LLMHeadClassifier(params, seed=0).fit(train[::2], schema=schema)
    assert model.tokenizer_.padding_side == "right"
    first, second = model.training_["train_loss_by_epoch"]
    assert abs(first - math.log(len(schema.names))) < 0.25 and second < first
    records = model.predict(test[:2])
    assert all(r.status is Status.OK and abs(sum(r.scores.values()) - 1) < 1e-5 for r in records)
