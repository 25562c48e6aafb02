"""Which usage events a report reads, as typed values the usage store turns into SQL. Pure: no I/O.

Kept apart from :mod:`.store` (which needs asyncpg) so the admin's pure window module can build one.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

FILTER_COLUMNS = ("developer", "team", "cost_center", "repo", "session_id")
GROUP_COLUMNS = frozenset({"session_id", "developer", "team", "cost_center", "repo"})
"""The ``usage_events`` columns a report may group by (an allow-list: never user text in SQL)."""


@dataclass(frozen=True, slots=True)
class UsageFilter:
    """Events that occurred in ``[starts_at, ends_at)`` and equal every column given."""

    starts_at: datetime
    ends_at: datetime
    developer: str | None = None
    team: str | None = None
    cost_center: str | None = None
    repo: str | None = None
    session_id: str | None = None

    def where(self, *, first_param: int = 1) -> tuple[str, list[object]]:
        """A ``WHERE`` clause (without the keyword) and its parameters, numbered from ``first_param``."""
        clauses = [f"occurred_at >= ${first_param}", f"occurred_at < ${first_param + 1}"]
        params: list[object] = [self.starts_at, self.ends_at]
        for column in FILTER_COLUMNS:
            value = getattr(self, column)
            if value is not None:
                params.append(value)
                clauses.append(f"{column} = ${first_param + len(params) - 1}")
        return " AND ".join(clauses), params


def group_by(column: str) -> str:
    """``column`` if reports may group by it; ValueError otherwise."""
    if column not in GROUP_COLUMNS:
        raise ValueError(f"usage events cannot be grouped by {column!r}")
    return column


def group_owner(column: str) -> str:
    """What a group of ``column`` is namespaced by, besides its value: a session is one developer's (the
    session id is a label the client sends, the developer comes from the key); other groups need nothing."""
    return "developer" if group_by(column) == "session_id" else "NULL::text"
