"""ONNX int8 export: a real MiniLM fine-tuned on built-in demo comments, exported, quantised,
checked against torch and loaded back through onnxruntime."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

import socialens
from socialens.classifiers.base import MODEL_INFO_FILE, load_classifier, read_model_info
from socialens.classifiers.encoder import EncoderClassifier, EncoderParams
from socialens.classifiers.onnx_session import INT8_ENGINE
from socialens.cli import app
from socialens.core.errors import ConfigError
from socialens.data.readers import read_examples
from socialens.serving.app import load_served_model
from socialens.serving.onnx_export import Agreement, agreement, chosen_scheme, export_onnx

DEMO_CSV = Path(socialens.__file__).parent / "data" / "builtin" / "reddit_misinfo_demo" / "comments.csv"
PER_LABEL = 8

pytestmark = pytest.mark.slow


def demo_examples():
    """The first PER_LABEL demo comments of each label (24 in all), read by the real reader."""
    examples = read_examples(DEMO_CSV, text="text", label="label", id="id").examples
    taken: dict[str, list] = {}
    for ex in examples:
        if len(taken.setdefault(ex.label, [])) < PER_LABEL:
            taken[ex.label].append(ex)
    return [ex for group in taken.values() for ex in group]


@pytest.fixture(scope="module")
def examples():
    return demo_examples()


@pytest.fixture(scope="module")
def exported(tmp_path_factory, examples):
    """A model directory after training a few steps and `export_onnx` with the training examples
    as the dev set (the test is about the export's fidelity, not the model's quality)."""
    model_dir = tmp_path_factory.mktemp("onnx") / "model"
    params = EncoderParams(
        epochs=5,
        learning_rate=3e-4,
        batch_size=12,
        eval_batch_size=16,
        warmup_ratio=0.0,
        max_length=64,
        num_threads=2,
    )
    EncoderClassifier(params, seed=0).fit(examples).save(model_dir)
    report = export_onnx(model_dir, examples, dev_source="demo")
    return model_dir, report


def test_export_writes_fp32_and_a_smaller_int8_model(exported):
    model_dir, report = exported
    fp32, int8 = model_dir / "onnx" / "model.onnx", model_dir / "onnx" / "model_int8.onnx"
    assert fp32.is_file() and int8.is_file()
    assert report.fp32_bytes == fp32.stat().st_size and report.int8_bytes == int8.stat().st_size
    # int8 weights are a quarter of fp32; embeddings and the graph keep it above that
    assert report.int8_bytes < 0.5 * report.fp32_bytes
    assert not [p for p in model_dir.iterdir() if p.name.startswith(".onnx-")]  # temp folder removed


def test_int8_model_agrees_with_torch_and_is_recorded(exported, examples):
    model_dir, report = exported
    a = report.agreement
    assert a.n_examples == len(examples) == a.n_labelled
    assert a.label_agreement >= 0.95
    assert a.max_abs_prob_diff < 0.1
    assert a.macro_f1_torch > 0.5  # the model learned something, so agreement is not trivial
    assert abs(a.macro_f1_onnx - a.macro_f1_torch) <= 0.05
    recorded = read_model_info(model_dir)["onnx"]
    assert recorded["int8_path"] == "onnx/model_int8.onnx"
    assert recorded["agreement"]["label_agreement"] == a.label_agreement
    assert recorded["agreement"]["source"] == "demo"
    assert read_model_info(model_dir)["family"] == "encoder"  # the rest of the info is kept


def test_load_predicts_through_onnx_with_the_same_labels_as_torch(exported, examples):
    model_dir, report = exported
    onnx_clf = load_classifier(model_dir)
    torch_clf = EncoderClassifier.load(model_dir, engine="torch")
    assert onnx_clf.engine == INT8_ENGINE and onnx_clf.model_ is None
    assert torch_clf.engine == "torch"
    assert onnx_clf.runtime == f"onnx-int8-{report.quantization}" and torch_clf.runtime == "torch"
    onnx_records, torch_records = onnx_clf.predict(examples), torch_clf.predict(examples)
    assert [r.id for r in onnx_records] == [ex.id for ex in examples]
    assert {r.metadata["engine"] for r in onnx_records} == {INT8_ENGINE}
    assert all("engine" not in r.metadata for r in torch_records)
    for record in onnx_records:
        assert record.status == "ok"
        assert sum(record.scores.values()) == pytest.approx(1.0, abs=1e-6)
        assert record.predicted == max(record.scores, key=record.scores.get)
    same = agreement(torch_records, onnx_records, torch_clf.schema.names, "again")
    assert same.label_agreement >= 0.95
    # input order is restored after length sorting: a reversed input gives reversed output
    reversed_records = onnx_clf.predict(examples[::-1])
    assert [r.predicted for r in reversed_records] == [r.predicted for r in onnx_records][::-1]
    assert onnx_clf.predict([]) == []


def test_onnx_loaded_encoder_refuses_to_save(exported, tmp_path):
    model_dir, _ = exported
    with pytest.raises(RuntimeError, match="engine='torch'"):
        load_classifier(model_dir).save(tmp_path / "copy")


def test_bad_model_dirs_give_one_line_errors(tmp_path, exported):
    with pytest.raises(ConfigError, match="not a socialens model directory") as missing:
        export_onnx(tmp_path)
    assert "\n" not in str(missing.value)
    tfidf_dir = tmp_path / "tfidf"
    tfidf_dir.mkdir()
    (tfidf_dir / MODEL_INFO_FILE).write_text(json.dumps({"family": "tfidf"}), encoding="utf-8")
    with pytest.raises(ConfigError, match="needs an 'encoder' model, this one is 'tfidf'"):
        export_onnx(tfidf_dir)
    no_weights = tmp_path / "no_weights"
    no_weights.mkdir()
    info = read_model_info(exported[0])
    (no_weights / MODEL_INFO_FILE).write_text(json.dumps(info), encoding="utf-8")
    with pytest.raises(ConfigError, match="no model.safetensors"):
        export_onnx(no_weights)
    with pytest.raises(ConfigError, match="export onnx"):
        EncoderClassifier.load(no_weights, engine="onnx")


def test_cli_export_reads_dev_file_and_prints_agreement(exported, examples, tmp_path):
    model_dir, _ = exported
    dev = tmp_path / "dev.jsonl"
    dev.write_text(
        "".join(json.dumps({"text": ex.text, "label": ex.label}) + "\n" for ex in examples[:20]),
        encoding="utf-8",
    )
    result = CliRunner().invoke(app, ["export", "onnx", str(model_dir), "--dev", str(dev)])
    assert result.exit_code == 0, result.output
    assert "agreement with torch on 20 examples" in result.output
    assert "macro-F1 on 20 labelled examples" in result.output
    assert read_model_info(model_dir)["onnx"]["agreement"]["n_examples"] == 20


def test_cli_export_without_dev_says_agreement_was_not_checked(exported, tmp_path):
    model_dir, _ = exported
    result = CliRunner().invoke(app, ["export", "onnx", str(model_dir)])
    assert result.exit_code == 0, result.output
    assert "agreement with torch was not checked: no dev examples" in result.output
    assert read_model_info(model_dir)["onnx"]["agreement"] is None
    bad = CliRunner().invoke(app, ["export", "onnx", str(tmp_path / "nothing")])
    assert bad.exit_code == 2
    assert "not a socialens model directory" in bad.output


def test_cli_export_uses_the_split_recorded_at_training(exported, examples, tmp_path):
    from socialens.cli import _record_training_data
    from socialens.core.types import LabelSchema, Split
    from socialens.data.prepare import write_split

    model_dir = tmp_path / "model"
    shutil.copytree(exported[0], model_dir, ignore=shutil.ignore_patterns("onnx"))
    schema = LabelSchema.from_dict(read_model_info(model_dir)["schema"])
    split_dir = write_split(
        Split(train=examples, dev=examples[:9], test=[], schema=schema), tmp_path / "split"
    )
    _record_training_data(model_dir, str(split_dir), 0, None, None, "text", "label", None)
    assert read_model_info(model_dir)["training_data"]["data"] == str(split_dir.resolve())
    result = CliRunner().invoke(app, ["export", "onnx", str(model_dir)])
    assert result.exit_code == 0, result.output
    assert "agreement with torch on 9 examples (dev split of" in result.output
    assert (model_dir / "onnx" / "model_int8.onnx").is_file()


def test_saving_new_weights_drops_a_stale_export(exported, tmp_path):
    model_dir = tmp_path / "model"
    shutil.copytree(exported[0], model_dir)
    assert load_classifier(model_dir).engine == INT8_ENGINE
    EncoderClassifier.load(model_dir, engine="torch").save(model_dir)
    assert not (model_dir / "onnx").exists()
    assert "onnx" not in read_model_info(model_dir)
    assert load_classifier(model_dir).engine == "torch"
    assert load_served_model(model_dir).runtime == "torch"


def test_blockwise_int8_is_written_checked_and_loaded(exported, examples, tmp_path):
    import onnx

    model_dir = tmp_path / "blockwise"
    shutil.copytree(exported[0], model_dir, ignore=shutil.ignore_patterns("onnx"))
    report = export_onnx(model_dir, examples, dev_source="demo", quantization="blockwise")
    assert report.quantization == "blockwise" and report.tried == []
    ops = {node.op_type for node in onnx.load(str(model_dir / "onnx" / "model_int8.onnx")).graph.node}
    assert "MatMulNBits" in ops and "MatMulInteger" not in ops
    assert report.int8_bytes < report.fp32_bytes
    assert report.agreement.label_agreement >= 0.95 and report.agreement.max_abs_prob_diff < 0.05
    assert read_model_info(model_dir)["onnx"]["quantization"] == "blockwise"
    assert load_served_model(model_dir).runtime == "onnx-int8-blockwise"  # what GET /v1/model says
    records = load_classifier(model_dir).predict(examples)
    assert {r.metadata["engine"] for r in records} == {INT8_ENGINE}
    torch_records = EncoderClassifier.load(model_dir, engine="torch").predict(examples)
    assert agreement(
        torch_records, records, report.agreement and list(records[0].scores), "again"
    ).label_agreement == (report.agreement.label_agreement)


def test_auto_keeps_dynamic_only_when_it_agrees_and_takes_blockwise_unchecked(exported, tmp_path):
    _, report = exported  # auto, with dev examples
    if report.quantization == "dynamic":
        assert report.agreement.label_agreement >= 0.995 and report.tried == []
    else:
        assert [t["quantization"] for t in report.tried] == ["dynamic", "blockwise"]
    model_dir = tmp_path / "unchecked"
    shutil.copytree(exported[0], model_dir, ignore=shutil.ignore_patterns("onnx"))
    unchecked = export_onnx(model_dir)
    assert unchecked.quantization == "blockwise" and unchecked.agreement is None
    assert "took blockwise" in " ".join(unchecked.lines())


def test_chosen_scheme_prefers_the_first_that_agrees_else_the_closest():
    def tried(*agreements):
        return [
            (name, Agreement("dev", 100, value, 0.1), 1.0)
            for name, value in zip(["dynamic", "blockwise"], agreements, strict=False)
        ]

    assert chosen_scheme(tried(0.999, 0.998), 0.995)[0] == "dynamic"
    assert chosen_scheme(tried(0.98, 0.996), 0.995)[0] == "blockwise"
    assert chosen_scheme(tried(0.97, 0.99), 0.995)[0] == "blockwise"  # neither passes: the closer
    assert chosen_scheme(tried(0.99, 0.97), 0.995)[0] == "dynamic"
    assert chosen_scheme([("blockwise", None, 1.0)], 0.995)[0] == "blockwise"


def test_bad_quantization_options_are_one_line_errors(exported):
    with pytest.raises(
        ConfigError, match="quantization: got 'int4'; expected one of auto, dynamic, blockwise"
    ):
        export_onnx(exported[0], quantization="int4")
    with pytest.raises(ConfigError, match="min_agreement: got 1.5"):
        export_onnx(exported[0], min_agreement=1.5)


# -- token classification and multilabel encoders ---------------------------------------------

PEOPLE = ["Alice", "Bob", "Carol", "Dave"]
CITIES = ["Paris", "London", "Berlin"]
FILLER = ["the", "went", "saw", "to", "with", "today", "and", "met", "slowly"]


def tagged_sentences(n: int, seed: int) -> list:
    import random

    from socialens.core.types import Example

    rng = random.Random(seed)
    out = []
    for i in range(n):
        tokens, tags = [], []
        for _ in range(rng.randint(3, 6)):
            roll = rng.random()
            if roll < 0.3:
                tokens.append(rng.choice(PEOPLE))
                tags.append("B-PER")
            elif roll < 0.45:
                tokens += ["in", rng.choice(CITIES)]
                tags += ["O", "B-LOC"]
            else:
                tokens.append(rng.choice(FILLER))
                tags.append("O")
        out.append(Example(id=f"s{seed}-{i}", text=" ".join(tokens), label=tags, tokens=tokens))
    return out


SMALL = dict(epochs=3, learning_rate=3e-4, batch_size=8, warmup_ratio=0.0, max_length=32, num_threads=2)


def test_token_classifier_exports_and_tags_as_torch_does(tmp_path):
    from socialens.classifiers.encoder_tokens import TokenHead
    from socialens.core.types import Example, LabelSchema
    from socialens.serving.onnx_export import TaskAgreement

    model_dir = tmp_path / "ner"
    train, dev = tagged_sentences(32, 1), tagged_sentences(10, 2)
    clf = EncoderClassifier(EncoderParams(**SMALL), seed=0)
    clf.fit(train, schema=LabelSchema.from_names(["PER", "LOC"]), task_type="token_classification")
    clf.save(model_dir)
    report = export_onnx(model_dir, dev, dev_source="toy", quantization="blockwise")
    a = report.agreement
    assert isinstance(a, TaskAgreement) and a.metric == "entity_f1" and a.n_labelled == 10
    assert a.label_agreement == 1.0 and a.max_abs_prob_diff < 0.05
    assert a.metric_torch == a.metric_onnx and a.metric_torch > 0.5
    recorded = read_model_info(model_dir)
    assert recorded["onnx"]["agreement"]["metric"] == "entity_f1"
    assert recorded["task_type"] == "token_classification"  # the rest of the info is kept
    assert any("entity_f1 on 10 labelled examples" in line for line in report.lines())

    onnx_clf, torch_clf = load_classifier(model_dir), EncoderClassifier.load(model_dir, engine="torch")
    assert onnx_clf.engine == INT8_ENGINE and isinstance(onnx_clf.head_, TokenHead)
    # sentences of different lengths in one batch (padding), tokens given and raw text
    sentences = [
        *dev[:4],
        Example(id="raw", text="Yesterday Alice met Bob in London, slowly."),
        Example(id="one", text="Carol"),
    ]
    onnx_records, torch_records = onnx_clf.predict(sentences), torch_clf.predict(sentences)
    assert [r.predicted for r in onnx_records] == [r.predicted for r in torch_records]
    assert [r.details["entities"] for r in onnx_records] == [r.details["entities"] for r in torch_records]
    assert {r.metadata["engine"] for r in onnx_records} == {INT8_ENGINE}


def test_multilabel_classifier_exports_with_sigmoid_scores(tmp_path):
    from socialens.core.types import Example

    phrases = {"sport": ["the match was won", "a goal"], "food": ["tasty pizza", "garlic soup"]}
    rows = [(["sport"], 0), (["food"], 0), (["food", "sport"], 1)] * 8
    examples = [
        Example(id=f"m{i}", text=" and ".join(phrases[name][(i + k) % 2] for name in labels), label=labels)
        for i, (labels, k) in enumerate(rows)
    ]
    model_dir = tmp_path / "multi"
    EncoderClassifier(EncoderParams(**SMALL), seed=0).fit(examples, task_type="multilabel").save(model_dir)
    report = export_onnx(model_dir, examples, quantization="blockwise")
    assert report.agreement.metric == "micro_f1" and report.agreement.max_abs_prob_diff < 0.05
    onnx_clf, torch_clf = load_classifier(model_dir), EncoderClassifier.load(model_dir, engine="torch")
    assert onnx_clf.engine == INT8_ENGINE
    onnx_records, torch_records = onnx_clf.predict(examples), torch_clf.predict(examples)
    for a, b in zip(onnx_records, torch_records, strict=True):
        assert a.scores == pytest.approx(b.scores, abs=0.05)
        assert a.predicted == [n for n in ["food", "sport"] if a.scores[n] >= 0.5]
    same = sum(a.predicted == b.predicted for a, b in zip(onnx_records, torch_records, strict=True))
    assert same >= len(examples) - 1
