"""The model's answer: the JSON Schema it is constrained by, and the checks it must pass.

The schema limits node types, subtypes and parameter names to the catalogue's (which
parameters belong to which type, and their values, are the validator's to check). An
answer is accepted only when it parses, matches the schema, and its definition passes
``loom.workflows.validation.find_problems`` - the validator every save uses. Every problem
comes back with a path (``definition.nodes[2].parameters.url``) for the repair prompt.
Nothing in an answer is ever executed here.
"""

from __future__ import annotations

import json
from functools import cache
from typing import Any

from jsonschema import Draft202012Validator

from loom.nodes.registry import all_specs
from loom.workflows.definition import NODE_ID_PATTERN, NodeType
from loom.workflows.validation import find_problems, json_path

# An answer longer than this is not read (a definition is at most 2 MB; a draft is small).
MAX_ANSWER_CHARS = 200_000
MAX_TEXT = 4000
MAX_ITEMS = 20
# A draft is read by a person: a few dozen nodes at most (saved definitions may have more).
MAX_NODES = 50


def _node() -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {
            "id": {"type": "string", "pattern": NODE_ID_PATTERN},
            "type": {"type": "string", "enum": [t.value for t in NodeType]},
            # Every subtype some node type has: a small model cannot wander off the catalogue.
            "subtype": {"type": "string", "enum": sorted({s.subtype for s in all_specs()})},
            "name": {"type": "string", "maxLength": 200},
            # Only names some node type has, each once: a small model cannot loop on keys.
            "parameters": {
                "type": "object",
                "properties": {name: {} for name in _parameter_names()},
                "additionalProperties": False,
            },
            "retry": {"type": "object"},
            "timeout_seconds": {"type": "number"},
            "on_error": {"type": "string", "enum": ["fail", "continue", "route"]},
            "position": {"type": "object"},
        },
        "required": ["id", "type", "subtype"],
        "additionalProperties": False,
    }


def _parameter_names() -> list[str]:
    return sorted(
        {
            name
            for spec in all_specs()
            for name in spec.parameters.model_json_schema().get("properties", {})
        }
    )


_EDGE = {
    "type": "object",
    "properties": {
        "from": {"type": "string"},
        "to": {"type": "string"},
        "port": {"type": "string"},
        "condition": {"type": "string"},
    },
    "required": ["from", "to"],
    "additionalProperties": False,
}
_GAP = {
    "type": "object",
    "properties": {
        "kind": {"type": "string", "enum": ["capability", "agent", "credential", "workflow"]},
        "node_id": {"type": "string"},
        "what": {"type": "string", "maxLength": MAX_TEXT},
        "next_step": {"type": "string", "maxLength": MAX_TEXT},
    },
    "required": ["kind", "what", "next_step"],
}


@cache
def draft_schema() -> dict[str, Any]:
    """What the model must answer with (built on first use: it reads the node registry)."""
    return {
        "type": "object",
        "properties": {
            "definition": {
                "type": "object",
                "properties": {
                    "name": {"type": "string", "minLength": 1, "maxLength": 200},
                    "description": {"type": "string", "maxLength": 10_000},
                    "nodes": {
                        "type": "array",
                        "items": _node(),
                        "minItems": 1,
                        "maxItems": MAX_NODES,
                    },
                    "edges": {"type": "array", "items": _EDGE, "maxItems": MAX_NODES * 2},
                },
                "required": ["name", "nodes", "edges"],
            },
            "explanation": {"type": "string", "maxLength": MAX_TEXT},
            "questions": {
                "type": "array",
                "items": {"type": "string", "maxLength": MAX_TEXT},
                "maxItems": MAX_ITEMS,
            },
            "gaps": {"type": "array", "items": _GAP, "maxItems": MAX_ITEMS},
        },
        "required": ["definition", "explanation", "questions", "gaps"],
        "additionalProperties": False,
    }


@cache
def explain_schema() -> dict[str, Any]:
    """The answer to "why did this run fail": a cause, and the fixed workflow as a draft."""
    base = draft_schema()
    return {
        **base,
        "properties": {
            "cause": {"type": "string", "minLength": 1, "maxLength": MAX_TEXT},
            **base["properties"],
        },
        "required": ["cause", *base["required"]],
    }


def response_format(schema: dict[str, Any], name: str) -> dict[str, Any]:
    return {"type": "json_schema", "json_schema": {"name": name, "schema": schema}}


def parse_answer(text: str, schema: dict[str, Any]) -> tuple[Any, list[dict[str, str]]]:
    """The JSON value in ``text`` if it parses and matches ``schema``; else every problem,
    each with a path."""
    if len(text) > MAX_ANSWER_CHARS:
        return None, [_problem("", "too_large", f"The answer is over {MAX_ANSWER_CHARS} chars.")]
    try:
        value = json.loads(unfenced(text))
    except (json.JSONDecodeError, RecursionError) as exc:
        reason = exc.msg if isinstance(exc, json.JSONDecodeError) else "nested too deeply"
        return None, [
            _problem("", "invalid_json", f"The answer is not one JSON object ({reason}).")
        ]
    shape = [
        _problem(_path(error.absolute_path), "schema", error.message)
        for error in Draft202012Validator(schema).iter_errors(value)
    ]
    return (None, shape[: MAX_ITEMS * 2]) if shape else (value, [])


def check_definition(raw: Any) -> tuple[dict[str, Any] | None, list[dict[str, str]]]:
    """The definition as saves store it, or the validator's problems under ``definition``."""
    definition, problems = find_problems(raw)
    if definition is None:
        return None, [_problem(_under_definition(p.path), p.code, p.message) for p in problems]
    return definition.to_json(), []


def unfenced(text: str) -> str:
    """Small models wrap JSON in a Markdown fence despite being asked not to."""
    stripped = text.strip()
    if stripped.startswith("```"):
        stripped = stripped.split("\n", 1)[1] if "\n" in stripped else ""
        stripped = stripped.rsplit("```", 1)[0]
    return stripped.strip()


def _problem(path: str, code: str, message: str) -> dict[str, str]:
    return {"path": path, "code": code, "message": message}


def _path(parts: Any) -> str:
    return json_path("", *[p if isinstance(p, int) else str(p) for p in parts])


def _under_definition(path: str) -> str:
    """A validator path, re-rooted under the answer's ``definition``."""
    if not path:
        return "definition"
    return f"definition{path}" if path.startswith("[") else f"definition.{path}"
