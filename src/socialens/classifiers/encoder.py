"""Any Hugging Face encoder fine-tuned with a sequence-classification head (transformers Trainer),
or with a token-classification head (named entities) or a sigmoid multi-label head.

Speed on a CPU comes from never computing on padding: training uses dynamic padding
(DataCollatorWithPadding, DataCollatorForTokenClassification) with length-grouped batches,
prediction sorts the texts by token length, pads each batch only to its longest member, and
restores the input order afterwards. What depends on the task type (targets, dev metric, records)
is the head's (classifiers/encoder_heads.py, classifiers/encoder_tokens.py).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Literal

import numpy as np

from socialens.classifiers.base import (
    Trust,
    check_task_type,
    one_line,
    read_model_info,
    weights_are_safetensors,
    write_model_info,
)
from socialens.classifiers.encoder_heads import ClassificationHead, EncoderHead, MultilabelHead
from socialens.classifiers.encoder_tokens import TokenHead
from socialens.classifiers.hf_training import (
    balanced_class_weights,
    length_sorted_outputs,
    length_sorted_scores,
    macro_f1,
    make_trainer_class,
    progress_callback,
)
from socialens.classifiers.onnx_session import INT8_ENGINE, ONNX_DIR
from socialens.core.errors import ConfigError
from socialens.core.params import FamilyParams
from socialens.core.progress import EstimateHook, ProgressHook
from socialens.core.runtime import quiet_transformers, torch_threads
from socialens.core.types import Example, LabelSchema, PredictionRecord

HEADS: dict[str, type[EncoderHead]] = {
    head.task_type: head for head in (ClassificationHead, TokenHead, MultilabelHead)
}

# progress(stage, done, total): stage is "train" (optimizer steps) or "predict" (examples)
# "auto": the int8 ONNX model when the directory has one (socialens export onnx), else torch
Engine = Literal["auto", "torch", "onnx"]


class EncoderParams(FamilyParams):
    model: str = "builtin:minilm-l6"
    epochs: float = 4
    learning_rate: float = 1e-4
    batch_size: int = 16
    # small sub-batches of length-sorted texts: on a CPU, 4-8 texts per forward pass ran 2-2.4x
    # faster per text than 64 (ONNX int8 and torch alike; docs/benchmarks.md, HTTP serving)
    eval_batch_size: int = 8
    max_length: int = 128
    weight_decay: float = 0.01
    warmup_ratio: float = 0.1
    # classification only: the token and multilabel heads use the model's own loss
    # (classifiers/encoder_heads.py says why)
    class_weights: Literal["balanced"] | None = "balanced"
    early_stopping_patience: int | None = 2
    group_by_length: bool = True
    num_threads: int | None = None
    verbose: bool = False


class EncoderClassifier:
    """Fine-tunes ``params.model`` (builtin:minilm-l6 by default) with a classification head."""

    family = "encoder"
    task_types = ("classification", "token_classification", "multilabel")

    Params = EncoderParams

    def __init__(
        self,
        params: EncoderParams | None = None,
        seed: int = 0,
        *,
        progress: ProgressHook | None = None,
        estimate: EstimateHook | None = None,
    ):
        self.params = params or EncoderParams()
        self.seed = seed
        self.progress = progress
        self.estimate = estimate
        self.stopped_: str | None = None
        self.task_type = "classification"
        self.schema: LabelSchema | None = None
        self.head_: EncoderHead | None = None
        self.model_ = None
        self.tokenizer_ = None
        self.onnx_ = None  # an OnnxEncoderSession when loaded with the ONNX engine
        self.onnx_quantization_ = "dynamic"
        self.training_: dict[str, Any] = {}

    @property
    def head(self) -> EncoderHead | None:
        """The task type's head (a classifier put together by hand, with a schema but without a
        head, gets the one of its task type, classification by default)."""
        if self.head_ is None and self.schema is not None:
            self.head_ = HEADS[self.task_type](self.schema)
        return self.head_

    @property
    def engine(self) -> str:
        return INT8_ENGINE if self.onnx_ is not None else "torch"

    @property
    def runtime(self) -> str:
        """What runs the model: torch, or onnx-int8-dynamic / onnx-int8-blockwise (the scheme
        `export onnx` chose; an export from before blockwise existed was dynamic)."""
        return f"{INT8_ENGINE}-{self.onnx_quantization_}" if self.onnx_ is not None else "torch"

    def set_num_threads(self, threads: int | None) -> None:
        """CPU threads for prediction from now on, for whichever engine is loaded (a server pins
        its one inference thread's share of the cores)."""
        self.params.num_threads = threads
        if self.onnx_ is not None and self.onnx_.num_threads != threads:
            from socialens.classifiers.onnx_session import OnnxEncoderSession

            self.onnx_ = OnnxEncoderSession(self.onnx_.path, num_threads=threads)

    # -- helpers --------------------------------------------------------------------------------
    def _check_fitted(self) -> None:
        if (self.model_ is None and self.onnx_ is None) or self.tokenizer_ is None or self.schema is None:
            raise RuntimeError("EncoderClassifier is not fitted: call fit() or load() first")

    # -- protocol -------------------------------------------------------------------------------
    def fit(
        self,
        train: list[Example],
        dev: list[Example] | None = None,
        *,
        schema: LabelSchema | None = None,
        task: str = "",
        task_type: str = "classification",
    ) -> EncoderClassifier:
        self.task_type = check_task_type(self, task_type)
        p = self.params
        head_class = HEADS[self.task_type]
        self.schema = schema or head_class.infer_schema(train)
        head = self.head_ = head_class(self.schema)
        train = head.labelled(train, "training")
        dev = head.labelled(dev, "dev")
        if not train:
            raise ValueError("cannot fit encoder: no labelled training examples")
        import torch
        from transformers import (
            AutoTokenizer,
            EarlyStoppingCallback,
            PrinterCallback,
            TrainingArguments,
            set_seed,
        )

        from socialens.core.models import resolve_model

        path = resolve_model(p.model)
        metric = head.metric
        with (
            torch_threads(p.num_threads),
            quiet_transformers(p.verbose),
            tempfile.TemporaryDirectory() as tmp,
        ):
            set_seed(self.seed)
            try:
                self.tokenizer_ = AutoTokenizer.from_pretrained(path)
                self.model_ = head.model_class().from_pretrained(path, **head.config_kwargs())
            except OSError as exc:  # no such hub id, no hub access, a folder without a model
                raise base_model_error(p.model, path, exc) from None
            train_rows = head.encode(self.tokenizer_, train, p.max_length, with_labels=True)
            dev_rows = head.encode(self.tokenizer_, dev, p.max_length, with_labels=True) if dev else None
            weights = head.class_weights(train_rows, p)
            evaluate = dev_rows is not None
            args = TrainingArguments(
                output_dir=tmp,
                num_train_epochs=p.epochs,
                learning_rate=p.learning_rate,
                per_device_train_batch_size=p.batch_size,
                per_device_eval_batch_size=p.eval_batch_size,
                weight_decay=p.weight_decay,
                warmup_steps=p.warmup_ratio,
                train_sampling_strategy="group_by_length" if p.group_by_length else "random",
                eval_strategy="epoch" if evaluate else "no",
                save_strategy="epoch" if evaluate else "no",
                save_only_model=True,
                save_total_limit=1,
                load_best_model_at_end=evaluate,
                metric_for_best_model=metric if evaluate else None,
                greater_is_better=True,
                logging_strategy="epoch",
                report_to=[],
                disable_tqdm=not p.verbose,
                seed=self.seed,
                data_seed=self.seed,
                dataloader_pin_memory=torch.cuda.is_available(),
            )
            callbacks = []
            if evaluate and p.early_stopping_patience:
                callbacks.append(EarlyStoppingCallback(early_stopping_patience=p.early_stopping_patience))
            if self.progress is not None:
                callbacks.append(progress_callback(self.progress))
            trainer = make_trainer_class()(
                model=self.model_,
                args=args,
                train_dataset=train_rows,
                eval_dataset=dev_rows,
                data_collator=head.collator(self.tokenizer_),
                processing_class=self.tokenizer_,
                compute_metrics=head.compute_metrics if evaluate else None,
                callbacks=callbacks,
                class_weights=weights,
            )
            if not p.verbose:
                trainer.remove_callback(PrinterCallback)
            start = time.perf_counter()
            trainer.train()
            seconds = time.perf_counter() - start
            self.model_ = trainer.model
        self.model_.eval()
        epochs_run = float(trainer.state.epoch or 0.0)
        self.training_ = {
            "train_examples": len(train),
            "dev_examples": len(dev),
            "train_time_s": round(seconds, 3),
            "train_examples_per_s": round(len(train) * epochs_run / seconds, 2) if seconds > 0 else None,
            "epochs_run": round(epochs_run, 3),
            f"best_dev_{metric}": trainer.state.best_metric if evaluate else None,
            f"dev_{metric}_by_epoch": [
                round(log[f"eval_{metric}"], 4)
                for log in trainer.state.log_history
                if f"eval_{metric}" in log
            ],
            "train_loss_by_epoch": [
                round(log["loss"], 4) for log in trainer.state.log_history if "loss" in log
            ],
            "class_weights": weights,
            "base_model": p.model,
        }
        self.training_.update(head.tune(self, dev))
        return self

    @staticmethod
    def coverage_tokenizer(params: EncoderParams):
        """The tokenizer of ``params.model`` alone (no weights), for bench's check that it covers
        the dataset's language (socialens.classifiers.coverage)."""
        from transformers import AutoTokenizer

        from socialens.core.models import resolve_model

        with quiet_transformers(params.verbose):
            return AutoTokenizer.from_pretrained(resolve_model(params.model), trust_remote_code=False)

    def predict_proba(self, texts: list[str]):
        """Per-label probabilities, a numpy array (len(texts), len(schema.names)) in schema order:
        softmax for classification, sigmoid for multilabel (not for token classification)."""
        self._check_fitted()
        if isinstance(self.head, MultilabelHead):
            return self.head.probabilities(self, list(texts))[0]
        if isinstance(self.head, TokenHead):
            raise ConfigError("predict_proba: a token-classification encoder has no per-text probabilities")
        probs, _ = self.scores(texts)
        return np.array(probs, dtype=float).reshape(len(texts), len(self.schema.names))

    def scores(self, texts: list[str]) -> tuple[list[list[float]], list[float]]:
        """Softmax probabilities (schema order) for ``texts`` in input order, and per-text latency
        (its batch's time divided by the batch size)."""
        self._check_fitted()
        if self.onnx_ is not None:
            return self._length_sorted(texts, self.onnx_.probabilities, "np")
        import torch

        device = next(self.model_.parameters()).device

        def forward(batch) -> np.ndarray:
            logits = self.model_(**{k: v.to(device) for k, v in batch.items()}).logits
            return torch.softmax(logits.float(), dim=-1).cpu().numpy()

        with torch_threads(self.params.num_threads), torch.inference_mode():
            return self._length_sorted(texts, forward, "pt")

    _scores = scores

    def _length_sorted(self, texts, forward, tensors):
        p = self.params
        return length_sorted_scores(
            self.tokenizer_, texts, forward, p.max_length, p.eval_batch_size, tensors, self.progress
        )

    def tokenize_texts(self, texts: list[str]):
        """``texts`` tokenized as the model reads them (truncated to max_length, unpadded)."""
        return self.tokenizer_(list(texts), truncation=True, max_length=self.params.max_length, padding=False)

    def logit_rows(self, encoded, *, per_token: bool = False) -> tuple[list[np.ndarray], list[float]]:
        """Logits (float32 numpy) of each tokenized input in input order, through whichever engine
        is loaded, in length-sorted batches; ``per_token``: one row per sub-token, padding cut off."""
        self._check_fitted()
        p = self.params
        if not len(encoded["input_ids"]):
            return [], []
        if self.onnx_ is not None:
            return length_sorted_outputs(
                self.tokenizer_,
                encoded,
                self.onnx_.logits,
                p.eval_batch_size,
                "np",
                self.progress,
                per_token=per_token,
            )
        import torch

        device = next(self.model_.parameters()).device

        def forward(batch) -> np.ndarray:
            return self.model_(**{k: v.to(device) for k, v in batch.items()}).logits.float().cpu().numpy()

        with torch_threads(p.num_threads), torch.inference_mode():
            return length_sorted_outputs(
                self.tokenizer_, encoded, forward, p.eval_batch_size, "pt", self.progress, per_token=per_token
            )

    def predict(self, examples: list[Example]) -> list[PredictionRecord]:
        self._check_fitted()
        if not examples:
            return []
        records = self.head.predict(self, examples)
        if self.onnx_ is not None:  # torch is the default engine: its records stay untagged
            for record in records:
                record.metadata["engine"] = self.engine
        return records

    def save(self, directory: str | Path) -> None:
        self._check_fitted()
        if self.model_ is None:
            raise RuntimeError(
                "this encoder was loaded with the ONNX engine; load it with engine='torch' to save"
            )
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        # an ONNX export of earlier weights in this folder would be picked up by load(): drop it
        shutil.rmtree(directory / ONNX_DIR, ignore_errors=True)
        with quiet_transformers(self.params.verbose):
            self.model_.save_pretrained(directory)
            self.tokenizer_.save_pretrained(directory)
        # task_type (absent for classification) leads, then seed and training, then the head's
        # own fields (tags, threshold)
        head = self.head.info()
        task = {"task_type": head.pop("task_type")} if "task_type" in head else {}
        write_model_info(
            directory,
            self.family,
            self.schema,
            self.params,
            extra={**task, "seed": self.seed, "training": self.training_, **head},
        )

    @classmethod
    def load(
        cls,
        directory: str | Path,
        *,
        trust: Trust | None = None,
        progress: ProgressHook | None = None,
        engine: Engine = "auto",
    ) -> EncoderClassifier:
        """Load a saved encoder. With engine "auto" it predicts through onnxruntime when the
        directory holds ``onnx/model_int8.onnx`` and through torch otherwise. Weights load from
        safetensors only, unless ``trust.pickle`` allows a pickled ``pytorch_model.bin``; no code
        from the directory runs (``trust_remote_code=False``)."""
        from transformers import AutoTokenizer

        from socialens.classifiers.onnx_session import OnnxEncoderSession, int8_model_path

        directory = Path(directory)
        info = read_model_info(directory)
        obj = cls(EncoderParams.model_validate(info["params"]), seed=info.get("seed", 0), progress=progress)
        obj.schema = LabelSchema.from_dict(info["schema"])
        task_type = info.get("task_type", "classification")
        if task_type not in HEADS:
            raise ConfigError(
                f"{directory}: field 'task_type' is {task_type!r}; expected one of {', '.join(HEADS)}"
            )
        obj.task_type = task_type
        obj.head_ = HEADS[task_type].from_info(obj.schema, info)
        obj.training_ = info.get("training", {})
        onnx_path = int8_model_path(directory)
        if engine == "onnx" and not onnx_path.is_file():
            raise ConfigError(
                f"{directory}: no {onnx_path.name}; run `socialens export onnx {directory}` first"
            )
        with quiet_transformers(obj.params.verbose):
            obj.tokenizer_ = AutoTokenizer.from_pretrained(directory, trust_remote_code=False)
            if engine != "torch" and onnx_path.is_file():
                obj.onnx_ = OnnxEncoderSession(onnx_path, num_threads=obj.params.num_threads)
                obj.onnx_quantization_ = (info.get("onnx") or {}).get("quantization", "dynamic")
            else:
                obj.model_ = load_torch_model(directory, trust, obj.head_.model_class())
        return obj


def base_model_error(ref: str, resolved: str, exc: OSError) -> ConfigError:
    """One line for a base model that cannot be loaded, saying where it was looked for."""
    reason = one_line(exc, 160)
    if Path(resolved).exists():
        return ConfigError(
            f"model '{ref}': cannot load the model at {resolved} ({reason}); expected a model folder"
        )
    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on"):
        where = "not in the local Hugging Face cache, and HF_HUB_OFFLINE=1 keeps the hub off"
    else:
        where = f"and the Hugging Face hub did not provide it ({reason})"
    return ConfigError(
        f"model '{ref}': not a built-in, not a local folder, {where}; expected builtin:<name> "
        "(`socialens models` lists them), a local model folder, or a hub id with hub access"
    )


def load_torch_model(directory: Path, trust: Trust | None = None, model_class=None):
    """The torch model of a saved encoder directory (safetensors unless ``trust.pickle``), on the
    GPU when there is one, in eval mode; ``model_class`` defaults to a sequence classifier."""
    import torch

    if model_class is None:
        from transformers import AutoModelForSequenceClassification as model_class

    safe = weights_are_safetensors(directory, trust)
    model = model_class.from_pretrained(directory, use_safetensors=safe, trust_remote_code=False)
    if torch.cuda.is_available():
        model.to("cuda")
    return model.eval()


__all__ = [
    "HEADS",
    "EncoderClassifier",
    "EncoderParams",
    "balanced_class_weights",
    "base_model_error",
    "load_torch_model",
    "macro_f1",
]
