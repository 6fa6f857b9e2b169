"""core.layout: every path of a run folder, and what a folder written that way holds."""

from pathlib import Path

from socialens.core import layout as L
from socialens.core.layout import CellLayout, RunLayout, seed_dir_name, seed_of


def test_every_path_of_a_run(tmp_path):
    run = RunLayout.of(tmp_path / "runs", "exp")
    assert run.root == tmp_path / "runs" / "exp"
    assert run.experiment_file == run.root / "experiment.yaml"
    assert (run.summary_md, run.summary_json) == (run.root / "summary.md", run.root / "summary.json")
    assert run.split_file("ds") == run.root / "ds" / "split.json"
    assert run.test_file("ds") == run.root / "ds" / "test.jsonl"
    assert run.model_dir("ds", "tf") == run.root / "ds" / "tf"
    assert run.coverage_file("ds", "tf") == run.root / "ds" / "tf" / "tokenizer_coverage.json"
    cell = run.cell("ds", "tf", 3)
    assert cell == CellLayout(run.root / "ds" / "tf" / "seed-3", 3)
    assert cell.predictions == cell.dir / "predictions.jsonl"
    assert cell.metrics == cell.dir / "metrics.json"
    assert cell.error == cell.dir / "error.txt"
    assert cell.model == cell.dir / "model"
    assert RunLayout.report_files(tmp_path) == {
        "json": tmp_path / "report.json",
        "md": tmp_path / "report.md",
        "html": tmp_path / "report.html",
    }
    assert RunLayout(str(tmp_path)).root == Path(tmp_path)  # a string is a path
    assert (L.TASK_TYPE_KEY, L.DEFAULT_TASK_TYPE) == ("task_type", "classification")


def test_seed_folder_names():
    assert seed_dir_name(0) == "seed-0" and seed_of("seed-12") == 12
    assert seed_of(Path("x") / "seed-7") == 7
    assert seed_of("seed-x") is None and seed_of("model") is None and seed_of("seed-") is None


def test_what_a_run_holds_only_cells_with_predictions(tmp_path):
    run = RunLayout(tmp_path / "run")
    assert run.datasets() == [] and run.models("ds") == [] and run.cells("ds", "m") == []
    for dataset, model, seed in [("b", "m2", 10), ("b", "m2", 2), ("b", "m1", 0), ("a", "m", 0)]:
        cell = run.cell(dataset, model, seed)
        cell.dir.mkdir(parents=True)
        cell.predictions.write_text("{}\n")
    run.cell("b", "failed", 0).dir.mkdir(parents=True)  # a failed cell: error.txt only
    run.cell("b", "failed", 0).error.write_text("Traceback")
    (run.model_dir("b", "m1") / "seed-oops").mkdir()  # not a seed folder
    (run.model_dir("b", "m1") / "seed-oops" / "predictions.jsonl").write_text("{}\n")
    run.split_file("b").write_text("{}")  # files beside the folders are no datasets or models
    run.summary_md.write_text("|")
    (run.root / "empty").mkdir()
    assert run.datasets() == ["a", "b", "empty"]
    assert run.models("b") == ["m1", "m2"] and run.models("empty") == []
    assert [c.seed for c in run.cells("b", "m2")] == [2, 10]  # by seed, not by name
    assert run.cells("b", "failed") == []
