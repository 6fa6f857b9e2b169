"""LoRA (and QLoRA) instruction tuning of a causal LM on chat records, the LlamaLens recipe.

Defaults follow LlamaLens: LoRA r 16, alpha 32, dropout 0.05 on the attention projections
(q/k/v/o; ``mlp=True`` adds gate/up/down), AdamW at 2e-4 with a linear schedule, batch 16,
2 epochs. The loss covers the assistant's answer only: each record is rendered with the model's
chat template twice, once up to the assistant turn (``add_generation_prompt=True``) and once in
full; the prompt's tokens must be a prefix of the full conversation's, and they get the label
-100, so only "Label: <label><end of turn>" is learned.

A base model without a chat template (``builtin:gemma3-270m``) is trained on the plain rendering
the hf and llamacpp backends ask it in (``llm.base.render_plain``: the system and user texts, then
``Answer:``), with BOS as the tokenizer adds it; the answer follows after one space and ends in
the end-of-sequence token, so the tuned model learns to stop where generation stops: the tokens
trained on are the prompt's, as the backend encodes them, followed by ``" Label: <label>"`` and
EOS.

Output folder (``out_dir``)::

    adapter/            adapter_model.safetensors + adapter_config.json (+ the tokenizer)
    merged/             with ``merge=True``: the base with the adapter merged in, a plain HF folder
    checkpoints/        Trainer checkpoints every ``save_steps``; ``resume=True`` continues the last
    lora_params.json    the parameters and the base model reference
    train_report.json   time, examples/s, peak memory, losses

Built-in base models are GGUF files; they are trained from their cached safetensors conversion
(``socialens.llm.hf.model_folder``), the same weights the hf backend evaluates.

QLoRA (``qlora=True``) loads the base in 4-bit NF4 through bitsandbytes, which needs a CUDA GPU.

Memory: activations are recomputed in the backward (``gradient_checkpointing``) and logits are
computed only where an answer token is predicted (``answer_only_logits``, ``tuning.memory``); both
leave the loss as it is and are on by default (6.7 GB -> 2.3 GB peak RSS for SmolLM2-135M at
batch 8 x 256 tokens, docs/benchmarks.md).

Several GPUs: the transformers Trainer underneath runs data-parallel when started by a launcher,
so the same command scales out with no code change (``batch_size`` is per device)::

    accelerate launch --num_processes 4 "$(which socialens)" instruct train data/lens \\
        --base path/to/llama --out models/lens
    torchrun --nproc_per_node 4 "$(which socialens)" instruct train data/lens --out models/lens
"""

from __future__ import annotations

import itertools
import json
import logging
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from socialens.core.errors import ConfigError, DataError
from socialens.core.params import FamilyParams
from socialens.core.progress import ProgressHook
from socialens.core.runtime import quiet_transformers, torch_threads
from socialens.llm.base import ANSWER_PREFIX_PLAIN, render_plain
from socialens.llm.prompts import join_record, split_record, text_start
from socialens.tuning.memory import (
    IGNORE_INDEX,
    AnswerLogitsCollator,
    PeakMemory,
    accepts_logits_to_keep,
    answer_cross_entropy,
)

log = logging.getLogger(__name__)

# progress(stage, done, total): stage "train" counts optimizer steps

ATTENTION_MODULES = ["q_proj", "k_proj", "v_proj", "o_proj"]
MLP_MODULES = ["gate_proj", "up_proj", "down_proj"]


class LoraParams(FamilyParams):
    r: int = Field(16, ge=1)
    alpha: int = Field(32, ge=1)
    dropout: float = Field(0.05, ge=0, lt=1)
    target_modules: list[str] = Field(default_factory=lambda: list(ATTENTION_MODULES))
    mlp: bool = False  # also adapt the MLP projections
    learning_rate: float = Field(2e-4, gt=0)
    lr_scheduler: Literal["linear", "cosine", "constant"] = "linear"
    warmup_ratio: float = Field(0.0, ge=0, lt=1)
    epochs: float = Field(2, gt=0)
    max_steps: int | None = Field(None, gt=0, description="stop after this many optimizer steps")
    batch_size: int = Field(16, ge=1)
    gradient_accumulation: int = Field(1, ge=1)
    max_length: int = Field(
        512,
        ge=8,
        description="tokens per record; a longer record has its example text cut (its end), never its "
        "instruction or answer",
    )
    seed: int = 0
    qlora: bool = False
    merge: bool = False
    save_steps: int = Field(50, ge=1)
    # random: reshuffle every epoch; group_by_length: similar lengths batched together (less padding);
    # sequential: the records' own order, which is how a mix built with a shuffle strategy
    # (alphabetical / within_language / by_task / random) reaches training unchanged.
    sampling: Literal["random", "group_by_length", "sequential"] = "group_by_length"
    # Both keep the loss as it is (the same tokens, the same cross-entropy) and cut peak memory:
    # activations are recomputed layer by layer in the backward instead of all being held, and
    # logits are computed only where an answer token is predicted, not over the vocabulary at
    # every position (docs/benchmarks.md, "LoRA training memory").
    gradient_checkpointing: bool = True
    answer_only_logits: bool = True
    num_threads: int | None = Field(None, ge=1)

    def modules(self) -> list[str]:
        return list(dict.fromkeys(self.target_modules + (MLP_MODULES if self.mlp else [])))


@dataclass
class TrainReport:
    examples: int
    steps: int
    epochs: float
    train_time_s: float
    examples_per_s: float | None
    peak_rss_mb: float
    peak_gpu_mb: float | None
    losses: list[dict[str, float]] = field(default_factory=list)  # {"step", "loss"} per logged step
    loss_before: float | None = None  # answer-token loss on the first batch, before and after training
    loss_after: float | None = None
    truncated: int = 0  # records whose example text was cut to fit max_length
    resumed_from: str | None = None
    adapter_dir: str = ""
    merged_dir: str | None = None
    base: str = ""
    trainable_parameters: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# -- data ------------------------------------------------------------------------------------------


def read_chat_records(path: str | Path) -> list[dict[str, Any]]:
    """Training records from a JSONL file; a bad line is a DataError naming the file and line."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: training file not found (expected JSONL chat records)")
    records = []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(f"{path}:{number}: not valid JSON ({exc.msg})") from None
            problem = _record_problem(record)
            if problem:
                raise DataError(f"{path}:{number}: {problem}")
            records.append(record)
    if not records:
        raise DataError(f"{path}: no training records")
    return records


def _record_problem(record: Any) -> str | None:
    if not isinstance(record, dict):
        return "expected a JSON object with a 'messages' list"
    messages = record.get("messages")
    if not isinstance(messages, list) or not messages:
        return "field 'messages': expected a non-empty list of {role, content}"
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or not isinstance(message.get("content"), str):
            return f"field 'messages[{i}]': expected {{role, content}} with string content"
    if messages[-1].get("role") != "assistant":
        return "field 'messages': the last message must be the assistant's answer"
    return None


def encode_chat(
    tokenizer, messages: list[dict[str, str]], max_length: int
) -> tuple[dict[str, list[int]], bool]:
    """Token ids of a whole conversation and labels that keep only the final assistant answer
    (everything before it is -100); also whether the example text had to be shortened.

    A conversation longer than ``max_length`` tokens keeps its system message, instruction and
    answer whole: only the example text of its longest user message (``llm.prompts.text_start``:
    what follows "Text: " in the chat-record layout, else the whole message) is cut, token-wise,
    keeping its start and ending in "…". Cutting the sequence's start instead would drop the
    instruction the model is meant to learn to follow. A record that does not fit even with no example text left is a
    ConfigError: max_length is then too small for the instruction set itself, and training on
    instruction-less fragments would quietly teach the wrong thing."""
    whole = _encode_conversation(tokenizer, messages)
    if len(whole["input_ids"]) <= max_length:
        return whole, False
    index, head, text = _longest_user_text(messages)
    text_prefix = _TokenPrefixes(tokenizer, text)

    def with_text_tokens(kept: int) -> dict[str, list[int]]:
        shortened = {**messages[index], "content": head + text_prefix(kept).rstrip() + ELLIPSIS}
        return _encode_conversation(tokenizer, [*messages[:index], shortened, *messages[index + 1 :]])

    no_text = with_text_tokens(0)
    if len(no_text["input_ids"]) > max_length:
        raise ConfigError(
            f"max_length {max_length} is too small for this record: its system message, instruction "
            f"and answer alone need {len(no_text['input_ids'])} tokens; raise max_length"
        )
    # Drop as many text tokens as overflow; re-tokenizing around the cut (and the ellipsis) can
    # come out a little longer, so shrink again by whatever still overflows.
    kept = text_prefix.tokens - (len(whole["input_ids"]) - max_length)
    while kept > 0:
        row = with_text_tokens(kept)
        overflow = len(row["input_ids"]) - max_length
        if overflow <= 0:
            return row, True
        kept -= overflow
    return no_text, True


ELLIPSIS = "…"  # marks an example text cut to fit max_length


def has_chat_template(tokenizer) -> bool:
    return bool(getattr(tokenizer, "chat_template", None))


def _encode_conversation(tokenizer, messages: list[dict[str, str]]) -> dict[str, list[int]]:
    prompt, answer = split_record(messages)
    if not has_chat_template(tokenizer):
        return _encode_plain(tokenizer, prompt, answer)
    prompt_text = tokenizer.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)
    full_text = tokenizer.apply_chat_template(join_record(prompt, answer), tokenize=False)
    if not full_text.startswith(prompt_text):
        raise ConfigError(
            "the chat template renders the prompt differently with and without the answer; "
            "cannot mask the prompt tokens"
        )
    # As the hf backend does: a chat template writes its own special tokens.
    prompt_ids = tokenizer(prompt_text, add_special_tokens=False)["input_ids"]
    full_ids = tokenizer(full_text, add_special_tokens=False)["input_ids"]
    if full_ids[: len(prompt_ids)] != prompt_ids:
        raise ConfigError("the prompt's tokens are not a prefix of the conversation's; cannot mask them")
    labels = [IGNORE_INDEX] * len(prompt_ids) + full_ids[len(prompt_ids) :]
    return {"input_ids": full_ids, "attention_mask": [1] * len(full_ids), "labels": labels}


def _encode_plain(tokenizer, prompt: list[dict[str, str]], answer: str) -> dict[str, list[int]]:
    """A base model's record: the prompt exactly as the hf backend encodes it for generation
    (plain rendering, special tokens added), then the answer's own tokens and EOS. Concatenating
    ids, not re-tokenizing the joined text, keeps the prompt a prefix by construction and is what
    the model sees when it generates after the prompt."""
    if tokenizer.eos_token_id is None:
        raise ConfigError("the tokenizer has no end-of-sequence token; cannot end the answer")
    prompt_ids = tokenizer(render_plain(prompt), add_special_tokens=True)["input_ids"]
    answer_ids = tokenizer(ANSWER_PREFIX_PLAIN + answer, add_special_tokens=False)["input_ids"]
    full_ids = prompt_ids + answer_ids + [tokenizer.eos_token_id]
    labels = [IGNORE_INDEX] * len(prompt_ids) + full_ids[len(prompt_ids) :]
    return {"input_ids": full_ids, "attention_mask": [1] * len(full_ids), "labels": labels}


def _longest_user_text(messages: list[dict[str, str]]) -> tuple[int, str, str]:
    """Which user message to shorten: its index, the part kept whole (the instruction, up to and
    with "Text: ") and the example text that may be cut."""
    parts = {}
    prompt, _ = split_record(messages)
    for index, message in enumerate(prompt):
        if message.get("role") == "user":
            content = message["content"]
            split = text_start(content)
            parts[index] = (content[:split], content[split:])
    if not parts:
        raise ConfigError("a record longer than max_length has no user message whose text could be cut")
    index = max(parts, key=lambda i: len(parts[i][1]))
    return index, *parts[index]


def _encode_record(tokenizer, position: int, record: dict[str, Any], max_length: int):
    try:
        return encode_chat(tokenizer, record["messages"], max_length)
    except ConfigError as exc:
        raise ConfigError(f"training record {position} ({record.get('id', '?')}): {exc}") from None


class _TokenPrefixes:
    """The text of the first ``kept`` tokens of ``text``, cut at a token boundary of the original
    characters (offsets from a fast tokenizer; decoding as the fallback for slow ones)."""

    def __init__(self, tokenizer, text: str) -> None:
        self.text, self.tokenizer = text, tokenizer
        if getattr(tokenizer, "is_fast", False):
            encoded = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
            # running maximum: a token split inside one character repeats that character's end
            self.ends = list(itertools.accumulate((end for _, end in encoded["offset_mapping"]), max))
            self.ids = None
        else:
            self.ids = tokenizer(text, add_special_tokens=False)["input_ids"]
            self.ends = None
        self.tokens = len(self.ends if self.ends is not None else self.ids)

    def __call__(self, kept: int) -> str:
        if kept <= 0:
            return ""
        if self.ends is not None:
            return self.text[: self.ends[kept - 1]]
        return self.tokenizer.decode(self.ids[:kept])


# -- the model ------------------------------------------------------------------------------------


def check_qlora_available() -> None:
    import torch

    try:
        import bitsandbytes  # noqa: F401

        has_bnb = True
    except ImportError:
        has_bnb = False
    has_gpu = torch.cuda.is_available()
    if not (has_bnb and has_gpu):
        found = (
            f"bitsandbytes {'installed' if has_bnb else 'missing'}, CUDA GPU {'found' if has_gpu else 'none'}"
        )
        raise ConfigError(
            f"qlora=True needs the bitsandbytes package and a CUDA GPU ({found}); use qlora=False"
        )


def _load_base(base: str, params: LoraParams):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from socialens.llm.hf import model_folder

    folder = model_folder(base)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    if not has_chat_template(tokenizer):
        log.info("%s has no chat template: records are trained in the plain rendering", base)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "right"
    kwargs: dict[str, Any] = {}
    if params.qlora:
        from transformers import BitsAndBytesConfig

        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=torch.bfloat16,
        )
        kwargs["device_map"] = {"": torch.cuda.current_device()}
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32, **kwargs)
    if params.qlora:
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(model, params.gradient_checkpointing)
    return model, tokenizer


def _with_lora(model, params: LoraParams):
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(
        r=params.r,
        lora_alpha=params.alpha,
        lora_dropout=params.dropout,
        target_modules=params.modules(),
        bias="none",
        task_type="CAUSAL_LM",
    )
    return get_peft_model(model, config)


def answer_loss(model, tokenizer, rows: list[dict[str, list[int]]], *, answer_only: bool = True) -> float:
    """Mean loss over the answer tokens of ``rows`` (one padded batch, no gradient); with
    ``answer_only`` the logits are computed at the answer positions alone, as in training."""
    import torch

    collate = AnswerLogitsCollator(tokenizer, keep_logits=answer_only and accepts_logits_to_keep(model))
    batch = collate(rows)
    labels = batch.pop("labels")
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    with torch.no_grad():
        logits = model(**{k: v.to(device) for k, v in batch.items()}).logits
        loss = answer_cross_entropy(logits, labels.to(device))
    model.train(was_training)
    return float(loss)


def _callbacks(progress: ProgressHook | None):
    from transformers import TrainerCallback

    class _Progress(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            progress("train", state.global_step, state.max_steps)

    return [_Progress()] if progress is not None else []


def _trainer_loss(outputs, labels, num_items_in_batch=None):
    return answer_cross_entropy(outputs.logits, labels, num_items_in_batch)


def last_checkpoint(out_dir: str | Path) -> str | None:
    from transformers.trainer_utils import get_last_checkpoint

    folder = Path(out_dir) / "checkpoints"
    return get_last_checkpoint(str(folder)) if folder.is_dir() else None


# -- training -------------------------------------------------------------------------------------


def train_lora(
    records: Iterable[dict[str, Any]],
    base: str,
    out_dir: str | Path,
    params: LoraParams | None = None,
    progress: ProgressHook | None = None,
    *,
    resume: bool = False,
) -> TrainReport:
    """Fine-tune a LoRA adapter of ``base`` on chat records (``{"messages": [...]}`` each, the last
    one the assistant's answer) and save it under ``out_dir`` (see the module docstring)."""
    import torch
    from transformers import PrinterCallback, Trainer, TrainingArguments, set_seed

    params = params or LoraParams()
    if params.qlora:
        check_qlora_available()
    records = list(records)
    for i, record in enumerate(records):
        problem = _record_problem(record)
        if problem:
            raise DataError(
                f"training record {i} ({record.get('id', '?') if isinstance(record, dict) else '?'}): {problem}"
            )
    if not records:
        raise DataError("no training records")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    resume_from = last_checkpoint(out_dir) if resume else None
    if resume and resume_from is None:
        log.info("no checkpoint under %s/checkpoints: training from the start", out_dir)
    with torch_threads(params.num_threads), quiet_transformers(False), PeakMemory() as memory:
        set_seed(params.seed)
        model, tokenizer = _load_base(base, params)
        encoded = [_encode_record(tokenizer, i, r, params.max_length) for i, r in enumerate(records)]
        rows = [row for row, _ in encoded]
        truncated = sum(cut for _, cut in encoded)
        model = _with_lora(model, params)
        if params.gradient_checkpointing:
            # Training never reads a KV cache; left on, transformers warns at every first step.
            model.config.use_cache = False
            # transformers >= 5.24 renamed it; the old name warns there, and is all older versions have
            enable = (
                getattr(model, "activation_checkpointing_enable", None) or model.gradient_checkpointing_enable
            )
            enable()
            model.enable_input_require_grads()
        probe = rows[: min(len(rows), params.batch_size, 8)]
        answer_only = params.answer_only_logits and accepts_logits_to_keep(model)
        loss_before = answer_loss(model, tokenizer, probe, answer_only=answer_only)
        args = TrainingArguments(
            output_dir=str(out_dir / "checkpoints"),
            num_train_epochs=params.epochs,
            max_steps=params.max_steps or -1,
            per_device_train_batch_size=params.batch_size,
            gradient_accumulation_steps=params.gradient_accumulation,
            learning_rate=params.learning_rate,
            lr_scheduler_type=params.lr_scheduler,
            warmup_steps=params.warmup_ratio,
            optim="adamw_torch",
            weight_decay=0.0,
            save_strategy="steps",
            save_steps=params.save_steps,
            save_total_limit=2,
            logging_strategy="steps",
            logging_steps=1,
            report_to=[],
            disable_tqdm=True,
            seed=params.seed,
            data_seed=params.seed,
            train_sampling_strategy=params.sampling,
            bf16=params.qlora,
            dataloader_pin_memory=torch.cuda.is_available(),
        )
        trainer = Trainer(
            model=model,
            args=args,
            train_dataset=rows,
            data_collator=AnswerLogitsCollator(tokenizer, keep_logits=answer_only),
            # Our loss, not the model's: the logits it gets cover only the answer positions.
            compute_loss_func=_trainer_loss,
            processing_class=tokenizer,
            callbacks=_callbacks(progress),
        )
        trainer.remove_callback(PrinterCallback)
        start = time.perf_counter()
        trainer.train(resume_from_checkpoint=resume_from)
        seconds = time.perf_counter() - start
        loss_after = answer_loss(model, tokenizer, probe, answer_only=answer_only)
        adapter_dir = out_dir / "adapter"
        model.save_pretrained(adapter_dir)
        tokenizer.save_pretrained(adapter_dir)
        merged_dir = None
        if params.merge:
            merged_dir = out_dir / "merged"
            model.merge_and_unload().save_pretrained(merged_dir)
            tokenizer.save_pretrained(merged_dir)
    state = trainer.state
    start_step = int(Path(resume_from).name.split("-")[-1]) if resume_from else 0
    trained_steps = state.global_step - start_step
    examples_seen = trained_steps * params.batch_size * params.gradient_accumulation
    report = TrainReport(
        examples=len(records),
        steps=state.global_step,
        epochs=round(float(state.epoch or 0.0), 3),
        train_time_s=round(seconds, 3),
        examples_per_s=round(min(examples_seen, len(records) * params.epochs) / seconds, 3)
        if seconds > 0
        else None,
        peak_rss_mb=round(memory.peak_bytes / 2**20, 1),
        peak_gpu_mb=memory.peak_gpu_mb,
        losses=[
            {"step": entry["step"], "loss": round(entry["loss"], 4)}
            for entry in state.log_history
            if "loss" in entry
        ],
        loss_before=round(loss_before, 4),
        loss_after=round(loss_after, 4),
        truncated=truncated,
        resumed_from=resume_from,
        adapter_dir=str(adapter_dir),
        merged_dir=str(merged_dir) if merged_dir else None,
        base=base,
        trainable_parameters=sum(p.numel() for p in model.parameters() if p.requires_grad),
    )
    (out_dir / "lora_params.json").write_text(
        json.dumps({"base": base, **params.model_dump(mode="json")}, indent=2), encoding="utf-8"
    )
    (out_dir / "train_report.json").write_text(json.dumps(report.to_dict(), indent=2), encoding="utf-8")
    return report


__all__ = [
    "LoraParams",
    "TrainReport",
    "answer_loss",
    "check_qlora_available",
    "encode_chat",
    "has_chat_template",
    "last_checkpoint",
    "read_chat_records",
    "train_lora",
]
