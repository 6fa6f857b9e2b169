"""Training-order comparison of the LlamaLens recipe: the same multi-dataset instruction mix in the
four orders (alphabetical, within_language, by_task, random), one short LoRA run of SmolLM2-135M
per order, then macro-F1 on a stratified test sample of every dataset.

Data: configs/instruct-mix.yaml (tweeteval-hate, tweeteval-offensive, ct_fan_22 in English,
arsarcasm_v2-sarcasm in Arabic, hasoc2019_hi-a in Hindi), each dataset capped (stratified) at --cap
training examples, one of its hand-written instructions sampled per example
(socialens.tuning.mix.build_mix). --base picks the model (SmolLM2 by default; builtin:gemma3-270m,
a base model, is trained and scored in the plain rendering).

Training: socialens.tuning.lora.train_lora, identical parameters and seed for every order; the
Trainer is made to read the records in file order (a random sampler would erase the difference
being measured). Evaluation: every test prompt (its own sampled instruction, no answer) is scored
with the hf backend and the adapter; the label whose "Label: <label>" continuation has the highest
summed log-probability is the prediction. The untuned base model is scored the same way.

    HF_HUB_OFFLINE=1 python benchmarks/instruct_shuffle.py --quick
    HF_HUB_OFFLINE=1 python benchmarks/instruct_shuffle.py --cap 16 --test-per-dataset 12

The RESULT line compares by_task (ours: the best order in LlamaLens) with random (baseline) on the
mean of the per-dataset macro-F1 scores.
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

from _common import DEFAULT_DATA_ROOT, REPO_ROOT, machine_info, result_line, write_json  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn  # noqa: E402
from rich.table import Table  # noqa: E402

console = Console(stderr=True)
BASE = "builtin:smollm2-135m-instruct"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--quick", action="store_true", help="the same comparison on less data (<1 min of training)"
    )
    parser.add_argument("--data-root", default=str(DEFAULT_DATA_ROOT))
    parser.add_argument("--mix", default=str(REPO_ROOT / "configs" / "instruct-mix.yaml"))
    parser.add_argument("--cap", type=int, default=16, help="training examples per dataset (stratified)")
    parser.add_argument("--test-per-dataset", type=int, default=12, help="stratified test sample per dataset")
    parser.add_argument("--epochs", type=float, default=1.0)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--learning-rate", type=float, default=5e-4)
    parser.add_argument("--max-length", type=int, default=160)
    parser.add_argument("--max-text-chars", type=int, default=240, help="texts cut to this length (articles)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1 is fastest on a busy CPU)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--base", default=BASE, help="the model tuned (builtin:<name>, folder or hub id)")
    parser.add_argument("--work-dir", default=None, help="keep the built sets and adapters here")
    parser.add_argument("--out", default=None, help="write the results as JSON")
    args = parser.parse_args(argv)
    if args.quick:
        args.cap, args.test_per_dataset = min(args.cap, 4), min(args.test_per_dataset, 3)
    return args


def lora_params(args: argparse.Namespace):
    from socialens.tuning.lora import LoraParams

    values = dict(
        epochs=args.epochs,
        batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        max_length=args.max_length,
        seed=args.seed,
        sampling="sequential",  # the order the shuffle strategy wrote is the order trained on
        num_threads=args.threads,
        save_steps=10_000,
    )
    return LoraParams(**values)


def evaluate(
    test_records: list[dict], labels_by_dataset: dict[str, list[str]], adapter: str | None, args, progress
):
    """Per-dataset macro-F1 of label scoring over the test prompts (with or without the adapter)."""
    from sklearn.metrics import f1_score

    from socialens.llm.base import get_backend
    from socialens.tuning.instructions import ANSWER_PREFIX

    console.log(f"scoring {len(test_records)} test prompts ({'tuned' if adapter else 'untuned'})")
    backend = get_backend("hf")(args.base, adapter=adapter, threads=args.threads, batch_size=8)
    task = progress.add_task(f"scoring ({'tuned' if adapter else 'untuned'})", total=len(test_records))
    gold: dict[str, list[str]] = {}
    predicted: dict[str, list[str]] = {}
    errors = 0
    start = time.perf_counter()
    try:
        for record in test_records:
            labels = labels_by_dataset[record["dataset"]]
            scores = backend.score(record["messages"], [f"{ANSWER_PREFIX}{label}" for label in labels])
            if scores.error:
                errors += 1
                guess = "<error>"  # counted as wrong, never replaced by a label
            else:
                guess = labels[max(range(len(labels)), key=lambda i: scores.logprobs[i])]
            gold.setdefault(record["dataset"], []).append(record["label"])
            predicted.setdefault(record["dataset"], []).append(guess)
            progress.advance(task)
    finally:
        backend.close()
    f1 = {
        name: float(
            f1_score(
                gold[name], predicted[name], labels=labels_by_dataset[name], average="macro", zero_division=0
            )
        )
        for name in gold
    }
    return {
        "macro_f1": f1,
        "mean_macro_f1": sum(f1.values()) / len(f1),
        "errors": errors,
        "scoring_s": round(time.perf_counter() - start, 1),
        "predicted_share": {
            name: {
                label: predicted[name].count(label) / len(predicted[name])
                for label in labels_by_dataset[name]
            }
            for name in predicted
        },
    }


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    from socialens.tuning.lora import train_lora
    from socialens.tuning.mix import SHUFFLES, build_mix, load_mix, read_records

    loaded = load_mix(args.mix)
    loaded.mix.test_sample = args.test_per_dataset
    loaded.mix.dev_cap = 1  # dev is not used here
    loaded.mix.max_text_chars = args.max_text_chars
    work = Path(args.work_dir or tempfile.mkdtemp(prefix="instruct-shuffle-"))
    quiet = Console(quiet=True)
    built, results = {}, {}
    for shuffle in SHUFFLES:
        stats = build_mix(
            loaded,
            work / shuffle,
            shuffle=shuffle,
            cap=args.cap,
            seed=args.seed,
            data_root=args.data_root,
            console=quiet,
        )
        built[shuffle] = stats
    labels_by_dataset = {}
    for name, info in built["random"]["datasets"].items():
        from socialens.tuning.instructions import load_instruction_set

        labels_by_dataset[name] = load_instruction_set(info["instructions_file"]).labels
    test_records = read_records(work / "random" / "test.jsonl")  # identical in every order
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console) as progress:
        results["untuned"] = {"eval": evaluate(test_records, labels_by_dataset, None, args, progress)}
        for shuffle in SHUFFLES:
            records = read_records(work / shuffle / "train.jsonl")
            params = lora_params(args)
            bar = progress.add_task(f"training ({shuffle})", total=None)

            def on_progress(stage, done, total, bar=bar):
                progress.update(bar, completed=done, total=total)

            console.log(f"training on the {shuffle} order ({len(records)} records)")
            report = train_lora(records, args.base, work / shuffle / "lora", params, progress=on_progress)
            losses = [entry["loss"] for entry in report.losses]
            tail = losses[-max(1, len(losses) // 5) :]
            results[shuffle] = {
                "train": {
                    "examples": report.examples,
                    "steps": report.steps,
                    "first_loss": losses[0] if losses else None,
                    "final_loss_mean_last_20pct": sum(tail) / len(tail) if tail else None,
                    "train_time_s": report.train_time_s,
                    "truncated": report.truncated,
                },
                "order": built[shuffle]["splits"]["train"]["runs"],
                "eval": evaluate(test_records, labels_by_dataset, report.adapter_dir, args, progress),
            }
    table = Table(
        title=f"training order vs quality (cap {args.cap}/dataset, test {args.test_per_dataset}/dataset)"
    )
    names = list(labels_by_dataset)
    for column in ("order", "blocks d/l/t", "final loss", *names, "mean macro-F1"):
        table.add_column(column, justify="left" if column == "order" else "right")
    for key, result in results.items():
        runs = result.get("order")
        train = result.get("train")
        f1 = result["eval"]["macro_f1"]
        table.add_row(
            key,
            f"{runs['dataset']}/{runs['language']}/{runs['task']}" if runs else "-",
            f"{train['final_loss_mean_last_20pct']:.3f}" if train else "-",
            *(f"{f1[n]:.3f}" for n in names),
            f"{result['eval']['mean_macro_f1']:.3f}",
        )
    console.print(table)
    write_json(
        args.out,
        {
            "args": vars(args),
            "machine": machine_info(),
            "results": results,
            "stats": {k: v["splits"] for k, v in built.items()},
        },
    )
    print(
        result_line(
            "instruct_shuffle_by_task_vs_random_macro_f1",
            results["by_task"]["eval"]["mean_macro_f1"],
            results["random"]["eval"]["mean_macro_f1"],
            "macro_f1",
        )
    )


if __name__ == "__main__":
    main()
