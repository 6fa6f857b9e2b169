"""Label scoring on transformers: batched ``HFBackend.score_batch`` vs one-at-a-time ``score``.

Same model (default builtin:smollm2-135m-instruct, its GGUF converted once to a safetensors folder
and run by transformers in float32), same texts (a stratified sample of the TweetEval hate test
set, or of the built-in demo data without a data root), same zero-shot prompt: the product's
default (`family: prompted`, `prompt: serial`, `decoding: scored`, built by
socialens.llm.prompts.PromptBuilder from the dataset's label schema, label answers as prompted
scores them), in one run:

(a) batched (ours): ``score_batch`` over chunks of ``--chunk`` texts (as ``family: prompted``
                    calls it), ``--batch-texts`` per forward pass: the prompts' common prefix once
                    (kept across chunks), padded suffixes, labels on the caches.
(b) one at a time:  ``score(prompt, labels)`` per text: the whole prompt, then every label on a
                    copy of its cache (what the hf backend did before issue 14).

The two take turns over the same chunks of texts, so a burst of load from other work slows both
alike. The run checks that both pick the same label for every text and prints the largest
difference of a label log-probability between them.

    HF_HUB_OFFLINE=1 python benchmarks/hf_scoring_speed.py --quick
    HF_HUB_OFFLINE=1 python benchmarks/hf_scoring_speed.py --n 200 --out hf_scoring.json

The last line printed is the RESULT line (texts per second).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import DEFAULT_DATA_ROOT, result_line, write_json  # noqa: E402
from llm_decoding_speed import load_texts  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn  # noqa: E402

console = Console(stderr=True)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="the same comparison on 16 texts (<1 min)")
    parser.add_argument("--data-root", default=str(DEFAULT_DATA_ROOT), help="folder holding tweeteval/hate")
    parser.add_argument("--n", type=int, default=200, help="texts to score (default 200; quick 16)")
    parser.add_argument("--model", default="builtin:smollm2-135m-instruct")
    parser.add_argument("--batch-texts", type=int, default=8, help="texts per batched forward pass")
    parser.add_argument(
        "--chunk", type=int, default=16, help="texts per score_batch call (prompted's chunk_size default: 16)"
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads (default 1: on a small shared CPU, torch's threads spin-wait on busy cores)",
    )
    parser.add_argument("--device", default="auto", help="auto (cuda when available), cpu, cuda, ...")
    parser.add_argument("--out", default=None, help="write the measurements as JSON here")
    args = parser.parse_args(argv)
    if args.quick:
        args.n = 16
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    from socialens.core.types import Example
    from socialens.llm.hf import HFBackend
    from socialens.llm.prompts import PromptBuilder

    dataset, texts, gold, schema, task = load_texts(args.data_root, args.n)
    builder = PromptBuilder(schema, style="serial", task=task)
    prompts = [builder.messages(Example(str(i), text, None, {}), shots=[]) for i, text in enumerate(texts)]
    labels = schema.names
    continuations = [builder.answer(name) for name in labels]
    start = time.perf_counter()
    backend = HFBackend(args.model, threads=args.threads, batch_texts=args.batch_texts, device=args.device)
    load_s = time.perf_counter() - start
    label_tokens = [
        len(backend.tokenizer(backend.answer_prefix + c, add_special_tokens=False)["input_ids"])
        for c in continuations
    ]
    console.print(
        f"{dataset}: {len(texts)} texts, labels {labels} ({label_tokens} tokens); model {args.model} on "
        f"{backend.device}, {args.threads} thread(s), batch_texts {args.batch_texts}, chunk {args.chunk}; loaded in {load_s:.1f} s"
    )
    backend.score_batch(prompts[:2], continuations)  # warm-up, not timed
    backend.score(prompts[0], continuations)
    batched, alone = [], []
    seconds = {"batched": 0.0, "one_at_a_time": 0.0}
    block = args.chunk
    with Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), console=console, transient=True
    ) as progress:
        bar = progress.add_task("both modes", total=2 * len(prompts))
        for i in range(0, len(prompts), block):
            chunk = prompts[i : i + block]
            began = time.perf_counter()
            batched.extend(backend.score_batch(chunk, continuations))
            seconds["batched"] += time.perf_counter() - began
            progress.advance(bar, len(chunk))
            began = time.perf_counter()
            alone.extend(backend.score(p, continuations) for p in chunk)
            seconds["one_at_a_time"] += time.perf_counter() - began
            progress.advance(bar, len(chunk))
    errors = sum(s.error is not None for s in batched + alone)
    if errors:
        raise SystemExit(
            f"{errors} scoring calls failed: {next(s.error for s in batched + alone if s.error)}"
        )
    worst = max(
        abs(a - b)
        for x, y in zip(batched, alone, strict=True)
        for a, b in zip(x.logprobs, y.logprobs, strict=True)
    )

    def pick(scores) -> str:
        return labels[max(range(len(labels)), key=scores.logprobs.__getitem__)]

    agree = sum(pick(x) == pick(y) for x, y in zip(batched, alone, strict=True))
    accuracy = sum(pick(x) == g for x, g in zip(batched, gold, strict=True)) / len(gold)
    rate = {mode: len(prompts) / s for mode, s in seconds.items()}
    loadavg = os.getloadavg()
    console.print(
        f"batched {rate['batched']:.2f} texts/s ({seconds['batched']:.1f} s), one at a time "
        f"{rate['one_at_a_time']:.2f} texts/s ({seconds['one_at_a_time']:.1f} s); same label for "
        f"{agree}/{len(prompts)} texts; largest log-prob difference {worst:.2e}; accuracy {accuracy:.3f}; "
        f"prefix {len(backend.scorer.prefix.ids)} tokens; load average {loadavg[0]:.2f} {loadavg[1]:.2f}"
    )
    write_json(
        args.out,
        {
            "dataset": dataset,
            "n": len(prompts),
            "model": args.model,
            "device": backend.device,
            "threads": args.threads,
            "batch_texts": args.batch_texts,
            "chunk": args.chunk,
            "label_tokens": label_tokens,
            "seconds": seconds,
            "texts_per_s": rate,
            "same_label": agree,
            "max_logprob_diff": worst,
            "accuracy": accuracy,
            "loadavg": loadavg,
            "machine": platform.processor() or platform.machine(),
        },
    )
    backend.close()
    print(result_line("hf_scoring_speed", rate["batched"], rate["one_at_a_time"], "texts/s"))


if __name__ == "__main__":
    main()
