"""Signed policy versions (``policy_versions``): every ``policy apply`` and rollback, newest active."""
