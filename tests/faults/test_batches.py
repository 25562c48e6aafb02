"""Issue 11, item 3 (batches): a batch is priced when it is created, from its input file's requests at
the batch price; a file that cannot be priced (unreadable, no model, mixed or unknown models) is refused
and never forwarded."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from spendgate.domain.enforcement.estimate import SessionEstimator
from spendgate.domain.enforcement.settings import EnforcementSettings
from spendgate.domain.pricing import SHIPPED_PRICES, ModelPrice, cost_micros
from tests.support.proxy_harness import published_usage, running_proxy
from tests.support.rawhttp import raw_request
from tests.support.waiting import eventually


def _jsonl(*models: str) -> bytes:
    lines = [json.dumps({"custom_id": f"r{i}", "method": "POST", "url": "/v1/responses",
                         "body": {"model": m, "input": "x" * 4_000}}) for i, m in enumerate(models)]
    return "\n".join(lines).encode() + b"\n"


BATCH = b'{"input_file_id": "file-in", "endpoint": "/v1/responses", "completion_window": "24h"}'


async def test_batch_is_metered_at_the_batch_price_of_its_estimate(db_url: str, tmp_path: Path) -> None:
    """Three gpt-5.1 requests in the file: one event, estimated tokens of all three, at half price."""
    async with running_proxy(db_url, tmp_path) as h:
        content = _jsonl("gpt-5.1", "gpt-5.1", "gpt-5.1")
        h.fake.files["file-in"] = content
        resp = await raw_request(h.server.port, "POST", "/v1/batches", body=BATCH, headers={
            "Authorization": f"Bearer {h.secret}", "Content-Type": "application/json"})
        assert resp.status == 200
        [event] = await eventually(lambda: published_usage(h.runtime.pool), what="the batch evented")
        estimator = SessionEstimator(output_cap_tokens=EnforcementSettings().output_estimate_cap_tokens)
        lines = content.splitlines()
        expected_in = sum(estimator.estimate(None, len(line)).input_tokens for line in lines)
        expected_out = sum(estimator.estimate(None, len(line)).output_tokens for line in lines)
        assert (event.endpoint, event.model_used, event.usage_source) == ("/v1/batches", "gpt-5.1", "estimated")
        assert (event.input_tokens, event.output_tokens) == (expected_in, expected_out)
        full = SHIPPED_PRICES["gpt-5.1"]
        half = ModelPrice(full.input_micros // 2, full.cached_input_micros // 2, full.output_micros // 2)
        assert event.cost_micros == cost_micros(half, input_tokens=expected_in, cached_tokens=0,
                                                output_tokens=expected_out) > 0
        assert [r.raw_path for r in h.fake.received] == ["/v1/files/file-in/content", "/v1/batches"]


@pytest.mark.parametrize(("content", "code"), [
    (None, "batch_file_unreadable"),
    (_jsonl("gpt-5.1", "gpt-5.1-mini"), "invalid_batch"),
    (b'{"custom_id": "r", "body": {"input": "no model"}}\n', "invalid_batch"),
    (_jsonl("gpt-9-turbo"), "model_not_found"),
])
async def test_unpriceable_batches_are_refused(db_url: str, tmp_path: Path, content: bytes | None,
                                               code: str) -> None:
    """A missing file, mixed models, a request without a model or an unpriced model: 400, not forwarded."""
    async with running_proxy(db_url, tmp_path) as h:
        if content is not None:
            h.fake.files["file-in"] = content
        resp = await raw_request(h.server.port, "POST", "/v1/batches", body=BATCH, headers={
            "Authorization": f"Bearer {h.secret}", "Content-Type": "application/json"})
        assert resp.status == 400 and resp.json()["error"]["code"] == code
        assert "/v1/batches" not in [r.raw_path for r in h.fake.received]
