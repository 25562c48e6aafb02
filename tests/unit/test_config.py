"""Settings: one object from defaults, the YAML file and SPENDGATE_* variables, in that order."""

from __future__ import annotations

from pathlib import Path

import pytest

from spendgate.core.clitools import Ctx
from spendgate.core.config import load_settings
from spendgate.domain.errors import ConfigError


def test_defaults(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Without configuration: embedded database, Postgres bus, OpenAI upstream, 32 MiB bodies."""
    monkeypatch.setenv("SPENDGATE_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    s = load_settings()
    assert s.database_url is None and s.bus == "postgres"
    assert s.upstream_url == "https://api.openai.com/v1" and s.upstream_key is None
    assert s.max_body_bytes == 32 * 1024 * 1024 and s.proxy_port == 8080
    assert s.enforcement.thresholds_pct == [80, 95, 110]


def test_environment_beats_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The YAML file sets values; SPENDGATE_* variables (nested with __) override them."""
    cfg = tmp_path / "spendgate.yaml"
    cfg.write_text("bus: kafka://a:9092\nproxy_port: 9000\npricing:\n  models:\n"
                   "    my-model: {input: '1', cached_input: '0.5', output: '2'}\n")
    monkeypatch.setenv("SPENDGATE_CONFIG", str(cfg))
    monkeypatch.setenv("SPENDGATE_PROXY_PORT", "9100")
    monkeypatch.setenv("SPENDGATE_SMTP__HOST", "mail.example")
    s = load_settings()
    assert s.bus == "kafka://a:9092" and s.proxy_port == 9100 and s.smtp.host == "mail.example"
    assert s.pricing.table().lookup("my-model").price.output_micros == 2_000_000


def test_data_dir_option_reads_that_data_dirs_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """`spendgate --data-dir X` reads X/spendgate.yaml, not the file of the environment's data dir."""
    chosen, other = tmp_path / "chosen", tmp_path / "other"
    for d, port in ((chosen, 9001), (other, 9002)):
        d.mkdir()
        (d / "spendgate.yaml").write_text(f"proxy_port: {port}\n")
    monkeypatch.delenv("SPENDGATE_CONFIG", raising=False)
    monkeypatch.setenv("SPENDGATE_DATA_DIR", str(other))
    settings = Ctx(chosen).settings
    assert settings.data_dir == chosen and settings.proxy_port == 9001
    assert load_settings().proxy_port == 9002


def test_upstream_key_falls_back_to_openai_api_key(monkeypatch: pytest.MonkeyPatch) -> None:
    """SPENDGATE_UPSTREAM_KEY wins; OPENAI_API_KEY is the default; the secret never prints."""
    monkeypatch.setenv("OPENAI_API_KEY", "sk-from-openai-env")
    assert load_settings().upstream_key.get_secret_value() == "sk-from-openai-env"  # type: ignore[union-attr]
    monkeypatch.setenv("SPENDGATE_UPSTREAM_KEY", "sk-upstream")
    s = load_settings()
    assert s.upstream_key is not None and s.upstream_key.get_secret_value() == "sk-upstream"
    assert "sk-upstream" not in repr(s)


def test_invalid_values_name_the_field(monkeypatch: pytest.MonkeyPatch) -> None:
    """A bad value raises ConfigError naming the setting."""
    monkeypatch.setenv("SPENDGATE_ENFORCEMENT__THRESHOLDS_PCT", "[95, 80, 110]")
    with pytest.raises(ConfigError, match="thresholds_pct"):
        load_settings()
