"""The ledger's admission check (pure): what it sanitises, what it refuses."""

from __future__ import annotations

import msgspec
import pytest

from spendgate.domain.errors import PoisonEventError
from spendgate.ledger import admission
from spendgate.ledger.admission import MAX_TEXT_BYTES, TEXT_FIELDS, admit, clean_text
from tests.support.factories import usage_event


@pytest.mark.parametrize("name", TEXT_FIELDS)
def test_every_text_field_loses_its_control_characters(name: str) -> None:
    """A NUL, an escape and a C1 character in any free-text field are stripped; nothing else changes."""
    event = msgspec.structs.replace(usage_event(), **{name: "a\x00b\x1b[0m\x85c"})
    admitted = admit(event)
    assert getattr(admitted, name) == "ab[0mc"
    assert msgspec.structs.replace(admitted, **{name: getattr(event, name)}) == event


@pytest.mark.parametrize("name", TEXT_FIELDS)
def test_every_text_field_is_capped_in_utf8_bytes(name: str) -> None:
    """A value longer than MAX_TEXT_BYTES of UTF-8 is cut at a character boundary."""
    admitted = admit(msgspec.structs.replace(usage_event(), **{name: "é" * 1000}))
    assert getattr(admitted, name) == "é" * (MAX_TEXT_BYTES // 2)


def test_a_clean_event_is_returned_as_is() -> None:
    """The common case allocates nothing new."""
    event = usage_event()
    assert admit(event) is event


def test_clean_text_never_splits_a_character() -> None:
    """Cutting inside a four-byte character drops it whole."""
    assert clean_text("a" + "😀" * 200).encode() == ("a" + "😀" * 127).encode()


@pytest.mark.parametrize(("field", "value"), [
    ("output_tokens", 10**23), ("input_tokens", -1), ("cost_micros", 2**63), ("latency_ms", 2**31),
    ("http_status", 1000), ("event_id", "nope"),
])
def test_impossible_values_are_refused_with_the_field_named(field: str, value: object) -> None:
    """A number no request produces (or no column holds) is poison, and the reason names the field."""
    with pytest.raises(PoisonEventError, match=field):
        admit(msgspec.structs.replace(usage_event(), **{field: value}))


def test_a_unit_price_out_of_range_is_refused_by_name() -> None:
    """The prices are checked with the other numbers, and the reason names the one refused."""
    ev = usage_event()
    bad = msgspec.structs.replace(ev, prices=msgspec.structs.replace(ev.prices, output_micros=-1))
    with pytest.raises(PoisonEventError, match=r"prices\.output_micros -1 is outside"):
        admit(bad)


@pytest.mark.parametrize("value", ["é\x85", "\u2028ok\x9b", "日本\x00"])
def test_control_characters_beside_other_non_ascii_text_are_removed(value: str) -> None:
    """Outside printable ASCII the regex decides: C0 and C1 controls go, other characters stay."""
    assert admit(msgspec.structs.replace(usage_event(), repo=value)).repo == value.translate(
        {c: None for c in (0x00, 0x85, 0x9b)})


@pytest.mark.parametrize(("field", "value"), [("ttfb_ms", -1), ("cached_tokens", 10**9 + 1),
                                              ("reasoning_tokens", -5)])
def test_every_number_checked_together_is_still_named_when_refused(field: str, value: int) -> None:
    """The numbers are first checked in groups; one out of range is still refused and named."""
    with pytest.raises(PoisonEventError, match=f"{field} {value} is outside"):
        admit(msgspec.structs.replace(usage_event(), **{field: value}))


@pytest.mark.parametrize("name", ["cache_write_5m_micros", "cache_write_1h_micros", "input_micros"])
def test_optional_and_required_prices_out_of_range_are_refused(name: str) -> None:
    ev = usage_event()
    bad = msgspec.structs.replace(ev, prices=msgspec.structs.replace(ev.prices, **{name: 10**13}))
    with pytest.raises(PoisonEventError, match=rf"prices\.{name} 10000000000000 is outside"):
        admit(bad)


@pytest.mark.parametrize(("name", "high"), [*admission._EVENT_NUMBERS, *(("prices." + n, h) for n, h in
                                                                         admission._PRICE_NUMBERS)])
@pytest.mark.parametrize("past", ["below", "above"])
def test_the_grouped_check_refuses_whatever_the_range_table_refuses(name: str, high: int, past: str) -> None:
    """``_in_range`` restates the bounds of ``_EVENT_NUMBERS`` / ``_PRICE_NUMBERS`` as grouped C calls: every
    number of the tables, one past either end, must still be refused and named (were a bound widened in the
    grouped check only, the event would pass)."""
    value = -1 if past == "below" else high + 1
    ev = usage_event()
    if name.startswith("prices."):
        bad = msgspec.structs.replace(ev, prices=msgspec.structs.replace(ev.prices, **{name[7:]: value}))
    else:
        bad = msgspec.structs.replace(ev, **{name: value})
    with pytest.raises(PoisonEventError, match=rf"{name.replace('.', '[.]')} {value} is outside"):
        admit(bad)
