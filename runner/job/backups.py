"""Config backups in a git repository: one file per device, one commit per run, nothing
committed for a device whose configuration did not change.

A run's commit is built beside the repository (objects, a temporary index) and made with one
atomic ref update, so a write that fails (disk full, a read-only or foreign path) leaves
HEAD, the index and every file as they were; the files in the work tree are updated after
the commit, each by rename. What changed is decided against HEAD, never against the work
tree, so a failed run cannot make a later one skip a change. A `.git` left half-created (a
full disk during `git init`) is initialised again, which git documents as safe."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import re
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from runner.errors import BackupError, InputError, NotFound
from runner.records import DeviceResult
from runner.vocab import StepKind

log = logging.getLogger("runner.job.backups")

_SAFE = re.compile(r"[A-Za-z0-9._-]")
_MAX_STEM = 200  # bytes before ".cfg"; file systems allow 255
_TMP = "runner-tmp"  # in .git: this run's temporary files, removed when it ends
# git reads these from the environment: a runner started from a git hook must not write the
# hook's repository
_GIT_ENV_OWN = ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "GIT_OBJECT_DIRECTORY",
                "GIT_ALTERNATE_OBJECT_DIRECTORIES", "GIT_CEILING_DIRECTORIES")


def file_name(host: str) -> str:
    """The backup file of `host`, different for different hosts. Names made of
    [A-Za-z0-9._-] stay as they always were (existing repositories keep their history);
    any other byte becomes %XX, so `a/b`, `a_b` and `a b` are a%2Fb, a_b and a%20b; a name
    too long for a file system is cut and ends in `~` and a hash of the whole name (no other
    name holds a `~`)."""
    stem = "".join(c if _SAFE.fullmatch(c) else "".join(f"%{b:02X}" for b in c.encode(
        "utf-8", "surrogatepass")) for c in host)
    if len(stem) > _MAX_STEM:
        digest = hashlib.sha256(host.encode("utf-8", "surrogatepass")).hexdigest()[:20]
        stem = f"{stem[:_MAX_STEM - 21]}~{digest}"
    return f"{stem}.cfg"


def _one_line(text: str) -> str:
    """git's complaint in one line (its first lines often say why: "No space left")."""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    reason = "; ".join(dict.fromkeys(lines)) or "no reason given"
    return reason if len(reason) <= 600 else reason[:597] + "..."


def _full(path: Path) -> bool:
    """Whether the file system holding `path` is (nearly) full: git does not always say
    that this is why a write failed ("couldn't write .../main.lock")."""
    for candidate in (path, *path.parents):
        try:
            st = os.statvfs(candidate)
        except OSError:
            continue
        return st.f_bavail * st.f_frsize < 1024 * 1024
    return False


class BackupRepo:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.git_dir = self.path / ".git"

    def file_for(self, host: str) -> Path:
        return self.path / file_name(host)

    def _git(self, *args: str, input_: bytes | None = None,
             env: dict[str, str] | None = None) -> str:
        """Run git on this repository only: with its .git named, git never looks further up
        for another repository (the project's own, when .git is missing or broken)."""
        where = [] if args[0] == "init" else [f"--git-dir={self.git_dir}",
                                               f"--work-tree={self.path}"]
        base = {k: v for k, v in os.environ.items() if k not in _GIT_ENV_OWN}
        base.update({"GIT_AUTHOR_NAME": "runner", "GIT_AUTHOR_EMAIL": "runner@localhost",
                     "GIT_COMMITTER_NAME": "runner", "GIT_COMMITTER_EMAIL": "runner@localhost",
                     "GIT_CONFIG_NOSYSTEM": "1", "GIT_TERMINAL_PROMPT": "0", **(env or {})})
        try:
            proc = subprocess.run(
                ["git", *where, *args],
                capture_output=True, input=input_, env=base, check=False)
        except OSError as exc:
            raise BackupError(f"backup repository {self.path}: cannot run git: "
                              f"{exc.strerror or exc}") from None
        if proc.returncode != 0:
            reason = _one_line(proc.stderr.decode("utf-8", "replace"))
            if _full(self.path):
                reason += " (its file system has less than 1 MiB free)"
            raise BackupError(f"backup repository {self.path}: git {args[0]} failed: {reason}")
        return proc.stdout.decode("utf-8", "replace")

    def _is_repository(self) -> bool:
        try:
            self._git("rev-parse", "--git-dir")
        except BackupError:
            return False
        return True

    def ensure(self) -> None:
        """The directory and its repository exist; a half-initialised one is completed."""
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            self.git_dir.mkdir(exist_ok=True)
        except FileExistsError:
            what = self.path if not self.path.is_dir() else self.git_dir
            raise BackupError(f"backup repository {self.path}: {what} exists and is not a "
                              "directory") from None
        except OSError as exc:
            raise BackupError(f"backup repository {self.path}: cannot create it: "
                              f"{exc.strerror or exc}") from None

    def _initialise(self) -> None:
        """Under the lock: `git init` when .git is not (yet, or no longer) a repository."""
        if self._is_repository():
            return
        # `git init` on an existing .git only adds what is missing ("safe", says git): a
        # half-created one is completed, history in one that lost its HEAD is kept.
        if any(p.name != "runner.lock" for p in self.git_dir.iterdir()):
            log.warning("backup repository %s: .git is not a usable repository (a full disk "
                        "during git init?); initialising it again", self.path)
        self._git("init", "-q", "-b", "main", str(self.path))
        if not self._is_repository():
            raise BackupError(f"backup repository {self.path}: .git is damaged and git init "
                              "could not repair it")

    @contextmanager
    def _locked(self) -> Iterator[None]:
        """Runs that share a repository commit one after the other."""
        try:
            fh = (self.git_dir / "runner.lock").open("a")
        except OSError as exc:
            raise BackupError(f"backup repository {self.path}: cannot lock it: "
                              f"{exc.strerror or exc}") from None
        with fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def _head(self) -> str | None:
        try:
            return self._git("rev-parse", "--verify", "-q", "HEAD^{commit}").strip()
        except BackupError:
            return None  # no commit yet

    def _committed(self, head: str | None) -> dict[str, str]:
        """File name -> blob id of each file in HEAD's top directory."""
        if head is None:
            return {}
        out: dict[str, str] = {}
        for entry in self._git("ls-tree", "-z", head).split("\0"):
            meta, _, name = entry.partition("\t")
            if meta.endswith(" ") or not name:
                continue
            out[name] = meta.split()[2]
        return out

    def _blob_id(self, data: bytes, algorithm: str) -> str:
        return hashlib.new(algorithm, b"blob %d\0" % len(data) + data).hexdigest()

    def _algorithm(self) -> str:
        return self._git("rev-parse", "--show-object-format").strip() or "sha1"

    def changed_hosts(self, configs: dict[str, str]) -> set[str]:
        """Hosts whose config differs from their file in the last commit (a dry run: all of
        them when there is no usable repository yet; nothing is created)."""
        sink = BackupSink(self, dry_run=True)
        for host, text in configs.items():
            sink.add(host, text)
        return sink.changed_hosts()

    def commit(self, configs: dict[str, str], title: str) -> tuple[str | None, set[str]]:
        """Commit the changed configs at once; (commit sha or None, changed hosts).
        BackupError (one line) when the repository cannot be written: then nothing of this
        run is in it, and a later run commits these changes."""
        sink = BackupSink(self)
        try:
            for host, text in configs.items():
                sink.add(host, text)
            return sink.commit(title)
        finally:
            sink.close()

    @contextmanager
    def _scratch(self) -> Iterator[Path]:
        """A directory for this commit's temporary files, in .git (the same file system as
        the work tree, for renames); removed afterwards, with any a killed run left."""
        shutil.rmtree(self.git_dir / _TMP, ignore_errors=True)
        try:
            (self.git_dir / _TMP).mkdir()
            yield self.git_dir / _TMP
        except OSError as exc:
            raise BackupError(f"backup repository {self.path}: cannot write: "
                              f"{exc.strerror or exc}") from None
        finally:
            shutil.rmtree(self.git_dir / _TMP, ignore_errors=True)

    def _commit(self, files: dict[str, str], head: str | None, message: str) -> str:
        """A commit of HEAD with these files (name -> blob id, every blob in the object
        store), made by the one atomic ref update of HEAD."""
        with self._scratch() as tmp:
            env = {"GIT_INDEX_FILE": str(tmp / "index")}
            if head is not None:
                self._git("read-tree", head, env=env)
            entries = "".join(f"100644 {blob}\t{name}\n" for name, blob in files.items())
            self._git("update-index", "--index-info", input_=entries.encode(), env=env)
            tree = self._git("write-tree", env=env).strip()
            parents = ["-p", head] if head is not None else []
            sha = self._git("commit-tree", tree, *parents, input_=message.encode()).strip()
            # the commit exists from here on only if HEAD still is what the run read
            self._git("update-ref", "-m", message.splitlines()[0], "HEAD", sha, head or "")
            return sha

    def _update_work_tree(self, written: dict[str, str], head: str | None) -> None:
        """The files (each replaced by rename, never half-written) and the index follow
        HEAD: the files the commit changed (`written`: name -> blob id) are written, the
        index refreshed, and any other file that is not HEAD's (edited, removed, or left
        behind by a run that could not write it) put back; the other files are neither read
        nor written (git compares their stat data with the index's). Not a failure of the
        backup when they cannot be (it is in git): logged, and the next run writes them."""
        if head is None:
            return
        try:
            self._write_files(written)
            self._git("reset", "-q")
            stale = [n for n in self._git("diff-files", "--name-only", "-z").split("\0") if n]
            if stale:
                blobs = self._committed(head)
                self._write_files({n: blobs[n] for n in stale if n in blobs})
                self._git("update-index", "-q", "--refresh")
        except (OSError, BackupError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
            log.warning("backup repository %s: committed, but the files in it are not all "
                        "up to date: %s", self.path, reason)

    def _write_files(self, blobs: dict[str, str], chunk: int = 500) -> None:
        """Each file from its blob, by rename; read from git `chunk` objects at a time."""
        names = list(blobs)
        with self._scratch() as tmp:
            for at in range(0, len(names), chunk):
                part = names[at:at + chunk]
                for name, data in zip(part, self._blobs([blobs[n] for n in part]),
                                      strict=True):
                    (tmp / "file").write_bytes(data)
                    os.replace(tmp / "file", self.path / name)

    def _blobs(self, ids: list[str]) -> list[bytes]:
        """These objects' contents, read in one git process."""
        if not ids:
            return []
        proc = subprocess.run(["git", f"--git-dir={self.git_dir}", "cat-file", "--batch"],
                              check=False, input="".join(f"{i}\n" for i in ids).encode(),
                              capture_output=True)
        if proc.returncode != 0:
            raise BackupError(f"backup repository {self.path}: git cat-file failed: "
                              f"{_one_line(proc.stderr.decode('utf-8', 'replace'))}")
        out, data, at = [], proc.stdout, 0
        for _ in ids:
            header_end = data.index(b"\n", at)
            size = int(data[at:header_end].split()[2])
            out.append(data[header_end + 1:header_end + 1 + size])
            at = header_end + 1 + size + 1
        return out

    def changes(self, commit: str, hosts: Iterable[str]) -> dict[str, str | None]:
        """What `commit` changed in each host's file: the diff's hunks, or None for a file
        the commit added (a first backup: its diff would be the whole config)."""
        names = {file_name(h): h for h in hosts}
        text = self._git("show", "--format=", "--no-color", "--no-ext-diff", "--no-renames",
                         commit, "--")
        out: dict[str, str | None] = {}
        for chunk in re.split(r"^diff --git ", text, flags=re.M)[1:]:
            head, _, hunks = chunk.partition("\n@@")
            host = names.get(head.split(" ", 1)[0].removeprefix("a/"))
            if host is not None:
                out[host] = None if "\nnew file mode" in head else "@@" + hunks
        return out

    # -- reading the history (runner web) -------------------------------------------------

    def hosts(self) -> list[str]:
        """The devices with a backup in the last commit, by name."""
        if not self.git_dir.is_dir() or not self._is_repository():
            return []
        return sorted(host_of(name) for name in self._committed(self._head())
                      if name.endswith(".cfg"))

    def history(self, host: str, limit: int = 200) -> list[dict[str, str]]:
        """The commits that changed a device's backup, newest first: commit, date, title."""
        if not self._is_repository():
            return []
        out = self._git("log", f"--max-count={limit}", "--format=%H%x09%cI%x09%s", "HEAD",
                        "--", file_name(host))
        rows = [line.split("\t", 2) for line in out.splitlines() if line.count("\t") >= 2]
        return [{"commit": c, "date": d, "title": t} for c, d, t in rows]

    def summary(self) -> dict[str, dict[str, Any]]:
        """Every device with a backup in the last commit: its newest version (commit, date,
        title) and how many versions it has, from one `git log` over the whole history (a
        table of 10,000 devices starts one git process, not one per device)."""
        if not self.git_dir.is_dir():
            return {}
        head = self._head_quick()
        if head is None:
            return {}
        key = (str(self.path.resolve()), head)
        with _SNAPSHOTS_LOCK:
            kept = _SUMMARIES.get(key)
        if kept is None:
            kept = self._summary(head)
            with _SNAPSHOTS_LOCK:
                _SUMMARIES.clear()  # the newest commit of the repository last read
                _SUMMARIES[key] = kept
        return {host: dict(row) for host, row in kept.items()}

    def _summary(self, head: str) -> dict[str, dict[str, Any]]:
        current = {name for name in self._committed(head) if name.endswith(".cfg")}
        out = self._git("-c", "core.quotePath=false", "log", "--no-renames", "--name-only",
                        "--format=%x00%H%x09%cI%x09%s", head)
        found: dict[str, dict[str, Any]] = {}
        for chunk in out.split("\0")[1:]:
            head, _, names = chunk.partition("\n")
            commit, date, title = [*head.split("\t", 2), "", ""][:3]
            for name in names.split("\n"):
                if name not in current:
                    continue
                seen = found.get(name)
                if seen is None:  # newest first: the first commit seen is the latest
                    found[name] = {"commit": commit, "date": date, "title": title,
                                   "versions": 1}
                else:
                    seen["versions"] += 1
        return {host_of(name): row for name, row in found.items()}

    def latest(self, host: str) -> tuple[str, str] | None:
        """A device's backup in the last commit (commit id, text); None when it has none.
        The commit's files are read once (one `git cat-file --batch`) and kept while it is
        the last commit: a compliance check of 1,000 devices against backups starts no
        git process per device."""
        if not self.git_dir.is_dir():
            return None
        head = self._head_quick()
        if head is None:
            return None
        with _SNAPSHOTS_LOCK:
            key = (str(self.path.resolve()), head)
            if key not in _SNAPSHOTS:
                _SNAPSHOTS.clear()  # only the newest commit of one repository is kept
                _SNAPSHOTS[key] = self._files_at(head)
            text = _SNAPSHOTS[key].get(file_name(host))
        return None if text is None else (head, text)

    def _head_quick(self) -> str | None:
        """HEAD's commit: from the ref file runner's commits update (no git process), else
        from git."""
        try:
            ref = (self.git_dir / "HEAD").read_text(encoding="ascii").strip()
            if ref.startswith("ref: "):
                found = (self.git_dir / ref[5:]).read_text(encoding="ascii").strip()
                if _COMMIT_ID.fullmatch(found):
                    return found
        except (OSError, UnicodeDecodeError):
            pass
        return self._head() if self._is_repository() else None

    def _files_at(self, commit: str) -> dict[str, str]:
        """Every file of a commit's top directory, by name, read in one git process."""
        blobs = self._committed(commit)
        names = list(blobs)
        if not names:
            return {}
        where = [f"--git-dir={self.git_dir}"]
        proc = subprocess.run(["git", *where, "cat-file", "--batch"], check=False,
                              input="".join(f"{blobs[n]}\n" for n in names).encode(),
                              capture_output=True)
        if proc.returncode != 0:
            raise BackupError(f"backup repository {self.path}: git cat-file failed: "
                              f"{_one_line(proc.stderr.decode('utf-8', 'replace'))}")
        out, data, at = {}, proc.stdout, 0
        for name in names:
            header_end = data.index(b"\n", at)
            size = int(data[at:header_end].split()[2])
            out[name] = data[header_end + 1:header_end + 1 + size].decode("utf-8", "replace")
            at = header_end + 1 + size + 1
        return out

    def text_at(self, host: str, commit: str) -> str:
        """A device's backup as of `commit` (a full or abbreviated commit id)."""
        return self._git("show", f"{self._known(commit)}:{file_name(host)}")

    def diff(self, host: str, old: str, new: str) -> str:
        """The unified diff of a device's backup between two commits."""
        return self._git("diff", "--no-color", "--no-ext-diff", "--no-renames",
                         self._known(old), self._known(new), "--", file_name(host))

    def commit_id(self, commit: str) -> str:
        """The full id of a commit of this repository (see _known)."""
        return self._known(commit)

    def _known(self, commit: str) -> str:
        """A commit of this repository, by a full or abbreviated id (hex only: never an
        option or a revision expression); NotFound otherwise."""
        if not _COMMIT_ID.fullmatch(commit):
            raise InputError(f"{commit!r} is not a commit id (4 to 64 hexadecimal digits)",
                             field="commit")
        try:
            return self._git("rev-parse", "--verify", "-q", f"{commit}^{{commit}}").strip()
        except BackupError:
            raise NotFound(f"backup repository {self.path}: no commit {commit}",
                           field="commit") from None


_COMMIT_ID = re.compile(r"[0-9a-f]{4,64}")
# The last commit's files of the backup repository compliance checks last read.
_SNAPSHOTS: dict[tuple[str, str], dict[str, str]] = {}
_SNAPSHOTS_LOCK = threading.Lock()
# summary() of the last commit of the repository the web's backup table last read.
_SUMMARIES: dict[tuple[str, str], dict[str, dict[str, Any]]] = {}


def host_of(name: str) -> str:
    """The device a backup file belongs to (file_name() undone; a shortened name stays as
    it is)."""
    stem = name.removesuffix(".cfg")
    if "~" in stem:
        return stem
    return re.sub(rb"%([0-9A-F]{2})", lambda m: bytes([int(m.group(1), 16)]),
                  stem.encode()).decode("utf-8", "surrogatepass")


_INCOMING = "runner-incoming-"  # in .git: a run's objects until it commits (one per run)


class BackupSink:
    """A run's configs into its backup repository as the devices finish, so a run of
    100,000 devices never holds their texts: each config's blob id is worked out at once,
    and a config that is not the one in the last commit is streamed (`git fast-import`,
    one pack for the run) into a directory of its own in .git; the run keeps one blob id
    per device. commit() moves the pack into the repository and makes the run's one commit
    of the devices whose blob differs from HEAD's then (HEAD may have moved meanwhile: a
    blob the run did not write is one of HEAD's). A sink that cannot write keeps the
    error for commit() to raise, and nothing of it reaches the repository."""

    def __init__(self, repo: BackupRepo, *, dry_run: bool = False) -> None:
        self.repo = repo
        self.dry_run = dry_run
        self.blobs: dict[str, str] = {}  # host -> its config's blob id
        self.error: BackupError | None = None
        self._adding = threading.Lock()  # records may arrive on more than one thread
        self._proc: subprocess.Popen[bytes] | None = None
        self._incoming: Path | None = None
        self._lock: Any = None
        self._stderr: Any = None
        self._base: dict[str, str] = {}  # HEAD's files when the run began: name -> blob
        self._base_head: str | None = None
        self._algorithm = "sha1"
        try:
            if not dry_run:
                repo.ensure()
                with repo._locked():
                    repo._initialise()
            if repo.git_dir.is_dir() and repo._is_repository():
                self._algorithm = repo._algorithm()
                self._base_head = repo._head()
                self._base = repo._committed(self._base_head)
        except BackupError as exc:
            self.error = exc

    def take(self, device: DeviceResult) -> None:
        """A finished device's config, taken from its record (which keeps none of it:
        its backup step names the file)."""
        if device.backup is None:
            return
        self.add(device.host, device.backup)
        device.backup = None
        for step in device.steps:
            if step.kind is StepKind.BACKUP:
                step.output = str(self.repo.file_for(device.host))

    def add(self, host: str, text: str) -> None:
        """A device's config; written now unless the last commit holds it already."""
        with self._adding:
            self._add(host, text)

    def _add(self, host: str, text: str) -> None:
        data = text.encode()
        blob = self.repo._blob_id(data, self._algorithm)
        self.blobs[host] = blob
        if self.dry_run or self.error is not None \
                or self._base.get(file_name(host)) == blob:
            return
        try:
            proc = self._proc or self._start()
            assert proc.stdin is not None
            proc.stdin.write(b"blob\ndata %d\n" % len(data) + data + b"\n")
        except (OSError, BackupError) as exc:
            self.error = self._failed(exc)
            self.close()

    def _start(self) -> subprocess.Popen[bytes]:
        """git fast-import into .git/runner-incoming-<n>/ (its objects dir; the
        repository's own consulted, so blobs it has are not written again)."""
        git_dir = self.repo.git_dir
        for old in git_dir.glob(_INCOMING + "*"):  # left by a run that was killed
            with contextlib.suppress(OSError), (old / "lock").open("a") as fh:
                try:
                    fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except OSError:
                    continue  # a run at work
                shutil.rmtree(old, ignore_errors=True)
        self._incoming = Path(tempfile.mkdtemp(prefix=_INCOMING, dir=git_dir))
        (self._incoming / "pack").mkdir()
        self._lock = (self._incoming / "lock").open("a")
        fcntl.flock(self._lock, fcntl.LOCK_EX)
        self._stderr = (self._incoming / "stderr").open("wb")
        env = {k: v for k, v in os.environ.items() if k not in _GIT_ENV_OWN}
        env.update(GIT_OBJECT_DIRECTORY=str(self._incoming),
                   GIT_ALTERNATE_OBJECT_DIRECTORIES=str(git_dir / "objects"),
                   GIT_CONFIG_NOSYSTEM="1")
        self._proc = subprocess.Popen(
            ["git", f"--git-dir={git_dir}", "fast-import", "--quiet", "--done"],
            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
            stderr=self._stderr, env=env)
        return self._proc

    def _failed(self, exc: OSError | BackupError) -> BackupError:
        if isinstance(exc, BackupError):
            return exc
        reason = exc.strerror or str(exc)
        if self._incoming is not None:
            with contextlib.suppress(OSError):
                said = _one_line((self._incoming / "stderr").read_text(errors="replace"))
                if said != "no reason given":
                    reason = f"{said} ({reason})"
        if _full(self.repo.path):
            reason += " (its file system has less than 1 MiB free)"
        return BackupError(f"backup repository {self.repo.path}: cannot write: {reason}")

    def _finish(self) -> None:
        """The stream ended: the pack into the repository's objects (pack, then its index:
        git sees a pack once its index is there)."""
        proc = self._proc
        if proc is None or self._incoming is None:
            return
        assert proc.stdin is not None
        try:
            proc.stdin.write(b"done\n")
            proc.stdin.close()
        except OSError:
            pass
        if proc.wait() != 0:
            raise self._failed(OSError(f"git fast-import exited {proc.returncode}"))
        self._proc = None
        objects = self.repo.git_dir / "objects"
        try:
            # a few objects come loose (fastimport.unpackLimit), more as one pack
            for path in self._incoming.glob("[0-9a-f][0-9a-f]/*"):
                (objects / path.parent.name).mkdir(exist_ok=True)
                os.replace(path, objects / path.parent.name / path.name)
            made = sorted(self._incoming.glob("pack/pack-*"),
                          key=lambda p: p.suffix == ".idx")  # the index last
            if made:
                (objects / "pack").mkdir(exist_ok=True)
            for path in made:
                os.replace(path, objects / "pack" / path.name)
        except OSError as exc:
            raise self._failed(exc) from None

    def changed_hosts(self) -> set[str]:
        """Hosts whose config differs from their file in the last commit."""
        return {h for h, b in self.blobs.items() if self._base.get(file_name(h)) != b}

    def commit(self, title: str) -> tuple[str | None, set[str]]:
        """The run's one commit of the changed configs; (commit sha or None, changed
        hosts). BackupError (one line) when the repository cannot be written: then nothing
        of this run is in it, and a later run commits these changes."""
        repo = self.repo
        if self.error is not None:
            raise self.error
        repo.ensure()
        with repo._locked():
            repo._initialise()
            try:
                self._finish()
            finally:
                self.close()
            head = repo._head()
            # another run may have committed since this one began
            committed = self._base if head == self._base_head else repo._committed(head)
            changed = {h for h, b in self.blobs.items()
                       if committed.get(file_name(h)) != b}
            sha = None
            written = {file_name(h): self.blobs[h] for h in changed}
            if changed:
                message = (f"{title}: {len(changed)} device(s) changed\n\n"
                           + "\n".join(sorted(changed)) + "\n")
                sha = repo._commit(written, head, message)
            repo._update_work_tree(written, sha or head)
            return sha, changed

    def close(self) -> None:
        """Stop writing (a run that ended without committing: what it wrote is removed)."""
        proc, self._proc = self._proc, None
        if proc is not None:
            with contextlib.suppress(OSError):
                proc.kill()
            proc.wait()
        for fh in (self._stderr, self._lock):
            if fh is not None:
                fh.close()
        self._stderr = self._lock = None
        if self._incoming is not None:
            shutil.rmtree(self._incoming, ignore_errors=True)
            self._incoming = None
