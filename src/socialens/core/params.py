"""The base of every family's and backend's parameter model."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class FamilyParams(BaseModel):
    """Base of each family's hyper-parameter model; unknown fields are errors, not silently ignored."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())
