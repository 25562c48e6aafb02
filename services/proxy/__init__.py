"""The metered proxy: an OpenAI-compatible pass-through that meters every model request.

Hot path (``handler.py``), per request on ``/v1/*``:

1. authenticate the ``sk-sg-…`` virtual key against an in-memory cache (``keycache.py``: loaded
   whole, refreshed by version on ``LISTEN spendgate_config`` and a 0.25 s poll, so a revoked key is
   refused within a second);
2. resolve the route in the route table (``routes.py``, deny by default: traversal in any encoding is a
   400, a path not in the table a 404; the upstream path comes from the table), refuse compressed
   bodies (415), read the body once whatever its content type (``payload.py``: 413 over
   ``max_body_bytes``, 400 on malformed JSON, invalid UTF-8 or runaway nesting) and price it as its
   route says: tokens (400 naming a model with no price, or no model), per image, per second of
   audio, or free; every forwarded request leaves an event, $0 ones included, and a paused scope is
   refused on every route that spends (``docs/security.md``, "Routes");
3. attribute it (``attribution.py``: session, turn, repo, client from Codex's headers) and ask the
   :class:`~spendgate.proxy.decision.Decider` (pass / rewrite the model / refuse) with the request
   facts, including the request's one token estimate, corrected per session
   (``spendgate.domain.enforcement.estimate``), which metering reuses for unreported usage;
4. forward with ``aiohttp`` (``forwarding.py``: hop-by-hop headers dropped, ``Authorization``
   replaced by the upstream key; for streamed Chat Completions ``stream_options.include_usage`` is
   added and the extra usage chunk later stripped) to an upstream of the pool (``upstreams.py``,
   ``failover.py``, ``upstream_kinds.py``: weighted choice per model, the next upstream on a 429, 5xx
   or outage before anything is relayed, a circuit breaker per upstream, Azure OpenAI's request shape;
   docs/upstreams.md); 502 / 504 when the last upstream is unreachable or silent; a model configured
   under ``bedrock`` goes instead to AWS Bedrock's Converse API, translated both ways and SigV4-signed
   (``bedrock.py``, ``docs/bedrock.md``);
5. relay the body chunk by chunk while the tap (``tap.py``) finds usage; a client that hangs up, a
   stream that breaks off or fails is still metered (``client_aborted`` / ``incomplete`` /
   ``upstream_error``, output counted offline with o200k when the provider reported nothing); a
   stream the upstream breaks off, ends before its terminal event or stalls past the read timeout
   ends for the client in ``response.failed`` (Responses) or a ``data: {"error": …}`` chunk (chat),
   never a clean EOF (``stream_end.py``); an answer is a stream when labelled SSE or when the request
   asked for one and it is not labelled JSON, so a stream labelled ``text/plain`` is still metered;
6. build exactly one ``UsageRecorded`` (``metering.py``) and append it to the spool (``spool.py``)
   before the response completes; the writer (``emitter.py``) fsyncs in batches, publishes to the
   bus keyed by key id and deletes acknowledged segments; segments left by a crash or a bus outage
   are replayed.

Beside the hot path, ``GET /v1/spendgate/me`` (``me.py``, a fixed route matched before ``/v1/*``) tells a
key's holder their budgets, spend and sessions from PostgreSQL; it is never forwarded nor metered
(``docs/console.md``, "For developers"; ``spendgate me`` is its command, ``me_client.py``).

``service.py`` runs it (``serve(runtime, stop)``; SIGTERM drains in-flight streams within
``drain_timeout_s`` and flushes the spool); ``fake_upstream.py`` is the scripted OpenAI stand-in used
by tests, the benchmark and ``spendgate fake-upstream``.
"""
