"""The instruct family on summaries: training records whose prompt is the summarisation task's own
(exactly what the prompted family asks) and whose answer is the reference summary; then (slow) a
LoRA adapter trained for two steps on XL-Sum sample articles with the real SmolLM2-135M-Instruct
and evaluated through the prompted family's task path."""

from __future__ import annotations

import json
import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest

from socialens.classifiers.base import load_classifier
from socialens.classifiers.instruct import InstructClassifier, InstructParams, task_records
from socialens.classifiers.prompted import PromptedClassifier, PromptedParams
from socialens.core.registry import TASKS
from socialens.core.types import Example, LabelSchema, Status
from socialens.llm.prompts import split_record
from socialens.tuning.lora import LoraParams

SCHEMA = LabelSchema.from_names(["summary"])
XLSUM = Path(__file__).resolve().parents[2] / ".." / "shared" / "datasets" / "xlsum_sample"
LANGUAGES = {"english": "en", "arabic": "ar", "hindi": "hi"}

ARTICLES = [
    Example(
        "en1",
        "The council voted on Monday to close the old bridge. " * 5,
        "The old bridge will close.",
        metadata={"language": "en"},
    ),
    Example(
        "ar1",
        "قررت الحكومة رفع أسعار الوقود اعتبارا من الشهر المقبل. " * 5,
        "الحكومة ترفع أسعار الوقود.",
        metadata={"language": "ar"},
    ),
    Example(
        "hi1",
        "सरकार ने अगले महीने से ईंधन की कीमतें बढ़ाने का फ़ैसला किया है। " * 5,
        "सरकार ईंधन की कीमतें बढ़ाएगी।",
        metadata={"language": "hi"},
    ),
    Example("none", "No summary for this one.", None, metadata={"language": "en"}),
]


def test_records_are_the_task_prompt_answered_by_the_reference():
    records = task_records(ARTICLES, "summarisation", SCHEMA, description="news", max_chars=80)
    assert [r["id"] for r in records] == ["en1", "ar1", "hi1"]  # no target, no record
    task = TASKS.get("summarisation")()
    for record, example in zip(records, ARTICLES, strict=False):
        prompt, answer = split_record(record["messages"])
        assert answer == example.label and record["label"] == example.label
        assert [m["role"] for m in prompt] == ["user"]  # no system message unless one is given
        clipped = Example(example.id, example.text[:80], example.label, metadata=example.metadata)
        assert prompt == task.messages(clipped, [], SCHEMA, output_format="serial", description="news")
    assert "in Arabic" in records[1]["messages"][0]["content"]
    with_system = task_records(ARTICLES[:1], "summarisation", SCHEMA, system="Be brief.")
    assert with_system[0]["messages"][0] == {"role": "system", "content": "Be brief."}


def test_training_prompt_is_what_the_prompted_family_asks():
    records = task_records(ARTICLES[:3], "summarisation", SCHEMA, description="news", max_chars=80)
    prompted = PromptedClassifier(
        PromptedParams(backend="hf", prompt="serial", max_text_chars=80, cache=False)
    ).fit([], schema=SCHEMA, task="news", task_type="summarisation")
    assert prompted.prompts(ARTICLES[:3]) == [split_record(r["messages"])[0] for r in records]


def test_evaluator_uses_the_task_budget_and_stop_rule(tmp_path):
    model = InstructClassifier(InstructParams(stop_rule="first_sentence"))
    model.schema, model.adapter_dir, model.task_type = SCHEMA, tmp_path, "summarisation"
    params = model.evaluator.params
    assert params.prompt == "serial" and params.stop_rule == "first_sentence"
    assert "max_tokens" not in params.model_fields_set  # the task's 96, not the label budget of 20
    assert model.evaluator.task_type == "summarisation"
    given = InstructClassifier(InstructParams(max_tokens=40))
    given.schema, given.adapter_dir, given.task_type = SCHEMA, tmp_path, "summarisation"
    assert given.evaluator.params.max_tokens == 40


# -- slow: train and evaluate on the XL-Sum sample


def _xlsum(split: str, per_language: int) -> list[Example]:
    examples = []
    for name, code in LANGUAGES.items():
        path = XLSUM / f"{name}_{split}.jsonl"
        if not path.is_file():
            pytest.skip(f"{path} not present")
        rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        # the shortest summaries: SmolLM2's tokenizer spends a token or more per Arabic or Hindi letter
        rows.sort(key=lambda row: len(row["summary"]))
        examples += [
            Example(row["id"], row["text"], row["summary"], metadata={"language": code})
            for row in rows[:per_language]
        ]
    return examples


@pytest.mark.slow
def test_fit_predict_save_load_on_xlsum_sample(tmp_path):
    train, test = _xlsum("train", 2), _xlsum("test", 1)
    lora = LoraParams(max_steps=2, batch_size=3, max_length=384, num_threads=1, learning_rate=1e-3, r=8)
    params = InstructParams(
        lora=lora, max_tokens=24, max_text_chars=200, eval_batch_size=3, threads=1, stop_rule="first_sentence"
    )
    model = InstructClassifier(params, seed=0).fit(
        train, schema=SCHEMA, task="news", task_type="summarisation"
    )
    assert model.training_["steps"] == 2 and model.training_["examples"] == 6
    assert model.training_["loss_after"] < model.training_["loss_before"]
    records = model.predict(test)
    assert [r.id for r in records] == [ex.id for ex in test]
    assert [r.gold for r in records] == [ex.label for ex in test]
    assert all(r.status in (Status.OK, Status.INVALID, Status.REFUSED) for r in records)
    assert all(r.tokens_out > 0 and r.raw_output is not None for r in records)
    for r in records:
        if r.status is Status.OK:  # the first sentence of what was generated
            assert r.predicted and len(r.predicted) <= len(r.raw_output.strip()) + 1
    metrics = TASKS.get("summarisation")().metrics(records, [], n_bootstrap=50, slice_keys=["language"])
    assert metrics["n"] == 3 and sorted(metrics["slices"]["language"]) == ["ar", "en", "hi"]
    assert 0 <= metrics["rouge2"] <= 1
    model.save(tmp_path / "model")
    info = json.loads((tmp_path / "model" / "socialens_model.json").read_text(encoding="utf-8"))
    assert info["task_type"] == "summarisation"
    loaded = load_classifier(tmp_path / "model")
    assert isinstance(loaded, InstructClassifier) and loaded.task_type == "summarisation"
    again = loaded.predict(test)
    assert [(r.predicted, r.status, r.raw_output) for r in again] == [
        (r.predicted, r.status, r.raw_output) for r in records
    ]
