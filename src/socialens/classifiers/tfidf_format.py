"""The pickle-free TF-IDF model files: ``tfidf_model.json`` (each vectoriser's settings and
vocabulary, the classifier's settings and classes, or for a multi-label model the one-vs-rest
labels, constant labels and decision threshold) and ``tfidf_weights.safetensors`` (idf vectors,
coefficients and intercepts). Reading them rebuilds real scikit-learn objects, and nothing in
either file can run code: every setting is a plain value checked against what socialens writes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from socialens.core.errors import ConfigError

MODEL_FILE = "tfidf_model.json"
WEIGHTS_FILE = "tfidf_weights.safetensors"
FORMAT = "socialens-tfidf/1"


class VectorizerSettings(BaseModel):
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


class ClassifierSettings(BaseModel):
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


_VECTORIZER_KEYS = tuple(VectorizerSettings.model_fields)
_CLASSIFIER_KEYS = tuple(ClassifierSettings.model_fields)


def save_safetensors(tensors: dict[str, Any], path: Path) -> None:
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


def describe_pipeline(pipeline, head: dict[str, Any] | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """(JSON description, named float64 arrays) of a fitted TF-IDF -> LogisticRegression pipeline,
    or, with ``head`` (labels, constant, threshold), of a TF-IDF -> one-vs-rest pipeline."""
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
    if head is not None:
        return _describe_one_vs_rest(described, tensors, pipeline, head)
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


def _describe_one_vs_rest(described, tensors, pipeline, head):
    import numpy as np

    clf = pipeline.steps[-1][1]
    params = clf.estimator.get_params()
    description = {
        "format": FORMAT,
        "task_type": "multilabel",
        "union": any(name is not None for name, _ in _vectorizers(pipeline)),
        "vectorizers": described,
        "classifier": {
            "kind": "one-vs-rest",
            "settings": {key: params[key] for key in _CLASSIFIER_KEYS if key in params},
            "labels": list(head["labels"]),
            "constant": dict(head["constant"]),
        },
        "threshold": head["threshold"],
    }
    tensors["coef"] = np.ascontiguousarray(np.vstack([e.coef_ for e in clf.estimators_]), dtype=np.float64)
    tensors["intercept"] = np.ascontiguousarray(
        np.concatenate([e.intercept_ for e in clf.estimators_]), dtype=np.float64
    )
    return description, tensors


def _one_vs_rest(head: dict[str, Any], threshold, coef, intercept, settings, n_features: int, bad):
    """A fitted OneVsRestClassifier of logistic regressions (one coefficient row each) and the
    head (labels, constant, threshold) from a multilabel description's classifier."""
    import numpy as np
    from sklearn.linear_model import LogisticRegression
    from sklearn.multiclass import OneVsRestClassifier
    from sklearn.preprocessing import LabelBinarizer

    labels, constant = head.get("labels"), head.get("constant", {})
    if not isinstance(labels, list) or not labels or not all(isinstance(v, str) for v in labels):
        raise bad("expected a list of one-vs-rest label names")
    if len(set(labels)) != len(labels):
        raise bad("the one-vs-rest labels repeat a name")
    if (
        not isinstance(constant, dict)
        or not all(
            isinstance(v, int | float) and not isinstance(v, bool) and v in (0, 1) for v in constant.values()
        )
        or set(constant) & set(labels)
    ):
        raise bad("'constant' should map the labels without an estimator to 0 or 1")
    if not isinstance(threshold, int | float) or isinstance(threshold, bool) or not 0 < threshold <= 1:
        raise bad("'threshold' should be a number in (0, 1]")
    rows = len(labels)
    if coef is None or coef.shape != (rows, n_features):
        raise bad(f"coef should have shape ({rows}, {n_features}), one row per one-vs-rest label")
    if intercept is None or intercept.shape != (rows,):
        raise bad(f"intercept should have shape ({rows},)")
    estimators = []
    for j in range(rows):
        estimator = LogisticRegression(**settings)
        estimator.classes_ = np.array([0, 1])
        estimator.coef_ = coef[j : j + 1].astype(np.float64)
        estimator.intercept_ = intercept[j : j + 1].astype(np.float64)
        estimator.n_features_in_ = n_features
        estimators.append(estimator)
    ovr = OneVsRestClassifier(LogisticRegression(**settings))
    ovr.estimators_ = estimators
    # the binarizer fit() would have made: an indicator matrix, or a binary target for one label
    ovr.label_binarizer_ = LabelBinarizer(sparse_output=True).fit(
        np.array([[0] * rows, [1] * rows]) if rows > 1 else np.array([0, 1])
    )
    ovr.classes_ = ovr.label_binarizer_.classes_
    ovr.n_features_in_ = n_features
    head = {
        "labels": labels,
        "constant": {str(k): float(v) for k, v in constant.items()},
        "threshold": float(threshold),
    }
    return ovr, head


def rebuild_pipeline(directory: Path):
    """Real scikit-learn objects from the JSON + safetensors files, and the multilabel head
    (labels, constant, threshold; None for a classifier); a file that does not describe a
    consistent model is a one-line ConfigError naming it."""
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
        multilabel = description.get("task_type", "classification") == "multilabel"
        if multilabel and description["classifier"].get("kind") != "one-vs-rest":
            raise ValueError("a multilabel model's classifier should be of kind 'one-vs-rest'")
        classes = [] if multilabel else [str(c) for c in description["classifier"]["classes"]]
        clf_settings = ClassifierSettings.model_validate(description["classifier"].get("settings", {}))
        union = bool(description.get("union"))
        if not isinstance(specs, list) or not specs or (not union and len(specs) != 1):
            raise ValueError("expected one vectoriser, or several in a union")
        settings = [VectorizerSettings.model_validate(spec["settings"]) for spec in specs]
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
    if union:
        names = [spec.get("name") or f"v{i}" for i, spec in enumerate(specs)]
        features = FeatureUnion(list(zip(names, vectorizers, strict=True)))
    else:
        features = vectorizers[0]
    accepted = LogisticRegression().get_params()
    clf_values = {k: v for k, v in clf_settings.model_dump().items() if k in accepted}
    coef, intercept = tensors.get("coef"), tensors.get("intercept")
    if multilabel:
        head = description["classifier"]
        ovr, head = _one_vs_rest(
            head, description.get("threshold"), coef, intercept, clf_values, n_features, bad
        )
        return Pipeline([("tfidf", features), ("clf", ovr)]), head
    rows = 1 if len(classes) == 2 else len(classes)
    if len(classes) < 2 or len(set(classes)) != len(classes):
        raise bad("expected at least two distinct classes")
    if coef is None or coef.shape != (rows, n_features):
        raise bad(f"coef should have shape ({rows}, {n_features})")
    if intercept is None or intercept.shape != (rows,):
        raise bad(f"intercept should have shape ({rows},)")
    clf = LogisticRegression(**clf_values)
    clf.classes_ = np.array(classes)
    clf.coef_ = coef.astype(np.float64)
    clf.intercept_ = intercept.astype(np.float64)
    clf.n_features_in_ = n_features
    return Pipeline([("tfidf", features), ("clf", clf)]), None
