"""Task-shaped answers of the HTTP service: /v1/predict for a model of any task but classification,
/v1/entities for token-classification models, 404s with one line for the endpoints a model does not
answer, and a spec that documents only the endpoints it does (checked with schemathesis)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

from socialens.classifiers.tfidf import TfidfClassifier
from socialens.core.types import Example, LabelSchema
from socialens.serving.app import ServiceSettings

TINY_CSV = Path(__file__).resolve().parents[1] / "fixtures" / "bench" / "tiny.csv"
MULTI = LabelSchema.from_names(["belief", "debunk", "other", "long"])


def tiny_examples() -> list[Example]:
    with TINY_CSV.open(encoding="utf-8", newline="") as handle:
        return [Example(id=row["id"], text=row["text"], label=row["label"]) for row in csv.DictReader(handle)]


def multilabel_examples() -> list[Example]:
    """The tiny fixture with a second label on long texts: a real multi-label target."""
    return [
        Example(id=ex.id, text=ex.text, label=[ex.label, *(["long"] if len(ex.text) > 60 else [])])
        for ex in tiny_examples()
    ]


@pytest.fixture(scope="module")
def multilabel_model_dir(tmp_path_factory):
    directory = tmp_path_factory.mktemp("serving-tasks") / "tiny-multilabel"
    TfidfClassifier().fit(multilabel_examples(), schema=MULTI, task_type="multilabel").save(directory)
    return directory


def post(url: str, path: str, body: dict, **kwargs) -> httpx.Response:
    return httpx.post(f"{url}{path}", json=body, timeout=30, **kwargs)


def check_spec(url: str, paths: set[str], token: str = "tok", examples: int = 15) -> None:
    """schemathesis over the service's own spec: documented statuses, responses matching their
    schemas, no 5xx (as tests/serving/test_app.py does for a classification model)."""
    schema = schemathesis.openapi.from_url(f"{url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {op.path for op in operations} == paths
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=examples, deadline=None, database=None, suppress_health_check=list(HealthCheck)
        )
        def check(case):
            body = case.body if isinstance(case.body, dict) else {}
            texts, ids = body.get("texts"), body.get("ids")
            if isinstance(texts, list) and isinstance(ids, list) and len(ids) != len(texts):
                return  # "one id per text" is beyond JSON Schema (test_app.py checks its 422)
            case.call_and_validate(headers={"Authorization": f"Bearer {token}"}, timeout=60)

        check()


def test_a_multilabel_model_answers_on_v1_predict(serve, multilabel_model_dir):
    url, log, _ = serve(ServiceSettings(max_texts=8, max_chars=200), model_dir=multilabel_model_dir)
    texts = [ex.text for ex in multilabel_examples()[:3]]
    response = post(url, "/v1/predict", {"texts": [*texts, "   "], "ids": ["a", "b", "c", "d"]})
    assert response.status_code == 200
    body = response.json()
    assert list(body) == ["model", "task_type", "results"]
    assert body["task_type"] == "multilabel" and body["model"]["id"] == "tiny-multilabel"
    results = body["results"]
    assert [list(r) for r in results] == [["id", "labels", "scores", "status", "error"]] * 4
    assert [r["id"] for r in results] == ["a", "b", "c", "d"]
    for result in results[:3]:
        assert result["status"] == "ok" and set(result["labels"]) <= set(MULTI.names)
        assert set(result["scores"]) == set(MULTI.names)
    # the same answer as the model gives directly
    from socialens.classifiers.base import load_classifier

    direct = load_classifier(multilabel_model_dir).predict([Example(str(i), t) for i, t in enumerate(texts)])
    assert [r["labels"] for r in results[:3]] == [d.predicted for d in direct]
    # a blank text is invalid, never sent to the model
    assert results[3] == {
        "id": "d",
        "labels": None,
        "scores": None,
        "status": "invalid",
        "error": "texts[3]: empty text; expected non-empty text",
    }
    info = httpx.get(f"{url}/v1/model").json()
    assert info["task_type"] == "multilabel" and info["labels"] == MULTI.names


def test_endpoints_of_another_task_are_one_line_404s(serve, multilabel_model_dir):
    url, _, _ = serve(model_dir=multilabel_model_dir)
    for path, serves in (("/v1/classify", "classification"), ("/v1/entities", "token-classification")):
        response = post(url, path, {"texts": ["x"]})
        assert response.status_code == 404
        error = response.json()["error"]
        assert error.startswith(f"{path}: answers {serves}") and "\n" not in error
        assert error.endswith("the served model's task is multilabel: use /v1/predict")
    spec = httpx.get(f"{url}/openapi.json").json()
    assert set(spec["paths"]) == {"/healthz", "/v1/model", "/v1/predict"}
    assert "Its task is multilabel: POST /v1/predict answers" in spec["info"]["description"]
    result = spec["components"]["schemas"]["PredictResult"]
    assert list(result["properties"]) == ["id", "labels", "scores", "status", "error"]


def test_a_classification_model_keeps_v1_classify_and_says_so_elsewhere(serve):
    url, _, _ = serve()
    for path in ("/v1/predict", "/v1/entities"):
        response = post(url, path, {"texts": ["x"]})
        assert response.status_code == 404
        assert response.json()["error"].endswith(
            "the served model's task is classification: use /v1/classify"
        )
    assert httpx.get(f"{url}/v1/model").json()["task_type"] == "classification"
    spec = httpx.get(f"{url}/openapi.json").json()
    assert set(spec["paths"]) == {"/healthz", "/v1/model", "/v1/classify"}
    assert "PredictResult" not in spec["components"]["schemas"]


def test_the_404s_still_need_the_token(serve, multilabel_model_dir):
    url, _, _ = serve(ServiceSettings(token="tok"), model_dir=multilabel_model_dir)
    assert post(url, "/v1/classify", {"texts": ["x"]}).status_code == 401
    assert post(url, "/v1/predict", {"texts": ["x"]}).status_code == 401
    assert (
        post(url, "/v1/classify", {"texts": ["x"]}, headers={"Authorization": "Bearer tok"}).status_code
        == 404
    )


def test_multilabel_spec_holds_under_schemathesis(serve, multilabel_model_dir):
    url, log, _ = serve(
        ServiceSettings(max_texts=8, max_chars=200, token="tok"), model_dir=multilabel_model_dir
    )
    check_spec(url, {"/healthz", "/v1/model", "/v1/predict"})
    statuses = {json.loads(line)["status"] for line in log}
    assert 200 in statuses and not any(code >= 500 for code in statuses)


# -- a token-classification model: a prompted SmolLM2 asked for entities in the JSON format ----------


@pytest.fixture(scope="module")
def entity_model_dir(tmp_path_factory):
    pytest.importorskip("llama_cpp")
    from socialens.classifiers.prompted import PromptedClassifier, PromptedParams
    from socialens.core.errors import ConfigError

    tmp = tmp_path_factory.mktemp("serving-entities")
    schema = LabelSchema.from_names(["PER", "LOC"])
    train = [
        Example(
            "t0", "John lives in London", ["B-PER", "O", "O", "B-LOC"], tokens="John lives in London".split()
        ),
        Example("t1", "Mary visited Paris", ["B-PER", "O", "B-LOC"], tokens="Mary visited Paris".split()),
    ]
    params = PromptedParams(
        backend="llamacpp",
        model="builtin:smollm2-135m-instruct",
        prompt="json",
        decoding="constrained",  # the task's JSON schema, as a llama.cpp grammar
        shots=0,
        cache_path=str(tmp / "cache.sqlite"),
        n_ctx=1024,
        n_threads=2,
    )
    try:
        classifier = PromptedClassifier(params).fit(train, schema=schema, task_type="token_classification")
    except ConfigError as error:  # the weights package is not installed
        pytest.skip(str(error))
    directory = tmp / "tiny-entities"
    classifier.save(directory)
    return directory


@pytest.mark.slow
def test_a_token_model_answers_entities_with_character_offsets(serve, entity_model_dir):
    url, log, _ = serve(ServiceSettings(max_texts=4, max_chars=200, token="tok"), model_dir=entity_model_dir)
    auth = {"Authorization": "Bearer tok"}
    texts = ["Angela Merkel visited Paris on Monday.", "John lives in London with Mary.", ""]
    answers = {}
    for path in ("/v1/entities", "/v1/predict"):
        response = post(url, path, {"texts": texts}, headers=auth)
        assert response.status_code == 200, response.text
        answers[path] = response.json()
    assert answers["/v1/entities"] == answers["/v1/predict"]  # one answer under two names
    body = answers["/v1/entities"]
    assert body["task_type"] == "token_classification"
    results = body["results"]
    assert [list(r) for r in results] == [["id", "entities", "tags", "status", "error"]] * 3
    assert results[2]["status"] == "invalid" and results[2]["entities"] is None
    for text, result in zip(texts[:2], results[:2], strict=False):
        assert result["status"] in ("ok", "invalid", "refused")
        if result["status"] == "ok":
            assert len(result["tags"]) == len(text.replace(".", " .").split())  # one tag per token
            for entity in result["entities"]:
                assert entity["type"] in ("PER", "LOC")
                assert text[entity["start"] : entity["end"]] == entity["text"]
    assert any(r["status"] == "ok" and r["entities"] for r in results[:2])
    info = httpx.get(f"{url}/v1/model", headers=auth).json()
    assert info["task_type"] == "token_classification"
    assert post(url, "/v1/classify", {"texts": ["x"]}, headers=auth).status_code == 404
    check_spec(url, {"/healthz", "/v1/model", "/v1/predict", "/v1/entities"}, examples=5)
