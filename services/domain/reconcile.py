"""Reconciliation with the provider's bill, the pure part: the day range a run may cover, the comparison
of the ledger's lines with the provider's per (day, model, upstream), the capture rate, and which days
are off by more than the threshold. No I/O: the provider clients and the store feed it.

Capture rate = ledger / provider, in parts per million (``1_000_000`` is 1.000: the ledger saw all the
provider billed). Below it, traffic reached the provider without going through spendgate (a bypass) or
the ledger missed events; above it, spendgate metered more than the provider billed (its price table is
off, or requests it counted were never billed).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import date, timedelta
from typing import Literal

import msgspec

ProviderKind = Literal["openai", "anthropic"]
PROVIDER_KINDS: tuple[ProviderKind, ...] = ("openai", "anthropic")
PPM = 1_000_000
MAX_RANGE_DAYS = 366
"""A run covers at most a year of days (both providers page their reports by day)."""


def provider_kind(endpoint: str) -> ProviderKind:
    """Which provider's bill a usage event's endpoint lands on: the Messages routes are Anthropic's."""
    return "anthropic" if endpoint.startswith("/v1/messages") else "openai"


class RangeError(ValueError):
    """A day range a run cannot cover; the message is for people (``--from``/``--to`` or the API)."""


def check_range(start: date, end: date, today: date) -> None:
    """``start``..``end`` (inclusive, UTC days) is a range a run can cover as of ``today`` (UTC)."""
    if start > end:
        raise RangeError(f"--from {start} is after --to {end}")
    if end > today:
        raise RangeError(f"--to {end} is in the future (today is {today} UTC): the provider has no bill for it yet")
    if (end - start).days + 1 > MAX_RANGE_DAYS:
        raise RangeError(f"{start}..{end} spans {(end - start).days + 1} days; at most {MAX_RANGE_DAYS} per run")


def default_range(today: date, lookback_days: int) -> tuple[date, date]:
    """The last ``lookback_days`` complete UTC days (today's report is not final yet)."""
    return today - timedelta(days=lookback_days), today - timedelta(days=1)


@dataclass(frozen=True, slots=True)
class Usage:
    """What one side says about one (day, model, upstream): requests, tokens and cost.

    ``input_tokens`` counts every input token, cache reads and writes included (OpenAI's convention;
    Anthropic's report is summed into it). ``cost_micros`` is None when that side has no cost for the
    line (a provider's cost report cannot be split by key).
    """

    day: date
    model: str
    upstream: str | None
    requests: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_micros: int | None = 0

    @property
    def key(self) -> tuple[date, str, str | None]:
        return self.day, self.model, self.upstream

    def plus(self, other: Usage) -> Usage:
        cost = None if self.cost_micros is None and other.cost_micros is None else \
            (self.cost_micros or 0) + (other.cost_micros or 0)
        return replace(self, requests=self.requests + other.requests,
                       input_tokens=self.input_tokens + other.input_tokens,
                       output_tokens=self.output_tokens + other.output_tokens, cost_micros=cost)


def summed(lines: Iterable[Usage], *, by_upstream: bool = True) -> dict[tuple[date, str, str | None], Usage]:
    """Lines added up per (day, model, upstream), or per (day, model) with ``by_upstream`` off."""
    out: dict[tuple[date, str, str | None], Usage] = {}
    for line in lines:
        if not by_upstream:
            line = replace(line, upstream=None)
        out[line.key] = out[line.key].plus(line) if line.key in out else line
    return out


def capture_ppm(ledger: int, provider: int) -> int | None:
    """ledger / provider in parts per million, rounded half up; None when the provider reports nothing."""
    if provider <= 0:
        return None
    whole, rest = divmod(ledger * PPM, provider)
    return whole + (1 if 2 * rest >= provider else 0)


def format_rate(ppm: int | None) -> str:
    """``1_000_000`` → ``1.000``; None → ``-``."""
    if ppm is None:
        return "-"
    thousandths = (ppm + 500) // 1000
    return f"{thousandths // 1000}.{thousandths % 1000:03d}"


@dataclass(frozen=True, slots=True)
class Line:
    """One compared (provider, day, model, upstream)."""

    provider: str
    day: date
    model: str
    upstream: str | None
    ledger: Usage
    billed: Usage

    @property
    def ledger_tokens(self) -> int:
        return self.ledger.input_tokens + self.ledger.output_tokens

    @property
    def provider_tokens(self) -> int:
        return self.billed.input_tokens + self.billed.output_tokens

    @property
    def tokens_capture_ppm(self) -> int | None:
        return capture_ppm(self.ledger_tokens, self.provider_tokens)

    @property
    def cost_capture_ppm(self) -> int | None:
        if self.billed.cost_micros is None:
            return None
        return capture_ppm(self.ledger.cost_micros or 0, self.billed.cost_micros)

    @property
    def cost_gap_micros(self) -> int | None:
        """What the provider billed beyond what the ledger counted (negative: the ledger counted more)."""
        if self.billed.cost_micros is None:
            return None
        return self.billed.cost_micros - (self.ledger.cost_micros or 0)


def compare(provider: str, ledger: Sequence[Usage], billed: Sequence[Usage], *,
            by_upstream: bool = False) -> list[Line]:
    """Pair the ledger's lines with the provider's per (day, model), or per (day, model, upstream).

    ``by_upstream`` (the provider's key ids are mapped to upstream names and the ledger's lines carry the
    upstream that served them): tokens and requests are compared per upstream, and cost per (day, model) on
    the line whose upstream is None, since neither provider splits cost by key. Otherwise every line is per
    (day, model). A key on only one side compares with zero.
    """
    if by_upstream:
        ledger = [*(replace(u, cost_micros=None) for u in ledger),
                  *(Usage(u.day, u.model, None, cost_micros=u.cost_micros) for u in ledger)]
    ours = summed(ledger, by_upstream=by_upstream)
    theirs = summed(billed, by_upstream=by_upstream)
    lines = []
    for key in sorted(ours.keys() | theirs.keys(), key=lambda k: (k[0], k[1], k[2] or "")):
        day, model, upstream = key
        empty = Usage(day, model, upstream, cost_micros=0)
        lines.append(Line(provider, day, model, upstream, ours.get(key, empty), theirs.get(key, empty)))
    return lines


@dataclass(frozen=True, slots=True)
class Threshold:
    """A day is a gap when the provider billed more than the ledger counted by at least ``min_micros``
    and by at least ``pct`` percent of the bill (both: a cent off on a quiet day is not news)."""

    pct: int
    min_micros: int


@dataclass(frozen=True, slots=True)
class DayGap:
    provider: str
    day: date
    ledger_micros: int
    provider_micros: int
    models: tuple[str, ...]
    """The models whose lines the provider billed more for, largest gap first."""

    @property
    def gap_micros(self) -> int:
        return self.provider_micros - self.ledger_micros

    @property
    def capture_ppm(self) -> int | None:
        return capture_ppm(self.ledger_micros, self.provider_micros)


def day_gaps(lines: Sequence[Line], threshold: Threshold) -> list[DayGap]:
    """The (provider, day) totals off by more than ``threshold``, by day."""
    days: dict[tuple[str, date], list[Line]] = {}
    for line in lines:
        if line.billed.cost_micros is not None:
            days.setdefault((line.provider, line.day), []).append(line)
    gaps = []
    for (provider, day), group in sorted(days.items()):
        ours = sum(line.ledger.cost_micros or 0 for line in group)
        theirs = sum(line.billed.cost_micros or 0 for line in group)
        gap = theirs - ours
        if gap >= threshold.min_micros and gap * 100 >= threshold.pct * theirs and gap > 0:
            short = sorted((line for line in group if (line.cost_gap_micros or 0) > 0),
                           key=lambda line: -(line.cost_gap_micros or 0))
            gaps.append(DayGap(provider, day, ours, theirs, tuple(dict.fromkeys(line.model for line in short))))
    return gaps


# -- the document: what the admin API serves and `spendgate reconcile --format json` prints ------------

class LineOut(msgspec.Struct, frozen=True, kw_only=True):
    """One (provider, day, model, upstream): the ledger's counts beside the provider's."""

    provider: str
    day: date
    model: str
    upstream: str | None
    """The spendgate upstream the provider's key id maps to; null while the comparison is per (day, model)."""
    ledger_requests: int
    provider_requests: int
    """Anthropic's usage report has no request count: 0 there."""
    ledger_input_tokens: int
    provider_input_tokens: int
    ledger_output_tokens: int
    provider_output_tokens: int
    tokens_capture_ppm: int | None
    ledger_cost_micros: int
    provider_cost_micros: int | None
    cost_gap_micros: int | None
    cost_capture_ppm: int | None
    """ledger / provider in parts per million (1000000 = capture rate 1.000); null when the provider reports 0."""


class DayOut(msgspec.Struct, frozen=True, kw_only=True):
    """One provider's UTC day, all models."""

    provider: str
    day: date
    ledger_tokens: int
    provider_tokens: int
    tokens_capture_ppm: int | None
    ledger_cost_micros: int
    provider_cost_micros: int
    cost_gap_micros: int
    cost_capture_ppm: int | None
    gap: bool
    """Over the threshold: a ``reconciliation_gap`` alert is (or was) raised for it."""


class Reconciliation(msgspec.Struct, frozen=True, kw_only=True):
    start: date = msgspec.field(name="from")
    end: date = msgspec.field(name="to")
    days: list[DayOut]
    lines: list[LineOut]


def line_out(line: Line) -> LineOut:
    return LineOut(
        provider=line.provider, day=line.day, model=line.model, upstream=line.upstream,
        ledger_requests=line.ledger.requests, provider_requests=line.billed.requests,
        ledger_input_tokens=line.ledger.input_tokens, provider_input_tokens=line.billed.input_tokens,
        ledger_output_tokens=line.ledger.output_tokens, provider_output_tokens=line.billed.output_tokens,
        tokens_capture_ppm=line.tokens_capture_ppm, ledger_cost_micros=line.ledger.cost_micros or 0,
        provider_cost_micros=line.billed.cost_micros, cost_gap_micros=line.cost_gap_micros,
        cost_capture_ppm=line.cost_capture_ppm)


def document(start: date, end: date, lines: Sequence[Line], gap_days: Iterable[tuple[str, date]]) -> Reconciliation:
    """The lines of ``start``..``end`` with each provider's day totals; ``gap_days`` are the
    (provider, day) pairs over the threshold."""
    flagged = set(gap_days)
    days: dict[tuple[str, date], list[Line]] = {}
    for line in lines:
        days.setdefault((line.provider, line.day), []).append(line)
    out = []
    for (provider, day), group in sorted(days.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        ours_tokens = sum(g.ledger_tokens for g in group)
        their_tokens = sum(g.provider_tokens for g in group)
        ours = sum(g.ledger.cost_micros or 0 for g in group)
        theirs = sum(g.billed.cost_micros or 0 for g in group)
        out.append(DayOut(provider=provider, day=day, ledger_tokens=ours_tokens, provider_tokens=their_tokens,
                          tokens_capture_ppm=capture_ppm(ours_tokens, their_tokens), ledger_cost_micros=ours,
                          provider_cost_micros=theirs, cost_gap_micros=theirs - ours,
                          cost_capture_ppm=capture_ppm(ours, theirs), gap=(provider, day) in flagged))
    return Reconciliation(start=start, end=end, days=out, lines=[line_out(line) for line in lines])
