"""The builder's evaluation set (``builder_cases.json``) and how a draft is scored.

Each case names the node types (``TYPE.SUBTYPE``) a workflow for its description needs
and the edges between them, as pairs of types: ids are the model's choice, so structure is
compared by type. A draft matches when it has every expected type and, for every expected
edge, an edge between nodes of those types. More nodes than expected are fine (a transform
to shape data, a merge), missing ones are not.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CASES_FILE = Path(__file__).with_name("builder_cases.json")


@dataclass(frozen=True)
class Case:
    id: str
    description: str
    node_types: tuple[str, ...]
    edges: tuple[tuple[str, str], ...]


def load_cases(path: Path = CASES_FILE) -> list[Case]:
    return [
        Case(
            id=raw["id"],
            description=raw["description"],
            node_types=tuple(raw["node_types"]),
            edges=tuple((a, b) for a, b in raw["edges"]),
        )
        for raw in json.loads(path.read_text())
    ]


def structure_matches(definition: dict[str, Any], case: Case) -> bool:
    types = {n["id"]: f"{n['type']}.{n['subtype']}" for n in definition["nodes"]}
    edges = {(types.get(e["from"]), types.get(e["to"])) for e in definition.get("edges", [])}
    return set(case.node_types) <= set(types.values()) and all(e in edges for e in case.edges)
