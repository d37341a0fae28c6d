"""What an agent answers: text, or JSON matching a schema."""

from __future__ import annotations

from typing import Any, Literal

from jsonschema import Draft202012Validator, SchemaError
from pydantic import Field, field_validator

from loom.nodes.base import ParametersModel


class TextOutput(ParametersModel):
    type: Literal["text"] = "text"


class JsonOutput(ParametersModel):
    type: Literal["json"]
    json_schema: dict[str, Any] = Field(description="JSON Schema the answer must match.")

    @field_validator("json_schema")
    @classmethod
    def _valid(cls, schema: dict[str, Any]) -> dict[str, Any]:
        try:
            Draft202012Validator.check_schema(schema)
        except SchemaError as exc:
            raise ValueError(f"json_schema is not a valid JSON Schema: {exc.message}") from None
        return schema
