"""Request and response models of the HTTP API; FastAPI builds the OpenAPI spec from them."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model

from socialens.core.types import PredictionRecord
from socialens.tasks.responses import TaskResponse


class ClassifyRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    texts: list[str] = Field(
        description="Texts to classify. The service's --max-texts and --max-chars limits apply."
    )
    ids: list[str] | None = Field(
        default=None,
        description="Optional caller ids, one per text, echoed in the results (default: the text's index).",
    )


class ModelRef(BaseModel):
    id: str = Field(description="The model directory's name.")
    version: str = Field(description="Short content hash of every file in the model directory.")
    family: str


class Prediction(BaseModel):
    id: str
    label: str | None = Field(description="The predicted label; null unless status is ok.")
    probabilities: dict[str, float] | None = Field(
        description="Per-label probabilities or scores, when the model family has them."
    )
    status: Literal["ok", "refused", "invalid", "error"]
    error: str | None = None

    @classmethod
    def from_record(cls, record: PredictionRecord) -> Prediction:
        return cls(
            id=record.id,
            label=record.predicted,
            probabilities=record.scores,
            status=record.status.value,
            error=record.error,
        )


class ClassifyResponse(BaseModel):
    model: ModelRef
    results: list[Prediction] = Field(description="One result per input text, in input order.")


class Health(BaseModel):
    status: Literal["ok"]
    model: ModelRef


class ServingLimits(BaseModel):
    max_batch: int
    max_wait_ms: float
    max_texts: int
    max_chars: int
    max_body_bytes: int = Field(description="Largest request body in bytes; larger ones get 413.")
    body_timeout_s: float = Field(description="The whole body must arrive within this; else 408.")
    header_timeout_s: float = Field(description="A request's headers must arrive within this; else 408.")
    keep_alive_s: float = Field(description="An idle connection is closed after this.")
    max_connections: int = Field(description="Open connections in all; more get 503.")
    max_connections_per_client: int = Field(
        description="Open connections per client IP (0: no cap); more get 429."
    )
    inference_threads: int = Field(description="Torch threads of the one inference thread.")


class BatchingStats(BaseModel):
    requests: int
    texts: int
    batches: int
    merged_batches: int = Field(description="Batches holding texts of two or more requests.")
    max_requests_in_batch: int
    max_texts_in_batch: int
    predict_failures: int


class ModelInfo(BaseModel):
    model: ModelRef
    task_type: str = Field(
        default="classification",
        description="The model's task (classification, token_classification, multilabel, summarisation, "
        "...): it decides the answering endpoint, /v1/classify for classification, /v1/predict otherwise.",
    )
    labels: list[str]
    schema_: dict[str, Any] = Field(alias="schema", description="The label schema the model was trained on.")
    params: dict[str, Any]
    training: dict[str, Any] = Field(description="What training recorded (time, dev scores by epoch).")
    evaluation: dict[str, Any] | None = Field(
        default=None,
        description="Scores by split ({'dev': {...}, 'test': {...}}, each with a 'source'): from `socialens "
        "train`, the bench cell's metrics.json, or an encoder's best dev macro-F1; null when none was recorded.",
    )
    runtime: str | None = Field(
        default=None,
        description="What runs the model: onnx-int8-dynamic, onnx-int8-blockwise, torch, sklearn, llama.cpp "
        "or openai-compatible.",
    )
    versions: dict[str, str]
    limits: ServingLimits
    batching: BatchingStats

    model_config = ConfigDict(populate_by_name=True, serialize_by_alias=True)


class ErrorResponse(BaseModel):
    error: str = Field(description="One line naming the field (and index) and what was expected.")
    detail: list[dict[str, Any]] | None = None


class Entity(BaseModel):
    """One entity found in a text, with its character offsets: ``text == input[start:end]``."""

    model_config = ConfigDict(extra="allow")

    text: str | None = Field(
        description="The entity's text (null when the model gave no tokens to place it)."
    )
    type: str
    start: int | None = Field(description="Offset of the entity's first character in the input text.")
    end: int | None = Field(description="Offset just past its last character.")


# How the OpenAPI spec types a task's response fields, by field name (any JSON value for a field
# not listed here). Every value is null unless the status is ok.
RESPONSE_FIELD_TYPES: dict[str, tuple[Any, str]] = {
    "label": (str | None, "The predicted label."),
    "labels": (list[str] | None, "The predicted labels (none, one or several)."),
    "scores": (dict[str, float] | None, "Per-label probabilities or scores, when the model family has them."),
    "entities": (list[Entity] | None, "The entities found, with character offsets into the text."),
    "tags": (list[str] | None, "One IOB2 tag per token of the text."),
    "summary": (str | None, "The generated summary."),
}


def task_result_model(task: TaskResponse) -> type[BaseModel]:
    """The response item of /v1/predict for a model of ``task``: id, the task's response fields,
    status and error, in that order."""
    fields: dict[str, Any] = {"id": (str, ...)}
    for name in task.fields:
        kind, description = RESPONSE_FIELD_TYPES.get(name, (Any, "Part of the task's answer."))
        fields[name] = (kind, Field(default=None, description=f"{description} Null unless status is ok."))
    fields["status"] = (Literal["ok", "refused", "invalid", "error"], ...)
    fields["error"] = (str | None, None)
    return create_model("PredictResult", __doc__=f"One answer of a {task.task_type} model.", **fields)


def predict_response_model(task: TaskResponse) -> type[BaseModel]:
    result = task_result_model(task)
    return create_model(
        "PredictResponse",
        __doc__=f"The answers of a {task.task_type} model, one per input text.",
        model=(ModelRef, ...),
        task_type=(Literal[task.task_type], Field(description="The served model's task.")),  # type: ignore[valid-type]
        results=(list[result], Field(description="One result per input text, in input order.")),  # type: ignore[valid-type]
    )
