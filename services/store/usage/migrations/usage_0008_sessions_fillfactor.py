"""Room on each sessions page for the ledger's updates (issue 15).

Revision ID: usage_0008
Revises: usage_0007
Create Date: 2026-11-28

The ledger updates a session's row in every batch that has its events, and none of the columns it changes
is indexed: with free room on the row's page PostgreSQL writes the new version there (a HOT update) and
adds nothing to the primary key. Sessions pages were filled to 100 %, so 4 % of the updates were HOT; at
a fill factor of 70 79 % were, and a batch's session upsert took 10-14 ms per 1,000 sessions instead of
16-37 (``benchmarks.ledger_fold``'s workload, 20,000 events folded first, EXPLAIN ANALYZE). The setting
applies to pages written from now on; ``VACUUM FULL sessions`` rewrites the existing ones (it locks the
table while it runs).
"""

from alembic import op

revision = "usage_0008"
down_revision = "usage_0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE sessions SET (fillfactor = 70)")


def downgrade() -> None:
    op.execute("ALTER TABLE sessions RESET (fillfactor)")
