"""structlog configured once: on stderr, human-readable lines on a terminal and JSON lines otherwise;
request context from contextvars.

Prompts and completions are never logged: request handlers log ids, sizes and outcomes only.
"""

from __future__ import annotations

import logging
import sys
from typing import Literal, TextIO

import structlog

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}
LogFormat = Literal["auto", "json", "console"]


def _is_tty(stream: TextIO) -> bool:
    isatty = getattr(stream, "isatty", None)
    return bool(isatty is not None and isatty())


def renders_json(fmt: LogFormat, stream: TextIO) -> bool:
    """``auto`` is JSON unless ``stream`` is a terminal (a person reads it)."""
    return not _is_tty(stream) if fmt == "auto" else fmt == "json"


def configure_logging(level: str = "info", *, fmt: LogFormat = "auto", stream: TextIO | None = None) -> None:
    """Log at ``level`` and above to ``stream`` (stderr), as ``fmt`` says (see :func:`renders_json`)."""
    out = stream or sys.stderr
    as_json = renders_json(fmt, out)
    time_format = "iso" if as_json else "%Y-%m-%d %H:%M:%S"
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt=time_format, utc=as_json),
            structlog.processors.StackInfoRenderer(),
            *([structlog.processors.format_exc_info] if as_json else []),
            structlog.processors.JSONRenderer() if as_json else structlog.dev.ConsoleRenderer(colors=_is_tty(out)),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS[level]),
        logger_factory=structlog.PrintLoggerFactory(file=out),
        cache_logger_on_first_use=True,
    )


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    return structlog.get_logger(name)  # type: ignore[no-any-return]
