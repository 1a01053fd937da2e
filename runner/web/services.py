"""What every request handler shares: the web's configuration, the stores and the launcher,
held by the application and reached from a request."""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import Request

from runner.store.results import ResultsStore
from runner.store.schedule import ScheduleStore
from runner.store.tokens import TokenStore
from runner.web.config import WebConfig
from runner.web.launcher import Launcher


@dataclass
class Services:
    config: WebConfig
    results: ResultsStore
    schedule: ScheduleStore
    tokens: TokenStore
    launcher: Launcher


def services(request: Request) -> Services:
    found = request.app.state.services
    assert isinstance(found, Services)
    return found
