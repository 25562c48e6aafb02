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


def test_environment_names_are_case_insensitive_and_merge_into_file_sections(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """`spendgate_smtp__host` sets smtp.host and keeps the file's smtp.port; secrets keys are lower case."""
    cfg = tmp_path / "spendgate.yaml"
    cfg.write_text("smtp:\n  host: file.example\n  port: 2525\n")
    monkeypatch.setenv("SPENDGATE_CONFIG", str(cfg))
    monkeypatch.setenv("spendgate_smtp__host", "env.example")
    monkeypatch.setenv("SPENDGATE_ALERTS__SECRETS__PLATFORM_SLACK", "https://hooks.example/x")
    s = load_settings()
    assert (s.smtp.host, s.smtp.port) == ("env.example", 2525)
    assert s.alerts.secrets["platform_slack"].get_secret_value() == "https://hooks.example/x"


def test_list_settings_take_json_and_a_bad_one_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    """A list setting reads JSON from its variable; text that is not JSON is a one-line ConfigError."""
    monkeypatch.setenv("SPENDGATE_ENFORCEMENT__THRESHOLDS_PCT", "[70, 90, 100]")
    assert load_settings().enforcement.thresholds_pct == [70, 90, 100]
    monkeypatch.setenv("SPENDGATE_ENFORCEMENT__THRESHOLDS_PCT", "70,90,100")
    with pytest.raises(ConfigError, match="SPENDGATE_ENFORCEMENT__THRESHOLDS_PCT: expected JSON"):
        load_settings()


def test_a_string_setting_is_never_json_decoded(monkeypatch: pytest.MonkeyPatch) -> None:
    """A password that looks like JSON stays the text it is."""
    monkeypatch.setenv("SPENDGATE_SMTP__PASSWORD", '{"not": "json to me"}')
    s = load_settings()
    assert s.smtp.password is not None and s.smtp.password.get_secret_value() == '{"not": "json to me"}'


def test_unreadable_or_malformed_config_files_are_config_errors(monkeypatch: pytest.MonkeyPatch,
                                                                 tmp_path: Path) -> None:
    """A named config file that is missing, not YAML, or not a mapping: a ConfigError naming the file."""
    missing = tmp_path / "nope.yaml"
    monkeypatch.setenv("SPENDGATE_CONFIG", str(missing))
    with pytest.raises(ConfigError, match=r"nope\.yaml"):
        load_settings()
    for text in ("bus: [unclosed\n", "- a list\n- not a mapping\n"):
        bad = tmp_path / "bad.yaml"
        bad.write_text(text)
        monkeypatch.setenv("SPENDGATE_CONFIG", str(bad))
        with pytest.raises(ConfigError, match=r"bad\.yaml"):
            load_settings()


def test_unknown_variables_are_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    """SPENDGATE_TEST_DATABASE_URL and other variables that name no setting change nothing."""
    monkeypatch.setenv("SPENDGATE_TEST_DATABASE_URL", "postgresql://elsewhere/x")
    monkeypatch.setenv("SPENDGATE_SMTP__NO_SUCH_THING", "1")
    s = load_settings()
    assert s.database_url is None or "elsewhere" not in s.database_url


def test_otlp_endpoint_from_the_standard_variables(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Tracing is off by default; OTEL_EXPORTER_OTLP_ENDPOINT gets /v1/traces, the traces variable is used
    as is and beats it, and spendgate's own setting beats both."""
    monkeypatch.setenv("SPENDGATE_DATA_DIR", str(tmp_path))
    for name in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "SPENDGATE_OTEL__ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    assert load_settings().otel.endpoint is None
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318/")
    assert load_settings().otel.endpoint == "http://collector:4318/v1/traces"
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://traces:4318/custom")
    assert load_settings().otel.endpoint == "http://traces:4318/custom"
    monkeypatch.setenv("SPENDGATE_OTEL__SERVICE_NAME", "gateway")
    monkeypatch.setenv("SPENDGATE_OTEL__ENDPOINT", "http://ours:4318/v1/traces")
    s = load_settings()
    assert s.otel.endpoint == "http://ours:4318/v1/traces" and s.otel.service_name == "gateway"


def test_console_sign_in_settings_are_checked_with_clear_errors() -> None:
    """Plain http off localhost, a redirect URL that is not the callback, an empty role map, an unknown role,
    insecure cookies on a real host and a negative raise limit are each refused, naming the setting."""
    import pytest

    from spendgate.core.config import load_settings
    from spendgate.domain.errors import ConfigError

    good = {"issuer": "https://idp.example.com", "client_id": "c", "redirect_url": "https://spend.example.com/auth/callback",
            "role_map": {"finops": "finops"}}
    assert load_settings(console={"oidc": good}).console.oidc is not None
    cases = [
        ({"oidc": {**good, "issuer": "http://idp.example.com"}}, "must use https"),
        ({"oidc": {**good, "redirect_url": "https://spend.example.com/"}}, "/auth/callback"),
        ({"oidc": {**good, "role_map": {}}}, "role_map is empty"),
        ({"oidc": {**good, "role_map": {"x": "root"}}}, "role_map.x"),
        ({"oidc": good, "secure_cookies": False}, "secure_cookies is off"),
        ({"manager_raise_limit_usd": "-5"}, "must not be negative"),
        ({"oidc": {**good, "client_secret_file": "/x"}}, "client_secret_file"),
    ]
    for console, expected in cases:
        with pytest.raises(ConfigError, match=expected.replace(".", r"\.")):
            load_settings(console=console)
    local = {**good, "issuer": "http://127.0.0.1:9400", "redirect_url": "http://localhost:8081/auth/callback"}
    assert not load_settings(console={"oidc": local, "secure_cookies": False}).console.secure_cookies


def test_an_unknown_top_level_key_in_the_file_is_an_error_naming_it(monkeypatch: pytest.MonkeyPatch,
                                                                    tmp_path: Path) -> None:
    """A misspelt or invented section (``proxy_prot:``, ``proxy: {port: …}``) is a ConfigError naming the key and
    the likely setting, not silently dropped; a huge key is quoted short."""
    bad = tmp_path / "spendgate.yaml"
    monkeypatch.setenv("SPENDGATE_CONFIG", str(bad))
    bad.write_text("proxy_prot: 9000\nproxy:\n  port: 99999\n")
    with pytest.raises(ConfigError, match=r"'proxy_prot' \(did you mean 'proxy_port'\?\), 'proxy'") as caught:
        load_settings()
    assert "spendgate.yaml" in str(caught.value)
    bad.write_text(f"{'k' * 100_000}: 1\n")
    with pytest.raises(ConfigError) as caught:
        load_settings()
    assert len(str(caught.value)) < 1_000
