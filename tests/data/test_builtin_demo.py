"""The built-in demo dataset (reddit-misinfo-demo): its CSV and YAML, read without the data layer."""

from __future__ import annotations

import csv
import re
from collections import Counter
from pathlib import Path

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


def _norm(text: str) -> str:
    return re.sub(r"\s+", " ", text.casefold()).strip()


def test_files_ship_with_the_package() -> None:
    for name in ("comments.csv", "dataset.yaml", "README.md"):
        assert (DEMO_DIR / name).is_file(), name
    assert (DEMO_DIR.parent / "__init__.py").is_file()


def test_columns_and_size(rows: list[dict[str, str]]) -> None:
    assert list(rows[0]) == ["id", "text", "label", "topic", "subreddit"]
    assert len(rows) >= 600


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
