"""Reconciliation with the provider's bill: ``spendgate reconcile`` and the nightly worker compare the
providers' own usage and cost reports with the ledger per UTC day, model and upstream, store the lines,
and raise a ``reconciliation_gap`` alert once per provider and day the bill exceeds the ledger beyond
the threshold. See docs/reconciliation.md.

- :mod:`.providers`: the report clients (OpenAI organization Usage/Costs, Anthropic Usage & Cost Admin API);
- :mod:`.run`: one run over a day range (fetch, compare with :mod:`spendgate.domain.reconcile`, store);
- :mod:`.service`: the nightly schedule and the gap outbox, under the supervisor;
- :mod:`.cli`: ``spendgate reconcile``.
"""
