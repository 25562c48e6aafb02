"""The route table and the normalisers, without I/O: no path that resolves can leave ``/v1``, every
listed route resolves to its own template, recorded strings are clean and capped, bodies are read
whatever their content type."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from spendgate.domain.pricing import ModelPrice, batch_price
from spendgate.proxy.normalise import MAX_TOKENS_PER_REQUEST, clean, tokens
from spendgate.proxy.payload import PayloadError, parse
from spendgate.proxy.routes import ROUTES, RouteError, RouteTable

TABLE = RouteTable()
SEGMENT = st.sampled_from(["..", ".", "%2e%2e", "%2E.", "%252e%252e", "..%2f", "%5c", "\\", "", "responses",
                           "resp_1", "models", "files", "x%2fy", "%00", "a.b", "%25", "%"])


@given(st.lists(SEGMENT, min_size=1, max_size=6), st.sampled_from(["GET", "POST", "DELETE", "PUT"]))
def test_no_resolved_path_can_escape(segments: list[str], method: str) -> None:
    """Whatever the segments, a path that resolves is a plain path under the base: no dot segment, no
    encoding, no backslash, no empty segment."""
    try:
        resolved = TABLE.resolve(method, "/v1/" + "/".join(segments))
    except RouteError as exc:
        assert exc.status in (400, 404)
        return
    path = resolved.upstream_path
    assert path.startswith("/") and "%" not in path and "\\" not in path and "//" not in path
    assert not any(part in (".", "..") for part in path.split("/"))


@pytest.mark.parametrize("spec", ROUTES, ids=lambda s: f"{s.method} {s.template}")
def test_every_listed_route_resolves_to_itself(spec) -> None:  # type: ignore[no-untyped-def]
    """Each table entry, ids filled in, resolves to that entry and forwards to the same path."""
    path = spec.template.replace("{id}", "id_1")
    resolved = TABLE.resolve(spec.method, "/v1" + path + "?a=1")
    assert (resolved.spec, resolved.upstream_path, resolved.query) == (spec, path, "a=1")


def test_clean_strips_control_characters_and_caps() -> None:
    """NUL, C0, DEL and C1 characters go; the result is trimmed and capped; empty becomes None."""
    assert clean("a\x00b\x1bc\x7fd\x85e", 100) == "abcde"
    assert clean("x" * 10_000, 200) == "x" * 200
    assert clean("\x00\t ", 10) is None


def test_token_counts_beyond_any_request_are_anomalies() -> None:
    """Plausible counts pass, a missing one is 0, junk and impossible ones are None (the caller estimates)."""
    assert tokens(5200) == 5200 and tokens(MAX_TOKENS_PER_REQUEST) == MAX_TOKENS_PER_REQUEST
    assert tokens(None) == 0 and tokens(0) == 0
    assert tokens("12") is None and tokens(-1) is None and tokens(True) is None and tokens(12.0) is None
    assert tokens(99999999999999999999999) is None


def test_payload_is_json_whatever_the_label_and_multipart_fields_are_read() -> None:
    """A JSON body is read as JSON under any content type; multipart fields give the model and n; a
    repeated field is refused."""
    assert parse(b'{"model": "gpt-5.1", "stream": true}', "json", "text/plain").model == "gpt-5.1"
    form = (b'--b\r\nContent-Disposition: form-data; name="model"\r\n\r\ndall-e-2\r\n'
            b'--b\r\nContent-Disposition: form-data; name="n"\r\n\r\n3\r\n'
            b'--b\r\nContent-Disposition: form-data; name="image"; filename="a.png"\r\n\r\nPNG\r\n--b--\r\n')
    payload = parse(form, "multipart", "multipart/form-data; boundary=b")
    assert (payload.model, payload.n) == ("dall-e-2", 3)
    with pytest.raises(PayloadError):
        parse(form.replace(b'name="n"', b'name="model"'), "multipart", "multipart/form-data; boundary=b")
    with pytest.raises(PayloadError):
        parse(b'{"model": "gpt-5.1", "n": 1000}', "json", "application/json")


def test_batch_price_is_half_of_each_unit_price_exactly() -> None:
    """The batch share applies to each unit price, rounded half-up to whole micro-dollars per 1M tokens."""
    half = batch_price(ModelPrice(1_250_000, 125_000, 10_000_000))
    assert half == ModelPrice(625_000, 62_500, 5_000_000)
    assert batch_price(ModelPrice(5, 3, 1)) == ModelPrice(3, 2, 1)
