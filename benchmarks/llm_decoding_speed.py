"""LLM decoding speed: label scoring and constrained decoding vs free generation + parsing.

Same model (default builtin:smollm2-135m-instruct through the llamacpp backend), same texts (a
stratified sample of the TweetEval hate test set, or of the built-in demo data without a data root),
same zero-shot prompt: the product's default (`family: prompted`, `prompt: serial`, built by
socialens.llm.prompts.PromptBuilder from the dataset's label schema and task), in one run:

(a) scored:      one LlamaCppBackend.score(prompt, labels) call per text (the prompt's KV cache is
                 evaluated once and reused for every label, and across texts for the shared
                 prefix); the label with the highest summed log-probability wins.
(b) constrained: LlamaCppBackend.generate with params.choices = the labels (GBNF grammar).
(c) generate:    free generation of up to 20 tokens, then parsing (socialens.llm.parsing.parse_label
                 when present, else the first label name found case-insensitively in the output,
                 longest names first; none found = invalid), with llama-cpp-python's automatic reuse
                 of the KV cache for the prompt prefix shared with the previous text: a stronger
                 baseline than LlamaLens ran.
(d) llamalens:   the LlamaLens-style baseline the goal names: the same free generation + parsing,
                 each prompt evaluated from scratch as transformers' ``generate`` does in the
                 LlamaLens evaluation (the KV cache is cleared before every text).

The RESULT line compares scored with (d); the table also gives every mode's ratio to (c).

    HF_HUB_OFFLINE=1 python benchmarks/llm_decoding_speed.py --quick
    HF_HUB_OFFLINE=1 python benchmarks/llm_decoding_speed.py --n 200 --out llm_decoding.json

The last line printed is the RESULT line.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import DEFAULT_DATA_ROOT, result_line, write_json  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn  # noqa: E402
from rich.table import Table  # noqa: E402

console = Console(stderr=True)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="the same comparison on 24 texts (<1 min)")
    parser.add_argument("--data-root", default=str(DEFAULT_DATA_ROOT), help="folder holding tweeteval/hate")
    parser.add_argument("--n", type=int, default=200, help="texts to classify (default 200; quick 24)")
    parser.add_argument("--model", default="builtin:smollm2-135m-instruct")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="llama.cpp threads (default 1: on a small shared CPU, more threads than free cores "
        "makes llama.cpp's spinning thread pool many times slower)",
    )
    parser.add_argument("--n-ctx", type=int, default=1024)
    parser.add_argument("--max-tokens", type=int, default=20, help="baseline generation length")
    parser.add_argument("--block", type=int, default=8, help="texts per turn when the modes alternate")
    parser.add_argument("--out", default=None, help="write the measurements as JSON here")
    args = parser.parse_args(argv)
    if args.quick:
        args.n = 24
    return args


def load_texts(data_root: str | Path, n: int):
    """(dataset name, texts, gold labels, label schema, task) of a stratified sample of ``n`` test texts."""
    from socialens.data.datasets import load_dataset
    from socialens.data.prepare import stratified_split

    root = Path(data_root)
    if (root / "tweeteval" / "hate" / "test_text.txt").is_file():
        raw = load_dataset(
            Path(__file__).resolve().parents[1] / "configs" / "datasets" / "tweeteval-hate.yaml",
            data_root=root,
        )
        name, examples = "tweeteval/hate (test)", raw.splits["test"]
    else:
        raw = load_dataset("builtin:reddit_misinfo_demo")
        name, examples = "builtin:reddit_misinfo_demo", [ex for part in raw.splits.values() for ex in part]
    if n < len(examples):
        _, examples = stratified_split(examples, n, seed=0)  # as `test_sample` in an experiment does
    task = raw.config.task if raw.config is not None else None
    return name, [ex.text for ex in examples], [ex.label for ex in examples], raw.schema, task


def prompt_maker(schema, task):
    """The product's default zero-shot prompt (style serial) for this dataset, as `family: prompted` builds it."""
    from socialens.core.types import Example
    from socialens.llm.prompts import PromptBuilder

    builder = PromptBuilder(schema, style="serial", task=task)
    return lambda text: builder.messages(Example("x", text, None, {}), shots=[])


def make_parser(labels: list[str]) -> tuple[str, Callable[[str], str | None]]:
    try:
        from socialens.core.types import LabelSchema
        from socialens.tasks.label_parsing import parse_label

        schema = LabelSchema.from_names(labels)

        def parse(output: str) -> str | None:
            result = parse_label(output, schema)
            return result.label if result.ok else None

        return "socialens.tasks.label_parsing.parse_label", parse
    except ImportError:
        ordered = sorted(labels, key=len, reverse=True)  # "not-hate" before "hate"

        def simple(output: str) -> str | None:
            lowered = output.lower()
            found = [(lowered.find(label.lower()), -len(label), label) for label in ordered]
            found = [f for f in found if f[0] >= 0]
            return min(found)[2] if found else None

        return "first label name in the output", simple


def macro_f1(gold: list[str], predicted: list[str | None], labels: list[str]) -> float:
    from sklearn.metrics import f1_score

    # an invalid answer counts as wrong: it gets a label that is never gold
    pred = [p if p is not None else "<invalid>" for p in predicted]
    return float(f1_score(gold, pred, labels=labels, average="macro", zero_division=0))


def run_modes(
    modes: list[tuple[str, Callable[[str], str | None]]], texts: list[str], block: int
) -> dict[str, tuple[list[str | None], float]]:
    """Each mode's predictions and total seconds. The modes take turns over blocks of ``block``
    consecutive texts, so a burst of load from other work on a shared machine slows every mode
    alike instead of whichever happened to be running; within a block each mode sees the texts
    in order, as it would alone (the prefix-reuse baseline keeps its cache hits)."""
    for _, classify in modes:
        classify(texts[0])  # warm-up, not timed
    predicted: dict[str, list[str | None]] = {name: [] for name, _ in modes}
    seconds = dict.fromkeys(predicted, 0.0)
    with Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), console=console, transient=True
    ) as progress:
        task = progress.add_task("all modes", total=len(texts) * len(modes))
        for start in range(0, len(texts), block):
            chunk = texts[start : start + block]
            for name, classify in modes:
                began = time.perf_counter()
                predicted[name].extend(classify(text) for text in chunk)
                seconds[name] += time.perf_counter() - began
                progress.advance(task, len(chunk))
    return {name: (predicted[name], seconds[name]) for name in predicted}


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    from socialens.llm.base import GenerationParams
    from socialens.llm.llamacpp import LlamaCppBackend

    dataset, texts, gold, schema, task = load_texts(args.data_root, args.n)
    labels = schema.names
    make_prompt = prompt_maker(schema, task)
    parser_name, parse = make_parser(labels)
    console.print(
        f"{dataset}: {len(texts)} texts, labels {labels}; model {args.model}, {args.threads} thread(s); "
        f"baseline parser: {parser_name}"
    )
    start = time.perf_counter()
    backend = LlamaCppBackend(args.model, n_ctx=args.n_ctx, n_threads=args.threads)
    load_s = time.perf_counter() - start
    choices = tuple(labels)
    stats = {"invalid": 0, "errors": 0}

    def scored(text: str) -> str | None:
        result = backend.score(make_prompt(text), labels)
        if result.error:
            stats["errors"] += 1
            return None
        return labels[max(range(len(labels)), key=result.logprobs.__getitem__)]

    def constrained(text: str) -> str | None:
        (completion,) = backend.generate([make_prompt(text)], GenerationParams(choices=choices))
        return completion.text if completion.error is None and completion.text in labels else None

    outputs: list[str] = []

    def generated(text: str) -> str | None:
        (completion,) = backend.generate([make_prompt(text)], GenerationParams(max_tokens=args.max_tokens))
        outputs.append(completion.text)
        return parse(completion.text) if completion.error is None else None

    def llamalens(text: str) -> str | None:
        backend.llm.reset()  # forget the previous prompt: nothing cached carries over to this text
        backend.llm._ctx.kv_cache_clear()
        backend._next_logprobs = None
        return generated(text)

    modes = (
        ("scored", scored),
        ("constrained", constrained),
        ("generate", generated),
        ("llamalens", llamalens),
    )
    results = {}
    try:
        for mode, (predicted, seconds) in run_modes(list(modes), texts, args.block).items():
            invalid = sum(p is None for p in predicted)
            results[mode] = {
                "seconds": seconds,
                "classifications_per_s": len(texts) / seconds,
                "invalid_rate": invalid / len(texts),
                "macro_f1": macro_f1(gold, predicted, labels),
                "predicted_counts": {label: predicted.count(label) for label in labels},
            }
    finally:
        backend.close()

    table = Table(title=f"LLM decoding modes: {args.model} on {dataset}, {len(texts)} texts")
    for column in ("mode", "classifications/s", "seconds", "invalid", "macro-F1", "predicted"):
        table.add_column(column, justify="left" if column in ("mode", "predicted") else "right")
    base = results["llamalens"]["classifications_per_s"]
    reuse = results["generate"]["classifications_per_s"]
    for mode, r in results.items():
        rate = r["classifications_per_s"]
        table.add_row(
            mode
            + (
                " (baseline)"
                if mode == "llamalens"
                else f" (x{rate / base:.2f}; x{rate / reuse:.2f} vs generate)"
            ),
            f"{r['classifications_per_s']:.2f}",
            f"{r['seconds']:.1f}",
            f"{r['invalid_rate']:.1%}",
            f"{r['macro_f1']:.3f}",
            ", ".join(f"{k}={v}" for k, v in r["predicted_counts"].items()),
        )
    Console().print(table)
    console.print(f"model load {load_s:.2f}s (not counted); sample baseline outputs: {outputs[:3]!r}")
    write_json(
        args.out,
        {
            "benchmark": "llm_decoding_speed",
            "dataset": dataset,
            "n": len(texts),
            "model": args.model,
            "model_id": backend.model_id,
            "threads": args.threads,
            "baseline_parser": parser_name,
            "machine": {
                "python": platform.python_version(),
                "platform": platform.platform(),
                "cpu_count": os.cpu_count(),
            },
            "results": results,
        },
    )
    scored_rate = results["scored"]["classifications_per_s"]
    console.print(
        f"scored vs generate with prefix reuse: x{scored_rate / reuse:.2f}; "
        f"constrained vs llamalens: x{results['constrained']['classifications_per_s'] / base:.2f}"
    )
    print(result_line("llm_scored_vs_llamalens_generate", scored_rate, base, "classifications/s"))


if __name__ == "__main__":
    main()
