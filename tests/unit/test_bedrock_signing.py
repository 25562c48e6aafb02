"""The Bedrock parts around translation, with no network: the fake's SigV4 check against botocore's own
signer, the fake's event-stream frames and the proxy's frame reader against botocore's parser, the
settings' validation and the credential chain's clear error."""

from __future__ import annotations

import binascii
import struct
import time
from pathlib import Path
from typing import Any

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.eventstream import ChecksumMismatch, EventStreamBuffer
from multidict import CIMultiDict

from spendgate.core.config import load_settings
from spendgate.domain.errors import ConfigError
from spendgate.proxy.bedrock import load_credentials
from spendgate.proxy.eventstream import MAX_FRAME_BYTES, FrameError, FrameReader
from spendgate.proxy.fake_bedrock import (
    TEST_ACCESS_KEY_ID,
    TEST_REGION,
    TEST_SECRET_ACCESS_KEY,
    check_signature,
    event_frame,
    exception_frame,
    frame,
)

URL = "http://127.0.0.1:9/model/anthropic.claude-sonnet-4-5-20250929-v1%3A0/converse"
BODY = b'{"messages":[{"role":"user","content":[{"text":"hi"}]}]}'
SECRETS = {TEST_ACCESS_KEY_ID: TEST_SECRET_ACCESS_KEY}


def signed(secret: str = TEST_SECRET_ACCESS_KEY, *, region: str = TEST_REGION,
           token: str | None = None) -> CIMultiDict[str]:
    """The headers as they reach the server: botocore's, plus the Host the HTTP client adds."""
    request = AWSRequest(method="POST", url=URL, data=BODY, headers={"Content-Type": "application/json"})
    SigV4Auth(Credentials(TEST_ACCESS_KEY_ID, secret, token), "bedrock", region).add_auth(request)
    return CIMultiDict({**dict(request.headers.items()), "Host": "127.0.0.1:9"})


def check(headers: CIMultiDict[str], *, body: bytes = BODY, url: str = URL,
          now: float | None = None) -> tuple[str, str] | None:
    return check_signature("POST", url, headers, body, SECRETS, TEST_REGION, time.time() if now is None else now)


def test_a_request_signed_by_botocore_with_the_right_secret_passes() -> None:
    """botocore's SigV4 signature over the test credentials is accepted, with a session token too."""
    assert check(signed()) is None
    assert check(signed(token="session-token-1")) is None


def test_a_wrong_secret_or_a_tampered_request_is_refused() -> None:
    """Wrong secret, changed body, changed path (model id), wrong region: InvalidSignatureException."""
    assert check(signed("not-the-secret"))[0] == "InvalidSignatureException"  # type: ignore[index]
    assert check(signed(), body=BODY.replace(b"hi", b"ho"))[0] == "InvalidSignatureException"  # type: ignore[index]
    assert check(signed(), url=URL.replace("sonnet", "opus"))[0] == "InvalidSignatureException"  # type: ignore[index]
    assert check(signed(region="eu-west-1"))[0] == "InvalidSignatureException"  # type: ignore[index]


def test_unknown_key_missing_signature_and_stale_date_are_refused() -> None:
    """An unknown access key, no Authorization header, a signature older than five minutes."""
    other = signed()
    other["Authorization"] = other["Authorization"].replace(TEST_ACCESS_KEY_ID, "AKIAUNKNOWN000000000")
    assert check(other)[0] == "UnrecognizedClientException"  # type: ignore[index]
    assert check(CIMultiDict({"Content-Type": "application/json"}))[0] == "MissingAuthenticationTokenException"  # type: ignore[index]
    assert check(signed(), now=time.time() + 600)[0] == "InvalidSignatureException"  # type: ignore[index]


def test_event_stream_frames_parse_with_botocore_and_a_flipped_byte_is_caught() -> None:
    """The fake's frames are what botocore's parser reads (headers, JSON payload), CRC-checked."""
    data = event_frame("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "hi"}}) + exception_frame(
        "throttlingException", "slow down")
    buffer = EventStreamBuffer()
    buffer.add_data(data)
    first, second = list(buffer)
    assert first.headers[":event-type"] == "contentBlockDelta" and first.headers[":message-type"] == "event"
    assert b'"text":"hi"' in first.payload
    assert second.headers[":exception-type"] == "throttlingException"
    broken = bytearray(data)
    broken[20] ^= 0xFF
    corrupt = EventStreamBuffer()
    corrupt.add_data(bytes(broken))
    with pytest.raises(ChecksumMismatch):
        list(corrupt)


def test_the_proxys_frame_reader_agrees_with_botocore_however_the_bytes_are_split() -> None:
    """Frames split at every possible point (and all in one piece) read as botocore reads them: the same
    headers, typed values included, and payloads."""
    frames = [event_frame("messageStart", {"role": "assistant"}),
              event_frame("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "héllo"}}),
              frame({":event-type": "metadata", ":message-type": "event"}, b'{"usage":{}}'),
              exception_frame("throttlingException", "slow down")]
    typed = (b"\x04flag\x00" + b"\x03num\x04" + (-7).to_bytes(4, "big", signed=True) + b"\x02id\x09" + bytes(range(16))
             + b"\x03raw\x06\x00\x03abc")
    prelude = struct.pack(">II", 12 + len(typed) + 2 + 4, len(typed))
    message = prelude + struct.pack(">I", binascii.crc32(prelude)) + typed + b"{}"
    data = b"".join(frames) + message + struct.pack(">I", binascii.crc32(message))
    expected = EventStreamBuffer()
    expected.add_data(data)
    want = [(m.headers, m.payload) for m in expected]
    assert want[-1][0] == {"flag": True, "num": -7, "id": bytes(range(16)), "raw": b"abc"}
    for cut in range(len(data) + 1):
        reader = FrameReader()
        got = reader.feed(data[:cut]) + reader.feed(data[cut:])
        assert [(f.headers, f.payload) for f in got] == want


def test_the_frame_reader_refuses_corrupt_or_oversized_frames() -> None:
    """A flipped bit in the prelude or the body, or a frame claiming more than the cap: FrameError, which
    carries the whole frames read before the bad one."""
    good = event_frame("messageStop", {"stopReason": "end_turn"})
    for at in (2, 9, 20, len(good) - 1):
        broken = bytearray(good)
        broken[at] ^= 0x01
        with pytest.raises(FrameError):
            FrameReader().feed(bytes(broken))
    with pytest.raises(FrameError) as bad_second:
        FrameReader().feed(good + b"\x00" * 12)
    assert [f.payload for f in bad_second.value.frames] == [FrameReader().feed(good)[0].payload]
    prelude = struct.pack(">II", MAX_FRAME_BYTES + 1, 0)
    with pytest.raises(FrameError, match="impossible frame lengths"):
        FrameReader().feed(prelude + struct.pack(">I", binascii.crc32(prelude)))


MODELS = {"claude-sonnet-4-5": "anthropic.claude-sonnet-4-5-20250929-v1:0"}


@pytest.mark.parametrize(("bedrock", "says"), [
    ({"models": MODELS}, "bedrock.region is required"),
    ({"region": "Mars", "models": MODELS}, "is not an AWS region"),
    ({"region": "us-east-1", "endpoint_url": "ftp://x", "models": MODELS}, "is not an http(s) URL"),
    ({"region": "us-east-1", "models": {"claude-sonnet-4-5": "has spaces in it"}}, "is not a Bedrock model id"),
    ({"region": "us-east-1", "models": {"my-private-model": "anthropic.x-v1:0"}}, "no price for 'my-private-model'"),
    ({"region": "us-east-1", "modles": MODELS}, "modles"),
])
def test_bedrock_settings_are_validated_with_clear_errors(bedrock: dict[str, Any], says: str, tmp_path: Path) -> None:
    """A missing or malformed region, endpoint or model id, and a model without a price: a ConfigError
    naming the setting."""
    with pytest.raises(ConfigError, match="bedrock") as refused:
        load_settings(data_dir=tmp_path, bedrock=bedrock)
    assert says in str(refused.value)


def test_valid_bedrock_settings_load() -> None:
    """A region and priced models load; an inference profile ARN is a valid model id."""
    arn = "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.anthropic.claude-haiku-4-5-20251001-v1:0"
    settings = load_settings(bedrock={"region": "us-east-1", "models": {**MODELS, "claude-haiku-4-5": arn}})
    assert settings.bedrock.models["claude-haiku-4-5"] == arn


def test_no_aws_credentials_is_a_config_error_naming_what_to_set(monkeypatch: pytest.MonkeyPatch,
                                                                 tmp_path: Path) -> None:
    """With no AWS variables, files or instance metadata, starting Bedrock says which variables to set."""
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE",
                 "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_CONTAINER_CREDENTIALS_FULL_URI",
                 "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_ROLE_ARN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    settings = load_settings(bedrock={"region": "us-east-1", "models": MODELS})
    with pytest.raises(ConfigError, match="AWS_ACCESS_KEY_ID"):
        load_credentials(settings.bedrock)
    with pytest.raises(ConfigError, match="nope"):
        load_credentials(settings.bedrock.model_copy(update={"profile": "nope"}))
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", TEST_ACCESS_KEY_ID)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", TEST_SECRET_ACCESS_KEY)
    assert load_credentials(settings.bedrock).get_frozen_credentials().access_key == TEST_ACCESS_KEY_ID
