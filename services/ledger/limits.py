"""The limits the fold checks crossings against: per budgeted scope, its timezone, its daily and monthly
budget at a time (base plus raises, by the one domain rule) and its thresholds."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from spendgate.core.db import Queryable
from spendgate.domain.enforcement.policy import effective_budget_micros
from spendgate.store.budgets import store as budgets


async def load_limits(
    db: Queryable, scopes: Iterable[str], at: datetime
) -> dict[str, tuple[str, int | None, int | None, list[int]]]:
    """scope → (timezone, daily, monthly, thresholds) with the raises running at ``at`` added to both periods."""
    wanted = set(scopes)
    found = await budgets.budgets_of(db, wanted)
    raises = await budgets.active_raises(db, at, wanted)
    return {
        b.scope: (b.timezone, effective_budget_micros(b.daily_micros, raises, b.scope, at),
                  effective_budget_micros(b.monthly_micros, raises, b.scope, at), b.thresholds.as_list())
        for b in found
    }
