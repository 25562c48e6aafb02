"""Checks the settings' field types cannot express: numbers that must be finite and durations that must not
be negative (in every section, present and future), addresses that must parse, a time zone that must exist,
and TLS files that must hold PEM. Each failure is a ``ValueError`` whose message names the setting and what
it accepts, so ``load_settings`` turns it into one clear line at start instead of a traceback (or a busy
loop) once a service uses the value."""

from __future__ import annotations

import math
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pydantic import BaseModel

_DURATION_SUFFIXES = ("_s", "_ms")
_PEM_SCAN_BYTES = 4 * 1024 * 1024


def numbers(model: BaseModel, prefix: str = "") -> None:
    """Every float setting finite (``nan`` and ``inf`` pass a ``gt=0`` bound, or none is declared), and every
    duration (a name ending ``_s`` or ``_ms``) not negative."""
    for name, value in _leaves(model, prefix):
        if isinstance(value, bool) or not isinstance(value, int | float):
            continue
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"{name}: must be a finite number, not {value}")
        if name.endswith(_DURATION_SUFFIXES) and value < 0:
            raise ValueError(f"{name}: a duration must not be negative (got {value})")


def _leaves(model: BaseModel, prefix: str) -> Iterator[tuple[str, Any]]:
    for field in type(model).model_fields:
        value = getattr(model, field)
        name = f"{prefix}{field}"
        if isinstance(value, BaseModel):
            yield from _leaves(value, name + ".")
        elif isinstance(value, list):
            for i, item in enumerate(value):
                if isinstance(item, BaseModel):
                    yield from _leaves(item, f"{name}.{i}.")
        else:
            yield name, value


def http_url(name: str, url: str, *, example: str) -> None:
    """``url`` is an absolute http(s) URL with a host (``garbage``, ``http://``, ``ftp://…`` are not)."""
    try:
        parts = urllib.parse.urlsplit(url)
        parts.port  # noqa: B018 (raises on a port that is not a number in range)
    except ValueError:
        parts = None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{name}: must be an http(s) URL such as {example}, not {url[:80]!r}")


def kafka_bootstrap(bus: str) -> None:
    """``kafka://host:port[,host:port]``: every broker a host, every port a number from 1 to 65535."""
    servers = bus.removeprefix("kafka://")
    for server in servers.split(","):
        try:
            parts = urllib.parse.urlsplit("//" + server.strip())
            port = parts.port
        except ValueError:
            parts, port = None, None
        if parts is None or not parts.hostname or (":" in server and port is None and not server.endswith("]")):
            raise ValueError(f"bus: {bus[:120]!r} is not kafka://host:port[,host:port] (each broker a host and "
                             "a port from 1 to 65535)")


POSTGRES_SSLMODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")


def database_url(url: str) -> None:
    """A ``postgresql://`` (or ``postgres://``) URL whose ``sslmode``, if any, is one libpq knows."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("postgresql", "postgres"):
        raise ValueError("database_url: must be a postgresql:// URL such as "
                         "postgresql://user@db.example.com:5432/spendgate, not one with scheme "
                         f"{parts.scheme[:20]!r}")
    mode = dict(urllib.parse.parse_qsl(parts.query)).get("sslmode")
    if mode is not None and mode not in POSTGRES_SSLMODES:
        raise ValueError(f"database_url: sslmode={mode[:40]!r} is not one of {', '.join(POSTGRES_SSLMODES)}")


def timezone(name: str, value: str) -> None:
    """``value`` names an IANA time zone this machine knows (``Europe/Paris``, ``UTC``): :func:`periods.zone`,
    the one place that reads a zone name (a name too long for a file name included)."""
    from spendgate.domain.errors import ConfigError
    from spendgate.domain.periods import zone

    try:
        zone(value)
    except ConfigError:
        raise ValueError(f"{name}: {value[:60]!r} is not an IANA time zone (such as UTC or Europe/Paris)") from None


def pem_file(name: str, path: Path) -> None:
    """``path`` is a readable file holding PEM (``-----BEGIN``): a directory, a missing file or a DER / text
    file would otherwise fail only at the first connection, with the TLS library's own error."""
    if not path.is_file():
        raise ValueError(f"{name}: {path} does not exist or is not a file")
    try:
        with path.open("rb") as file:
            head = file.read(_PEM_SCAN_BYTES)
    except OSError as exc:
        raise ValueError(f"{name}: cannot read {path} ({exc.strerror})") from None
    if b"-----BEGIN " not in head:
        raise ValueError(f"{name}: {path} is not a PEM file (no -----BEGIN line); convert a DER file with openssl")
