"""API models: a PredictionRecord becomes a Prediction field for field; ModelInfo keeps 'schema'."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from socialens.core.types import PredictionRecord, Status
from socialens.serving.schemas import ClassifyRequest, Prediction


def test_prediction_from_a_refused_record_keeps_its_status_and_no_label():
    record = PredictionRecord(id="7", gold=None, predicted=None, status=Status.REFUSED, raw_output="I can't")
    prediction = Prediction.from_record(record)
    assert prediction.model_dump() == {
        "id": "7",
        "label": None,
        "probabilities": None,
        "status": "refused",
        "error": None,
    }


def test_prediction_from_an_ok_record_carries_the_probabilities():
    record = PredictionRecord(id="a", gold="x", predicted="y", scores={"x": 0.25, "y": 0.75})
    assert Prediction.from_record(record).probabilities == {"x": 0.25, "y": 0.75}


def test_classify_request_rejects_unknown_fields_and_non_strings():
    with pytest.raises(ValidationError, match="extra"):
        ClassifyRequest.model_validate({"texts": ["a"], "text": "b"})
    with pytest.raises(ValidationError, match="valid string"):
        ClassifyRequest.model_validate({"texts": [1]})
