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
