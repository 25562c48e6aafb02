"""Routing rules: the issue's example parses, matching semantics, and errors that name the bad line."""

from __future__ import annotations

from datetime import time
from pathlib import Path

import pytest
from pydantic import SecretStr

from spendgate.alerter.app import load_checked_rules
from spendgate.alerter.secrets import Secrets
from spendgate.core.alert_routes import parse_rules
from spendgate.core.config import Settings
from spendgate.core.config_services import AlertSettings
from spendgate.domain.errors import ConfigError

EXAMPLE = """\
targets:
  slack:platform-em: {url: {secret: platform_em_slack}}
  email:platform-em: {to: em@example.com}
  email:finops: {to: [finops@example.com, cfo@example.com]}
routes:
  - match: {cost_center: platform, stage: [downgrade, pause]}
    notify: [slack:platform-em, email:platform-em]
  - match: {cost_center: "*"}
    digest: {every: day, at: "17:00", timezone: UTC}
    notify: [email:finops]
"""


def facts(**kw: str | None) -> dict[str, str | None]:
    base: dict[str, str | None] = {"stage": "pause", "scope": "team", "cost_center": "platform", "team": "platform",
                                   "developer": None, "period": "month"}
    base.update(kw)
    return base


def test_the_issue_example_parses_into_routes_and_targets() -> None:
    """The example from the issue gives two routes, the second a daily 17:00 UTC digest."""
    rules = parse_rules(EXAMPLE)
    first, finops = rules.routes
    assert first.name == "route-1" and first.match == {"cost_center": ("platform",), "stage": ("downgrade", "pause")}
    assert first.notify == ("slack:platform-em", "email:platform-em") and first.digest is None
    assert finops.digest is not None and finops.digest.at == time(17, 0) and finops.digest.timezone == "UTC"
    assert rules.targets["email:finops"].options["to"] == ("finops@example.com", "cfo@example.com")


def test_every_matching_route_applies_and_star_matches_absent_values() -> None:
    """A platform pause matches both routes; an org crossing (no cost center) only the "*" route."""
    rules = parse_rules(EXAMPLE)
    assert [r.name for r in rules.matching(facts())] == ["route-1", "route-2"]
    assert [r.name for r in rules.matching(facts(stage="alert"))] == ["route-2"]
    assert [r.name for r in rules.matching(facts(scope="org", cost_center=None, team=None))] == ["route-2"]
    assert [r.name for r in rules.matching(facts(cost_center="payments", stage="pause"))] == ["route-2"]


@pytest.mark.parametrize(("text", "line", "words"), [
    ("routes:\n  - match: {stage: [pause, panic]}\n    notify: [x]\n", 2, "panic"),
    ("targets:\n  email:a: {to: a@x}\nroutes:\n  - match: {team: a}\n    notify: [email:b]\n", 5, "email:b"),
    ("routes:\n  - match: {colour: red}\n    notify: []\n", 2, "colour"),
    ("routes:\n  - notify: [developer]\n", 2, "developer_email"),
    ("targets:\n  slack:x: {}\n", 2, "needs 'url'"),
    ("targets:\n  sms:x: {to: 1}\n", 2, "kind"),
    ("routes:\n  - match: {team: a}\n    notify: []\n    digest: {every: day, at: 25:99}\n", 4, "HH:MM"),
    ("routes:\n  - match: {team: a}\n    notify: []\n    digest: {timezone: Mars/Olympus}\n", 4, "Mars"),
    ("routes:\n  - name: a\n    notify: []\n  - name: a\n    notify: []\n", 4, "twice"),
    ("routes:\n  - match: {team: [a\n", 3, "YAML"),
    ("rutes: []\n", 1, "rutes"),
])
def test_errors_name_the_file_and_line(text: str, line: int, words: str) -> None:
    """Each mistake is reported as <file>:<line>: with what is wrong."""
    with pytest.raises(ConfigError) as err:
        parse_rules(text, source="routes.yaml")
    assert err.value.message.startswith(f"routes.yaml:{line}: "), err.value.message
    assert words in err.value.message


def test_a_missing_secret_is_a_startup_error_naming_its_line_and_variable() -> None:
    """A {secret: name} nobody set fails the check with the line and the environment variable to set."""
    rules = parse_rules(EXAMPLE)
    with pytest.raises(ConfigError) as err:
        Secrets({}).check(rules, routes_file="routes.yaml")
    assert err.value.message.startswith("routes.yaml:2: ")
    assert "SPENDGATE_ALERTS__SECRETS__PLATFORM_EM_SLACK" in err.value.message


def test_secrets_come_from_settings_or_a_secrets_directory_and_never_show(tmp_path: Path) -> None:
    """Secrets resolve from a mounted directory or the settings (settings win); repr shows no value."""
    (tmp_path / "platform_em_slack").write_text("https://hooks.example/T0/B0/from-file\n")
    rules = parse_rules(EXAMPLE)
    ref = rules.secret_refs()[0]
    from_dir = Secrets.from_settings(AlertSettings(secrets_file=tmp_path))
    assert from_dir.resolve(ref) == "https://hooks.example/T0/B0/from-file"
    both = Secrets.from_settings(AlertSettings(secrets_file=tmp_path,
                                               secrets={"platform_em_slack": SecretStr("https://env")}))
    assert both.resolve(ref) == "https://env"
    assert "hooks" not in repr(both) and "env" not in repr(both)
    assert "https://env" not in repr(AlertSettings(secrets={"x": SecretStr("https://env")}))


def test_a_malformed_target_url_is_refused_at_startup_without_echoing_it(tmp_path: Path) -> None:
    """A URL that is not http(s) fails the start-up check with its line; the secret value is not shown."""
    routes = tmp_path / "routes.yaml"
    routes.write_text("targets:\n  slack:a: {url: {secret: hook}}\n")
    settings = Settings(data_dir=tmp_path, alerts=AlertSettings(
        routes_file=routes, secrets={"hook": SecretStr("hooks.slack.com/services/T0/B0/XYZ")}))
    with pytest.raises(ConfigError) as err:
        load_checked_rules(settings)
    assert err.value.message.startswith(f"{routes}:2: ") and "XYZ" not in err.value.message
