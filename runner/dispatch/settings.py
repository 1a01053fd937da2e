"""Where the broker, results and routing come from: environment (and `runner` flags)."""

from __future__ import annotations

import os
import re

DEFAULT_QUEUE = "runner"


def broker_url() -> str:
    return os.environ.get("RUNNER_BROKER_URL", "redis://127.0.0.1:6379/0")


def result_url() -> str:
    return os.environ.get("RUNNER_RESULT_URL") or broker_url()


def route_key() -> str:
    """Inventory data key whose value names the queue a host's shard goes to."""
    return os.environ.get("RUNNER_ROUTE_KEY", "site")


def visibility_timeout() -> float:
    """Seconds before Redis hands an unacknowledged shard to another worker."""
    return float(os.environ.get("RUNNER_VISIBILITY_TIMEOUT", "3600"))


def safe_url(url: str) -> str:
    """The URL with any password replaced: what may appear in logs and errors."""
    return re.sub(r"(//[^:/@]*:)[^@]*@", r"\1****@", url)
