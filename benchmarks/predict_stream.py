"""Streaming batch prediction: peak memory and rows/s of `socialens predict` on a large JSONL file.

A TF-IDF model is trained on the built-in demo data; a JSONL file of --rows rows (texts made from
the demo comments, each with a distinct suffix) is written to a temporary folder. Each run is a
child process whose own peak RSS comes from os.wait4 (ru_maxrss of that child only):

  ours      `socialens predict MODEL big.jsonl --out out.jsonl` (streaming, resumable)
  baseline  the whole-file path socialens had before streaming, copied below unchanged in
            behaviour: read_examples() the whole file, predict in batches into a list of
            PredictionRecords, then write them all
  resume    the same command as ours, killed with SIGKILL once its progress file says half the
            rows are done, then run again; the result must be byte-identical (sha256) to ours.

    python benchmarks/predict_stream.py            # 1,000,000 rows
    python benchmarks/predict_stream.py --quick    # 50,000 rows

The last line printed is the RESULT line: peak RSS of ours vs the baseline, in MB.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import REPO_ROOT, machine_info, read_demo_csv, result_line, write_json  # noqa: E402
from rich.console import Console  # noqa: E402

console = Console(stderr=True)
WORDS = ["claim", "vaccine", "debunked", "source", "fake", "report", "study", "thread", "really", "news"]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="50,000 rows")
    parser.add_argument("--rows", type=int, default=None, help="input rows (default 1,000,000)")
    parser.add_argument(
        "--data-root", default=None, help="accepted for a uniform interface; the data is synthesised"
    )
    parser.add_argument("--out", default=None, help="write the measurements as JSON here")
    parser.add_argument("--skip-baseline", action="store_true", help="measure ours and the resume only")
    parser.add_argument("--skip-resume", action="store_true", help="measure ours and the baseline only")
    parser.add_argument(
        "--baseline-child", nargs=3, metavar=("MODEL", "INPUT", "OUT"), help=argparse.SUPPRESS
    )
    return parser.parse_args(argv)


def baseline_whole_file(model_dir: str, source: str, out: str) -> None:
    """socialens predict before streaming: the whole file in memory, then every record in memory."""
    from socialens.classifiers.base import load_classifier
    from socialens.data.readers import read_examples

    classifier = load_classifier(model_dir)
    examples = read_examples(source, text="text", schema=classifier.schema, require_labels=False).examples
    records = []
    for start in range(0, len(examples), 256):
        records.extend(classifier.predict(examples[start : start + 256]))
    with open(out, "w", encoding="utf-8") as handle:
        for record in records:
            handle.write(json.dumps(record.to_dict(), ensure_ascii=False) + "\n")


def train_model(directory: Path) -> None:
    from socialens.classifiers.tfidf import TfidfClassifier
    from socialens.core.types import Example

    texts, labels = read_demo_csv()
    examples = [
        Example(id=str(i), text=t, label=y) for i, (t, y) in enumerate(zip(texts, labels, strict=True))
    ]
    TfidfClassifier(seed=0).fit(examples).save(directory)


def write_input(path: Path, rows: int) -> None:
    texts, _ = read_demo_csv()
    with path.open("w", encoding="utf-8") as handle:
        for i in range(rows):
            extra = " ".join(WORDS[(i // 10**k) % 10] for k in range(3))
            handle.write(json.dumps({"id": f"c{i}", "text": f"{texts[i % len(texts)]} {extra}"}) + "\n")


def run_child(command: list[str], kill_when=None) -> dict:
    """Run a child, return its wall time, own peak RSS (MB) and exit status; ``kill_when()`` is
    polled and a SIGKILL sent once it returns True."""
    start = time.perf_counter()
    child = subprocess.Popen(command, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    killed = False
    if kill_when is not None:
        while child.poll() is None and not killed:
            if kill_when():
                child.send_signal(signal.SIGKILL)
                killed = True
            else:
                time.sleep(0.02)
    _, status, usage = os.wait4(child.pid, 0)
    seconds = time.perf_counter() - start
    output = child.stdout.read().decode(errors="replace")
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode != 0 and not killed:
        raise SystemExit(f"{' '.join(command)} failed ({child.returncode}):\n{output[-2000:]}")
    return {"seconds": seconds, "peak_rss_mb": usage.ru_maxrss / 1024, "killed": killed, "output": output}


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(2**20), b""):
            digest.update(block)
    return digest.hexdigest()


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.baseline_child:
        baseline_whole_file(*args.baseline_child)
        return
    rows = args.rows or (50_000 if args.quick else 1_000_000)
    with tempfile.TemporaryDirectory(prefix="predict-stream-") as tmp:
        tmp = Path(tmp)
        model_dir, source = tmp / "model", tmp / "big.jsonl"
        console.print(f"training TF-IDF on the demo data; writing {rows:,} rows to {source}")
        train_model(model_dir)
        write_input(source, rows)
        size_mb = source.stat().st_size / 2**20
        predict = [sys.executable, "-m", "socialens.cli", "predict", str(model_dir), str(source)]

        console.print("ours: streaming `socialens predict`")
        ours = run_child([*predict, "--out", str(tmp / "ours.jsonl")])
        ours["rows_per_s"] = rows / ours["seconds"]
        console.print(
            f"  {ours['seconds']:.1f} s, {ours['rows_per_s']:,.0f} rows/s, peak RSS {ours['peak_rss_mb']:.0f} MB"
        )

        baseline = None
        if not args.skip_baseline:
            console.print("baseline: the whole-file path")
            command = [
                sys.executable,
                __file__,
                "--baseline-child",
                str(model_dir),
                str(source),
                str(tmp / "base.jsonl"),
            ]
            baseline = run_child(command)
            baseline["rows_per_s"] = rows / baseline["seconds"]
            console.print(
                f"  {baseline['seconds']:.1f} s, {baseline['rows_per_s']:,.0f} rows/s, "
                f"peak RSS {baseline['peak_rss_mb']:.0f} MB"
            )
            (tmp / "base.jsonl").unlink()

        first, killed_at, identical = {"killed": None}, None, None
        if not args.skip_resume:
            console.print("resume: SIGKILL at half the rows, then the same command again")
            resumed_out = tmp / "resumed.jsonl"
            sidecar = resumed_out.with_name(resumed_out.name + ".progress.json")

            def half_done() -> bool:
                try:
                    return json.loads(sidecar.read_text())["position"]["rows"] >= rows // 2
                except (OSError, ValueError, KeyError):
                    return False

            first = run_child([*predict, "--out", str(resumed_out)], kill_when=half_done)
            killed_at = json.loads(sidecar.read_text())["position"]["rows"] if sidecar.exists() else None
            second = run_child([*predict, "--out", str(resumed_out)])
            identical = sha256(resumed_out) == sha256(tmp / "ours.jsonl")
            console.print(
                f"  killed: {first['killed']} at row {killed_at}; resumed in {second['seconds']:.1f} s; "
                f"byte-identical: {identical}"
            )

    payload = {
        "rows": rows,
        "input_mb": round(size_mb, 1),
        "ours": {k: v for k, v in ours.items() if k != "output"},
        "baseline": {k: v for k, v in baseline.items() if k != "output"} if baseline else None,
        "resume": {"killed": first["killed"], "killed_at_row": killed_at, "identical_sha256": identical},
        "machine": machine_info(),
    }
    write_json(args.out, payload)
    print(json.dumps(payload, indent=2))
    base_rate = baseline["rows_per_s"] if baseline else float("nan")
    print(
        f"rows/s: ours={ours['rows_per_s']:.0f} baseline={base_rate:.0f} ratio={ours['rows_per_s'] / base_rate:.2f}"
    )
    if not args.skip_resume and (not identical or not first["killed"]):
        raise SystemExit("resume check failed: the resumed output differs from an uninterrupted run")
    base_rss = baseline["peak_rss_mb"] if baseline else float("nan")
    print(result_line("predict_stream_peak_rss", ours["peak_rss_mb"], base_rss, "MB"))


if __name__ == "__main__":
    main()
