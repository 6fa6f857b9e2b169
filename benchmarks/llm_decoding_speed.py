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

(e) scored_batched:      LlamaCppBackend.score_batch over each block of texts (issue 14): the
                         shared prefix once, all suffixes in one llama.cpp batch on their own
                         sequences, all multi-token label continuations in one more.
(f) constrained_batched: LlamaCppBackend.generate with choices over each block: greedy under the
                         label grammar, one token of every text a decode call.

(a)-(d) run on a backend made as before issue 14 (``batch_texts: 1``: one sequence, no flash
attention), (e)-(f) on one with the batched defaults. The agreement of (e) with (a) (same label,
largest log-probability difference) and of (f) with (b) is reported, and the tokens (e) evaluated
per second against a prompt-only ``llama_cpp.Llama.eval`` of the same number of tokens on the same
model in the same run. Then 5-shot prompts through the product path (``family: prompted``,
``decoding: scored``, pool: a stratified sample of the train split): ``shot_selection: fixed`` (the
shots are the shared prefix) and ``similar`` (MiniLM kNN: only the system text is shared), each
batched and one text at a time.

The modes take turns over blocks of ``--block`` texts. RESULT lines: scored_batched against the
llamalens baseline and against generate with the prefix reused, the prompt-eval share, and 5-shot
fixed scored_batched against 5-shot fixed one at a time.

    HF_HUB_OFFLINE=1 python benchmarks/llm_decoding_speed.py --quick
    HF_HUB_OFFLINE=1 python benchmarks/llm_decoding_speed.py --n 200 --out llm_decoding.json

The last lines printed are the RESULT lines.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
from _common import DEFAULT_DATA_ROOT, result_line, write_json  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn  # noqa: E402
from rich.table import Table  # noqa: E402

console = Console(stderr=True)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--quick", action="store_true", help="the same comparison on 8 texts, 5-shot fixed only (<1 min)"
    )
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
    parser.add_argument("--n-ctx", type=int, default=2048)
    parser.add_argument("--max-tokens", type=int, default=20, help="baseline generation length")
    parser.add_argument(
        "--block", type=int, default=16, help="texts per turn when the modes alternate (= the batch)"
    )
    parser.add_argument(
        "--batch-texts", type=int, default=None, help="batch_texts of the batched backend (default: auto)"
    )
    parser.add_argument("--flash-attn", choices=("on", "off"), default="off")
    parser.add_argument(
        "--baseline-n",
        type=int,
        default=None,
        help="texts the one-at-a-time modes run on (the first ones; default n): scored, "
        "scored_batched and constrained_batched run on all n, for the agreement",
    )
    parser.add_argument("--shots", type=int, default=5, help="few-shot k (0: skip the few-shot part)")
    parser.add_argument(
        "--n-shots-texts", type=int, default=None, help="texts of the few-shot part (default n)"
    )
    parser.add_argument("--pool", type=int, default=300, help="few-shot pool: train texts sampled")
    parser.add_argument("--no-similar", action="store_true", help="skip shot_selection: similar")
    parser.add_argument("--out", default=None, help="write the measurements as JSON here")
    args = parser.parse_args(argv)
    if args.quick:
        args.n = 8
        args.pool = 40
        args.no_similar = True
    if args.n_shots_texts is None:
        args.n_shots_texts = args.n
    return args


def load_texts(data_root: str | Path, n: int):
    """(dataset name, texts, gold labels, label schema, task) of a stratified sample of ``n`` test texts."""
    name, examples, _, schema, task = load_examples(data_root, n)
    return name, [ex.text for ex in examples], [ex.label for ex in examples], schema, task


def load_examples(data_root: str | Path, n: int, pool: int = 0):
    """(dataset name, a stratified sample of ``n`` test examples, a few-shot pool of ``pool``
    other examples (stratified, from the train split), label schema, task)."""
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
    shots: list = []
    if pool:
        train = raw.splits.get("train") or [ex for part in raw.splits.values() for ex in part]
        chosen = {ex.id for ex in examples}
        shots = [ex for ex in train if ex.id not in chosen]
        if pool < len(shots):
            _, shots = stratified_split(shots, pool, seed=1)
    return name, examples, shots, raw.schema, task


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
    """run_block_modes for modes that classify one text per call."""
    return run_block_modes(
        [(name, lambda chunk, classify=classify: [classify(t) for t in chunk]) for name, classify in modes],
        texts,
        block,
    )


def run_block_modes(
    modes: list[tuple[str, Callable[[list[str]], list[str | None]]]], texts: list[str], block: int
) -> dict[str, tuple[list[str | None], float]]:
    """Each mode's predictions and total seconds. A mode classifies a block of texts per call. The
    modes take turns over blocks of ``block`` consecutive texts, so a burst of load from other work
    on a shared machine slows every mode alike instead of whichever happened to be running; within
    a block each mode sees the texts in order, as it would alone (the prefix-reuse baseline keeps
    its cache hits)."""
    for _, classify in modes:
        classify(texts[:2])  # warm-up, not timed
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
                predicted[name].extend(classify(chunk))
                seconds[name] += time.perf_counter() - began
                progress.advance(task, len(chunk))
    return {name: (predicted[name], seconds[name]) for name in predicted}


def prompt_eval_rate(backend, prompts: list, total_tokens: int) -> tuple[float, int]:
    """Tokens a second of a prompt-only llama.cpp eval (``Llama.eval``, n_batch tokens a call, the
    KV cache cleared whenever the next call would not fit) over ``total_tokens`` tokens of the
    benchmark's own rendered prompts, on the same model and threads."""
    stream: list[int] = []
    while len(stream) < total_tokens:
        for messages in prompts:
            stream.extend(backend.tokenize(backend.render(messages)))
    stream = stream[:total_tokens]
    llm = backend.llm
    llm.reset()
    llm._ctx.kv_cache_clear()
    began = time.perf_counter()
    for start in range(0, len(stream), llm.n_batch):
        part = stream[start : start + llm.n_batch]
        if llm.n_tokens + len(part) > backend.n_ctx:
            llm.reset()
            llm._ctx.kv_cache_clear()
        llm.eval(part)
    seconds = time.perf_counter() - began
    llm.reset()
    llm._ctx.kv_cache_clear()
    backend._next_logprobs = None
    return len(stream) / seconds, len(stream)


def few_shot_rates(args, examples, pool, schema, task, backends: dict) -> dict:
    """Classifications a second of 5-shot scored prompts through ``family: prompted`` for each
    shot selection and backend (batched / one at a time), blocks alternating as in run_modes."""
    from socialens.classifiers.prompted import PromptedClassifier, PromptedParams

    selections = ["fixed"] + ([] if args.no_similar else ["similar"])
    classifiers = {}
    for selection in selections:
        for kind, backend in backends.items():
            params = PromptedParams(
                prompt="serial", shots=args.shots, shot_selection=selection, decoding="scored", cache=False
            )
            clf = PromptedClassifier(params, backend=backend, seed=0).fit(
                pool, schema=schema, task=task or ""
            )
            _ = clf.selector  # embedding the pool (similar) is set-up, not classification
            classifiers[f"{selection}/{kind}"] = clf
    for clf in classifiers.values():
        clf.predict(examples[:2])  # warm-up
    seconds = dict.fromkeys(classifiers, 0.0)
    records: dict[str, list] = {name: [] for name in classifiers}
    with Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), console=console, transient=True
    ) as progress:
        bar = progress.add_task(f"{args.shots}-shot", total=len(examples) * len(classifiers))
        for start in range(0, len(examples), args.block):
            chunk = examples[start : start + args.block]
            for name, clf in classifiers.items():
                began = time.perf_counter()
                records[name].extend(clf.predict(chunk))
                seconds[name] += time.perf_counter() - began
                progress.advance(bar, len(chunk))
    out = {}
    for name, recs in records.items():
        out[name] = {
            "seconds": seconds[name],
            "classifications_per_s": len(recs) / seconds[name],
            "prompt_tokens_mean": sum(r.tokens_in for r in recs) / len(recs),
            "invalid_or_error": sum(r.status.value != "ok" for r in recs) / len(recs),
            "predicted": [r.predicted for r in recs],
            "logprobs": [json.loads(r.raw_output) if r.raw_output else None for r in recs],
        }
    for selection in selections:
        a, b = out[f"{selection}/batched"], out[f"{selection}/one-at-a-time"]
        same = sum(x == y for x, y in zip(a["predicted"], b["predicted"], strict=True))
        diffs = [
            abs(x[k] - y[k]) for x, y in zip(a["logprobs"], b["logprobs"], strict=True) if x and y for k in x
        ]
        a["label_agreement"] = same / len(a["predicted"])
        a["max_logprob_diff"] = max(diffs, default=0.0)
    for r in out.values():
        del r["predicted"], r["logprobs"]
    return out


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    from socialens.llm.base import GenerationParams
    from socialens.llm.llamacpp import LlamaCppBackend

    dataset, examples, pool, schema, task = load_examples(
        args.data_root, args.n, pool=args.pool if args.shots else 0
    )
    texts, gold = [ex.text for ex in examples], [ex.label for ex in examples]
    labels = schema.names
    make_prompt = prompt_maker(schema, task)
    parser_name, parse = make_parser(labels)
    console.print(
        f"{dataset}: {len(texts)} texts, labels {labels}; model {args.model}, {args.threads} thread(s); "
        f"baseline parser: {parser_name}; load average {os.getloadavg()[0]:.2f}"
    )
    start = time.perf_counter()
    # one text at a time (the default, as before issue 14); batch_texts auto for the new modes
    backend = LlamaCppBackend(args.model, n_ctx=args.n_ctx, n_threads=args.threads, batch_texts=1)
    flash = args.flash_attn == "on"
    batched = LlamaCppBackend(
        args.model,
        n_ctx=args.n_ctx,
        n_threads=args.threads,
        batch_texts=args.batch_texts or "auto",
        flash_attn=flash,
    )
    load_s = time.perf_counter() - start
    choices = tuple(labels)
    logprobs: dict[str, list[list[float] | None]] = {"scored": [], "scored_batched": []}
    constrained_text: dict[str, list[str]] = {"constrained": [], "constrained_batched": []}

    def best(mode: str, result) -> str | None:
        logprobs[mode].append(None if result.error else result.logprobs)
        if result.error:
            return None
        return labels[max(range(len(labels)), key=result.logprobs.__getitem__)]

    def scored(chunk: list[str]) -> list[str | None]:
        return [best("scored", backend.score(make_prompt(text), labels)) for text in chunk]

    def scored_batched(chunk: list[str]) -> list[str | None]:
        return [
            best("scored_batched", r) for r in batched.score_batch([make_prompt(t) for t in chunk], labels)
        ]

    def read_choice(mode: str, completion) -> str | None:
        constrained_text[mode].append(completion.text)
        return completion.text if completion.error is None and completion.text in labels else None

    def constrained(chunk: list[str]) -> list[str | None]:
        out = []
        for text in chunk:
            (completion,) = backend.generate([make_prompt(text)], GenerationParams(choices=choices))
            out.append(read_choice("constrained", completion))
        return out

    def constrained_batched(chunk: list[str]) -> list[str | None]:
        completions = batched.generate([make_prompt(t) for t in chunk], GenerationParams(choices=choices))
        return [read_choice("constrained_batched", c) for c in completions]

    outputs: list[str] = []

    def generate_one(text: str) -> str | None:
        (completion,) = backend.generate([make_prompt(text)], GenerationParams(max_tokens=args.max_tokens))
        outputs.append(completion.text)
        return parse(completion.text) if completion.error is None else None

    def generated(chunk: list[str]) -> list[str | None]:
        return [generate_one(text) for text in chunk]

    def llamalens(chunk: list[str]) -> list[str | None]:
        out = []
        for text in chunk:
            backend.llm.reset()  # forget the previous prompt: nothing cached carries over to this text
            backend.llm._ctx.kv_cache_clear()
            backend._next_logprobs = None
            out.append(generate_one(text))
        return out

    def timed_batched(classify):
        """Count the tokens the batched backend evaluates inside its timed calls."""

        def run(chunk: list[str]) -> list[str | None]:
            before = batched.engine.tokens_decoded
            began = time.perf_counter()
            out = classify(chunk)
            counters["tokens"] += batched.engine.tokens_decoded - before
            counters["seconds"] += time.perf_counter() - began
            return out

        return run

    counters = {"tokens": 0, "seconds": 0.0}
    modes = (
        ("scored", scored),
        ("scored_batched", timed_batched(scored_batched)),
        ("constrained", constrained),
        ("constrained_batched", constrained_batched),
        ("generate", generated),
        ("llamalens", llamalens),
    )
    results = {}
    split = min(args.baseline_n or len(texts), len(texts))
    try:
        runs = run_block_modes(list(modes), texts[:split], args.block)
        # the warm-up added two entries to each list: drop them
        for mode in logprobs:
            logprobs[mode] = logprobs[mode][2:]
        for mode in constrained_text:
            constrained_text[mode] = constrained_text[mode][2:]
        if split < len(texts):  # the rest of the texts for the modes whose agreement is reported
            agreeing = [m for m in modes if m[0] in ("scored", "scored_batched")]
            rest = run_block_modes(agreeing, texts[split:], args.block)
            for mode in logprobs:
                del logprobs[mode][split : split + 2]
            for mode, (predicted, seconds) in rest.items():
                runs[mode] = (runs[mode][0] + predicted, runs[mode][1] + seconds)
        for mode, (predicted, seconds) in runs.items():
            invalid = sum(p is None for p in predicted)
            mode_gold = gold[: len(predicted)]
            results[mode] = {
                "texts": len(predicted),
                "seconds": seconds,
                "classifications_per_s": len(predicted) / seconds,
                "invalid_rate": invalid / len(predicted),
                "macro_f1": macro_f1(mode_gold, predicted, labels),
                "predicted_counts": {label: predicted.count(label) for label in labels},
                "predicted": predicted,
            }
        agreement = {
            "scored_batched_vs_scored_labels": sum(
                a == b
                for a, b in zip(
                    results["scored"]["predicted"], results["scored_batched"]["predicted"], strict=True
                )
            )
            / len(texts),
            "scored_batched_vs_scored_max_logprob_diff": max(
                (
                    abs(x - y)
                    for a, b in zip(logprobs["scored"], logprobs["scored_batched"], strict=True)
                    if a and b
                    for x, y in zip(a, b, strict=True)
                ),
                default=0.0,
            ),
            "constrained_batched_vs_constrained_outputs": sum(
                a == b
                for a, b in zip(
                    constrained_text["constrained"], constrained_text["constrained_batched"], strict=True
                )
            )
            / len(constrained_text["constrained"]),
        }
        # the noise floor: one text at a time again, each from a cleared KV cache instead of the
        # previous text's (other batch splits round differently too)
        fresh = []
        for text in texts[: min(split, 24)]:
            backend.llm.reset()
            backend.llm._ctx.kv_cache_clear()
            backend._next_logprobs = None
            fresh.append(backend.score(make_prompt(text), labels).logprobs)
        pairs = list(zip(logprobs["scored"], fresh, strict=False))
        agreement["scored_fresh_vs_scored_texts"] = len(pairs)
        agreement["scored_fresh_vs_scored_labels"] = sum(
            int(np.argmax(a)) == int(np.argmax(b)) for a, b in pairs if a and b
        ) / max(len(pairs), 1)
        agreement["scored_fresh_vs_scored_max_logprob_diff"] = max(
            (abs(x - y) for a, b in pairs if a and b for x, y in zip(a, b, strict=True)), default=0.0
        )
        eval_rate, eval_tokens = prompt_eval_rate(
            batched, [make_prompt(t) for t in texts], max(counters["tokens"], batched.llm.n_batch)
        )
        ours_rate = counters["tokens"] / counters["seconds"]
        throughput = {
            "scored_batched_tokens": counters["tokens"],
            "scored_batched_tokens_per_s": ours_rate,
            "prompt_eval_tokens": eval_tokens,
            "prompt_eval_tokens_per_s": eval_rate,
            "share_of_prompt_eval": ours_rate / eval_rate,
        }
        few_shot = {}
        if args.shots:
            few_shot = few_shot_rates(
                args,
                examples[: args.n_shots_texts],
                pool,
                schema,
                task,
                {"batched": batched, "one-at-a-time": backend},
            )
        fallbacks = batched.batch_fallbacks
    finally:
        backend.close()
        batched.close()
    for r in results.values():
        del r["predicted"]

    table = Table(
        title=f"LLM decoding modes: {args.model} on {dataset}, {len(texts)} texts, {args.threads} thread(s)"
    )
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
    if few_shot:
        shots_table = Table(title=f"{args.shots}-shot scored (family: prompted), {args.n_shots_texts} texts")
        for column in ("selection / backend", "classifications/s", "prompt tokens", "not ok", "agreement"):
            shots_table.add_column(column, justify="left" if column.startswith("selection") else "right")
        for name, r in few_shot.items():
            agree = (
                f"{r['label_agreement']:.1%} (max |dlogp| {r['max_logprob_diff']:.4f})"
                if "label_agreement" in r
                else "-"
            )
            shots_table.add_row(
                name,
                f"{r['classifications_per_s']:.2f}",
                f"{r['prompt_tokens_mean']:.0f}",
                f"{r['invalid_or_error']:.1%}",
                agree,
            )
        Console().print(shots_table)
    console.print(
        f"model load {load_s:.2f}s (not counted); batch fallbacks {fallbacks}; agreement {agreement}; "
        f"throughput {throughput}; sample baseline outputs: {outputs[:3]!r}; "
        f"load average {os.getloadavg()[0]:.2f}"
    )
    write_json(
        args.out,
        {
            "benchmark": "llm_decoding_speed",
            "dataset": dataset,
            "n": len(texts),
            "model": args.model,
            "model_id": batched.model_id,
            "threads": args.threads,
            "block": args.block,
            "batch_texts": args.batch_texts,
            "flash_attn": args.flash_attn,
            "baseline_parser": parser_name,
            "machine": {
                "python": platform.python_version(),
                "platform": platform.platform(),
                "cpu_count": os.cpu_count(),
                "loadavg_1m": round(os.getloadavg()[0], 2),
            },
            "results": results,
            "agreement": agreement,
            "throughput": throughput,
            "few_shot": few_shot,
            "batch_fallbacks": fallbacks,
        },
    )
    batched_rate = results["scored_batched"]["classifications_per_s"]
    console.print(
        f"scored_batched vs generate with prefix reuse: x{batched_rate / reuse:.2f}; "
        f"vs scored one at a time: x{batched_rate / results['scored']['classifications_per_s']:.2f}"
    )
    print(
        result_line("llm_scored_batched_vs_generate_prefix_reused", batched_rate, reuse, "classifications/s")
    )
    if few_shot:
        fixed = few_shot["fixed/batched"]["classifications_per_s"]
        alone = few_shot["fixed/one-at-a-time"]["classifications_per_s"]
        print(
            result_line(
                f"llm_{args.shots}shot_fixed_scored_batched_vs_unbatched", fixed, alone, "classifications/s"
            )
        )
    print(result_line("llm_scored_batched_tokens_vs_prompt_eval", ours_rate, eval_rate, "tokens/s"))
    print(result_line("llm_scored_batched_vs_llamalens_generate", batched_rate, base, "classifications/s"))


if __name__ == "__main__":
    main()
