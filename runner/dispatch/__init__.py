"""Spreading runs over worker machines: Celery with Redis, device leases, a run ledger."""
