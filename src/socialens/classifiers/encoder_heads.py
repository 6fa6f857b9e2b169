"""What the encoder family does differently per task type: its head, targets, dev metric and records.

``EncoderClassifier`` (classifiers/encoder.py) owns the model, the tokenizer, training and the
torch / ONNX engines; a head owns what depends on the target:

- ``ClassificationHead``: one label per text, softmax, early stopping on dev macro-F1;
- ``MultilabelHead``: a list of labels per text, a sigmoid head
  (``problem_type="multi_label_classification"``, float multi-hot targets, BCE loss), early
  stopping on dev micro-F1 at 0.5, then one global threshold tuned on dev (the grid value with
  the best dev micro-F1, the one nearest 0.5 on ties; 0.5 without dev);
- ``TokenHead`` (classifiers/encoder_tokens.py): IOB2 tags per word.

Class weights: ``class_weights="balanced"`` weights classification's cross-entropy as before; the
multilabel and token heads train on the model's own unweighted loss (BCE; cross-entropy over
first sub-tokens, as the published fine-tuned NER baselines do), and say so in a warning when
the parameter was set explicitly. The dev-tuned threshold is multilabel's answer to imbalance.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np

from socialens.classifiers.base import infer_schema, probability_records
from socialens.classifiers.hf_training import balanced_class_weights, macro_f1, sigmoid
from socialens.core.errors import DataError
from socialens.core.params import FamilyParams
from socialens.core.types import Example, LabelSchema, PredictionRecord, Status

log = logging.getLogger(__name__)

# thresholds a multilabel head tries on dev
THRESHOLD_GRID = tuple(round(0.05 * i, 2) for i in range(1, 20))
DEFAULT_THRESHOLD = 0.5


class EncoderHead:
    """The per-task part of the encoder family (see the module docstring). Methods that take
    ``clf`` get the EncoderClassifier itself (its tokenizer, params and engines: ``scores``,
    ``tokenize_texts``, ``logit_rows``); this module does not import it, so no import circle."""

    task_type: ClassVar[str]
    metric: ClassVar[str]  # the dev metric early stopping follows (training summary keys use it)
    auto_model: ClassVar[str] = "AutoModelForSequenceClassification"
    per_token: ClassVar[bool] = False  # one output row per sub-token, not per text

    def __init__(self, schema: LabelSchema):
        self.schema = schema

    # -- the model ----------------------------------------------------------------------------
    @property
    def outputs(self) -> list[str]:
        """The model's output labels, in logit order."""
        return self.schema.names

    def model_class(self):
        import transformers

        return getattr(transformers, self.auto_model)

    def config_kwargs(self) -> dict[str, Any]:
        names = self.outputs
        return {
            "num_labels": len(names),
            "id2label": dict(enumerate(names)),
            "label2id": {n: i for i, n in enumerate(names)},
        }

    @staticmethod
    def infer_schema(train: list[Example]) -> LabelSchema:
        return infer_schema(train)

    # -- training -----------------------------------------------------------------------------
    def labelled(self, examples: list[Example] | None, part: str) -> list[Example]:
        raise NotImplementedError

    def encode(self, tokenizer, examples: list[Example], max_length: int, with_labels: bool) -> list[dict]:
        enc = tokenizer([ex.text for ex in examples], truncation=True, max_length=max_length, padding=False)
        rows = [{key: enc[key][i] for key in enc.keys()} for i in range(len(examples))]
        if with_labels:
            for row, ex in zip(rows, examples, strict=True):
                row["labels"] = self.target(ex)
        return rows

    def target(self, example: Example) -> Any:
        raise NotImplementedError

    def collator(self, tokenizer):
        from transformers import DataCollatorWithPadding

        return DataCollatorWithPadding(tokenizer)

    def class_weights(self, rows: list[dict], params: FamilyParams) -> list[float] | None:
        if getattr(params, "class_weights", None) is not None and "class_weights" in params.model_fields_set:
            log.warning(
                "class_weights=%s is not applied to %s: the model's own loss is used",
                params.class_weights,
                self.task_type,
            )
        return None

    def compute_metrics(self, eval_pred) -> dict[str, float]:
        raise NotImplementedError

    def tune(self, clf: Any, dev: list[Example]) -> dict[str, Any]:
        """After training: fit what is chosen on dev (a threshold); what it returns joins the
        training summary."""
        return {}

    # -- prediction and the model directory -----------------------------------------------------
    def predict(self, clf: Any, examples: list[Example]) -> list[PredictionRecord]:
        raise NotImplementedError

    def score_records(self, records: Sequence[PredictionRecord]) -> float | None:
        """The dev metric over the records that have a gold target (None without any)."""
        raise NotImplementedError

    def info(self) -> dict[str, Any]:
        """What the model info records for this head beyond family, schema and params."""
        return {"task_type": self.task_type}

    @classmethod
    def from_info(cls, schema: LabelSchema, info: dict[str, Any]) -> EncoderHead:
        return cls(schema)


def logits_of(eval_pred) -> tuple[np.ndarray, np.ndarray]:
    logits, labels = eval_pred.predictions, eval_pred.label_ids
    if isinstance(logits, tuple):
        logits = logits[0]
    return logits, labels


class ClassificationHead(EncoderHead):
    task_type = "classification"
    metric = "macro_f1"

    def labelled(self, examples, part):
        found = [ex for ex in (examples or []) if ex.label is not None]
        unknown = sorted({ex.label for ex in found} - set(self.schema.names))
        if unknown:
            raise ValueError(f"{part} labels {unknown} are not in the schema {self.schema.names}")
        return found

    def target(self, example):
        return self.schema.index(example.label)

    def class_weights(self, rows, params):
        if params.class_weights == "balanced":
            return balanced_class_weights([r["labels"] for r in rows], len(self.outputs))
        return None

    def compute_metrics(self, eval_pred):
        logits, labels = logits_of(eval_pred)
        predicted = logits.argmax(axis=-1).tolist()
        gold = labels.tolist()
        accuracy = sum(int(a == b) for a, b in zip(gold, predicted, strict=True)) / max(len(gold), 1)
        return {"macro_f1": macro_f1(gold, predicted), "accuracy": accuracy}

    def predict(self, clf, examples):
        probs, latency = clf.scores([ex.text for ex in examples])
        return probability_records(examples, self.schema.names, probs, latency)

    def score_records(self, records):
        from socialens.tasks.classification_metrics import compute_metrics

        if not any(r.gold is not None for r in records):
            return None
        return compute_metrics(list(records), self.schema.names, n_bootstrap=0)["macro_f1"]

    def info(self):
        return {}  # classification model info stays as it always was


def multi_hot(names: Sequence[str], labels: Sequence[str]) -> list[float]:
    chosen = set(labels)
    return [1.0 if name in chosen else 0.0 for name in names]


def micro_f1(gold: np.ndarray, predicted: np.ndarray) -> float:
    """Micro-F1 over (example, label) decisions of two 0/1 matrices."""
    from sklearn.metrics import f1_score

    if gold.size == 0:
        return 0.0
    return float(f1_score(gold.astype(int), predicted.astype(int), average="micro", zero_division=0))


def tune_threshold(
    gold: np.ndarray, probs: np.ndarray, grid: Sequence[float] = THRESHOLD_GRID
) -> tuple[float, float]:
    """The one global threshold of ``grid`` with the best micro-F1 of ``probs >= t`` against the
    0/1 matrix ``gold`` (the one nearest 0.5 on ties), and that F1."""
    best = None
    for t in sorted(grid, key=lambda t: (abs(t - DEFAULT_THRESHOLD), t)):
        score = micro_f1(gold, probs >= t)
        if best is None or score > best[1]:
            best = (float(t), score)
    return best


class MultilabelHead(EncoderHead):
    task_type = "multilabel"
    metric = "micro_f1"

    def __init__(self, schema, threshold: float = DEFAULT_THRESHOLD):
        super().__init__(schema)
        self.threshold = threshold

    def config_kwargs(self):
        return {**super().config_kwargs(), "problem_type": "multi_label_classification"}

    @staticmethod
    def infer_schema(train):
        names = sorted({name for ex in train if isinstance(ex.label, list | tuple) for name in ex.label})
        if not names:
            raise ValueError("cannot fit: no training example has a label")
        return LabelSchema.from_names(names)

    def labelled(self, examples, part):
        found = []
        known = set(self.schema.names)
        for ex in examples or []:
            if ex.label is None:
                continue
            if not isinstance(ex.label, list | tuple) or not all(isinstance(x, str) for x in ex.label):
                raise DataError(
                    f"{part} example {ex.id}: label {ex.label!r}; expected a list of label names (multilabel)"
                )
            unknown = sorted(set(ex.label) - known)
            if unknown:
                raise DataError(
                    f"{part} example {ex.id}: labels {unknown} are not in the schema {self.schema.names}"
                )
            found.append(ex)
        return found

    def target(self, example):
        return multi_hot(self.schema.names, example.label)

    def compute_metrics(self, eval_pred):
        logits, labels = logits_of(eval_pred)
        return {"micro_f1": micro_f1(labels >= 0.5, sigmoid(logits) >= DEFAULT_THRESHOLD)}

    def probabilities(self, clf, texts: list[str]) -> tuple[np.ndarray, list[float]]:
        rows, latency = clf.logit_rows(clf.tokenize_texts(texts))
        probs = sigmoid(np.array(rows, dtype=np.float64).reshape(len(texts), len(self.schema.names)))
        return probs, latency

    def tune(self, clf, dev):
        if not dev:
            self.threshold = DEFAULT_THRESHOLD
            return {"threshold": self.threshold, "threshold_dev_micro_f1": None}
        probs, _ = self.probabilities(clf, [ex.text for ex in dev])
        gold = np.array([self.target(ex) for ex in dev]) >= 0.5
        self.threshold, score = tune_threshold(gold, probs)
        return {"threshold": self.threshold, "threshold_dev_micro_f1": round(score, 4)}

    def predict(self, clf, examples):
        names = self.schema.names
        probs, latency = self.probabilities(clf, [ex.text for ex in examples])
        return [
            PredictionRecord(
                id=ex.id,
                gold=ex.label,
                predicted=[name for name, p in zip(names, row, strict=True) if p >= self.threshold],
                status=Status.OK,
                scores={name: float(p) for name, p in zip(names, row, strict=True)},
                latency_s=per,
                metadata=dict(ex.metadata),
            )
            for ex, row, per in zip(examples, probs, latency, strict=True)
        ]

    def score_records(self, records):
        names = self.schema.names
        pairs = [(r.gold, r.predicted or []) for r in records if r.gold is not None]
        if not pairs:
            return None
        gold = np.array([multi_hot(names, g) for g, _ in pairs]) >= 0.5
        predicted = np.array([multi_hot(names, p) for _, p in pairs]) >= 0.5
        return micro_f1(gold, predicted)

    def info(self):
        return {"task_type": self.task_type, "threshold": self.threshold}

    @classmethod
    def from_info(cls, schema, info):
        return cls(schema, threshold=float(info.get("threshold", DEFAULT_THRESHOLD)))


__all__ = [
    "DEFAULT_THRESHOLD",
    "THRESHOLD_GRID",
    "ClassificationHead",
    "EncoderHead",
    "MultilabelHead",
    "micro_f1",
    "multi_hot",
    "tune_threshold",
]
