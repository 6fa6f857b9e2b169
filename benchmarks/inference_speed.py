"""Inference speed: the ONNX int8 export of a fine-tuned MiniLM against transformers.pipeline.

One run fine-tunes (or takes --model) a MiniLM encoder on a capped TweetEval hate training set,
exports it with `export_onnx` (fp32 ONNX + int8: by default the "auto" scheme of `socialens export
onnx`, which keeps onnxruntime's dynamic int8 only when it agrees with torch on the dev tweets at
least 99.5% of the time and otherwise takes blockwise int8), then labels the same test tweets with
  (a) transformers.pipeline("text-classification") on the saved model directory [baseline],
  (b) socialens' torch path (EncoderClassifier.load(engine="torch"), length-sorted batches),
  (c) socialens' ONNX int8 path (EncoderClassifier.load(): the same batching, onnxruntime),
  and, as a reference only, the pipeline with batch_size=64 (ours batches 64 too),
interleaved, each `--repeats` times, fastest round kept; all three use the same CPU threads.
Goal: (c) at least 3x (a) in examples/s, macro-F1 of (c) within 0.5 points of (b).

    HF_HUB_OFFLINE=1 python benchmarks/inference_speed.py --quick
    HF_HUB_OFFLINE=1 python benchmarks/inference_speed.py --out results.json

The last line printed is the RESULT line (ours = ONNX int8 examples/s, baseline = pipeline's).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import DEFAULT_DATA_ROOT, REPO_ROOT, machine_info, result_line, write_json  # noqa: E402
from encoder_speed import make_progress, pipeline_predictor, progress_hook, time_predictors  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

console = Console(stderr=True)
DATASET_YAML = REPO_ROOT / "configs" / "datasets" / "tweeteval-hate.yaml"
SPEED_GOAL = 3.0
F1_GAP_GOAL = 0.005


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--quick", action="store_true", help="the same comparison on less data (<1 min on 2 cores)"
    )
    parser.add_argument("--data-root", default=str(DEFAULT_DATA_ROOT), help="folder holding tweeteval/hate")
    parser.add_argument("--model", default=None, help="a trained encoder model dir (skips fine-tuning)")
    parser.add_argument(
        "--n-train", type=int, default=None, help="stratified training cap (default 2000, quick 300)"
    )
    parser.add_argument("--n-test", type=int, default=None, help="test tweets (default: all 2970, quick 300)")
    parser.add_argument(
        "--n-dev", type=int, default=None, help="dev tweets for the export check (default 500, quick 100)"
    )
    parser.add_argument("--epochs", type=float, default=None, help="default 1, quick 0.5")
    parser.add_argument("--base-model", default="builtin:minilm-l6")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--quantization", choices=("auto", "dynamic", "blockwise"), default="auto", help="int8 scheme"
    )
    parser.add_argument(
        "--repeats", type=int, default=None, help="prediction rounds each, best kept (default 2, quick 1)"
    )
    parser.add_argument("--out", default=None, help="write the measurements as JSON here")
    args = parser.parse_args(argv)
    args.n_train = args.n_train or (300 if args.quick else 2000)
    args.n_test = args.n_test or (300 if args.quick else None)
    args.n_dev = args.n_dev or (100 if args.quick else 500)
    args.epochs = args.epochs or (0.5 if args.quick else 1.0)
    args.repeats = args.repeats or (1 if args.quick else 2)
    return args


def load_data(args):
    """(train, dev, test, schema) from the dataset YAML, through the data layer."""
    from socialens.data.datasets import load_dataset
    from socialens.data.prepare import stratified_split

    raw = load_dataset(DATASET_YAML, data_root=args.data_root)
    train = raw.splits["train"]
    if args.n_train < len(train):
        _, train = stratified_split(train, args.n_train, seed=args.seed)
    dev = raw.splits["dev"][: args.n_dev]
    test = raw.splits["test"][: args.n_test] if args.n_test else raw.splits["test"]
    return train, dev, test, raw.schema


def fine_tune(args, train, schema, model_dir: Path, progress) -> float:
    from socialens.classifiers.encoder import EncoderClassifier, EncoderParams

    task = progress.add_task("train: socialens encoder", total=None)
    params = EncoderParams(model=args.base_model, epochs=args.epochs, early_stopping_patience=None)
    start = time.perf_counter()
    clf = EncoderClassifier(params, seed=args.seed, progress=progress_hook(progress, task))
    clf.fit(train, schema=schema).save(model_dir)
    return time.perf_counter() - start


def socialens_predictor(model_dir: Path, examples, engine: str):
    """A function(on_progress) -> (labels, scores) predicting ``examples`` with one engine."""
    from socialens.classifiers.encoder import EncoderClassifier

    clf = EncoderClassifier.load(model_dir, engine=engine)
    clf.predict(examples[:8])  # warm-up, as pipeline_predictor does

    def run(on_progress):
        clf.progress = lambda stage, done, total: on_progress(done)
        records = clf.predict(examples)
        return [r.predicted for r in records], [r.scores for r in records]

    return run, clf.engine


def macro_f1(gold: list[str], predicted: list[str], names: list[str]) -> float:
    from sklearn.metrics import f1_score

    return float(f1_score(gold, predicted, labels=names, average="macro", zero_division=0))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from transformers.utils import logging as hf_logging

    from socialens.classifiers.base import read_model_info
    from socialens.serving.onnx_export import export_onnx

    hf_logging.disable_progress_bar()
    train, dev, test, schema = load_data(args)
    gold, names = [ex.label for ex in test], schema.names
    console.print(
        f"[bold]inference speed[/] tweeteval-hate: {len(test)} test tweets, "
        + (f"model {args.model}" if args.model else f"fine-tuned on {len(train)} for {args.epochs} epochs")
    )
    machine_at_start = machine_info()
    with tempfile.TemporaryDirectory() as tmp, make_progress() as progress:
        model_dir = Path(tmp) / "model"
        train_s = None
        if args.model:  # a copy: the export writes onnx/ into the model directory
            shutil.copytree(args.model, model_dir, ignore=shutil.ignore_patterns("onnx", ".onnx-*"))
        else:
            train_s = fine_tune(args, train, schema, model_dir, progress)
        task = progress.add_task("export: ONNX + int8, check on dev", total=None)
        export = export_onnx(
            model_dir, dev, dev_source=f"tweeteval-hate dev[:{len(dev)}]", quantization=args.quantization
        )
        progress.update(task, total=1, completed=1)
        texts = [ex.text for ex in test]
        torch_run, _ = socialens_predictor(model_dir, test, "torch")
        onnx_run, onnx_engine = socialens_predictor(model_dir, test, "auto")
        max_length = read_model_info(model_dir)["params"]["max_length"]
        predictors = {
            "pipeline": pipeline_predictor(model_dir, texts, max_length),
            "socialens torch": torch_run,
            f"socialens {onnx_engine} ({export.quantization})": onnx_run,
            # reference, not the baseline: the pipeline given the same batch size as ours
            "pipeline bs=64 [reference]": pipeline_predictor(model_dir, texts, max_length, batch_size=64),
        }
        timed = time_predictors(predictors, len(test), args.repeats, progress)
    pipe, ours_torch, ours_onnx, _ = timed.values()

    f1 = {name: macro_f1(gold, m["labels"], names) for name, m in timed.items()}
    agree = sum(a == b for a, b in zip(ours_torch["labels"], ours_onnx["labels"], strict=True)) / len(test)
    agree_pipe = sum(a == b for a, b in zip(ours_torch["labels"], pipe["labels"], strict=True)) / len(test)
    speedup = ours_onnx["examples_per_s"] / pipe["examples_per_s"]
    f1_gap = f1[f"socialens {onnx_engine} ({export.quantization})"] - f1["socialens torch"]

    table = Table(title=f"inference on tweeteval-hate test ({machine_at_start['torch_threads']} threads)")
    for col in ("implementation", "seconds", "examples/s", "vs pipeline", "macro-F1"):
        table.add_column(col, justify="left" if col == "implementation" else "right")
    for name, m in timed.items():
        ratio = m["examples_per_s"] / pipe["examples_per_s"]
        table.add_row(
            name, f"{m['seconds']:.2f}", f"{m['examples_per_s']:.1f}", f"{ratio:.2f}x", f"{f1[name]:.4f}"
        )
    console.print(table)
    for line in export.lines():
        console.print(line, highlight=False, soft_wrap=True)
    console.print(
        f"test: ONNX int8 vs torch labels agree on {agree:.2%}, macro-F1 gap {100 * f1_gap:+.2f} points; "
        f"torch vs pipeline labels agree on {agree_pipe:.2%}",
        highlight=False,
    )
    for ok, goal in (
        (speedup >= SPEED_GOAL, f"ONNX int8 >= {SPEED_GOAL:.0f}x pipeline ({speedup:.2f}x)"),
        (abs(f1_gap) <= F1_GAP_GOAL, f"macro-F1 within 0.5 points of torch ({100 * f1_gap:+.2f})"),
    ):
        console.print(f"[{'green' if ok else 'red'}]{'met' if ok else 'MISSED'}[/]: {goal}")

    payload = {
        "benchmark": "inference_speed",
        "dataset": "tweeteval-hate",
        "settings": {k: v for k, v in vars(args).items() if k != "out"},
        "n_train": None if args.model else len(train),
        "n_test": len(test),
        "train_s": train_s,
        "machine": {**machine_at_start, "loadavg_1m_at_end": machine_info()["loadavg_1m"]},
        "export": export.to_dict(),
        "predict": {
            name: {**{k: v for k, v in m.items() if k not in ("labels", "scores")}, "macro_f1": f1[name]}
            for name, m in timed.items()
        },
        "onnx_vs_torch_label_agreement": agree,
        "onnx_vs_torch_macro_f1_gap": f1_gap,
        "torch_vs_pipeline_label_agreement": agree_pipe,
    }
    write_json(args.out, payload)
    print(
        result_line(
            "onnx_int8_predict_speed", ours_onnx["examples_per_s"], pipe["examples_per_s"], "examples/s"
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
