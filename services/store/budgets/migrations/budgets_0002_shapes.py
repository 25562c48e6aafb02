"""More budget shapes: ISO-week amounts, per-model budgets, a scope's own cascades, ``at_pause: step_down``.

Revision ID: budgets_shapes
Revises: budgets_0001
Create Date: 2026-11-27

A per-model budget keeps its whole scope in ``scope`` (``org|model:gpt-5.1``: raises, balances and
crossings key on that string, as on any scope) and its model in ``model``, which a check holds to the
scope's suffix; ``model`` is null for a budget on all of a scope's spend. ``cascades`` is the budget's
own ``{model: [cheaper, ...]}``, null to use the broader scopes' or the settings'.
"""

from spendgate.core.migration_sql import execute_script

revision = "budgets_shapes"
down_revision = "budgets_0001"
branch_labels = None
depends_on = None

UPGRADE = """
ALTER TABLE budgets ADD COLUMN IF NOT EXISTS weekly_micros bigint
    CHECK (weekly_micros IS NULL OR weekly_micros > 0);
ALTER TABLE budgets ADD COLUMN IF NOT EXISTS model text
    CHECK (model IS NULL OR right(scope, length(model) + 7) = '|model:' || model);
ALTER TABLE budgets ADD COLUMN IF NOT EXISTS cascades jsonb;
ALTER TABLE budgets DROP CONSTRAINT IF EXISTS budgets_at_pause_check;
ALTER TABLE budgets ADD CONSTRAINT budgets_at_pause_check CHECK (at_pause IN ('refuse', 'cheapest', 'step_down'))
"""

DOWNGRADE = """
UPDATE budgets SET at_pause = 'refuse' WHERE at_pause = 'step_down';
ALTER TABLE budgets DROP CONSTRAINT IF EXISTS budgets_at_pause_check;
ALTER TABLE budgets ADD CONSTRAINT budgets_at_pause_check CHECK (at_pause IN ('refuse', 'cheapest'));
ALTER TABLE budgets DROP COLUMN IF EXISTS cascades;
ALTER TABLE budgets DROP COLUMN IF EXISTS model;
ALTER TABLE budgets DROP COLUMN IF EXISTS weekly_micros
"""


def upgrade() -> None:
    execute_script(UPGRADE)


def downgrade() -> None:
    execute_script(DOWNGRADE)
