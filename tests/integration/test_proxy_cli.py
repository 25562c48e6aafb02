"""The keys commands against a real database, the way an operator runs them in a second terminal."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from spendgate.cli import main


def test_keys_create_list_revoke(db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """keys create prints the secret once; list shows only its prefix; revoke marks it revoked."""
    monkeypatch.setenv("SPENDGATE_DATABASE_URL", db_url)
    runner = CliRunner()
    base = ["--data-dir", str(tmp_path)]
    created = runner.invoke(main, [*base, "keys", "create", "--developer", "alice", "--team", "platform"])
    assert created.exit_code == 0, created.output
    secret = created.stdout.strip().splitlines()[0]
    assert secret.startswith("sk-sg-")
    listed = runner.invoke(main, [*base, "keys", "list"])
    assert listed.exit_code == 0 and secret[:12] in listed.stdout and secret not in listed.stdout
    key_id = next(line.split()[0] for line in listed.stdout.splitlines() if secret[:12] in line)
    revoked = runner.invoke(main, [*base, "keys", "revoke", key_id])
    assert revoked.exit_code == 0 and "revoked" in revoked.stdout
    assert "active" not in runner.invoke(main, [*base, "keys", "list", "--all"]).stdout.splitlines()[1]
    missing = runner.invoke(main, [*base, "keys", "revoke", "no-such-key"])
    assert missing.exit_code != 0 and "no key" in missing.output


def test_up_prints_codex_snippet() -> None:
    """The config.toml snippet names the custom provider, the base URL and the env var for the key."""
    from spendgate.up import codex_snippet

    snippet = codex_snippet("http://127.0.0.1:8080/v1")
    assert 'model_provider = "spendgate"' in snippet and 'base_url = "http://127.0.0.1:8080/v1"' in snippet
    assert 'env_key = "SPENDGATE_KEY"' in snippet and 'wire_api = "responses"' in snippet
