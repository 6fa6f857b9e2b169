"""Encoder family, multilabel: a real all-MiniLM-L6-v2 with a sigmoid head, fine-tuned for a few
steps on texts that join one to three topic phrases; the threshold is tuned on dev."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import logging
import random

import numpy as np
import pytest

from socialens.classifiers.base import load_classifier, read_model_info
from socialens.classifiers.encoder import EncoderClassifier, EncoderParams
from socialens.classifiers.encoder_heads import (
    DEFAULT_THRESHOLD,
    THRESHOLD_GRID,
    MultilabelHead,
    micro_f1,
    multi_hot,
    tune_threshold,
)
from socialens.core.errors import DataError
from socialens.core.types import Example, LabelSchema, Status

PHRASES = {
    "sport": ["the match was won", "a goal in the final", "the team trained hard", "the striker scored"],
    "food": ["the pizza was tasty", "soup with garlic", "a sweet chocolate cake", "the pasta needs salt"],
    "weather": ["heavy rain fell", "a sunny hot day", "snow and freezing wind", "a storm is coming"],
}
SCHEMA = LabelSchema.from_names(["weather", "sport", "food"])
TINY = dict(epochs=4, learning_rate=3e-4, batch_size=8, warmup_ratio=0.0, max_length=32, num_threads=2)


def texts(n: int, seed: int, prefix: str) -> list[Example]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        labels = sorted(rng.sample(list(PHRASES), rng.choice([1, 1, 2, 3])))
        text = " and ".join(rng.choice(PHRASES[label]) for label in labels)
        out.append(Example(id=f"{prefix}{i}", text=text, label=labels, metadata={"n": len(labels)}))
    return out


@pytest.fixture(scope="module")
def data():
    return texts(40, 1, "train"), texts(16, 2, "dev"), texts(12, 3, "test")


@pytest.fixture(scope="module")
def trained(data):
    train, dev, _ = data
    return EncoderClassifier(EncoderParams(**TINY), seed=0).fit(
        train, dev, schema=SCHEMA, task_type="multilabel"
    )


def test_tune_threshold_picks_the_best_grid_value_nearest_half_on_ties():
    gold = np.array([[1, 0], [0, 1], [1, 1]]) == 1
    # every positive scores 0.3-0.35 and every negative 0.1: any threshold in (0.1, 0.3] is perfect
    probs = np.array([[0.3, 0.1], [0.1, 0.35], [0.32, 0.3]])
    assert tune_threshold(gold, probs) == (0.3, 1.0)
    assert micro_f1(gold, probs >= DEFAULT_THRESHOLD) == 0.0  # 0.5 would find nothing
    # ties at 1.0 everywhere: the grid value nearest 0.5
    assert tune_threshold(gold, np.where(gold, 0.99, 0.01)) == (0.5, 1.0)
    assert THRESHOLD_GRID[0] == 0.05 and THRESHOLD_GRID[-1] == 0.95 and len(THRESHOLD_GRID) == 19


def test_multi_hot_and_schema_inference():
    assert multi_hot(["a", "b", "c"], ["c", "a"]) == [1.0, 0.0, 1.0]
    assert MultilabelHead.infer_schema(texts(10, 0, "x")).names == ["food", "sport", "weather"]


def test_labels_must_be_lists_of_schema_names():
    clf = EncoderClassifier(EncoderParams(**TINY))
    with pytest.raises(DataError, match=r"training example a: label 'sport'; expected a list of label names"):
        clf.fit([Example(id="a", text="x", label="sport")], schema=SCHEMA, task_type="multilabel")
    with pytest.raises(DataError, match=r"training example b: labels \['music'\] are not in the schema"):
        clf.fit([Example(id="b", text="x", label=["sport", "music"])], schema=SCHEMA, task_type="multilabel")


@pytest.mark.slow
def test_threshold_is_tuned_on_dev_and_predictions_follow_it(trained, data):
    train, dev, test = data
    summary = trained.training_
    assert summary["class_weights"] is None and summary["best_dev_micro_f1"] is not None
    # the threshold is the grid value that maximises dev micro-F1 of the trained model
    probs = trained.predict_proba([ex.text for ex in dev])
    gold = np.array([multi_hot(SCHEMA.names, ex.label) for ex in dev]) == 1
    expected, score = tune_threshold(gold, probs)
    assert trained.head_.threshold == summary["threshold"] == expected
    assert summary["threshold_dev_micro_f1"] == round(score, 4)
    assert score >= micro_f1(gold, probs >= DEFAULT_THRESHOLD)
    records = trained.predict(test)
    assert [r.id for r in records] == [ex.id for ex in test]
    for ex, record in zip(test, records, strict=True):
        assert record.status is Status.OK and record.gold == ex.label and record.metadata == ex.metadata
        assert list(record.scores) == SCHEMA.names
        assert all(0 < p < 1 for p in record.scores.values())
        assert record.predicted == [n for n in SCHEMA.names if record.scores[n] >= expected]
    predicted = np.array([multi_hot(SCHEMA.names, r.predicted) for r in records]) == 1
    truth = np.array([multi_hot(SCHEMA.names, ex.label) for ex in test]) == 1
    assert micro_f1(truth, predicted) >= 0.8


@pytest.mark.slow
def test_save_load_round_trip_keeps_the_threshold(trained, data, tmp_path):
    _, _, test = data
    trained.save(tmp_path / "model")
    info = read_model_info(tmp_path / "model")
    assert info["task_type"] == "multilabel" and info["threshold"] == trained.head_.threshold
    assert "tags" not in info
    loaded = load_classifier(tmp_path / "model")
    assert loaded.head_.threshold == trained.head_.threshold
    before, after = trained.predict(test), loaded.predict(test)
    assert [r.predicted for r in before] == [r.predicted for r in after]
    assert [r.scores for r in before] == [r.scores for r in after]


@pytest.mark.slow
def test_without_dev_the_threshold_is_half_and_class_weights_are_not_applied(data, caplog):
    train, _, _ = data
    params = EncoderParams(**{**TINY, "epochs": 1, "class_weights": "balanced"})
    with caplog.at_level(logging.WARNING, logger="socialens.classifiers.encoder_heads"):
        clf = EncoderClassifier(params, seed=0).fit(train[:16], task_type="multilabel")
    assert clf.head_.threshold == 0.5 and clf.training_["threshold_dev_micro_f1"] is None
    assert clf.training_["class_weights"] is None
    assert "class_weights=balanced is not applied to multilabel" in caplog.text
    assert clf.schema.names == ["food", "sport", "weather"]
