"""What `spendgate up` tells a person on a first run: warnings, the URLs, progress, and logs they can read."""

from __future__ import annotations

import asyncio
import io
import json
import re

import structlog
from pydantic import SecretStr

from spendgate.core.config import Settings
from spendgate.core.logs import configure_logging
from spendgate.core.progress import ticking
from spendgate.up import first_run_warnings, ready_banner


class Terminal(io.StringIO):
    """A stream that says it is a terminal."""

    def isatty(self) -> bool:
        return True


def logged_line(stream: io.StringIO, **fmt: str) -> str:
    session = structlog.get_config()
    configure_logging("info", stream=stream, **fmt)  # type: ignore[arg-type]
    try:
        structlog.get_logger("first-run-test").warning("delivery failed", target="slack:x", attempt=2)
    finally:
        structlog.configure(**session)  # the test session's configuration again
    return stream.getvalue().strip()


def test_no_provider_key_for_a_real_provider_and_no_admin_token_are_warned_of() -> None:
    """The warnings name what to set, and the fake upstream to try spendgate without a key."""
    missing, no_admin = first_run_warnings(Settings(upstream_key=None, admin_token=None))
    assert missing.startswith("no upstream key: requests are forwarded to https://api.openai.com/v1")
    assert "SPENDGATE_UPSTREAM_KEY" in missing and "spendgate fake-upstream" in missing
    assert "SPENDGATE_UPSTREAM_URL=http://127.0.0.1:9090/v1" in missing
    assert no_admin.startswith("no admin token") and "SPENDGATE_ADMIN_TOKEN" in no_admin
    ready = Settings(upstream_key=SecretStr("sk-real"), admin_token=SecretStr("t"))
    fake = Settings(upstream_url="http://127.0.0.1:9090/v1", upstream_key=None, admin_token=SecretStr("t"))
    assert first_run_warnings(ready) == first_run_warnings(fake) == []


def test_the_banner_names_the_proxy_and_admin_urls() -> None:
    """Proxy URL and its upstream, the admin API's URL (or that it is off), then the Codex snippet."""
    on = ready_banner(Settings(proxy_port=18080, admin_port=18081, admin_token=SecretStr("t")))
    assert "proxy      http://127.0.0.1:18080/v1  -> upstream https://api.openai.com/v1" in on
    assert "admin API  http://127.0.0.1:18081" in on and 'base_url = "http://127.0.0.1:18080/v1"' in on
    assert "admin API  off: set SPENDGATE_ADMIN_TOKEN" in ready_banner(Settings(admin_token=None))
    assert "/v1/messages -> Anthropic upstream https://api.anthropic.com/v1\n" in on
    pooled = Settings(upstreams=[{"name": "ant-a", "kind": "anthropic", "url": "http://a/v1", "key": "sk-ant-a"},
                                 {"name": "ant-b", "kind": "anthropic", "url": "http://b/v1"}])
    banner = ready_banner(pooled)
    assert "/v1/messages -> Anthropic upstream ant-a http://a/v1, ant-b http://b/v1\n" in banner
    assert "sk-ant-a" not in banner


def test_logs_are_human_lines_on_a_terminal_and_json_otherwise_or_when_asked() -> None:
    """auto: console on a TTY, JSON on a file or pipe; json / console choose whatever the stream."""
    human = re.sub(r"\x1b\[[0-9;]*m", "", logged_line(Terminal()))  # coloured on a terminal
    assert "[warning  ] delivery failed" in human and "target=slack:x" in human and not human.startswith("{")
    piped = json.loads(logged_line(io.StringIO()))
    assert (piped["event"], piped["level"], piped["attempt"]) == ("delivery failed", "warning", 2)
    assert json.loads(logged_line(Terminal(), fmt="json"))["target"] == "slack:x"
    assert not logged_line(io.StringIO(), fmt="console").startswith("{")
    assert Settings(log_format="json").log_format == "json"


async def test_a_slow_step_says_it_is_still_running() -> None:
    """While a step runs, a line every tick says how long; its result comes back unchanged."""
    lines: list[str] = []
    release = asyncio.Event()

    def hear(line: str) -> None:
        lines.append(line)
        if len(lines) == 2:
            release.set()

    async def step() -> str:
        await release.wait()
        return "done"

    assert await ticking(step(), hear, "setting up PostgreSQL", every_s=0.01) == "done"
    assert len(lines) == 2 and all(line.startswith("  … still setting up PostgreSQL (") for line in lines)
