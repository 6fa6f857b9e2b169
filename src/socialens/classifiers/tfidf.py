"""TF-IDF + logistic regression: the seconds-cheap floor every comparison table shows.

A model directory holds no pickle: ``tfidf_model.json`` has each vectoriser's settings and
vocabulary and the classifier's settings and classes, ``tfidf_weights.safetensors`` the idf
vectors and the logistic-regression coefficients and intercepts. Loading rebuilds real
scikit-learn objects from them (the same predictions to the last bits), and nothing in either file
can run code. A directory from before this format (``pipeline.joblib``) loads only with
``trust_pickle`` (``--trust-pickle``), since unpickling runs whatever its author put in it.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from socialens.classifiers.base import (
    Trust,
    check_task_type,
    infer_schema,
    probability_records,
    read_model_info,
    refuse_pickle,
    write_model_info,
)
from socialens.core.errors import ConfigError
from socialens.core.params import FamilyParams
from socialens.core.progress import EstimateHook, ProgressHook
from socialens.core.types import Example, LabelSchema, PredictionRecord

PIPELINE_FILE = "pipeline.joblib"  # the old, pickled format: loaded only with trust_pickle
MODEL_FILE = "tfidf_model.json"
WEIGHTS_FILE = "tfidf_weights.safetensors"
FORMAT = "socialens-tfidf/1"


class _VectorizerSettings(BaseModel):
    """The TfidfVectorizer parameters a saved model may set: plain values only (no callables, no
    ``input: filename``, which would make the vectoriser open files named by the texts)."""

    model_config = ConfigDict(extra="forbid")

    input: Literal["content"] = "content"
    encoding: str = "utf-8"
    decode_error: Literal["strict", "ignore", "replace"] = "strict"
    strip_accents: Literal["ascii", "unicode"] | None = None
    lowercase: bool = True
    stop_words: Literal["english"] | list[str] | None = None
    # the only pattern socialens writes: a shared model's own regex could be made to run for hours
    token_pattern: Literal[r"(?u)\b\w\w+\b"] | None = r"(?u)\b\w\w+\b"
    ngram_range: tuple[int, int] = (1, 1)
    analyzer: Literal["word", "char", "char_wb"] = "word"
    max_df: int | float = 1.0
    min_df: int | float = 1
    max_features: int | None = None
    binary: bool = False
    dtype: Literal["float64", "float32"] = "float64"
    norm: Literal["l1", "l2"] | None = "l2"
    use_idf: bool = True
    smooth_idf: bool = True
    sublinear_tf: bool = False


class _ClassifierSettings(BaseModel):
    """The LogisticRegression parameters a saved model records (plain values only)."""

    model_config = ConfigDict(extra="ignore")

    C: float = 1.0
    class_weight: Literal["balanced"] | dict[str, float] | None = None
    dual: bool = False
    fit_intercept: bool = True
    intercept_scaling: float = 1.0
    l1_ratio: float | None = None
    max_iter: int = 100
    penalty: str | None = None
    random_state: int | None = None
    solver: str = "lbfgs"
    tol: float = 1e-4


_VECTORIZER_KEYS = tuple(_VectorizerSettings.model_fields)
_CLASSIFIER_KEYS = tuple(_ClassifierSettings.model_fields)


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
    task_types = ("classification",)

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
        self._check_fitted()
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        description, tensors = _describe_pipeline(self.pipeline_)
        _save_safetensors(tensors, directory / WEIGHTS_FILE)
        (directory / MODEL_FILE).write_text(json.dumps(description), encoding="utf-8")
        # an old pickle beside the new files would be dead weight (and a trap for older readers)
        (directory / PIPELINE_FILE).unlink(missing_ok=True)
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
    ) -> TfidfClassifier:
        """Load a saved model: from the JSON + safetensors files, or (only when ``trust.pickle``)
        from an old ``pipeline.joblib``."""
        directory = Path(directory)
        info = read_model_info(directory)
        obj = cls(TfidfParams.model_validate(info["params"]), seed=info.get("seed", 0))
        obj.schema = LabelSchema.from_dict(info["schema"])
        if (directory / MODEL_FILE).is_file():
            obj.pipeline_ = _rebuild_pipeline(directory)
        elif (directory / PIPELINE_FILE).is_file():
            refuse_pickle(directory / PIPELINE_FILE, trust, "a pickled TF-IDF pipeline (the old format)")
            import joblib

            obj.pipeline_ = joblib.load(directory / PIPELINE_FILE)
        else:
            raise ConfigError(f"{directory}: no {MODEL_FILE}; not a saved TF-IDF model directory")
        unknown = sorted({str(c) for c in obj.pipeline_.classes_} - set(obj.schema.names))
        if unknown:
            raise ConfigError(
                f"{directory}: the classifier's classes {unknown} are not in the model's labels"
            )
        obj.training_ = info.get("training", {})
        return obj


# -- the pickle-free format ---------------------------------------------------------------------------


def _save_safetensors(tensors: dict[str, Any], path: Path) -> None:
    from safetensors.numpy import save_file

    tmp = path.with_name(path.name + ".tmp")
    save_file(tensors, str(tmp))
    tmp.replace(path)


def _vectorizers(pipeline) -> list[tuple[str | None, Any]]:
    """(name in the FeatureUnion or None, TfidfVectorizer) of the pipeline's feature step."""
    from sklearn.pipeline import FeatureUnion

    features = pipeline.steps[0][1]
    if isinstance(features, FeatureUnion):
        return list(features.transformer_list)
    return [(None, features)]


def _describe_pipeline(pipeline) -> tuple[dict[str, Any], dict[str, Any]]:
    """(JSON description, named float64 arrays) of a fitted TF-IDF -> LogisticRegression pipeline."""
    import numpy as np

    described, tensors = [], {}
    for i, (name, vectorizer) in enumerate(_vectorizers(pipeline)):
        params = vectorizer.get_params()
        settings = {key: params[key] for key in _VECTORIZER_KEYS if key in params}
        settings["dtype"] = np.dtype(params["dtype"]).name
        if isinstance(settings.get("stop_words"), frozenset | set | tuple):
            settings["stop_words"] = sorted(settings["stop_words"])
        terms = [""] * len(vectorizer.vocabulary_)
        for term, index in vectorizer.vocabulary_.items():
            terms[index] = term
        described.append({"name": name, "settings": settings, "vocabulary": terms})
        if vectorizer.use_idf:
            tensors[f"idf.{i}"] = np.ascontiguousarray(vectorizer.idf_, dtype=np.float64)
    clf = pipeline.steps[-1][1]
    params = clf.get_params()
    description = {
        "format": FORMAT,
        "union": any(name is not None for name, _ in _vectorizers(pipeline)),
        "vectorizers": described,
        "classifier": {
            "settings": {key: params[key] for key in _CLASSIFIER_KEYS if key in params},
            "classes": [str(c) for c in clf.classes_],
        },
    }
    tensors["coef"] = np.ascontiguousarray(clf.coef_, dtype=np.float64)
    tensors["intercept"] = np.ascontiguousarray(clf.intercept_, dtype=np.float64)
    return description, tensors


def _rebuild_pipeline(directory: Path):
    """Real scikit-learn objects from the JSON + safetensors files; a file that does not describe
    a consistent model is a one-line ConfigError naming it."""
    import numpy as np
    from safetensors import SafetensorError
    from safetensors.numpy import load_file
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import FeatureUnion, Pipeline

    model_path, weights_path = directory / MODEL_FILE, directory / WEIGHTS_FILE
    try:
        description = json.loads(model_path.read_text(encoding="utf-8"))
        if not isinstance(description, dict) or description.get("format") != FORMAT:
            raise ValueError(f"expected format {FORMAT!r}")
        specs = description["vectorizers"]
        classes = [str(c) for c in description["classifier"]["classes"]]
        clf_settings = _ClassifierSettings.model_validate(description["classifier"].get("settings", {}))
        union = bool(description.get("union"))
        if not isinstance(specs, list) or not specs or (not union and len(specs) != 1):
            raise ValueError("expected one vectoriser, or several in a union")
        settings = [_VectorizerSettings.model_validate(spec["settings"]) for spec in specs]
        vocabularies = [list(spec["vocabulary"]) for spec in specs]
    except (ValueError, KeyError, TypeError, ValidationError, UnicodeDecodeError) as exc:
        reason = " ".join(str(exc).split())[:200]
        raise ConfigError(f"{model_path}: not a readable TF-IDF model description ({reason})") from None
    if not weights_path.is_file():
        raise ConfigError(f"{weights_path}: missing (the idf vectors and classifier weights)")
    try:
        tensors = load_file(str(weights_path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise ConfigError(f"{weights_path}: not a readable safetensors file ({exc})") from None

    def bad(message: str) -> ConfigError:
        return ConfigError(f"{directory}: {MODEL_FILE} and {WEIGHTS_FILE} disagree: {message}")

    vectorizers = []
    for i, (setting, terms) in enumerate(zip(settings, vocabularies, strict=True)):
        values = setting.model_dump()
        values["dtype"] = getattr(np, values["dtype"])
        vectorizer = TfidfVectorizer(**values)
        if not all(isinstance(t, str) for t in terms) or len(set(terms)) != len(terms) or not terms:
            raise bad(f"vectoriser {i} has an empty, duplicated or non-text vocabulary")
        vectorizer.vocabulary_ = {term: index for index, term in enumerate(terms)}
        vectorizer.fixed_vocabulary_ = False
        if setting.use_idf:
            idf = tensors.get(f"idf.{i}")
            if idf is None or idf.shape != (len(terms),):
                raise bad(f"idf.{i} should have shape ({len(terms)},)")
            vectorizer.idf_ = idf.astype(np.float64)
        vectorizers.append(vectorizer)
    n_features = sum(len(terms) for terms in vocabularies)
    rows = 1 if len(classes) == 2 else len(classes)
    coef, intercept = tensors.get("coef"), tensors.get("intercept")
    if len(classes) < 2 or len(set(classes)) != len(classes):
        raise bad("expected at least two distinct classes")
    if coef is None or coef.shape != (rows, n_features):
        raise bad(f"coef should have shape ({rows}, {n_features})")
    if intercept is None or intercept.shape != (rows,):
        raise bad(f"intercept should have shape ({rows},)")
    accepted = LogisticRegression().get_params()
    clf = LogisticRegression(**{k: v for k, v in clf_settings.model_dump().items() if k in accepted})
    clf.classes_ = np.array(classes)
    clf.coef_ = coef.astype(np.float64)
    clf.intercept_ = intercept.astype(np.float64)
    clf.n_features_in_ = n_features
    if union:
        names = [spec.get("name") or f"v{i}" for i, spec in enumerate(specs)]
        features = FeatureUnion(list(zip(names, vectorizers, strict=True)))
    else:
        features = vectorizers[0]
    return Pipeline([("tfidf", features), ("clf", clf)])
