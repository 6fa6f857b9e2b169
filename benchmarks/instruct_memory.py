"""Peak memory of LoRA instruction tuning (``socialens.tuning.lora.train_lora``) on SmolLM2-135M-
Instruct, with the memory savings (answer-only logits + gradient checkpointing, the defaults) and
without them (logits over the whole vocabulary at every position, every activation held: the
transformers defaults, which is how ``socialens instruct train`` ran before).

Each configuration trains in its own child process (a fresh interpreter, so neither inherits the
other's heap), a few optimizer steps at batch 8 and max_length 256 on the first records of an
instruction mix built with ``socialens instruct build configs/instruct-mix.yaml`` (fake-news
articles first in the by_task order, so every batch fills max_length). Peak RSS is the child's
ru_maxrss (resource.getrusage(RUSAGE_CHILDREN) after it exits); its first-step training loss is
printed too, and must agree between the two.

    HF_HUB_OFFLINE=1 python benchmarks/instruct_memory.py --quick --data-root ../shared/datasets
    HF_HUB_OFFLINE=1 python benchmarks/instruct_memory.py --steps 3 --data-root ../shared/datasets
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import DEFAULT_DATA_ROOT, REPO_ROOT, machine_info, result_line, write_json  # noqa: E402

BASE = "builtin:smollm2-135m-instruct"
CONFIGS = {
    "ours": {},  # the defaults: answer_only_logits and gradient_checkpointing on
    "baseline": {"answer_only_logits": False, "gradient_checkpointing": False},
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="one step at batch 4 (under a minute per side)")
    parser.add_argument("--data-root", default=str(DEFAULT_DATA_ROOT))
    parser.add_argument("--mix", default=str(REPO_ROOT / "configs" / "instruct-mix.yaml"))
    parser.add_argument("--steps", type=int, default=2, help="optimizer steps per configuration")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--work-dir", default=None, help="keep the built mix and adapters here")
    parser.add_argument("--out", default=None, help="write the results as JSON")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)  # internal: one configuration
    args = parser.parse_args(argv)
    if args.quick:
        args.steps, args.batch_size = 1, min(args.batch_size, 4)
    return args


def build_mix(args: argparse.Namespace, work: Path) -> Path:
    data = work / "mix"
    if not (data / "train.jsonl").is_file():
        cap = str(max(4, args.steps * args.batch_size))
        command = [sys.executable, "-m", "socialens.cli", "instruct", "build", args.mix, "--out", str(data)]
        command += ["--cap", cap, "--data-root", args.data_root]
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    return data / "train.jsonl"


def child(args: argparse.Namespace) -> None:
    """Train one configuration and print its losses as JSON on the last line."""
    from socialens.tuning.lora import LoraParams, read_chat_records, train_lora

    name, train_file, out_dir = args.child.split("|")
    records = read_chat_records(train_file)[: args.steps * args.batch_size]
    params = LoraParams(
        batch_size=args.batch_size,
        max_length=args.max_length,
        max_steps=args.steps,
        num_threads=args.threads,
        sampling="sequential",
        save_steps=1,
        **CONFIGS[name],
    )
    report = train_lora(records, BASE, out_dir, params)
    state = json.loads((Path(out_dir) / "checkpoints" / "checkpoint-1" / "trainer_state.json").read_text())
    first = next(entry["loss"] for entry in state["log_history"] if "loss" in entry)
    print(
        json.dumps(
            {"first_loss": first, "loss_before": report.loss_before, "train_time_s": report.train_time_s}
        )
    )


def run_child(name: str, train_file: Path, out_dir: Path, args: argparse.Namespace) -> dict:
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    command = [sys.executable, __file__, "--child", f"{name}|{train_file}|{out_dir}"]
    command += ["--steps", str(args.steps), "--batch-size", str(args.batch_size)]
    command += ["--max-length", str(args.max_length), "--threads", str(args.threads)]
    start = time.perf_counter()
    done = subprocess.run(command, check=True, capture_output=True, text=True)
    wall = time.perf_counter() - start
    peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    # RUSAGE_CHILDREN keeps the largest child so far: a smaller second child would not show.
    if peak_kb == before and before:
        raise SystemExit(f"{name}: its peak was hidden by an earlier, larger child; run it first")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    return {**result, "peak_rss_mib": round(peak_kb / 1024, 1), "wall_s": round(wall, 1)}


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.child:
        child(args)
        return
    with tempfile.TemporaryDirectory(prefix="instruct-memory-") as tmp:
        work = Path(args.work_dir or tmp)
        train_file = build_mix(args, work)
        info = {"machine": machine_info(), "args": vars(args)}
        # The smaller one runs first: RUSAGE_CHILDREN reports the largest child so far.
        results = {name: run_child(name, train_file, work / name, args) for name in ("ours", "baseline")}
    for name, result in results.items():
        print(
            f"{name:>8}: peak RSS {result['peak_rss_mib']:.0f} MiB, first-step loss {result['first_loss']:.6f}, "
            f"{result['train_time_s']:.1f} s training, {result['wall_s']:.1f} s wall",
            file=sys.stderr,
        )
    difference = abs(results["ours"]["first_loss"] - results["baseline"]["first_loss"])
    print(f"first-step loss difference {difference:.2e}", file=sys.stderr)
    write_json(args.out, {**info, "results": results, "loss_difference": difference})
    ours, baseline = results["ours"]["peak_rss_mib"], results["baseline"]["peak_rss_mib"]
    print(result_line("instruct_train_peak_rss", ours, baseline, "MiB"))


if __name__ == "__main__":
    main()
