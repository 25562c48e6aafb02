"""Rows as every command prints them: an aligned table for people, CSV for spreadsheets, JSON for programs.

A :class:`Field` is one value of a row: its name (the JSON field), how to read it, its kind and its
table header. The three formats follow one convention:

* JSON carries every field under its name, money as integer micro-dollars (``cost_micros``), as the
  admin API sends it;
* CSV carries the same fields in the same order, money as exact decimal dollars under the ``_usd``
  name (``cost_usd``: ``12.345678``), times in ISO 8601, absent values empty;
* the table is for reading: lower-case headers, numbers and money right-aligned, money through
  :func:`~spendgate.domain.money.format_usd`, times to the minute, a dash for absent values, and at
  most :data:`WIDTH` columns: fields without a table header are left out, and the widest text
  columns are shortened with ``…`` (the whole value is in CSV and JSON).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Literal

from spendgate.domain.money import format_usd, usd_str

WIDTH = 120
"""Tables fit a 120-column terminal."""
GAP = "  "

Kind = Literal["text", "int", "money", "time", "date", "bool", "pct", "list", "map"]
_RIGHT = {"int", "money", "pct"}


@dataclass(frozen=True, slots=True)
class Field:
    """One value of a row. ``header`` ``None``: CSV and JSON only; ``""``: the name is the header.
    ``table_only``: a value the table derives for reading (``revoked 2026-11-03``) from fields that
    CSV and JSON carry as they are."""

    name: str
    get: Callable[[Any], object]
    kind: Kind = "text"
    header: str | None = ""
    table_only: bool = False
    whole: bool = False
    """Never cut in the table (an id a reader copies into the next command)."""

    @property
    def csv_name(self) -> str:
        return self.name.removesuffix("_micros") + "_usd" if self.kind == "money" else self.name

    @property
    def table_header(self) -> str:
        return self.header or self.name


def field(name: str, kind: Kind = "text", header: str | None = "") -> Field:
    """A field read from the attribute (or mapping key) of the same name."""
    return Field(name, lambda row: row[name] if isinstance(row, dict) else getattr(row, name), kind, header)


def human(value: object, kind: Kind) -> str:
    """A value as a table shows it."""
    if value is None:
        return "-"
    if kind == "money":
        assert isinstance(value, int)
        return format_usd(value)
    if kind == "int":
        return f"{value:,}"
    if kind == "pct":
        return f"{value}%"
    if kind == "bool":
        return "yes" if value else "no"
    if kind == "time":
        assert isinstance(value, datetime)
        return value.strftime("%Y-%m-%d %H:%M")
    if kind == "list":
        assert isinstance(value, list | tuple)
        return ",".join(str(v) for v in value)
    return str(value)


def machine(value: object, kind: Kind) -> str:
    """A value as CSV writes it."""
    if value is None:
        return ""
    if kind == "money":
        assert isinstance(value, int)
        return usd_str(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    if kind == "bool":
        return "true" if value else "false"
    if kind == "list":
        assert isinstance(value, list | tuple)
        return ",".join(str(v) for v in value)
    if kind == "map":
        return to_json(value, indent=False)
    return str(value)


def records(fields: Sequence[Field], rows: Sequence[Any]) -> list[dict[str, object]]:
    """The rows as JSON objects of every field, in order (for a list the admin API does not serve)."""
    return [{f.name: f.get(r) for f in fields if not f.table_only} for r in rows]


def table(fields: Sequence[Field], rows: Sequence[Any], total: Any | None = None, *,
          total_label: str = "TOTAL") -> str:
    """An aligned table of the fields that have a header, at most :data:`WIDTH` columns wide."""
    shown = [f for f in fields if f.header is not None]
    cells = [[human(f.get(r), f.kind) for f in shown] for r in rows]
    if total is not None:
        cells.append([total_label, *(human(f.get(total), f.kind) for f in shown[1:])])
    headers = [f.table_header for f in shown]
    widths = _fit([max([len(h), *(len(c[i]) for c in cells)]) for i, h in enumerate(headers)],
                  [f.kind not in _RIGHT and not f.whole for f in shown])
    right = [f.kind in _RIGHT for f in shown]

    def line(row: Sequence[str]) -> str:
        return GAP.join((_cut(c, w).rjust(w) if r else _cut(c, w).ljust(w))
                        for c, w, r in zip(row, widths, right, strict=True)).rstrip()

    return "\n".join([line(headers), line(["-" * w for w in widths]), *(line(c) for c in cells)])


def _fit(widths: list[int], shrinkable: list[bool]) -> list[int]:
    """Narrow the widest text columns, one character at a time, until the line fits :data:`WIDTH`."""
    widths = list(widths)
    while sum(widths) + len(GAP) * (len(widths) - 1) > WIDTH:
        candidates = [i for i, ok in enumerate(shrinkable) if ok and widths[i] > 8]
        if not candidates:
            break
        widest = max(candidates, key=lambda i: widths[i])
        widths[widest] -= 1
    return widths


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def to_csv(fields: Sequence[Field], rows: Sequence[Any], total: Any | None = None, *,
           total_label: str = "TOTAL") -> str:
    """Every field of every row (and the total, its first cell ``TOTAL``), header first."""
    fields = [f for f in fields if not f.table_only]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([f.csv_name for f in fields])
    for r in rows:
        writer.writerow([machine(f.get(r), f.kind) for f in fields])
    if total is not None:
        writer.writerow([total_label, *(machine(f.get(total), f.kind) for f in fields[1:])])
    return out.getvalue()


def to_json(value: object, *, indent: bool = True) -> str:
    """``value`` (msgspec Structs, dataclasses, lists, dicts, dates) as JSON, indented unless told not to."""
    import msgspec

    raw = msgspec.json.encode(value)
    return (msgspec.json.format(raw) if indent else raw).decode()


def render(fmt: str, fields: Sequence[Field], rows: Sequence[Any], *, document: object = None,
           total: Any | None = None) -> str:
    """``rows`` in ``fmt``; JSON is ``document`` when given (the API's document), else the rows."""
    if fmt == "json":
        return to_json(rows if document is None else document)
    if fmt == "csv":
        return to_csv(fields, rows, total).rstrip("\n")
    return table(fields, rows, total)
