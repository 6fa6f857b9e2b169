"""The HTTP service end to end: a real uvicorn server on 127.0.0.1, real models, httpx clients."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
from pathlib import Path

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.specs.openapi.checks import positive_data_acceptance

from socialens.classifiers.base import load_classifier
from socialens.core.types import Example
from socialens.serving.app import ServiceSettings, load_served_model

TINY_CSV = Path(__file__).resolve().parents[1] / "fixtures" / "bench" / "tiny.csv"


def classify(url: str, payload, **kwargs) -> httpx.Response:
    return httpx.post(f"{url}/v1/classify", json=payload, timeout=30, **kwargs)


def test_classify_returns_one_result_per_text_with_model_id_and_version(serve, tfidf_model_dir):
    url, _, _ = serve()
    texts = ["This has been debunked by every fact-checker", "Finally exposes the lie they sold us", "lunch"]
    response = classify(url, {"texts": texts, "ids": ["a", "b", "c"]})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model"]["id"] == "tiny-tfidf" and body["model"]["family"] == "tfidf"
    assert body["model"]["version"] == load_served_model(tfidf_model_dir).ref.version
    assert [r["id"] for r in body["results"]] == ["a", "b", "c"]
    assert [r["label"] for r in body["results"][:2]] == ["debunk", "belief"]
    for result in body["results"]:
        assert result["status"] == "ok"
        assert set(result["probabilities"]) == {"belief", "debunk", "other"}
        assert sum(result["probabilities"].values()) == pytest.approx(1.0)
    no_ids = classify(url, {"texts": texts[:2]}).json()
    assert [r["id"] for r in no_ids["results"]] == ["0", "1"]


def test_health_model_info_and_docs(serve):
    url, _, _ = serve(ServiceSettings(max_texts=7, max_chars=99))
    health = httpx.get(f"{url}/healthz").json()
    assert health["status"] == "ok" and health["model"]["id"] == "tiny-tfidf"
    info = httpx.get(f"{url}/v1/model").json()
    assert info["labels"] == ["belief", "debunk", "other"]
    assert info["schema"]["labels"][0]["name"] == "belief"
    assert info["training"]["train_examples"] == 90
    assert info["limits"] == {
        "max_batch": 64,
        "max_wait_ms": 5.0,
        "max_texts": 7,
        "max_chars": 99,
        "max_body_bytes": 7 * (6 * 99 + 256) + 64 * 1024,
        "body_timeout_s": 10.0,
        "header_timeout_s": 5.0,
        "keep_alive_s": 5.0,
        "max_connections": 512,
        "max_connections_per_client": 64,
        "inference_threads": max(1, os.cpu_count() - 1),
    }
    assert httpx.get(f"{url}/docs").status_code == 200
    spec = httpx.get(f"{url}/openapi.json").json()
    texts = spec["components"]["schemas"]["ClassifyRequest"]["properties"]["texts"]
    assert texts["maxItems"] == 7 and texts["items"]["maxLength"] == 99
    assert {"/v1/classify", "/v1/model", "/healthz"} <= set(spec["paths"])


def test_model_info_says_what_runs_the_model_and_how_it_scored(serve, tfidf_model_dir, tmp_path):
    from rich.console import Console
    from typer.testing import CliRunner

    from socialens.bench import run_bench
    from socialens.cli import app
    from socialens.experiment import load_experiment

    url, _, _ = serve()
    plain = httpx.get(f"{url}/v1/model").json()
    assert plain["runtime"] == "sklearn"
    assert plain["evaluation"] is None  # fitted and saved in Python: nobody scored it

    # a model bench saved in its cell: the cell's own test metrics
    fixtures = TINY_CSV.parent
    (tmp_path / "tiny.csv").write_bytes(TINY_CSV.read_bytes())
    (tmp_path / "tiny.yaml").write_text(
        (fixtures / "tiny.yaml").read_text().replace("path: .", f"path: {tmp_path}")
    )
    (tmp_path / "exp.yaml").write_text(
        f"name: t\noutput_dir: {tmp_path / 'runs'}\ndatasets: [{tmp_path / 'tiny.yaml'}]\n"
        "models:\n  - {id: tf, family: tfidf}\nseeds: [0]\nbootstrap: 50\n"
    )
    run_bench(load_experiment(tmp_path / "exp.yaml"), console=Console(quiet=True), save_models=True)
    cell = tmp_path / "runs" / "t" / "tiny" / "tf" / "seed-0"
    url, _, _ = serve(model_dir=cell / "model")
    info = httpx.get(f"{url}/v1/model").json()
    cell_metrics = json.loads((cell / "metrics.json").read_text())
    assert info["runtime"] == "sklearn" and set(info["evaluation"]) == {"test"}
    assert info["evaluation"]["test"] == {"source": "bench cell metrics.json", **cell_metrics}

    # `socialens train`: dev and test, as it printed them
    trained = tmp_path / "trained"
    result = CliRunner().invoke(app, ["train", "tfidf", "--data", str(TINY_CSV), "--out", str(trained)])
    assert result.exit_code == 0, result.output
    url, _, _ = serve(model_dir=trained)
    evaluation = httpx.get(f"{url}/v1/model").json()["evaluation"]
    assert {part: evaluation[part]["n"] for part in evaluation} == {"dev": 18, "test": 9}
    for part in ("dev", "test"):
        assert evaluation[part]["source"] == "socialens train"
        assert f"{part} macro-F1 {evaluation[part]['macro_f1']:.3f} " in result.output


def test_every_family_says_what_runs_it():
    from socialens.classifiers.base import REGISTRY, get_family
    from socialens.classifiers.prompted import PromptedParams

    get_family("tfidf")  # imports every built-in family
    runtimes = {name: cls().runtime for name, cls in REGISTRY.items()}  # unfitted: nothing loads
    assert runtimes == {
        "tfidf": "sklearn",
        "encoder": "torch",  # until an ONNX export is loaded (tests/serving/test_onnx_export.py)
        "prompted": "llama.cpp",
        "instruct": "torch",
        "llm_head": "torch",
    }
    prompted = REGISTRY["prompted"]
    by_backend = {b: prompted(PromptedParams(backend=b)).runtime for b in ("llamacpp", "hf", "openai")}
    assert by_backend == {"llamacpp": "llama.cpp", "hf": "torch", "openai": "openai-compatible"}


def test_an_unreadable_cell_metrics_file_does_not_stop_serving(tfidf_model_dir, tmp_path):
    cell = tmp_path / "cell"
    shutil.copytree(tfidf_model_dir, cell / "model")
    (cell / "metrics.json").write_text("{not json")
    served = load_served_model(cell / "model")
    assert served.evaluation["test"]["source"] == "bench cell metrics.json"
    assert served.evaluation["test"]["error"].startswith(f"{(cell / 'metrics.json').resolve()}: unreadable (")


def test_bearer_token_guards_the_api_but_not_healthz(serve):
    url, _, _ = serve(ServiceSettings(token="s3cret-token"))
    assert httpx.get(f"{url}/healthz").status_code == 200
    missing = classify(url, {"texts": ["x"]})
    assert missing.status_code == 401
    assert missing.headers["www-authenticate"] == "Bearer"
    assert "bearer token" in missing.json()["error"]
    wrong = classify(url, {"texts": ["x"]}, headers={"Authorization": "Bearer s3cret-tokeN"})
    assert wrong.status_code == 401
    not_bearer = classify(url, {"texts": ["x"]}, headers={"Authorization": "Basic s3cret-token"})
    assert not_bearer.status_code == 401
    assert httpx.get(f"{url}/v1/model").status_code == 401
    good = {"Authorization": "Bearer s3cret-token"}
    assert classify(url, {"texts": ["x"]}, headers=good).status_code == 200
    assert httpx.get(f"{url}/v1/model", headers=good).status_code == 200
    spec = httpx.get(f"{url}/openapi.json").json()
    assert spec["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"


def test_limits_give_413_and_422_naming_the_field_and_the_limit(serve):
    url, _, _ = serve(ServiceSettings(max_texts=5, max_chars=20))
    too_many = classify(url, {"texts": ["a"] * 6})
    assert too_many.status_code == 413
    assert too_many.json()["error"] == "texts: 6 texts in one request; the limit is 5"
    too_long = classify(url, {"texts": ["short", "x" * 21]})
    assert too_long.status_code == 422
    assert too_long.json()["error"] == "texts[1]: 21 characters; the limit is 20"
    assert classify(url, {"texts": ["a"] * 5}).status_code == 200
    assert classify(url, {"texts": ["x" * 20]}).status_code == 200
    ids = classify(url, {"texts": ["a", "b"], "ids": ["1"]})
    assert ids.status_code == 422 and ids.json()["error"].startswith("ids: 1 ids for 2 texts")


def test_body_over_max_body_bytes_gets_413_before_parsing(serve):
    url, log, _ = serve(ServiceSettings(max_body_bytes=1000))
    body = json.dumps({"texts": ["x" * 400] * 3})  # within the text limits, over the byte cap
    assert 1000 < len(body) < 1300
    declared = httpx.post(
        f"{url}/v1/classify", content=body, headers={"Content-Type": "application/json"}, timeout=30
    )
    assert declared.status_code == 413
    assert declared.json() == {
        "error": f"body: {len(body)} bytes (Content-Length); the limit is 1000 bytes (--max-body-bytes)"
    }

    def chunks(count: int):
        yield b'{"texts": ['
        for index in range(count):
            yield (b", " if index else b"") + b'"' + b"y" * 300 + b'"'
        yield b"]}"

    chunked = httpx.post(
        f"{url}/v1/classify", content=chunks(20), headers={"Content-Type": "application/json"}, timeout=30
    )
    assert "content-length" not in chunked.request.headers
    assert chunked.request.headers["transfer-encoding"] == "chunked"
    assert chunked.status_code == 413
    assert chunked.json()["error"] == (
        "body: more than 1000 bytes received; the limit is 1000 bytes (--max-body-bytes)"
    )

    at_limit = json.dumps({"texts": ["z" * (1000 - len('{"texts": [""]}'))]}).encode()
    assert len(at_limit) == 1000
    as_json = {"Content-Type": "application/json"}
    assert httpx.post(f"{url}/v1/classify", content=at_limit, headers=as_json, timeout=30).status_code == 200
    small_chunked = httpx.post(f"{url}/v1/classify", content=chunks(2), headers=as_json, timeout=30)
    assert small_chunked.status_code == 200 and len(small_chunked.json()["results"]) == 2
    assert [json.loads(line)["status"] for line in log] == [413, 413, 200, 200]


def _raw_exchange(url: str, request: bytes) -> bytes:
    """Send a request that never finishes its body; return what the server answers meanwhile."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as conn:
        conn.sendall(request)
        reply = b""
        while b"\r\n\r\n" not in reply or not reply.rstrip().endswith(b"}"):
            data = conn.recv(65536)
            if not data:
                break
            reply += data
    return reply


def test_oversized_body_is_refused_without_waiting_for_the_rest_of_it(serve):
    """The 413 comes while the client is still sending: the body is never buffered whole."""
    url, _, _ = serve(ServiceSettings(max_body_bytes=1000))
    head = b"POST /v1/classify HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
    huge_declared = _raw_exchange(url, head + b"Content-Length: 10000000000\r\n\r\n" + b'{"texts": [')
    assert huge_declared.startswith(b"HTTP/1.1 413 ")
    assert b"10000000000 bytes (Content-Length); the limit is 1000 bytes" in huge_declared
    chunk = b'{"texts": ["' + b"q" * 1200
    unfinished_chunked = _raw_exchange(
        url, head + b"Transfer-Encoding: chunked\r\n\r\n" + f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n"
    )
    assert unfinished_chunked.startswith(b"HTTP/1.1 413 ")
    assert b"more than 1000 bytes received" in unfinished_chunked


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ('{"texts": ["a", ', "body: malformed JSON"),
        ('{"texts": ["a", 3]}', "texts[1]: Input should be a valid string"),
        ('{"texts": "just one"}', "texts: Input should be a valid list"),
        ('{"ids": ["a"]}', "texts: Field required"),
        ('{"texts": ["a"], "colour": 1}', "colour: Extra inputs are not permitted"),
        ("[1, 2]", "body: Input should be a valid dictionary"),
        ("", "body: Field required"),
    ],
)
def test_bad_bodies_get_a_422_json_error_never_a_500(serve, body, expected):
    url, log, _ = serve()
    response = httpx.post(
        f"{url}/v1/classify", content=body, headers={"Content-Type": "application/json"}, timeout=30
    )
    assert response.status_code == 422, response.text
    assert response.json()["error"].startswith(expected)
    assert "just one" not in response.text  # inputs are not echoed back


def test_access_log_is_one_json_line_per_request_without_the_texts(serve):
    url, log, _ = serve()
    secret = "a very private comment about my neighbour"
    classify(url, {"texts": [secret, "another one"]})
    classify(url, {"texts": ["x"] * 300})
    httpx.get(f"{url}/healthz")
    entries = [json.loads(line) for line in log]
    assert len(entries) == 3
    assert entries[0]["method"] == "POST" and entries[0]["path"] == "/v1/classify"
    assert (entries[0]["status"], entries[0]["n_texts"]) == (200, 2)
    assert (entries[1]["status"], entries[1]["n_texts"]) == (413, 300)
    assert (entries[2]["path"], entries[2]["status"], entries[2]["n_texts"]) == ("/healthz", 200, None)
    assert all(set(e) == {"method", "path", "status", "n_texts", "latency_ms"} for e in entries)
    assert all(e["latency_ms"] > 0 for e in entries)
    assert all(secret not in line for line in log)


async def _concurrent_requests(url: str, batches: list[list[str]]) -> list[dict]:
    limits = httpx.Limits(max_connections=len(batches))
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as client:
        responses = await asyncio.gather(
            *(
                client.post(
                    "/v1/classify", json={"texts": texts, "ids": [f"{n}-{i}" for i in range(len(texts))]}
                )
                for n, texts in enumerate(batches)
            )
        )
    assert all(r.status_code == 200 for r in responses), [r.text for r in responses if r.status_code != 200]
    return [r.json() for r in responses]


def test_concurrent_requests_are_merged_and_equal_direct_predict(serve, tfidf_model_dir, tiny_texts):
    url, _, _ = serve(ServiceSettings(max_batch=16, max_wait_ms=100))
    requests = [tiny_texts[n % 30 : n % 30 + 1 + n % 3] for n in range(40)]
    bodies = asyncio.run(_concurrent_requests(url, requests))

    direct = load_classifier(tfidf_model_dir).predict(
        [Example(id=f"{n}-{i}", text=t) for n, texts in enumerate(requests) for i, t in enumerate(texts)]
    )
    served = [result for body in bodies for result in body["results"]]
    assert len(served) == len(direct) == sum(len(t) for t in requests)
    for record, result in zip(direct, served, strict=True):
        assert result["id"] == record.id
        assert result["label"] == record.predicted
        assert result["probabilities"] == pytest.approx(record.scores, abs=1e-12)

    stats = httpx.get(f"{url}/v1/model").json()["batching"]
    assert stats["requests"] == 40 and stats["texts"] == len(direct)
    assert stats["merged_batches"] >= 1
    assert stats["batches"] < 40
    assert 2 <= stats["max_requests_in_batch"] and stats["max_texts_in_batch"] <= 16


def test_a_request_larger_than_max_batch_is_split_but_answered_whole(serve, tiny_texts):
    url, _, _ = serve(ServiceSettings(max_batch=8, max_wait_ms=0))
    body = classify(url, {"texts": tiny_texts[:30]}).json()
    assert [r["id"] for r in body["results"]] == [str(i) for i in range(30)]
    stats = httpx.get(f"{url}/v1/model").json()["batching"]
    assert stats["batches"] == 4 and stats["max_texts_in_batch"] == 8


@pytest.mark.slow
def test_encoder_model_served_equals_direct_predict(serve, tmp_path, tiny_texts):
    from socialens.classifiers.encoder import EncoderClassifier, EncoderParams
    from socialens.data.datasets import load_dataset, load_dataset_config

    raw = load_dataset(load_dataset_config("builtin:reddit_misinfo_demo"))
    examples = [ex for part in raw.splits.values() for ex in part][:24]
    params = EncoderParams(epochs=1, batch_size=12, max_length=48, num_threads=1)
    model_dir = tmp_path / "minilm"
    EncoderClassifier(params, seed=0).fit(examples, schema=raw.schema).save(model_dir)

    url, _, _ = serve(ServiceSettings(max_batch=32, max_wait_ms=50), model_dir=model_dir)
    requests = [[t] for t in tiny_texts[:16]]
    bodies = asyncio.run(_concurrent_requests(url, requests))
    direct = load_classifier(model_dir).predict([Example(id="x", text=t[0]) for t in requests])
    for record, body in zip(direct, bodies, strict=True):
        (result,) = body["results"]
        assert result["status"] == "ok" and result["label"] == record.predicted
        assert result["probabilities"] == pytest.approx(record.scores, abs=1e-4)
    info = httpx.get(f"{url}/v1/model").json()
    assert info["model"]["family"] == "encoder" and info["labels"] == raw.schema.names
    assert info["batching"]["merged_batches"] >= 1


def test_openapi_spec_holds_under_schemathesis(serve):
    """Generated requests (valid and invalid) against the service's own spec: documented status
    codes, responses matching their schemas, no 5xx. (Driven through hypothesis directly: the
    schemathesis pytest plugin does not run under pytest 9.)"""
    url, log, _ = serve(ServiceSettings(max_texts=8, max_chars=200, token="tok"))
    schema = schemathesis.openapi.from_url(f"{url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {op.path for op in operations} == {"/healthz", "/v1/model", "/v1/classify"}
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=20, deadline=None, database=None, suppress_health_check=list(HealthCheck))
        def check(case):
            auth = {"Authorization": "Bearer tok"}
            body = case.body if isinstance(case.body, dict) else {}
            texts, ids = body.get("texts"), body.get("ids")
            if isinstance(texts, list) and isinstance(ids, list) and len(ids) != len(texts):
                # "one id per text" is beyond what JSON Schema can say: schema-valid, yet a 422
                response = case.call_and_validate(
                    headers=auth, timeout=30, excluded_checks=[positive_data_acceptance]
                )
                assert response.status_code == 422
                return
            case.call_and_validate(headers=auth, timeout=30)

        check()
    statuses = {json.loads(line)["status"] for line in log}
    assert 200 in statuses and not any(code >= 500 for code in statuses)
