"""Instruction sets: the label-naming check, the shipped instruction YAMLs, seeded sampling, chat
records, and generation with the real built-in SmolLM2 model."""

from __future__ import annotations

from pathlib import Path

import pytest

from socialens.core.errors import ConfigError
from socialens.core.types import Example
from socialens.data.datasets import load_dataset_config
from socialens.tuning.instructions import (
    ANSWER_PREFIX,
    DEFAULT_SYSTEM,
    InstructionSet,
    build_records,
    chat_messages,
    clean_generated,
    generate_instruction_set,
    load_instruction_set,
    missing_labels,
    sample_instruction_indices,
    write_instruction_set,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
INSTRUCTIONS = REPO_ROOT / "configs" / "instructions"
# instruction file -> the dataset YAML it pairs with
SHIPPED = {
    "tweeteval-hate.yaml": "configs/datasets/tweeteval-hate.yaml",
    "tweeteval-offensive.yaml": "configs/datasets/tweeteval-offensive.yaml",
    "ct_fan_22.yaml": "configs/datasets/ct_fan_22.yaml",
    "arsarcasm_v2-sarcasm.yaml": "configs/datasets/arsarcasm_v2-sarcasm.yaml",
    "reddit-misinfo-demo.yaml": "builtin:reddit-misinfo-demo",
}


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_chat_messages_contract():
    messages = chat_messages("Classify it as a or b.", "some text", "a")
    assert [m["role"] for m in messages] == ["system", "user", "assistant"]
    assert messages[0]["content"] == DEFAULT_SYSTEM
    assert messages[1]["content"] == "Classify it as a or b.\n\nText: some text"
    assert messages[2]["content"] == f"{ANSWER_PREFIX}a"
    assert [m["role"] for m in chat_messages("i", "t", system=None)] == ["user"]


@pytest.mark.parametrize(
    ("instruction", "labels", "missing"),
    [
        ("Answer hate or not-hate.", ["not-hate", "hate"], []),
        ("Answer not-hate if it is fine.", ["not-hate", "hate"], ["hate"]),  # not-hate does not name hate
        ("Is it hateful? Answer not-hate otherwise.", ["not-hate", "hate"], ["hate"]),  # whole words only
        ("Rate it TRUE, partially false or other.", ["false", "partially false", "true", "other"], ["false"]),
        ("Say sarcastic or NOT SARCASTIC.", ["not sarcastic", "sarcastic"], []),
        ("Nothing here.", ["belief", "debunk"], ["belief", "debunk"]),
    ],
)
def test_missing_labels(instruction, labels, missing):
    assert missing_labels(instruction, labels) == missing


@pytest.mark.parametrize(("filename", "dataset_ref"), sorted(SHIPPED.items()))
def test_shipped_instruction_sets_pair_with_their_datasets(filename, dataset_ref):
    instruction_set = load_instruction_set(INSTRUCTIONS / filename)
    config = load_dataset_config(
        dataset_ref if dataset_ref.startswith("builtin:") else REPO_ROOT / dataset_ref
    )
    assert instruction_set.dataset == config.name
    assert instruction_set.language == config.language
    assert instruction_set.labels == config.to_schema().names
    assert 10 <= len(instruction_set.instructions) <= 20
    assert len({i.casefold() for i in instruction_set.instructions}) == len(instruction_set.instructions)
    for instruction in instruction_set.instructions:
        assert missing_labels(instruction, instruction_set.labels) == []


def test_instruction_missing_a_label_is_a_one_line_error(tmp_path):
    path = _write(
        tmp_path / "bad.yaml",
        "dataset: d\ntask: hate_speech\nlabels: [not-hate, hate]\n"
        "instructions:\n  - Answer hate or not-hate.\n  - Answer not-hate when the tweet is fine.\n",
    )
    with pytest.raises(ConfigError) as info:
        load_instruction_set(path)
    message = str(info.value)
    assert "\n" not in message
    assert "bad.yaml" in message and "instructions[1]" in message and "'hate'" in message


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ("dataset: d\ntask: Hate Speech\nlabels: [a]\ninstructions: [say a]\n", "'task'"),
        ("dataset: d\ntask: t\nlabels: []\ninstructions: [say a]\n", "'labels'"),
        ("dataset: d\ntask: t\nlabels: [a]\ninstructions: [say a]\nprompt: x\n", "'prompt'"),
        ("task: t\nlabels: [a]\ninstructions: [say a]\n", "'dataset'"),
    ],
)
def test_bad_instruction_file_names_the_field(tmp_path, body, field):
    path = _write(tmp_path / "bad.yaml", body)
    with pytest.raises(ConfigError) as info:
        load_instruction_set(path)
    assert "\n" not in str(info.value)
    assert "bad.yaml" in str(info.value) and field in str(info.value)


def test_sampling_is_seeded_and_per_dataset():
    first = sample_instruction_indices(500, 15, 0, "tweeteval-hate", "train")
    assert first == sample_instruction_indices(500, 15, 0, "tweeteval-hate", "train")
    assert first != sample_instruction_indices(500, 15, 1, "tweeteval-hate", "train")
    assert first != sample_instruction_indices(500, 15, 0, "tweeteval-offensive", "train")
    assert set(first) == set(range(15))  # every instruction gets used on a few hundred examples
    assert min(first) >= 0 and max(first) < 15


def test_build_records_shape_and_gold_labels():
    instruction_set = InstructionSet(
        dataset="toy",
        task="toy_task",
        labels=["yes", "no"],
        instructions=["Say yes or no.", "Answer no or yes."],
    )
    examples = [Example(id=str(i), text=f"text {i}", label="yes" if i % 2 else "no") for i in range(6)]
    records = build_records(examples, instruction_set, language="fr", seed=3)
    assert [r["id"] for r in records] == [f"toy/{i}" for i in range(6)]
    for record, example in zip(records, examples, strict=True):
        assert set(record) == {"id", "dataset", "language", "task", "label", "instruction_index", "messages"}
        assert (record["dataset"], record["language"], record["task"]) == ("toy", "fr", "toy_task")
        instruction = instruction_set.instructions[record["instruction_index"]]
        assert record["messages"] == chat_messages(instruction, example.text, example.label)
    prompts = build_records(examples, instruction_set, language="fr", seed=3, split="test", with_answer=False)
    assert all(r["messages"][-1]["role"] == "user" for r in prompts)
    assert [r["label"] for r in prompts] == [ex.label for ex in examples]
    cut = build_records(examples, instruction_set, language="fr", seed=3, max_text_chars=4)
    assert [r["messages"][1]["content"].split("Text: ")[1] for r in cut] == ["text"] * 6


def test_records_are_trl_conversational():
    from trl.data_utils import is_conversational

    instruction_set = InstructionSet(dataset="toy", task="t", labels=["a", "b"], instructions=["Say a or b."])
    record = build_records([Example(id="1", text="x", label="a")], instruction_set, language="en", seed=0)[0]
    assert is_conversational({"messages": record["messages"]})
    assert all(set(m) == {"role", "content"} for m in record["messages"])


def test_clean_generated():
    assert clean_generated('1. Instruction: "Label it a or b."\n') == "Label it a or b."
    assert clean_generated("- Say   a\nor b") == "Say a or b"


@pytest.fixture(scope="module")
def smollm():
    pytest.importorskip("llama_cpp")
    from socialens.llm.llamacpp import LlamaCppBackend

    try:
        backend = LlamaCppBackend("builtin:smollm2-135m-instruct", n_ctx=1024, n_threads=1)
    except ConfigError as error:  # the weights package is not installed
        pytest.skip(str(error))
    yield backend
    backend.close()


DEMO_META = {
    "dataset": "reddit-misinfo-demo",
    "language": "en",
    "task": "misinformation_response",
    "task_definition": "misinformation response (belief / debunk / other)",
    "labels": ["belief", "debunk", "other"],
}


@pytest.mark.slow
def test_generation_with_real_model_keeps_only_instructions_naming_every_label(smollm, tmp_path):
    try:
        instruction_set, report = generate_instruction_set(smollm, n=8, max_tokens=60, seed=0, **DEMO_META)
    except ConfigError as error:  # a tiny model may produce nothing usable: that must be said clearly
        assert "none of the 8 generated instructions passed the check" in str(error)
        return
    assert report.requested == 8
    assert report.kept + sum(report.dropped.values()) == 8
    assert report.kept == len(instruction_set.instructions) >= 1
    for instruction in instruction_set.instructions:
        assert missing_labels(instruction, DEMO_META["labels"]) == []
    assert "generated by llamacpp:SmolLM2" in instruction_set.source
    path = write_instruction_set(
        instruction_set, tmp_path / "gen.yaml", header=f"generation: {report.to_dict()}"
    )
    assert path.read_text(encoding="utf-8").startswith("# generation: ")
    assert load_instruction_set(path) == instruction_set


@pytest.mark.slow
def test_generation_with_no_surviving_instruction_is_a_clear_error(smollm):
    # one token cannot name three labels: every answer is dropped and counted
    with pytest.raises(ConfigError) as info:
        generate_instruction_set(smollm, n=3, max_tokens=1, seed=0, **DEMO_META)
    message = str(info.value)
    assert "\n" not in message
    assert "none of the 3 generated instructions passed the check" in message
    assert "belief, debunk, other" in message


@pytest.mark.slow
def test_cli_generate_reports_a_clear_error_when_nothing_survives(smollm, tmp_path):
    from typer.testing import CliRunner

    from socialens.cli import app

    out = tmp_path / "gen.yaml"
    result = CliRunner().invoke(
        app,
        ["instruct", "generate", "builtin:reddit-misinfo-demo", "--task", "misinformation_response"]
        + ["--out", str(out), "--n", "2", "--max-tokens", "1"],
    )
    assert result.exit_code == 2
    assert "none of the 2 generated instructions passed the check" in result.output
    assert not out.exists()
