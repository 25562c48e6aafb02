"""OpenTelemetry: a proxied request and the ledger's fold exported over OTLP/HTTP to a real receiver."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import aiohttp

from spendgate.core.config import load_settings
from spendgate.core.tracing import open_tracer, policy_version
from tests.support.factories import usage_event
from tests.support.ledger import running_ledger
from tests.support.otlp import OtlpReceiver, spans_named
from tests.support.ports import free_ports
from tests.support.proxy_harness import UPSTREAM_KEY, published_usage, running_proxy
from tests.support.waiting import eventually

PROMPT = "the secret plan for world domination"
META = json.dumps({"session_id": "sess-otel", "turn_id": "turn-7"})


async def test_a_proxied_request_and_its_fold_arrive_as_genai_spans(db_url: str, tmp_path: Path) -> None:
    """One streamed Responses request: its span carries the GenAI and spendgate attributes, the ledger's
    fold of its event is a span too, and no prompt, completion or key is in what was exported."""
    async with OtlpReceiver() as rx, running_proxy(
            db_url, tmp_path, otel={"endpoint": rx.endpoint, "export_interval_s": 0.05}) as h:
        body = {"model": "gpt-5.1", "input": PROMPT, "stream": True}
        headers = h.headers(**{"session-id": "sess-otel", "x-codex-turn-metadata": META})
        async with aiohttp.ClientSession() as http, \
                http.post(f"{h.base_url}/responses", json=body, headers=headers) as response:
            assert response.status == 200
            answer = await response.read()
        [event] = await eventually(lambda: published_usage(h.runtime.pool), what="the usage event")
        [span] = await eventually(lambda: spans_named(rx, "chat gpt-5.1"), what="the request span")
        async with running_ledger(h.runtime.pool, h.runtime.bus, tracer=h.runtime.tracer):
            [fold] = await eventually(lambda: spans_named(rx, "spendgate.ledger.fold"), what="the fold span")

    a = span.attributes
    assert span.kind == 3  # SPAN_KIND_CLIENT
    assert (a["gen_ai.operation.name"], a["gen_ai.provider.name"]) == ("chat", "openai")
    assert (a["gen_ai.request.model"], a["gen_ai.response.model"]) == ("gpt-5.1", "gpt-5.1")
    assert (a["gen_ai.usage.input_tokens"], a["gen_ai.usage.output_tokens"],
            a["gen_ai.usage.cache_read.input_tokens"]) == (event.input_tokens, event.output_tokens,
                                                           event.cached_tokens)
    assert a["gen_ai.usage.input_tokens"] > 0 and a["spendgate.cost_micros"] == event.cost_micros > 0
    assert (a["spendgate.session"], a["spendgate.turn"], a["gen_ai.conversation.id"]) == (
        "sess-otel", "turn-7", "sess-otel")
    assert (a["spendgate.developer"], a["spendgate.team"], a["spendgate.stage"]) == ("alice", "platform", "ok")
    assert a["spendgate.downgraded"] is False and a["http.response.status_code"] == 200
    assert a["spendgate.event_id"] == event.event_id
    assert a["spendgate.policy_version"] == policy_version(h.runtime.settings)
    assert span.end_ns - span.start_ns == event.latency_ms * 1_000_000
    assert span.resource["service.name"] == "spendgate"
    assert span.resource["service.instance.id"] == "proxy-test"
    assert fold.attributes["spendgate.fold.inserted"] == 1
    assert fold.attributes["messaging.batch.message_count"] == 1
    exported = b"".join(rx.bodies)
    assert b"word0" in answer  # the fake upstream's completion text
    for secret in (PROMPT.encode(), h.secret.encode(), UPSTREAM_KEY.encode(), b"word0"):
        assert secret not in exported


def test_tracing_is_off_by_default_and_imports_no_opentelemetry(tmp_path: Path) -> None:
    """No endpoint configured: no tracer, and building the proxy's app never imports opentelemetry."""
    code = (
        "import sys\n"
        "from spendgate.core.config import load_settings\n"
        "from spendgate.core.tracing import open_tracer\n"
        "import spendgate.proxy.service, spendgate.ledger.service, spendgate.alerter.service\n"
        f"settings = load_settings(data_dir={str(tmp_path)!r})\n"
        "assert open_tracer(settings) is None\n"
        "print(sorted(m for m in sys.modules if m.startswith('opentelemetry')))\n"
    )
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_a_refusing_collector_does_not_hold_up_the_stop(tmp_path: Path) -> None:
    """Spans for a collector that refuses connections: the stop waits SHUTDOWN_WAIT_S, not the SDK's
    retries until its export timeout (7.5 s measured before the bound)."""
    from spendgate.core.otel import SHUTDOWN_WAIT_S

    [port] = free_ports(1)  # nothing listens there
    tracer = open_tracer(load_settings(data_dir=tmp_path, otel={"endpoint": f"http://127.0.0.1:{port}/v1/traces"}))
    assert tracer is not None
    for _ in range(10):
        tracer.request(usage_event())
    started = time.monotonic()
    tracer.shutdown()
    assert time.monotonic() - started < SHUTDOWN_WAIT_S + 0.5
