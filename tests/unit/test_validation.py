"""Validation on save: every problem at once, each at the path where it is."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from loom.errors import ValidationFailed
from loom.nodes.base import NodeSpec, ParametersModel
from loom.nodes.registry import get_spec as registry_spec
from loom.workflows import validation
from loom.workflows.definition import MAX_DEFINITION_BYTES, NodeType, WorkflowDefinition
from loom.workflows.validation import (
    MAX_DEPTH,
    Problem,
    find_problems,
    parse_json,
    validate_definition,
)

Raw = dict[str, Any]


def trigger(node_id: str = "start") -> Raw:
    return {"id": node_id, "type": "TRIGGER", "subtype": "MANUAL"}


def node(node_id: str, subtype: str, node_type: str = "FLOW", **parameters: Any) -> Raw:
    return {"id": node_id, "type": node_type, "subtype": subtype, "parameters": parameters}


def transform(node_id: str, value: Any = "{% $input %}") -> Raw:
    return node(node_id, "TRANSFORM", "ACTION", value=value)


def edge(source: str, target: str, port: str | None = None, **extra: Any) -> Raw:
    out: Raw = {"from": source, "to": target, **extra}
    if port is not None:
        out["port"] = port
    return out


def definition(nodes: list[Any], edges: list[Any] | None = None, **extra: Any) -> Raw:
    return {"name": "test", "nodes": nodes, "edges": edges or [], **extra}


def found(raw: Any) -> list[tuple[str, str]]:
    parsed, problems = find_problems(raw)
    assert (parsed is None) == bool(problems)
    return [(p.path, p.code) for p in problems]


def only(raw: Any, code: str) -> list[Problem]:
    return [p for p in find_problems(raw)[1] if p.code == code]


def chain(count: int) -> Raw:
    nodes = [trigger("n0")] + [
        transform(f"n{i}", {"i": i, "x": "{% $input.x %}"}) for i in range(1, count)
    ]
    return definition(nodes, [edge(f"n{i}", f"n{i + 1}") for i in range(count - 1)])


LOOP_BODY = definition(
    [trigger("item"), transform("double", "{% $input.item * 2 %}")], [edge("item", "double")]
)
del LOOP_BODY["name"]

VALID = {
    "if": definition(
        [
            trigger(),
            node("check", "IF", condition="{% $input.n > 1 %}"),
            transform("big"),
            transform("small"),
        ],
        [edge("start", "check"), edge("check", "big", "true"), edge("check", "small", "false")],
    ),
    "switch": definition(
        [
            trigger(),
            node(
                "route",
                "SWITCH",
                value="{% $input.kind %}",
                cases=[{"port": "a", "equals": "A"}, {"port": "b", "equals": {"x": [1]}}],
            ),
            transform("on_a"),
            transform("on_b"),
            transform("other"),
        ],
        [
            edge("start", "route"),
            edge("route", "on_a", "a"),
            edge("route", "on_b", "b"),
            edge("route", "other", "default"),
        ],
    ),
    "merge": definition(
        [
            trigger(),
            transform("left"),
            transform("right"),
            node("join", "MERGE", mode="first", output="list"),
        ],
        [
            edge("start", "left"),
            edge("start", "right"),
            edge("left", "join"),
            edge("right", "join"),
        ],
    ),
    "wait": definition(
        [
            trigger(),
            node("pause", "WAIT", seconds=30),
            node("until", "WAIT", until="2030-01-01T09:00:00Z"),
        ],
        [edge("start", "pause"), edge("pause", "until")],
    ),
    "filter": definition(
        [trigger(), node("keep", "FILTER", items="{% $input.rows %}", condition="{% $item > 2 %}")],
        [edge("start", "keep")],
    ),
    "loop": definition(
        [trigger(), node("each", "LOOP", items=[1, 2, 3], concurrency=2, body=LOOP_BODY)],
        [edge("start", "each")],
    ),
    "edge condition and error route": definition(
        [
            trigger(),
            {**transform("risky"), "on_error": "route", "retry": {"max_attempts": 3}},
            transform("recover"),
            transform("next"),
        ],
        [
            edge("start", "risky", condition="{% $input.go %}"),
            edge("risky", "recover", "error"),
            edge("risky", "next"),
        ],
        description="all the optional parts",
    ),
}


@pytest.mark.parametrize("raw", VALID.values(), ids=VALID.keys())
def test_a_valid_definition_passes(raw: Raw) -> None:
    parsed = validate_definition(raw)
    assert isinstance(parsed, WorkflowDefinition)
    assert [n.id for n in parsed.nodes] == [n["id"] for n in raw["nodes"]]
    assert len(parsed.edges) == len(raw["edges"])
    assert validate_definition(parsed.to_json()) == parsed


def test_every_problem_is_reported_at_once() -> None:
    raw = definition(
        [
            trigger(),
            {**transform("shape"), "retry": {"max_attempts": 0}},
            node("check", "IFF"),
            {**transform("shape"), "colour": "red"},
            node("pause", "WAIT", seconds="soon", extra=1),
            transform("broken", {"title": ["fine", "{% 1 + %}"]}),
        ],
        [
            edge("start", "shape"),
            edge("start", "ghost"),
            edge("shape", "broken", "sideways"),
            edge("shape", "broken", "sideways"),
            {"from": "start", "too": "pause"},
        ],
        name="",
        owner="me",
    )
    assert sorted(found(raw)) == sorted(
        [
            ("name", "invalid_field"),
            ("owner", "unknown_field"),
            ("nodes[1].retry.max_attempts", "invalid_field"),
            ("nodes[2].subtype", "unknown_node_type"),
            ("nodes[3].colour", "unknown_field"),
            ("nodes[3].id", "duplicate_node_id"),
            ("nodes[4].parameters.seconds", "invalid_parameter"),
            ("nodes[4].parameters.extra", "unknown_parameter"),
            ("nodes[5].parameters.value.title[1]", "expression_syntax"),
            ("edges[1].to", "dangling_edge"),
            ("edges[2].port", "unknown_port"),
            ("edges[3].port", "unknown_port"),
            ("edges[3]", "duplicate_edge"),
            ("edges[4].to", "missing_field"),
            ("edges[4].too", "unknown_field"),
            ("nodes[2]", "unreachable_node"),
            ("nodes[4]", "unreachable_node"),
        ]
    )


def test_validate_definition_raises_with_every_problem_in_details() -> None:
    raw = definition([transform("a"), transform("a")])
    with pytest.raises(ValidationFailed) as caught:
        validate_definition(raw)
    error = caught.value
    assert error.message == "The workflow definition has 2 problems."
    assert error.solution
    assert [(d["path"], d["code"]) for d in error.details] == [
        ("nodes[1].id", "duplicate_node_id"),
        ("nodes", "no_trigger"),
    ]
    assert all(set(d) == {"path", "code", "message"} for d in error.details)
    assert error.to_dict()["code"] == "validation_failed"


def test_messages_name_the_node() -> None:
    raw = definition(
        [trigger(), node("check", "IFF"), node("fake", "X", "FOO")],
        [edge("start", "check"), edge("start", "fake")],
    )
    subtype, node_type = only(raw, "unknown_node_type")
    assert "Node 'check'" in subtype.message
    assert "FILTER, IF, LOOP, MERGE, SWITCH, WAIT" in subtype.message
    assert node_type.path == "nodes[2].type"
    assert "'FOO'" in node_type.message and "TRIGGER" in node_type.message


def test_a_cycle_is_named() -> None:
    raw = definition(
        [trigger(), transform("a"), transform("b"), transform("c"), transform("d")],
        [
            edge("start", "a"),
            edge("a", "b"),
            edge("b", "c"),
            edge("c", "a"),
            edge("c", "d"),
            edge("d", "d"),
        ],
    )
    assert found(raw) == [("edges", "cycle"), ("edges", "cycle")]
    loop, self_loop = only(raw, "cycle")
    assert "'a' -> 'b' -> 'c' -> 'a'" in loop.message
    assert "'d'" in self_loop.message and "itself" in self_loop.message


def test_a_long_cycle_message_stays_short() -> None:
    raw = chain(200)
    raw["edges"].append(edge("n199", "n1"))
    (cycle,) = only(raw, "cycle")
    assert cycle.message.startswith("Nodes 'n1' -> 'n2'")
    assert "(189 more) -> 'n1'" in cycle.message
    assert len(cycle.message) < 300


def test_nodes_no_trigger_reaches_are_reported() -> None:
    raw = definition(
        [trigger(), transform("linked"), transform("island"), transform("after_island")],
        [edge("start", "linked"), edge("island", "after_island")],
    )
    assert found(raw) == [("nodes[2]", "unreachable_node"), ("nodes[3]", "unreachable_node")]
    assert "'island'" in only(raw, "unreachable_node")[0].message


def test_a_definition_needs_a_trigger() -> None:
    raw = definition([transform("a"), transform("b")], [edge("a", "b")])
    assert found(raw) == [("nodes", "no_trigger")]
    assert found(definition([])) == [("nodes", "no_trigger")]


def test_edges_into_a_trigger_are_refused() -> None:
    raw = definition(
        [trigger(), trigger("other"), transform("a")], [edge("start", "a"), edge("a", "other")]
    )
    assert found(raw) == [("edges[1].to", "edge_into_trigger")]


def test_unknown_port_lists_the_valid_ones() -> None:
    raw = VALID["switch"] | {"edges": [*VALID["switch"]["edges"], edge("route", "other", "c")]}
    (problem,) = only(raw, "unknown_port")
    assert problem.path == "edges[4].port"
    assert "'route'" in problem.message and "a, b, default" in problem.message


def test_error_port_exists_only_when_errors_are_routed() -> None:
    nodes = [trigger(), transform("risky"), transform("recover")]
    edges = [edge("start", "risky"), edge("risky", "recover", "error")]
    assert found(definition(nodes, edges)) == [("edges[1].port", "unknown_port")]
    nodes[1] = {**nodes[1], "on_error": "continue"}
    assert found(definition(nodes, edges)) == [("edges[1].port", "unknown_port")]
    nodes[1] = {**nodes[1], "on_error": "route"}
    assert found(definition(nodes, edges)) == []
    assert found(definition(nodes, edges[:1])) == [("nodes[2]", "unreachable_node")]


def test_the_same_pair_by_different_ports_is_not_a_duplicate() -> None:
    raw = definition(
        [trigger(), node("check", "IF", condition=True), transform("a")],
        [edge("start", "check"), edge("check", "a", "true"), edge("check", "a", "false")],
    )
    assert found(raw) == []


def test_expression_syntax_is_checked_at_its_exact_path() -> None:
    raw = definition(
        [
            trigger(),
            transform("shape", {"title": {"parts": ["ok {% $input.a %}", "{% $nodes.( %}"]}}),
            transform("spaced", {"a b": "{%  %}"}),
        ],
        [edge("start", "shape"), edge("shape", "spaced", condition="{% $input.x = = 1 %}")],
    )
    assert found(raw) == [
        ("nodes[1].parameters.value.title.parts[1]", "expression_syntax"),
        ('nodes[2].parameters.value["a b"]', "expression_syntax"),
        ("edges[1].condition", "expression_syntax"),
    ]
    first = only(raw, "expression_syntax")[0]
    assert "Node 'shape'" in first.message


@pytest.mark.parametrize("condition", ["true", "{% $input.a %} and {% $input.b %}", "x {% 1 %}"])
def test_an_edge_condition_must_be_one_expression(condition: str) -> None:
    raw = definition([trigger(), transform("a")], [edge("start", "a", condition=condition)])
    assert found(raw) == [("edges[0].condition", "invalid_field")]


def test_expressions_stand_in_for_any_type() -> None:
    loop = node(
        "each", "LOOP", items="{% $input.rows %}", concurrency="{% $input.n %}", body=LOOP_BODY
    )
    wait = node("pause", "WAIT", seconds="{% $input.delay %}")
    switch = node("route", "SWITCH", value=1, cases="{% $input.cases %}")
    raw = definition(
        [trigger(), loop, wait, switch, transform("x")],
        [
            edge("start", "each"),
            edge("each", "pause"),
            edge("pause", "route"),
            edge("route", "x", "computed"),  # ports come from an expression: unknowable now
        ],
    )
    assert found(raw) == []


def test_plain_values_are_type_checked_and_presence_always() -> None:
    raw = definition(
        [
            trigger(),
            node("each", "LOOP", concurrency="abc", body=LOOP_BODY),
            node("other", "LOOP", concurrency="{% $input.n %}", body=LOOP_BODY),
            node("check", "IF", condition="{% $input.ok %}", typo="{% 1 %}"),
        ],
        [edge("start", "each"), edge("start", "other"), edge("start", "check")],
    )
    assert found(raw) == [
        ("nodes[1].parameters.items", "missing_parameter"),
        ("nodes[1].parameters.concurrency", "invalid_parameter"),
        ("nodes[2].parameters.items", "missing_parameter"),
        ("nodes[3].parameters.typo", "unknown_parameter"),
    ]
    missing = only(raw, "missing_parameter")[0]
    assert missing.message == "Node 'each' needs the parameter `items`."
    assert "condition" in only(raw, "unknown_parameter")[0].message


def test_nested_parameter_errors_point_inside() -> None:
    cases = [{"port": "a", "equals": 1}, {"port": "9lives", "equals": "{% 2 %}"}, {"equals": 3}]
    raw = definition(
        [trigger(), node("route", "SWITCH", value=1, cases=cases)], [edge("start", "route")]
    )
    assert found(raw) == [
        ("nodes[1].parameters.cases[1].port", "invalid_parameter"),
        ("nodes[1].parameters.cases[2].port", "missing_parameter"),
    ]


def test_union_member_tags_are_not_part_of_paths(monkeypatch: pytest.MonkeyPatch) -> None:
    class Either(ParametersModel):
        size: int | list[int]

    spec = NodeSpec(type=NodeType.ACTION, subtype="EITHER", description="", parameters=Either)

    def get_spec(node_type: NodeType | str, subtype: str) -> NodeSpec | None:
        return spec if subtype == "EITHER" else registry_spec(node_type, subtype)

    monkeypatch.setattr(validation, "get_spec", get_spec)
    raw = definition(
        [
            trigger(),
            node("a", "EITHER", "ACTION", size="big"),
            node("b", "EITHER", "ACTION", size=[1, "x"]),
        ],
        [edge("start", "a"), edge("start", "b")],
    )
    assert found(raw) == [
        ("nodes[1].parameters.size", "invalid_parameter"),
        ("nodes[2].parameters.size[1]", "invalid_parameter"),
    ]


def test_loop_body_problems_are_prefixed() -> None:
    body = {
        "nodes": [trigger("item"), transform("double", "{% $input.item * %}"), node("w", "WAIT")],
        "edges": [edge("item", "double"), edge("double", "nowhere")],
        "nmae": "typo",
    }
    raw = definition(
        [trigger(), node("each", "LOOP", items=[1], body=body)], [edge("start", "each")]
    )
    prefix = "nodes[1].parameters.body."
    assert found(raw) == [
        (prefix + "nmae", "unknown_field"),
        (prefix + "nodes[1].parameters.value", "expression_syntax"),
        (prefix + "nodes[2].parameters", "invalid_parameter"),
        (prefix + "edges[1].to", "dangling_edge"),
        (prefix + "nodes[2]", "unreachable_node"),
    ]


def test_a_loop_body_needs_a_trigger_and_can_nest() -> None:
    inner = {"nodes": [transform("lonely")]}
    middle = {
        "nodes": [trigger("t"), node("inner", "LOOP", items=[1], body=inner)],
        "edges": [edge("t", "inner")],
    }
    raw = definition(
        [trigger(), node("outer", "LOOP", items=[1], body=middle)], [edge("start", "outer")]
    )
    assert found(raw) == [("nodes[1].parameters.body.nodes[1].parameters.body.nodes", "no_trigger")]
    assert "The `body` of node 'inner'" in only(raw, "no_trigger")[0].message


@pytest.mark.parametrize(
    ("body", "code"), [("{% $input.body %}", "invalid_parameter"), (5, "invalid_parameter")]
)
def test_a_loop_body_must_be_a_definition(body: Any, code: str) -> None:
    raw = definition(
        [trigger(), node("each", "LOOP", items=[1], body=body)], [edge("start", "each")]
    )
    assert found(raw) == [("nodes[1].parameters.body", code)]


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (None, [("", "invalid_field")]),
        ([], [("", "invalid_field")]),
        ({"name": "x"}, [("nodes", "missing_field")]),
        (
            {"name": "x", "nodes": {}, "edges": "no"},
            [("nodes", "invalid_field"), ("edges", "invalid_field")],
        ),
        (
            definition(
                [trigger(), 7, {**transform("a"), "parameters": []}], [edge("start", "a"), None]
            ),
            [
                ("nodes[1]", "invalid_field"),
                ("nodes[2].parameters", "invalid_field"),
                ("edges[1]", "invalid_field"),
            ],
        ),
        (
            definition([{"type": "TRIGGER"}]),
            [("nodes[0].id", "missing_field"), ("nodes[0].subtype", "missing_field")],
        ),
        ({"name": "x", "nodes": [], "bad": float("nan")}, [("", "invalid_json")]),
        ({"name": "x", "nodes": [], "bad": object()}, [("", "invalid_json")]),
    ],
)
def test_any_input_gives_problems_not_exceptions(raw: Any, expected: list[tuple[str, str]]) -> None:
    assert found(raw) == expected


def nested(value: Any, depth: int) -> Any:
    for _ in range(depth):
        value = [value]
    return value


def test_deep_values_are_checked_all_the_way_down() -> None:
    depth = MAX_DEPTH - 3  # under the document, `nodes` and the node's `parameters`
    deep = transform("deep", nested("{% 1 + %}", depth))
    raw = definition([trigger(), deep], [edge("start", "deep")])
    assert found(raw) == [("nodes[1].parameters.value" + "[0]" * depth, "expression_syntax")]


@pytest.mark.parametrize("depth", [MAX_DEPTH - 2, 10_000])
def test_nesting_too_deep_is_a_problem_not_a_crash(depth: int) -> None:
    raw = definition([trigger(), transform("deep", nested(1, depth))], [edge("start", "deep")])
    limit = "nodes[1].parameters.value" + "[0]" * (MAX_DEPTH - 3)
    assert found(raw) == [(limit, "too_large")]
    assert f"deeper than {MAX_DEPTH} levels" in find_problems(raw)[1][0].message


def test_a_cyclic_value_is_a_problem_not_a_hang() -> None:
    loop: list[Any] = []
    loop.append(loop)
    assert found(definition([trigger(), transform("a", loop)]))[0][1] == "too_large"


def test_malformed_json_gives_line_and_column() -> None:
    with pytest.raises(ValidationFailed) as caught:
        parse_json('{\n  "name": "x",\n  "nodes": [}\n')
    (detail,) = caught.value.details
    assert detail["code"] == "invalid_json"
    assert detail["path"] == ""
    assert "line 3, column 13" in detail["message"]


@pytest.mark.parametrize("text", ['{"a": NaN}', b"\xff\xfe\x00", "[" * 100_000])
def test_other_bad_json_is_invalid_json(text: str | bytes) -> None:
    with pytest.raises(ValidationFailed) as caught:
        parse_json(text)
    assert [d["code"] for d in caught.value.details] == ["invalid_json"]


def test_json_text_parses() -> None:
    raw = VALID["loop"]
    assert parse_json(json.dumps(raw)) == raw
    assert parse_json(json.dumps(raw).encode()) == raw


def test_oversized_text_is_refused_before_parsing() -> None:
    text = '{"name": "' + "é" * (MAX_DEFINITION_BYTES // 2) + '"}'  # under the limit in chars
    with pytest.raises(ValidationFailed) as caught:
        parse_json(text)
    (detail,) = caught.value.details
    assert detail["code"] == "too_large"
    assert f"{MAX_DEFINITION_BYTES:,}" in detail["message"]


def test_an_oversized_document_is_too_large() -> None:
    raw = definition([trigger(), transform("big", "x" * MAX_DEFINITION_BYTES)])
    assert found(raw) == [("", "too_large")]


def test_ten_thousand_nodes_are_refused_quickly() -> None:
    raw = chain(10_000)
    started = time.perf_counter()
    parsed, problems = find_problems(raw)
    elapsed = time.perf_counter() - started
    assert elapsed < 1.0
    assert parsed is None
    assert [(p.path, p.code) for p in problems] == [("nodes", "too_large"), ("edges", "too_large")]
    assert problems[0].message == "The definition has 10,000 nodes; the limit is 1,000."


def test_a_thousand_node_chain_validates() -> None:
    raw = chain(1000)
    parsed = validate_definition(raw)
    assert len(parsed.nodes) == 1000
    assert len(parsed.edges) == 999


def test_problem_to_dict() -> None:
    assert Problem("nodes", "no_trigger", "No trigger.").to_dict() == {
        "path": "nodes",
        "code": "no_trigger",
        "message": "No trigger.",
    }


def test_json_paths_quote_keys_that_are_not_identifiers() -> None:
    assert validation.json_path("", "nodes", 3, "parameters", "url") == "nodes[3].parameters.url"
    assert validation.json_path("p", "a b", "é", "x.y") == 'p["a b"]["é"]["x.y"]'
    assert validation.json_path("p", "ok\n") == 'p["ok\\n"]'
