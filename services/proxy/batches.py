"""A batch is priced when it is created: its input file's requests, estimated, at the batch price.

``POST /v1/batches`` names an input file (JSONL, one request per line, all for one model) that the
provider runs later and bills at its batch price. Before forwarding, the proxy reads that file from
the upstream with the organisation's key, estimates each request's tokens as it does for a live
request (body size, output capped), and meters the sum at the batch share of the model's token
price (``pricing.batch_percent``, 50 as OpenAI charges). A file it cannot read, that mixes models or
names none, or that names a model with no price, is refused: nothing is forwarded that cannot be priced.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import aiohttp
import msgspec

from spendgate.domain.enforcement.estimate import SessionEstimator, TokenEstimate
from spendgate.proxy.routes import ID_PATTERN

_ID = re.compile(ID_PATTERN + r"\Z")


class _Line(msgspec.Struct):
    body: Any = None


_line = msgspec.json.Decoder(_Line)


@dataclass(frozen=True, slots=True)
class BatchEstimate:
    model: str
    requests: int
    estimate: TokenEstimate


class BatchError(Exception):
    def __init__(self, message: str, code: str = "invalid_batch") -> None:
        super().__init__(message)
        self.message, self.code = message, code


async def estimate_batch(http: aiohttp.ClientSession, base_url: str, upstream_key: str | None, file_id: Any, *,
                         estimator: SessionEstimator, max_bytes: int) -> BatchEstimate:
    if not isinstance(file_id, str) or not _ID.match(file_id):
        raise BatchError("A batch needs an 'input_file_id' naming an uploaded file.")
    headers = {"Authorization": f"Bearer {upstream_key}"} if upstream_key else {}
    async with http.get(f"{base_url.rstrip('/')}/files/{file_id}/content", headers=headers,
                        allow_redirects=False) as resp:
        if resp.status != 200:
            raise BatchError("spendgate could not read the batch's input file to price it.", "batch_file_unreadable")
        content = await resp.content.read(max_bytes + 1)
    if len(content) > max_bytes:
        raise BatchError(f"The batch's input file is larger than this gateway's limit of {max_bytes} bytes.")
    return estimate_lines(content, estimator)


def estimate_lines(content: bytes, estimator: SessionEstimator) -> BatchEstimate:
    models: set[str] = set()
    requests = input_tokens = output_tokens = 0
    for raw in content.splitlines():
        if not raw.strip():
            continue
        try:
            body = _line.decode(raw).body
        except (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError, RecursionError) as exc:
            raise BatchError("A line of the batch's input file is not a JSON request.") from exc
        model = body.get("model") if isinstance(body, dict) else None
        if not isinstance(model, str) or not model:
            raise BatchError("Every request in the batch's input file must name a model.")
        models.add(model)
        one = estimator.estimate(None, len(raw))
        requests, input_tokens, output_tokens = requests + 1, input_tokens + one.input_tokens, \
            output_tokens + one.output_tokens
    if len(models) != 1:
        raise BatchError("The batch's input file must hold requests for exactly one model.")
    return BatchEstimate(models.pop(), requests, TokenEstimate(input_tokens, output_tokens))
