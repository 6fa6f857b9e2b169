"""Serving load: `socialens serve` (micro-batching) vs a naive FastAPI + transformers.pipeline server.

Both serve the same fine-tuned MiniLM model (ours with the int8 ONNX copy `socialens export onnx`
adds, as a deployment would, unless --engine torch; the naive server the same torch weights through
transformers.pipeline), each started the same way (its own uvicorn
process on 127.0.0.1, one at a time), and get the same single-text requests from an asyncio + httpx
client at concurrency 1, 8 and 32. Reported per cell: requests/s, p50 and p99 latency, errors (any
non-200 answer, transport error, or a result that is not one "ok" prediction), and how often the
two servers' labels agree.

    HF_HUB_OFFLINE=1 python benchmarks/serve_load.py --quick
    HF_HUB_OFFLINE=1 python benchmarks/serve_load.py                      # 10,000 requests to ours at c=32
    HF_HUB_OFFLINE=1 python benchmarks/serve_load.py --model runs/x/model  # an existing model dir

Texts come from tweeteval/hate test under --data-root when present, else the built-in demo data.
The last line printed is the RESULT line (ours and baseline: requests/s at concurrency 32).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import httpx  # noqa: E402
from _common import DEFAULT_DATA_ROOT, load_benchmark_data, machine_info, result_line, write_json  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn  # noqa: E402
from rich.table import Table  # noqa: E402

console = Console(stderr=True)
HERE = Path(__file__).resolve().parent
HEADLINE_CONCURRENCY = 32


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="the same comparison with far fewer requests")
    parser.add_argument("--data-root", default=str(DEFAULT_DATA_ROOT), help="folder holding tweeteval/hate")
    parser.add_argument("--model", default=None, help="a trained encoder model dir (default: train one)")
    parser.add_argument("--n-train", type=int, default=None, help="examples to fine-tune on (default 256)")
    parser.add_argument(
        "--engine",
        choices=("onnx", "torch"),
        default="onnx",
        help="what ours serves: the model with its int8 ONNX export (default, as deployed) or torch only",
    )
    parser.add_argument(
        "--quantization",
        choices=("dynamic", "blockwise"),
        default="dynamic",
        help="int8 scheme of the ONNX export (`socialens export onnx --quantization`); dynamic, the one "
        "measured in docs/benchmarks.md, is what auto keeps when it agrees with torch on the dev set",
    )
    parser.add_argument("--concurrency", default="1,8,32", help="comma-separated client concurrencies")
    parser.add_argument(
        "--requests", type=int, default=None, help="requests to ours at c=32 (default 10000, quick 200)"
    )
    parser.add_argument(
        "--requests-other",
        type=int,
        default=None,
        help="requests in every other cell, the naive server's c=32 included (default 1500, quick 60)",
    )
    parser.add_argument(
        "--rounds", type=int, default=None, help="turns each server takes per cell (default 6, quick 3)"
    )
    parser.add_argument("--naive-mode", choices=["thread", "loop"], default="thread")
    parser.add_argument("--max-batch", type=int, default=64)
    parser.add_argument("--max-wait-ms", type=float, default=5.0)
    parser.add_argument("--out", default=None, help="write the measurements as JSON here")
    args = parser.parse_args(argv)
    args.n_train = args.n_train or (96 if args.quick else 256)
    args.requests = args.requests or (200 if args.quick else 10_000)
    args.requests_other = args.requests_other or (60 if args.quick else 1_500)
    args.rounds = args.rounds or (3 if args.quick else 6)
    args.levels = [int(c) for c in args.concurrency.split(",") if c.strip()]
    if HEADLINE_CONCURRENCY not in args.levels:
        parser.error(f"--concurrency must include {HEADLINE_CONCURRENCY} (the RESULT line compares it)")
    return args


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def train_model(train_texts: list[str], train_labels: list[str], out: Path) -> None:
    from socialens.classifiers.encoder import EncoderClassifier, EncoderParams
    from socialens.core.types import Example

    train = [
        Example(id=str(i), text=t, label=y)
        for i, (t, y) in enumerate(zip(train_texts, train_labels, strict=True))
    ]
    with console.status(f"fine-tuning MiniLM on {len(train)} examples (1 epoch)"):
        EncoderClassifier(EncoderParams(epochs=1, max_length=128), seed=0).fit(train).save(out)


class ServerProcess:
    """A server subprocess whose output goes to a file (a pipe nobody reads would stall it)."""

    def __init__(self, name: str, command: list[str], port: int, log_path: Path) -> None:
        self.name, self.command, self.url, self.log_path = name, command, f"http://127.0.0.1:{port}", log_path
        self.process: subprocess.Popen | None = None

    def __enter__(self) -> ServerProcess:
        self.log = self.log_path.open("w", encoding="utf-8")
        self.process = subprocess.Popen(
            self.command, stdout=self.log, stderr=subprocess.STDOUT, env=os.environ
        )
        deadline = time.monotonic() + 180
        with console.status(f"starting {self.name}"):
            while True:
                try:
                    if httpx.get(f"{self.url}/healthz", timeout=2).status_code == 200:
                        return self
                except httpx.TransportError:
                    pass
                if self.process.poll() is not None or time.monotonic() > deadline:
                    self.process.kill()
                    raise SystemExit(f"{self.name} did not start; its log: {self.log_path}")
                time.sleep(0.2)

    def __exit__(self, *exc) -> None:
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.log.close()


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of process ``pid`` (all its threads) so far; None off Linux. On a
    shared machine this is the fair measure of work: throughput also depends on how much of the
    CPU the scheduler hands each process."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def load_cell(
    url: str, texts: list[str], n_requests: int, concurrency: int, on_done, offset: int = 0, pid: int = 0
) -> dict:
    """``n_requests`` single-text requests from ``concurrency`` workers; request i sends
    texts[(offset + i) % len(texts)]."""
    latencies: list[float] = []
    labels: dict[int, str] = {}
    errors: list[str] = []
    next_index = 0
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)

    async def worker(client: httpx.AsyncClient) -> None:
        nonlocal next_index
        while next_index < n_requests:
            i = offset + next_index
            next_index += 1
            start = time.perf_counter()
            try:
                response = await client.post("/v1/classify", json={"texts": [texts[i % len(texts)]]})
                results = response.json().get("results") if response.status_code == 200 else None
                if not results or len(results) != 1 or results[0].get("status") != "ok":
                    errors.append(f"HTTP {response.status_code}: {response.text[:200]}")
                else:
                    labels[i % len(texts)] = results[0]["label"]
            except (httpx.HTTPError, ValueError) as exc:
                errors.append(f"{type(exc).__name__}: {exc}")
            latencies.append(time.perf_counter() - start)
            on_done()

    async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as client:
        warm_up = [client.post("/v1/classify", json={"texts": [t]}) for t in texts[:concurrency]]
        await asyncio.gather(*warm_up)  # opens the connections and wakes the server; untimed
        cpu_before = cpu_seconds(pid)
        start = time.perf_counter()
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
        seconds = time.perf_counter() - start
        cpu_after = cpu_seconds(pid)
    return {
        "requests": n_requests,
        "seconds": seconds,
        "server_cpu_s": None if cpu_before is None or cpu_after is None else cpu_after - cpu_before,
        "latencies": latencies,
        "errors": errors,
        "labels": labels,
    }


def pooled(concurrency: int, chunks: list[dict]) -> dict:
    latencies = sorted(x for chunk in chunks for x in chunk["latencies"])
    errors = [e for chunk in chunks for e in chunk["errors"]]
    requests, seconds = sum(c["requests"] for c in chunks), sum(c["seconds"] for c in chunks)
    cpu = [c["server_cpu_s"] for c in chunks]
    cpu_ms = None if None in cpu else 1000 * sum(cpu) / requests
    return {
        "requests": requests,
        "concurrency": concurrency,
        "seconds": seconds,
        "rounds": len(chunks),
        "requests_per_s": requests / seconds,
        "server_cpu_ms_per_request": cpu_ms,
        "p50_ms": 1000 * statistics.median(latencies),
        "p99_ms": 1000 * latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))],
        "errors": len(errors),
        "first_errors": errors[:3],
        "labels": {i: label for chunk in chunks for i, label in chunk["labels"].items()},
    }


def measure(
    servers: dict[str, ServerProcess],
    texts: list[str],
    plans: dict[str, list[tuple[int, int]]],
    rounds: int,
    progress,
) -> dict[str, list[dict]]:
    """Every cell split into ``rounds`` chunks, the servers taking turns (in alternating order), so
    that a burst of load from other processes on a shared machine hits both alike."""
    results: dict[str, list[dict]] = {name: [] for name in servers}
    for level in range(len(next(iter(plans.values())))):
        concurrency = next(iter(plans.values()))[level][0]
        chunks: dict[str, list[dict]] = {name: [] for name in servers}
        tasks = {
            name: progress.add_task(f"{name} c={concurrency}", total=plans[name][level][1])
            for name in servers
        }
        for round_no in range(rounds):
            for name in list(servers)[:: 1 if round_no % 2 == 0 else -1]:
                total = plans[name][level][1]
                n = total // rounds + (1 if round_no < total % rounds else 0)
                done = sum(chunk["requests"] for chunk in chunks[name])
                advance = lambda task=tasks[name]: progress.advance(task)  # noqa: E731
                chunks[name].append(
                    asyncio.run(
                        load_cell(
                            servers[name].url, texts, n, concurrency, advance, done, servers[name].process.pid
                        )
                    )
                )
        for name in servers:
            results[name].append(pooled(concurrency, chunks[name]))
    return results


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    dataset, (train_texts, train_labels), (test_texts, _) = load_benchmark_data(
        args.data_root, args.n_train, 100_000
    )
    texts = [t for t in test_texts if t.strip()]
    machine_at_start = machine_info()
    console.print(
        f"[bold]serve load[/] {dataset}: {len(texts)} distinct texts; concurrency {args.levels}; "
        f"ours {args.requests} requests at c={HEADLINE_CONCURRENCY}, {args.requests_other} per other cell; "
        f"load average {machine_at_start['loadavg_1m']}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model_dir = Path(args.model) if args.model else tmp / "model"
        if not args.model:
            train_model(train_texts, train_labels, model_dir)
        ours_dir = model_dir
        if args.engine == "onnx":  # the deployment path: `socialens export onnx`, then `socialens serve`
            import shutil

            from socialens.serving.onnx_export import export_onnx

            ours_dir = tmp / "model-onnx"
            shutil.copytree(model_dir, ours_dir, ignore=shutil.ignore_patterns("onnx"))
            export_onnx(ours_dir, quantization=args.quantization)
        ours_command = [sys.executable, "-m", "socialens.cli", "serve", str(ours_dir)]
        ours_command += ["--max-batch", str(args.max_batch), "--max-wait-ms", str(args.max_wait_ms)]
        naive_command = [sys.executable, str(HERE / "_naive_pipeline_server.py"), str(model_dir)]
        naive_command += ["--mode", args.naive_mode]

        def plan(ours: bool) -> list[tuple[int, int]]:
            headline = args.requests if ours else args.requests_other
            return [(c, headline if c == HEADLINE_CONCURRENCY else args.requests_other) for c in args.levels]

        columns = (
            TextColumn("[bold]{task.description:<18}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
        )
        ours_port, naive_port = free_port(), free_port()
        ours_server = ServerProcess(
            "socialens serve", [*ours_command, "--port", str(ours_port)], ours_port, tmp / "ours.log"
        )
        naive_server = ServerProcess(
            "naive pipeline", [*naive_command, "--port", str(naive_port)], naive_port, tmp / "naive.log"
        )
        # both stay up (an idle server costs no CPU) so that their cells can interleave
        with ours_server, naive_server, Progress(*columns, console=console) as progress:
            servers = {ours_server.name: ours_server, naive_server.name: naive_server}
            plans = {ours_server.name: plan(True), naive_server.name: plan(False)}
            results = measure(servers, texts, plans, args.rounds, progress)

    ours, naive = results["socialens serve"], results["naive pipeline"]
    table = Table(title=f"serving load on {dataset}, single-text requests (naive mode: {args.naive_mode})")
    headers = ("server", "c", "requests", "req/s", "p50 ms", "p99 ms", "errors", "vs naive", "CPU ms/req")
    for col in headers:
        table.add_column(col, justify="left" if col == "server" else "right")
    for name, cells in results.items():
        for cell, reference in zip(cells, naive, strict=True):
            table.add_row(
                name,
                str(cell["concurrency"]),
                str(cell["requests"]),
                f"{cell['requests_per_s']:.1f}",
                f"{cell['p50_ms']:.1f}",
                f"{cell['p99_ms']:.1f}",
                str(cell["errors"]),
                f"{cell['requests_per_s'] / reference['requests_per_s']:.2f}x",
                "-"
                if cell["server_cpu_ms_per_request"] is None
                else f"{cell['server_cpu_ms_per_request']:.1f}",
            )
    console.print(table)
    shared = [(i, label) for cell in ours for i, label in cell["labels"].items()]
    naive_labels = {i: label for cell in naive for i, label in cell["labels"].items()}
    compared = [(label, naive_labels[i]) for i, label in shared if i in naive_labels]
    agreement = sum(a == b for a, b in compared) / max(1, len(compared))
    console.print(f"label agreement with the naive server: {agreement:.2%} over {len(compared)} answers")
    for name, cells in results.items():
        for cell in cells:
            for error in cell["first_errors"]:
                console.print(f"[red]{name} c={cell['concurrency']}: {error}[/]")

    payload = {
        "benchmark": "serve_load",
        "dataset": dataset,
        "settings": {k: v for k, v in vars(args).items() if k != "out"},
        "machine": {**machine_at_start, "loadavg_1m_at_end": machine_info()["loadavg_1m"]},
        "results": {
            name: [{k: v for k, v in c.items() if k != "labels"} for c in cells]
            for name, cells in results.items()
        },
        "label_agreement": agreement,
    }
    write_json(args.out, payload)
    headline = {
        name: next(c for c in cells if c["concurrency"] == HEADLINE_CONCURRENCY)
        for name, cells in results.items()
    }
    if any(cell["errors"] for cell in ours):
        console.print("[red]our server answered some requests with errors[/]")
        return 1
    print(
        result_line(
            "serve_load_c32",
            headline["socialens serve"]["requests_per_s"],
            headline["naive pipeline"]["requests_per_s"],
            "requests/s",
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
