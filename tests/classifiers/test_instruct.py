"""The instruct family on the real built-in SmolLM2-135M-Instruct: a LoRA adapter trained for a
few steps on a dozen demo examples, evaluated through the prompted-LLM machinery."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest

from socialens.classifiers.base import REGISTRY, get_family, load_classifier
from socialens.classifiers.instruct import (
    InstructClassifier,
    InstructParams,
    chat_records,
    load_instructions,
    write_trained_model_info,
)
from socialens.classifiers.prompted import PromptedClassifier, PromptedParams
from socialens.core.errors import ConfigError
from socialens.core.types import Status
from socialens.data.datasets import load_dataset, load_dataset_config
from socialens.llm.prompts import default_instruction
from socialens.tuning.lora import LoraParams

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


def tiny_params(**changes) -> InstructParams:
    lora = LoraParams(max_steps=2, batch_size=4, max_length=256, num_threads=1, learning_rate=1e-3, r=8)
    values = dict(lora=lora, max_tokens=8, eval_batch_size=6, threads=1, decoding="generate")
    return InstructParams(**{**values, **changes})


@pytest.fixture(scope="module")
def fitted(demo):
    schema, train, _ = demo
    return InstructClassifier(tiny_params(), seed=0).fit(train, schema=schema, task="misinformation response")


def test_registered():
    assert get_family("instruct") is InstructClassifier and REGISTRY["instruct"] is InstructClassifier


def test_default_instruction_names_every_label(demo):
    schema, _, _ = demo
    text = default_instruction(schema, "misinformation response")
    assert text.startswith("misinformation response")
    assert all(f"- {name}:" in text for name in schema.names)


def test_training_records_sample_instructions(demo):
    schema, train, _ = demo
    records = chat_records(train, ["First {x}.", "Second."], seed=3, system=None, max_chars=None)
    assert len(records) == 12 and {r["instruction_index"] for r in records} == {0, 1}
    assert records[0]["messages"][-1] == {"role": "assistant", "content": f"Label: {train[0].label}"}


def test_instructions_from_a_file(tmp_path):
    path = tmp_path / "set.yaml"
    path.write_text("dataset: d\ninstructions:\n  - Say belief or debunk.\n  - Label it.\n")
    assert load_instructions(str(path)) == ["Say belief or debunk.", "Label it."]
    with pytest.raises(ConfigError, match="instructions file not found"):
        load_instructions(str(tmp_path / "missing.txt"))


def test_tuned_and_untuned_are_asked_the_same_prompt(demo, fitted):
    schema, _, test = demo
    untuned = PromptedClassifier(
        PromptedParams(backend="hf", prompt="instruction", max_text_chars=1000, cache=False)
    ).fit([], schema=schema, task="misinformation response")
    assert untuned.prompts(test) == fitted.evaluator.prompts(test)
    assert fitted.evaluator.builder.choices() == [f"Label: {name}" for name in schema.names]
    assert fitted.evaluator.params.adapter == str(fitted.adapter_dir)


def test_fit_predict_save_load_identical(demo, fitted, tmp_path):
    _, _, test = demo
    assert fitted.training_["steps"] == 2 and fitted.training_["loss_after"] < fitted.training_["loss_before"]
    records = fitted.predict(test)
    assert [r.id for r in records] == [ex.id for ex in test]
    assert all(r.status in (Status.OK, Status.INVALID, Status.REFUSED) for r in records)
    assert all(r.tokens_out > 0 and r.raw_output is not None for r in records)
    fitted.save(tmp_path / "model")
    assert (tmp_path / "model" / "adapter" / "adapter_model.safetensors").is_file()
    loaded = load_classifier(tmp_path / "model")
    assert isinstance(loaded, InstructClassifier) and loaded.instructions == fitted.instructions
    again = loaded.predict(test)
    assert [(r.predicted, r.status, r.raw_output) for r in again] == [
        (r.predicted, r.status, r.raw_output) for r in records
    ]
    # A trained folder as `model:` skips training and predicts the same.
    reused = InstructClassifier(tiny_params(model=str(tmp_path / "model"))).fit(
        [], schema=fitted.schema, task="misinformation response"
    )
    assert reused.training_ == {} and [r.raw_output for r in reused.predict(test)] == [
        r.raw_output for r in records
    ]


def test_a_folder_from_instruct_train_loads_as_a_model(demo, fitted, tmp_path):
    schema, train, test = demo
    records = [
        {"dataset": "demo", **r}
        for r in chat_records(train, fitted.instructions, seed=0, system=None, max_chars=None)
    ]
    folder = tmp_path / "lens"
    folder.mkdir()
    (folder / "adapter").symlink_to(fitted.adapter_dir, target_is_directory=True)
    assert write_trained_model_info(folder, records, "builtin:smollm2-135m-instruct", LoraParams())
    loaded = load_classifier(folder)
    assert sorted(loaded.schema.names) == sorted(schema.names)
    assert loaded.instructions == fitted.instructions
    assert loaded.evaluator.prompts(test) == fitted.evaluator.prompts(test)
    assert not write_trained_model_info(
        folder, [{**r, "dataset": i % 2} for i, r in enumerate(records)], "x", LoraParams()
    )


def test_a_base_model_without_a_chat_template_is_tuned_and_asked_in_plain_text(demo):
    """Gemma 3 270M (base, no chat template): trained on the plain rendering, then scored after the
    same plain prompt by the hf backend; an untuned prompted Gemma is asked the same."""
    schema, train, test = demo
    lora = LoraParams(max_steps=1, batch_size=4, max_length=200, num_threads=1, learning_rate=1e-3, r=4)
    params = InstructParams(
        model="builtin:gemma3-270m", lora=lora, decoding="scored", max_text_chars=120, threads=1
    )
    fitted = InstructClassifier(params, seed=0).fit(train[::3], schema=schema)
    assert fitted.training_["steps"] == 1 and fitted.training_["loss_after"] < fitted.training_["loss_before"]
    backend = getattr(
        fitted.evaluator.backend, "backend", fitted.evaluator.backend
    )  # under the cache wrapper
    assert not backend.has_chat_template
    prompt = fitted.evaluator.prompts(test[:1])[0]
    assert backend.render(prompt).endswith("\n\nAnswer:")
    untuned = PromptedClassifier(
        PromptedParams(backend="hf", model="builtin:gemma3-270m", prompt="instruction", max_text_chars=120)
    ).fit([], schema=schema)
    assert untuned.prompts(test[:1]) == [prompt]
    (record,) = fitted.predict(test[:1])
    assert record.status is Status.OK and record.predicted in schema.names
    assert abs(sum(record.scores.values()) - 1) < 1e-5
