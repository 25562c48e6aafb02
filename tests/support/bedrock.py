"""Bedrock for tests: the fake Bedrock's credentials in the standard AWS variables, the gateway's
``bedrock`` settings pointed at the fake upstream, and the cost worked out by hand from Bedrock's counts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from spendgate.proxy.fake_bedrock import TEST_ACCESS_KEY_ID, TEST_REGION, TEST_SECRET_ACCESS_KEY, ServedConverse
from tests.support.proxy_harness import FakeServer

SONNET_ID = "us.anthropic.claude-sonnet-4-5-20250929-v1:0"
HAIKU_ID = "us.anthropic.claude-haiku-4-5-20251001-v1:0"
PRICES = {"claude-sonnet-4-5": (3_000_000, 300_000, 3_750_000, 15_000_000),
          "claude-haiku-4-5": (1_000_000, 100_000, 1_250_000, 5_000_000)}
"""Micro-dollars per 1M tokens: input, cache read, 5-minute cache write (1.25 x input), output."""


def use_fake_aws_credentials(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The fake's credentials in the standard AWS variables, and nothing else botocore could find."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", TEST_ACCESS_KEY_ID)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", TEST_SECRET_ACCESS_KEY)
    for name in ("AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


def bedrock_settings(fake: FakeServer, **enforcement: Any) -> dict[str, Any]:
    """Settings serving claude-sonnet-4-5 and claude-haiku-4-5 from the fake upstream's Bedrock."""
    values: dict[str, Any] = {"bedrock": {
        "region": TEST_REGION, "endpoint_url": f"http://127.0.0.1:{fake.port}",
        "models": {"claude-sonnet-4-5": SONNET_ID, "claude-haiku-4-5": HAIKU_ID}}}
    if enforcement:
        values["enforcement"] = enforcement
    return values


def hand_cost(model: str, served: ServedConverse) -> int:
    """The cost from Bedrock's own counts and the published prices, not with spendgate's cost function."""
    i, r, w, o = PRICES[model]
    numerator = (served.input_tokens * i + served.cache_read_tokens * r + served.cache_write_tokens * w
                 + served.output_tokens * o)
    return (numerator + 500_000) // 1_000_000
