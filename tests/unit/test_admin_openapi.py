"""The admin API's OpenAPI document and token check, without a server."""

from __future__ import annotations

import json
from typing import Any

from spendgate.admin.app import operations
from spendgate.admin.middleware import token_matches
from spendgate.admin.openapi import document


def _refs(node: Any) -> set[str]:
    if isinstance(node, dict):
        found = {node["$ref"]} if isinstance(node.get("$ref"), str) else set()
        return found.union(*(_refs(v) for v in node.values()))
    if isinstance(node, list):
        return set().union(*(_refs(v) for v in node))
    return set()


def test_the_document_is_openapi_3_1_with_unique_ids_and_resolvable_refs() -> None:
    """operationIds are unique, every $ref resolves to a component, path parameters are declared."""
    doc = document(operations())
    assert doc["openapi"] == "3.1.0"
    ids = [spec["operationId"] for ops in doc["paths"].values() for spec in ops.values()]
    assert len(ids) == len(set(ids)) == len(operations())
    components = doc["components"]["schemas"]
    for ref in _refs(doc):
        assert ref.startswith("#/components/schemas/") and ref.rsplit("/", 1)[1] in components, ref
    for path, ops in doc["paths"].items():
        for spec in ops.values():
            declared = {p["name"] for p in spec["parameters"] if p["in"] == "path"}
            assert declared == {seg[1:-1] for seg in path.split("/") if seg.startswith("{")}, path
    json.dumps(doc)


def test_money_in_documented_responses_is_integer_micros() -> None:
    """No documented response field named for money is a number type other than integer."""
    components = document(operations())["components"]["schemas"]
    for name, schema in components.items():
        for field, spec in schema.get("properties", {}).items():
            if field.endswith("_micros"):
                types = {s.get("type") for s in spec.get("anyOf", [spec])}
                assert types <= {"integer", "null"}, (name, field)


def test_the_token_check_refuses_everything_but_the_exact_token() -> None:
    """Only the exact admin token matches; an unset token matches nothing, not even an empty string."""
    assert token_matches("t0ken", "t0ken")
    assert not token_matches("t0ken ", "t0ken") and not token_matches("T0KEN", "t0ken")
    assert not token_matches("", None) and not token_matches("", "")
    assert not token_matches("sk-sg-abc", "t0ken")
