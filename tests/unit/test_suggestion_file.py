"""`policy apply FILE --suggestion ID` records the version as the optimiser's suggestion only for that suggestion's
file as saved, on the live policy it was made from (found trying `apply --suggestion` with edited, mislabelled and
stale files: each was applied and signed as the suggestion)."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from spendgate.admin.policy import parse_proposal
from spendgate.admin.suggestion_file import check, header
from spendgate.domain.errors import ConfigError

LIVE: dict[str, Any] = {"budgets": [{"scope": "team:a", "monthly": "10.000000"}], "routing_rules": []}
SUGGESTED: dict[str, Any] = {**LIVE, "routing_rules": [{"name": "r", "scope": "team:a", "model": "gpt-5.1-mini",
                                                         "max_input_tokens": 8000}]}
SID = "suggest-a-gpt-5.1-under-8k"


def saved(summary: str = "for a: route turns under 8,000 input tokens\nto gpt-5.1-mini") -> str:
    body = yaml.safe_dump(SUGGESTED, sort_keys=False)
    return header(SID, summary, document=parse_proposal(body, source="s.yaml"), live=LIVE) + body


def checked(text: str, *, suggestion: str = SID, live: dict[str, Any] = LIVE) -> None:
    check(text, source="s.yaml", suggestion_id=suggestion, document=parse_proposal(text, source="s.yaml"), live=live)


def test_the_saved_file_passes_on_the_live_policy_it_was_made_from() -> None:
    """The file as saved (a summary's line breaks kept inside its comment) passes and parses to the suggestion."""
    text = saved()
    checked(text)
    assert parse_proposal(text, source="s.yaml") == SUGGESTED


@pytest.mark.parametrize(("text", "kwargs", "words"), [
    (saved().replace("8000", "999999"), {}, "was edited after it was saved"),
    (saved(), {"suggestion": "suggest-b-retry-cap-1"}, "holds suggestion 'suggest-a-gpt-5.1-under-8k', not"),
    (yaml.safe_dump(SUGGESTED), {}, "is not a file `policy suggest --save"),
    (saved(), {"live": {**LIVE, "retry_cap": 1}}, "the live policy changed since s.yaml was saved"),
    (saved(), {"live": SUGGESTED}, "the live policy already is suggestion"),
])
def test_an_edited_mislabelled_unsaved_or_stale_file_is_refused(text: str, kwargs: dict[str, Any], words: str) -> None:
    """Edited after saving, saved for another suggestion, never saved, saved on another live policy (or from another
    database), or already applied: a one-line refusal saying which, never a version signed as the suggestion."""
    with pytest.raises(ConfigError) as caught:
        checked(text, **kwargs)
    assert words in caught.value.message, caught.value.message


def test_suggest_on_a_database_without_turns_says_it_needs_traffic() -> None:
    """With no turns in the window the text says suggestions learn from turns and there are none yet (it said
    only "no suggestions", as if the traffic had been judged)."""
    from datetime import UTC, datetime

    from spendgate.admin.policy_cli import describe_suggestions
    from spendgate.admin.suggest import Suggestions

    at = datetime(2026, 11, 28, tzinfo=UTC)
    empty = Suggestions(days=30, tolerance_pct=2.0, from_at=at, to_at=at, turns=0, elapsed_ms=5, suggestions=[],
                        not_proposed=[], segments=[])
    text = describe_suggestions(empty)
    assert "no turns in the window: suggestions learn from turns" in text and "no suggestions" not in text
