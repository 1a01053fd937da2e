"""Config backups in a git repository: one file per device, one commit per run, nothing
committed for a device whose configuration did not change."""

from __future__ import annotations

import fcntl
import os
import re
import subprocess
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from runner.errors import BackupError

_SAFE = re.compile(r"[^A-Za-z0-9._-]")


def _git(repo: Path, *args: str, input_: str | None = None) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "runner", "GIT_AUTHOR_EMAIL": "runner@localhost",
           "GIT_COMMITTER_NAME": "runner", "GIT_COMMITTER_EMAIL": "runner@localhost",
           "GIT_CONFIG_NOSYSTEM": "1", "GIT_TERMINAL_PROMPT": "0"}
    proc = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True,
                          input=input_, env=env, check=False)
    if proc.returncode != 0:
        raise BackupError(f"git {' '.join(args)} in {repo}: {proc.stderr.strip()}")
    return proc.stdout


class BackupRepo:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def file_for(self, host: str) -> Path:
        return self.path / f"{_SAFE.sub('_', host)}.cfg"

    def ensure(self) -> None:
        if (self.path / ".git").is_dir():
            return
        self.path.mkdir(parents=True, exist_ok=True)
        _git(self.path, "init", "-q", "-b", "main")

    @contextmanager
    def _locked(self) -> Iterator[None]:
        """Runs that share a repository commit one after the other."""
        with (self.path / ".git" / "runner.lock").open("w") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def changed_hosts(self, configs: dict[str, str]) -> set[str]:
        """Hosts whose config differs from the file in the repository."""
        changed = set()
        for host, text in configs.items():
            path = self.file_for(host)
            if not path.exists() or path.read_text(encoding="utf-8") != text:
                changed.add(host)
        return changed

    def commit(self, configs: dict[str, str], title: str) -> tuple[str | None, set[str]]:
        """Write changed configs and commit them once; (commit sha or None, changed hosts)."""
        self.ensure()
        with self._locked():
            changed = self.changed_hosts(configs)
            if not changed:
                return None, set()
            for host in sorted(changed):
                self.file_for(host).write_text(configs[host], encoding="utf-8")
            _git(self.path, "add", "--", *(self.file_for(h).name for h in sorted(changed)))
            message = (f"{title}: {len(changed)} device(s) changed\n\n"
                       + "\n".join(sorted(changed)) + "\n")
            _git(self.path, "commit", "-q", "-F", "-", input_=message)
            return _git(self.path, "rev-parse", "HEAD").strip(), changed

    def changes(self, commit: str, hosts: Iterable[str]) -> dict[str, str | None]:
        """What `commit` changed in each host's file: the diff's hunks, or None for a file
        the commit added (a first backup: its diff would be the whole config)."""
        names = {self.file_for(h).name: h for h in hosts}
        text = _git(self.path, "show", "--format=", "--no-color", "--no-ext-diff",
                    "--no-renames", commit, "--")
        out: dict[str, str | None] = {}
        for chunk in re.split(r"^diff --git ", text, flags=re.M)[1:]:
            head, _, hunks = chunk.partition("\n@@")
            host = names.get(head.split(" ", 1)[0].removeprefix("a/"))
            if host is not None:
                out[host] = None if "\nnew file mode" in head else "@@" + hunks
        return out
