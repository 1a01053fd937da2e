"""What `runner web` was started with: the stores, where jobs, inventory and templates are,
which backup repositories to show, and the session-signing secret."""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path

from runner.settings import Settings
from runner.vocab import EngineChoice
from runner.web.limits import DEFAULT_MAX_BODY

SECRET_FILE = "web-secret"  # noqa: S105 (a file name)


@dataclass(frozen=True)
class WebConfig:
    settings: Settings
    jobs_dir: Path = Path("jobs")
    inventory: Path = Path("inventory")
    templates: Path = Path("templates")
    store_url: str | None = None  # schedule state (default: the results database)
    backups: tuple[Path, ...] = ()  # backup repositories besides the jobs' backup dirs
    engine: EngineChoice = EngineChoice.AUTO
    max_runs: int = 4  # runs started from the web at once
    metrics_public: bool = False  # /metrics without a token
    max_body: int = DEFAULT_MAX_BODY  # bytes of a request body; larger: 413, unread
    secure_cookies: bool = False  # the session cookie only over HTTPS (behind a TLS proxy)
    secret_key: str = field(default="", repr=False)  # signs session cookies

    def with_secret(self) -> WebConfig:
        """This config with the session secret of RUNNER_HOME (created on first use, 0600):
        sessions survive a restart of `runner web`."""
        if self.secret_key:
            return self
        path = self.settings.home / SECRET_FILE
        self.settings.home.mkdir(mode=0o700, parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            key = path.read_text(encoding="ascii").strip()
        else:
            key = secrets.token_urlsafe(48)
            with os.fdopen(fd, "w", encoding="ascii") as fh:
                fh.write(key + "\n")
        return WebConfig(**{**self.__dict__, "secret_key": key})
