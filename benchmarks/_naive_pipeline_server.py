"""The naive baseline server for serve_load.py: FastAPI calling a transformers pipeline once per
request, the way most tutorials serve a fine-tuned classifier. Same request/response shape as
`socialens serve` (POST /v1/classify {"texts": [...]}); no batching across requests.

    python benchmarks/_naive_pipeline_server.py MODEL_DIR --port 8081 [--mode thread|loop]

--mode thread: a plain `def` endpoint (FastAPI runs it in its thread pool, so requests run the
pipeline concurrently); --mode loop: an `async def` endpoint (requests run one after another).
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import uvicorn  # noqa: E402
from fastapi import FastAPI  # noqa: E402
from pydantic import BaseModel  # noqa: E402


class Body(BaseModel):
    texts: list[str]


def build_app(model_dir: str, mode: str, max_length: int) -> FastAPI:
    from transformers import pipeline

    pipe = pipeline("text-classification", model=model_dir, device="cpu")
    app = FastAPI()

    def run(texts: list[str]) -> dict:
        out = pipe(texts, truncation=True, max_length=max_length, top_k=None)
        if texts and isinstance(out[0], dict):  # a single text comes back unnested
            out = [out]
        results = []
        for scores in out:
            probabilities = {d["label"]: d["score"] for d in scores}
            best = max(probabilities, key=probabilities.get)
            results.append({"label": best, "probabilities": probabilities, "status": "ok"})
        return {"results": results}

    @app.get("/healthz")
    def healthz() -> dict:
        return {"status": "ok"}

    if mode == "thread":

        @app.post("/v1/classify")
        def classify_in_thread(body: Body) -> dict:
            return run(body.texts)

    else:

        @app.post("/v1/classify")
        async def classify_on_loop(body: Body) -> dict:
            return run(body.texts)

    return app


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("model_dir")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8081)
    parser.add_argument("--mode", choices=["thread", "loop"], default="thread")
    parser.add_argument("--max-length", type=int, default=128)
    args = parser.parse_args()
    app = build_app(args.model_dir, args.mode, args.max_length)
    uvicorn.run(app, host=args.host, port=args.port, access_log=False, log_level="warning")


if __name__ == "__main__":
    main()
