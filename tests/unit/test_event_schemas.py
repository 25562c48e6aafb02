"""Events and their JSON Schemas in schemas/ must not drift apart."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import msgspec
import pytest

from spendgate.core.schemas import file_name, render
from spendgate.domain import constants
from spendgate.domain.errors import PoisonEventError
from spendgate.domain.events import EVENT_TYPES, decode, decode_expecting, encode
from tests.support.factories import examples, usage_event

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"


def validator(event_type: str) -> jsonschema.Draft202012Validator:
    schema = json.loads((SCHEMAS / file_name(event_type)).read_text())
    return jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker())


@pytest.mark.parametrize("event_type", sorted(EVENT_TYPES))
def test_committed_schema_matches_the_types(event_type: str) -> None:
    """schemas/<type>.schema.json equals what the event types generate (regenerate with the module)."""
    assert (SCHEMAS / file_name(event_type)).read_text() == render(event_type), (
        "schema drifted: run `python -m spendgate.core.schemas schemas`"
    )


def test_every_type_has_a_valid_example() -> None:
    """Each schemas/examples/<type>.json validates against its schema and decodes in the code."""
    for event_type in EVENT_TYPES:
        example = json.loads((SCHEMAS / "examples" / f"{event_type}.json").read_text())
        validator(event_type).validate(example)
        assert decode(json.dumps(example).encode()).type == event_type


def test_events_produced_by_the_code_validate() -> None:
    """What encode() emits for each event type is valid against the committed schema."""
    for data in examples():
        doc = json.loads(encode(data, source="spendgate/test"))
        validator(doc["type"]).validate(doc)
        assert doc["specversion"] == "1.0" and doc["datacontenttype"] == "application/json"


def test_usage_event_carries_every_architecture_field() -> None:
    """The usage event schema lists every field ARCHITECTURE.md's "Events" section asks for."""
    props = json.loads((SCHEMAS / file_name(constants.TYPE_USAGE_RECORDED)).read_text())["$defs"]["UsageRecorded"]
    fields = set(props["properties"])
    assert {"event_id", "occurred_at", "proxy_instance", "key_id", "developer", "team", "cost_center",
            "session_id", "turn_id", "repo", "client", "model_requested", "model_used", "route_reason", "stage",
            "status", "input_tokens", "cached_tokens", "output_tokens", "reasoning_tokens", "usage_source",
            "prices", "cost_micros", "retry", "latency_ms", "ttfb_ms"} <= fields


def test_round_trip_and_poison() -> None:
    """encode → decode gives the same event; garbage, unknown types and versions are poison."""
    ev = usage_event()
    assert decode(encode(ev, source="s")).data == ev
    doc = json.loads(encode(ev, source="s"))
    bad_version = {**doc, "data": {**doc["data"], "schema_version": 2}}
    for raw, reason in [(b"not json", "not a CloudEvents"), (json.dumps({**doc, "type": "x.y"}).encode(), "unknown"),
                        (json.dumps(bad_version).encode(), "invalid"),
                        (json.dumps({**doc, "specversion": "0.3"}).encode(), "specversion")]:
        with pytest.raises(PoisonEventError, match=reason):
            decode(raw)


def test_decode_expecting_a_type_answers_as_decode_does() -> None:
    """The ledger's one-parse decode returns what decode returns and refuses what it refuses, with the same
    reason: other types, garbage, other versions, and a document that does not state its specversion (the
    envelope's default must not make it pass)."""
    ev = usage_event()
    doc = json.loads(encode(ev, source="s"))
    budget = next(e for e in examples() if not isinstance(e, type(ev)))
    cases = [encode(ev, source="s"), encode(budget, source="s"), b"not json", b"[]",
             json.dumps({**doc, "type": "x.y"}).encode(), json.dumps({**doc, "specversion": "0.3"}).encode(),
             json.dumps({k: v for k, v in doc.items() if k != "specversion"}).encode(),
             json.dumps({**doc, "data": {**doc["data"], "schema_version": 2}}).encode(),
             json.dumps({**doc, "data": {**doc["data"], "cost_micros": "1"}}).encode()]
    for raw in cases:
        try:
            expected: object = decode(raw)
        except PoisonEventError as exc:
            with pytest.raises(PoisonEventError) as refused:
                decode_expecting(raw, constants.TYPE_USAGE_RECORDED)
            assert refused.value.message == exc.message
            continue
        got = decode_expecting(raw, constants.TYPE_USAGE_RECORDED)
        assert msgspec.structs.asdict(got) == msgspec.structs.asdict(expected)  # type: ignore[arg-type]
