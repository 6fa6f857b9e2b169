"""Report build speed: build_report over N synthetic run dirs (merged into one report).

Each run dir has 1 dataset x 3 models x 3 seeds x 1,000 hand-made prediction records (3 classes,
topic and language metadata, some refusals, an LLM-like model with costs and raw outputs) plus
test.jsonl, split.json, metrics.json and experiment.yaml, exactly the files bench writes. The time
covers reading every file, recomputing every metric (bootstrap CIs included), the figures and
writing report.html / report.md / report.json.

Baseline: the goal, 10 s for 10 runs (no other tool builds this report).

    python benchmarks/report_speed.py            # 10 runs
    python benchmarks/report_speed.py --quick    # 2 runs x 300 records

The last line printed is the RESULT line.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import yaml  # noqa: E402
from _common import result_line  # noqa: E402

from socialens.core.types import PredictionRecord, Status, write_records  # noqa: E402
from socialens.evaluation.report import build_report  # noqa: E402

LABELS = ["belief", "debunk", "other"]
MODELS = {  # id: (family, accuracy, refusal rate, cost per record, latency)
    "tfidf-logreg": ("tfidf", 0.62, 0.0, 0.0, 0.00005),
    "minilm": ("encoder", 0.70, 0.0, 0.0, 0.004),
    "smollm2-zero-shot": ("prompted", 0.40, 0.08, 0.00004, 0.35),
}


def make_run(root: Path, index: int, n_records: int, seeds: list[int]) -> Path:
    rng = random.Random(index)
    name = f"synthetic-{index:02d}"
    run_dir = root / name
    ds = run_dir / "synthetic"
    ds.mkdir(parents=True)
    experiment = {
        "name": name,
        "bootstrap": 1000,
        "seeds": seeds,
        "slice_by": ["topic", "language"],
        "models": [{"id": m, "family": f} for m, (f, *_) in MODELS.items()],
    }
    (run_dir / "experiment.yaml").write_text(yaml.safe_dump(experiment, sort_keys=False), encoding="utf-8")
    schema = {"name": "universal", "labels": [{"name": n, "description": "", "aliases": []} for n in LABELS]}
    (ds / "split.json").write_text(json.dumps({"schema": schema, "stats": {"n_test": n_records}}), "utf-8")
    examples = [
        {
            "id": f"test-{i}",
            "text": f"synthetic comment {i} "
            + " ".join(rng.choice(["vaccine", "claim", "fake", "news"]) for _ in range(20)),
            "label": rng.choice(LABELS),
            "metadata": {
                "topic": rng.choice(["covid", "climate", "election"]),
                "language": rng.choice(["en", "ar"]),
            },
        }
        for i in range(n_records)
    ]
    with (ds / "test.jsonl").open("w", encoding="utf-8") as handle:
        handle.writelines(json.dumps(ex) + "\n" for ex in examples)
    for model, (family, accuracy, refusal, cost, latency) in MODELS.items():
        for seed in seeds:
            cell = ds / model / f"seed-{seed}"
            cell.mkdir(parents=True)
            records = []
            for ex in examples:
                refused = rng.random() < refusal
                right = rng.random() < accuracy
                predicted = ex["label"] if right else rng.choice([x for x in LABELS if x != ex["label"]])
                records.append(
                    PredictionRecord(
                        id=ex["id"],
                        gold=ex["label"],
                        predicted=None if refused else predicted,
                        status=Status.REFUSED if refused else Status.OK,
                        raw_output=("I can't help." if refused else f"Answer: {predicted}")
                        if family == "prompted"
                        else None,
                        latency_s=latency * rng.uniform(0.5, 1.5),
                        tokens_in=120 if family == "prompted" else 0,
                        tokens_out=3 if family == "prompted" else 0,
                        cost=cost,
                        metadata=ex["metadata"],
                    )
                )
            write_records(cell / "predictions.jsonl", records)
            costs = {"train_time_s": 10.0, "predict_time_s": latency * n_records, "n_test": n_records}
            (cell / "metrics.json").write_text(
                json.dumps({"family": family, "seed": seed, "costs": costs}), "utf-8"
            )
    return run_dir


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="2 runs x 300 records")
    parser.add_argument("--data-root", default=None, help="accepted for a uniform interface; unused")
    parser.add_argument("--runs", type=int, default=10, help="number of run dirs (default 10)")
    parser.add_argument("--records", type=int, default=1000, help="test records per cell (default 1000)")
    args = parser.parse_args(argv)
    n_runs, n_records = (2, 300) if args.quick else (args.runs, args.records)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        runs = [make_run(root, i, n_records, [0, 1, 2]) for i in range(n_runs)]
        start = time.perf_counter()
        report = build_report(runs, root / "report")
        elapsed = time.perf_counter() - start
        size = Path(report["files"]["html"]).stat().st_size
    print(
        f"{n_runs} runs x {len(MODELS)} models x 3 seeds x {n_records} records: "
        f"build_report {elapsed:.2f} s, report.html {size / 1e6:.2f} MB, {len(report['rows'])} leaderboard rows"
    )
    print(result_line("report_build", elapsed, 10.0, "s"))


if __name__ == "__main__":
    main()
