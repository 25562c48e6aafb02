"""What serving a model from Bedrock adds on the proxy's request path, per request, in CPU time.

    .venv/bin/python -m benchmarks.bedrock_translation [--calls 400] [--events 400]

Prints µs per request for
- ``translate``: a Codex-shaped Responses body (~40 KB: a 60-call tool history) to a Converse body, and
  the Converse body encoded (:func:`spendgate.proxy.bedrock_request.translate`);
- ``sign``: botocore's SigV4 signature of that body (``AWSRequest`` + ``SigV4Auth.add_auth``);
- ``stream``: a Converse stream of ``--events`` text deltas plus tool call, metadata and the rest, as AWS
  event-stream frames, read with :mod:`spendgate.proxy.eventstream`, translated to Responses SSE and
  tapped for usage as the proxy does (and, for reference, the frames read with botocore's
  ``EventStreamBuffer`` alone);
- the baselines the proxy pays anyway for an OpenAI model, measured in the same run: the JSON decode +
  encode of the same body (the model rewrite), and the stream tap's pass over an OpenAI stream with the
  same number of deltas.

Targets (same run): translate <= 4x the body's decode + encode (it does both, decodes each call's
arguments and walks every item: 2.2-3.5x in runs on the shared 2-core machine);
sign <= 1.5x it (SigV4 hashes the whole body and builds botocore's canonical request); the stream's
read + translate + tap <= 25 µs per delta event. Exits non-zero when one is missed.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a file (python benchmarks/x.py): make the repo importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import msgspec
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.eventstream import EventStreamBuffer

from benchmarks.enforcement_decision import codex_body
from benchmarks.support import Verdict
from spendgate.proxy.bedrock_request import translate
from spendgate.proxy.bedrock_response import StreamTranslator
from spendgate.proxy.eventstream import FrameReader
from spendgate.proxy.fake_bedrock import TEST_ACCESS_KEY_ID, TEST_SECRET_ACCESS_KEY, event_frame
from spendgate.proxy.fake_streams import responses_events
from spendgate.proxy.tap import StreamTap

URL = "https://bedrock-runtime.us-east-1.amazonaws.com/model/anthropic.claude-sonnet-4-5-20250929-v1%3A0/converse"


def per_call_us(fn: Any, calls: int) -> float:
    t0 = time.process_time()
    for i in range(calls):
        fn(i)
    return (time.process_time() - t0) / calls * 1e6


def converse_stream(events: int) -> bytes:
    frames = [event_frame("messageStart", {"role": "assistant"})]
    frames += [event_frame("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": f" word{i}"}})
               for i in range(events)]
    frames.append(event_frame("contentBlockStop", {"contentBlockIndex": 0}))
    frames.append(event_frame("contentBlockStart", {"contentBlockIndex": 1, "start": {"toolUse": {
        "toolUseId": "tooluse_1", "name": "exec_command"}}}))
    frames.append(event_frame("contentBlockDelta", {"contentBlockIndex": 1, "delta": {"toolUse": {
        "input": '{"cmd":"ls"}'}}}))
    frames.append(event_frame("contentBlockStop", {"contentBlockIndex": 1}))
    frames.append(event_frame("messageStop", {"stopReason": "tool_use"}))
    frames.append(event_frame("metadata", {"usage": {"inputTokens": 900, "outputTokens": events,
                                                     "totalTokens": 900 + events}}))
    return b"".join(frames)


def main(calls: int, events: int) -> int:
    bodies = [codex_body(i)[1] for i in range(32)]
    for i, raw in enumerate(bodies):
        doc = json.loads(raw)
        doc["model"], doc["instructions"] = "claude-sonnet-4-5", "You are Codex. " * 300
        bodies[i] = json.dumps(doc).encode()
    print(f"Codex-shaped body: {len(bodies[0]):,} bytes; stream: {events} text deltas")
    credentials = Credentials(TEST_ACCESS_KEY_ID, TEST_SECRET_ACCESS_KEY).get_frozen_credentials()
    converse = [msgspec.json.encode(translate("/responses", b).body) for b in bodies]

    def rewrite(i: int) -> None:
        msgspec.json.encode(msgspec.json.decode(bodies[i % 32]))

    def translate_only(i: int) -> None:
        msgspec.json.encode(translate("/responses", bodies[i % 32]).body)

    def sign(i: int) -> None:
        request = AWSRequest(method="POST", url=URL, data=converse[i % 32],
                             headers={"Content-Type": "application/json"})
        SigV4Auth(credentials, "bedrock", "us-east-1").add_auth(request)

    stream = converse_stream(events)
    call = translate("/responses", bodies[0])
    chunks = [stream[i:i + 1400] for i in range(0, len(stream), 1400)]  # what the socket hands over

    def bedrock_stream(_: int) -> None:
        translator = StreamTranslator(call, "bench")
        reader = FrameReader()
        out = []
        for chunk in chunks:
            for frame in reader.feed(chunk):
                kind = str(frame.headers[":event-type"])
                out.append(translator.event(kind, msgspec.json.decode(frame.payload)))
        out.append(translator.close())
        tap = StreamTap()
        tap.feed(b"".join(out))
        assert tap.usage is not None

    def botocore_frames(_: int) -> None:
        frames = EventStreamBuffer()
        for chunk in chunks:
            frames.add_data(chunk)
            for _message in frames:
                pass

    openai_stream = b"".join(responses_events(1, "gpt-5.1", " ".join(f"word{i}" for i in range(events)),
                                              (900, 0, events, 0), False, events))

    def openai_tap(_: int) -> None:
        tap = StreamTap()
        for i in range(0, len(openai_stream), 1400):
            tap.feed(openai_stream[i:i + 1400])
        assert tap.usage is not None

    figures = {"rewrite (decode + encode)": per_call_us(rewrite, calls),
               "translate": per_call_us(translate_only, calls), "sign": per_call_us(sign, calls),
               "openai stream tap": per_call_us(openai_tap, max(10, calls // 10)),
               "bedrock stream parse + translate + tap": per_call_us(bedrock_stream, max(10, calls // 10)),
               "(botocore's frame parser alone)": per_call_us(botocore_frames, max(10, calls // 10))}
    for name, us in figures.items():
        print(f"{name:<40} {us:>10,.1f} µs/request")
    verdict = Verdict("bedrock translation")
    for name, most in (("translate", 4.0), ("sign", 1.5)):
        verdict.at_most(f"{name} vs the body's decode + encode", figures[name], figures["rewrite (decode + encode)"],
                        most, unit=" µs")
    per_delta = (figures["bedrock stream parse + translate + tap"]) / events
    verdict.check("stream read + translate + tap per delta event", f"{per_delta:.1f} µs", "<= 25 µs", per_delta <= 25)
    return verdict.finish()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=400)
    parser.add_argument("--events", type=int, default=400)
    args = parser.parse_args()
    sys.exit(main(args.calls, args.events))
