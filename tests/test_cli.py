import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from socialens.cli import app

FIXTURES = Path(__file__).parent / "fixtures" / "bench"
runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def test_help_lists_every_command_with_one_line_help():
    result = invoke("--help")
    assert result.exit_code == 0
    for command in ("bench", "data", "train", "predict", "models"):
        assert command in result.output


def test_data_check_prints_class_counts():
    result = invoke("data", "check", FIXTURES / "tiny.csv", "--labels", "belief,debunk,other")
    assert result.exit_code == 0, result.output
    assert "90 valid examples" in result.output
    for label in ("belief", "debunk", "other"):
        assert label in result.output


def test_data_check_unknown_label_is_one_line_error(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("text,label\nthis is fine,belief\nsomething else,maybe\n")
    result = invoke("data", "check", bad, "--labels", "belief,debunk,other")
    assert result.exit_code == 2
    lines = [line for line in result.output.strip().splitlines() if line.strip()]
    assert len(lines) == 1
    assert "bad.csv:3: unknown label in column 'label'" in lines[0] and "belief" in lines[0]
    assert "maybe" not in lines[0]  # the line and column are named; the file's contents are not echoed


MARKUP_LABELS = ("[/red]", "x:x:y")  # rich markup and an :emoji: code, if they were not plain text


def test_data_check_prints_labels_and_paths_as_plain_text(tmp_path):
    """Measured: a label `[/red]` crashed `data check` with rich.errors.MarkupError and `x:x:y`
    was shown as "x❌y"; labels, paths and messages are printed exactly as they are."""
    data = tmp_path / "[bold]odd:x: name.csv"
    data.write_text("text,label\nfirst text,[/red]\nsecond text,x:x:y\nthird text,x:x:y\n")
    for labels in (None, ",".join(MARKUP_LABELS)):  # inferred, and given on the command line
        result = invoke("data", "check", data, *(["--labels", labels] if labels else []))
        assert result.exit_code == 0, result.output
        assert f"{data}: 3 valid examples" in result.output
        assert "[/red]" in result.output and "x:x:y" in result.output and "\u274c" not in result.output
    data.write_text("text,label\nfirst text,[/red]\nsecond text,other\n")
    result = invoke("data", "check", data, "--labels", ",".join(MARKUP_LABELS))
    assert result.exit_code == 2, result.output
    assert [line for line in result.output.splitlines() if line.strip()] == [
        f"error: {data}:3: unknown label in column 'label'; expected one of [/red], x:x:y"
    ]
    missing = tmp_path / "[/red]:x:.csv"
    result = invoke("data", "check", missing)
    assert result.exit_code == 2 and result.output.strip() == f"error: {missing}: file not found"


def test_data_check_missing_file(tmp_path):
    result = invoke("data", "check", tmp_path / "nope.csv")
    assert result.exit_code == 2
    assert "nope.csv" in result.output


def test_split_train_predict_round_trip(tmp_path):
    splits = tmp_path / "splits"
    result = invoke("data", "split", FIXTURES / "tiny.csv", "--out", splits, "--metadata", "topic")
    assert result.exit_code == 0, result.output
    counts = {
        part: len((splits / f"{part}.jsonl").read_text().splitlines()) for part in ("train", "dev", "test")
    }
    assert counts == {"train": 63, "dev": 18, "test": 9}

    model_dir = tmp_path / "model"
    result = invoke("train", "tfidf", "--data", splits, "--out", model_dir)
    assert result.exit_code == 0, result.output
    assert "test macro-F1" in result.output

    inputs = tmp_path / "in.jsonl"
    texts = ["This has been debunked by every fact-checker", "Finally exposes the lie they sold us", "lunch"]
    inputs.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
    out = tmp_path / "out.jsonl"
    result = invoke("predict", model_dir, inputs, "--out", out)
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(records) == 3
    assert [r["label"] for r in records[:2]] == ["debunk", "belief"]
    assert all(abs(sum(v for k, v in r.items() if k.startswith("p_")) - 1) < 1e-6 for r in records)


def test_data_split_keeps_the_id_column_and_says_what_it_dropped(tmp_path):
    data = tmp_path / "mine.csv"
    rows = [("c1", "This was debunked years ago", "debunk"), ("c2", "This was debunked years ago", "debunk")]
    rows += [("c3", "THIS was debunked years ago!", "debunk"), ("c4", "ok", "belief")]
    rows += [
        (f"k{i}", f"comment number {i} about the claim", "belief" if i % 2 else "debunk") for i in range(12)
    ]
    data.write_text("comment_id,body,stance\n" + "".join(f"{i},{t},{label}\n" for i, t, label in rows))
    out = tmp_path / "splits"
    result = invoke(
        "data", "split", data, "--text", "body", "--label", "stance", "--id", "comment_id", "--out", out
    )
    assert result.exit_code == 0, result.output
    ids = {
        json.loads(line)["id"] for part in ("train", "dev", "test") for line in (out / f"{part}.jsonl").open()
    }
    assert ids == {"c1"} | {f"k{i}" for i in range(12)}  # the file's ids, not row-N
    lines = result.output.splitlines()
    assert (
        "  duplicates dropped (the first one kept): 2 = 1 exact + 1 differing only in case, punctuation or spacing"
        in lines
    )
    assert "  short texts dropped (under 3 characters): 1" in lines
    assert "  cap: none (the whole training split is used)" in lines
    assert "None" not in result.output

    result = invoke("data", "split", "builtin:reddit-misinfo-demo", "--id", "id", "--out", out)
    assert result.exit_code == 2 and "--id applies to a data file" in result.output


def test_train_rejects_an_option_of_another_family(tmp_path):
    result = invoke(
        "train", "tfidf", "--data", FIXTURES / "tiny.csv", "--epochs", "3", "--out", tmp_path / "m"
    )
    assert result.exit_code == 2
    assert "--epochs does not apply to the 'tfidf' family" in result.output


def noisy_copy_of_tiny(tmp_path: Path) -> Path:
    """tiny.csv with every fourth label moved to the next class: scores well below 1, so the
    numbers compared below are not all 1.000."""
    lines = (FIXTURES / "tiny.csv").read_text().splitlines()
    shifted = {"belief": "debunk", "debunk": "other", "other": "belief"}
    rows = [lines[0]]
    for index, line in enumerate(lines[1:]):
        head, _, rest = line.rpartition(",")  # ...,label,topic
        head, _, label = head.rpartition(",")
        rows.append(f"{head},{shifted[label] if index % 4 == 0 else label},{rest}")
    path = tmp_path / "noisy.csv"
    path.write_text("\n".join(rows) + "\n")
    return path


def test_train_prints_dev_and_test_scores_and_records_them(tmp_path):
    from socialens.classifiers.base import load_classifier, read_model_info
    from socialens.data.prepare import read_split
    from socialens.evaluation.metrics import compute_metrics

    splits = tmp_path / "splits"
    assert invoke("data", "split", noisy_copy_of_tiny(tmp_path), "--out", splits).exit_code == 0
    model_dir = tmp_path / "model"
    result = invoke("train", "tfidf", "--data", splits, "--out", model_dir)
    assert result.exit_code == 0, result.output
    recorded = read_model_info(model_dir)["evaluation"]
    split, model = read_split(splits), load_classifier(model_dir)
    for part, examples in (("dev", split.dev), ("test", split.test)):
        expected = compute_metrics(model.predict(examples), split.schema.names, n_bootstrap=1000)
        lo, hi = expected["ci"]["macro_f1"]
        line = (
            f"{part} macro-F1 {expected['macro_f1']:.3f} [95% CI {lo:.3f}, {hi:.3f}], "
            f"accuracy {expected['accuracy']:.3f} on {len(examples)} examples"
        )
        assert line in result.output.splitlines(), (line, result.output)
        assert recorded[part]["source"] == "socialens train"
        assert recorded[part]["macro_f1"] == expected["macro_f1"] and recorded[part]["n"] == len(examples)
    assert 0.2 < recorded["dev"]["macro_f1"] < 0.95  # the noise shows: a real score, not a constant
    assert (len(split.dev), len(split.test)) == (18, 9)


def test_export_onnx_refuses_a_non_encoder_directory_in_one_line(tmp_path):
    model_dir = tmp_path / "tf"
    assert invoke("train", "tfidf", "--data", FIXTURES / "tiny.csv", "--out", model_dir).exit_code == 0
    result = invoke("export", "onnx", model_dir)
    assert result.exit_code == 2
    assert result.output.strip() == (
        f"error: {model_dir}: ONNX export needs an 'encoder' model, this one is 'tfidf'"
    )
    assert not (model_dir / "onnx").exists()


def _chat_jsonl(folder: Path, n: int = 4) -> Path:
    from socialens.tuning.instructions import chat_messages

    folder.mkdir(parents=True, exist_ok=True)
    rows = [
        {
            "id": f"x{i}",
            "dataset": "tiny",
            "label": label,
            "instruction_index": 0,
            "messages": chat_messages("Label the comment: belief or debunk.", f"comment {i}", label),
        }
        for i, label in enumerate(["belief", "debunk"] * (n // 2))
    ]
    (folder / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder


def test_instruct_train_qlora_without_a_gpu_is_one_line_error(tmp_path):
    import torch

    if torch.cuda.is_available():
        return
    result = invoke("instruct", "train", _chat_jsonl(tmp_path / "data"), "--out", tmp_path / "m", "--qlora")
    assert result.exit_code == 2
    assert "qlora=True needs the bitsandbytes package and a CUDA GPU" in result.output
    assert "Traceback" not in result.output


@pytest.mark.slow
def test_instruct_train_writes_a_loadable_adapter(tmp_path):
    from socialens.classifiers.base import load_classifier

    out = tmp_path / "lens"
    result = invoke(
        "instruct", "train", _chat_jsonl(tmp_path / "data"), "--out", out, "--lora-r", "4",
        "--batch-size", "4", "--epochs", "1", "--max-length", "128", "--threads", "1",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "1 steps in" in result.output
    assert (out / "adapter" / "adapter_model.safetensors").is_file()
    assert json.loads((out / "train_report.json").read_text())["examples"] == 4
    model = load_classifier(out)
    assert model.schema.names == ["belief", "debunk"]
    assert model.instructions == ["Label the comment: belief or debunk."]


def test_train_and_predict_show_plain_progress_lines_when_output_is_no_terminal(tmp_path):
    splits, model_dir = tmp_path / "splits", tmp_path / "model"
    assert invoke("data", "split", FIXTURES / "tiny.csv", "--out", splits).exit_code == 0
    result = invoke("train", "encoder", "--data", splits, "--out", model_dir, "--epochs", "1")
    assert result.exit_code == 0, result.output
    steps = [line for line in result.output.splitlines() if line.startswith("train: ")]
    assert steps and re.match(r"train: (\d+)/\1 steps \(100%\), ", steps[-1])  # 63 examples, batches of 16
    assert "\x1b[" not in result.output  # CliRunner is no terminal: plain lines, no control codes

    inputs, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    inputs.write_text("".join(json.dumps({"text": f"text number {i}"}) + "\n" for i in range(5)))
    result = invoke("predict", model_dir, inputs, "--out", out)
    assert result.exit_code == 0, result.output
    assert re.search(r"^predict: 5 rows \(100% of the input\), [\d,]+ rows/s, ", result.output, re.M)
    assert "\x1b[" not in result.output


def test_bench_prints_the_recommendation_and_predict_takes_the_run_folder(tmp_path):
    (tmp_path / "tiny.csv").write_bytes((FIXTURES / "tiny.csv").read_bytes())
    (tmp_path / "tiny.yaml").write_text(
        (FIXTURES / "tiny.yaml").read_text().replace("path: .", f"path: {tmp_path}")
    )
    (tmp_path / "exp.yaml").write_text(
        f"name: t\noutput_dir: {tmp_path / 'runs'}\ndatasets: [{tmp_path / 'tiny.yaml'}]\n"
        "models:\n  - {id: tf, family: tfidf}\n  - {id: weak, family: tfidf, max_features: 3}\n"
        "seeds: [0]\nbootstrap: 100\nenergy: {enabled: false}\n"
    )
    bench = invoke("bench", tmp_path / "exp.yaml")
    assert bench.exit_code == 0, bench.output
    output = bench.output.replace("\n", " ")
    # the sentence, the pairwise difference and the weakest classes come before the table
    sentence = output.index("tiny: recommended model tf: best macro-F1, 1.000")
    assert sentence < output.index("tf - weak: +") < output.index("weakest class per model (F1): tf ")
    assert output.index("weakest class per model") < output.index("test-set scores")
    assert "kept: tiny/tf/seed-0/model (with MODEL_CARD.md)" in output
    run = tmp_path / "runs" / "t"
    predicted = invoke(
        "predict", run, FIXTURES / "tiny.csv", "--out", tmp_path / "out.jsonl", "--label", "label"
    )
    assert predicted.exit_code == 0, predicted.output
    assert "using the recommended model of tiny, tf" in predicted.output.replace("\n", " ")
    assert len((tmp_path / "out.jsonl").read_text().splitlines()) == 90
    exported = invoke("export", "onnx", run)  # the recommended model is a TF-IDF: no ONNX path
    assert (
        exported.exit_code == 2
        and "ONNX export needs an 'encoder' model, this one is 'tfidf'" in exported.output
    )
