"""The console: the admin service's web pages for FinOps, managers and developers (issue 14).

Served by the admin service on its port at ``/``, beside the JSON API under ``/v1/``. Every request has an
identity (:mod:`.auth_chain`); what an identity may see and change is decided in :mod:`.identity` alone.
"""
