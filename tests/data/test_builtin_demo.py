"""The built-in demo dataset (reddit-misinfo-demo): its CSV and YAML (read without the data layer),
the seeded generator that writes the CSV, and that word counts alone do not solve it."""

from __future__ import annotations

import csv
import importlib.util
import re
from collections import Counter
from pathlib import Path
from types import ModuleType

import pytest
import yaml

import socialens

DEMO_DIR = Path(socialens.__file__).parent / "data" / "builtin" / "reddit_misinfo_demo"
LABELS = {"belief", "debunk", "other"}
TOPICS = {"climate", "vaccines", "immigration"}


@pytest.fixture(scope="module")
def rows() -> list[dict[str, str]]:
    with open(DEMO_DIR / "comments.csv", newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture(scope="module")
def config() -> dict:
    with open(DEMO_DIR / "dataset.yaml", encoding="utf-8") as handle:
        return yaml.safe_load(handle)


@pytest.fixture(scope="module")
def generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("demo_generate", DEMO_DIR / "generate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _norm(text: str) -> str:
    return re.sub(r"\s+", " ", text.casefold()).strip()


def test_files_ship_with_the_package() -> None:
    for name in ("comments.csv", "dataset.yaml", "README.md", "generate.py"):
        assert (DEMO_DIR / name).is_file(), name
    assert (DEMO_DIR.parent / "__init__.py").is_file()


def test_columns_and_size(rows: list[dict[str, str]]) -> None:
    assert list(rows[0]) == ["id", "text", "label", "topic", "subreddit"]
    assert len(rows) == 1200


def test_the_shipped_csv_is_exactly_the_generators_output(generator, tmp_path) -> None:
    generator.write(generator.generate(), tmp_path / "comments.csv")
    assert (tmp_path / "comments.csv").read_bytes() == (DEMO_DIR / "comments.csv").read_bytes()
    assert generator.generate(seed=generator.SEED + 1) != generator.generate()


def test_each_topic_has_120_belief_140_debunk_140_other(rows: list[dict[str, str]]) -> None:
    per_cell = Counter((r["topic"], r["label"]) for r in rows)
    assert per_cell == {
        (t, lab): n for t in TOPICS for lab, n in {"belief": 120, "debunk": 140, "other": 140}.items()
    }


def test_the_same_claims_and_arguments_appear_under_every_label(generator, rows) -> None:
    """What makes word counts useless: every statement of the claim, and most arguments of either
    side, occur in belief, debunk and other comments alike."""
    for topic, bank in generator.TOPICS.items():
        texts = {
            lab: " ".join(_norm(r["text"]) for r in rows if r["topic"] == topic and r["label"] == lab)
            for lab in LABELS
        }
        statements = bank["claim"] + bank["pro"] + bank["con"] + bank["denial"]
        everywhere = [a for a in statements if all(_norm(a) in texts[lab] for lab in LABELS)]
        assert len(everywhere) >= 0.7 * len(statements), (topic, len(everywhere))


def test_ids_and_texts_are_unique(rows: list[dict[str, str]]) -> None:
    ids = [r["id"] for r in rows]
    assert len(set(ids)) == len(ids)
    texts = [r["text"] for r in rows]
    assert len(set(texts)) == len(texts)
    assert len({_norm(t) for t in texts}) == len(texts)


def test_no_empty_fields(rows: list[dict[str, str]]) -> None:
    for r in rows:
        assert r["text"].strip(), r["id"]
        assert r["id"].strip() and r["subreddit"].startswith("r/"), r["id"]


def test_only_known_labels_and_topics(rows: list[dict[str, str]]) -> None:
    assert {r["label"] for r in rows} == LABELS
    assert {r["topic"] for r in rows} == TOPICS


def test_tfidf_cannot_separate_belief_from_debunk() -> None:
    """The floor model (TF-IDF + logistic regression, word and character n-grams) stays near chance
    between belief and debunk: the label is how a comment treats an argument, not which words it has."""
    from sklearn.metrics import f1_score

    from socialens.classifiers.tfidf import TfidfClassifier
    from socialens.data.datasets import load_dataset
    from socialens.data.prepare import prepare

    split = prepare(load_dataset("builtin:reddit-misinfo-demo"), seed=0)
    assert [len(part) for part in split.parts().values()] == [840, 240, 120]
    records = TfidfClassifier(seed=0).fit(split.train, split.dev, schema=split.schema).predict(split.test)
    gold, predicted = [ex.label for ex in split.test], [r.predicted for r in records]
    per_class = dict(
        zip(
            ["belief", "debunk", "other"],
            f1_score(gold, predicted, average=None, labels=["belief", "debunk", "other"]),
            strict=True,
        )
    )
    assert per_class["belief"] < 0.65 and per_class["debunk"] < 0.65
    assert f1_score(gold, predicted, average="macro") < 0.75


def test_topics_balanced_and_labels_not_too_rare(rows: list[dict[str, str]]) -> None:
    per_topic = Counter(r["topic"] for r in rows)
    per_cell = Counter((r["topic"], r["label"]) for r in rows)
    for topic in TOPICS:
        assert per_topic[topic] >= 180, topic
        for label in LABELS:
            share = per_cell[(topic, label)] / per_topic[topic]
            assert share >= 0.15, (topic, label, share)


def test_id_prefix_matches_topic(rows: list[dict[str, str]]) -> None:
    prefix = {"climate": "clim-", "vaccines": "vacc-", "immigration": "immi-"}
    for r in rows:
        assert r["id"].startswith(prefix[r["topic"]]), r["id"]


def test_yaml_names_the_three_labels_with_descriptions_and_wordings(config: dict) -> None:
    assert config["name"] == "reddit-misinfo-demo"
    assert config["format"] == "csv" and config["file"] == "comments.csv"
    assert config["columns"]["text"] == "text" and config["columns"]["label"] == "label"
    assert config["columns"]["metadata"] == {"topic": "topic", "subreddit": "subreddit"}
    labels = config["schema"]["labels"]
    assert [lab["name"] for lab in labels] == ["belief", "debunk", "other"]
    for lab in labels:
        assert isinstance(lab["description"], str) and len(lab["description"]) > 20
        assert lab["aliases"]
    aliases = [a for lab in labels for a in [lab["name"], *lab["aliases"]]]
    assert len({a.casefold() for a in aliases}) == len(aliases)
    wordings = config["schema"]["wordings"]
    assert set(wordings) == TOPICS
    for topic in TOPICS:
        assert set(wordings[topic]) == LABELS, topic
        assert all(isinstance(w, str) and w.strip() for w in wordings[topic].values())
