"""build_report from hand-made prediction records in a run-dir layout, with known answers."""

import json
import re
import struct
import subprocess
import zlib
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from socialens.core.types import PredictionRecord, Status, write_records
from socialens.evaluation.report import build_report

LABELS = ["pos", "neg"]
GOLD = {"t1": "pos", "t2": "pos", "t3": "neg", "t4": "neg"}
TOPIC = {"t1": "covid", "t2": "vaccine", "t3": "covid", "t4": "vaccine"}
TEXTS = {
    "t1": "The vaccine changes your DNA, everyone knows it.",
    "t2": "They are hiding the truth <script>alert(1)</script>",
    "t3": "Fact-checkers showed this claim is false.",
    "t4": "Nice weather in Doha today.",
}
# (predicted or status, latency) per example; costs block per model
MODELS = {
    "tfidf": {
        "family": "tfidf",
        "preds": {"t1": "pos", "t2": "pos", "t3": "neg", "t4": "neg"},
        "latency": 0.001,
        "cost": 0.0,
        "costs": {"train_time_s": 36.0, "predict_time_s": 0.36},
        "seeds": [0, 1],
    },
    "llm": {
        "family": "prompted",
        "preds": {"t1": "pos", "t2": "refused", "t3": "neg", "t4": "pos"},
        "latency": [0.5, 1.0, 1.5, 2.0],
        "cost": 0.002,
        "costs": {"train_time_s": 0.0, "predict_time_s": 5.0},
        "seeds": [0],
    },
    "cheap-bad": {
        "family": "tfidf",
        "preds": {"t1": "neg", "t2": "neg", "t3": "neg", "t4": "neg"},
        "latency": 0.002,
        "cost": 0.0,
        "costs": {"train_time_s": 1.0, "predict_time_s": 0.036},
        "seeds": [0],
    },
}


def make_run(root: Path, name: str = "demo-run", with_texts: bool = True, models: dict | None = None) -> Path:
    models = MODELS if models is None else models
    run_dir = root / name
    ds = run_dir / "demo"
    ds.mkdir(parents=True)
    experiment = {"name": name, "bootstrap": 50, "slice_by": ["topic", "language"], "models": []}
    for model in models:
        experiment["models"].append({"id": model, "family": models[model]["family"]})
    (run_dir / "experiment.yaml").write_text(yaml.safe_dump(experiment, sort_keys=False), encoding="utf-8")
    schema = {"name": "universal", "labels": [{"name": n, "description": "", "aliases": []} for n in LABELS]}
    (ds / "split.json").write_text(json.dumps({"schema": schema, "stats": {"n_test": 4}}), encoding="utf-8")
    if with_texts:
        lines = [
            json.dumps({"id": i, "text": t, "label": GOLD[i], "metadata": {"topic": TOPIC[i]}})
            for i, t in TEXTS.items()
        ]
        (ds / "test.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    for model, spec in models.items():
        latencies = spec["latency"] if isinstance(spec["latency"], list) else [spec["latency"]] * 4
        for seed in spec["seeds"]:
            cell = ds / model / f"seed-{seed}"
            cell.mkdir(parents=True)
            records = []
            for (i, pred), lat in zip(spec["preds"].items(), latencies, strict=True):
                refused = pred == "refused"
                records.append(
                    PredictionRecord(
                        id=i,
                        gold=GOLD[i],
                        predicted=None if refused else pred,
                        status=Status.REFUSED if refused else Status.OK,
                        raw_output=("I cannot help with that." if refused else f"Label: {pred}")
                        if spec["family"] == "prompted"
                        else None,
                        latency_s=lat,
                        cost=spec["cost"],
                        metadata={"topic": TOPIC[i], "language": "en"},
                    )
                )
            write_records(cell / "predictions.jsonl", records)
            metrics = {"family": spec["family"], "seed": seed, "costs": {**spec["costs"], "n_test": 4}}
            (cell / "metrics.json").write_text(json.dumps(metrics), encoding="utf-8")
    return run_dir


WIDE_LABELS = [
    "belief",
    "debunk",
    "disbelief",
    "sarcasm",
    "question",
    "other",
    "hate-speech",
    "offensive",
    "neutral",
    "pro-vaccine",
    "anti-vaccine",
    "conspiracy-theory-about-5g",
]
WIDE_MODELS = {  # model id -> (how many texts in 10 it gets right, collapsed, seeds)
    "smollm2-zero-shot-scored-135m-instruct-q4": (1, True, [0]),
    "minilm-l6-finetuned-with-class-weights": (8, False, [0, 1, 2]),
    "gemma3-270m-five-shot-constrained": (4, False, [0]),
    "tfidf": (7, False, [0, 1, 2]),
}


def make_wide_run(root: Path, name: str) -> Path:
    """A run with 12 classes (some names long), long model ids, every cost and energy figure, an
    official metric and flags: every column the leaderboard has, each filled."""
    run_dir = root / name
    ds = run_dir / "stance"
    ds.mkdir(parents=True)
    experiment = {"name": name, "bootstrap": 20, "models": [{"id": m} for m in WIDE_MODELS]}
    (run_dir / "experiment.yaml").write_text(yaml.safe_dump(experiment), encoding="utf-8")
    schema = {"name": "u", "labels": [{"name": n, "description": "", "aliases": []} for n in WIDE_LABELS]}
    stats = {"n_test": 60, "official_metric": "macro_f1"}
    (ds / "split.json").write_text(json.dumps({"schema": schema, "stats": stats}), encoding="utf-8")
    golds = [WIDE_LABELS[i % len(WIDE_LABELS)] for i in range(60)]
    for k, (model, (right, collapsed, seeds)) in enumerate(WIDE_MODELS.items()):
        for seed in seeds:
            cell = ds / model / f"seed-{seed}"
            cell.mkdir(parents=True)
            records = []
            for i, gold in enumerate(golds):
                wrong = WIDE_LABELS[(WIDE_LABELS.index(gold) + 1 + seed) % len(WIDE_LABELS)]
                predicted = WIDE_LABELS[0] if collapsed else gold if (i + seed) % 10 < right else wrong
                records.append(
                    PredictionRecord(
                        id=f"x{i}", gold=gold, predicted=predicted, status=Status.OK, latency_s=0.01 * (k + 1)
                    )
                )
            write_records(cell / "predictions.jsonl", records)
            costs = {
                "train_time_s": 4321.0 * k,
                "predict_time_s": 0.6 * (k + 1),
                "n_test": 60,
                "predict_energy_kwh": 1e-5 * (k + 1),
                "predict_co2_kg": 4e-6 * (k + 1),
                "energy_method": "codecarbon: CPU TDP x load",
                "energy_country": "USA",
            }
            (cell / "metrics.json").write_text(json.dumps({"family": "x", "costs": costs}), encoding="utf-8")
    coverage = {"language": "ar", "share": 0.847, "covered": False}
    (ds / "tfidf" / "tokenizer_coverage.json").write_text(json.dumps(coverage), encoding="utf-8")
    return run_dir


@pytest.fixture
def run_dir(tmp_path):
    return make_run(tmp_path)


@pytest.fixture
def built(run_dir):
    return build_report([run_dir]), run_dir


def _row(report, model, dataset="demo"):
    return next(r for r in report["datasets"][dataset]["table"]["rows"] if r["key"].endswith("/" + model))


def test_report_json_numbers(built):
    report, run_dir = built
    data = json.loads((run_dir / "report.json").read_text(encoding="utf-8"))
    assert data["datasets"].keys() == {"demo"}
    rows = {r["model"]: r for r in data["rows"]}
    assert rows["tfidf"]["aggregate"]["macro_f1"]["mean"] == pytest.approx(1.0)
    assert rows["tfidf"]["seeds"] == [0, 1]
    llm = rows["llm"]
    # pos: tp 1, predicted 2 (t1, t4), support 2 -> F1 0.5; neg: tp 1, predicted 1, support 2 -> 2/3
    assert llm["aggregate"]["per_class_f1"]["pos"]["mean"] == pytest.approx(0.5)
    assert llm["aggregate"]["per_class_f1"]["neg"]["mean"] == pytest.approx(2 / 3)
    assert llm["aggregate"]["macro_f1"]["mean"] == pytest.approx(7 / 12)
    assert llm["aggregate"]["status_rates"]["refused"]["mean"] == pytest.approx(0.25)
    assert llm["confusion"]["columns"] == ["pos", "neg", "refused", "invalid", "error"]
    assert llm["confusion"]["matrix"] == [[1, 0, 1, 0, 0], [1, 1, 0, 0, 0]]
    assert rows["tfidf"]["confusion"]["matrix"] == [[4, 0, 0, 0, 0], [0, 4, 0, 0, 0]]  # 2 seeds summed
    assert rows["cheap-bad"]["aggregate"]["macro_f1"]["mean"] == pytest.approx(1 / 3)
    # latency p50 and cost per 1k
    assert llm["costs"]["latency_p50_s"] == pytest.approx(1.25)
    assert llm["costs"]["cost_per_1000"] == pytest.approx(2.0)
    assert rows["tfidf"]["costs"]["cost_per_1000"] == pytest.approx(0.0025)
    assert rows["cheap-bad"]["costs"]["cost_per_1000"] == pytest.approx(0.00025)
    # Pareto: tfidf (best F1) and cheap-bad (cheapest) are on the front, llm is dominated by tfidf
    assert (rows["tfidf"]["pareto"], rows["llm"]["pareto"], rows["cheap-bad"]["pareto"]) == (
        True,
        False,
        True,
    )
    # slices
    topic = rows["llm"]["slices"]["topic"]
    assert topic["covid"]["macro_f1"] == pytest.approx(1.0) and topic["covid"]["n"] == 2
    assert topic["vaccine"]["refused_rate"] == pytest.approx(0.5)
    assert set(data["datasets"]["demo"]["slices"]) == {"topic", "language"}


def test_best_per_column_marks(built):
    report, _ = built
    best = {
        model: {k for k, c in _row(report, model)["cells"].items() if c["best"]}
        for model in ("tfidf", "llm", "cheap-bad")
    }
    assert {"macro_f1", "accuracy", "f1:pos", "f1:neg", "latency_p50_ms"} <= best["tfidf"]
    assert "cost_per_1000" in best["cheap-bad"] and "cost_per_1000" not in best["tfidf"]
    assert "refused_rate" in best["tfidf"] and "refused_rate" in best["cheap-bad"]  # a tie: both
    assert "refused_rate" not in best["llm"] and "macro_f1" not in best["llm"]
    assert _row(report, "tfidf")["cells"]["latency_p50_ms"]["value"] == pytest.approx(1.0)
    # every model at 0% invalid and 0% error, no energy figures: nothing to choose, nothing bold
    for model in best:
        assert not best[model] & {"invalid_rate", "error_rate", "energy_wh_per_1000", "co2_g_per_1000"}
    assert "train_time_s" in best["llm"] and "train_cost" in best["llm"]  # 0 s beats 1 s and 36 s


def test_no_best_marks_without_a_real_best(tmp_path):
    # "zero" says pos for the neg texts and neg for the pos ones
    zero = {**MODELS["cheap-bad"], "preds": {"t1": "neg", "t2": "neg", "t3": "pos", "t4": "pos"}}
    run_dir = make_run(tmp_path, models={"cheap-bad": MODELS["cheap-bad"], "zero": zero})
    report = build_report([run_dir])
    cells = {m: _row(report, m)["cells"] for m in ("cheap-bad", "zero")}
    best = {m: {k for k, c in cells[m].items() if c["best"]} for m in cells}
    # F1 pos is 0 for both: an F1 of 0 is no best; no refusals anywhere: a tie at 0% is no best
    assert [cells[m]["f1:pos"]["value"] for m in cells] == [0.0, 0.0]
    assert not any(b & {"f1:pos", "refused_rate", "invalid_rate", "error_rate"} for b in best.values())
    assert (
        cells["cheap-bad"]["f1:neg"]["value"] == pytest.approx(2 / 3)
        and cells["zero"]["f1:neg"]["value"] == 0
    )
    assert {"macro_f1", "accuracy", "f1:neg"} <= best["cheap-bad"] and "f1:neg" not in best["zero"]
    md = (run_dir / "report.md").read_text(encoding="utf-8")
    assert "**0.000**" not in md and "**0.0%**" not in md
    alone = build_report([make_run(tmp_path, "alone", models={"zero": zero})])
    assert not any(c["best"] for c in alone["datasets"]["demo"]["table"]["rows"][0]["cells"].values())


def test_one_seed_shows_no_spread_and_training_is_in_the_table(built):
    report, run_dir = built
    cells = {m: _row(report, m)["cells"] for m in MODELS}
    assert cells["llm"]["macro_f1"]["text"] == "0.583"  # one seed: a std of 0 is no measurement
    assert cells["tfidf"]["macro_f1"]["text"] == "1.000 ± 0.000"  # two seeds that agree
    assert [cells[m]["train_time_s"]["text"] for m in MODELS] == ["36 s", "0 s", "1 s"]
    # train cost: 0.10 USD/hour x train time
    assert cells["tfidf"]["train_cost"]["value"] == pytest.approx(0.001)
    assert [cells[m]["train_cost"]["text"] for m in MODELS] == ["0.001", "0", "2.78e-05"]
    md = (run_dir / "report.md").read_text(encoding="utf-8")
    assert "| train time | train cost (USD) |" in md and "| 36 s | 0.001 |" in md
    assert "| llm | 1 | 0.583 |" in md and "±" not in md.split("| llm |")[1].split("\n")[0]
    html = (run_dir / "report.html").read_text(encoding="utf-8")
    assert "<th>train time</th><th>train cost (USD)</th>" in html and "<td>36 s</td>" in html


def test_error_browser_and_provenance(built):
    report, run_dir = built
    browser = report["datasets"]["demo"]["error_browser"][0]
    pos = next(c for c in browser["classes"] if c["label"] == "pos")
    # cheap-bad says neg for every text: left out, so t1 (wrong only there) is not listed and t2
    # is wrong in 1 of 3 predictions (llm refused; tfidf's two seeds right)
    assert browser["left_out"] == [
        {
            "model": "cheap-bad",
            "predicts": "neg",
            "seeds": 1,
            "text": "cheap-bad predicts neg for nearly every text (1/1 seeds)",
        }
    ]
    assert [e["id"] for e in pos["examples"]] == ["t2"]
    assert pos["examples"][0]["wrong"] == 1 and pos["examples"][0]["total"] == 3
    assert pos["examples"][0]["predictions"]["llm"]["status"] == "refused"
    assert set(pos["examples"][0]["predictions"]) == {"tfidf", "llm"}
    neg = next(c for c in browser["classes"] if c["label"] == "neg")
    assert [(e["id"], e["wrong"], e["total"]) for e in neg["examples"]] == [("t4", 1, 3)]
    assert pos["examples"][0]["text"] == TEXTS["t2"]
    run = report["runs"][0]
    assert run["experiment_yaml"].startswith("name: demo-run")
    assert len(run["datasets"]["demo"]["test_jsonl_sha256"]) == 64
    assert "scikit-learn" in report["environment"]["packages"]


def test_markdown_and_html_content(built):
    _, run_dir = built
    md = (run_dir / "report.md").read_text(encoding="utf-8")
    assert "| model | seeds | macro-F1 | 95% CI | accuracy | F1 pos | F1 neg |" in md
    assert "| **tfidf** |" not in md and "**1.000 ± 0.000**" in md
    assert "### By topic" in md and "I cannot" not in md
    html = (run_dir / "report.html").read_text(encoding="utf-8")
    images = re.findall(r'<img [^>]*src="data:image/png;base64,([A-Za-z0-9+/=]+)"', html)
    assert len(images) == 4  # bars, heat map, confusion grid, cost scatter
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", html)
    assert "http://" not in html and "https://" not in html
    assert "<script>alert(1)</script>" not in html and "&lt;script&gt;" in html  # texts are escaped
    assert 'class="best"' in html and "I cannot help with that." in html
    # three tables, none wider than a page: scores, F1 per class, cost and speed
    assert html.count('<table class="leaderboard">') == 3
    assert [t for t in re.findall(r"<h3>([^<]+)</h3>", html)][:3] == [
        "Scores",
        "F1 per class",
        "Cost and speed",
    ]
    assert (
        "Left out of this list (collapsed" in html and "cheap-bad predicts neg for nearly every text" in html
    )
    assert "Left out (collapsed" in md


def test_many_classes_split_the_per_class_table(tmp_path):
    a, b = make_wide_run(tmp_path, "run-a"), make_wide_run(tmp_path, "run-b")
    report = build_report([a, b], tmp_path / "merged")
    groups = report["datasets"]["stance"]["table"]["groups"]
    assert [g["title"] for g in groups] == [
        "Scores",
        "F1 per class (1/2)",
        "F1 per class (2/2)",
        "Cost and speed",
    ]
    per_class = [[c["title"] for c in g["columns"]] for g in groups[1:3]]
    assert per_class == [
        ["model"] + [f"F1 {x}" for x in WIDE_LABELS[:6]],
        ["model"] + [f"F1 {x}" for x in WIDE_LABELS[6:]],
    ]
    assert all(g["columns"][0]["key"] == "model" for g in groups)
    keys = {c["key"] for g in groups for c in g["columns"]}
    assert keys == {c["key"] for c in report["datasets"]["stance"]["table"]["columns"]}  # each shown
    html = (tmp_path / "merged" / "report.html").read_text(encoding="utf-8")
    assert html.count('<table class="leaderboard">') == 4
    cells = _row(report, "minilm-l6-finetuned-with-class-weights", "stance")["cells"]
    assert cells["train_time_s"]["text"] == "1.2 h" and cells["macro_f1"]["text"] == "0.800 ± 0.000"


def test_missing_texts_shows_ids_only(tmp_path):
    run_dir = make_run(tmp_path, with_texts=False)
    report = build_report([run_dir], tmp_path / "out")
    browser = report["datasets"]["demo"]["error_browser"][0]
    assert browser["has_texts"] is False
    assert all(e["text"] is None for c in browser["classes"] for e in c["examples"])
    assert (tmp_path / "out" / "report.html").is_file()
    assert report["runs"][0]["datasets"]["demo"]["test_jsonl_sha256"] is None


def test_merged_runs_one_leaderboard(tmp_path):
    a, b = make_run(tmp_path, "run-a"), make_run(tmp_path, "run-b")
    report = build_report([a, b], tmp_path / "merged")
    keys = [r["key"] for r in report["datasets"]["demo"]["table"]["rows"]]
    assert keys == [f"run-{x}/demo/{m}" for x in "ab" for m in MODELS]
    assert _row(report, "tfidf")["cells"]["model"]["text"] == "run-a / tfidf"
    assert len(report["datasets"]["demo"]["error_browser"]) == 2


def test_cli_report(run_dir, tmp_path):
    from socialens.cli import app

    result = CliRunner().invoke(app, ["report", str(run_dir), "--out", str(tmp_path / "cli-out")])
    assert result.exit_code == 0, result.output
    assert "report.html" in result.output
    assert (tmp_path / "cli-out" / "report.json").is_file()
    missing = CliRunner().invoke(app, ["report", str(tmp_path / "nope")])
    assert missing.exit_code == 2


# ---------------------------------------------------------------- a real headless browser


def _chromium(binary: str, tmp: Path, *args: str) -> subprocess.CompletedProcess:
    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        "--host-resolver-rules=MAP * ~NOTFOUND",  # any network request would fail loudly
        "--enable-logging=stderr",
        "--v=0",
        f"--user-data-dir={tmp / 'profile'}",
    ]
    return subprocess.run([binary, *flags, *args], capture_output=True, text=True, timeout=120)


def _png_size_and_ink(path: Path) -> tuple[int, int, float]:
    """Width, height and the share of non-white pixels of an RGB(A) 8-bit PNG (stdlib only)."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat, header = 8, b"", None
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos : pos + 8])
        chunk = data[pos + 8 : pos + 8 + length]
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", chunk)
        elif kind == b"IDAT":
            idat += chunk
        pos += 12 + length
    width, height, depth, color = header[:4]
    assert depth == 8 and color in (2, 6), f"unexpected PNG format {depth=} {color=}"
    channels = 3 if color == 2 else 4
    raw = zlib.decompress(idat)
    stride = width * channels
    # count non-white bytes on unfiltered rows' raw data: filters keep zero residue for flat white
    # runs only in some modes, so decode properly (Sub/Up/Average/Paeth)
    prev = bytearray(stride)
    ink = 0
    for row in range(height):
        start = row * (stride + 1)
        ftype, line = raw[start], bytearray(raw[start + 1 : start + 1 + stride])
        for i in range(stride):
            a = line[i - channels] if i >= channels else 0
            b, c = prev[i], prev[i - channels] if i >= channels else 0
            if ftype == 1:
                line[i] = (line[i] + a) & 0xFF
            elif ftype == 2:
                line[i] = (line[i] + b) & 0xFF
            elif ftype == 3:
                line[i] = (line[i] + (a + b) // 2) & 0xFF
            elif ftype == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 0xFF
        if row % 8 == 0:  # sample rows: enough to tell a blank page from a rendered one
            ink += sum(1 for i in range(0, stride, channels) if min(line[i : i + 3]) < 200)
        prev = line
    return width, height, ink / (width * ((height + 7) // 8))


@pytest.mark.slow
def test_html_renders_in_headless_chromium(built, tmp_path, chromium):
    binary = chromium
    _, run_dir = built
    url = (run_dir / "report.html").resolve().as_uri()
    dom = _chromium(binary, tmp_path, "--dump-dom", url)
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert 'class="leaderboard"' in dom.stdout and "<td" in dom.stdout
    assert len(re.findall(r'<img [^>]*src="data:image/png;base64,', dom.stdout)) == 4
    shot = tmp_path / "report.png"
    render = _chromium(binary, tmp_path, f"--screenshot={shot}", "--window-size=1280,4000", url)
    assert render.returncode == 0, render.stderr[-2000:]
    for log in (dom.stderr, render.stderr):
        assert "Failed to load resource" not in log
        assert not re.search(r"net::ERR_|ERR_NAME_NOT_RESOLVED|Uncaught|CONSOLE\(\d+\)", log), log[-2000:]
    width, height, ink = _png_size_and_ink(shot)
    assert (width, height) == (1280, 4000)
    assert ink > 0.02, f"screenshot is almost blank ({ink:.1%} non-white)"


# Measures, once the page has loaded, how far each table reaches past the body's content box.
LAYOUT_CHECK = """<script>
window.addEventListener("load", () => {
  const body = document.body;
  const right = body.getBoundingClientRect().right - parseFloat(getComputedStyle(body).paddingRight);
  const tables = [...document.querySelectorAll("table")];
  const out = document.createElement("pre");
  out.id = "layout-check";
  out.textContent = JSON.stringify({
    innerWidth: window.innerWidth,
    scrollWidth: document.documentElement.scrollWidth,
    clientWidth: document.documentElement.clientWidth,
    tables: tables.length,
    overflowing: tables.filter((t) => t.getBoundingClientRect().right > right + 0.5)
      .map((t) => [(t.closest(".scroll") || t).previousElementSibling?.textContent || "", Math.round(t.getBoundingClientRect().right - right)]),
  });
  body.appendChild(out);
});
</script>"""


def _layout(binary: str, tmp: Path, html: Path, width: int) -> dict:
    """The layout of ``html`` in a real Chromium window ``width`` px wide (a copy with LAYOUT_CHECK)."""
    probe = tmp / f"{html.parent.name}-{width}.html"
    probe.write_text(
        html.read_text(encoding="utf-8").replace("</body>", LAYOUT_CHECK + "</body>"), encoding="utf-8"
    )
    dom = _chromium(
        binary, tmp, f"--window-size={width},1000", "--virtual-time-budget=5000", "--dump-dom", probe.as_uri()
    )
    assert dom.returncode == 0, dom.stderr[-2000:]
    found = re.search(r'<pre id="layout-check">([^<]*)</pre>', dom.stdout)
    assert found, "the layout check did not run"
    return json.loads(found.group(1).replace("&quot;", '"').replace("&amp;", "&"))


@pytest.mark.slow
@pytest.mark.parametrize("width", [1280, 2000])
def test_every_table_fits_the_page_in_headless_chromium(built, tmp_path, width, chromium):
    binary = chromium
    _, run_dir = built
    wide = build_report(
        [make_wide_run(tmp_path, "run-a"), make_wide_run(tmp_path, "run-b")], tmp_path / "wide"
    )
    for html in (run_dir / "report.html", Path(wide["files"]["html"])):
        layout = _layout(binary, tmp_path, html, width)
        assert layout["innerWidth"] == width
        assert layout["tables"] >= 5  # three leaderboard tables (four with 12 classes), environment, run
        assert layout["overflowing"] == [], f"{html}: tables wider than the page at {width} px"
        assert layout["scrollWidth"] <= layout["clientWidth"], (
            f"{html}: the page scrolls sideways at {width} px"
        )


# ---------------------------------------------------------------- flags (issue 16)


def test_a_collapsed_model_and_an_uncovered_language_are_flagged(run_dir):
    # cheap-bad predicts "neg" for all 4 test texts: collapsed, computed from its records
    coverage = {"language": "ar", "model": "builtin:minilm-l6", "share": 0.847, "threshold": 0.3}
    (run_dir / "demo" / "llm" / "tokenizer_coverage.json").write_text(
        json.dumps({**coverage, "texts": 200, "tokens": 15651, "covered": False}), encoding="utf-8"
    )
    report = build_report([run_dir])
    flags = {m: _row(report, m)["cells"]["flags"]["text"] for m in MODELS}
    assert flags == {
        "tfidf": "",
        "llm": "tokenizer: 85% unknown or 1-letter tokens (ar)",
        "cheap-bad": "collapsed: predicts neg for 100% of the test set",
    }
    rows = {r["model"]: r for r in report["rows"]}
    assert rows["cheap-bad"]["aggregate"]["collapse"]["seeds"] == 1
    assert rows["llm"]["language_coverage"]["share"] == 0.847
    md = (run_dir / "report.md").read_text(encoding="utf-8")
    assert "| cheap-bad |" in md and "| collapsed: predicts neg for 100% of the test set |" in md
    html = (run_dir / "report.html").read_text(encoding="utf-8")
    assert html.count('<tr class="flagged">') == 2
    assert '<td class="flags">collapsed: predicts neg for 100% of the test set</td>' in html


# ---------------------------------------------------------------- the recommendation (issue 15)


def test_the_report_leads_with_the_recommendation(built):
    report, run_dir = built
    [rec] = report["recommendations"]
    assert rec["dataset"] == "demo" and rec["run"] == "demo-run" and rec["recommended"] in MODELS
    assert report["datasets"]["demo"]["recommendations"][0]["sentence"] == rec["sentence"]
    assert {c["model"] for c in rec["comparisons"]} == set(MODELS) - {rec["best"]}
    assert rec["weakest"].startswith("weakest class per model (F1): tfidf ")
    html = (run_dir / "report.html").read_text(encoding="utf-8")
    sentence = html.index('<p class="recommendation"><b>')
    assert sentence < html.index('class="leaderboard"') and sentence < html.index("Generated ")
    assert rec["lines"][0] in html and rec["weakest"] in html
    markdown = (run_dir / "report.md").read_text(encoding="utf-8").splitlines()
    assert markdown[2] == f"**{rec['sentence']}**"


FIRST_SCREEN_CHECK = """<script>
window.addEventListener("load", () => {
  const box = document.querySelector("#recommendation .recommendation").getBoundingClientRect();
  const out = document.createElement("pre");
  out.id = "first-screen";
  out.textContent = JSON.stringify({top: box.top, bottom: box.bottom, height: window.innerHeight,
                                    width: window.innerWidth, scrollY: window.scrollY});
  document.body.appendChild(out);
});
</script>"""


@pytest.mark.slow
def test_the_recommendation_is_on_the_first_screen_in_headless_chromium(built, tmp_path, chromium):
    _, run_dir = built
    probe = tmp_path / "first-screen.html"
    html = (run_dir / "report.html").read_text(encoding="utf-8")
    probe.write_text(html.replace("</body>", FIRST_SCREEN_CHECK + "</body>"), encoding="utf-8")
    dom = _chromium(
        chromium,
        tmp_path,
        "--window-size=1280,800",
        "--virtual-time-budget=5000",
        "--dump-dom",
        probe.as_uri(),
    )
    assert dom.returncode == 0, dom.stderr[-2000:]
    found = re.search(r'<pre id="first-screen">([^<]*)</pre>', dom.stdout)
    assert found, "the first-screen check did not run"
    box = json.loads(found.group(1).replace("&quot;", '"'))
    assert box["width"] == 1280 and box["scrollY"] == 0
    assert 0 <= box["top"] < box["bottom"] <= box["height"], box  # seen without scrolling
