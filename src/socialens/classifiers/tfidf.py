"""TF-IDF + logistic regression: the seconds-cheap floor every comparison table shows.

A model directory holds no pickle: ``tfidf_model.json`` has each vectoriser's settings and
vocabulary and the classifier's settings and classes, ``tfidf_weights.safetensors`` the idf
vectors and the logistic-regression coefficients and intercepts. Loading rebuilds real
scikit-learn objects from them (the same predictions to the last bits), and nothing in either file
can run code. A multi-label model (``task_type="multilabel"``) is a OneVsRestClassifier of logistic
regressions, one per label that both applies and does not apply to some training text (a label
that never or always applies is a constant probability), saved the same way: one coefficient row
per estimator, the labels and constants and the decision threshold in the JSON.

A directory from before this format (``pipeline.joblib``) loads only with ``trust_pickle``
(``--trust-pickle``), since unpickling runs whatever its author put in it.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Literal

from socialens.classifiers.base import (
    MODEL_INFO_FILE,
    Trust,
    check_task_type,
    infer_schema,
    probability_records,
    read_model_info,
    refuse_pickle,
    write_model_info,
)
from socialens.classifiers.multilabel import DEFAULT_THRESHOLD, multilabel_records, tune_threshold
from socialens.classifiers.tfidf_format import (
    MODEL_FILE,
    WEIGHTS_FILE,
    describe_pipeline,
    rebuild_pipeline,
    save_safetensors,
)
from socialens.core.errors import ConfigError
from socialens.core.params import FamilyParams
from socialens.core.progress import EstimateHook, ProgressHook
from socialens.core.types import Example, LabelSchema, PredictionRecord

PIPELINE_FILE = "pipeline.joblib"  # the old, pickled format: loaded only with trust_pickle


class TfidfParams(FamilyParams):
    analyzer: Literal["word", "char_wb", "word+char"] = "word"
    ngram_range: tuple[int, int] = (1, 2)
    char_ngram_range: tuple[int, int] = (2, 5)  # used when analyzer includes char n-grams
    min_df: int | float = 1
    max_features: int | None = 100_000
    sublinear_tf: bool = True
    lowercase: bool = True
    C: float = 1.0
    class_weight: Literal["balanced"] | None = "balanced"
    max_iter: int = 2000


class TfidfClassifier:
    """Scikit-learn pipeline: TfidfVectorizer (word and/or char n-grams) -> LogisticRegression."""

    family = "tfidf"
    task_types = ("classification", "multilabel")

    Params = TfidfParams
    runtime = "sklearn"  # what runs the model, as GET /v1/model reports it

    def __init__(
        self,
        params: TfidfParams | None = None,
        seed: int = 0,
        *,
        progress: ProgressHook | None = None,
        estimate: EstimateHook | None = None,
    ) -> None:
        self.params = params or TfidfParams()
        self.seed = seed
        self.progress, self.estimate = progress, estimate  # fits in seconds: neither is called
        self.stopped_: str | None = None
        self.task_type = "classification"
        self.schema: LabelSchema | None = None
        self.pipeline_ = None
        self.training_: dict = {}
        # multilabel only: the labels with an estimator, the constant ones, the decision threshold
        self.head_: dict[str, Any] = {}
        self.threshold_ = DEFAULT_THRESHOLD

    # -- building -------------------------------------------------------------------------------
    def _vectorizer(self):
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.pipeline import FeatureUnion

        p = self.params
        common = dict(
            min_df=p.min_df, max_features=p.max_features, sublinear_tf=p.sublinear_tf, lowercase=p.lowercase
        )
        word = TfidfVectorizer(analyzer="word", ngram_range=tuple(p.ngram_range), **common)
        char = TfidfVectorizer(analyzer="char_wb", ngram_range=tuple(p.char_ngram_range), **common)
        if p.analyzer == "word":
            return word
        if p.analyzer == "char_wb":
            return char
        return FeatureUnion([("word", word), ("char", char)])

    def _build(self):
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import Pipeline

        clf = LogisticRegression(
            C=self.params.C,
            class_weight=self.params.class_weight,
            max_iter=self.params.max_iter,
            random_state=self.seed,
        )
        return Pipeline([("tfidf", self._vectorizer()), ("clf", clf)])

    # -- protocol -------------------------------------------------------------------------------
    def fit(
        self,
        train: list[Example],
        dev: list[Example] | None = None,
        *,
        schema: LabelSchema | None = None,
        task: str = "",
        task_type: str = "classification",
    ) -> TfidfClassifier:
        self.task_type = check_task_type(self, task_type)
        if self.task_type == "multilabel":
            return self._fit_multilabel(train, dev, schema)
        self.schema = schema or infer_schema(train)
        labelled = [ex for ex in train if ex.label is not None]
        names = set(self.schema.names)
        unknown = sorted({ex.label for ex in labelled} - names)
        if unknown:
            raise ValueError(f"training labels {unknown} are not in the schema {self.schema.names}")
        if len({ex.label for ex in labelled}) < 2:
            raise ValueError("cannot fit tfidf: the training data has fewer than two distinct labels")
        start = time.perf_counter()
        pipeline = self._build()
        pipeline.fit([ex.text for ex in labelled], [ex.label for ex in labelled])
        self.pipeline_ = pipeline
        seconds = time.perf_counter() - start
        self.training_ = {
            "train_examples": len(labelled),
            "train_time_s": round(seconds, 4),
            "train_examples_per_s": round(len(labelled) / seconds, 2) if seconds > 0 else None,
        }
        return self

    def _fit_multilabel(
        self, train: list[Example], dev: list[Example] | None, schema: LabelSchema | None
    ) -> TfidfClassifier:
        """One logistic regression per label (OneVsRestClassifier over a MultiLabelBinarizer in
        schema order); with a labelled dev set, the one threshold that maximises dev micro-F1."""
        import numpy as np
        from sklearn.linear_model import LogisticRegression
        from sklearn.multiclass import OneVsRestClassifier
        from sklearn.pipeline import Pipeline
        from sklearn.preprocessing import MultiLabelBinarizer

        labelled = [ex for ex in train if ex.label is not None]
        for ex in labelled:
            if not isinstance(ex.label, list | tuple) or not all(isinstance(v, str) for v in ex.label):
                raise ValueError(
                    f"training example {ex.id!r}: label {ex.label!r} is not a list of label names "
                    "(multilabel)"
                )
        seen = sorted({name for ex in labelled for name in ex.label})
        if schema is None:
            if not seen:
                raise ValueError("cannot fit: no training example has a label")
            schema = LabelSchema.from_names(seen)
        self.schema = schema
        unknown = sorted(set(seen) - set(schema.names))
        if unknown:
            raise ValueError(f"training labels {unknown} are not in the schema {schema.names}")
        binarizer = MultiLabelBinarizer(classes=schema.names)
        y = binarizer.fit_transform([ex.label for ex in labelled])
        varying = [j for j in range(y.shape[1]) if 0 < y[:, j].sum() < len(labelled)]
        if not varying:
            raise ValueError(
                "cannot fit tfidf (multilabel): no label both applies and does not apply to some training text"
            )
        start = time.perf_counter()
        clf = LogisticRegression(
            C=self.params.C,
            class_weight=self.params.class_weight,
            max_iter=self.params.max_iter,
            random_state=self.seed,
        )
        pipeline = Pipeline([("tfidf", self._vectorizer()), ("clf", OneVsRestClassifier(clf))])
        target = y[:, varying] if len(varying) > 1 else y[:, varying[0]]  # one label: a binary target
        pipeline.fit([ex.text for ex in labelled], target)
        self.pipeline_ = pipeline
        self.head_ = {
            "labels": [schema.names[j] for j in varying],
            "constant": {schema.names[j]: float(y[0, j]) for j in range(y.shape[1]) if j not in varying},
        }
        seconds = time.perf_counter() - start
        dev_labelled = [ex for ex in dev or [] if ex.label is not None]
        self.threshold_, dev_f1 = DEFAULT_THRESHOLD, None
        if dev_labelled:
            gold = MultiLabelBinarizer(classes=schema.names).fit_transform(
                [[name for name in ex.label if name in schema.names] for ex in dev_labelled]
            )
            probs = self.predict_proba([ex.text for ex in dev_labelled])
            self.threshold_, dev_f1 = tune_threshold(probs, np.asarray(gold, dtype=bool))
        self.training_ = {
            "train_examples": len(labelled),
            "train_time_s": round(seconds, 4),
            "train_examples_per_s": round(len(labelled) / seconds, 2) if seconds > 0 else None,
            "threshold": self.threshold_,
            "threshold_source": "dev micro-F1" if dev_labelled else "default",
            "dev_micro_f1": dev_f1,
        }
        return self

    def _check_fitted(self) -> None:
        if self.pipeline_ is None or self.schema is None:
            raise RuntimeError("TfidfClassifier is not fitted: call fit() or load() first")

    def predict_proba(self, texts: list[str]):
        """Probabilities, shape (n, len(schema.names)), columns in schema order (0 for labels unseen in training)."""
        import numpy as np

        self._check_fitted()
        raw = self.pipeline_.predict_proba(list(texts))
        out = np.zeros((len(texts), len(self.schema.names)), dtype=float)
        if self.task_type == "multilabel":  # per-label probabilities, independent of each other
            fitted = self.head_["labels"]
            raw = raw[:, -1:] if len(fitted) == 1 else raw  # one estimator: [P(not), P(label)]
            for j, name in enumerate(fitted):
                out[:, self.schema.index(name)] = raw[:, j]
            for name, value in self.head_["constant"].items():
                out[:, self.schema.index(name)] = value
            return out
        for j, cls in enumerate(self.pipeline_.classes_):
            out[:, self.schema.index(str(cls))] = raw[:, j]
        return out

    def predict(self, examples: list[Example]) -> list[PredictionRecord]:
        self._check_fitted()
        if not examples:
            return []
        start = time.perf_counter()
        probs = self.predict_proba([ex.text for ex in examples])
        latency = (time.perf_counter() - start) / len(examples)
        if self.task_type == "multilabel":
            return multilabel_records(examples, self.schema.names, probs, self.threshold_, latency)
        return probability_records(examples, self.schema.names, probs, [latency] * len(examples))

    def save(self, directory: str | Path) -> None:
        self._check_fitted()
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        head = {**self.head_, "threshold": self.threshold_} if self.task_type == "multilabel" else None
        description, tensors = describe_pipeline(self.pipeline_, head)
        save_safetensors(tensors, directory / WEIGHTS_FILE)
        (directory / MODEL_FILE).write_text(json.dumps(description), encoding="utf-8")
        # an old pickle beside the new files would be dead weight (and a trap for older readers)
        (directory / PIPELINE_FILE).unlink(missing_ok=True)
        extra = {"seed": self.seed, "training": self.training_}
        if self.task_type == "multilabel":
            extra.update(task_type=self.task_type, threshold=self.threshold_)
        write_model_info(directory, self.family, self.schema, self.params, extra=extra)

    @classmethod
    def load(
        cls, directory: str | Path, *, trust: Trust | None = None, progress: ProgressHook | None = None
    ) -> TfidfClassifier:
        """Load a saved model: from the JSON + safetensors files, or (only when ``trust.pickle``)
        from an old ``pipeline.joblib``."""
        directory = Path(directory)
        info = read_model_info(directory)
        obj = cls(TfidfParams.model_validate(info["params"]), seed=info.get("seed", 0))
        obj.schema = LabelSchema.from_dict(info["schema"])
        task_type = info.get("task_type", "classification")
        if task_type not in cls.task_types:
            raise ConfigError(
                f"{directory / MODEL_INFO_FILE}: task_type {task_type!r}; expected one of "
                f"{', '.join(cls.task_types)}"
            )
        obj.task_type = task_type
        obj.training_ = info.get("training", {})
        if (directory / MODEL_FILE).is_file():
            obj.pipeline_, head = rebuild_pipeline(directory)
            if (head is not None) != (task_type == "multilabel"):
                raise ConfigError(
                    f"{directory}: {MODEL_FILE} describes a {'multilabel' if head else 'classification'} "
                    f"model, {MODEL_INFO_FILE} a {task_type} one"
                )
        elif (directory / PIPELINE_FILE).is_file() and task_type == "classification":
            refuse_pickle(directory / PIPELINE_FILE, trust, "a pickled TF-IDF pipeline (the old format)")
            import joblib

            obj.pipeline_, head = joblib.load(directory / PIPELINE_FILE), None
        else:
            raise ConfigError(f"{directory}: no {MODEL_FILE}; not a saved TF-IDF model directory")
        if head is not None:
            obj.threshold_ = head.pop("threshold")
            obj.head_ = head
            named = sorted([*head["labels"], *head["constant"]])
            if named != sorted(obj.schema.names):
                raise ConfigError(
                    f"{directory}: the one-vs-rest labels {named} are not the model's labels "
                    f"{sorted(obj.schema.names)}"
                )
            return obj
        obj.training_ = info.get("training", {})
        return obj
