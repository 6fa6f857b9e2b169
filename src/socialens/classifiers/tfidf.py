"""TF-IDF + logistic regression: the seconds-cheap floor every comparison table shows."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Literal

from socialens.classifiers.base import (
    FamilyParams,
    PredictionRecord,
    infer_schema,
    probability_records,
    read_model_info,
    register,
    write_model_info,
)
from socialens.data.schema import Example, LabelSchema

PIPELINE_FILE = "pipeline.joblib"


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


@register("tfidf")
class TfidfClassifier:
    """Scikit-learn pipeline: TfidfVectorizer (word and/or char n-grams) -> LogisticRegression."""

    Params = TfidfParams

    def __init__(self, params: TfidfParams | None = None, seed: int = 0) -> None:
        self.params = params or TfidfParams()
        self.seed = seed
        self.schema: LabelSchema | None = None
        self.pipeline_ = None
        self.training_: dict = {}

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
        self, train: list[Example], dev: list[Example] | None = None, *, schema: LabelSchema | None = None
    ) -> TfidfClassifier:
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

    def _check_fitted(self) -> None:
        if self.pipeline_ is None or self.schema is None:
            raise RuntimeError("TfidfClassifier is not fitted: call fit() or load() first")

    def predict_proba(self, texts: list[str]):
        """Probabilities, shape (n, len(schema.names)), columns in schema order (0 for labels unseen in training)."""
        import numpy as np

        self._check_fitted()
        raw = self.pipeline_.predict_proba(list(texts))
        out = np.zeros((len(texts), len(self.schema.names)), dtype=float)
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
        return probability_records(examples, self.schema.names, probs, [latency] * len(examples))

    def save(self, directory: str | Path) -> None:
        import joblib

        self._check_fitted()
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        joblib.dump(self.pipeline_, directory / PIPELINE_FILE)
        write_model_info(
            directory,
            self.family,
            self.schema,
            self.params,
            extra={"seed": self.seed, "training": self.training_},
        )

    @classmethod
    def load(cls, directory: str | Path) -> TfidfClassifier:
        import joblib

        directory = Path(directory)
        info = read_model_info(directory)
        obj = cls(TfidfParams.model_validate(info["params"]), seed=info.get("seed", 0))
        obj.schema = LabelSchema.from_dict(info["schema"])
        obj.pipeline_ = joblib.load(directory / PIPELINE_FILE)
        obj.training_ = info.get("training", {})
        return obj
