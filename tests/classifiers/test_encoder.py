"""Encoder family: a real all-MiniLM-L6-v2 fine-tuned on a tiny separable dataset, offline."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import math
import random

import pytest

from socialens.classifiers.base import REGISTRY, get_family, load_classifier, read_model_info
from socialens.classifiers.encoder import EncoderClassifier, EncoderParams, balanced_class_weights, macro_f1
from socialens.core.types import Example, LabelSchema, Status

TOPICS = {
    "sport": (
        ["the team", "our striker", "the coach", "the goalkeeper", "the players", "the referee"],
        [
            "won the football match",
            "scored a goal in the game",
            "trained hard before the league final",
            "lost the championship on penalties",
            "celebrated the victory in the stadium",
        ],
    ),
    "food": (
        ["this pizza", "the soup", "my grandmother's cake", "the pasta", "the curry", "that burger"],
        [
            "tastes delicious with cheese",
            "was cooked in the oven",
            "needs more salt and pepper",
            "is the best dish in the restaurant",
            "smells of garlic and fresh herbs",
        ],
    ),
    "weather": (
        ["tomorrow", "this afternoon", "tonight", "the forecast says next week", "on sunday", "this morning"],
        [
            "heavy rain and thunderstorms are expected",
            "it will be sunny and hot",
            "snow and freezing wind will arrive",
            "the clouds bring a cold drizzle",
            "a storm with strong winds is coming",
        ],
    ),
}


def make_examples(per_class: int, seed: int, prefix: str) -> list[Example]:
    rng = random.Random(seed)
    out = []
    for label, (subjects, predicates) in TOPICS.items():
        for i in range(per_class):
            text = f"{rng.choice(subjects)} {rng.choice(predicates)}"
            out.append(
                Example(id=f"{prefix}-{label}-{i}", text=text, label=label, metadata={"topic": label, "i": i})
            )
    rng.shuffle(out)
    return out


TINY = dict(epochs=3, learning_rate=1e-4, batch_size=8, warmup_ratio=0.0, eval_batch_size=16)


@pytest.fixture(scope="module")
def data():
    return (
        make_examples(14, seed=1, prefix="train"),
        make_examples(4, seed=2, prefix="dev"),
        make_examples(6, seed=3, prefix="test"),
    )


@pytest.fixture(scope="module")
def trained(data):
    train, dev, _ = data
    return EncoderClassifier(EncoderParams(**TINY), seed=0).fit(train, dev)


def test_registered():
    assert REGISTRY["encoder"] is EncoderClassifier
    assert get_family("encoder") is EncoderClassifier
    assert EncoderClassifier.Params is EncoderParams


def test_params_reject_unknown_fields():
    with pytest.raises(ValueError):
        EncoderParams(epoch=3)


def test_balanced_class_weights():
    # 6 examples, 3 classes present with counts 3, 2, 1: n / (k * count)
    weights = balanced_class_weights([0, 0, 0, 1, 1, 2], 3)
    assert weights == pytest.approx([6 / 9, 6 / 6, 6 / 3])
    # the weighted count of every class present is then equal (n / k)
    assert [w * c for w, c in zip(weights, [3, 2, 1], strict=True)] == pytest.approx([2, 2, 2])
    # a class absent from training gets 1.0, k counts only the present ones
    assert balanced_class_weights([0, 0, 2, 2], 3) == pytest.approx([1.0, 1.0, 1.0])
    assert balanced_class_weights([0, 0, 0, 2], 4) == pytest.approx([4 / 6, 1.0, 4 / 2, 1.0])


def test_macro_f1_helper():
    assert macro_f1([0, 1, 1, 0], [0, 1, 1, 0]) == 1.0
    assert macro_f1([0, 1], [1, 0]) == 0.0


def test_predict_before_fit_is_an_error():
    with pytest.raises(RuntimeError, match="not fitted"):
        EncoderClassifier().predict([Example(id="a", text="x")])


@pytest.mark.slow
def test_learns_separable_topics(trained, data):
    _, _, test = data
    records = trained.predict(test)
    score = macro_f1(
        [trained.schema.index(r.gold) for r in records], [trained.schema.index(r.predicted) for r in records]
    )
    assert score >= 0.8, f"held-out macro-F1 {score:.3f}"
    summary = trained.training_
    assert summary["train_examples"] == 42
    assert 1 <= summary["epochs_run"] <= 3
    assert summary["best_dev_macro_f1"] is not None and summary["train_examples_per_s"] > 0


@pytest.mark.slow
def test_records_one_per_example_in_order(trained, data):
    _, _, test = data
    unlabelled = Example(id="nolabel", text="a sunny and hot day", metadata={"source": "x"})
    examples = [*test, unlabelled]
    records = trained.predict(examples)
    assert [r.id for r in records] == [ex.id for ex in examples]
    assert [r.gold for r in records] == [ex.label for ex in examples]
    assert records[-1].gold is None and records[-1].metadata == {"source": "x"}
    for ex, record in zip(examples, records, strict=True):
        assert record.status is Status.OK
        assert record.metadata == ex.metadata and record.metadata is not ex.metadata
        assert list(record.scores) == trained.schema.names
        assert math.isclose(sum(record.scores.values()), 1.0, abs_tol=1e-5)
        assert record.predicted == max(record.scores, key=record.scores.get)
        assert record.latency_s > 0
    # the order-restoring batching gives the same answer as predicting one at a time
    single = [trained.predict([ex])[0] for ex in test[:5]]
    for a, b in zip(single, records[:5], strict=True):
        assert a.predicted == b.predicted
        assert a.scores == pytest.approx(b.scores, abs=1e-4)
    assert trained.predict([]) == []


@pytest.mark.slow
def test_save_load_round_trip(trained, data, tmp_path):
    _, _, test = data
    trained.save(tmp_path / "model")
    files = {p.name for p in (tmp_path / "model").iterdir()}
    assert {"model.safetensors", "config.json", "socialens_model.json"} <= files
    assert not any(name.startswith("checkpoint") for name in files)
    info = read_model_info(tmp_path / "model")
    assert info["family"] == "encoder" and info["params"]["epochs"] == 3
    assert info["training"]["train_examples"] == 42 and "train_time_s" in info["training"]

    for loaded in (EncoderClassifier.load(tmp_path / "model"), load_classifier(tmp_path / "model")):
        assert isinstance(loaded, EncoderClassifier)
        assert loaded.schema.names == trained.schema.names and loaded.params == trained.params
        before, after = trained.predict(test), loaded.predict(test)
        assert [r.predicted for r in before] == [r.predicted for r in after]
        assert [r.scores for r in before] == [r.scores for r in after]


@pytest.mark.slow
def test_same_seed_same_predictions(trained, data):
    train, dev, test = data
    again = EncoderClassifier(EncoderParams(**TINY), seed=0).fit(train, dev)
    first, second = trained.predict(test), again.predict(test)
    assert [r.predicted for r in first] == [r.predicted for r in second]
    for a, b in zip(first, second, strict=True):
        assert a.scores == pytest.approx(b.scores, abs=1e-5)


@pytest.mark.slow
def test_fit_without_dev_uses_given_schema_and_progress(data):
    train, _, test = data
    schema = LabelSchema.from_names(["weather", "sport", "food", "other"])
    calls = []
    clf = EncoderClassifier(
        EncoderParams(epochs=1, batch_size=16, class_weights=None, num_threads=1),
        seed=3,
        progress=lambda stage, done, total: calls.append((stage, done, total)),
    )
    clf.fit(train[:20], schema=schema)
    assert clf.model_.config.id2label == {0: "weather", 1: "sport", 2: "food", 3: "other"}
    assert clf.training_["best_dev_macro_f1"] is None and clf.training_["epochs_run"] == 1
    records = clf.predict(test[:4])
    assert list(records[0].scores) == ["weather", "sport", "food", "other"]
    assert ("train", 2, 2) in calls and ("predict", 4, 4) in calls


@pytest.mark.slow
def test_early_stopping_on_dev_macro_f1(data):
    train, dev, _ = data
    params = EncoderParams(**{**TINY, "epochs": 10, "learning_rate": 2e-4, "early_stopping_patience": 1})
    clf = EncoderClassifier(params, seed=0).fit(train, dev)
    summary = clf.training_
    # dev macro-F1 reaches its ceiling early; one epoch without improvement then stops training
    assert summary["best_dev_macro_f1"] == 1.0
    assert summary["epochs_run"] < 10
    # the restored best model still scores the dev set perfectly
    records = clf.predict(dev)
    assert all(r.predicted == r.gold for r in records)


@pytest.mark.slow
def test_predict_proba_matches_records(trained, data):
    _, _, test = data
    probs = trained.predict_proba([ex.text for ex in test])
    assert probs.shape == (len(test), 3)
    records = trained.predict(test)
    for row, record in zip(probs, records, strict=True):
        assert list(row) == pytest.approx(list(record.scores.values()), abs=1e-6)
