"""build_report for every task: named entities, label sets and summaries, from hand-made records
in the run layout bench writes, scored by the real task modules (seqeval-equal entity metrics,
rouge-score), with known answers."""

import importlib.util
import json
import re
import sys
from pathlib import Path

import pytest
import yaml

from socialens.core.layout import RunLayout
from socialens.core.registry import TASKS
from socialens.core.types import PredictionRecord, Status, write_records
from socialens.evaluation.report import build_report

TYPES = ["PER", "LOC"]
SENTENCES = {  # id -> (tokens, gold tags)
    "s1": (["John", "lives", "in", "Paris"], ["B-PER", "O", "O", "B-LOC"]),
    "s2": (["Mary", "met", "Bob"], ["B-PER", "O", "B-PER"]),
    "s3": (["Rome", "is", "old"], ["B-LOC", "O", "O"]),
    "s4": (["It", "rains"], ["O", "O"]),
}
NER_MODELS = {  # model -> id -> (status, predicted tags, hallucinated entities)
    "encoder": {
        "s1": ("ok", ["B-PER", "O", "O", "B-LOC"], []),
        "s2": ("ok", ["B-PER", "O", "B-PER"], []),
        "s3": ("ok", ["B-PER", "O", "O"], []),  # Rome as a person: a type error
        "s4": ("ok", ["O", "O"], []),
    },
    "llm": {
        "s1": ("ok", ["B-PER", "O", "O", "B-LOC"], [{"text": "Mars", "type": "LOC"}]),  # not in the text
        "s2": ("invalid", None, []),
        "s3": ("ok", ["B-LOC", "O", "O"], []),
        "s4": ("ok", ["O", "O"], []),
    },
}
LABELS = ["fake", "hate", "offensive"]
POSTS = {"p1": ["fake"], "p2": ["hate", "offensive"], "p3": [], "p4": ["offensive"]}
ML_PREDICTED = {"p1": ["fake"], "p2": ["hate"], "p3": ["fake"], "p4": ["offensive"]}
SUMMARIES = {"a1": "the minister resigned on monday", "a2": "floods hit the northern city"}


def write_dataset(run: RunLayout, name, task_type, labels, tests, cells, family="x"):
    """One dataset of a run as bench writes it: split.json (schema, stats, task type), test.jsonl
    and, per (model, seed), predictions.jsonl and metrics.json (costs, family)."""
    schema = {"name": "u", "labels": [{"name": n, "description": "", "aliases": []} for n in labels]}
    run.dataset_dir(name).mkdir(parents=True)
    split = {"schema": schema, "stats": {"n_test": len(tests)}, "task_type": task_type}
    run.split_file(name).write_text(json.dumps(split), encoding="utf-8")
    run.test_file(name).write_text("".join(json.dumps(t) + "\n" for t in tests), encoding="utf-8")
    for (model, seed), records in cells.items():
        cell = run.cell(name, model, seed)
        cell.dir.mkdir(parents=True)
        write_records(cell.predictions, records)
        costs = {"train_time_s": 2.0, "predict_time_s": 0.5, "n_test": len(records)}
        cell.metrics.write_text(json.dumps({"family": family, "costs": costs}), encoding="utf-8")


def ner_records(model: str) -> list[PredictionRecord]:
    records = []
    for i, (tokens, gold) in SENTENCES.items():
        status, predicted, hallucinated = NER_MODELS[model][i]
        details = {"tokens": tokens}
        if hallucinated:
            details |= {"hallucinated": len(hallucinated), "hallucinated_entities": hallucinated}
        records.append(
            PredictionRecord(
                i,
                gold,
                predicted,
                Status(status),
                details=details,
                metadata={"language": "en"},
                latency_s=0.01,
            )
        )
    return records


def make_task_run(root: Path) -> Path:
    run = RunLayout(root / "tasks")
    run.root.mkdir(parents=True)
    experiment = {"name": "tasks", "bootstrap": 50, "slice_by": ["language"], "models": []}
    run.experiment_file.write_text(yaml.safe_dump(experiment), encoding="utf-8")
    tests = [{"id": i, "text": " ".join(t), "label": g, "tokens": t} for i, (t, g) in SENTENCES.items()]
    write_dataset(
        run, "ner", "token_classification", TYPES, tests, {(m, 0): ner_records(m) for m in NER_MODELS}
    )
    ml = {
        ("tfidf", seed): [
            PredictionRecord(i, gold, ML_PREDICTED[i] if seed == 0 else gold, metadata={"language": "hi"})
            for i, gold in POSTS.items()
        ]
        for seed in (0, 1)
    }
    tests = [{"id": i, "text": f"post {i}", "label": g} for i, g in POSTS.items()]
    write_dataset(run, "hostility", "multilabel", LABELS, tests, ml)
    summaries = {
        ("exact", 0): [PredictionRecord(i, s, s) for i, s in SUMMARIES.items()],
        ("half", 0): [
            PredictionRecord("a1", SUMMARIES["a1"], SUMMARIES["a1"]),
            PredictionRecord("a2", SUMMARIES["a2"], None, Status.REFUSED, raw_output="I cannot summarise."),
        ],
    }
    tests = [{"id": i, "text": f"article {i}", "label": s} for i, s in SUMMARIES.items()]
    write_dataset(run, "xlsum", "summarisation", ["summary"], tests, summaries)
    return run.root


@pytest.fixture(scope="module")
def task_report(tmp_path_factory):
    run_dir = make_task_run(tmp_path_factory.mktemp("report-tasks"))
    return build_report([run_dir]), run_dir


def _cells(report, dataset, model):
    rows = report["datasets"][dataset]["table"]["rows"]
    return next(r["cells"] for r in rows if r["key"].endswith("/" + model))


def test_named_entities_leaderboard(task_report):
    report, _ = task_report
    ner = report["datasets"]["ner"]
    assert ner["task_type"] == "token_classification"
    titles = [c["title"] for c in ner["table"]["columns"]]
    assert titles[:10] == [
        "model",
        "seeds",
        "micro-F1",
        "95% CI",
        "micro precision",
        "micro recall",
        "macro-F1",
        "hallucination rate",
        "F1 PER",
        "F1 LOC",
    ]
    assert titles[10:13] == ["refused", "invalid", "error"]
    encoder, llm = _cells(report, "ner", "encoder"), _cells(report, "ner", "llm")
    # encoder: 5 gold entities, 5 predicted, 4 right (Rome typed PER); PER 3/4 right of 3, LOC 1 of 2
    assert encoder["micro_f1"]["value"] == pytest.approx(0.8) and encoder["micro_f1"]["text"] == "0.800"
    assert encoder["f1:PER"]["value"] == pytest.approx(6 / 7)
    assert encoder["f1:LOC"]["value"] == pytest.approx(2 / 3)
    assert encoder["macro_f1"]["value"] == pytest.approx((6 / 7 + 2 / 3) / 2)
    # llm: s2 invalid (its two people missed), 3 predicted all right, Mars hallucinated: 1 of 4 listed
    assert llm["micro_precision"]["value"] == pytest.approx(1.0)
    assert llm["micro_recall"]["value"] == pytest.approx(0.6)
    assert llm["micro_f1"]["value"] == pytest.approx(0.75)
    assert llm["hallucination_rate"]["value"] == pytest.approx(0.25)
    assert llm["invalid_rate"]["text"] == "25.0%" and encoder["invalid_rate"]["text"] == "0.0%"
    # a rate is better low: the encoder hallucinated nothing
    assert encoder["hallucination_rate"]["best"] and not llm["hallucination_rate"]["best"]
    assert encoder["micro_f1"]["best"] and llm["micro_precision"]["best"]
    ci = encoder["micro_f1_ci"]["value"]
    assert ci[0] <= 0.8 <= ci[1] and encoder["micro_f1_ci"]["text"].startswith("[")
    rows = {r["model"]: r for r in report["rows"]}
    assert rows["llm"]["task_type"] == "token_classification" and rows["llm"]["confusion"] is None
    assert rows["llm"]["aggregate"]["scalar_metrics"][-1] == "hallucination_rate"


def test_named_entities_task_tables_and_no_error_browser(task_report):
    report, run_dir = task_report
    ner = report["datasets"]["ner"]
    assert ner["error_browser"] == []  # the worst sentences are the task's own table
    tables = {(t["model"], t["title"]): t for t in ner["task_tables"]}
    assert set(tables) == {(m, t) for m in NER_MODELS for t in ("Entity types", "Worst sentences")}
    worst = tables[("llm", "Worst sentences")]
    assert worst["seed"] == 0 and worst["headers"][:3] == ["id", "errors", "status"]
    assert [row[:3] for row in worst["rows"]] == [["s2", "2", "invalid"], ["s1", "1", "ok"]]
    assert "hallucinated: Mars (LOC)" in worst["rows"][1][5]
    assert tables[("encoder", "Worst sentences")]["rows"][0][:2] == ["s3", "2"]
    per_type = tables[("encoder", "Entity types")]["rows"]
    assert per_type[0][:4] == ["PER", "0.750", "1.000", "0.857"]
    md = (run_dir / "report.md").read_text(encoding="utf-8")
    assert "### Worst sentences (llm, seed 0)" in md and "| s2 | 2 | invalid |" in md
    assert "Worst-confused examples" not in md
    # slices by language: the task's own metrics on each slice
    slice_row = next(i for i in ner["slices"]["language"] if i["model"] == "llm")
    assert slice_row["micro_f1"] == pytest.approx(0.75) and slice_row["invalid_rate"] == pytest.approx(0.25)
    assert "| language | model | n | micro-F1 | micro precision |" in md


def test_label_sets_per_label_columns_and_losses(task_report):
    report, _ = task_report
    table = report["datasets"]["hostility"]["table"]
    assert table["labels"] == LABELS
    titles = [c["title"] for c in table["columns"]]
    assert titles[1:5] == ["seeds", "macro-F1", "95% CI", "micro-F1"]
    assert "hamming loss" in titles and "F1 offensive" in titles
    assert next(c for c in table["columns"] if c["key"] == "hamming_loss")["better"] == "min"
    # nine scalar metrics: the headline and four more in the scores table, the rest in their own
    others = [m for m in TASKS.get("multilabel").scalar_metrics if m != "macro_f1"]
    groups = {g["title"]: [c["key"] for c in g["columns"]] for g in table["groups"]}
    assert list(groups) == ["Scores", "More scores", "F1 per class", "Cost and speed"]
    assert groups["Scores"][:8] == ["model", "seeds", "macro_f1", "macro_f1_ci", *others[:4]]
    assert groups["More scores"] == ["model", *others[4:]]
    assert {k for keys in groups.values() for k in keys} == {c["key"] for c in table["columns"]}
    cells = _cells(report, "hostility", "tfidf")
    # seed 0: fake P 1/2 R 1 -> 2/3; hate 1; offensive P 1 R 1/2 -> 2/3; seed 1 perfect
    assert cells["f1:fake"]["value"] == pytest.approx((2 / 3 + 1) / 2)
    assert cells["f1:hate"]["value"] == pytest.approx(1.0)
    assert cells["seeds"]["text"] == "2"
    assert cells["macro_f1"]["text"] == f"{(7 / 9 + 1) / 2:.3f} ± {abs(7 / 9 - 1) / 2**0.5:.3f}"
    # two wrong label decisions of 12 in seed 0, none in seed 1
    assert cells["hamming_loss"]["value"] == pytest.approx((2 / 12 + 0) / 2)


def test_summaries_rouge_columns_and_tables(task_report):
    report, run_dir = task_report
    xlsum = report["datasets"]["xlsum"]
    assert xlsum["task_type"] == "summarisation" and xlsum["headline"]["title"] == "ROUGE-2"
    titles = [c["title"] for c in xlsum["table"]["columns"]]
    assert titles[:6] == ["model", "seeds", "ROUGE-2", "95% CI", "ROUGE-1", "ROUGE-L"]
    assert not any(t.startswith("F1 ") for t in titles) and xlsum["table"]["labels"] == []
    exact, half = _cells(report, "xlsum", "exact"), _cells(report, "xlsum", "half")
    for name in ("rouge1", "rouge2", "rougeL"):
        assert exact[name]["value"] == pytest.approx(1.0)
        assert half[name]["value"] == pytest.approx(0.5)  # a refusal scores 0
    assert half["refused_rate"]["text"] == "50.0%"
    titles = {t["title"] for t in xlsum["task_tables"]}
    assert "Summary lengths (words)" in titles and any(t.startswith("Worst summaries") for t in titles)
    assert xlsum["error_browser"] == []
    md = (run_dir / "report.md").read_text(encoding="utf-8")
    assert "| model | seeds | ROUGE-2 | 95% CI | ROUGE-1 | ROUGE-L |" in md


def test_figures_per_task(task_report):
    _, run_dir = task_report
    html = (run_dir / "report.html").read_text(encoding="utf-8")
    captions = re.findall(r'<div class="caption">([^<]+)</div>', html)
    assert captions == [
        # datasets in name order: hostility, ner, xlsum
        "Macro-F1 per model (95% CI)",
        "F1 per class",
        "Cost per 1,000 classifications vs macro-F1 (Pareto front)",
        "Micro-F1 per model (95% CI)",
        "F1 per class",  # the per-type heat map
        "Cost per 1,000 classifications vs micro-F1 (Pareto front)",
        "ROUGE-2 per model (95% CI)",
        "Cost per 1,000 classifications vs ROUGE-2 (Pareto front)",
    ]
    assert "Confusion matrices" not in html
    assert '<table class="task">' in html and "hallucinated: Mars (LOC)" in html
    assert "I cannot summarise." not in html  # raw outputs only in the classification error browser


def test_task_type_from_metrics_json_when_split_json_is_missing(tmp_path):
    run_dir = make_task_run(tmp_path)
    layout = RunLayout(run_dir)
    layout.split_file("ner").unlink()
    for model in NER_MODELS:
        cell = layout.cell("ner", model, 0)
        stored = json.loads(cell.metrics.read_text()) | {"task_type": "token_classification", "labels": TYPES}
        cell.metrics.write_text(json.dumps(stored))
    report = build_report([run_dir], tmp_path / "out")
    assert report["datasets"]["ner"]["task_type"] == "token_classification"
    assert report["datasets"]["ner"]["table"]["labels"] == TYPES


def _report_module():
    if "report_test_helpers" not in sys.modules:
        spec = importlib.util.spec_from_file_location(
            "report_test_helpers", Path(__file__).parent / "test_report.py"
        )
        module = importlib.util.module_from_spec(spec)
        sys.modules["report_test_helpers"] = module
        spec.loader.exec_module(module)
    return sys.modules["report_test_helpers"]


@pytest.mark.slow
@pytest.mark.parametrize("width", [1280, 2000])
def test_task_report_fits_the_page_in_headless_chromium(task_report, tmp_path, width, chromium):
    _, run_dir = task_report
    helpers = _report_module()
    layout = helpers._layout(chromium, tmp_path, run_dir / "report.html", width)
    assert layout["innerWidth"] == width and layout["tables"] >= 10
    assert layout["overflowing"] == [], f"tables wider than the page at {width} px"
    assert layout["scrollWidth"] <= layout["clientWidth"]


def test_every_task_gets_a_recommendation_through_its_own_metric(task_report):
    report, _ = task_report
    recs = {rec["dataset"]: rec for rec in report["recommendations"]}
    assert {d: (r["metric"], r["recommended"]) for d, r in recs.items()} == {
        "ner": ("micro_f1", "encoder"),
        "hostility": ("macro_f1", "tfidf"),
        "xlsum": ("rouge2", "exact"),
    }
    [ner] = recs["ner"]["comparisons"]
    assert ner["model"] == "llm" and ner["difference"] == pytest.approx(0.05) and ner["mcnemar"] is None
    assert ner["significant"] is False and ner["ci"][0] <= 0 <= ner["ci"][1]  # 2 sentences: wide
    [xlsum] = recs["xlsum"]["comparisons"]
    assert xlsum["difference"] == pytest.approx(0.5) and xlsum["n_bootstrap"] == 50
    assert "the only model with results" in recs["hostility"]["sentence"]
    weakest = {m["model"]: m["weakest_class"] for m in recs["ner"]["models"]}
    assert weakest == {
        "encoder": {"label": "LOC", "f1": pytest.approx(2 / 3)},
        "llm": {"label": "PER", "f1": 0.5},
    }
    assert all(m["weakest_class"] is None for m in recs["xlsum"]["models"])  # no classes
    assert recs["xlsum"]["weakest"] is None
