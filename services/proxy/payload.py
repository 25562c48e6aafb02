"""Reading a request body once, whatever its declared content type, for what metering needs.

JSON routes: the body must be a JSON object, decoded by msgspec once (invalid UTF-8, bad JSON and
nesting deeper than msgspec's recursion limit are a 400, never a 500). Multipart routes: the form fields
(``model``, ``n``) are read from the parts, the file parts are skipped. A field that appears twice is
refused: the provider and the meter must read the same value.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgspec

from spendgate.proxy.routes import BodyKind


class _Fields(msgspec.Struct):
    model: Any = None
    stream: Any = None
    prompt_cache_key: Any = None
    stream_options: Any = None
    n: Any = None
    input_file_id: Any = None


_decoder = msgspec.json.Decoder(_Fields)


@dataclass(frozen=True, slots=True)
class Payload:
    model: str | None = None
    stream: bool = False
    prompt_cache_key: str | None = None
    include_usage: bool = False
    n: int = 1
    input_file_id: Any = None


class PayloadError(Exception):
    def __init__(self, message: str, code: str = "invalid_request_body") -> None:
        super().__init__(message)
        self.message, self.code = message, code


EMPTY = Payload()


def parse(body: bytes, kind: BodyKind, content_type: str) -> Payload:
    if not body or kind == "none":
        return EMPTY
    if kind == "json":
        return _json(body)
    return _multipart(body, content_type)


def _json(body: bytes) -> Payload:
    try:
        if not body.isascii():
            body.decode()  # msgspec skips the fields it is not asked for without checking their UTF-8
        doc = _decoder.decode(body)
    except (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError, RecursionError) as exc:
        raise PayloadError("We could not parse the JSON body of your request (it must be a UTF-8 JSON object: "
                           f"{str(exc)[:200]}).", "invalid_json") from exc
    if doc.model is not None and not isinstance(doc.model, str):
        raise PayloadError("'model' must be a string.")
    options = doc.stream_options if isinstance(doc.stream_options, dict) else {}
    return Payload(
        model=doc.model or None, stream=doc.stream is True,
        prompt_cache_key=doc.prompt_cache_key if isinstance(doc.prompt_cache_key, str) else None,
        include_usage=options.get("include_usage") is True, n=_count(doc.n), input_file_id=doc.input_file_id,
    )


def _count(value: Any) -> int:
    if value is None:
        return 1
    if isinstance(value, str) and value.isdigit():
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= 128:
        raise PayloadError("'n' must be an integer between 1 and 128.")
    return value


def _boundary(content_type: str) -> bytes:
    for part in content_type.split(";")[1:]:
        name, _, value = part.strip().partition("=")
        if name.lower() == "boundary" and value:
            return value.strip('"').encode("latin-1", errors="replace")
    raise PayloadError("This route takes a multipart/form-data body with a boundary.")


_WANTED = frozenset({"model", "n", "stream"})


def _multipart(body: bytes, content_type: str) -> Payload:
    if not content_type.lower().startswith("multipart/form-data"):
        raise PayloadError("This route takes a multipart/form-data body.")
    delimiter = b"--" + _boundary(content_type)
    fields: dict[str, str] = {}
    for part in body.split(delimiter)[1:]:
        if part.startswith(b"--"):
            break
        head, sep, value = part.partition(b"\r\n\r\n")
        if not sep:
            continue
        name = _field_name(head)
        if name is None or name not in _WANTED:
            continue
        if name in fields:
            raise PayloadError(f"The form field {name!r} appears more than once.")
        fields[name] = value.removesuffix(b"\r\n").decode("utf-8", errors="replace")
    return Payload(model=fields.get("model") or None, stream=fields.get("stream") == "true",
                   n=_count(fields.get("n")))


def _field_name(head: bytes) -> str | None:
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() != b"content-disposition":
            continue
        if b"filename=" in value:
            return None
        for param in value.split(b";")[1:]:
            key, _, quoted = param.strip().partition(b"=")
            if key.lower() == b"name":
                return quoted.strip(b'"').decode("utf-8", errors="replace")
    return None
