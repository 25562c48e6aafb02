"""External evaluation scores per turn (issue 13 item 1: turn outcomes).

Revision ID: outcomes_evals_0001
Revises: 0001
Create Date: 2026-11-28

One row per turn id: the latest evaluation an org's eval system sent (``spendgate.eval.v1`` or
``POST /v1/evals``). ``score`` is in [0, 1]; the check also refuses NaN (NaN is not <= 1 in SQL).
"""

from spendgate.core.migration_sql import drop_tables, execute_script

revision = "outcomes_evals_0001"
down_revision = "0001"
branch_labels = ("outcomes",)
depends_on = None

UPGRADE = """
CREATE TABLE IF NOT EXISTS turn_evals (
    turn_id       text             PRIMARY KEY,
    score         double precision NOT NULL CHECK (score >= 0 AND score <= 1 AND score <> 'NaN'),
    evaluator     text             NOT NULL,
    evaluated_at  timestamptz      NOT NULL,
    received_at   timestamptz      NOT NULL DEFAULT now()
)
"""


def upgrade() -> None:
    execute_script(UPGRADE)


def downgrade() -> None:
    drop_tables("turn_evals")
