"""Usage events record what a request's turn says about its tools and whether its answer was final, and
turns get an index (turn outcomes, issue 13 item 1).

Revision ID: outcomes_0001
Revises: usage_pool_0001
Create Date: 2026-11-28

``tool_outputs`` / ``tool_failures`` default to 0 and ``final_message`` to null for events stored before
this revision (nothing was known of them). The partial index serves the turn outcome query, which first
picks turns and then reads each picked turn's events by its id.
"""

from spendgate.core.migration_sql import execute_script

revision = "outcomes_0001"
down_revision = "usage_pool_0001"
branch_labels = None
depends_on = None

UPGRADE = """
ALTER TABLE usage_events
    ADD COLUMN IF NOT EXISTS tool_outputs integer NOT NULL DEFAULT 0,
    ADD COLUMN IF NOT EXISTS tool_failures integer NOT NULL DEFAULT 0,
    ADD COLUMN IF NOT EXISTS final_message boolean;
CREATE INDEX IF NOT EXISTS usage_events_turn ON usage_events (turn_id, developer, occurred_at)
    WHERE turn_id IS NOT NULL
"""

DOWNGRADE = """
DROP INDEX IF EXISTS usage_events_turn;
ALTER TABLE usage_events DROP COLUMN tool_outputs, DROP COLUMN tool_failures, DROP COLUMN final_message
"""


def upgrade() -> None:
    execute_script(UPGRADE)


def downgrade() -> None:
    execute_script(DOWNGRADE)
