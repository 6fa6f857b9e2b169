"""llama.cpp extra buffer types (weight repacking) on vs off: what `extra_buffers` costs or saves.

`extra_buffers: auto` (the llamacpp backend's default) turns llama.cpp's extra buffer types on only
where a probe process survived loading the model with them; where the AMX kernels trap (recent
Xeons under some hypervisors) it turns them off. This measures both settings on the same machine,
in one run, with the product's zero-shot prompt (`prompt: serial`, `decoding: scored`) over the same
texts (a stratified sample of the TweetEval hate test set, or of the built-in demo data without a
data root), one backend per setting, taking turns over blocks of texts so that load from other work
slows both alike. It also times prompt evaluation alone (a fresh KV cache per text), the part where
the repacked kernels run. The labels of the two settings are compared: they should agree.

    HF_HUB_OFFLINE=1 python benchmarks/llamacpp_extra_buffers.py --quick
    HF_HUB_OFFLINE=1 python benchmarks/llamacpp_extra_buffers.py --model builtin:gemma3-270m

A setting whose probe crashes on this machine is reported and left out (the RESULT line then says
nothing can be compared). The last line printed is the RESULT line: on vs off, classifications/s.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import DEFAULT_DATA_ROOT, result_line, write_json  # noqa: E402
from llm_decoding_speed import load_texts, prompt_maker, run_modes  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

console = Console(stderr=True)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="the same comparison on 24 texts (<1 min)")
    parser.add_argument("--data-root", default=str(DEFAULT_DATA_ROOT), help="folder holding tweeteval/hate")
    parser.add_argument("--n", type=int, default=120, help="texts to classify (default 120; quick 24)")
    parser.add_argument("--model", default="builtin:smollm2-135m-instruct")
    parser.add_argument("--threads", type=int, default=1, help="llama.cpp threads (default 1)")
    parser.add_argument("--n-ctx", type=int, default=1024)
    parser.add_argument("--block", type=int, default=8, help="texts per turn")
    parser.add_argument("--out", default=None, help="write the measurements as JSON here")
    args = parser.parse_args(argv)
    if args.quick:
        args.n = min(args.n, 24)
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    import llama_cpp

    from socialens.llm.llamacpp import LlamaCppBackend
    from socialens.llm.native_probe import NativeCrash

    dataset, texts, gold, schema, task = load_texts(args.data_root, args.n)
    labels = schema.names
    make_prompt = prompt_maker(schema, task)
    console.print(f"{dataset}: {len(texts)} texts; model {args.model}, {args.threads} thread(s)")
    console.print(llama_cpp.llama_print_system_info().decode("utf-8", "replace").strip())
    backends: dict[str, LlamaCppBackend] = {}
    crashes: dict[str, str] = {}
    for setting in ("on", "off"):
        try:
            backends[setting] = LlamaCppBackend(
                args.model, n_ctx=args.n_ctx, n_threads=args.threads, extra_buffers=setting
            )
        except NativeCrash as crash:
            crashes[setting] = str(crash)
            console.print(f"extra_buffers={setting}: {crash}")

    def scorer(backend: LlamaCppBackend):
        def classify(text: str) -> str | None:
            result = backend.score(make_prompt(text), labels)
            return None if result.error else labels[max(range(len(labels)), key=result.logprobs.__getitem__)]

        return classify

    def prompt_eval_seconds(backend: LlamaCppBackend) -> tuple[float, int]:
        tokens = 0
        began = time.perf_counter()
        for text in texts:
            ids = backend.tokenize(backend.render(make_prompt(text)))
            backend.llm.reset()
            backend.llm._ctx.kv_cache_clear()
            backend._next_logprobs = None
            backend.llm.eval(ids)
            tokens += len(ids)
        return time.perf_counter() - began, tokens

    results: dict[str, dict] = {}
    try:
        if backends:
            modes = [(setting, scorer(backend)) for setting, backend in backends.items()]
            for setting, (predicted, seconds) in run_modes(modes, texts, args.block).items():
                results[setting] = {
                    "scored_seconds": seconds,
                    "classifications_per_s": len(texts) / seconds,
                    "predicted": predicted,
                }
            for setting, backend in backends.items():
                seconds, tokens = prompt_eval_seconds(backend)
                results[setting]["prompt_tokens_per_s"] = tokens / seconds
    finally:
        for backend in backends.values():
            backend.close()

    table = Table(title=f"llama.cpp extra buffers: {args.model} on {dataset}, {len(texts)} texts")
    for column in ("extra_buffers", "scored classifications/s", "prompt tokens/s (fresh cache)"):
        table.add_column(column, justify="right")
    for setting, r in results.items():
        table.add_row(setting, f"{r['classifications_per_s']:.2f}", f"{r['prompt_tokens_per_s']:.0f}")
    Console().print(table)
    agreement = None
    if len(results) == 2:
        on, off = results["on"]["predicted"], results["off"]["predicted"]
        agreement = sum(a == b for a, b in zip(on, off, strict=True)) / len(texts)
        console.print(f"labels agree on {agreement:.1%} of texts")
    write_json(
        args.out,
        {
            "benchmark": "llamacpp_extra_buffers",
            "dataset": dataset,
            "n": len(texts),
            "model": args.model,
            "threads": args.threads,
            "system_info": llama_cpp.llama_print_system_info().decode("utf-8", "replace").strip(),
            "crashes": crashes,
            "label_agreement": agreement,
            "results": {k: {kk: vv for kk, vv in v.items() if kk != "predicted"} for k, v in results.items()},
        },
    )
    ours = results.get("on", {}).get("classifications_per_s", 0.0)
    baseline = results.get("off", {}).get("classifications_per_s", 0.0)
    print(result_line("llamacpp_extra_buffers_on_vs_off", ours, baseline, "classifications/s"))


if __name__ == "__main__":
    main()
