"""Tokenizer coverage of a dataset's language, with the real all-MiniLM-L6-v2 tokenizer, offline."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from socialens.classifiers.base import get_family
from socialens.classifiers.coverage import (
    UNCOVERED_SHARE,
    coverage_warning,
    language_coverage,
    sample_texts,
    uncovered_share,
)
from socialens.classifiers.encoder import EncoderClassifier, EncoderParams
from socialens.core.types import Example

ENGLISH = [
    "The vaccine does not change your DNA, fact-checkers showed it years ago.",
    "I can't believe they are still sharing this rumour about the election.",
    "Great match tonight, the goalkeeper saved two penalties!",
]
ARABIC = [
    "هذا الخبر كاذب ولا أساس له من الصحة",
    "الحكومة تعلن عن إجراءات جديدة لمواجهة الأزمة",
    "يا سلام على هالذكاء، والله ما في مثلك",
]
HINDI = [
    "भारत ने शानदार जीत दर्ज की और सीरीज अपने नाम की",
    "यह खबर पूरी तरह से झूठी है, इसे शेयर मत करो",
]


@pytest.fixture(scope="module")
def tokenizer():
    return EncoderClassifier.coverage_tokenizer(EncoderParams())


def examples(texts: list[str], language: str) -> list[Example]:
    return [
        Example(id=str(i), text=t, label="a", metadata={"language": language}) for i, t in enumerate(texts)
    ]


def test_minilm_covers_english_but_not_arabic_or_hindi(tokenizer):
    english, n_english = uncovered_share(tokenizer, ENGLISH)
    arabic, _ = uncovered_share(tokenizer, ARABIC)
    hindi, _ = uncovered_share(tokenizer, HINDI)
    assert n_english > 30
    assert english < 0.1 < UNCOVERED_SHARE < 0.5 < hindi
    assert arabic > 0.8


def test_single_letters_and_unknown_tokens_are_counted_punctuation_is_not(tokenizer):
    # "a" and "i" are one-letter word pieces; "!" and "7" are single characters but not letters;
    # the emoji is the unknown token
    share, tokens = uncovered_share(tokenizer, ["a ! 7 i \U0001f9ff"])
    assert tokenizer.tokenize("a ! 7 i \U0001f9ff") == ["a", "!", "7", "i", "[UNK]"]
    assert (share, tokens) == (3 / 5, 5)


def test_language_coverage_for_the_encoder_family():
    encoder = get_family("encoder")
    coverage = language_coverage(encoder, EncoderParams(), examples(ARABIC, "ar"))
    assert coverage["language"] == "ar" and coverage["model"] == "builtin:minilm-l6"
    assert coverage["covered"] is False and coverage["texts"] == 3 and coverage["threshold"] == 0.3
    assert coverage_warning("arsarcasm", "minilm", coverage).startswith(
        f"warning: arsarcasm / minilm: {coverage['share']:.0%} of the tokens of 3 training texts are "
        "unknown or single letters to the tokenizer of builtin:minilm-l6 (over 30%): it likely does "
        "not cover language ar"
    )
    assert language_coverage(encoder, EncoderParams(), examples(ENGLISH, "en"))["covered"] is True


def test_no_measure_without_a_tokenizer_or_a_loadable_model():
    tfidf = get_family("tfidf")
    assert language_coverage(tfidf, tfidf.Params(), examples(ARABIC, "ar")) is None
    broken = EncoderParams(model="/nonexistent/model-folder")
    assert language_coverage(get_family("encoder"), broken, examples(ARABIC, "ar")) is None


def test_the_sample_is_fixed_and_skips_empty_texts():
    many = examples([f"text {i}" for i in range(500)] + ["  "], "en")
    assert sample_texts(many) == sample_texts(many) and len(sample_texts(many)) == 200
    assert sample_texts(examples(["x", " "], "en")) == ["x"]


def test_real_datasets_fall_on_both_sides_of_the_threshold(shared_datasets):
    from socialens.data.datasets import load_dataset

    encoder, params = get_family("encoder"), EncoderParams()
    configs = Path(__file__).resolve().parents[2] / "configs" / "datasets"
    shares = {}
    for name in ("arsarcasm_v2-sarcasm", "tweeteval-hate", "liar"):
        train = load_dataset(configs / f"{name}.yaml", data_root=shared_datasets).splits["train"]
        shares[name] = language_coverage(encoder, params, train)["share"]
    with open(shared_datasets / "hasoc2019_hi" / "hindi_dataset.tsv", encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t"))
    shares["hasoc"] = language_coverage(encoder, params, examples([r["text"] for r in rows], "hi"))["share"]
    assert shares["tweeteval-hate"] < 0.1 and shares["liar"] < 0.1
    assert shares["hasoc"] > 0.5 and shares["arsarcasm_v2-sarcasm"] > 0.8
