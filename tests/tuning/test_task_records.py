"""Training records of a task that builds its own prompt (summaries) through the LoRA path's
encoding: only the reference summary is learned, and a long article loses its end, not the ask."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest

from socialens.classifiers.instruct import task_records
from socialens.core.types import Example, LabelSchema
from socialens.tuning.lora import encode_chat
from socialens.tuning.memory import IGNORE_INDEX

pytestmark = pytest.mark.slow  # loads the built-in model's tokenizer (its converted folder)

SCHEMA = LabelSchema.from_names(["summary"])
ARTICLE = Example(
    "a1",
    " ".join(f"Sentence number {i} of a long article about the river dam." for i in range(60)),
    "A dam is being built on the river.",
    metadata={"language": "en"},
)


@pytest.fixture(scope="module")
def tokenizer():
    from transformers import AutoTokenizer

    from socialens.llm.hf import model_folder

    return AutoTokenizer.from_pretrained(model_folder("builtin:smollm2-135m-instruct"))


def test_only_the_summary_is_learned_and_the_article_end_is_cut(tokenizer):
    (record,) = task_records([ARTICLE], "summarisation", SCHEMA)
    whole, truncated = encode_chat(tokenizer, record["messages"], max_length=4096)
    assert not truncated
    learned = [
        t for t, label in zip(whole["input_ids"], whole["labels"], strict=True) if label != IGNORE_INDEX
    ]
    assert tokenizer.decode(learned) == "A dam is being built on the river.<|im_end|>\n"
    cut, truncated = encode_chat(tokenizer, record["messages"], max_length=200)
    assert truncated and len(cut["input_ids"]) <= 200
    decoded = tokenizer.decode(cut["input_ids"])
    ask = record["messages"][0]["content"].split("\n\nArticle: ")[0]
    assert ask in decoded and "Sentence number 0 of" in decoded and "Sentence number 59" not in decoded
    assert decoded.endswith("A dam is being built on the river.<|im_end|>\n")
