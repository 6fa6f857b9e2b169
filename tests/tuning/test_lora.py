"""LoRA instruction tuning on the real built-in SmolLM2-135M-Instruct (its cached safetensors
conversion), a few steps on a dozen demo records, one torch thread."""

from __future__ import annotations

import json
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest

from socialens.core.errors import ConfigError, DataError
from socialens.data.datasets import load_dataset, load_dataset_config
from socialens.llm.base import render_plain
from socialens.llm.prompts import default_instruction
from socialens.tuning.instructions import chat_messages
from socialens.tuning.lora import (
    IGNORE_INDEX,
    LoraParams,
    check_qlora_available,
    encode_chat,
    has_chat_template,
    last_checkpoint,
    read_chat_records,
    train_lora,
)

BASE = "builtin:smollm2-135m-instruct"
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def records():
    raw = load_dataset(load_dataset_config("builtin:reddit-misinfo-demo"))
    examples = [ex for part in raw.splits.values() for ex in part]
    picked = []
    for label in raw.schema.names:
        picked += [ex for ex in examples if ex.label == label][:4]
    instruction = default_instruction(raw.schema)
    return [
        {"id": ex.id, "label": ex.label, "messages": chat_messages(instruction, ex.text, ex.label)}
        for ex in picked
    ]


@pytest.fixture(scope="module")
def tokenizer():
    from transformers import AutoTokenizer

    from socialens.llm.hf import model_folder

    return AutoTokenizer.from_pretrained(model_folder(BASE))


def small(**changes) -> LoraParams:
    base = dict(batch_size=4, max_length=200, num_threads=1, learning_rate=1e-3, save_steps=1, r=8)
    return LoraParams(**{**base, **changes})


def test_defaults_follow_llamalens():
    p = LoraParams()
    assert (p.r, p.alpha, p.dropout, p.learning_rate, p.lr_scheduler, p.epochs, p.batch_size) == (
        16,
        32,
        0.05,
        2e-4,
        "linear",
        2,
        16,
    )
    assert p.modules() == ["q_proj", "k_proj", "v_proj", "o_proj"]
    assert LoraParams(mlp=True).modules()[-3:] == ["gate_proj", "up_proj", "down_proj"]
    assert not p.qlora and not p.merge


def test_only_the_answer_is_learned(records, tokenizer):
    row, truncated = encode_chat(tokenizer, records[0]["messages"], max_length=1024)
    assert not truncated
    kept = [t for t, lab in zip(row["input_ids"], row["labels"], strict=True) if lab != IGNORE_INDEX]
    answer = tokenizer.decode(kept)
    assert answer.startswith(f"Label: {records[0]['label']}<|im_end|>")
    assert answer.strip().endswith("<|im_end|>")
    # Everything before the answer is masked: the user's text is never a target.
    first = row["labels"].index(next(lab for lab in row["labels"] if lab != IGNORE_INDEX))
    assert all(lab == IGNORE_INDEX for lab in row["labels"][:first]) and first > 50


def _answer_ids(row) -> list[int]:
    return [t for t, lab in zip(row["input_ids"], row["labels"], strict=True) if lab != IGNORE_INDEX]


@pytest.fixture(scope="module")
def long_messages(records):
    """A real instruction and answer around a long text: the twelve demo texts joined."""
    system, user, answer = records[0]["messages"]
    instruction, _ = user["content"].split("\n\nText: ", 1)
    text = " ".join(r["messages"][1]["content"].split("\n\nText: ", 1)[1] for r in records)
    return chat_messages(instruction, text, answer["content"].removeprefix("Label: "), system["content"])


def test_a_long_record_loses_the_end_of_its_text_not_its_instruction(long_messages, tokenizer):
    whole, truncated = encode_chat(tokenizer, long_messages, max_length=4096)
    assert not truncated
    system, user, _ = long_messages
    instruction, text = user["content"].split("\n\nText: ", 1)
    limit = len(whole["input_ids"]) // 2
    assert limit > 100  # the text is long enough to be cut and still keep some of it
    cut, truncated = encode_chat(tokenizer, long_messages, max_length=limit)
    assert truncated and limit - 3 <= len(cut["input_ids"]) <= limit
    decoded = tokenizer.decode(cut["input_ids"])
    assert system["content"] in decoded and f"{instruction}\n\nText: {text[:40]}" in decoded
    assert "…<|im_end|>" in decoded and text[-40:] not in decoded
    # The answer is whole and still the only thing learned.
    answer = _answer_ids(whole)
    assert tokenizer.decode(answer).startswith(
        f"Label: {long_messages[-1]['content'].removeprefix('Label: ')}<|im_end|>"
    )
    assert cut["input_ids"][-len(answer) :] == answer
    assert cut["labels"] == [IGNORE_INDEX] * (len(cut["labels"]) - len(answer)) + answer
    assert cut["attention_mask"] == [1] * len(cut["input_ids"])
    # A record that fits exactly is left as it is.
    same, truncated = encode_chat(tokenizer, long_messages, max_length=len(whole["input_ids"]))
    assert not truncated and same == whole


def test_max_length_below_the_instruction_and_answer_is_a_config_error(records, tokenizer):
    with pytest.raises(ConfigError, match=r"max_length 40 is too small .* need \d+ tokens"):
        encode_chat(tokenizer, records[0]["messages"], max_length=40)


GEMMA = "builtin:gemma3-270m"  # a base model: no chat template


@pytest.fixture(scope="module")
def gemma_tokenizer():
    from transformers import AutoTokenizer

    from socialens.llm.hf import model_folder

    return AutoTokenizer.from_pretrained(model_folder(GEMMA))


def test_a_base_model_learns_the_answer_after_the_plain_prompt_the_backend_sends(records, gemma_tokenizer):
    tok = gemma_tokenizer
    assert not has_chat_template(tok)
    messages = records[0]["messages"]
    row, truncated = encode_chat(tok, messages, max_length=1024)
    assert not truncated
    # The prompt is exactly what the hf backend encodes for generation (plain rendering, BOS added).
    prompt_ids = tok(render_plain(messages[:-1]))["input_ids"]
    assert prompt_ids[0] == tok.bos_token_id and tok.decode(prompt_ids).endswith("\n\nAnswer:")
    assert row["input_ids"][: len(prompt_ids)] == prompt_ids
    assert row["labels"][: len(prompt_ids)] == [IGNORE_INDEX] * len(prompt_ids)
    # Only " Label: <label>" and the end-of-sequence token are learned.
    answer = _answer_ids(row)
    assert answer[-1] == tok.eos_token_id and row["input_ids"][len(prompt_ids) :] == answer
    assert tok.decode(answer[:-1]) == f" Label: {records[0]['label']}"


def test_a_long_base_model_record_keeps_its_instruction_and_answer(long_messages, gemma_tokenizer):
    tok = gemma_tokenizer
    whole, _ = encode_chat(tok, long_messages, max_length=4096)
    limit = len(whole["input_ids"]) // 2
    cut, truncated = encode_chat(tok, long_messages, max_length=limit)
    assert truncated and limit - 3 <= len(cut["input_ids"]) <= limit
    decoded = tok.decode(cut["input_ids"])
    instruction = long_messages[1]["content"].split("\n\nText: ", 1)[0]
    assert instruction in decoded and "…\n\nAnswer:" in decoded
    assert _answer_ids(cut) == _answer_ids(whole)


def test_a_few_steps_lower_the_answer_loss(records, tmp_path):
    report = train_lora(records, BASE, tmp_path, small(max_steps=3, merge=True))
    assert report.steps == 3 and report.examples == 12
    assert report.truncated == 2  # the demo records take 188-211 tokens: 2 had their text cut
    assert report.loss_after < report.loss_before - 0.3, (report.loss_before, report.loss_after)
    assert [entry["step"] for entry in report.losses] == [1, 2, 3]
    assert report.examples_per_s > 0 and report.peak_rss_mb > 200
    assert (tmp_path / "adapter" / "adapter_model.safetensors").is_file()
    assert json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())["r"] == 8
    assert (tmp_path / "merged" / "config.json").is_file()
    saved = json.loads((tmp_path / "train_report.json").read_text())
    assert saved["steps"] == 3 and json.loads((tmp_path / "lora_params.json").read_text())["base"] == BASE


def test_an_interrupted_run_resumes_from_its_last_checkpoint(records, tmp_path):
    def stop_at_third_step(stage, done, total):
        if done == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_lora(records, BASE, tmp_path, small(max_steps=4), progress=stop_at_third_step)
    assert last_checkpoint(tmp_path).endswith("checkpoint-2")
    seen: list[int] = []
    report = train_lora(
        records, BASE, tmp_path, small(max_steps=4), progress=lambda s, d, t: seen.append(d), resume=True
    )
    assert report.resumed_from.endswith("checkpoint-2")
    assert seen == [3, 4] and report.steps == 4


def test_qlora_needs_bitsandbytes_and_a_gpu(records, tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA GPU is present")
    with pytest.raises(ConfigError, match="needs the bitsandbytes package and a CUDA GPU"):
        check_qlora_available()
    with pytest.raises(ConfigError, match="CUDA GPU"):
        train_lora(records, BASE, tmp_path, small(qlora=True))
    assert not (tmp_path / "adapter").exists()


def test_bad_records_name_the_file_and_line(tmp_path):
    path = tmp_path / "train.jsonl"
    good = {"messages": chat_messages("Say it.", "hi", "a")}
    path.write_text(json.dumps(good) + "\n" + json.dumps({"messages": chat_messages("Say it.", "hi")}) + "\n")
    with pytest.raises(DataError, match=r"train\.jsonl:2: .*last message must be the assistant"):
        read_chat_records(path)
    path.write_text(json.dumps(good) + "\n{oops\n")
    with pytest.raises(DataError, match=r"train\.jsonl:2: not valid JSON"):
        read_chat_records(path)
    path.write_text(json.dumps(good) + "\n")
    assert read_chat_records(path)[0]["messages"][-1]["content"] == "Label: a"
