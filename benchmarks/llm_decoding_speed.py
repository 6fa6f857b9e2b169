"""LLM decoding speed: label scoring and constrained decoding vs free generation + parsing.

Same model (default builtin:smollm2-135m-instruct through the llamacpp backend), same zero-shot
prompt, same texts, one run each:

(a) scored:      one LlamaCppBackend.score(prompt, labels) call per text (the prompt's KV cache is
                 evaluated once and reused for every label, and across texts for the shared
                 prefix); the label with the highest summed log-probability wins.
(b) constrained: LlamaCppBackend.generate with params.choices = the labels (GBNF grammar).
(c) generate:    the LlamaLens-style baseline: free generation of up to 20 tokens, then parsing
                 (socialens.llm.parsing.parse_label when present, else the first label name found
                 case-insensitively in the output, longest names first; none found = invalid).

    HF_HUB_OFFLINE=1 python benchmarks/llm_decoding_speed.py --quick
    HF_HUB_OFFLINE=1 python benchmarks/llm_decoding_speed.py --n 200 --out llm_decoding.json

The last two lines printed are the RESULT lines.
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

from _common import DEFAULT_DATA_ROOT, read_demo_csv, read_tweeteval, result_line, write_json  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

console = Console(stderr=True)

DESCRIPTIONS = {
    "not-hate": "no hate speech",
    "hate": "hate speech against immigrants or women",
    "belief": "the comment believes or spreads the false claim",
    "debunk": "the comment refutes or corrects the false claim",
    "other": "neither believes nor debunks the claim",
}


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
    parser.add_argument("--out", default=None, help="write the measurements as JSON here")
    args = parser.parse_args(argv)
    if args.quick:
        args.n = 24
    return args


def load_texts(data_root: str | Path, n: int) -> tuple[str, list[str], list[str], list[str]]:
    """(dataset name, texts, gold labels, label names)."""
    root = Path(data_root)
    if (root / "tweeteval" / "hate" / "test_text.txt").is_file():
        texts, gold = read_tweeteval(root, "hate", "test")
        name, labels = "tweeteval/hate (test)", ["not-hate", "hate"]
    else:
        texts, gold = read_demo_csv()
        name, labels = "builtin:reddit_misinfo_demo", sorted(set(gold))
    return name, texts[:n], gold[:n], labels


def make_prompt(text: str, labels: list[str]) -> list[dict[str, str]]:
    listing = "\n".join(
        f"- {label}: {DESCRIPTIONS[label]}" if label in DESCRIPTIONS else f"- {label}" for label in labels
    )
    return [
        {"role": "system", "content": "You classify social-media posts."},
        # the instruction comes before the text, so every text shares the longest possible prefix
        {"role": "user", "content": f"Labels:\n{listing}\nAnswer with the label only.\n\nText: {text}"},
    ]


def make_parser(labels: list[str]) -> tuple[str, Callable[[str], str | None]]:
    try:
        from socialens.data.schema import LabelSchema
        from socialens.llm.parsing import parse_label

        schema = LabelSchema.from_names(labels)

        def parse(output: str) -> str | None:
            result = parse_label(output, schema)
            return result.label if result.ok else None

        return "socialens.llm.parsing.parse_label", parse
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


def run_mode(
    name: str, classify: Callable[[str], str | None], texts: list[str]
) -> tuple[list[str | None], float]:
    classify(texts[0])  # warm-up, not timed
    start = time.perf_counter()
    predicted = []
    with console.status(f"[bold]{name}[/bold]") as status:
        for i, text in enumerate(texts, 1):
            predicted.append(classify(text))
            status.update(f"[bold]{name}[/bold] {i}/{len(texts)}")
    return predicted, time.perf_counter() - start


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    from socialens.llm.base import GenerationParams
    from socialens.llm.llamacpp import LlamaCppBackend

    dataset, texts, gold, labels = load_texts(args.data_root, args.n)
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
        result = backend.score(make_prompt(text, labels), labels)
        if result.error:
            stats["errors"] += 1
            return None
        return labels[max(range(len(labels)), key=result.logprobs.__getitem__)]

    def constrained(text: str) -> str | None:
        (completion,) = backend.generate([make_prompt(text, labels)], GenerationParams(choices=choices))
        return completion.text if completion.error is None and completion.text in labels else None

    outputs: list[str] = []

    def generated(text: str) -> str | None:
        (completion,) = backend.generate(
            [make_prompt(text, labels)], GenerationParams(max_tokens=args.max_tokens)
        )
        outputs.append(completion.text)
        return parse(completion.text) if completion.error is None else None

    results = {}
    try:
        for mode, classify in (("scored", scored), ("constrained", constrained), ("generate", generated)):
            predicted, seconds = run_mode(mode, classify, texts)
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
    base = results["generate"]["classifications_per_s"]
    for mode, r in results.items():
        table.add_row(
            mode + (" (baseline)" if mode == "generate" else f" (x{r['classifications_per_s'] / base:.1f})"),
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
    print(
        result_line(
            "llm_scored_vs_generate", results["scored"]["classifications_per_s"], base, "classifications/s"
        )
    )
    print(
        result_line(
            "llm_constrained_vs_generate",
            results["constrained"]["classifications_per_s"],
            base,
            "classifications/s",
        )
    )


if __name__ == "__main__":
    main()
