"""runner's settings from the environment, read once (by the CLI, or a worker at start) into
one object that is passed down; no other module reads os.environ for them."""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from runner.errors import InputError

DEFAULT_BROKER = "redis://127.0.0.1:6379/0"
DEFAULT_QUEUE = "runner"
DEFAULT_DB_RETRY_S = 300.0


def default_lock_dir() -> Path:
    """Machine-wide, so runs started from any directory see each other's locks."""
    if os.geteuid() == 0:
        return Path("/run/runner/locks")
    return Path(tempfile.gettempdir()) / f"runner-{os.geteuid()}" / "locks"


@dataclass(frozen=True)
class Settings:
    """Each field names the variable it comes from."""

    home: Path = Path(".runner")  # RUNNER_HOME: the default results database lives here
    db_url: str | None = None  # RUNNER_DB_URL (or --db): any SQLAlchemy URL
    # RUNNER_DB_RETRY: seconds a run's writes wait for a database that went away (server
    # restart, network) before its records are kept in a file and the run fails loudly.
    db_retry: float = DEFAULT_DB_RETRY_S
    # RUNNER_BROKER_URL: Redis for `runner worker` and `--engine celery`; when set, local runs
    # take the same device leases as workers do.
    broker_url: str | None = None
    result_url: str | None = None  # RUNNER_RESULT_URL: Celery results (default: the broker)
    route_key: str = "site"  # RUNNER_ROUTE_KEY: inventory data naming a host's queue
    # RUNNER_VISIBILITY_TIMEOUT: seconds before Redis hands an unacknowledged shard to
    # another worker by itself (the dispatcher acts long before, see worker_lost_after).
    visibility_timeout: float = 3600.0
    # RUNNER_WORKER_LOST_AFTER: seconds a worker may be silent (no heartbeat) before the
    # dispatcher gives its shards to a live worker, or records their devices WorkerLost.
    worker_lost_after: float = 20.0
    # RUNNER_LOCK_DIR: without a broker, runs that change config hold a lock file per device
    # here, so two runs on one machine never interleave config sessions on a device.
    lock_dir: Path = field(default_factory=default_lock_dir)
    lab_index: Path = Path("/run/runner/labs")  # RUNNER_LAB_INDEX: labs up on this machine
    lab_ready_timeout: float = 120.0  # RUNNER_LAB_READY_TIMEOUT: routers' daemons and sshd
    # RUNNER_SECRETS_DIR: directories (absolute, separated by ':') that `{file: ...}` secret
    # references may read from, besides the directory of the file that writes the reference
    # (the job's, the inventory's). Nothing else on the machine is read as a secret.
    secrets_dirs: tuple[Path, ...] = ()
    # RUNNER_BROKER_KEY, RUNNER_BROKER_CERT, RUNNER_BROKER_TRUSTED: sign what crosses the
    # broker (Celery's `auth` serializer): this process's private key and certificate, and
    # a directory of the certificates (*.pem) whose signatures it accepts. All or none.
    broker_key: Path | None = None
    broker_cert: Path | None = None
    broker_trusted: Path | None = None
    # RUNNER_TWIN: the twin a schedule's `rehearse: required` means (`runner twin up`'s
    # default name unless set; `runner serve --twin` overrides it for that server)
    twin: str = "twin"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        base = cls()

        def number(name: str, default: float, low: float) -> float:
            raw = env.get(name)
            if raw is None or raw == "":
                return default
            try:
                value = float(raw)
            except ValueError:
                raise InputError(f"environment variable {name}={raw!r}: expected a number of "
                                 "seconds") from None
            if value < low:
                raise InputError(f"environment variable {name}={raw!r}: expected at least "
                                 f"{low:g}")
            return value

        return cls(
            home=Path(env.get("RUNNER_HOME") or base.home),
            db_url=env.get("RUNNER_DB_URL") or None,
            db_retry=number("RUNNER_DB_RETRY", base.db_retry, 0),
            broker_url=env.get("RUNNER_BROKER_URL") or None,
            result_url=env.get("RUNNER_RESULT_URL") or None,
            route_key=env.get("RUNNER_ROUTE_KEY") or base.route_key,
            visibility_timeout=number("RUNNER_VISIBILITY_TIMEOUT", base.visibility_timeout, 1),
            worker_lost_after=number("RUNNER_WORKER_LOST_AFTER", base.worker_lost_after, 1),
            lock_dir=Path(env.get("RUNNER_LOCK_DIR") or base.lock_dir),
            lab_index=Path(env.get("RUNNER_LAB_INDEX") or base.lab_index),
            lab_ready_timeout=number("RUNNER_LAB_READY_TIMEOUT", base.lab_ready_timeout, 1),
            secrets_dirs=_directories("RUNNER_SECRETS_DIR", env.get("RUNNER_SECRETS_DIR")),
            twin=_twin(env.get("RUNNER_TWIN") or base.twin),
            **_signing(env),
        )

    @property
    def signs_broker_messages(self) -> bool:
        return self.broker_key is not None

    @property
    def broker(self) -> str:
        """The broker to use when one is needed (workers, --engine celery)."""
        return self.broker_url or DEFAULT_BROKER

    @property
    def results_backend(self) -> str:
        return self.result_url or self.broker

    def database_url(self) -> str:
        """The results database: --db / RUNNER_DB_URL, else SQLite under RUNNER_HOME."""
        if self.db_url:
            return self.db_url
        self.home.mkdir(mode=0o700, parents=True, exist_ok=True)  # its owner's only
        return f"sqlite:///{self.home.resolve() / 'results.db'}"

    @property
    def kept_inventories(self) -> Path:
        """Where the loaded form of a large hosts file is kept between runs."""
        return self.home / "inventory"

    @property
    def unsaved_dir(self) -> Path:
        """Where runs whose records the database could not take are kept, as JSON."""
        return self.home / "unsaved"


SIGNING = ("RUNNER_BROKER_KEY", "RUNNER_BROKER_CERT", "RUNNER_BROKER_TRUSTED")


def _signing(env: Mapping[str, str]) -> dict[str, Path | None]:
    given = {name: env.get(name) or None for name in SIGNING}
    if any(given.values()) and not all(given.values()):
        missing = ", ".join(n for n, v in given.items() if not v)
        raise InputError(f"broker message signing needs all of {', '.join(SIGNING)} "
                         f"({missing} not set)")
    key, cert, trusted = (Path(v) if v else None for v in given.values())
    return {"broker_key": key, "broker_cert": cert, "broker_trusted": trusted}


def _directories(name: str, raw: str | None) -> tuple[Path, ...]:
    """Absolute directories separated by os.pathsep; InputError naming the variable."""
    dirs = []
    for part in (raw or "").split(os.pathsep):
        if not part:
            continue
        path = Path(part)
        if not path.is_absolute():
            raise InputError(f"environment variable {name}: {part!r} is not an absolute path "
                             f"(directories separated by {os.pathsep!r})")
        dirs.append(path)
    return tuple(dirs)


def safe_url(url: str) -> str:
    """The URL (or a message holding one) with any password replaced: what may be logged."""
    return re.sub(r"(//[^:/@\s]*:)[^@\s]*@", r"\1****@", url)


def _twin(name: str) -> str:
    if not re.match(r"^[a-zA-Z0-9][a-zA-Z0-9._-]*$", name) or len(name) > 100:
        raise InputError(f"environment variable RUNNER_TWIN={name[:100]!r}: expected a twin's "
                         "name (letters, digits, '.', '_', '-')")
    return name
