"""JSON Schemas for every event type, generated from the types in :mod:`spendgate.domain.events`.

``python -m spendgate.core.schemas [DIR]`` writes ``<DIR>/<type>.schema.json`` (default
``schemas/``), and the plain-JSON record of the eval topic; a test fails when the committed files and the
types drift apart.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import msgspec

from spendgate.domain.events import EVENT_TYPES, CloudEvent


def schema_for(event_type: str) -> dict[str, Any]:
    data_cls = EVENT_TYPES[event_type]
    schema: dict[str, Any] = msgspec.json.schema(CloudEvent[data_cls])  # type: ignore[valid-type]
    envelope_name = next(k for k in schema["$defs"] if k.startswith("CloudEvent"))
    envelope = schema["$defs"][envelope_name]
    envelope["properties"]["type"] = {"const": event_type}
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": f"https://spendgate.dev/schemas/{event_type}.schema.json",
        "title": f"{data_cls.__name__} ({event_type})",
        **schema,
    }


EVAL_SCHEMA = "io.spendgate.eval.v1"
"""The ``spendgate.eval.v1`` record: plain JSON (an org's eval system writes it), not a CloudEvent."""


def eval_schema() -> dict[str, Any]:
    from spendgate.domain.outcomes import TurnEvaluation

    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": f"https://spendgate.dev/schemas/{EVAL_SCHEMA}.schema.json",
        "title": f"TurnEvaluation ({EVAL_SCHEMA}, topic spendgate.eval.v1)",
        **msgspec.json.schema(TurnEvaluation),
    }


def render_eval() -> str:
    return json.dumps(eval_schema(), indent=2, sort_keys=True) + "\n"


def file_name(event_type: str) -> str:
    return f"{event_type}.schema.json"


def render(event_type: str) -> str:
    return json.dumps(schema_for(event_type), indent=2, sort_keys=True) + "\n"


def main(argv: list[str]) -> None:
    out = Path(argv[0]) if argv else Path("schemas")
    out.mkdir(parents=True, exist_ok=True)
    for event_type in EVENT_TYPES:
        (out / file_name(event_type)).write_text(render(event_type))
        print(out / file_name(event_type))
    (out / file_name(EVAL_SCHEMA)).write_text(render_eval())
    print(out / file_name(EVAL_SCHEMA))


if __name__ == "__main__":
    main(sys.argv[1:])
