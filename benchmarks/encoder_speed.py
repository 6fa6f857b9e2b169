"""Encoder speed: socialens' encoder family vs the plain transformers recipe, same model and data.

(a) training examples/s: EncoderClassifier.fit (dynamic padding, length-grouped batches) vs the
    usual Trainer recipe that tokenizes with padding="max_length" (same model, data, epochs,
    batch size, learning rate, max_length, seed); both timed from model load to the end of training.
(b) inference examples/s: EncoderClassifier.predict (length-sorted batches) vs
    transformers.pipeline("text-classification") on the trained model directory, same texts;
    the two must agree on every predicted label.

    HF_HUB_OFFLINE=1 python benchmarks/encoder_speed.py --quick
    HF_HUB_OFFLINE=1 python benchmarks/encoder_speed.py --n-train 2000 --n-test 1000 --epochs 1 --out results.json

The last two lines printed are the RESULT lines.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import DEFAULT_DATA_ROOT, load_benchmark_data, machine_info, result_line, write_json  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn  # noqa: E402
from rich.table import Table  # noqa: E402

console = Console(stderr=True)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--quick", action="store_true", help="the same comparison on less data (<1 min on 2 cores)"
    )
    parser.add_argument("--data-root", default=str(DEFAULT_DATA_ROOT), help="folder holding tweeteval/hate")
    parser.add_argument("--task", default="hate", help="tweeteval task (default hate)")
    parser.add_argument(
        "--n-train", type=int, default=None, help="training examples (default 1000, quick 256)"
    )
    parser.add_argument(
        "--n-test", type=int, default=None, help="prediction examples (default 1000, quick 256)"
    )
    parser.add_argument("--epochs", type=float, default=1.0)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--eval-batch-size", type=int, default=64)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--learning-rate", type=float, default=1e-4)
    parser.add_argument("--model", default="builtin:minilm-l6")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--repeats", type=int, default=None, help="prediction rounds each, best kept (default 2, quick 1)"
    )
    parser.add_argument("--out", default=None, help="write the measurements as JSON here")
    args = parser.parse_args(argv)
    args.n_train = args.n_train or (256 if args.quick else 1000)
    args.n_test = args.n_test or (256 if args.quick else 1000)
    args.repeats = args.repeats or (1 if args.quick else 2)
    return args


def make_progress() -> Progress:
    return Progress(
        TextColumn("[bold]{task.description:<34}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=False,
    )


def progress_hook(progress: Progress, task_id):
    def hook(stage: str, done: int, total: int) -> None:
        progress.update(task_id, completed=done, total=total)

    return hook


def encoder_params(args, **overrides):
    from socialens.classifiers.encoder import EncoderParams

    return EncoderParams(
        **{
            "model": args.model,
            "epochs": args.epochs,
            "learning_rate": args.learning_rate,
            "batch_size": args.batch_size,
            "eval_batch_size": args.eval_batch_size,
            "max_length": args.max_length,
            **overrides,
        }
    )


def warm_up(args, train_examples, progress: Progress) -> None:
    """Untimed 2-step runs of both recipes, so neither timed run pays the one-off costs (imports of
    Trainer and accelerate, first calls, page-ins of the weights, allocator growth)."""
    from socialens.classifiers.encoder import EncoderClassifier

    few = train_examples[: 2 * args.batch_size]
    task = progress.add_task("warm-up: socialens (untimed)", total=None)
    params = encoder_params(args, epochs=1)
    EncoderClassifier(params, seed=args.seed, progress=progress_hook(progress, task)).fit(few)
    texts, labels = [ex.text for ex in few], [ex.label for ex in few]
    train_baseline(args, texts, labels, progress, label="warm-up: Trainer (untimed)", epochs=1)


def train_ours(args, train_examples, model_dir: Path, progress: Progress) -> dict:
    from socialens.classifiers.encoder import EncoderClassifier

    task = progress.add_task("train: socialens encoder", total=None)
    params = encoder_params(args)
    start = time.perf_counter()
    clf = EncoderClassifier(params, seed=args.seed, progress=progress_hook(progress, task)).fit(
        train_examples
    )
    seconds = time.perf_counter() - start
    clf.save(model_dir)
    return {"seconds": seconds, "examples_per_s": len(train_examples) * args.epochs / seconds}


def train_baseline(
    args,
    texts: list[str],
    labels: list[str],
    progress: Progress,
    label: str = "train: Trainer, padding=max_length",
    epochs: float | None = None,
) -> dict:
    """The textbook recipe: pad every example to max_length, default random sampler."""
    from transformers import (
        AutoModelForSequenceClassification,
        AutoTokenizer,
        PrinterCallback,
        Trainer,
        TrainerCallback,
        TrainingArguments,
        set_seed,
    )
    from transformers.utils import logging as hf_logging

    from socialens.core.models import resolve_model

    task = progress.add_task(label, total=None)
    epochs = args.epochs if epochs is None else epochs

    class Hook(TrainerCallback):
        def on_step_end(self, a, state, control, **kwargs):
            progress.update(task, completed=state.global_step, total=state.max_steps)

    names = sorted(set(labels))
    hf_logging.set_verbosity_error()
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        set_seed(args.seed)
        path = resolve_model(args.model)
        tokenizer = AutoTokenizer.from_pretrained(path)
        model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=len(names))
        enc = tokenizer(texts, padding="max_length", truncation=True, max_length=args.max_length)
        dataset = [
            {**{k: enc[k][i] for k in enc.keys()}, "labels": names.index(labels[i])}
            for i in range(len(texts))
        ]
        training_args = TrainingArguments(
            output_dir=tmp,
            num_train_epochs=epochs,
            learning_rate=args.learning_rate,
            per_device_train_batch_size=args.batch_size,
            weight_decay=0.01,
            warmup_steps=0.1,
            save_strategy="no",
            report_to=[],
            disable_tqdm=True,
            seed=args.seed,
            dataloader_pin_memory=False,
        )
        trainer = Trainer(model=model, args=training_args, train_dataset=dataset, callbacks=[Hook()])
        trainer.remove_callback(PrinterCallback)
        trainer.train()
        seconds = time.perf_counter() - start
    return {"seconds": seconds, "examples_per_s": len(texts) * epochs / seconds}


def ours_predictor(model_dir: Path, examples):
    """A function(on_progress) -> (labels, scores) running socialens predict on ``examples``."""
    from socialens.classifiers.encoder import EncoderClassifier

    clf = EncoderClassifier.load(model_dir)
    clf.predict(examples[:8])  # warm-up, as the pipeline gets below

    def run(on_progress):
        clf.progress = lambda stage, done, total: on_progress(done)
        records = clf.predict(examples)
        return [r.predicted for r in records], [r.scores for r in records]

    return run


def pipeline_predictor(model_dir: Path, texts: list[str], max_length: int, **kwargs):
    """A function(on_progress) -> (labels, scores) running transformers.pipeline on ``texts``."""
    from transformers import pipeline

    pipe = pipeline("text-classification", model=str(model_dir), device="cpu")
    pipe(texts[:8], truncation=True, max_length=max_length, **kwargs)  # warm-up

    def run(on_progress):
        out = []
        for item in pipe(texts, truncation=True, max_length=max_length, top_k=None, **kwargs):
            out.append({d["label"]: d["score"] for d in item})
            on_progress(len(out))
        return [max(sc, key=sc.get) for sc in out], out

    return run


def time_predictors(predictors: dict, n: int, repeats: int, progress: Progress) -> dict[str, dict]:
    """Run every predictor ``repeats`` times, interleaved (so a burst of load from another process
    hits all of them alike), and keep each one's fastest round."""
    best: dict[str, dict] = {}
    for round_no in range(1, repeats + 1):
        for name, run in predictors.items():
            task = progress.add_task(f"predict: {name} ({round_no}/{repeats})", total=n)
            start = time.perf_counter()
            labels, scores = run(lambda done, task=task: progress.update(task, completed=done))
            seconds = time.perf_counter() - start
            if name not in best or seconds < best[name]["seconds"]:
                best[name] = {"seconds": seconds, "examples_per_s": n / seconds, "rounds": repeats}
                best[name].update(labels=labels, scores=scores)
    return best


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from transformers.utils import logging as hf_logging

    from socialens.core.types import Example

    hf_logging.disable_progress_bar()  # rich shows progress; no "Loading weights" bars

    dataset, (train_texts, train_labels), (test_texts, test_labels) = load_benchmark_data(
        args.data_root, args.n_train, args.n_test, args.task
    )
    train = [
        Example(id=f"train-{i}", text=t, label=y)
        for i, (t, y) in enumerate(zip(train_texts, train_labels, strict=True))
    ]
    test = [
        Example(id=f"test-{i}", text=t, label=y)
        for i, (t, y) in enumerate(zip(test_texts, test_labels, strict=True))
    ]
    console.print(
        f"[bold]encoder speed[/] {dataset}: {len(train)} train, {len(test)} test, epochs={args.epochs}, "
        f"batch={args.batch_size}, max_length={args.max_length}, model={args.model}"
    )

    machine_at_start = machine_info()
    if machine_at_start["loadavg_1m"] > 1:
        console.print(
            f"[yellow]load average {machine_at_start['loadavg_1m']} before starting: other processes "
            "compete for the CPU, timings will be noisy[/]"
        )
    with tempfile.TemporaryDirectory() as tmp, make_progress() as progress:
        model_dir = Path(tmp) / "model"
        warm_up(args, train, progress)
        ours_train = train_ours(args, train, model_dir, progress)  # ours first: it pays any warm-up cost
        base_train = train_baseline(args, train_texts, train_labels, progress)
        predictors = {
            "socialens": ours_predictor(model_dir, test),
            "pipeline": pipeline_predictor(model_dir, test_texts, args.max_length),
            f"pipeline bs={args.eval_batch_size}": pipeline_predictor(
                model_dir, test_texts, args.max_length, batch_size=args.eval_batch_size
            ),
        }
        timed = time_predictors(predictors, len(test), args.repeats, progress)
        ours_pred, base_pred, batched_pred = timed.values()

    agree = sum(a == b for a, b in zip(ours_pred["labels"], base_pred["labels"], strict=True)) / len(test)
    agree_batched = sum(
        a == b for a, b in zip(ours_pred["labels"], batched_pred["labels"], strict=True)
    ) / len(test)
    max_diff = max(
        abs(a[k] - b[k]) for a, b in zip(ours_pred["scores"], base_pred["scores"], strict=True) for k in a
    )

    table = Table(title=f"encoder speed on {dataset} ({machine_info()['torch_threads']} torch threads)")
    for col in ("stage", "implementation", "seconds", "examples/s", "vs baseline"):
        table.add_column(col, justify="left" if col in ("stage", "implementation") else "right")
    rows = [
        ("train", "socialens fit (dynamic padding, length groups)", ours_train, base_train),
        ("train", "Trainer, padding=max_length [baseline]", base_train, base_train),
        ("predict", "socialens predict (length-sorted batches)", ours_pred, base_pred),
        ("predict", "pipeline(), default batch_size [baseline]", base_pred, base_pred),
        ("predict", f"pipeline(batch_size={args.eval_batch_size}) [reference]", batched_pred, base_pred),
    ]
    for stage, name, m, ref in rows:
        ratio = m["examples_per_s"] / ref["examples_per_s"]
        table.add_row(stage, name, f"{m['seconds']:.2f}", f"{m['examples_per_s']:.1f}", f"{ratio:.2f}x")
    console.print(table)
    console.print(
        f"label agreement with pipeline: {agree:.2%} (batched pipeline {agree_batched:.2%}); "
        f"max |prob difference| {max_diff:.2e}"
    )

    payload = {
        "benchmark": "encoder_speed",
        "dataset": dataset,
        "settings": {k: v for k, v in vars(args).items() if k != "out"},
        "n_train": len(train),
        "n_test": len(test),
        "machine": {**machine_at_start, "loadavg_1m_at_end": machine_info()["loadavg_1m"]},
        "train": {"ours": ours_train, "baseline": base_train},
        "predict": {
            "ours": {k: v for k, v in ours_pred.items() if k not in ("labels", "scores")},
            "baseline": {k: v for k, v in base_pred.items() if k not in ("labels", "scores")},
            "pipeline_batched": {k: v for k, v in batched_pred.items() if k not in ("labels", "scores")},
            "label_agreement": agree,
            "label_agreement_batched": agree_batched,
            "max_abs_prob_diff": max_diff,
        },
    }
    write_json(args.out, payload)
    if agree < 1.0:
        console.print(f"[red]predictions differ from the pipeline's on {1 - agree:.2%} of the texts[/]")
        return 1
    print(
        result_line(
            "encoder_train_speed", ours_train["examples_per_s"], base_train["examples_per_s"], "examples/s"
        )
    )
    print(
        result_line(
            "encoder_predict_speed", ours_pred["examples_per_s"], base_pred["examples_per_s"], "examples/s"
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
