"""`runner serve` as a child process, started as a user starts it: one starter for every
test that needs a scheduler running."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

from tests.support.base import ROOT, free_port, user_env


class Serve:
    """`runner serve` on the jobs in project/jobs (or `jobs`), the repository's templates,
    stderr in project/NAME.log; webhooks (`hooks`) and syslog (`syslog`) on free loopback
    ports when asked. env: the server's whole environment (default: user_env())."""

    def __init__(self, project: Path, url: str, inventory: Path, name: str = "serve",
                 *extra: str, jobs: Path | None = None, engine: str | None = "local",
                 verbose: bool = False, hooks: bool = False, syslog: bool = False,
                 env: Mapping[str, str] | None = None) -> None:
        self.log = project / f"{name}.log"
        self._hooks = free_port() if hooks else None
        self._syslog = free_port() if syslog else None
        argv = [sys.executable, "-m", "runner", *(["-v"] if verbose else []), "--db", url,
                "serve", "--jobs", str(jobs or project / "jobs"), "-i", str(inventory),
                "--templates", str(ROOT / "templates")]
        if engine is not None:
            argv += ["--engine", engine]
        if self._hooks is not None:
            argv += ["--listen", f"127.0.0.1:{self._hooks}"]
        if self._syslog is not None:
            argv += ["--syslog", f"127.0.0.1:{self._syslog}"]
        with self.log.open("w") as err:
            self.proc = subprocess.Popen(
                [*argv, *extra], stdout=subprocess.DEVNULL, stderr=err, cwd=project,
                env=dict(user_env() if env is None else env))

    @property
    def hooks(self) -> int:
        """The port its webhooks listen on (started with hooks=True)."""
        assert self._hooks is not None, "this server was started without hooks=True"
        return self._hooks

    @property
    def syslog(self) -> int:
        """The port its syslog receiver listens on (started with syslog=True)."""
        assert self._syslog is not None, "this server was started without syslog=True"
        return self._syslog

    @property
    def pid(self) -> int:
        return self.proc.pid

    def text(self) -> str:
        return self.log.read_text(encoding="utf-8")

    def stop(self, timeout: float = 120, sig: int = signal.SIGTERM) -> int:
        """SIGTERM (or `sig`; nothing once it has exited), then its exit code; killed, and
        the timeout raised, if it has not exited by then."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise
