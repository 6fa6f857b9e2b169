import io
import json
from pathlib import Path

import pytest
from rich.console import Console

from socialens.bench import run_bench
from socialens.core.errors import ConfigError
from socialens.core.types import read_records
from socialens.experiment import load_experiment

FIXTURES = Path(__file__).parent / "fixtures" / "bench"


def write_tiny_dataset(tmp_path: Path) -> Path:
    """The fixture dataset YAML with its data beside it: a dataset YAML reads only under the data
    root or its own folder."""
    (tmp_path / "tiny.csv").write_bytes((FIXTURES / "tiny.csv").read_bytes())
    dataset = (FIXTURES / "tiny.yaml").read_text().replace("path: .", f"path: {tmp_path}")
    (tmp_path / "tiny.yaml").write_text(dataset)
    return tmp_path / "tiny.yaml"


def make_experiment(tmp_path, models: str, seeds: str = "[0, 1]"):
    write_tiny_dataset(tmp_path)
    (tmp_path / "exp.yaml").write_text(
        f"name: t\noutput_dir: {tmp_path / 'runs'}\ndatasets: [{tmp_path / 'tiny.yaml'}]\n"
        f"models:\n{models}\nseeds: {seeds}\nbootstrap: 200\nslice_by: [topic]\n"
    )
    return load_experiment(tmp_path / "exp.yaml")


TFIDF = "  - {id: tf, family: tfidf}\n"
BROKEN = "  - {id: broken, family: encoder, model: /nonexistent/model-folder}\n"


def test_grid_writes_records_metrics_and_summary(tmp_path):
    experiment = make_experiment(tmp_path, TFIDF)
    result = run_bench(experiment, console=Console(quiet=True))
    run_dir = tmp_path / "runs" / "t"
    assert [c.status for c in result.cells] == ["done", "done"]
    for seed in (0, 1):
        cell = run_dir / "tiny" / "tf" / f"seed-{seed}"
        records = read_records(cell / "predictions.jsonl")
        metrics = json.loads((cell / "metrics.json").read_text())
        assert len(records) == metrics["n"] == metrics["costs"]["n_test"] > 0
        assert all(r.status.value == "ok" for r in records)
        assert metrics["macro_f1"] > 0.8  # the fixture is keyword-separable
        assert set(metrics["slices"]["topic"]) <= {"climate", "vaccines"}
        costs = metrics["costs"]
        assert costs["train_energy_kwh"] > 0 and costs["predict_energy_kwh"] > 0
        assert costs["predict_co2_kg"] > 0 and costs["energy_country"] == "USA"
        assert "CPU" in costs["energy_method"] and costs["energy_error"] is None
    summary = json.loads((run_dir / "summary.json").read_text())
    row = summary["rows"][0]
    assert row["model"] == "tf" and row["n_seeds"] == 2
    table = (run_dir / "summary.md").read_text()
    assert "F1 belief" in table and "| tiny | tf | 2 |" in table


def test_rerun_skips_finished_cells_unless_forced(tmp_path):
    experiment = make_experiment(tmp_path, TFIDF, seeds="[0]")
    run_bench(experiment, console=Console(quiet=True))
    again = run_bench(experiment, console=Console(quiet=True))
    assert [c.status for c in again.cells] == ["skipped"]
    forced = run_bench(experiment, force=True, console=Console(quiet=True))
    assert [c.status for c in forced.cells] == ["done"]


def test_changed_model_params_invalidate_a_finished_cell(tmp_path):
    run_bench(make_experiment(tmp_path, TFIDF, seeds="[0]"), console=Console(quiet=True))
    changed = make_experiment(tmp_path, "  - {id: tf, family: tfidf, C: 0.5}\n", seeds="[0]")
    assert [c.status for c in run_bench(changed, console=Console(quiet=True)).cells] == ["done"]


def test_failing_cell_is_reported_and_the_grid_goes_on(tmp_path):
    experiment = make_experiment(tmp_path, BROKEN + TFIDF, seeds="[0]")
    result = run_bench(experiment, console=Console(quiet=True))
    statuses = {c.model: c.status for c in result.cells}
    assert statuses == {"broken": "failed", "tf": "done"}
    run_dir = tmp_path / "runs" / "t"
    assert (run_dir / "tiny" / "broken" / "seed-0" / "error.txt").is_file()
    assert "Failed cells" in (run_dir / "summary.md").read_text()


def test_terminal_summary_never_cuts_a_model_name(tmp_path):
    import io

    from socialens.bench import print_summary
    from socialens.evaluation.tables import mean_std_text

    long_id = "smollm2-zero-shot-scored-135m-instruct"
    models = f"  - {{id: {long_id}, family: tfidf}}\n  - {{id: tf, family: tfidf, C: 0.5}}\n"
    rows = run_bench(make_experiment(tmp_path, models, seeds="[0]"), console=Console(quiet=True)).summary
    for width in (80, 60):
        out = io.StringIO()
        print_summary(rows, Console(file=out, width=width, force_terminal=True, color_system=None))
        lines = out.getvalue().splitlines()
        tables = sum(line.startswith("┏") for line in lines)
        assert tables > 1  # too wide for one: split, each part repeating the model column
        assert sum(f"│ {long_id} │" in line for line in lines) == tables
        assert all(len(line) <= width for line in lines) and "…" not in out.getvalue()
        for column in ("seeds", "macro-F1", "95% CI", "accuracy", "flags", "belief", "debunk", "other"):
            assert sum(column in line for line in lines if line.startswith("┃")) == 1, column  # once each
    macro_f1 = rows[0]["aggregate"]["macro_f1"]
    assert mean_std_text(macro_f1["mean"], macro_f1["std"], 1) in out.getvalue()
    assert "±" not in out.getvalue()  # one seed: no spread shown, nor promised in the title
    wide = io.StringIO()
    print_summary(rows, Console(file=wide, width=250, force_terminal=True, color_system=None))
    assert sum(line.startswith("┏") for line in wide.getvalue().splitlines()) == 1


@pytest.mark.slow
def test_demo_config_loads():
    experiment = load_experiment(Path(__file__).parents[1] / "configs" / "demo.yaml")
    assert [m.family for m in experiment.models] == ["tfidf", "encoder", "prompted", "prompted"]
    prompted = [m.params for m in experiment.models if m.family == "prompted"]
    assert [(p["backend"], p["decoding"], p["wording"]) for p in prompted] == [
        ("llamacpp", "scored", "universal"),
        ("llamacpp", "scored", "topic"),
    ]


def test_test_sample_is_stratified_and_fixed(tmp_path):
    experiment = make_experiment(tmp_path, TFIDF, seeds="[0]")
    experiment.datasets[0].test_sample = 6
    run_bench(experiment, console=Console(quiet=True))
    cell = tmp_path / "runs" / "t" / "tiny" / "tf" / "seed-0"
    records = read_records(cell / "predictions.jsonl")
    assert len(records) == 6
    assert sorted(r.gold for r in records) == ["belief", "belief", "debunk", "debunk", "other", "other"]
    stats = json.loads((tmp_path / "runs" / "t" / "tiny" / "split.json").read_text())["stats"]
    assert stats["test_before_sample"] == 9 and stats["test_sample"] == 6
    # the class counts describe the test set evaluated, and the one it was sampled from
    assert stats["class_counts"]["test"] == {"belief": 2, "debunk": 2, "other": 2}
    assert sum(stats["class_counts"]["test_before_sample"].values()) == 9
    assert stats["rows_after"]["test"] == 6


def test_a_dataset_that_cannot_load_fails_its_cells_and_the_grid_goes_on(tmp_path):
    experiment = make_experiment(tmp_path, TFIDF, seeds="[0]")
    missing = experiment.datasets[0].model_copy(update={"config": str(tmp_path / "missing.yaml")})
    experiment.datasets.insert(0, missing)
    result = run_bench(experiment, console=Console(quiet=True))
    assert [c.status for c in result.cells] == ["failed", "done"]
    assert "missing.yaml" in result.cells[0].error


def test_official_metric_is_scored_in_metrics_summary_and_report(tmp_path):
    from socialens.evaluation.report import build_report

    write_tiny_dataset(tmp_path)
    (tmp_path / "exp.yaml").write_text(
        f"name: t\noutput_dir: {tmp_path / 'runs'}\n"
        f"datasets: [{{config: {tmp_path / 'tiny.yaml'}, official_metric: f1_belief}}]\n"
        f"models:\n{TFIDF}seeds: [0]\nbootstrap: 0\n"
    )
    run_bench(load_experiment(tmp_path / "exp.yaml"), console=Console(quiet=True))
    run_dir = tmp_path / "runs" / "t"
    metrics = json.loads((run_dir / "tiny" / "tf" / "seed-0" / "metrics.json").read_text())
    belief = metrics["per_class"]["belief"]["f1"]
    assert metrics["official_metric"] == {"name": "f1_belief", "value": belief}
    row = json.loads((run_dir / "summary.json").read_text())["rows"][0]
    assert row["official_metric"]["value"] == pytest.approx(belief)
    report = build_report([run_dir], tmp_path / "report")
    table = report["datasets"]["tiny"]["table"]
    assert "official: f1_belief" in [c["title"] for c in table["columns"]]
    assert table["rows"][0]["cells"]["official"]["value"] == pytest.approx(belief)


def test_a_bad_official_metric_override_names_the_field(tmp_path):
    write_tiny_dataset(tmp_path)
    (tmp_path / "exp.yaml").write_text(
        f"name: t\noutput_dir: {tmp_path / 'runs'}\n"
        f"datasets: [{{config: {tmp_path / 'tiny.yaml'}, official_metric: f1_Belief}}]\n"
        f"models:\n{TFIDF}seeds: [0]\n"
    )
    result = run_bench(load_experiment(tmp_path / "exp.yaml"), console=Console(quiet=True))
    assert [c.status for c in result.cells] == ["failed"]
    assert "field 'official_metric': unknown metric 'f1_Belief'" in result.cells[0].error


def _fault_server_module():
    """tests/llm/fault_server.py: a real OpenAI-compatible HTTP server on 127.0.0.1 with faults."""
    import importlib.util
    import sys

    if "fault_server" not in sys.modules:
        path = Path(__file__).parent / "llm" / "fault_server.py"
        spec = importlib.util.spec_from_file_location("fault_server", path)
        module = importlib.util.module_from_spec(spec)
        sys.modules["fault_server"] = module
        spec.loader.exec_module(module)
    return sys.modules["fault_server"]


def test_a_rerun_resends_exactly_the_failed_prompts_and_rewrites_the_cell(tmp_path, monkeypatch):
    """A cell whose LLM calls failed (HTTP 500 after the retries) is not finished: a plain re-run
    sends exactly the prompts of its error records (the rest come from the response cache) and
    rewrites the cell without error records; --force still starts over."""
    from socialens.llm.openai_probe import PROBE_MESSAGES

    fault_server = _fault_server_module()
    monkeypatch.setenv("SOCIALENS_TEST_BENCH_KEY", "bench-key")
    with fault_server.FaultServer(api_key="bench-key") as server:
        failing = {"on": True}
        failed_prompts: set[str] = set()

        def plan(attempt, body):  # every third prompt fails, on every attempt, while "on"
            prompt = body["messages"][-1]["content"]
            if failing["on"] and sum(prompt.encode()) % 3 == 0 and body["messages"] != PROBE_MESSAGES:
                failed_prompts.add(prompt)
                return fault_server.Status(500)
            return fault_server.OK

        server.plan = plan
        model = (
            f"  - {{id: api, family: prompted, backend: openai, model: fake, base_url: '{server.base_url}',"
            " api_key_env: SOCIALENS_TEST_BENCH_KEY, decoding: constrained, max_retries: 1, timeout_s: 5,"
            f" cache_path: '{tmp_path / 'cache.sqlite'}', backend_options: {{backoff_base_s: 0}}}}\n"
        )
        # the fixture data copied beside the dataset YAML, so no path policy is in the way
        (tmp_path / "tiny.csv").write_bytes((FIXTURES / "tiny.csv").read_bytes())
        dataset = (FIXTURES / "tiny.yaml").read_text().replace("path: .", f"path: {tmp_path}")
        (tmp_path / "tiny.yaml").write_text(dataset)
        (tmp_path / "exp.yaml").write_text(
            f"name: t\noutput_dir: {tmp_path / 'runs'}\ndatasets: [{tmp_path / 'tiny.yaml'}]\n"
            f"models:\n{model}seeds: [0]\nbootstrap: 0\n"
        )
        experiment = load_experiment(tmp_path / "exp.yaml")
        predictions = tmp_path / "runs" / "t" / "tiny" / "api" / "seed-0" / "predictions.jsonl"

        first = run_bench(experiment, console=Console(quiet=True))
        records = read_records(predictions)
        failed = [r for r in records if r.status.value == "error"]
        assert [c.status for c in first.cells] == ["done"]
        assert 0 < len(failed) < len(records) and all("HTTP 500" in r.error for r in failed)
        texts = [body for body in server.requests if body["messages"] != PROBE_MESSAGES]
        assert len(texts) == len(records) + len(failed)  # one retry per failed prompt
        assert len(server.requests) == len(texts) + 1  # and one probe, for the constrained form
        assert len(failed_prompts) == len(failed)

        failing["on"] = False
        sent_before = len(server.requests)
        again = run_bench(experiment, console=Console(quiet=True))
        resent = [
            body["messages"][-1]["content"]
            for body in server.requests[sent_before:]
            if body["messages"] != PROBE_MESSAGES  # a new backend: probed again
        ]
        assert sorted(resent) == sorted(failed_prompts)  # exactly those, each once
        assert [c.status for c in again.cells] == ["done"]
        rewritten = read_records(predictions)
        assert [r.id for r in rewritten] == [r.id for r in records]
        assert all(r.status.value == "ok" for r in rewritten)
        metrics = json.loads((predictions.parent / "metrics.json").read_text())
        assert metrics["status"]["rates"]["error"] == 0

        sent_before = len(server.requests)
        finished = run_bench(experiment, console=Console(quiet=True))
        assert [c.status for c in finished.cells] == ["skipped"]
        assert len(server.requests) == sent_before  # a finished cell sends nothing

        forced = run_bench(experiment, force=True, console=Console(quiet=True))
        assert [c.status for c in forced.cells] == ["done"]


# --- an experiment and its datasets read and write only in their place (docs/security.md) -------


def test_a_dataset_name_cannot_make_bench_write_outside_its_run(tmp_path):
    """Measured: a dataset `name: ../../../../tmp/x` made bench write its split and cell folders
    outside runs/. The name is refused (the dataset's cells fail) and nothing is written outside."""
    work = tmp_path / "work"
    work.mkdir()
    experiment = make_experiment(work, TFIDF, seeds="[0]")
    dataset = work / "tiny.yaml"
    dataset.write_text(dataset.read_text().replace("name: tiny", "name: ../../../escaped"))
    result = run_bench(experiment, console=Console(quiet=True))
    assert not (tmp_path / "escaped").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["work"]
    assert [c.status for c in result.cells] == ["failed"]
    assert f"{dataset}: name: not a safe name (it names a folder)" in result.cells[0].error


@pytest.mark.parametrize(
    ("line", "field", "flag"),
    [
        ("output_dir: ../elsewhere", "output_dir", "--output-dir"),
        ("output_dir: {outside}", "output_dir", "--output-dir"),
        ("data_root: {outside}", "data_root", "--data-root"),
        ("data_root: ../../..", "data_root", "--data-root"),
        ("datasets: [{outside}/tiny.yaml]", "datasets[0].config", "--data-root"),
    ],
    ids=["output-dotdot", "output-absolute", "data-root-absolute", "data-root-dotdot", "dataset-yaml"],
)
def test_experiment_paths_outside_their_place_are_refused(tmp_path, line, field, flag):
    work, outside = tmp_path / "work", tmp_path / "outside"
    work.mkdir()
    outside.mkdir()
    write_tiny_dataset(outside)
    make_experiment(work, TFIDF, seeds="[0]")
    exp = work / "exp.yaml"
    text = exp.read_text().replace(f"output_dir: {work / 'runs'}\n", "")
    key = line.split(":")[0]
    text = "\n".join(row for row in text.splitlines() if not row.startswith(f"{key}:"))
    exp.write_text(f"{line.format(outside=outside)}\n{text}\n")
    experiment = load_experiment(exp)
    output_dir = None if key == "output_dir" else str(work / "runs")  # --output-dir: the user's say
    with pytest.raises(ConfigError) as exc:
        run_bench(experiment, output_dir=output_dir, console=Console(quiet=True))
    message = str(exc.value)
    assert "\n" not in message
    assert message.startswith(f"{exp}: field '{field}' = ") and f"pass {flag}" in message
    assert not (tmp_path / "elsewhere").exists() and not (outside / "t").exists()
    assert sorted(p.name for p in outside.iterdir()) == ["tiny.csv", "tiny.yaml"]


def test_a_response_cache_outside_its_place_is_refused(tmp_path, monkeypatch):
    work, outside = tmp_path / "work", tmp_path / "outside"
    work.mkdir()
    outside.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.setenv("SOCIALENS_CACHE_DIR", str(work / "cache"))
    llm = f"  - {{id: llm, family: prompted, cache_path: {outside / 'answers.sqlite'}}}\n"
    experiment = make_experiment(work, llm, seeds="[0]")
    with pytest.raises(ConfigError) as exc:
        run_bench(experiment, console=Console(quiet=True))
    message = str(exc.value)
    assert "\n" not in message and "field 'models[0].cache_path'" in message
    assert list(outside.iterdir()) == []


def test_the_users_own_flags_lift_the_experiment_path_checks(tmp_path):
    work, outside = tmp_path / "work", tmp_path / "outside"
    work.mkdir()
    outside.mkdir()
    make_experiment(work, TFIDF, seeds="[0]")
    exp = work / "exp.yaml"
    exp.write_text(exp.read_text().replace(f"output_dir: {work / 'runs'}", f"output_dir: {outside}"))
    result = run_bench(load_experiment(exp), output_dir=str(outside / "mine"), console=Console(quiet=True))
    assert [c.status for c in result.cells] == ["done"]
    assert (outside / "mine" / "t" / "tiny" / "tf" / "seed-0" / "metrics.json").is_file()


def test_bench_does_not_follow_a_symlink_out_of_its_run_directory(tmp_path):
    experiment = make_experiment(tmp_path, TFIDF, seeds="[0]")
    outside = tmp_path / "outside"
    outside.mkdir()
    (tmp_path / "runs" / "t").mkdir(parents=True)
    (tmp_path / "runs" / "t" / "tiny").symlink_to(outside, target_is_directory=True)
    with pytest.raises(ConfigError, match=r"resolves outside the run directory .*runs/t; refusing to write"):
        run_bench(experiment, console=Console(quiet=True))
    assert list(outside.iterdir()) == []


def test_a_native_crash_fails_its_cell_not_the_grid(tmp_path, monkeypatch):
    """A llama.cpp setting whose probe died of SIGILL here (what AMX tiles do under some
    hypervisors) fails that one cell with one line; the TF-IDF cell still runs and is scored."""
    pytest.importorskip("llama_cpp")
    from socialens.core.models import resolve_model
    from socialens.llm import native_probe

    try:
        model = resolve_model("builtin:smollm2-135m-instruct")
    except ConfigError as error:
        pytest.skip(str(error))
    monkeypatch.setenv("SOCIALENS_CACHE_DIR", str(tmp_path / "cache"))
    sigill = native_probe.ProbeResult(False, -4, "SIGILL (illegal instruction)")
    native_probe.record_probe(model, True, sigill)
    llm = "  - {id: llm, family: prompted, decoding: scored, n_ctx: 512, extra_buffers: on}\n"
    experiment = make_experiment(tmp_path, TFIDF + llm, seeds="[0]")
    result = run_bench(experiment, console=Console(quiet=True))
    by_model = {cell.model: cell for cell in result.cells}
    assert by_model["tf"].status == "done"
    assert by_model["llm"].status == "failed"
    error = by_model["llm"].error
    assert "\n" not in error and "llamacpp" in error and "SIGILL" in error and "extra_buffers: off" in error
    assert (tmp_path / "runs" / "t" / "tiny" / "tf" / "seed-0" / "metrics.json").is_file()


ARABIC_WORDS = {
    "sarcastic": ["يا سلام", "والله عبقري", "ما شاء الله على الذكاء", "برافو عليك", "اكيد طبعا"],
    "not sarcastic": ["الطقس جميل اليوم", "الحكومة تعلن", "مباراة كرة القدم", "الاخبار العاجلة", "سعر النفط"],
}


def write_arabic_dataset(tmp_path: Path) -> Path:
    """Arabic tweets; the test texts share no word with the training texts, so a TF-IDF model
    sees empty vectors there and predicts one class for all of them."""
    import random

    rng = random.Random(0)
    train = ["text,label"]
    for label, phrases in ARABIC_WORDS.items():
        train += [f"{rng.choice(phrases)} {rng.choice(phrases)} {i},{label}" for i in range(20)]
    test = ["text,label"] + [f"كلمة{i} جديدة{i},{label}" for i, label in enumerate(list(ARABIC_WORDS) * 5)]
    (tmp_path / "train.csv").write_text("\n".join(train) + "\n", encoding="utf-8")
    (tmp_path / "test.csv").write_text("\n".join(test) + "\n", encoding="utf-8")
    config = tmp_path / "ar.yaml"
    config.write_text(
        f"name: ar-sarcasm\nlanguage: ar\nformat: csv\npath: {tmp_path}\n"
        "files: {train: train.csv, test: test.csv}\ncolumns: {text: text, label: label}\n"
        "schema: {labels: [not sarcastic, sarcastic]}\n",
        encoding="utf-8",
    )
    return config


def test_a_model_without_the_language_is_warned_before_training_and_collapse_is_flagged(tmp_path):
    import io

    from socialens.evaluation.report import build_report

    config = write_arabic_dataset(tmp_path)
    models = (
        "  - {id: minilm, family: encoder, epochs: 1, batch_size: 16, max_length: 32}\n"
        "  - {id: tf, family: tfidf}\n"
    )
    (tmp_path / "exp.yaml").write_text(
        f"name: t\noutput_dir: {tmp_path / 'runs'}\ndatasets: [{config}]\nmodels:\n{models}"
        "seeds: [0]\nbootstrap: 0\n"
    )
    out = io.StringIO()
    run_bench(load_experiment(tmp_path / "exp.yaml"), console=Console(file=out, width=400))
    warnings = [line for line in out.getvalue().splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1  # one line, for the encoder only (TF-IDF has no vocabulary to miss)
    assert warnings[0].startswith("warning: ar-sarcasm / minilm: ")
    assert "tokenizer of builtin:minilm-l6 (over 30%): it likely does not cover language ar" in warnings[0]
    run_dir = tmp_path / "runs" / "t"
    coverage = json.loads((run_dir / "ar-sarcasm" / "minilm" / "tokenizer_coverage.json").read_text())
    assert coverage["covered"] is False and coverage["share"] > 0.8 and coverage["texts"] == 32
    assert not (run_dir / "ar-sarcasm" / "tf" / "tokenizer_coverage.json").exists()

    rows = {row["model"]: row for row in json.loads((run_dir / "summary.json").read_text())["rows"]}
    assert rows["tf"]["aggregate"]["collapse"]["seeds"] == 1  # from its records: one class for all
    summary = (run_dir / "summary.md").read_text()
    header = next(
        line for line in summary.splitlines() if line.startswith("| dataset |")
    )  # under the recommendation
    assert header.endswith("| predict ex/s | flags |")
    tf_line = next(line for line in summary.splitlines() if line.startswith("| ar-sarcasm | tf |"))
    label = rows["tf"]["aggregate"]["collapse"]["labels"][0]
    assert tf_line.endswith(f"| collapsed: predicts {label} for 100% of the test set |")
    minilm_line = next(line for line in summary.splitlines() if line.startswith("| ar-sarcasm | minilm |"))
    assert f"tokenizer: {coverage['share']:.0%} unknown or 1-letter tokens (ar)" in minilm_line

    report = build_report([run_dir])
    cells = {r["key"].split("/")[-1]: r["cells"] for r in report["datasets"]["ar-sarcasm"]["table"]["rows"]}
    assert cells["minilm"]["flags"]["text"].startswith("tokenizer: ")
    assert cells["tf"]["flags"]["text"] == f"collapsed: predicts {label} for 100% of the test set"


# --- failing fast and exiting honestly (issue 17 item 2) ----------------------------------------


def llm_bench(tmp_path, base_url: str, *extra: str):
    """`socialens bench` through the CLI on the tiny data with one prompted model on ``base_url``
    (timed); retries are kept short so the bound measures the stop, not the backoff."""
    import time

    from typer.testing import CliRunner

    from socialens.cli import app

    model = (
        f"  - {{id: api, family: prompted, backend: openai, model: fake, base_url: '{base_url}',"
        " api_key_env: null, decoding: constrained, max_retries: 2, timeout_s: 5, concurrency: 1,"
        f" cache_path: '{tmp_path / 'cache.sqlite'}', backend_options: {{backoff_base_s: 0.05, constrained: guided_choice}}}}\n"
    )
    write_tiny_dataset(tmp_path)
    (tmp_path / "exp.yaml").write_text(
        f"name: t\noutput_dir: {tmp_path / 'runs'}\ndatasets: [{tmp_path / 'tiny.yaml'}]\n"
        f"models:\n{TFIDF}{model}seeds: [0]\nbootstrap: 0\nenergy: {{enabled: false}}\n"
    )
    start = time.monotonic()
    result = CliRunner().invoke(
        app, ["bench", str(tmp_path / "exp.yaml"), "--allow-endpoint", base_url, *extra]
    )
    return result, time.monotonic() - start


def closed_port_url() -> str:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # nothing listens here once closed
    return f"http://127.0.0.1:{port}/v1"


def check_stopped_cell(tmp_path, result, unreachable: int):
    run_dir = tmp_path / "runs" / "t"
    assert result.exit_code == 1, result.output
    line = "error: every prediction is an error in 1 cell(s): tiny / api / seed 0;"
    assert [x for x in result.output.splitlines() if x.startswith("error:")] == [
        line + " the error records in their predictions.jsonl say why"
    ]
    table = (run_dir / "summary.md").read_text()  # the table is still written, both rows in it
    assert "| tiny | tf | 1 |" in table and "| tiny | api | 1 |" in table
    records = read_records(run_dir / "tiny" / "api" / "seed-0" / "predictions.jsonl")
    n_test = json.loads((run_dir / "tiny" / "tf" / "seed-0" / "metrics.json").read_text())["n"]
    assert len(records) == n_test  # every example still has its record
    errors = [r.error for r in records if r.status.value == "error"]
    assert errors[:unreachable] == ["connection error after 3 attempts"] * unreachable
    assert all(e.startswith("stopped after 3 prompts in a row failed to reach") for e in errors[unreachable:])
    assert len(errors) == n_test - (3 - unreachable)


def test_a_bench_against_a_dead_port_stops_the_cell_fast_and_exits_non_zero(tmp_path):
    result, seconds = llm_bench(tmp_path, closed_port_url())
    assert seconds < 30  # was 6 attempts with backoff for every text; here 3 texts, then stopped
    check_stopped_cell(tmp_path, result, unreachable=3)


def test_a_bench_against_a_server_that_dies_after_its_first_answer(tmp_path):
    fault_server = _fault_server_module()
    with fault_server.FaultServer() as server:

        def plan(attempt, body):
            # uvicorn shuts down while it answers: it closes its socket, sends this answer and
            # closes the connection, so the next request finds nothing listening
            server._server.should_exit = True
            return fault_server.Sleep(0.3)

        server.plan = plan
        result, seconds = llm_bench(tmp_path, server.base_url)
        assert len(server.requests) == 1
    assert seconds < 30
    run_dir = tmp_path / "runs" / "t"
    records = read_records(run_dir / "tiny" / "api" / "seed-0" / "predictions.jsonl")
    assert records[0].status.value == "ok"  # the one answer it gave
    errors = [r.error for r in records[1:]]
    assert errors[:3] == ["connection error after 3 attempts"] * 3
    assert all(e.startswith("stopped after 3 prompts in a row failed to reach") for e in errors[3:])
    assert result.exit_code == 1, result.output  # one answer among errors is no finished cell
    assert "cell stopped tiny / api / seed 0: stopped after 3 prompts" in result.output
    assert [x for x in result.output.splitlines() if x.startswith("error:")] == [
        "error: 1 cell(s) stopped before their last text, their server no longer answering: tiny / api / "
        "seed 0; run bench again once it is up (the answers so far are cached)"
    ]
    assert "| tiny | api | 1 |" in (run_dir / "summary.md").read_text()


def test_an_llm_cell_prints_its_estimate_first_and_a_rerun_says_what_it_skipped(tmp_path):
    import re

    fault_server = _fault_server_module()
    with fault_server.FaultServer() as server:
        first, _ = llm_bench(tmp_path, server.base_url)
        again, _ = llm_bench(tmp_path, server.base_url)
    assert first.exit_code == 0, first.output
    lines = first.output.splitlines()
    estimate = [i for i, line in enumerate(lines) if line.startswith("llm cell tiny / api / seed 0: ")]
    assert len(estimate) == 1  # the LLM cell only, not the tfidf one
    assert re.fullmatch(
        r"llm cell tiny / api / seed 0: ~\d+ prompt tokens a text, (<0\.1 s|~[\d.]+ s) a text, "
        r"(<0\.1 s|~[\d.]+ s) for 9 texts \(measured on the first 3\)",
        lines[estimate[0]],
    )
    tokens = int(re.search(r"~(\d+) prompt tokens", lines[estimate[0]]).group(1))
    sent = [body["messages"][-1]["content"] for body in server.requests]
    assert tokens == round(sum(len(fault_server.fake_tokens(p)) for p in sent[:3]) / 3)
    predicted = [i for i, line in enumerate(lines) if line.startswith("predict: 9/9 texts (100%)")]
    assert predicted and predicted[0] > estimate[0]  # printed before the cell's last texts ran
    assert any(line.startswith("bench: 2/2 cells (100%)") for line in lines)
    assert "\x1b[" not in first.output  # CliRunner is no terminal: plain lines, no control codes
    assert again.exit_code == 0, again.output
    assert "skipped (finished): tiny / tf / seed 0" in again.output.splitlines()
    assert "skipped (finished): tiny / api / seed 0" in again.output.splitlines()
    assert len(server.requests) == 9  # the re-run sent nothing


def test_a_setting_the_server_refuses_is_one_line_for_the_cell_not_one_per_text(tmp_path):
    fault_server = _fault_server_module()
    with fault_server.FaultServer() as server:
        server.plan = lambda attempt, body: fault_server.Status(404)  # e.g. a model name it lacks
        result, seconds = llm_bench(tmp_path, server.base_url)
        assert len(server.requests) == 3  # not one per text
    assert result.exit_code == 1 and seconds < 30
    failed = [line for line in result.output.splitlines() if "ConfigError" in line]
    assert len(failed) == 1 and failed[0].startswith(
        "cell failed tiny / api / seed 0: ConfigError: the first 3"
    )
    assert "all failed with HTTP 404 and none succeeded" in result.output
    assert "| tiny | api | 0 | failed |" in (tmp_path / "runs" / "t" / "summary.md").read_text()


# --- every task in the summary (issue 12) -------------------------------------------------------

ML_WORDS = {"fake": "hoax", "hate": "vermin", "offensive": "idiot"}


def write_multilabel_dataset(tmp_path: Path) -> Path:
    """Posts tagged with any of three labels, each label given away by its own word."""
    import itertools

    sets = [list(c) for n in range(4) for c in itertools.combinations(ML_WORDS, n)]  # 8 label sets
    rows = ["id,text,labels"]
    for i in range(48):
        labels = sets[i % len(sets)]
        words = " ".join(ML_WORDS[label] for label in labels)
        rows.append(f'm{i:02d},{words} post {i} today,"{",".join(labels)}"')
    (tmp_path / "ml.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    config = tmp_path / "ml.yaml"
    config.write_text(
        f"name: tiny-ml\ntask: hostile post types\ntask_type: multilabel\nformat: csv\npath: {tmp_path}\n"
        "file: ml.csv\ncolumns: {text: text, label: labels, id: id}\n"
        "schema: {labels: [fake, hate, offensive]}\n",
        encoding="utf-8",
    )
    return config


def test_a_multilabel_dataset_gets_its_own_summary_table_and_report(tmp_path):
    from socialens.core.layout import RunLayout
    from socialens.core.registry import TASKS
    from socialens.evaluation.report import build_report

    write_tiny_dataset(tmp_path)
    multilabel = write_multilabel_dataset(tmp_path)
    (tmp_path / "exp.yaml").write_text(
        f"name: t\noutput_dir: {tmp_path / 'runs'}\ndatasets: [{tmp_path / 'tiny.yaml'}, {multilabel}]\n"
        f"models:\n{TFIDF}seeds: [0]\nbootstrap: 50\nenergy: {{enabled: false}}\n"
    )
    result = run_bench(load_experiment(tmp_path / "exp.yaml"), console=Console(quiet=True))
    assert [c.status for c in result.cells] == ["done", "done"]
    run = RunLayout(tmp_path / "runs" / "t")
    # the task type is in the run folder: split.json (only where it is not classification),
    # metrics.json and the summary rows
    assert "task_type" not in json.loads(run.split_file("tiny").read_text())
    assert json.loads(run.split_file("tiny-ml").read_text())["task_type"] == "multilabel"
    metrics = json.loads(run.cell("tiny-ml", "tf", 0).metrics.read_text())
    assert metrics["task_type"] == "multilabel" and metrics["scalar_metrics"][0] == "micro_f1"
    assert json.loads(run.cell("tiny", "tf", 0).metrics.read_text())["task_type"] == "classification"
    rows = {row["dataset"]: row for row in json.loads(run.summary_json.read_text())["rows"]}
    assert rows["tiny-ml"]["task_type"] == "multilabel" and rows["tiny"]["task_type"] == "classification"
    assert rows["tiny-ml"]["aggregate"]["per_class_f1"].keys() == set(ML_WORDS)
    assert rows["tiny-ml"]["ci"]["macro_f1"] is not None
    # one table per task: classification's as it always was, then the label sets'
    tables = [part for part in run.summary_md.read_text().split("\n\n") if part.startswith("|")]
    assert len(tables) == 2  # under the recommendations
    assert tables[0].splitlines()[0] == (
        "| dataset | model | seeds | macro-F1 | 95% CI | accuracy | F1 belief | F1 debunk | F1 other "
        "| non-ok rate | train s | predict ex/s | flags |"
    )
    header = tables[1].splitlines()[0].strip("| ").split(" | ")
    others = [m for m in TASKS.get("multilabel").scalar_metrics if m != "macro_f1"]
    assert header[:5] == ["dataset", "model", "seeds", "macro-F1", "95% CI"]
    assert len(header) == 5 + len(others) + 3 + 4 and "hamming loss" in header
    assert header[-7:] == [
        "F1 fake",
        "F1 hate",
        "F1 offensive",
        "non-ok rate",
        "train s",
        "predict ex/s",
        "flags",
    ]
    ml_line = tables[1].splitlines()[2].strip("| ").split(" | ")
    assert ml_line[:3] == ["tiny-ml", "tf", "1"]
    assert ml_line[3] == f"{rows['tiny-ml']['aggregate']['macro_f1']['mean']:.3f}"
    # the report rebuilds from the run folder alone, each dataset by its task
    report = build_report([run.root], tmp_path / "report")
    assert report["datasets"]["tiny-ml"]["task_type"] == "multilabel"
    assert report["datasets"]["tiny"]["task_type"] == "classification"
    assert report["datasets"]["tiny-ml"]["table"]["labels"] == list(ML_WORDS)
    cells = report["datasets"]["tiny-ml"]["table"]["rows"][0]["cells"]
    assert cells["macro_f1"]["value"] == pytest.approx(rows["tiny-ml"]["aggregate"]["macro_f1"]["mean"])


def test_summary_rows_of_named_entities(tmp_path):
    from socialens.bench import summarise, summary_table, write_summary
    from socialens.core.types import LabelSchema, PredictionRecord, Split, Status
    from socialens.evaluation.metrics import compute_metrics
    from socialens.experiment import ModelEntry

    gold = [["B-PER", "O", "B-LOC"], ["B-PER", "I-PER", "O"], ["O", "B-LOC"]]
    predicted = [["B-PER", "O", "B-LOC"], ["B-LOC", "I-LOC", "O"], None]
    records = [
        PredictionRecord(f"s{i}", g, p, Status.OK if p else Status.INVALID)
        for i, (g, p) in enumerate(zip(gold, predicted, strict=True))
    ]
    split = Split(
        [], [], [], LabelSchema.from_names(["PER", "LOC"]), name="ner", task_type="token_classification"
    )
    costs = {"train_time_s": 1.5, "predict_examples_per_s": 20.0}
    per_seed = [
        compute_metrics(records, ["PER", "LOC"], task_type="token_classification", n_bootstrap=20, seed=seed)
        | {"costs": costs}
        for seed in (0, 1)
    ]
    row = summarise(split, ModelEntry(id="llm", family="prompted"), per_seed, None)
    failed = summarise(split, ModelEntry(id="dead", family="prompted"), [], None)
    header, body = summary_table([row, failed])
    assert header == [
        "dataset",
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
        "non-ok rate",
        "train s",
        "predict ex/s",
        "flags",
    ]
    # 4 gold entities, 3 predicted (one invalid sentence), 2 right: P 2/3, R 1/2, F1 4/7
    ci = row["ci"]["micro_f1"]
    assert body[0] == [
        "ner",
        "llm",
        "2",
        "0.571 ± 0.000",
        f"[{ci[0]:.3f}, {ci[1]:.3f}]",
        "0.667 ± 0.000",
        "0.500 ± 0.000",
        "0.583 ± 0.000",  # PER: 1 of 1 predicted right, of 2 -> 2/3; LOC: 1 of 2, of 2 -> 1/2
        "0.000 ± 0.000",
        "0.667 ± 0.000",
        "0.500 ± 0.000",
        "33.3%",
        "1.5",
        "20",
        "",
    ]
    assert body[1] == ["ner", "dead", "0", "failed", *["-"] * 10, ""]
    write_summary(tmp_path, [row, failed], [])
    assert (
        (tmp_path / "summary.md")
        .read_text()
        .splitlines()[0]
        .startswith("| dataset | model | seeds | micro-F1 |")
    )


# ---------------------------------------------------------------- recommendation and kept models

WEAK = "  - {id: weak, family: tfidf, max_features: 3}\n"


def test_bench_recommends_from_records_and_keeps_only_the_recommended_model(tmp_path):
    from socialens.bench import print_recommendations

    experiment = make_experiment(tmp_path, TFIDF + WEAK)
    result = run_bench(experiment, console=Console(quiet=True))
    run_dir = tmp_path / "runs" / "t"
    rec = result.recommendations["tiny"]
    assert rec["recommended"] == rec["best"] == "tf" and rec["metric"] == "macro_f1"
    [pair] = rec["comparisons"]
    assert pair["model"] == "weak" and pair["significant"] is True and pair["difference"] > 0.5
    assert pair["ci"][0] > 0 and pair["mcnemar"]["seed"] == 0 and pair["n"] == 9
    assert rec["sentence"].startswith("tiny: recommended model tf: best macro-F1, 1.000; its lead over")
    weakest = {m["model"]: m["weakest_class"] for m in rec["models"]}
    assert weakest["weak"] == {"label": "debunk", "f1": 0.0}
    # save_models: best (the default): only seed 0 of the recommended model keeps its model folder
    kept = sorted(str(p.relative_to(run_dir)) for p in run_dir.rglob("model") if p.is_dir())
    assert kept == ["tiny/tf/seed-0/model"] and rec["model_kept"] is True
    card = (run_dir / "tiny" / "tf" / "seed-0" / "model" / "MODEL_CARD.md").read_text()
    for part in (
        "# Model card: tf on tiny",
        "train 63, dev 18, test 9",
        "runner-up: weak (macro-F1 0.278 vs 1.000 here",
        "| debunk | 1.000 |",
    ):
        assert part in card
    assert "| macro-F1 | 1.000 | [" in card and "per 1,000 classifications" in card
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["recommendations"]["tiny"]["model_dir"] == "tiny/tf/seed-0/model"
    lines = (run_dir / "summary.md").read_text().splitlines()
    assert lines[0] == f"**{rec['sentence']}**"
    assert any(line.startswith("- tf - weak: +") and "significant" in line for line in lines[:6])
    assert any(line.startswith("- weakest class per model (F1): tf ") for line in lines[:6])
    out = io.StringIO()
    print_recommendations(result.recommendations, Console(file=out, width=100))
    printed = out.getvalue()
    assert rec["sentence"][:60] in printed.replace("\n", " ") and "weakest class per model" in printed


@pytest.mark.parametrize("mode, kept", [("none", 0), ("all", 4)])
def test_save_models_none_and_all(tmp_path, mode, kept):
    experiment = make_experiment(tmp_path, TFIDF + WEAK).model_copy(update={"save_models": mode})
    result = run_bench(experiment, console=Console(quiet=True))
    run_dir = tmp_path / "runs" / "t"
    assert len([p for p in run_dir.rglob("model") if p.is_dir()]) == kept
    assert result.recommendations["tiny"]["model_kept"] is (mode == "all")
    assert len(list(run_dir.rglob("MODEL_CARD.md"))) == (mode == "all")


def test_a_bad_save_models_value_is_a_one_line_error(tmp_path):
    write_tiny_dataset(tmp_path)
    (tmp_path / "exp.yaml").write_text(
        f"name: t\ndatasets: [{tmp_path / 'tiny.yaml'}]\nmodels:\n{TFIDF}save_models: sometimes\n"
    )
    with pytest.raises(ConfigError) as error:
        load_experiment(tmp_path / "exp.yaml")
    assert str(error.value) == (
        f"{tmp_path / 'exp.yaml'}: field 'save_models' = 'sometimes': Input should be 'none', 'best' or 'all'"
    )


def test_ties_go_to_the_cheaper_model_and_the_sentence_says_so(tmp_path):
    from socialens.evaluation.recommendation import recommend_run

    experiment = make_experiment(tmp_path, TFIDF + "  - {id: tf2, family: tfidf, C: 2.0}\n", seeds="[0]")
    run_bench(experiment, console=Console(quiet=True))
    run_dir = tmp_path / "runs" / "t"
    # the same predictions, so the same score; make tf2's prediction time far longer than tf's
    metrics_path = run_dir / "tiny" / "tf" / "seed-0" / "metrics.json"
    metrics = json.loads(metrics_path.read_text())
    metrics["costs"]["predict_time_s"] = 3600.0
    metrics_path.write_text(json.dumps(metrics))
    rec = recommend_run(run_dir)["tiny"]
    assert rec["best"] == "tf" and rec["recommended"] == "tf2" and rec["tied_with_best"] == ["tf2"]
    assert rec["comparisons"][0]["significant"] is False
    assert rec["sentence"].startswith(
        "tiny: recommended model tf2 (macro-F1 1.000): tf scores the same (1.000)"
    )
    assert "is not significant (95% CI [+0.000, +0.000] contains 0" in rec["sentence"]
    assert "and tf2 is cheaper (" in rec["sentence"]


def test_a_model_that_cannot_be_saved_keeps_its_cell_and_says_so(tmp_path, monkeypatch):
    from socialens.classifiers.tfidf import TfidfClassifier

    def refuse(self, directory):
        raise OSError("No space left on device")

    monkeypatch.setattr(TfidfClassifier, "save", refuse)
    experiment = make_experiment(tmp_path, TFIDF, seeds="[0]")
    out = io.StringIO()
    result = run_bench(experiment, console=Console(file=out, width=300))
    assert [c.status for c in result.cells] == ["done"]
    printed = out.getvalue()
    assert "model not saved: tiny / tf / seed 0: OSError: No space left on device" in printed
    assert result.recommendations["tiny"]["model_kept"] is False
    from socialens.bench import print_recommendations

    out = io.StringIO()
    print_recommendations(result.recommendations, Console(file=out, width=300))
    assert "not kept: tiny/tf/seed-0/model has no saved model" in out.getvalue()


def test_the_recommendation_is_over_the_experiments_models_only(tmp_path):
    run_bench(make_experiment(tmp_path, TFIDF + WEAK, seeds="[0]"), console=Console(quiet=True))
    # the same run with the weak model removed: its old cells stay in the folder, unrecommended
    result = run_bench(make_experiment(tmp_path, WEAK, seeds="[0]"), console=Console(quiet=True))
    rec = result.recommendations["tiny"]
    assert rec["recommended"] == "weak" and [m["model"] for m in rec["models"]] == ["weak"]
    assert (tmp_path / "runs" / "t" / "tiny" / "tf" / "seed-0" / "predictions.jsonl").is_file()


def test_a_grouped_dataset_prints_its_group_leakage_line(tmp_path):
    rows = (FIXTURES / "tiny.csv").read_text().splitlines()
    threaded = [rows[0] + ",thread"] + [f"{row},th{i // 5}" for i, row in enumerate(rows[1:])]
    (tmp_path / "tiny.csv").write_text("\n".join(threaded) + "\n")
    dataset = (FIXTURES / "tiny.yaml").read_text().replace("path: .", f"path: {tmp_path}")
    dataset = dataset.replace("metadata: {topic: topic}", "metadata: {topic: topic, thread: thread}")
    (tmp_path / "tiny.yaml").write_text(dataset + "split: {group_by: thread}\n")
    (tmp_path / "exp.yaml").write_text(
        f"name: t\noutput_dir: {tmp_path / 'runs'}\ndatasets: [{tmp_path / 'tiny.yaml'}]\n"
        f"models:\n{TFIDF}seeds: [0]\nbootstrap: 50\n"
    )
    out = io.StringIO()
    run_bench(load_experiment(tmp_path / "exp.yaml"), console=Console(file=out, width=200))
    line = next(line for line in out.getvalue().splitlines() if "groups by thread" in line)
    assert line.startswith("tiny: groups by thread: train ") and "shared between splits: 0" in line
    split = json.loads((tmp_path / "runs" / "t" / "tiny" / "split.json").read_text())
    assert "group_leakage" in json.dumps(split)
