"""Training speed of the two built-in LLMs on 2 CPU cores: Gemma 3 270M (base, multilingual) and
SmolLM2-135M-Instruct (chat), each fine-tuned with a classification head (family ``llm_head``) and
with LoRA instruction tuning (family ``instruct``, ``tuning.lora.train_lora``).

Data: a stratified sample of --train training examples of a dataset YAML (default HASOC 2019 Hindi
sub-task A; the built-in demo when that folder is missing), the same for every configuration.
Each configuration runs in its own child process (peak RSS is then its own), one epoch, one torch
thread, the families' own timers (examples/s = example passes per second of the training loop;
s/epoch = training seconds / epochs run). Loading and converting the model is not timed.

    HF_HUB_OFFLINE=1 python benchmarks/gemma_training_speed.py --quick
    HF_HUB_OFFLINE=1 python benchmarks/gemma_training_speed.py --train 64 --max-length 128

The RESULT line compares Gemma's examples/s (ours) with SmolLM2's (baseline), for the first family
of --families (llm_head by default).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import DEFAULT_DATA_ROOT, REPO_ROOT, machine_info, result_line, write_json  # noqa: E402

MODELS = {"gemma3-270m": "builtin:gemma3-270m", "smollm2-135m": "builtin:smollm2-135m-instruct"}
FAMILIES = ("llm_head", "instruct")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="8 examples, llm_head only (<1 min on 2 cores)")
    parser.add_argument("--data-root", default=str(DEFAULT_DATA_ROOT))
    parser.add_argument("--dataset", default=str(REPO_ROOT / "configs" / "datasets" / "hasoc2019_hi-a.yaml"))
    parser.add_argument("--train", type=int, default=64, help="training examples (stratified sample)")
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--lora-r", type=int, default=16)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--families", default=",".join(FAMILIES))
    parser.add_argument("--out", default=None, help="write the results as JSON")
    parser.add_argument("--child", nargs=2, metavar=("MODEL", "FAMILY"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        args.train, args.families = min(args.train, 8), "llm_head"
    return args


def training_examples(args: argparse.Namespace):
    from socialens.data.datasets import load_dataset, load_dataset_config
    from socialens.data.prepare import stratified_split

    dataset = args.dataset
    if not (Path(args.data_root) / "hasoc2019_hi").is_dir() and dataset.endswith("hasoc2019_hi-a.yaml"):
        dataset = "builtin:reddit-misinfo-demo"
    raw = load_dataset(load_dataset_config(dataset, data_root=args.data_root), data_root=args.data_root)
    train = [ex for ex in raw.splits["train"] if ex.label is not None]
    _, sample = stratified_split(train, min(args.train, len(train) - 2), seed=0)
    return dataset, raw.schema, sample


def child(args: argparse.Namespace, model_name: str, family: str) -> dict:
    from socialens.classifiers.instruct import InstructClassifier, InstructParams
    from socialens.classifiers.llm_head import LLMHeadClassifier, LLMHeadParams
    from socialens.tuning.lora import LoraParams

    dataset, schema, train = training_examples(args)
    model = MODELS[model_name]
    if family == "llm_head":
        params = LLMHeadParams(
            model=model,
            epochs=1,
            batch_size=args.batch_size,
            max_length=args.max_length,
            lora_r=args.lora_r,
            num_threads=args.threads,
        )
        fitted = LLMHeadClassifier(params, seed=0).fit(train, schema=schema)
        t = fitted.training_
        seconds, epochs, rss = t["train_time_s"], t["epochs_run"], t["peak_rss_mb"]
        loss = t["train_loss_by_epoch"]
    else:
        lora = LoraParams(
            epochs=1,
            batch_size=args.batch_size,
            max_length=args.max_length,
            r=args.lora_r,
            num_threads=args.threads,
            save_steps=10_000,
        )
        params = InstructParams(model=model, lora=lora, max_text_chars=600)
        fitted = InstructClassifier(params, seed=0).fit(train, schema=schema)
        t = fitted.training_
        seconds, epochs, rss = t["train_time_s"], t["epochs"], t["peak_rss_mb"]
        loss = [t["loss_before"], t["loss_after"]]
    return {
        "model": model_name,
        "family": family,
        "dataset": dataset,
        "examples": len(train),
        "train_time_s": seconds,
        "examples_per_s": round(len(train) * epochs / seconds, 3),
        "s_per_epoch": round(seconds / epochs, 1),
        "peak_rss_mb": rss,
        "loss": loss,
    }


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.child:
        print("CHILD " + json.dumps(child(args, *args.child)))
        return
    results = []
    passthrough = [
        f"--data-root={args.data_root}",
        f"--dataset={args.dataset}",
        f"--train={args.train}",
        f"--max-length={args.max_length}",
        f"--batch-size={args.batch_size}",
        f"--lora-r={args.lora_r}",
        f"--threads={args.threads}",
    ]
    for family in args.families.split(","):
        for name in MODELS:
            print(f"training {name} / {family} on {args.train} examples ...", file=sys.stderr, flush=True)
            done = subprocess.run(
                [sys.executable, __file__, *passthrough, "--child", name, family],
                capture_output=True,
                text=True,
                check=False,
            )
            line = next((x for x in done.stdout.splitlines() if x.startswith("CHILD ")), None)
            if line is None:
                raise SystemExit(f"{name} / {family} failed:\n{done.stderr[-3000:]}")
            result = json.loads(line[len("CHILD ") :])
            results.append(result)
            print(
                f"{name:14} {family:9} {result['examples']} ex: {result['train_time_s']:.1f} s, "
                f"{result['examples_per_s']:.2f} ex/s, {result['s_per_epoch']:.0f} s/epoch, "
                f"peak RSS {result['peak_rss_mb']:.0f} MiB, loss {result['loss']}",
                flush=True,
            )
    write_json(args.out, {"args": vars(args), "machine": machine_info(), "results": results})
    speed = {(r["model"], r["family"]): r["examples_per_s"] for r in results}
    family = args.families.split(",")[0]
    print(
        result_line(
            f"gemma_{family}_train_speed",
            speed[("gemma3-270m", family)],
            speed[("smollm2-135m", family)],
            "examples/s",
        )
    )


if __name__ == "__main__":
    main()
