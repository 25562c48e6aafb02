"""One adapter per upstream kind: the URL, headers and body a request is sent with.

``openai`` (api.openai.com or any OpenAI-compatible server): the route's path under the upstream's base
URL, ``Authorization: Bearer <key>``. ``azure`` (Azure OpenAI): the key in the ``api-key`` header (no
``Authorization`` at all), the model named by its deployment, and one of Azure's two path forms:

- ``api_version: v1`` (the default): ``{url}/openai/v1/{route}``, the deployment name as the body's
  ``model`` (Azure's OpenAI-compatible "v1" API, which also serves the Responses API);
- a dated ``api_version`` (``2024-10-21``): ``{url}/openai/deployments/{deployment}/{route}?api-version=...``
  (chat completions, completions, embeddings, images, audio; not the Responses API).

``anthropic`` (Anthropic's Messages API, on the Anthropic routes only): the route's path under the base
URL (``https://api.anthropic.com/v1``), the key as ``x-api-key`` (never ``Authorization``), the client's
``anthropic-version`` / ``anthropic-beta`` passed as sent.

A kind that translates the request into another API adds its adapter to :data:`ADAPTERS` under its
``kind`` and its name to ``core.config_providers.UPSTREAM_KINDS``; Bedrock (``bedrock.py``), which translates the
answer too, is dispatched before the pool for now (``handler._open_bedrock_or_upstream``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import msgspec
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from spendgate.proxy.anthropic import anthropic_headers
from spendgate.proxy.forwarding import upstream_headers, upstream_url
from spendgate.proxy.routes import Resolved
from spendgate.proxy.upstreams import Upstream


@dataclass(frozen=True, slots=True)
class Outgoing:
    """A request as one upstream is to receive it."""

    url: URL
    headers: CIMultiDict[str]
    body: bytes | None


class Adapter(Protocol):
    def prepare(self, upstream: Upstream, client: CIMultiDictProxy[str], resolved: Resolved, body: bytes,
                model: str | None) -> Outgoing: ...


def _json_headers(headers: CIMultiDict[str], resolved: Resolved, body: bytes) -> CIMultiDict[str]:
    if resolved.spec.body == "json" and body:
        headers["Content-Type"] = "application/json"  # it was read as JSON, whatever it was labelled
    return headers


class OpenAICompatible:
    def prepare(self, upstream: Upstream, client: CIMultiDictProxy[str], resolved: Resolved, body: bytes,
                model: str | None) -> Outgoing:
        headers = _json_headers(upstream_headers(client, upstream.key), resolved, body)
        return Outgoing(upstream_url(upstream.url, resolved.upstream_path, resolved.query), headers, body or None)


class Azure:
    def prepare(self, upstream: Upstream, client: CIMultiDictProxy[str], resolved: Resolved, body: bytes,
                model: str | None) -> Outgoing:
        headers = _json_headers(upstream_headers(client, None), resolved, body)
        if upstream.key:
            headers["api-key"] = upstream.key
        deployment = upstream.deployment(model)
        base = upstream.url.rstrip("/") + "/openai"
        query = resolved.query
        if upstream.api_version == "v1":
            base += "/v1"
        else:
            if deployment is not None:
                base += f"/deployments/{deployment}"
            query = f"api-version={upstream.api_version}" + (f"&{query}" if query else "")
        if deployment is not None and deployment != model and resolved.spec.body == "json" and body:
            body = _with_model(body, deployment)
        return Outgoing(upstream_url(base, resolved.upstream_path, query), headers, body or None)


class Anthropic:
    def prepare(self, upstream: Upstream, client: CIMultiDictProxy[str], resolved: Resolved, body: bytes,
                model: str | None) -> Outgoing:
        headers = _json_headers(anthropic_headers(client, upstream.key), resolved, body)
        return Outgoing(upstream_url(upstream.url, resolved.upstream_path, resolved.query), headers, body or None)


def _with_model(body: bytes, model: str) -> bytes:
    doc = msgspec.json.decode(body)
    if not isinstance(doc, dict):
        return body
    doc["model"] = model
    return msgspec.json.encode(doc)


ADAPTERS: dict[str, Adapter] = {"openai": OpenAICompatible(), "azure": Azure(), "anthropic": Anthropic()}
