"""Every bad-input case in docs/bad-inputs.md, run through the real CLI.

The doc's table is the list: each row's slug names a builder here that writes the bad input under
``tmp_path`` and returns the CLI arguments and the expected exit code; the test runs them and checks
the exit code, that no traceback is printed and that one printed line matches the row's regex (for a
failing command: its single ``error:`` line)."""

from __future__ import annotations

import atexit
import functools
import json
import re
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from socialens.cli import app

DOC = Path(__file__).resolve().parents[1] / "docs" / "bad-inputs.md"
COLUMNS = ["case", "command", "bad input", "message"]
_CELL_SPLIT = re.compile(r"(?<!\\)\|")

Case = tuple[list[str], int]


def doc_cases() -> dict[str, dict[str, str]]:
    """The table of docs/bad-inputs.md: slug -> {column: cell}, ``\\|`` unescaped, backticks removed
    from the slug and the message regex."""
    rows: dict[str, dict[str, str]] = {}
    header = None
    for line in DOC.read_text(encoding="utf-8").splitlines():
        if not line.startswith("|"):
            continue
        cells = [cell.strip().replace("\\|", "|") for cell in _CELL_SPLIT.split(line.strip())[1:-1]]
        if header is None:
            header = cells
            assert header == COLUMNS, f"{DOC}: table columns {header}, expected {COLUMNS}"
            continue
        if set("".join(cells)) <= set("-: "):
            continue  # the |---| line
        assert len(cells) == len(COLUMNS), f"{DOC}: row with {len(cells)} cells: {line}"
        row = dict(zip(COLUMNS, cells, strict=True))
        for column in ("case", "message"):
            value = row[column]
            assert value.startswith("`") and value.endswith("`"), f"{DOC}: {column} not in backticks: {line}"
            row[column] = value[1:-1]
        assert row["case"] not in rows, f"{DOC}: case {row['case']} listed twice"
        rows[row["case"]] = row
    return rows


# ------------------------------------------------------------------ tiny shared fixtures

_SCRATCH = Path(tempfile.mkdtemp(prefix="socialens-bad-inputs-"))
atexit.register(shutil.rmtree, _SCRATCH, ignore_errors=True)

TEXTS = {
    "pos": ["a lovely sunny day", "great news for everyone", "what a wonderful result", "happy to hear"],
    "neg": ["an awful rainy day", "terrible news again", "what a dreadful result", "sad to hear it"],
}


def labelled_rows() -> list[dict[str, str]]:
    return [
        {"text": f"{text} {i}", "label": label}
        for label, texts in TEXTS.items()
        for i, text in enumerate(texts)
    ]


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


@functools.cache
def _pristine_tfidf() -> Path:
    from socialens.classifiers.tfidf import TfidfClassifier
    from socialens.core.types import Example, LabelSchema

    examples = [
        Example(id=f"r{i}", text=row["text"], label=row["label"]) for i, row in enumerate(labelled_rows())
    ]
    directory = _SCRATCH / "tfidf"
    TfidfClassifier(seed=0).fit(examples, schema=LabelSchema.from_names(["neg", "pos"])).save(directory)
    return directory


@functools.cache
def _pristine_encoder() -> Path:
    """A real encoder model directory without any training: a one-layer BERT with random weights
    and MiniLM's tokenizer, saved the way `socialens train encoder` saves (about 2 MB, seconds)."""
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    from socialens.classifiers.encoder import EncoderClassifier, EncoderParams
    from socialens.core.models import resolve_model
    from socialens.core.types import LabelSchema

    tokenizer = AutoTokenizer.from_pretrained(resolve_model("builtin:minilm-l6"))
    config = BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=8,
        num_hidden_layers=1,
        num_attention_heads=1,
        intermediate_size=8,
        max_position_embeddings=64,
        num_labels=2,
        id2label={0: "neg", 1: "pos"},
        label2id={"neg": 0, "pos": 1},
    )
    classifier = EncoderClassifier(EncoderParams(max_length=32))
    classifier.model_ = BertForSequenceClassification(config).eval()
    classifier.tokenizer_ = tokenizer
    classifier.schema = LabelSchema.from_names(["neg", "pos"])
    directory = _SCRATCH / "encoder"
    classifier.save(directory)
    return directory


def tfidf_model(tmp_path: Path) -> Path:
    return Path(shutil.copytree(_pristine_tfidf(), tmp_path / "model"))


def encoder_model(tmp_path: Path) -> Path:
    return Path(shutil.copytree(_pristine_encoder(), tmp_path / "model"))


def largest_file(model: Path) -> Path:
    """The model's weights, whatever the family names them: its largest file."""
    return max((p for p in model.rglob("*") if p.is_file()), key=lambda p: p.stat().st_size)


def delete_weights(model: Path) -> Path:
    largest_file(model).unlink()
    return model


def truncate_weights(model: Path) -> Path:
    weights = largest_file(model)
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    return model


def cut_short(path: Path, keep: int = 40) -> None:
    path.write_bytes(path.read_bytes()[:keep])


def edit_info(model: Path, edit: Callable[[dict], None]) -> Path:
    path = model / "socialens_model.json"
    info = json.loads(path.read_text(encoding="utf-8"))
    edit(info)
    path.write_text(json.dumps(info), encoding="utf-8")
    return model


def texts_csv(tmp_path: Path) -> Path:
    path = tmp_path / "in.csv"
    path.write_text("text\nhello there\nanother text\n", encoding="utf-8")
    return path


def predict_args(model: Path, source: Path, *extra: str) -> list[str]:
    return ["predict", str(model), str(source), "--out", str(source.parent / "out.jsonl"), *extra]


def split_folder(tmp_path: Path) -> Path:
    from socialens.core.types import LabelSchema
    from socialens.data.datasets import RawDataset
    from socialens.data.prepare import prepare, write_split
    from socialens.data.readers import read_examples

    source = write_jsonl(tmp_path / "data.jsonl", labelled_rows())
    examples = read_examples(source, label="label").examples
    raw = RawDataset(name="tiny", schema=LabelSchema.from_names(["neg", "pos"]), splits={"all": examples})
    return write_split(prepare(raw, seed=0), tmp_path / "splits")


def run_folder(tmp_path: Path) -> Path:
    """A run folder as bench writes it, with one cell whose predictions.jsonl is cut mid-line."""
    cell = tmp_path / "run" / "tiny" / "tf" / "seed-0"
    cell.mkdir(parents=True)
    record = {"id": "r1", "gold": "pos", "predicted": "pos", "status": "ok"}
    (cell / "predictions.jsonl").write_text(json.dumps(record) + "\n" + json.dumps(record)[:20] + "\n")
    return tmp_path / "run"


def chat_records(tmp_path: Path) -> Path:
    folder = tmp_path / "mix"
    folder.mkdir()
    messages = [{"role": "user", "content": "Label: good?"}, {"role": "assistant", "content": "Label: pos"}]
    write_jsonl(folder / "train.jsonl", [{"id": "1", "label": "pos", "messages": messages}])
    return folder


# ------------------------------------------------------------------ run folders as model sources (issue 15)


def fake_run(tmp_path: Path, recommendations: dict) -> Path:
    """A run folder as bench writes it, reduced to what ``serve runs/<name>`` reads."""
    run = tmp_path / "runs" / "t"
    run.mkdir(parents=True)
    (run / "experiment.yaml").write_text("name: t\n", encoding="utf-8")
    (run / "summary.json").write_text(json.dumps({"recommendations": recommendations, "rows": []}))
    return run


def recommendation(dataset: str, model: str = "tf", model_dir: str | None = None) -> dict:
    return {"recommended": model, "model_dir": model_dir or f"{dataset}/{model}/seed-0/model"}


def serve_run_several_datasets(tmp_path):
    run = fake_run(tmp_path, {"a": recommendation("a"), "b": recommendation("b")})
    return ["serve", str(run)], 2


def serve_run_no_kept_model(tmp_path):
    return ["serve", str(fake_run(tmp_path, {"tiny": recommendation("tiny")}))], 2


def predict_run_model_dir_escapes(tmp_path):
    outside = tfidf_model(tmp_path)  # a real model, outside the run folder
    run = fake_run(tmp_path, {"tiny": recommendation("tiny", model_dir="../../model")})
    assert (run / "../../model").resolve() == outside.resolve()
    return predict_args(run, texts_csv(tmp_path)), 2


def serve_dataset_not_a_run(tmp_path):
    (tmp_path / "somewhere").mkdir()
    return ["serve", str(tmp_path / "somewhere"), "--dataset", "tiny"], 2


def export_run_unknown_dataset(tmp_path):
    run = fake_run(tmp_path, {"tiny": recommendation("tiny")})
    return ["export", "onnx", str(run), "--dataset", "other"], 2


def bench_save_models_bad_value(tmp_path):
    config = tmp_path / "experiment.yaml"
    config.write_text(
        "name: t\ndatasets: [builtin:reddit-misinfo-demo]\nmodels:\n  - {id: tf, family: tfidf}\n"
        "save_models: sometimes\n"
    )
    return ["bench", str(config), "--output-dir", str(tmp_path / "runs")], 2


# ------------------------------------------------------------------ the cases


def train_one_class(tmp_path):
    source = tmp_path / "one.csv"
    source.write_text("text,label\n" + "".join(f"text number {i},a\n" for i in range(10)))
    return ["train", "tfidf", "--data", str(source), "--out", str(tmp_path / "m")], 2


def train_hub_id_offline(tmp_path):
    source = write_jsonl(tmp_path / "data.jsonl", labelled_rows())
    return [
        "train", "encoder", "--data", str(source), "--model", "nosuchorg/nosuchmodel", "--out", str(tmp_path / "m")
    ], 2  # fmt: skip


def train_split_truncated(tmp_path):
    splits = split_folder(tmp_path)
    train = splits / "train.jsonl"
    train.write_bytes(train.read_bytes()[:-30])
    return ["train", "tfidf", "--data", str(splits), "--out", str(tmp_path / "m")], 2


def train_split_schema_corrupted(tmp_path):
    splits = split_folder(tmp_path)
    cut_short(splits / "schema.json", 20)
    return ["train", "tfidf", "--data", str(splits), "--out", str(tmp_path / "m")], 2


def train_split_label_not_in_schema(tmp_path):
    splits = split_folder(tmp_path)
    train = splits / "train.jsonl"
    lines = train.read_text().splitlines()
    first = json.loads(lines[0])
    first["label"] = "maybe"
    train.write_text("\n".join([json.dumps(first), *lines[1:]]) + "\n")
    return ["train", "tfidf", "--data", str(splits), "--out", str(tmp_path / "m")], 2


def train_zero_epochs(tmp_path):
    source = write_jsonl(tmp_path / "data.jsonl", labelled_rows())
    return ["train", "encoder", "--data", str(source), "--epochs", "0", "--out", str(tmp_path / "m")], 2


def train_zero_cap(tmp_path):
    source = write_jsonl(tmp_path / "data.jsonl", labelled_rows())
    return ["train", "tfidf", "--data", str(source), "--cap", "0", "--out", str(tmp_path / "m")], 2


def predict_tfidf_weights_deleted(tmp_path):
    return predict_args(delete_weights(tfidf_model(tmp_path)), texts_csv(tmp_path)), 2


def predict_tfidf_weights_truncated(tmp_path):
    return predict_args(truncate_weights(tfidf_model(tmp_path)), texts_csv(tmp_path)), 2


def serve_tfidf_weights_deleted(tmp_path):
    return ["serve", str(delete_weights(tfidf_model(tmp_path)))], 2


def serve_tfidf_weights_truncated(tmp_path):
    return ["serve", str(truncate_weights(tfidf_model(tmp_path)))], 2


def _info_cut_short(tmp_path):
    model = tfidf_model(tmp_path)
    cut_short(model / "socialens_model.json")
    return model


def predict_model_info_corrupted(tmp_path):
    return predict_args(_info_cut_short(tmp_path), texts_csv(tmp_path)), 2


def serve_model_info_corrupted(tmp_path):
    return ["serve", str(_info_cut_short(tmp_path))], 2


def _no_schema(tmp_path):
    return edit_info(tfidf_model(tmp_path), lambda info: info.pop("schema"))


def predict_model_info_no_schema(tmp_path):
    return predict_args(_no_schema(tmp_path), texts_csv(tmp_path)), 2


def serve_model_info_no_schema(tmp_path):
    return ["serve", str(_no_schema(tmp_path))], 2


def predict_model_info_empty_schema(tmp_path):
    model = edit_info(tfidf_model(tmp_path), lambda info: info.update(schema={"labels": []}))
    return predict_args(model, texts_csv(tmp_path)), 2


def predict_model_family_not_string(tmp_path):
    model = edit_info(tfidf_model(tmp_path), lambda info: info.update(family=["tfidf"]))
    return predict_args(model, texts_csv(tmp_path)), 2


def predict_model_params_invalid(tmp_path):
    model = edit_info(tfidf_model(tmp_path), lambda info: info["params"].update(C="lots"))
    return predict_args(model, texts_csv(tmp_path)), 2


def predict_encoder_weights_deleted(tmp_path):
    model = encoder_model(tmp_path)
    assert largest_file(model).name == "model.safetensors"
    return predict_args(delete_weights(model), texts_csv(tmp_path)), 2


def predict_encoder_weights_truncated(tmp_path):
    model = encoder_model(tmp_path)
    assert largest_file(model).name == "model.safetensors"
    return predict_args(truncate_weights(model), texts_csv(tmp_path)), 2


def _encoder_config_cut_short(tmp_path):
    model = encoder_model(tmp_path)
    cut_short(model / "config.json", 30)
    return model


def predict_encoder_config_corrupted(tmp_path):
    return predict_args(_encoder_config_cut_short(tmp_path), texts_csv(tmp_path)), 2


def serve_encoder_config_corrupted(tmp_path):
    return ["serve", str(_encoder_config_cut_short(tmp_path))], 2


def predict_batch_size_zero(tmp_path):
    return predict_args(tfidf_model(tmp_path), texts_csv(tmp_path), "--batch-size", "0"), 2


def predict_chunk_size_zero(tmp_path):
    return predict_args(tfidf_model(tmp_path), texts_csv(tmp_path), "--chunk-size", "0"), 2


def predict_ray_actors_zero(tmp_path):
    return predict_args(tfidf_model(tmp_path), texts_csv(tmp_path), "--engine", "ray", "--ray-actors", "0"), 2


def predict_empty_file(tmp_path):
    source = tmp_path / "empty.csv"
    source.write_text("")
    return predict_args(tfidf_model(tmp_path), source), 2


def predict_jsonl_no_object(tmp_path):
    source = tmp_path / "in.jsonl"
    source.write_text('{"text": "cut sho\n\n')
    return predict_args(tfidf_model(tmp_path), source), 2


def predict_unterminated_quote(tmp_path):
    source = tmp_path / "in.csv"
    source.write_text('text\na lovely day\n"an awful day\nhappy to hear\n')
    return predict_args(tfidf_model(tmp_path), source), 0


def predict_parquet_int_text(tmp_path):
    import pandas as pd

    source = tmp_path / "in.parquet"
    pd.DataFrame({"text": [1, 2, 3]}).to_parquet(source)
    return predict_args(tfidf_model(tmp_path), source), 2


def predict_duplicate_ids(tmp_path):
    source = tmp_path / "in.csv"
    source.write_text("id,text\na,a lovely day\nb,an awful day\na,happy to hear\n")
    return predict_args(tfidf_model(tmp_path), source), 0


def predict_out_is_input(tmp_path):
    source = texts_csv(tmp_path)
    return ["predict", str(tfidf_model(tmp_path)), str(source), "--out", str(source)], 2


def data_check_empty_text(tmp_path):
    source = tmp_path / "in.csv"
    source.write_text('text,label\n"",pos\nfine text,neg\n')
    return ["data", "check", str(source)], 2


def data_check_whitespace_text(tmp_path):
    source = tmp_path / "in.csv"
    source.write_text("text,label\n   ,pos\nfine text,neg\n")
    return ["data", "check", str(source)], 2


def data_check_empty_text_dropped(tmp_path):
    source = tmp_path / "in.csv"
    source.write_text("text,label\n,pos\n \t ,neg\nfine text,neg\n")
    return ["data", "check", str(source), "--drop-invalid"], 0


def data_check_number_text(tmp_path):
    source = write_jsonl(
        tmp_path / "in.jsonl", [{"text": 5, "label": "pos"}, {"text": "fine", "label": "neg"}]
    )
    return ["data", "check", str(source)], 2


def data_check_duplicate_ids(tmp_path):
    source = tmp_path / "in.csv"
    source.write_text("id,text,label\nx1,first text,pos\nx1,second text,neg\n")
    return ["data", "check", str(source), "--id", "id"], 2


def _labels_case(tmp_path, labels):
    source = write_jsonl(tmp_path / "data.jsonl", labelled_rows())
    return ["data", "check", str(source), "--labels", labels], 2


def data_check_labels_empty(tmp_path):
    return _labels_case(tmp_path, ",")


def data_check_labels_repeated(tmp_path):
    return _labels_case(tmp_path, "pos,pos")


def data_check_labels_ambiguous(tmp_path):
    return _labels_case(tmp_path, "pos,POS")


def data_split_negative_cap(tmp_path):
    source = write_jsonl(tmp_path / "data.jsonl", labelled_rows())
    return ["data", "split", str(source), "--out", str(tmp_path / "s"), "--cap", "-5"], 2


def data_split_negative_seed(tmp_path):
    source = write_jsonl(tmp_path / "data.jsonl", labelled_rows())
    return ["data", "split", str(source), "--out", str(tmp_path / "s"), "--seed", "-1"], 2


def data_split_out_is_file(tmp_path):
    source = write_jsonl(tmp_path / "data.jsonl", labelled_rows())
    (tmp_path / "afile").write_text("x")
    return ["data", "split", str(source), "--out", str(tmp_path / "afile")], 2


def report_empty_folder(tmp_path):
    (tmp_path / "empty").mkdir()
    return ["report", str(tmp_path / "empty")], 2


def report_not_a_folder(tmp_path):
    return ["report", str(write_jsonl(tmp_path / "data.jsonl", labelled_rows()))], 2


def report_corrupt_predictions(tmp_path):
    return ["report", str(run_folder(tmp_path))], 2


def report_negative_price(tmp_path):
    return ["report", str(run_folder(tmp_path)), "--hardware-price-per-hour", "-1"], 2


def bench_negative_split_seed(tmp_path):
    config = tmp_path / "experiment.yaml"
    config.write_text(
        "name: t\ndatasets:\n  - {config: builtin:reddit-misinfo-demo, split_seed: -1}\n"
        "models:\n  - {id: tf, family: tfidf}\nseeds: [0]\n"
    )
    return ["bench", str(config), "--output-dir", str(tmp_path / "runs")], 2


def instruct_train_zero_rank(tmp_path):
    return [
        "instruct",
        "train",
        str(chat_records(tmp_path)),
        "--out",
        str(tmp_path / "l"),
        "--lora-r",
        "0",
    ], 2


def instruct_train_zero_max_examples(tmp_path):
    folder = chat_records(tmp_path)
    return ["instruct", "train", str(folder), "--out", str(tmp_path / "l"), "--max-examples", "0"], 2


# ------------------------------------------------------------------ issue 16: quotes, YAML words, archives

OLID_TSV = (  # line 4 opens a quote that the quote on line 6 closes: line 5 would be swallowed
    'text\tlabel\na lovely sunny day\tpos\ngreat news\tpos\n"so they say\tneg\nterrible news again\tneg\n'
    'what a "dreadful result\tneg\nhappy to hear\tpos\nsad to hear it\tneg\nfine\tpos\n'
)


def _olid_tsv(tmp_path) -> Path:
    source = tmp_path / "olid.tsv"
    source.write_text(OLID_TSV, encoding="utf-8")
    return source


def data_check_merged_quotes(tmp_path):
    return ["data", "check", str(_olid_tsv(tmp_path))], 2


def data_check_merged_quotes_quoting_none(tmp_path):
    return ["data", "check", str(_olid_tsv(tmp_path)), "--quoting", "none"], 0


def predict_merged_quotes(tmp_path):
    return predict_args(tfidf_model(tmp_path), _olid_tsv(tmp_path)), 2


def predict_merged_quotes_quoting_none(tmp_path):
    return predict_args(tfidf_model(tmp_path), _olid_tsv(tmp_path), "--quoting", "none"), 0


def _dataset_yaml(tmp_path, labels: str) -> Path:
    _olid_tsv(tmp_path)
    config = tmp_path / "dataset.yaml"
    config.write_text(
        "name: olid\nformat: tsv\npath: .\npath_base: config\nfile: olid.tsv\noptions: {quoting: none}\n"
        f"columns: {{text: text, label: label}}\nschema: {{labels: {labels}}}\n",
        encoding="utf-8",
    )
    return config


def data_split_yaml_number_label(tmp_path):
    config = _dataset_yaml(tmp_path, "[pos, 1]")
    return ["data", "split", str(config), "--out", str(tmp_path / "s")], 2


def data_split_yaml_yes_no_labels(tmp_path):
    (tmp_path / "olid.tsv").write_text(
        "".join(f"tweet {i}\t{['yes', 'no', 'OFF'][i % 3]}\n" for i in range(30))
    )
    config = tmp_path / "dataset.yaml"
    config.write_text(
        "name: olid\nformat: tsv\npath: .\npath_base: config\nfile: olid.tsv\n"
        "options: {header: false, column_names: [text, label]}\n"
        "columns: {text: text, label: label}\nschema: {labels: [yes, no, OFF]}\n",
        encoding="utf-8",
    )
    return ["data", "split", str(config), "--out", str(tmp_path / "s")], 0


def _olid_zip(tmp_path) -> Path:
    import zipfile

    archive = tmp_path / "data.zip"
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as bundle:
        bundle.writestr("train.tsv", OLID_TSV.replace('"', ""))
        bundle.writestr("test.tsv", "text\tlabel\nfine day\tpos\n")
    return archive


def data_check_zip_no_member(tmp_path):
    return ["data", "check", str(_olid_zip(tmp_path))], 2


def data_check_zip_member(tmp_path):
    return ["data", "check", str(_olid_zip(tmp_path)), "--member", "train.tsv"], 0


def data_check_zip_traversal(tmp_path):
    return ["data", "check", str(_olid_zip(tmp_path)), "--member", "../train.tsv"], 2


def predict_zip_input(tmp_path):
    return predict_args(tfidf_model(tmp_path), _olid_zip(tmp_path)), 2


def _ner_yaml(tmp_path, conll: str) -> list[str]:
    """`data split` on a CoNLL dataset YAML (entity types PER, LOC) whose file holds ``conll``."""
    (tmp_path / "ner.conll").write_text(conll, encoding="utf-8")
    config = tmp_path / "ner.yaml"
    config.write_text(
        "name: ner\ntask_type: token_classification\nformat: conll\npath: .\npath_base: config\n"
        "files: {train: ner.conll}\nschema: {labels: [PER, LOC]}\n",
        encoding="utf-8",
    )
    return ["data", "split", str(config), "--out", str(tmp_path / "s")]


def _sentences(n: int = 20) -> str:
    return "".join(f"Ann{i} B-PER\nmet O\nRome{i} B-LOC\n\n" for i in range(n))


def data_split_conll_bad_tag(tmp_path):
    return _ner_yaml(tmp_path, "Ann B-PER\nmet X-O\n"), 2


def data_split_conll_unknown_type(tmp_path):
    return _ner_yaml(tmp_path, "Ann B-PER\nACME B-ORG\n"), 2


def data_split_conll_missing_tag(tmp_path):
    return _ner_yaml(tmp_path, "Ann B-PER\nmet\nRome B-LOC\n"), 2


def data_split_conll_empty(tmp_path):
    return _ner_yaml(tmp_path, "\n\n"), 2


def data_split_conll_orphan_i_repaired(tmp_path):
    return _ner_yaml(tmp_path, "Bob O\nLee I-PER\n\n" + _sentences()), 0


def data_split_spans_off_tokens(tmp_path):
    (tmp_path / "ner.jsonl").write_text(
        json.dumps({"text": "Ann Lee lives here", "entities": [[0, 5, "PER"]]}) + "\n", encoding="utf-8"
    )
    config = tmp_path / "ner.yaml"
    config.write_text(
        "name: ner\ntask_type: token_classification\nformat: jsonl\npath: .\npath_base: config\n"
        "file: ner.jsonl\ncolumns: {text: text, label: entities}\nschema: {labels: [PER, LOC]}\n",
        encoding="utf-8",
    )
    return ["data", "split", str(config), "--out", str(tmp_path / "s")], 2


def data_split_multilabel_unknown_label(tmp_path):
    (tmp_path / "ml.csv").write_text(
        'text,labels\na post,"hate,offensive"\nb post,"hate,spam"\n', encoding="utf-8"
    )
    config = tmp_path / "ml.yaml"
    config.write_text(
        "name: ml\ntask_type: multilabel\nformat: csv\npath: .\npath_base: config\nfile: ml.csv\n"
        "columns: {label: labels}\nschema: {labels: [hate, offensive]}\n",
        encoding="utf-8",
    )
    return ["data", "split", str(config), "--out", str(tmp_path / "s")], 2


def data_split_unknown_task_type(tmp_path):
    config = _dataset_yaml(tmp_path, "[pos, neg]")
    config.write_text("task_type: regression\n" + config.read_text(encoding="utf-8"), encoding="utf-8")
    return ["data", "split", str(config), "--out", str(tmp_path / "s")], 2


CASES: dict[str, Callable[[Path], Case]] = {
    "train-one-class": train_one_class,
    "train-hub-id-offline": train_hub_id_offline,
    "train-split-truncated": train_split_truncated,
    "train-split-schema-corrupted": train_split_schema_corrupted,
    "train-split-label-not-in-schema": train_split_label_not_in_schema,
    "train-zero-epochs": train_zero_epochs,
    "train-zero-cap": train_zero_cap,
    "predict-tfidf-weights-deleted": predict_tfidf_weights_deleted,
    "predict-tfidf-weights-truncated": predict_tfidf_weights_truncated,
    "serve-tfidf-weights-deleted": serve_tfidf_weights_deleted,
    "serve-tfidf-weights-truncated": serve_tfidf_weights_truncated,
    "predict-model-info-corrupted": predict_model_info_corrupted,
    "serve-model-info-corrupted": serve_model_info_corrupted,
    "predict-model-info-no-schema": predict_model_info_no_schema,
    "serve-model-info-no-schema": serve_model_info_no_schema,
    "predict-model-info-empty-schema": predict_model_info_empty_schema,
    "predict-model-family-not-string": predict_model_family_not_string,
    "predict-model-params-invalid": predict_model_params_invalid,
    "predict-encoder-weights-deleted": predict_encoder_weights_deleted,
    "predict-encoder-weights-truncated": predict_encoder_weights_truncated,
    "predict-encoder-config-corrupted": predict_encoder_config_corrupted,
    "serve-encoder-config-corrupted": serve_encoder_config_corrupted,
    "predict-batch-size-zero": predict_batch_size_zero,
    "predict-chunk-size-zero": predict_chunk_size_zero,
    "predict-ray-actors-zero": predict_ray_actors_zero,
    "predict-empty-file": predict_empty_file,
    "predict-jsonl-no-object": predict_jsonl_no_object,
    "predict-unterminated-quote": predict_unterminated_quote,
    "predict-parquet-int-text": predict_parquet_int_text,
    "predict-duplicate-ids": predict_duplicate_ids,
    "predict-out-is-input": predict_out_is_input,
    "data-check-empty-text": data_check_empty_text,
    "data-check-whitespace-text": data_check_whitespace_text,
    "data-check-empty-text-dropped": data_check_empty_text_dropped,
    "data-check-number-text": data_check_number_text,
    "data-check-duplicate-ids": data_check_duplicate_ids,
    "data-check-labels-empty": data_check_labels_empty,
    "data-check-labels-repeated": data_check_labels_repeated,
    "data-check-labels-ambiguous": data_check_labels_ambiguous,
    "data-split-negative-cap": data_split_negative_cap,
    "data-split-negative-seed": data_split_negative_seed,
    "data-split-out-is-file": data_split_out_is_file,
    "report-empty-folder": report_empty_folder,
    "report-not-a-folder": report_not_a_folder,
    "report-corrupt-predictions": report_corrupt_predictions,
    "report-negative-price": report_negative_price,
    "bench-negative-split-seed": bench_negative_split_seed,
    "instruct-train-zero-rank": instruct_train_zero_rank,
    "instruct-train-zero-max-examples": instruct_train_zero_max_examples,
    "data-check-merged-quotes": data_check_merged_quotes,
    "data-check-merged-quotes-quoting-none": data_check_merged_quotes_quoting_none,
    "predict-merged-quotes": predict_merged_quotes,
    "predict-merged-quotes-quoting-none": predict_merged_quotes_quoting_none,
    "data-split-yaml-number-label": data_split_yaml_number_label,
    "data-split-yaml-yes-no-labels": data_split_yaml_yes_no_labels,
    "data-check-zip-no-member": data_check_zip_no_member,
    "data-check-zip-member": data_check_zip_member,
    "data-check-zip-traversal": data_check_zip_traversal,
    "predict-zip-input": predict_zip_input,
    "data-split-conll-bad-tag": data_split_conll_bad_tag,
    "data-split-conll-unknown-type": data_split_conll_unknown_type,
    "data-split-conll-missing-tag": data_split_conll_missing_tag,
    "data-split-conll-empty": data_split_conll_empty,
    "data-split-conll-orphan-i-repaired": data_split_conll_orphan_i_repaired,
    "data-split-spans-off-tokens": data_split_spans_off_tokens,
    "data-split-multilabel-unknown-label": data_split_multilabel_unknown_label,
    "data-split-unknown-task-type": data_split_unknown_task_type,
    "serve-run-several-datasets": serve_run_several_datasets,
    "serve-run-no-kept-model": serve_run_no_kept_model,
    "predict-run-model-dir-escapes": predict_run_model_dir_escapes,
    "serve-dataset-not-a-run": serve_dataset_not_a_run,
    "export-run-unknown-dataset": export_run_unknown_dataset,
    "bench-save-models-bad-value": bench_save_models_bad_value,
}

DOC_CASES = doc_cases()


def test_the_doc_table_and_the_builders_list_the_same_cases():
    assert set(DOC_CASES) == set(CASES)


@pytest.mark.parametrize("slug", sorted(DOC_CASES))
def test_bad_input_gets_its_documented_message(slug, tmp_path):
    row = DOC_CASES[slug]
    assert slug in CASES, f"docs/bad-inputs.md lists {slug}, but CASES has no builder for it"
    argv, expected_code = CASES[slug](tmp_path)
    result = CliRunner().invoke(app, argv)
    output = result.output
    assert "Traceback" not in output, output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert result.exit_code == expected_code, output
    lines = [line for line in output.splitlines() if line.strip()]
    if expected_code != 0:
        errors = [line for line in lines if line.startswith("error:")]
        assert len(errors) == 1, output  # one error, on one line
        candidates = errors
    else:
        candidates = lines
    pattern = re.compile(row["message"])
    assert any(pattern.search(line) for line in candidates), f"no line matches {row['message']!r}:\n{output}"
