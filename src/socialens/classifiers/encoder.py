"""Any Hugging Face encoder fine-tuned with a sequence-classification head (transformers Trainer).

Speed on a CPU comes from never computing on padding: training uses dynamic padding
(DataCollatorWithPadding) with length-grouped batches, prediction sorts the texts by token length,
pads each batch only to its longest member, and restores the input order afterwards.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Literal

import numpy as np

from socialens.classifiers.base import (
    Trust,
    check_task_type,
    infer_schema,
    one_line,
    probability_records,
    read_model_info,
    weights_are_safetensors,
    write_model_info,
)
from socialens.classifiers.onnx_session import INT8_ENGINE, ONNX_DIR
from socialens.core.errors import ConfigError
from socialens.core.params import FamilyParams
from socialens.core.progress import EstimateHook, ProgressHook
from socialens.core.runtime import torch_threads
from socialens.core.types import Example, LabelSchema, PredictionRecord

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
    class_weights: Literal["balanced"] | None = "balanced"
    early_stopping_patience: int | None = 2
    group_by_length: bool = True
    num_threads: int | None = None
    verbose: bool = False


def balanced_class_weights(label_ids: list[int], num_labels: int) -> list[float]:
    """scikit-learn's 'balanced' weights, n / (k * count_c), over the k classes present;
    classes absent from training get weight 1.0 (they never occur as a target)."""
    counts = Counter(label_ids)
    n, k = len(label_ids), len(counts)
    return [n / (k * counts[c]) if counts.get(c) else 1.0 for c in range(num_labels)]


def macro_f1(gold: list[int], predicted: list[int]) -> float:
    from sklearn.metrics import f1_score

    return float(f1_score(gold, predicted, average="macro", zero_division=0))


@contextlib.contextmanager
def _quiet_transformers(verbose: bool) -> Iterator[None]:
    from transformers.utils import logging as hf_logging

    if verbose:
        yield
        return
    before = hf_logging.get_verbosity()
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(before)
        if bars:
            hf_logging.enable_progress_bar()


def _make_trainer_class():
    import torch
    from transformers import Trainer

    class WeightedTrainer(Trainer):
        """Trainer whose loss is a class-weighted cross-entropy when ``class_weights`` is set."""

        def __init__(self, *args, class_weights: list[float] | None = None, **kwargs):
            super().__init__(*args, **kwargs)
            self.class_weights = class_weights

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            if self.class_weights is None:
                return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
            labels = inputs.pop("labels")
            outputs = model(**inputs)
            logits = outputs.logits
            weight = torch.tensor(self.class_weights, dtype=logits.dtype, device=logits.device)
            loss = torch.nn.functional.cross_entropy(
                logits.view(-1, logits.size(-1)), labels.view(-1), weight=weight
            )
            return (loss, outputs) if return_outputs else loss

    return WeightedTrainer


def _progress_callback(hook: ProgressHook):
    from transformers import TrainerCallback

    class _Progress(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            hook("train", state.global_step, state.max_steps)

    return _Progress()


class EncoderClassifier:
    """Fine-tunes ``params.model`` (builtin:minilm-l6 by default) with a classification head."""

    family = "encoder"
    task_types = ("classification",)

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
        self.model_ = None
        self.tokenizer_ = None
        self.onnx_ = None  # an OnnxEncoderSession when loaded with the ONNX engine
        self.onnx_quantization_ = "dynamic"
        self.training_: dict[str, Any] = {}

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
    def _encode(self, examples: list[Example], with_labels: bool) -> list[dict[str, Any]]:
        enc = self.tokenizer_(
            [ex.text for ex in examples], truncation=True, max_length=self.params.max_length, padding=False
        )
        rows = [{key: enc[key][i] for key in enc.keys()} for i in range(len(examples))]
        if with_labels:
            for row, ex in zip(rows, examples, strict=True):
                row["labels"] = self.schema.index(ex.label)
        return rows

    def _labelled(self, examples: list[Example] | None, part: str) -> list[Example]:
        found = [ex for ex in (examples or []) if ex.label is not None]
        unknown = sorted({ex.label for ex in found} - set(self.schema.names))
        if unknown:
            raise ValueError(f"{part} labels {unknown} are not in the schema {self.schema.names}")
        return found

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
        import torch
        from transformers import (
            AutoModelForSequenceClassification,
            AutoTokenizer,
            DataCollatorWithPadding,
            EarlyStoppingCallback,
            PrinterCallback,
            TrainingArguments,
            set_seed,
        )

        from socialens.core.models import resolve_model

        p = self.params
        self.schema = schema or infer_schema(train)
        train = self._labelled(train, "training")
        dev = self._labelled(dev, "dev")
        if not train:
            raise ValueError("cannot fit encoder: no labelled training examples")
        names = self.schema.names
        path = resolve_model(p.model)
        with (
            torch_threads(p.num_threads),
            _quiet_transformers(p.verbose),
            tempfile.TemporaryDirectory() as tmp,
        ):
            set_seed(self.seed)
            try:
                self.tokenizer_ = AutoTokenizer.from_pretrained(path)
                self.model_ = AutoModelForSequenceClassification.from_pretrained(
                    path,
                    num_labels=len(names),
                    id2label=dict(enumerate(names)),
                    label2id={n: i for i, n in enumerate(names)},
                )
            except OSError as exc:  # no such hub id, no hub access, a folder without a model
                raise base_model_error(p.model, path, exc) from None
            train_rows = self._encode(train, with_labels=True)
            dev_rows = self._encode(dev, with_labels=True) if dev else None
            weights = None
            if p.class_weights == "balanced":
                weights = balanced_class_weights([r["labels"] for r in train_rows], len(names))
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
                metric_for_best_model="macro_f1" if evaluate else None,
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
                callbacks.append(_progress_callback(self.progress))
            trainer = _make_trainer_class()(
                model=self.model_,
                args=args,
                train_dataset=train_rows,
                eval_dataset=dev_rows,
                data_collator=DataCollatorWithPadding(self.tokenizer_),
                processing_class=self.tokenizer_,
                compute_metrics=_compute_metrics if evaluate else None,
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
            "best_dev_macro_f1": trainer.state.best_metric if evaluate else None,
            "dev_macro_f1_by_epoch": [
                round(log["eval_macro_f1"], 4) for log in trainer.state.log_history if "eval_macro_f1" in log
            ],
            "train_loss_by_epoch": [
                round(log["loss"], 4) for log in trainer.state.log_history if "loss" in log
            ],
            "class_weights": weights,
            "base_model": p.model,
        }
        return self

    @staticmethod
    def coverage_tokenizer(params: EncoderParams):
        """The tokenizer of ``params.model`` alone (no weights), for bench's check that it covers
        the dataset's language (socialens.classifiers.coverage)."""
        from transformers import AutoTokenizer

        from socialens.core.models import resolve_model

        with _quiet_transformers(params.verbose):
            return AutoTokenizer.from_pretrained(resolve_model(params.model), trust_remote_code=False)

    def predict_proba(self, texts: list[str]):
        """Softmax probabilities, a numpy array (len(texts), len(schema.names)) in schema order."""
        import numpy as np

        probs, _ = self._scores(texts)
        return np.array(probs, dtype=float).reshape(len(texts), len(self.schema.names))

    def _scores(self, texts: list[str]) -> tuple[list[list[float]], list[float]]:
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

    def _length_sorted(self, texts, forward, tensors):
        p = self.params
        return length_sorted_scores(
            self.tokenizer_, texts, forward, p.max_length, p.eval_batch_size, tensors, self.progress
        )

    def predict(self, examples: list[Example]) -> list[PredictionRecord]:
        self._check_fitted()
        probs, latency = self._scores([ex.text for ex in examples])
        records = probability_records(examples, self.schema.names, probs, latency)
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
        with _quiet_transformers(self.params.verbose):
            self.model_.save_pretrained(directory)
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
        from socialens.core.errors import ConfigError

        directory = Path(directory)
        info = read_model_info(directory)
        obj = cls(EncoderParams.model_validate(info["params"]), seed=info.get("seed", 0), progress=progress)
        obj.schema = LabelSchema.from_dict(info["schema"])
        obj.training_ = info.get("training", {})
        onnx_path = int8_model_path(directory)
        if engine == "onnx" and not onnx_path.is_file():
            raise ConfigError(
                f"{directory}: no {onnx_path.name}; run `socialens export onnx {directory}` first"
            )
        with _quiet_transformers(obj.params.verbose):
            obj.tokenizer_ = AutoTokenizer.from_pretrained(directory, trust_remote_code=False)
            if engine != "torch" and onnx_path.is_file():
                obj.onnx_ = OnnxEncoderSession(onnx_path, num_threads=obj.params.num_threads)
                obj.onnx_quantization_ = (info.get("onnx") or {}).get("quantization", "dynamic")
            else:
                obj.model_ = _load_torch_model(directory, trust)
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


def _load_torch_model(directory: Path, trust: Trust | None = None):
    import torch
    from transformers import AutoModelForSequenceClassification

    safe = weights_are_safetensors(directory, trust)
    model = AutoModelForSequenceClassification.from_pretrained(
        directory, use_safetensors=safe, trust_remote_code=False
    )
    if torch.cuda.is_available():
        model.to("cuda")
    return model.eval()


def length_sorted_scores(
    tokenizer,
    texts: list[str],
    forward: Callable[[Any], np.ndarray],
    max_length: int,
    batch_size: int,
    tensors: str,
    progress: ProgressHook | None = None,
) -> tuple[list[list[float]], list[float]]:
    """Tokenize once, run ``forward`` (padded batch -> probabilities) over length-sorted batches,
    each padded only to its longest member, and restore the input order. Per-text latency is its
    batch's time divided by the batch size."""
    n = len(texts)
    if n == 0:
        return [], []
    probs: list[list[float] | None] = [None] * n
    latency = [0.0] * n
    enc = tokenizer(list(texts), truncation=True, max_length=max_length, padding=False)
    keys = list(enc.keys())
    order = sorted(range(n), key=lambda i: len(enc["input_ids"][i]))
    for start in range(0, n, batch_size):
        t0 = time.perf_counter()
        idx = order[start : start + batch_size]
        batch = tokenizer.pad([{k: enc[k][i] for k in keys} for i in idx], return_tensors=tensors)
        rows = forward(dict(batch)).tolist()
        per = (time.perf_counter() - t0) / len(idx)
        for i, row in zip(idx, rows, strict=True):
            probs[i] = row
            latency[i] = per
        if progress is not None:
            progress("predict", min(start + len(idx), n), n)
    return probs, latency  # type: ignore[return-value]


def _compute_metrics(eval_pred) -> dict[str, float]:
    logits, labels = eval_pred.predictions, eval_pred.label_ids
    if isinstance(logits, tuple):
        logits = logits[0]
    predicted = logits.argmax(axis=-1).tolist()
    gold = labels.tolist()
    accuracy = sum(int(a == b) for a, b in zip(gold, predicted, strict=True)) / max(len(gold), 1)
    return {"macro_f1": macro_f1(gold, predicted), "accuracy": accuracy}


__all__ = ["EncoderClassifier", "EncoderParams", "balanced_class_weights", "macro_f1"]
