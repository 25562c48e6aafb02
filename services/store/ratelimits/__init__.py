"""Rate limits (``rate_limits``) and the per-minute counts every proxy shares (``rate_limit_counts``)."""
