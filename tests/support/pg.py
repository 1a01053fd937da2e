"""A throwaway PostgreSQL server for tests: Debian's binaries, a cluster in a temp dir, on
127.0.0.1 and a free port, password authentication; as root it runs as the `postgres` user
(initdb refuses root). One database per test, so tests never see each other's rows."""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path

import psycopg

from runner.lab.netns import wait_for
from tests.support.base import free_port

USER = "runner"
PASSWORD = "pg-test-secret-7c1f"  # asserted never to appear in runner's output


def bindir() -> Path | None:
    """The newest installed server's binaries (Debian: /usr/lib/postgresql/N/bin)."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                   key=lambda p: int(p.split("/")[4]) if p.split("/")[4].isdigit() else 0)
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


class PgServer:
    def __init__(self, binaries: Path) -> None:
        self.bin = binaries
        # Under /tmp, not pytest's root-only tmp dirs: the postgres user must reach it.
        self.dir = Path(tempfile.mkdtemp(prefix="runner-pg-"))
        self.data = self.dir / "data"
        self.port = free_port()
        self.log = self.dir / "server.log"
        self._as: list[str] = []
        if os.geteuid() == 0:
            account = pwd.getpwnam("postgres")
            os.chown(self.dir, account.pw_uid, account.pw_gid)
            self._as = ["runuser", "-u", "postgres", "--"]
        try:
            pwfile = self.dir / "pwfile"
            pwfile.write_text(PASSWORD + "\n", encoding="utf-8")
            if self._as:
                os.chown(pwfile, pwd.getpwnam("postgres").pw_uid, -1)
            self._run("initdb", "-D", str(self.data), "-U", USER, "--pwfile", str(pwfile),
                      "--auth", "scram-sha-256", "-E", "UTF8", "--no-sync")
            pwfile.unlink()
            self.start()
        except BaseException:
            self.close()  # a half-made cluster is stopped and removed too
            raise

    def _run(self, tool: str, *args: str) -> None:
        done = subprocess.run([*self._as, str(self.bin / tool), *args], capture_output=True,
                              text=True, timeout=120, cwd=self.dir, check=False)
        if done.returncode != 0:
            log = self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""
            raise RuntimeError(f"{tool} exited {done.returncode}: {done.stderr.strip()}\n{log}")

    def start(self) -> None:
        options = (f"-c listen_addresses=127.0.0.1 -p {self.port} "
                   f"-c unix_socket_directories={self.dir} -c fsync=off "
                   "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200")
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", options, "-w",
                  "-t", "60", "start")
        wait_for(self.ready, 30, "PostgreSQL to accept connections")

    def stop(self, mode: str = "fast") -> None:
        """pg_ctl stop: `fast` ends every session (clients see their connection drop)."""
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop")

    def running(self) -> bool:
        return (self.data / "postmaster.pid").exists()

    def ready(self) -> bool:
        try:
            with psycopg.connect(self.dsn("postgres"), connect_timeout=2):
                return True
        except psycopg.OperationalError:
            return False

    def dsn(self, database: str) -> str:
        return f"postgresql://{USER}:{PASSWORD}@127.0.0.1:{self.port}/{database}"

    def url(self, database: str) -> str:
        """The SQLAlchemy URL runner takes (--db)."""
        return f"postgresql+psycopg://{USER}:{PASSWORD}@127.0.0.1:{self.port}/{database}"

    def new_database(self) -> str:
        """A fresh, empty database; its SQLAlchemy URL."""
        name = f"t_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.dsn("postgres"), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')  # a name of our own making
        return self.url(name)

    def close(self) -> None:
        try:
            if self.running():
                self.stop("immediate")
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)
