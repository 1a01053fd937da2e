"""A device's story in the store, on SQLite and PostgreSQL: each device's newest record
(of every job, or only a repository's jobs without dry runs), a device's records newest
first, the listing's filters and pages, and a repository's backup table (never, failed and
ok, with the runs that made each version)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from runner.errors import InputError, NotFound
from runner.inventory.loading import load_inventory
from runner.inventory.targets import Targets
from runner.job.backup_index import Repo
from runner.job.backups import BackupRepo
from runner.records import DeviceResult, RunResult
from runner.redact import MASK
from runner.settings import Settings
from runner.store import devices
from runner.store.results import ResultsStore
from runner.vocab import DeviceStatus


def _run(store: ResultsStore, run_id: str, job: str, started: str,
         records: dict[str, DeviceStatus], dry_run: bool = False,
         commit: str | None = None) -> None:
    run = RunResult(run_id=run_id, job=job, started=started, finished=started,
                    devices=[], dry_run=dry_run, backup_commit=commit)
    store.start_run(run, list(records))
    run.devices = [DeviceResult(h, s, error=None if s.success else f"{s} on {h}",
                                error_class=None if s.success else "AuthFailed")
                   for h, s in records.items()]
    store.record_devices(run_id, run.devices, {h: i for i, h in enumerate(records)})
    store.finish_run(run)


@pytest.fixture
def inventory(tmp_path: Path) -> Path:
    directory = tmp_path / "inventory"
    directory.mkdir()
    (directory / "hosts.yaml").write_text(yaml.safe_dump({
        "r1": {"hostname": "10.0.0.1", "groups": ["core"]},
        "r2": {"hostname": "10.0.0.2", "groups": ["edge"], "platform": "juniper_junos"},
        "r3": {"hostname": "10.0.0.3", "groups": ["edge"],
               "data": {"snmp_community": "s3cr3t-community", "site": "ams"}}}))
    (directory / "groups.yaml").write_text(yaml.safe_dump({"core": {}, "edge": {}}))
    (directory / "defaults.yaml").write_text(yaml.safe_dump({
        "platform": "cisco_ios", "username": "admin", "password": "hunter2-secret"}))
    return directory


def test_last_runs_listing_and_a_devices_document(db_url: str, inventory: Path,
                                                  tmp_path: Path) -> None:
    store = ResultsStore(db_url)
    fleet = load_inventory(inventory)
    repo = BackupRepo(tmp_path / "backups")
    first, _ = repo.commit({"r1": "a\n", "r2": "a\n"}, "one")
    second, _ = repo.commit({"r1": "b\n"}, "two")
    _run(store, "run00000001", "backup", "2026-01-01T00:00:00.000+00:00",
         {"r1": DeviceStatus.CHANGED, "r2": DeviceStatus.OK,
          "r3": DeviceStatus.AUTH_FAILED}, commit=first)
    _run(store, "run00000002", "backup", "2026-01-02T00:00:00.000+00:00",
         {"r1": DeviceStatus.CHANGED, "r2": DeviceStatus.UNREACHABLE}, commit=second)
    _run(store, "run00000003", "backup", "2026-01-03T00:00:00.000+00:00",
         {"r2": DeviceStatus.OK}, dry_run=True)
    _run(store, "run00000004", "facts", "2026-01-04T00:00:00.000+00:00",
         {"r1": DeviceStatus.OK})

    last = devices.last_statuses(store)
    assert {h: s for h, (s, _) in last.items()} == {"r1": "ok", "r2": "ok",
                                                    "r3": "auth_failed"}
    real = devices.last_statuses(store, ["backup"], real_only=True)
    assert {h: s for h, (s, _) in real.items()} == {"r1": "changed", "r2": "unreachable",
                                                    "r3": "auth_failed"}
    assert [r["run_id"] for r in devices.host_runs(store, "r1")] == [
        "run00000004", "run00000002", "run00000001"]
    assert devices.runs_of_commits(store, [first, second, "f" * 40]) == {
        first: "run00000001", second: "run00000002"}

    total, rows = devices.device_list(store, fleet)
    assert total == 3 and [r["device"] for r in rows] == ["r1", "r2", "r3"]
    assert rows[0]["last_run"]["run_id"] == "run00000004"
    for where, expected in ((devices.DeviceFilter(status="auth_failed"), ["r3"]),
                            (devices.DeviceFilter(group="edge"), ["r2", "r3"]),
                            (devices.DeviceFilter(platform="juniper_junos"), ["r2"]),
                            (devices.DeviceFilter(search="10.0.0.3"), ["r3"]),
                            (devices.DeviceFilter(search="R1"), ["r1"])):
        assert [r["device"] for r in devices.device_list(store, fleet, where)[1]] == expected
    assert devices.device_list(store, fleet, limit=1, offset=1)[0] == 3
    with pytest.raises(InputError, match="not a device status"):
        devices.device_list(store, fleet, devices.DeviceFilter(status="weird"))

    backup_repo = Repo(str(repo.path), repo.path, ("backup",), (Targets(),))
    settings = Settings(lock_dir=tmp_path / "locks")
    document = devices.device_document(store, fleet, [backup_repo], settings, "r3")
    assert document["data"] == {"snmp_community": MASK, "site": "ams"}
    text = str(document)
    assert "hunter2-secret" not in text and "s3cr3t-community" not in text
    assert "admin" not in text
    assert document["backups"][0]["state"] == "never"
    assert document["last_run"]["error"] == "auth_failed on r3"
    r1 = devices.device_document(store, fleet, [backup_repo], settings, "r1")
    assert r1["last_backup"]["commit"] == second and r1["last_backup"]["run_id"] == \
        "run00000002"
    assert r1["backups"][0]["versions"] == 2 and r1["lease"] is None
    with pytest.raises(NotFound):
        devices.device_document(store, fleet, [backup_repo], settings, "r9")

    # a job whose targets hold a device runner cannot drive: the others stay listed
    hosts, problems = backup_repo.targeted(fleet)
    assert hosts == [] and "juniper_junos" in problems[0] and problems[0].startswith("backup")
    table = devices.backup_table(store, backup_repo, ["r1", "r3"])
    assert [(r["host"], r["state"]) for r in table["rows"]] == [
        ("r3", "never"), ("r2", "failed"), ("r1", "ok")]  # r2: it has backups
    assert table["counts"] == {"never": 1, "failed": 1, "ok": 1}
    failed = table["rows"][1]
    assert failed["last_backup"]["run_id"] == "run00000001"  # the older backup stays
    assert failed["last_attempt"]["status"] == "unreachable"
    page = devices.backup_table(store, backup_repo, ["r1", "r2", "r3"], offset=1, limit=1)
    assert [r["host"] for r in page["rows"]] == ["r2"] and page["shown"] == 3
    assert [r["host"] for r in devices.backup_table(
        store, backup_repo, ["r1", "r2", "r3"], state="ok")["rows"]] == ["r1"]
