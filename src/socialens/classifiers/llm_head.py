"""Family ``llm_head``: a causal LLM (the built-in SmolLM2 by default) with a sequence-classification
head, trained with LoRA (peft task SEQ_CLS; the new ``score`` head is trained in full).

No prompt, no generation, no parsing: the head reads the last token's hidden state and gives a
probability per label, so every record is ``ok`` with per-label scores, as the encoder family's.

Pooling reads the last non-pad token whatever the padding side (transformers' sequence
classification heads search from the right for the pad id); texts are padded on the right here,
Gemma's tokenizer pads on the left by default. The new head starts at zero (``head_init``): a
base model's final hidden states can be large and uneven (Gemma 3 270M: norms of 90-900 on the same
batch, against SmolLM2's 40-55), so the usual N(0, 0.02) head starts Gemma at logits near +-10
and a first loss near 10 instead of ln(#labels); at zero every model starts from uniform
probabilities and AdamW scales the head's updates itself.
Batching follows the encoder family: dynamic padding with length-grouped training batches, and
prediction sorted by token length, each batch padded only to its longest member. Only the adapter
and the head are saved; the base weights are re-read from the model reference on load.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from socialens.classifiers.base import (
    Trust,
    check_referenced_weights,
    check_task_type,
    infer_schema,
    probability_records,
    read_model_info,
    weights_are_safetensors,
    write_model_info,
)
from socialens.classifiers.hf_training import (
    balanced_class_weights,
    length_sorted_scores,
    make_trainer_class,
    progress_callback,
)
from socialens.core.errors import ConfigError
from socialens.core.params import FamilyParams
from socialens.core.progress import EstimateHook, ProgressHook
from socialens.core.runtime import quiet_transformers, torch_threads
from socialens.core.types import Example, LabelSchema, PredictionRecord
from socialens.tuning.lora import ATTENTION_MODULES, MLP_MODULES


class LLMHeadParams(FamilyParams):
    model: str = "builtin:smollm2-135m-instruct"
    lora_r: int = Field(16, ge=1)
    lora_alpha: int = Field(32, ge=1)
    lora_dropout: float = Field(0.05, ge=0, lt=1)
    target_modules: list[str] = Field(default_factory=lambda: list(ATTENTION_MODULES))
    mlp: bool = False
    epochs: float = Field(2, gt=0)
    learning_rate: float = Field(2e-4, gt=0)
    batch_size: int = Field(16, ge=1)
    eval_batch_size: int = Field(16, ge=1)
    max_length: int = Field(256, ge=8)
    warmup_ratio: float = Field(0.0, ge=0, lt=1)
    class_weights: Literal["balanced"] | None = "balanced"
    # zeros: uniform probabilities at the start (see the module docstring); normal: transformers' N(0, 0.02)
    head_init: Literal["zeros", "normal"] = "zeros"
    group_by_length: bool = True
    num_threads: int | None = Field(None, ge=1)


def _base_model(reference: str, names: list[str], head_init: str | None = None):
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from socialens.llm.hf import model_folder

    folder = model_folder(reference)
    tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=False)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    # The head reads the last non-pad token, found from the right.
    tokenizer.padding_side = "right"
    model = AutoModelForSequenceClassification.from_pretrained(
        folder,
        num_labels=len(names),
        id2label=dict(enumerate(names)),
        label2id={n: i for i, n in enumerate(names)},
        pad_token_id=tokenizer.pad_token_id,
        dtype=torch.float32,
        trust_remote_code=False,
    )
    head = getattr(model, "score", None)
    if head_init == "zeros" and head is not None:
        with torch.no_grad():
            head.weight.zero_()
            if getattr(head, "bias", None) is not None:
                head.bias.zero_()
    return model, tokenizer


class LLMHeadClassifier:
    family = "llm_head"
    task_types = ("classification",)
    Params = LLMHeadParams
    runtime = "torch"

    def __init__(
        self,
        params: LLMHeadParams | None = None,
        seed: int = 0,
        *,
        progress: ProgressHook | None = None,
        estimate: EstimateHook | None = None,
    ):
        self.params = params or LLMHeadParams()
        self.seed = seed
        self.progress = progress
        self.estimate = estimate
        self.stopped_: str | None = None
        self.task_type = "classification"
        self.schema: LabelSchema | None = None
        self.model_ = None
        self.tokenizer_ = None
        self.training_: dict[str, Any] = {}

    def _check_fitted(self) -> None:
        if self.model_ is None or self.schema is None:
            raise RuntimeError("LLMHeadClassifier is not fitted: call fit() or load() first")

    def fit(
        self,
        train: list[Example],
        dev: list[Example] | None = None,
        *,
        schema: LabelSchema | None = None,
        task: str = "",
        task_type: str = "classification",
    ) -> LLMHeadClassifier:
        self.task_type = check_task_type(self, task_type)
        import torch
        from peft import LoraConfig, get_peft_model
        from transformers import DataCollatorWithPadding, PrinterCallback, TrainingArguments, set_seed

        from socialens.tuning.memory import PeakMemory

        p = self.params
        self.schema = schema or infer_schema(train)
        train = [ex for ex in train if ex.label is not None]
        unknown = sorted({ex.label for ex in train} - set(self.schema.names))
        if unknown:
            raise ValueError(f"training labels {unknown} are not in the schema {self.schema.names}")
        if not train:
            raise ValueError("cannot fit llm_head: no labelled training examples")
        names = self.schema.names
        with (
            torch_threads(p.num_threads),
            quiet_transformers(False),
            tempfile.TemporaryDirectory() as tmp,
            PeakMemory() as memory,
        ):
            set_seed(self.seed)
            model, self.tokenizer_ = _base_model(p.model, names, p.head_init)
            config = LoraConfig(
                r=p.lora_r,
                lora_alpha=p.lora_alpha,
                lora_dropout=p.lora_dropout,
                target_modules=list(dict.fromkeys(p.target_modules + (MLP_MODULES if p.mlp else []))),
                task_type="SEQ_CLS",
                modules_to_save=["score"],
            )
            model = get_peft_model(model, config)
            enc = self.tokenizer_([ex.text for ex in train], truncation=True, max_length=p.max_length)
            rows = [
                {"input_ids": ids, "attention_mask": mask, "labels": self.schema.index(ex.label)}
                for ids, mask, ex in zip(enc["input_ids"], enc["attention_mask"], train, strict=True)
            ]
            weights = None
            if p.class_weights == "balanced":
                weights = balanced_class_weights([r["labels"] for r in rows], len(names))
            args = TrainingArguments(
                output_dir=tmp,
                num_train_epochs=p.epochs,
                learning_rate=p.learning_rate,
                lr_scheduler_type="linear",
                warmup_steps=p.warmup_ratio,
                per_device_train_batch_size=p.batch_size,
                train_sampling_strategy="group_by_length" if p.group_by_length else "random",
                save_strategy="no",
                logging_strategy="epoch",
                report_to=[],
                disable_tqdm=True,
                seed=self.seed,
                data_seed=self.seed,
                dataloader_pin_memory=torch.cuda.is_available(),
            )
            trainer = make_trainer_class()(
                model=model,
                args=args,
                train_dataset=rows,
                data_collator=DataCollatorWithPadding(self.tokenizer_),
                processing_class=self.tokenizer_,
                callbacks=[progress_callback(self.progress)] if self.progress is not None else [],
                class_weights=weights,
            )
            trainer.remove_callback(PrinterCallback)
            start = time.perf_counter()
            trainer.train()
            seconds = time.perf_counter() - start
        self.model_ = trainer.model
        self.model_.eval()
        epochs_run = float(trainer.state.epoch or 0.0)
        self.training_ = {
            "train_examples": len(train),
            "train_time_s": round(seconds, 3),
            "train_examples_per_s": round(len(train) * epochs_run / seconds, 3) if seconds > 0 else None,
            "peak_rss_mb": round(memory.peak_bytes / 2**20, 1),
            "peak_gpu_mb": memory.peak_gpu_mb,
            "epochs_run": round(epochs_run, 3),
            "train_loss_by_epoch": [
                round(log["loss"], 4) for log in trainer.state.log_history if "loss" in log
            ],
            "class_weights": weights,
            "base_model": p.model,
        }
        return self

    def _scores(self, texts: list[str]) -> tuple[list[list[float]], list[float]]:
        import torch

        self._check_fitted()
        p = self.params
        device = next(self.model_.parameters()).device

        def forward(batch):
            logits = self.model_(**{k: v.to(device) for k, v in batch.items()}).logits
            return torch.softmax(logits.float(), dim=-1).cpu().numpy()

        with torch_threads(p.num_threads), torch.inference_mode():
            return length_sorted_scores(
                self.tokenizer_, texts, forward, p.max_length, p.eval_batch_size, "pt", self.progress
            )

    def predict_proba(self, texts: list[str]):
        import numpy as np

        probs, _ = self._scores(texts)
        return np.array(probs, dtype=float).reshape(len(texts), len(self.schema.names))

    def predict(self, examples: list[Example]) -> list[PredictionRecord]:
        self._check_fitted()
        probs, latency = self._scores([ex.text for ex in examples])
        return probability_records(examples, self.schema.names, probs, latency)

    def save(self, directory: str | Path) -> None:
        self._check_fitted()
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.model_.save_pretrained(directory)  # the adapter and the score head
        self.tokenizer_.save_pretrained(directory)
        write_model_info(
            directory,
            self.family,
            self.schema,
            self.params,
            extra={"seed": self.seed, "training": self.training_},
        )

    @classmethod
    def load(
        cls, directory: str | Path, *, trust: Trust | None = None, progress: ProgressHook | None = None
    ) -> LLMHeadClassifier:
        """Load the adapter and head (safetensors only, unless ``trust.pickle`` allows a pickled
        ``adapter_model.bin``) on top of the base model the directory names."""
        import torch
        from peft import PeftModel

        directory = Path(directory)
        info = read_model_info(directory)
        if not (directory / "adapter_config.json").is_file():
            raise ConfigError(f"{directory}: missing adapter_config.json (the LoRA adapter and head)")
        weights_are_safetensors(directory, trust)
        obj = cls(LLMHeadParams.model_validate(info["params"]), seed=info.get("seed", 0), progress=progress)
        check_referenced_weights(obj.params.model, trust)
        obj.schema = LabelSchema.from_dict(info["schema"])
        obj.training_ = info.get("training", {})
        with quiet_transformers(False):
            model, obj.tokenizer_ = _base_model(obj.params.model, obj.schema.names)
            obj.model_ = PeftModel.from_pretrained(model, directory)
        if torch.cuda.is_available():
            obj.model_.to("cuda")
        obj.model_.eval()
        return obj


__all__ = ["LLMHeadClassifier", "LLMHeadParams"]
