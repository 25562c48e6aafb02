"""Usage events record prompt-cache writes (Anthropic's 5-minute and 1-hour ``cache_creation``) and their prices.

Revision ID: usage_0005
Revises: usage_0004
Create Date: 2026-11-27

Token counts not null, default 0 (no event stored before this revision wrote to a cache: only the
Anthropic route reports writes); the two prices are null when the request wrote nothing.
"""

from alembic import op

revision = "usage_0005"
down_revision = "usage_0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("""ALTER TABLE usage_events
        ADD COLUMN IF NOT EXISTS cache_write_5m_tokens bigint NOT NULL DEFAULT 0,
        ADD COLUMN IF NOT EXISTS cache_write_1h_tokens bigint NOT NULL DEFAULT 0,
        ADD COLUMN IF NOT EXISTS cache_write_5m_price_micros bigint,
        ADD COLUMN IF NOT EXISTS cache_write_1h_price_micros bigint""")


def downgrade() -> None:
    op.execute("""ALTER TABLE usage_events DROP COLUMN cache_write_5m_tokens, DROP COLUMN cache_write_1h_tokens,
        DROP COLUMN cache_write_5m_price_micros, DROP COLUMN cache_write_1h_price_micros""")
