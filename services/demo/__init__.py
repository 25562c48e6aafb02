"""``spendgate demo``: a populated console in one command (a month of made-up traffic folded by the real ledger).

Composition-root code, beside ``spendgate up``: it runs the ledger, alerter and forecaster services, so it
may import them; no service imports it.
"""
