"""Channel secrets (webhook URLs, routing keys, signing keys): from the settings (environment) or a
secrets file or directory. Values are handed to channels only; never logged or printed."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from pydantic import SecretStr

from spendgate.core.alert_routes import Rules, SecretRef, Value
from spendgate.core.config_services import AlertSettings, SmtpSettings
from spendgate.core.yamltext import parse_yaml
from spendgate.domain.errors import ConfigError


class Secrets:
    def __init__(self, values: Mapping[str, str], *, source: str = "settings") -> None:
        self._values = {k.lower(): v for k, v in values.items()}
        self._source = source

    def __repr__(self) -> str:
        return f"Secrets({len(self._values)} names)"

    @classmethod
    def from_settings(cls, alerts: AlertSettings) -> Secrets:
        values: dict[str, str] = {}
        path = alerts.secrets_file
        if path is not None:
            values.update(_read(path))
        values.update({k.lower(): v.get_secret_value() for k, v in alerts.secrets.items()})
        return cls(values, source=str(path) if path else "settings")

    def get(self, name: str) -> str | None:
        return self._values.get(name.lower())

    def smtp(self, smtp: SmtpSettings) -> SmtpSettings:
        """SMTP settings with ``smtp_username`` / ``smtp_password`` from the secrets when not set directly."""
        update: dict[str, object] = {}
        if smtp.username is None and self.get("smtp_username"):
            update["username"] = self.get("smtp_username")
        password = self.get("smtp_password")
        if smtp.password is None and password:
            update["password"] = SecretStr(password)
        return smtp.model_copy(update=update) if update else smtp

    def resolve(self, value: Value, *, routes_file: str = "<routes>") -> str:
        if not isinstance(value, SecretRef):
            return value
        try:
            return self._values[value.name]
        except KeyError:
            raise ConfigError(
                f"{routes_file}:{value.line}: secret {value.name!r} is not set (set "
                f"SPENDGATE_ALERTS__SECRETS__{value.name.upper()} or add it to alerts.secrets_file)"
            ) from None

    def check(self, rules: Rules, *, routes_file: str = "<routes>") -> None:
        """Fail at start-up, naming the line, when a route's target needs a secret nobody set."""
        for ref in rules.secret_refs():
            self.resolve(ref, routes_file=routes_file)


def _read(path: Path) -> dict[str, str]:
    try:
        if path.is_dir():  # one file per secret, as Docker and Kubernetes mount them
            return {p.name.lower(): p.read_text().strip() for p in path.iterdir() if p.is_file()}
        data = parse_yaml(path.read_text(), source=f"alert secrets file {path}", aliases=True) or {}
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read alert secrets file {path}: {type(exc).__name__}") from None
    except ConfigError:  # its message could quote a secret
        raise ConfigError(f"cannot read alert secrets file {path}: not YAML of names and values") from None
    if not isinstance(data, dict) or not all(isinstance(v, str | int) for v in data.values()):
        raise ConfigError(f"alert secrets file {path} must map names to string values")
    return {str(k).lower(): str(v) for k, v in data.items()}
