"""TF-IDF + logistic regression family."""

from __future__ import annotations

import math

import pytest

from socialens.classifiers.base import REGISTRY, get_family, load_classifier, read_model_info
from socialens.classifiers.tfidf import TfidfClassifier, TfidfParams
from socialens.core.types import Example, LabelSchema, Status

WORDS = {
    "pos": ["great", "wonderful", "love", "excellent", "happy"],
    "neg": ["awful", "terrible", "hate", "horrible", "sad"],
    "neu": ["table", "monday", "report", "meeting", "paper"],
}


def make(n_per_class: int, offset: int = 0) -> list[Example]:
    out = []
    for label, words in WORDS.items():
        for i in range(n_per_class):
            j = i + offset
            text = f"{words[j % 5]} and {words[(j + 2) % 5]} thing number {j}"
            out.append(Example(id=f"{label}-{j}", text=text, label=label, metadata={"k": j}))
    return out


@pytest.fixture
def fitted():
    return TfidfClassifier(seed=0).fit(make(10))


def test_registered():
    assert REGISTRY["tfidf"] is TfidfClassifier and get_family("tfidf") is TfidfClassifier
    assert TfidfClassifier.Params is TfidfParams
    with pytest.raises(ValueError):
        TfidfParams(ngrams=2)


def test_fit_predict_records(fitted):
    test = make(4, offset=20) + [Example(id="u", text="love love love", metadata={"x": 1})]
    records = fitted.predict(test)
    assert fitted.schema.names == ["neg", "neu", "pos"]  # inferred, sorted
    assert [r.id for r in records] == [ex.id for ex in test]
    assert [r.gold for r in records[:-1]] == [ex.label for ex in test[:-1]] and records[-1].gold is None
    assert sum(r.predicted == r.gold for r in records[:-1]) == len(test) - 1
    assert records[-1].predicted == "pos"
    for ex, r in zip(test, records, strict=True):
        assert r.status is Status.OK and r.metadata == ex.metadata
        assert list(r.scores) == fitted.schema.names
        assert math.isclose(sum(r.scores.values()), 1.0, abs_tol=1e-9)
        assert r.predicted == max(r.scores, key=r.scores.get)
        assert r.latency_s > 0
    assert fitted.predict([]) == []


def test_schema_order_and_unseen_labels():
    schema = LabelSchema.from_names(["pos", "extra", "neu", "neg"])
    clf = TfidfClassifier().fit(make(5), schema=schema)
    probs = clf.predict_proba(["great stuff", "awful"])
    assert probs.shape == (2, 4)
    assert (probs[:, 1] == 0).all()
    record = clf.predict([Example(id="a", text="great wonderful")])[0]
    assert list(record.scores) == ["pos", "extra", "neu", "neg"] and record.predicted == "pos"


def test_bad_inputs():
    with pytest.raises(ValueError, match="not in the schema"):
        TfidfClassifier().fit(make(3), schema=LabelSchema.from_names(["pos", "neg"]))
    with pytest.raises(ValueError, match="two distinct labels"):
        TfidfClassifier().fit([Example(id="a", text="x", label="p"), Example(id="b", text="y", label="p")])
    with pytest.raises(RuntimeError, match="not fitted"):
        TfidfClassifier().predict([Example(id="a", text="x")])


def test_save_load_identical(fitted, tmp_path):
    test = make(3, offset=7)
    fitted.save(tmp_path / "m")
    info = read_model_info(tmp_path / "m")
    assert info["family"] == "tfidf" and info["schema"]["labels"][0]["name"] == "neg"
    assert info["training"]["train_examples"] == 30
    for loaded in (TfidfClassifier.load(tmp_path / "m"), load_classifier(tmp_path / "m")):
        assert isinstance(loaded, TfidfClassifier) and loaded.params == fitted.params
        assert [r.to_dict() | {"latency_s": 0} for r in loaded.predict(test)] == [
            r.to_dict() | {"latency_s": 0} for r in fitted.predict(test)
        ]


def test_deterministic():
    a = TfidfClassifier(seed=1).fit(make(10)).predict(make(3, offset=5))
    b = TfidfClassifier(seed=1).fit(make(10)).predict(make(3, offset=5))
    assert [r.scores for r in a] == [r.scores for r in b]


@pytest.mark.parametrize("analyzer", ["char_wb", "word+char"])
def test_char_ngrams(analyzer):
    # Arabic-script words share few whole tokens; character n-grams still separate them.
    train = [
        Example(id=f"a{i}", text=f"{w} جميل رائع", label="pos")
        for i, w in enumerate(["الفيلم", "الكتاب", "المطعم"])
    ] + [
        Example(id=f"b{i}", text=f"{w} سيء مزعج", label="neg")
        for i, w in enumerate(["الفيلم", "الكتاب", "المطعم"])
    ]
    clf = TfidfClassifier(TfidfParams(analyzer=analyzer, char_ngram_range=(2, 3))).fit(train)
    records = clf.predict(
        [Example(id="t", text="الهاتف جميلة رائعة"), Example(id="u", text="الهاتف سيئ مزعجة")]
    )
    assert [r.predicted for r in records] == ["pos", "neg"]


@pytest.mark.parametrize("analyzer", ["word", "char_wb", "word+char"])
@pytest.mark.parametrize("labels", [["neg", "neu", "pos"], ["neg", "pos"]])
def test_saved_without_pickle_and_reloaded_into_sklearn_with_identical_probabilities(
    tmp_path, analyzer, labels
):
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    train = [ex for ex in make(10) if ex.label in labels]
    clf = TfidfClassifier(TfidfParams(analyzer=analyzer, char_ngram_range=(2, 4))).fit(train)
    clf.save(tmp_path / "m")
    names = sorted(p.name for p in (tmp_path / "m").iterdir())
    assert names == ["socialens_model.json", "tfidf_model.json", "tfidf_weights.safetensors"]
    for path in (tmp_path / "m").iterdir():  # nothing a loader could unpickle
        assert not path.read_bytes().startswith(b"\x80") and path.suffix != ".joblib"
    loaded = load_classifier(tmp_path / "m")
    features, head = loaded.pipeline_.steps[0][1], loaded.pipeline_.steps[-1][1]
    vectorizers = [v for _, v in features.transformer_list] if analyzer == "word+char" else [features]
    assert all(type(v) is TfidfVectorizer for v in vectorizers) and type(head) is LogisticRegression
    texts = [ex.text for ex in make(4, offset=30)] + ["never seen words", "", "LOVE awful!"]
    assert abs(loaded.predict_proba(texts) - clf.predict_proba(texts)).max() <= 1e-12
    assert loaded.pipeline_.get_params(deep=True).keys() == clf.pipeline_.get_params(deep=True).keys()


def test_a_tampered_tfidf_directory_is_a_one_line_error(fitted, tmp_path):
    import json

    from socialens.core.errors import ConfigError

    fitted.save(tmp_path / "m")
    description = json.loads((tmp_path / "m" / "tfidf_model.json").read_text())
    description["vectorizers"][0]["settings"]["input"] = "filename"  # would open files named by the texts
    (tmp_path / "m" / "tfidf_model.json").write_text(json.dumps(description))
    with pytest.raises(ConfigError, match=r"tfidf_model\.json: not a readable TF-IDF model description"):
        load_classifier(tmp_path / "m")
    fitted.save(tmp_path / "n")
    description = json.loads((tmp_path / "n" / "tfidf_model.json").read_text())
    description["vectorizers"][0]["vocabulary"].pop()
    (tmp_path / "n" / "tfidf_model.json").write_text(json.dumps(description))
    with pytest.raises(ConfigError, match="disagree: idf.0 should have shape"):
        load_classifier(tmp_path / "n")
    fitted.save(tmp_path / "r")
    description = json.loads((tmp_path / "r" / "tfidf_model.json").read_text())
    description["vectorizers"][0]["settings"]["token_pattern"] = r"(a+)+$"  # catastrophic backtracking
    (tmp_path / "r" / "tfidf_model.json").write_text(json.dumps(description))
    with pytest.raises(ConfigError, match=r"tfidf_model\.json: not a readable TF-IDF model description"):
        load_classifier(tmp_path / "r")


# -- multilabel (one-vs-rest) ------------------------------------------------------------------------

ML_SCHEMA = LabelSchema.from_names(["fake", "hate", "defamation"])  # defamation never applies
FILLER = ["today", "people", "posted", "video", "claims", "city", "school", "about", "again", "friends"]


def make_multilabel(n: int, offset: int = 0) -> list[Example]:
    """Texts containing "hate" -> hate, "fake" -> fake, both -> both, neither -> []."""
    out = []
    for i in range(n):
        j = i + offset
        labels = [["fake"], ["hate"], ["fake", "hate"], []][j % 4]
        words = [FILLER[(j + k) % len(FILLER)] for k in (0, 3, 7)] + labels
        out.append(Example(id=f"m{j}", text=" ".join(words), label=list(labels), metadata={"j": j}))
    return out


@pytest.fixture
def multilabel_fitted():
    return TfidfClassifier(TfidfParams(C=20.0), seed=0).fit(
        make_multilabel(40), schema=ML_SCHEMA, task_type="multilabel"
    )


def test_multilabel_learns_the_toy_set(multilabel_fitted):
    clf = multilabel_fitted
    assert "multilabel" in TfidfClassifier.task_types and clf.task_type == "multilabel"
    test = make_multilabel(12, offset=100)
    records = clf.predict(test)
    assert [r.predicted for r in records] == [ex.label for ex in test]
    assert {tuple(r.predicted) for r in records} == {("fake",), ("hate",), ("fake", "hate"), ()}
    for ex, r in zip(test, records, strict=True):
        assert r.status is Status.OK and r.gold == ex.label and r.metadata == ex.metadata
        assert list(r.scores) == ML_SCHEMA.names and r.scores["defamation"] == 0.0
        assert r.predicted == [name for name in ML_SCHEMA.names if r.scores[name] >= 0.5]
    assert clf.training_["threshold"] == 0.5 and clf.training_["threshold_source"] == "default"
    assert clf.head_ == {"labels": ["fake", "hate"], "constant": {"defamation": 0.0}}
    probs = clf.predict_proba(["fake fake", "hate"])
    assert probs.shape == (2, 3) and probs[0, 0] > 0.5 > probs[0, 1] and probs[1, 1] > 0.5 > probs[1, 0]


def test_multilabel_threshold_is_tuned_on_dev():
    import numpy as np

    from socialens.classifiers.multilabel import THRESHOLD_GRID, tune_threshold

    probabilities = np.array([[0.35, 0.1], [0.2, 0.45], [0.32, 0.31], [0.1, 0.2]])
    gold = np.array([[1, 0], [0, 1], [1, 1], [0, 0]], dtype=bool)
    assert tune_threshold(probabilities, gold) == (0.3, 1.0)  # 0.3 finds all four, nothing more
    assert tune_threshold(np.full((2, 2), 0.9), np.ones((2, 2), bool)) == (0.5, 1.0)  # ties: nearest 0.5
    clf = TfidfClassifier(seed=0).fit(
        make_multilabel(40), make_multilabel(16, offset=200), schema=ML_SCHEMA, task_type="multilabel"
    )
    assert clf.training_["threshold_source"] == "dev micro-F1" and clf.threshold_ in THRESHOLD_GRID
    dev = make_multilabel(16, offset=200)
    predicted = [r.predicted for r in clf.predict(dev)]
    tp = sum(len(set(p) & set(ex.label)) for p, ex in zip(predicted, dev, strict=True))
    errors = sum(len(set(p) ^ set(ex.label)) for p, ex in zip(predicted, dev, strict=True))
    assert clf.training_["dev_micro_f1"] == pytest.approx(2 * tp / (2 * tp + errors))
    # nothing to find and nothing found: every threshold scores 0, and 0.5 stays
    assert tune_threshold(np.zeros((3, 2)), np.zeros((3, 2), bool)) == (0.5, 0.0)


@pytest.mark.parametrize("analyzer", ["word", "word+char"])
@pytest.mark.parametrize("varying", [2, 1])
def test_multilabel_saved_without_pickle_reloads_identical_probabilities(tmp_path, analyzer, varying):
    from sklearn.linear_model import LogisticRegression
    from sklearn.multiclass import OneVsRestClassifier

    train = make_multilabel(40)
    if varying == 1:  # only "hate" varies: one estimator, fake and defamation constant
        train = [Example(ex.id, ex.text, sorted({"fake", *ex.label}), ex.metadata) for ex in train]
    clf = TfidfClassifier(TfidfParams(analyzer=analyzer, char_ngram_range=(2, 4), C=20.0)).fit(
        train, make_multilabel(8, offset=50), schema=ML_SCHEMA, task_type="multilabel"
    )
    clf.save(tmp_path / "m")
    names = sorted(p.name for p in (tmp_path / "m").iterdir())
    assert names == ["socialens_model.json", "tfidf_model.json", "tfidf_weights.safetensors"]
    for path in (tmp_path / "m").iterdir():  # nothing a loader could unpickle
        assert not path.read_bytes().startswith(b"\x80") and path.suffix != ".joblib"
    info = read_model_info(tmp_path / "m")
    assert info["task_type"] == "multilabel" and info["threshold"] == clf.threshold_
    loaded = load_classifier(tmp_path / "m")
    assert isinstance(loaded, TfidfClassifier) and loaded.task_type == "multilabel"
    head = loaded.pipeline_.steps[-1][1]
    assert type(head) is OneVsRestClassifier and len(head.estimators_) == varying
    assert all(type(e) is LogisticRegression for e in head.estimators_)
    assert loaded.head_ == clf.head_ and loaded.threshold_ == clf.threshold_
    texts = [ex.text for ex in make_multilabel(8, offset=300)] + ["never seen words", "", "HATE fake!"]
    assert (loaded.predict_proba(texts) == clf.predict_proba(texts)).all()
    test = make_multilabel(6, offset=400)
    assert [r.to_dict() | {"latency_s": 0} for r in loaded.predict(test)] == [
        r.to_dict() | {"latency_s": 0} for r in clf.predict(test)
    ]


def test_multilabel_bad_inputs(tmp_path, multilabel_fitted):
    import json

    from socialens.core.errors import ConfigError

    with pytest.raises(ValueError, match="not a list of label names"):
        TfidfClassifier().fit(make(3), task_type="multilabel")
    with pytest.raises(ValueError, match="not in the schema"):
        TfidfClassifier().fit(
            make_multilabel(8), schema=LabelSchema.from_names(["hate"]), task_type="multilabel"
        )
    same = [Example(f"s{i}", f"text {i}", ["hate"]) for i in range(4)]
    with pytest.raises(ValueError, match="no label both applies and does not apply"):
        TfidfClassifier().fit(same, task_type="multilabel")
    with pytest.raises(ConfigError, match="does not handle the task type 'summarisation'|unknown task"):
        TfidfClassifier().fit(make(3), task_type="summarisation")
    multilabel_fitted.save(tmp_path / "m")
    model = tmp_path / "m" / "tfidf_model.json"
    description = json.loads(model.read_text())
    model.write_text(json.dumps(description | {"threshold": 2}))
    with pytest.raises(ConfigError, match="disagree: 'threshold' should be a number in"):
        load_classifier(tmp_path / "m")
    model.write_text(json.dumps(description | {"task_type": "classification"}))
    with pytest.raises(ConfigError, match="cannot load|not a readable TF-IDF model description"):
        load_classifier(tmp_path / "m")
    tampered = json.loads(json.dumps(description))
    tampered["classifier"]["constant"] = {"defamation": 0.0, "rumour": 1}
    model.write_text(json.dumps(tampered))
    with pytest.raises(ConfigError, match="are not the model's labels"):
        load_classifier(tmp_path / "m")


def test_classification_files_say_nothing_of_multilabel(fitted, tmp_path):
    import json

    fitted.save(tmp_path / "m")
    assert "task_type" not in read_model_info(tmp_path / "m")
    description = json.loads((tmp_path / "m" / "tfidf_model.json").read_text())
    assert list(description) == ["format", "union", "vectorizers", "classifier"]
    assert list(description["classifier"]) == ["settings", "classes"]
