"""Encoder family, token classification: a real all-MiniLM-L6-v2 fine-tuned for a few steps on a
toy entity pattern (a fixed set of person names and cities), offline."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import logging
import random

import pytest

from socialens.classifiers.base import load_classifier, read_model_info
from socialens.classifiers.encoder import EncoderClassifier, EncoderParams
from socialens.classifiers.encoder_tokens import (
    TokenHead,
    align_labels,
    entity_f1,
    first_subtokens,
    tag_set,
)
from socialens.core.errors import ConfigError, DataError
from socialens.core.types import Example, LabelSchema, Status
from socialens.tasks.tags import tokenize

PEOPLE = [("Alice", "Smith"), ("Bob", "Jones"), ("Carol", "Brown"), ("Dave", "Miller"), ("Eve", "Wilson")]
CITIES = ["Paris", "London", "Berlin", "Madrid"]
FILLER = ["the", "a", "went", "saw", "to", "with", "today", "happy", "slowly", "and", "met", "visited", "new"]
SCHEMA = LabelSchema.from_names(["PER", "LOC"])
TINY = dict(epochs=4, learning_rate=3e-4, batch_size=8, warmup_ratio=0.0, max_length=32, num_threads=2)


def sentence(rng: random.Random, ident: str) -> Example:
    tokens, tags = [], []
    for _ in range(rng.randint(3, 6)):
        roll = rng.random()
        if roll < 0.25:
            first, last = rng.choice(PEOPLE)
            if rng.random() < 0.5:
                tokens += [first, last]
                tags += ["B-PER", "I-PER"]
            else:
                tokens.append(first)
                tags.append("B-PER")
        elif roll < 0.4:
            tokens += ["in", rng.choice(CITIES)]
            tags += ["O", "B-LOC"]
        else:
            tokens.append(rng.choice(FILLER))
            tags.append("O")
    return Example(id=ident, text=" ".join(tokens), label=tags, tokens=tokens, metadata={"i": ident})


def sentences(n: int, seed: int, prefix: str) -> list[Example]:
    rng = random.Random(seed)
    return [sentence(rng, f"{prefix}{i}") for i in range(n)]


@pytest.fixture(scope="module")
def data():
    return sentences(48, 1, "train"), sentences(12, 2, "dev"), sentences(12, 3, "test")


@pytest.fixture(scope="module")
def trained(data):
    train, dev, _ = data
    clf = EncoderClassifier(EncoderParams(**TINY), seed=0)
    return clf.fit(train, dev, schema=SCHEMA, task_type="token_classification")


@pytest.fixture(scope="module")
def tokenizer():
    from transformers import AutoTokenizer

    from socialens.core.models import resolve_model

    return AutoTokenizer.from_pretrained(resolve_model("builtin:minilm-l6"))


def test_tag_set_is_o_then_b_i_per_type_in_schema_order():
    assert tag_set(["PER", "LOC"]) == ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]
    assert TokenHead(SCHEMA).outputs == ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]
    # without a schema, the entity types of the training tags, sorted
    assert TokenHead.infer_schema(sentences(5, 0, "s")).names in (["LOC", "PER"], ["PER"])


def test_align_labels_puts_each_word_label_on_its_first_subtoken():
    assert align_labels([None, 0, 1, 1, 1, 2, None], [3, 1, 0]) == [-100, 3, 1, -100, -100, 0, -100]
    assert first_subtokens([None, 0, 1, 1, 2, 2, None]) == {0: 1, 1: 2, 2: 4}


def test_a_word_cut_into_several_pieces_gets_one_label(tokenizer):
    example = Example(id="a", text="Alice unbelievably Smith", label=["B-PER", "O", "I-PER"])
    pieces = tokenizer.tokenize("unbelievably")
    assert len(pieces) > 2  # the real word-piece split this test is about
    (row,) = TokenHead(SCHEMA).encode(tokenizer, [example], 32, with_labels=True)
    ids = tokenizer.convert_ids_to_tokens(row["input_ids"])
    assert ids[0] == "[CLS]" and ids[-1] == "[SEP]" and ids[2 : 2 + len(pieces)] == pieces
    # O is tag 0, B-PER 1, I-PER 2: one label per word, -100 on the other pieces and specials
    assert row["labels"] == [-100, 1, 0, *([-100] * (len(pieces) - 1)), 2, -100]


def test_sentence_tokens_are_the_tokens_else_the_text_cut():
    from socialens.tasks.token_classification import sentence_tokens

    assert sentence_tokens(Example(id="a", text="x y", tokens=["New York", "!"])) == ["New York", "!"]
    assert sentence_tokens(Example(id="b", text="Alice met Bob, today.")) == [
        "Alice",
        "met",
        "Bob",
        ",",
        "today",
        ".",
    ]


def test_entity_f1_is_strict_iob2():
    gold = [["B-PER", "I-PER", "O", "B-LOC"]]
    assert entity_f1(gold, gold) == 1.0
    # a split entity and a wrong type: no match for either
    assert entity_f1(gold, [["B-PER", "B-PER", "O", "B-PER"]]) == 0.0
    assert entity_f1(gold, [["B-PER", "I-PER", "O", "O"]]) == pytest.approx(2 / 3)


def test_bad_training_tags_are_one_line_data_errors():
    clf = EncoderClassifier(EncoderParams(**TINY))
    short = Example(id="s1", text="Alice went", tokens=["Alice", "went"], label=["B-PER"])
    with pytest.raises(DataError, match=r"training example s1: 1 tags for 2 tokens"):
        clf.fit([short], schema=SCHEMA, task_type="token_classification")
    unknown = Example(id="s2", text="Alice went", tokens=["Alice", "went"], label=["B-ORG", "O"])
    with pytest.raises(DataError, match=r"training example s2: tags \['B-ORG'\] are not in the tag set"):
        clf.fit([unknown], schema=SCHEMA, task_type="token_classification")


@pytest.mark.slow
def test_learns_the_toy_entities(trained, data):
    _, _, test = data
    records = trained.predict(test)
    assert [r.id for r in records] == [ex.id for ex in test]
    score = entity_f1([r.gold for r in records], [r.predicted for r in records])
    assert score >= 0.9, f"held-out entity micro-F1 {score:.3f}"
    summary = trained.training_
    assert summary["train_examples"] == 48 and summary["class_weights"] is None
    assert summary["best_dev_entity_f1"] is not None and len(summary["dev_entity_f1_by_epoch"]) >= 1
    for ex, record in zip(test, records, strict=True):
        assert record.status is Status.OK and record.scores is None
        assert len(record.predicted) == len(ex.tokens)
        assert record.metadata == ex.metadata
        entities = record.details["entities"]
        for entity in entities:
            assert ex.text[entity["start"] : entity["end"]] == entity["text"]
            assert " ".join(ex.tokens[entity["token_start"] : entity["token_end"]]) == entity["text"]
        assert len(record.details["confidence"]) == len(ex.tokens)
        assert record.details["tokens"] == ex.tokens and record.details["hallucinated"] == 0
        assert all(0 < p <= 1 for p in record.details["confidence"])
        assert "truncated_tokens" not in record.details


@pytest.mark.slow
def test_raw_text_without_tokens_is_cut_and_tagged(trained):
    text = "Yesterday Alice Smith met Bob in Paris, happy."
    (record,) = trained.predict([Example(id="raw", text=text)])
    words = [t for t, _, _ in tokenize(text)]
    assert len(record.predicted) == len(words) == 10
    found = {(e["text"], e["type"]) for e in record.details["entities"]}
    assert ("Alice Smith", "PER") in found and ("Paris", "LOC") in found
    for entity in record.details["entities"]:
        assert text[entity["start"] : entity["end"]] == entity["text"]


@pytest.mark.slow
def test_words_past_max_length_get_o_are_counted_and_warned(trained, tokenizer, caplog):
    tokens = ["Alice"] + ["slowly"] * 40 + ["Paris"]
    long = Example(id="long", text=" ".join(tokens), tokens=tokens)
    gap = Example(id="gap", text="Alice \u200b Smith", tokens=["Alice", "\u200b", "Smith"])
    with caplog.at_level(logging.WARNING, logger="socialens.classifiers.encoder_tokens"):
        records = trained.predict([long, gap])
    kept = len(
        {
            w
            for w in tokenizer(tokens, is_split_into_words=True, truncation=True, max_length=32).word_ids()
            if w is not None
        }
    )
    assert kept == 30  # [CLS] + 30 one-piece words + [SEP]
    assert len(records[0].predicted) == 42 and records[0].predicted[kept:] == ["O"] * (42 - kept)
    assert records[0].details["truncated_tokens"] == 42 - kept
    assert records[0].details["confidence"][kept:] == [None] * (42 - kept)
    assert "1 of 2 sentences are longer than max_length=32" in caplog.text
    # a word the tokenizer gives no piece at all: O, counted apart from truncation
    assert records[1].predicted[1] == "O" and records[1].details["unaligned_tokens"] == 1
    assert "truncated_tokens" not in records[1].details
    assert trained.predict([]) == []


@pytest.mark.slow
def test_predicted_tags_are_valid_iob2(trained):
    examples = [Example(id=str(i), text=t) for i, t in enumerate(["Smith Smith Smith", "in in Jones", "."])]
    for record in trained.predict(examples):
        for previous, tag in zip(["O", *record.predicted], record.predicted, strict=False):
            if tag.startswith("I-"):
                assert previous[2:] == tag[2:], record.predicted


@pytest.mark.slow
def test_save_load_round_trip_gives_identical_tags(trained, data, tmp_path):
    _, _, test = data
    trained.save(tmp_path / "model")
    info = read_model_info(tmp_path / "model")
    assert info["family"] == "encoder" and info["task_type"] == "token_classification"
    assert info["tags"] == ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]
    assert info["schema"]["labels"][0]["name"] == "PER"
    assert info["training"]["best_dev_entity_f1"] == trained.training_["best_dev_entity_f1"]
    before = trained.predict(test)
    for loaded in (EncoderClassifier.load(tmp_path / "model"), load_classifier(tmp_path / "model")):
        assert loaded.task_type == "token_classification" and isinstance(loaded.head_, TokenHead)
        after = loaded.predict(test)
        assert [r.predicted for r in after] == [r.predicted for r in before]
        assert [r.details for r in after] == [r.details for r in before]
    # a tag list that does not follow from the schema is refused, in one line
    import json

    path = tmp_path / "model" / "socialens_model.json"
    path.write_text(json.dumps({**info, "tags": ["O", "B-LOC", "I-LOC", "B-PER", "I-PER"]}))
    with pytest.raises(ConfigError, match="field 'tags'"):
        EncoderClassifier.load(tmp_path / "model")
