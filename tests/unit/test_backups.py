"""The backup repository: distinct files for distinct hosts, and a write that fails (a full
disk for real, a read-only file system, a file where the directory should be) leaving the
repository as it was, with the next run committing what the failed one could not."""

from __future__ import annotations

import os
import random
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from runner.errors import BackupError
from runner.job.backups import BackupRepo, file_name


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True,
                          check=True).stdout


def history(repo: Path) -> list[str]:
    return git(repo, "log", "--format=%H").split()


def committed(repo: Path, host: str) -> str:
    return git(repo, "show", f"HEAD:{file_name(host)}")


def assert_clean(repo: Path) -> None:
    """The work tree and index are HEAD's, and no temporary file is left behind."""
    assert git(repo, "status", "--porcelain", "--ignored", "--untracked-files=all") == ""
    assert not (repo / ".git" / "runner-tmp").exists()


# -- file names --------------------------------------------------------------------------


def test_hosts_that_differ_get_different_files_and_safe_names_stay_as_they_were(
        tmp_path: Path) -> None:
    repo = BackupRepo(tmp_path / "backups")
    hosts = {"a/b": "one\n", "a_b": "two\n", "a b": "three\n", "a%2Fb": "four\n",
             "r1": "five\n", "core-sw1.ams": "six\n"}
    sha, changed = repo.commit(hosts, "first")
    assert sha is not None
    assert changed == set(hosts)
    assert sorted(p.name for p in repo.path.glob("*.cfg")) == [
        "a%20b.cfg", "a%252Fb.cfg", "a%2Fb.cfg", "a_b.cfg", "core-sw1.ams.cfg", "r1.cfg"]
    for host, text in hosts.items():
        assert committed(repo.path, host) == text
        assert repo.file_for(host).read_text(encoding="utf-8") == text
    # the same configs again: no commit, nothing counted as changed
    assert repo.commit(hosts, "again") == (None, set())
    assert len(history(repo.path)) == 1
    assert_clean(repo.path)


def test_file_names_are_distinct_and_valid_for_any_host_names() -> None:
    rng = random.Random(12)  # noqa: S311 - reproducible test data, not a secret
    alphabet = "aB9._-%~/ :\\\n\t\0éß中"
    names = {"", ".", "..", "...", ".git", "x" * 300, "x" * 299 + "y", "%", "~"}
    names |= {"".join(rng.choice(alphabet) for _ in range(rng.randint(1, 12)))
              for _ in range(20_000)}
    files = {file_name(n) for n in names}
    assert len(files) == len(names)
    assert file_name("x" * 300).startswith("x" * 179 + "~")
    for name in files:
        assert "/" not in name and "\0" not in name
        assert len(name.encode()) <= 255
        assert name not in (".", "..", ".git")


def test_a_repository_made_before_keeps_its_history(tmp_path: Path) -> None:
    """Files committed by plain git (as runner did before): the same content is no change."""
    path = tmp_path / "backups"
    path.mkdir()
    git(path, "init", "-q", "-b", "main")
    (path / "r1.cfg").write_text("hostname r1\n", encoding="utf-8")
    git(path, "add", "r1.cfg")
    git(path, "-c", "user.name=x", "-c", "user.email=x@y", "commit", "-q", "-m", "old")
    old = history(path)
    repo = BackupRepo(path)
    assert repo.commit({"r1": "hostname r1\n"}, "same") == (None, set())
    sha, changed = repo.commit({"r1": "hostname r1\nntp server 192.0.2.1\n"}, "new")
    assert changed == {"r1"}
    assert history(path) == [sha, *old]
    assert_clean(path)


def test_the_diff_of_a_commit_names_hosts_with_unsafe_names(tmp_path: Path) -> None:
    repo = BackupRepo(tmp_path / "backups")
    repo.commit({"a/b": "hostname ab\nntp server 192.0.2.1\n"}, "first")
    sha, _ = repo.commit({"a/b": "hostname ab\nntp server 192.0.2.9\n", "c d": "x\n"}, "two")
    assert sha is not None
    diffs = repo.changes(sha, ["a/b", "c d"])
    assert diffs["c d"] is None
    assert "+ntp server 192.0.2.9" in (diffs["a/b"] or "")


# -- changes decided against the last commit --------------------------------------------


def test_a_work_tree_file_edited_or_removed_is_put_back_and_not_a_change(
        tmp_path: Path) -> None:
    repo = BackupRepo(tmp_path / "backups")
    repo.commit({"r1": "a\n", "r2": "b\n"}, "first")
    repo.file_for("r1").write_text("edited by hand\n", encoding="utf-8")
    repo.file_for("r2").unlink()
    assert repo.changed_hosts({"r1": "a\n", "r2": "b\n"}) == set()
    assert repo.commit({"r1": "a\n", "r2": "b\n"}, "again") == (None, set())
    assert repo.file_for("r1").read_text(encoding="utf-8") == "a\n"
    assert repo.file_for("r2").read_text(encoding="utf-8") == "b\n"
    assert_clean(repo.path)


def test_a_dry_run_creates_nothing(tmp_path: Path) -> None:
    repo = BackupRepo(tmp_path / "backups")
    assert repo.changed_hosts({"r1": "a\n"}) == {"r1"}
    assert not repo.path.exists()


# -- paths that cannot hold a repository --------------------------------------------------


def test_a_file_where_the_backup_dir_should_be(tmp_path: Path) -> None:
    path = tmp_path / "backups"
    path.write_text("not a directory\n", encoding="utf-8")
    with pytest.raises(BackupError) as info:
        BackupRepo(path).commit({"r1": "a\n"}, "first")
    assert str(info.value) == f"backup repository {path}: {path} exists and is not a directory"
    assert path.read_text(encoding="utf-8") == "not a directory\n"


def test_a_file_where_dot_git_should_be(tmp_path: Path) -> None:
    path = tmp_path / "backups"
    path.mkdir()
    (path / ".git").write_text("gitdir: /elsewhere\n", encoding="utf-8")
    with pytest.raises(BackupError, match=r"\.git exists and is not a directory$"):
        BackupRepo(path).commit({"r1": "a\n"}, "first")


def test_a_file_in_the_backup_dirs_path(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x", encoding="utf-8")
    path = tmp_path / "file" / "backups"
    with pytest.raises(BackupError, match=r": cannot create it: Not a directory$"):
        BackupRepo(path).commit({"r1": "a\n"}, "first")


# -- damaged repositories -----------------------------------------------------------------


def test_a_half_initialised_repository_is_initialised_again(tmp_path: Path) -> None:
    """What `git init` leaves on a full disk (seen on a 256 KiB tmpfs): no HEAD, some
    hooks. Before, every later backup failed with "not a git repository"."""
    path = tmp_path / "backups"
    (path / ".git" / "hooks").mkdir(parents=True)
    (path / ".git" / "description").write_text("Unnamed repository\n", encoding="utf-8")
    (path / ".git" / "hooks" / "pre-push.sample").write_text("#!/bin/sh\n", encoding="utf-8")
    repo = BackupRepo(path)
    sha, changed = repo.commit({"r1": "a\n"}, "first")
    assert changed == {"r1"}
    assert history(path) == [sha]
    assert_clean(path)


def test_a_repository_that_lost_its_head_keeps_its_history(tmp_path: Path) -> None:
    repo = BackupRepo(tmp_path / "backups")
    first, _ = repo.commit({"r1": "a\n"}, "first")
    (repo.path / ".git" / "HEAD").unlink()
    second, _ = repo.commit({"r1": "b\n"}, "second")
    assert history(repo.path) == [second, first]


def test_git_never_writes_the_repository_around_a_broken_one(tmp_path: Path) -> None:
    """A backup dir inside a project checkout, its own .git broken: before, git walked up
    and committed into the project."""
    git(tmp_path, "init", "-q", "-b", "main")
    git(tmp_path, "-c", "user.name=x", "-c", "user.email=x@y", "commit", "-q",
        "--allow-empty", "-m", "project")
    project = history(tmp_path)
    path = tmp_path / "backups"
    (path / ".git").mkdir(parents=True)
    BackupRepo(path).commit({"r1": "a\n"}, "first")
    assert history(tmp_path) == project
    assert len(history(path)) == 1


# -- real write failures --------------------------------------------------------------------


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[Path]:
    """A 512 KiB tmpfs: a disk that really fills up."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mnt = tmp_path / "disk"
    mnt.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=512k", "tmpfs", str(mnt)],
                          capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def fill(disk: Path, leave_kib: int) -> Path:
    """Fill the disk but `leave_kib`; the filler file to delete for space."""
    filler = disk / "filler"
    free = os.statvfs(disk).f_bavail * os.statvfs(disk).f_frsize
    with filler.open("ab") as fh:
        fh.write(b"\0" * max(0, free - leave_kib * 1024))
    return filler


FULL = re.compile(r"No space left on device|less than 1 MiB free")
V1 = {f"r{i}": f"hostname r{i}\n" + "interface x\n description v1\n" * 120 for i in range(3)}
V2 = {**{h: t.replace("v1", "v2") for h, t in V1.items() if h != "r2"}, "r2": V1["r2"],
      "r3": "hostname r3\n" + "ntp server 192.0.2.1\n" * 200}


@pytest.mark.parametrize("leave_kib", range(0, 101, 4))  # fails at each git step, then not
def test_a_full_disk_leaves_the_repository_as_it_was(disk: Path, leave_kib: int) -> None:
    repo = BackupRepo(disk / "backups")
    first, _ = repo.commit(V1, "first")
    filler = fill(disk, leave_kib)
    try:
        sha, changed = repo.commit(V2, "second")
    except BackupError as exc:
        assert FULL.search(str(exc)), str(exc)
        assert "\n" not in str(exc)
        assert history(repo.path) == [first]
        failed = True
    else:
        assert changed == {"r0", "r1", "r3"}
        assert history(repo.path) == [sha, first]
        failed = False
    filler.unlink()
    if failed:
        assert_clean(repo.path)  # every file as the first commit left it
        for host, text in V1.items():
            assert repo.file_for(host).read_text(encoding="utf-8") == text
        # space is back: the next run commits what the failed one could not
        sha, changed = repo.commit(V2, "second")
        assert changed == {"r0", "r1", "r3"}
    else:
        assert repo.commit(V2, "second") == (None, set())
    assert history(repo.path) == [sha, first]
    for host, text in V2.items():
        assert committed(repo.path, host) == text
        assert repo.file_for(host).read_text(encoding="utf-8") == text
    assert_clean(repo.path)
    git(repo.path, "fsck", "--no-progress", "--strict")


@pytest.mark.parametrize("leave_kib", range(0, 141, 4))  # from git init on
def test_a_full_disk_during_the_first_backup_is_recovered_from(disk: Path,
                                                                leave_kib: int) -> None:
    filler = fill(disk, leave_kib)
    repo = BackupRepo(disk / "backups")
    try:
        repo.commit(V1, "first")
    except BackupError as exc:
        assert FULL.search(str(exc)), str(exc)
        assert "\n" not in str(exc)
    filler.unlink()
    repo.commit(V1, "first")
    assert len(history(repo.path)) == 1
    for host, text in V1.items():
        assert committed(repo.path, host) == text
    assert_clean(repo.path)
    git(repo.path, "fsck", "--no-progress", "--strict")


def test_a_read_only_file_system(disk: Path) -> None:
    repo = BackupRepo(disk / "backups")
    first, _ = repo.commit(V1, "first")
    subprocess.run(["mount", "-o", "remount,ro", str(disk)], check=True)
    try:
        with pytest.raises(BackupError, match="Read-only file system"):
            repo.commit(V2, "second")
    finally:
        subprocess.run(["mount", "-o", "remount,rw", str(disk)], check=True)
    sha, changed = repo.commit(V2, "second")
    assert changed == {"r0", "r1", "r3"}
    assert history(repo.path) == [sha, first]
    assert_clean(repo.path)


def test_the_summary_counts_each_devices_versions_in_one_git_log(tmp_path: Path) -> None:
    """The web's backup table: per device in the last commit, its newest version and its
    number of versions, for names that need escaping too; a device removed from the last
    commit is not listed; a repository without commits has none."""
    repo = BackupRepo(tmp_path / "b")
    assert repo.summary() == {}
    odd = "core 1/a\u00e9"
    first, _ = repo.commit({"r1": "a\n", "r2": "a\n", odd: "a\n"}, "one")
    second, _ = repo.commit({"r1": "b\n", "r2": "a\n", odd: "b\n"}, "two\twith a tab")
    third, _ = repo.commit({"r1": "c\n"}, "three")
    found = repo.summary()
    assert set(found) == {"r1", "r2", odd}
    assert (found["r1"]["versions"], found["r1"]["commit"]) == (3, third)
    assert (found["r2"]["versions"], found["r2"]["commit"]) == (1, first)
    assert (found[odd]["versions"], found[odd]["commit"]) == (2, second)
    assert found[odd]["title"].startswith("two\twith a tab")
    assert [v["commit"] for v in repo.history(odd)] == [second, first]
    assert repo.text_at(odd, repo.commit_id(first[:8])) == "a\n"


# -- a run's configs as they arrive (BackupSink) -------------------------------------------


def has_object(repo: Path, blob: str) -> bool:
    return subprocess.run(["git", "-C", str(repo), "cat-file", "-e", blob],
                          capture_output=True, check=False).returncode == 0


def test_a_run_hands_each_config_over_as_it_finishes_and_commits_once(tmp_path: Path) -> None:
    from runner.job.backups import BackupSink
    from runner.records import DeviceResult, StepResult
    from runner.vocab import DeviceStatus, StepKind

    repo = BackupRepo(tmp_path / "backups")
    first, _ = repo.commit(V1, "first")
    sink = BackupSink(repo)
    for host, text in V2.items():
        device = DeviceResult(host=host, status=DeviceStatus.OK, backup=text, steps=[
            StepResult(name="show version", kind=StepKind.COMMAND, output="IOS " * 100),
            StepResult(name="backup", kind=StepKind.BACKUP)])
        sink.take(device)
        # the record keeps none of the config (a run of 100,000 devices holds no config)
        assert device.backup is None
        assert device.steps[1].output == str(repo.file_for(host))
        device.slim()  # once stored, only its backup step is kept
        assert device.stored and [s.kind for s in device.steps] == [StepKind.BACKUP]
    # written as they came, outside the repository until the commit
    assert not has_object(repo.path, sink.blobs["r0"])
    assert history(repo.path) == [first]
    assert sink.changed_hosts() == {"r0", "r1", "r3"}
    unchanged = repo.file_for("r2").stat()
    sha, changed = sink.commit("second")
    assert changed == {"r0", "r1", "r3"} and history(repo.path) == [sha, first]
    assert all(has_object(repo.path, blob) for blob in sink.blobs.values())
    for host, text in V2.items():
        assert committed(repo.path, host) == text
    # the file that did not change was not written again
    assert repo.file_for("r2").stat().st_ino == unchanged.st_ino
    assert repo.file_for("r2").stat().st_mtime_ns == unchanged.st_mtime_ns
    assert_clean(repo.path)
    assert not list(repo.git_dir.glob("runner-incoming-*"))
    git(repo.path, "fsck", "--no-progress", "--strict")


def test_a_run_that_stops_before_its_commit_leaves_nothing(tmp_path: Path) -> None:
    from runner.job.backups import BackupSink

    repo = BackupRepo(tmp_path / "backups")
    first, _ = repo.commit(V1, "first")
    sink = BackupSink(repo)
    for host, text in V2.items():
        sink.add(host, text)
    sink.close()  # interrupted: nothing of it reaches the repository
    assert not has_object(repo.path, sink.blobs["r3"])
    assert history(repo.path) == [first]
    assert not list(repo.git_dir.glob("runner-incoming-*"))
    assert_clean(repo.path)
    # a killed run's directory is removed by the next run that writes
    killed = BackupSink(repo)
    killed.add("r3", V2["r3"])
    assert killed._incoming is not None
    killed._lock.close()  # its process is gone: so is its lock
    killed._lock = None
    left = killed._incoming
    assert repo.commit(V2, "second")[1] == {"r0", "r1", "r3"}
    assert not left.exists()
    killed.close()


def test_many_configs_go_into_one_pack(tmp_path: Path) -> None:
    repo = BackupRepo(tmp_path / "backups")
    configs = {f"r{i}": f"hostname r{i}\n" + "interface x\n" * 50 for i in range(300)}
    repo.commit(configs, "first")
    counted = dict(line.split(": ", 1) for line in
                   git(repo.path, "count-objects", "-v").splitlines())
    assert counted["packs"] == "1" and int(counted["in-pack"]) == 300
    assert int(counted["count"]) <= 2  # the tree and the commit
    assert_clean(repo.path)
