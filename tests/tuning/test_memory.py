"""Answer-only logits and gradient checkpointing leave the LoRA loss as it was: the real built-in
SmolLM2-135M-Instruct, a fixed batch of three demo records of different lengths, one thread."""

from __future__ import annotations

import json
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest

from socialens.data.datasets import load_dataset, load_dataset_config
from socialens.llm.prompts import default_instruction
from socialens.tuning.instructions import chat_messages
from socialens.tuning.lora import LoraParams, encode_chat, train_lora
from socialens.tuning.memory import (
    IGNORE_INDEX,
    AnswerLogitsCollator,
    answer_cross_entropy,
    answer_positions,
    keeps_flat_mask,
    logits_to_keep,
)

BASE = "builtin:smollm2-135m-instruct"
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def records():
    raw = load_dataset(load_dataset_config("builtin:reddit-misinfo-demo"))
    examples = [ex for part in raw.splits.values() for ex in part]
    instruction = default_instruction(raw.schema)
    picked = [next(ex for ex in examples if ex.label == label) for label in raw.schema.names]
    return [
        {
            "id": ex.id,
            "label": ex.label,
            "messages": chat_messages(instruction, ex.text[: 40 + 60 * i], ex.label),
        }
        for i, ex in enumerate(picked)
    ]


@pytest.fixture(scope="module")
def lora_model(records):
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from socialens.llm.hf import model_folder

    torch.manual_seed(0)
    folder = model_folder(BASE)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "right"
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    config = LoraConfig(
        r=4, lora_alpha=8, lora_dropout=0.0, target_modules=LoraParams().modules(), task_type="CAUSAL_LM"
    )
    model = get_peft_model(model, config)
    # LoRA's B starts at zero; random B makes the adapter's gradients non-trivial to compare.
    for name, weight in model.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(weight, std=0.02)
    rows = [encode_chat(tokenizer, r["messages"], 256)[0] for r in records]
    return model, tokenizer, rows


def test_answer_positions_are_those_that_predict_an_answer_token():
    import torch

    labels = torch.tensor([[IGNORE_INDEX, IGNORE_INDEX, 7, 8], [IGNORE_INDEX, 5, IGNORE_INDEX, IGNORE_INDEX]])
    assert answer_positions(labels).tolist() == [[False, True, True, False], [True, False, False, False]]
    assert logits_to_keep(labels, flat_mask=False).tolist() == [0, 1, 2]
    assert keeps_flat_mask()  # the installed transformers (>= 5.24) flattens on a boolean mask


def _loss_and_grads(model, batch, mode: str, checkpointing: bool):
    model.zero_grad()
    # transformers >= 5.24 calls it activation checkpointing and warns at the old names
    prefix = "activation" if hasattr(model, "activation_checkpointing_enable") else "gradient"
    if checkpointing:
        getattr(model, f"{prefix}_checkpointing_enable")()
        model.enable_input_require_grads()
    else:
        getattr(model, f"{prefix}_checkpointing_disable")()
    model.train()
    labels = batch["labels"]
    inputs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
    if mode == "transformers":  # the model's own loss over full (batch, length, vocab) logits
        out = model(**inputs, labels=labels)
        loss, shape = out.loss, tuple(out.logits.shape)
    else:
        logits = model(**inputs, logits_to_keep=logits_to_keep(labels, flat_mask=mode == "flat")).logits
        loss, shape = answer_cross_entropy(logits, labels), tuple(logits.shape)
    loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}
    return float(loss.detach()), grads, shape


def test_answer_only_logits_and_checkpointing_give_the_same_loss_and_gradients(lora_model):
    model, tokenizer, rows = lora_model
    batch = AnswerLogitsCollator(tokenizer, keep_logits=False)(rows)
    lengths = batch["attention_mask"].sum(dim=1).tolist()
    assert len(set(lengths)) == 3  # padded rows, answers at different positions
    answer_tokens = int((batch["labels"][:, 1:] != IGNORE_INDEX).sum())
    reference, reference_grads, shape = _loss_and_grads(model, batch, "transformers", checkpointing=False)
    assert shape == (3, max(lengths), 49152) and 1.0 < reference < 10.0
    for mode, checkpointing in (("flat", False), ("flat", True), ("columns", False), ("columns", True)):
        loss, grads, shape = _loss_and_grads(model, batch, mode, checkpointing)
        assert abs(loss - reference) < 1e-5, (mode, checkpointing, loss, reference)
        if mode == "flat":
            assert shape == (answer_tokens, 49152)
        else:  # the columns any row needs, fewer than all
            assert shape[0] == 3 and answer_tokens / 3 <= shape[1] < max(lengths)
        for name, grad in grads.items():
            scale = float(reference_grads[name].abs().max())
            assert float((grad - reference_grads[name]).abs().max()) <= 1e-4 * scale + 1e-8, name


def test_answer_loss_with_and_without_answer_only_logits(lora_model):
    from socialens.tuning.lora import answer_loss

    model, tokenizer, rows = lora_model
    full = answer_loss(model, tokenizer, rows, answer_only=False)
    assert abs(answer_loss(model, tokenizer, rows) - full) < 1e-5


def test_training_logs_the_same_first_loss_with_the_memory_savings_off(records, tmp_path):
    """One optimizer step each way, same seed (so the same LoRA init and dropout masks): the first
    logged loss (the Trainer logs 4 decimals) agrees; a second step would not compare, Adam's
    first update is about sign(grad), so float noise in a near-zero gradient flips a weight."""
    common = dict(batch_size=3, max_length=256, num_threads=1, save_steps=1, max_steps=1, r=4)
    first_losses = []
    for name, changes in (
        ("saving", {}),
        ("plain", {"answer_only_logits": False, "gradient_checkpointing": False}),
    ):
        report = train_lora(records, BASE, tmp_path / name, LoraParams(**common, **changes))
        state = json.loads(
            (tmp_path / name / "checkpoints" / "checkpoint-1" / "trainer_state.json").read_text()
        )
        first_losses.append(next(entry["loss"] for entry in state["log_history"] if "loss" in entry))
        assert report.steps == 1
    assert abs(first_losses[0] - first_losses[1]) < 1e-5, first_losses
