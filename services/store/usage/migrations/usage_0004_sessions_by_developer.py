"""Sessions and their turns are keyed by (developer, session id), not by the session id alone.

Revision ID: usage_0004
Revises: usage_0003
Create Date: 2026-11-27

A session id is a label the client sends (issue 11 item 7, ``docs/security.md``, "Attribution"): keyed by
it alone, another key holder who sent someone else's session id added to that session's line. The
developer comes from the key. Rows already folded keep their first developer (the one the line already
showed); ``spendgate ledger rebuild`` splits sessions that several developers' keys shared before this
revision. Every statement can run again on a schema that has it (a database migrated before the family
split replays the family's revisions). Downgrading merges such sessions back into one row per id
(totals summed, the lowest developer's names kept), as the old key can hold only one.
"""

from spendgate.core.migration_sql import execute_script

revision = "usage_0004"
down_revision = "usage_0003"
branch_labels = None
depends_on = None

UPGRADE = """
ALTER TABLE session_turns ADD COLUMN IF NOT EXISTS developer text;
UPDATE session_turns t SET developer = s.developer FROM sessions s
    WHERE s.session_id = t.session_id AND t.developer IS NULL;
DELETE FROM session_turns WHERE developer IS NULL;
ALTER TABLE session_turns ALTER COLUMN developer SET NOT NULL;
ALTER TABLE session_turns DROP CONSTRAINT IF EXISTS session_turns_pkey;
ALTER TABLE session_turns ADD PRIMARY KEY (developer, session_id, turn_id);
ALTER TABLE sessions DROP CONSTRAINT IF EXISTS sessions_pkey;
ALTER TABLE sessions ADD PRIMARY KEY (developer, session_id);
CREATE INDEX IF NOT EXISTS usage_events_developer_session ON usage_events (developer, session_id, occurred_at)
"""

DOWNGRADE = """
DROP INDEX usage_events_developer_session;
UPDATE sessions s SET
    repo = m.repo, first_at = m.first_at, last_at = m.last_at, turns = m.turns, requests = m.requests,
    input_tokens = m.input_tokens, cached_tokens = m.cached_tokens, output_tokens = m.output_tokens,
    reasoning_tokens = m.reasoning_tokens, cost_micros = m.cost_micros, retries = m.retries,
    retry_cost_micros = m.retry_cost_micros, downgraded = m.downgraded
FROM (SELECT session_id, min(developer) AS developer, min(repo) AS repo, min(first_at) AS first_at,
             max(last_at) AS last_at, sum(turns) AS turns, sum(requests) AS requests,
             sum(input_tokens) AS input_tokens, sum(cached_tokens) AS cached_tokens,
             sum(output_tokens) AS output_tokens, sum(reasoning_tokens) AS reasoning_tokens,
             sum(cost_micros) AS cost_micros, sum(retries) AS retries,
             sum(retry_cost_micros) AS retry_cost_micros, sum(downgraded) AS downgraded
      FROM sessions GROUP BY session_id HAVING count(*) > 1) AS m
WHERE s.session_id = m.session_id AND s.developer = m.developer;
DELETE FROM sessions s USING sessions o WHERE o.session_id = s.session_id AND o.developer < s.developer;
ALTER TABLE sessions DROP CONSTRAINT sessions_pkey;
ALTER TABLE sessions ADD PRIMARY KEY (session_id);
DELETE FROM session_turns t USING session_turns o
    WHERE o.session_id = t.session_id AND o.turn_id = t.turn_id AND o.developer < t.developer;
ALTER TABLE session_turns DROP CONSTRAINT session_turns_pkey;
ALTER TABLE session_turns DROP COLUMN developer;
ALTER TABLE session_turns ADD PRIMARY KEY (session_id, turn_id)
"""


def upgrade() -> None:
    execute_script(UPGRADE)


def downgrade() -> None:
    execute_script(DOWNGRADE)
