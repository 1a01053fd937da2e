"""A device's whole story across runs: the listing of the inventory's devices with their
last run (`runner device`, /devices, GET /api/devices), one device's document (`runner
device NAME --json`, /devices/NAME, GET /api/devices/NAME: facts without secrets, runs,
backups, compliance, lease), and each backup repository's table of devices (last backup,
last attempt, versions). One function per document, so the CLI, the pages and the API
say the same."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select, String, any_, bindparam, cast, func, select

from runner.errors import BackupError, InputError, NotFound
from runner.execution.control.keys import device_key
from runner.execution.leases import lease_of
from runner.inventory.fleet import FleetInventory
from runner.job.backup_index import Repo
from runner.job.backups import BackupRepo
from runner.redact import Redactor
from runner.settings import Settings
from runner.store import compliance as store_compliance
from runner.store.results import ResultsStore, device_last, devices, runs
from runner.vocab import DeviceStatus

NEVER = "never"  # the status filter's word for devices no run has recorded
_SUCCESS = frozenset(s for s in DeviceStatus if s.success)
RUNS_SHOWN = 20  # a device's newest runs in its document
MAX_VERSIONS = 100_000  # versions counted per device and repository

# A device's run as documents show it: the device's record and its run's columns.
_RUN_COLUMNS = (runs.c.run_id, runs.c.job, runs.c.status.label("run_status"),
                runs.c.dry_run, devices.c.status, devices.c.changed, devices.c.started,
                devices.c.finished, devices.c.error, devices.c.error_class)


def _row(found: Any) -> dict[str, Any]:
    return dict(found._mapping)


def last_statuses(store: ResultsStore, jobs: list[str] | None = None,
                  real_only: bool = False, hosts: list[str] | None = None,
                  ) -> dict[str, tuple[str, int]]:
    """Each device's (or only these `hosts'`) newest record (of these jobs' runs; without
    dry runs): host -> (its status, the record's id). Two columns of every device: enough
    to filter and count 10,000 devices; records_of() reads the rows a page shows."""
    if hosts is not None:
        out: dict[str, tuple[str, int]] = {}
        for at in range(0, len(hosts), 500):
            out.update(_last_statuses(store, jobs, real_only, hosts[at:at + 500]))
        return out
    return _last_statuses(store, jobs, real_only, None)


def _last_statuses(store: ResultsStore, jobs: list[str] | None, real_only: bool,
                   among: list[str] | None) -> dict[str, tuple[str, int]]:
    newest = select(devices.c.host, func.max(devices.c.id).label("id"))
    if among is not None:
        newest = newest.where(devices.c.host.in_(among))
    if jobs is not None or real_only:  # else the (host, id) index alone answers
        newest = newest.select_from(devices.join(runs, runs.c.run_id == devices.c.run_id))
    if jobs is not None:
        newest = newest.where(runs.c.job.in_(jobs))
    if real_only:
        newest = newest.where(runs.c.dry_run.is_(False))
    found = newest.group_by(devices.c.host).subquery()
    query = select(found.c.host, devices.c.status, found.c.id).select_from(
        found.join(devices, devices.c.id == found.c.id))
    with store.engine.connect() as conn:
        return {host: (status, ident) for host, status, ident in conn.execute(query)}


def records_of(store: ResultsStore, ids: list[int]) -> dict[str, dict[str, Any]]:
    """These device records with their runs: host -> row."""
    out: dict[str, dict[str, Any]] = {}
    with store.engine.connect() as conn:
        for at in range(0, len(ids), 500):
            query = select(devices.c.host, *_RUN_COLUMNS).select_from(
                devices.join(runs, runs.c.run_id == devices.c.run_id)).where(
                devices.c.id.in_(ids[at:at + 500]))
            out.update({r.host: {k: v for k, v in _row(r).items() if k != "host"}
                        for r in conn.execute(query)})
    return out


def host_runs(store: ResultsStore, host: str, limit: int = RUNS_SHOWN,
              jobs: list[str] | None = None, real_only: bool = False) -> list[dict[str, Any]]:
    """A device's records, newest first, each with its run."""
    query = select(*_RUN_COLUMNS).select_from(
        devices.join(runs, runs.c.run_id == devices.c.run_id)).where(devices.c.host == host)
    if jobs is not None:
        query = query.where(runs.c.job.in_(jobs))
    if real_only:
        query = query.where(runs.c.dry_run.is_(False))
    with store.engine.connect() as conn:
        return [_row(r) for r in conn.execute(query.order_by(devices.c.id.desc())
                                              .limit(limit))]


def runs_of_commits(store: ResultsStore, commits: list[str]) -> dict[str, str]:
    """The run that made each backup commit: commit -> run id."""
    wanted = sorted(set(commits))
    out: dict[str, str] = {}
    with store.engine.connect() as conn:
        for at in range(0, len(wanted), 500):
            query = select(runs.c.backup_commit, runs.c.run_id).where(
                runs.c.backup_commit.in_(wanted[at:at + 500]))
            out.update({c: r for c, r in conn.execute(query)})
    return out


# -- facts ----------------------------------------------------------------------------------


def _plain(value: Any) -> Any:
    """Inventory data as JSON (a secret reference shows what it refers to, never its
    value: it is not read here)."""
    return json.loads(json.dumps(value, default=str))


def facts(fleet: FleetInventory, name: str) -> dict[str, Any]:
    """What the inventory says of a device, secrets aside: its address, platform, groups
    and data (values of keys that name a secret masked); no username or password."""
    host = fleet.hosts[name]
    return {"device": name, "in_inventory": True, "hostname": host.hostname or name,
            "port": host.port or 22, "platform": fleet.platform_of(name),
            "groups": [g.name for g in host.groups],
            "data": Redactor().value(_plain(dict(host.items())))}


def _absent(name: str) -> dict[str, Any]:
    return {"device": name, "in_inventory": False, "hostname": None, "port": None,
            "platform": None, "groups": [], "data": {}}


# -- the listing ----------------------------------------------------------------------------


@dataclass(frozen=True)
class DeviceFilter:
    """Which devices to list: a part of the name (or address), a group, a platform, the
    status of the last run (`never`: no run recorded it)."""

    search: str | None = None
    group: str | None = None
    platform: str | None = None
    status: str | None = None

    def checked(self, fleet: FleetInventory) -> DeviceFilter:
        if self.status and self.status != NEVER and self.status not in set(DeviceStatus):
            raise InputError(f"{self.status!r} is not a device status (one of "
                             f"{', '.join([*DeviceStatus, NEVER])})", field="status")
        if self.group and self.group not in fleet.nornir.groups:
            known = ", ".join(sorted(fleet.nornir.groups)[:20]) or "none"
            raise InputError(f"group {self.group!r} is not in the inventory (groups: "
                             f"{known})", field="group")
        return self

    def chosen(self, fleet: FleetInventory) -> list[str]:
        """The devices whose name or address, groups and platform are the ones asked, in
        inventory order (the facts made once per inventory: no host's inheritance is
        resolved per search)."""
        if not (self.group or self.search or self.platform):
            return list(fleet.hosts)
        if self.search:
            table = fleet.matching(self.search.lower())
            if self.group:
                table = [f for f in table if self.group in f.groups]
        else:
            table = fleet.group_members(self.group) if self.group else fleet.facts_table()
        if self.platform:
            table = [f for f in table if f.platform == self.platform]
        return [f.name for f in table]


LOOKUPS = 5000  # past this many devices chosen by their facts, read those of one status
SCAN_PER_LOOKUP = 4  # rows read along an index for the cost of one device looked up


CHUNK = 5000  # names looked up in one statement


def by_name_query(dialect: str, status: bool = False) -> Select[Any]:
    """device_last looked up by name: the names bound as one parameter (`hosts`, see
    _names_param) that the database unpacks (SQLite json_each, PostgreSQL an array), so a
    statement of 5,000 names is not 5,000 bound values SQLAlchemy expands per call;
    `status`: only those whose newest record has the status bound as `status`."""
    if dialect == "sqlite":
        names: Any = device_last.c.host.in_(select(
            func.json_each(bindparam("hosts")).table_valued("value").c.value))
    elif dialect == "postgresql":
        from sqlalchemy.dialects import postgresql  # only where it is the database

        names = device_last.c.host == any_(cast(bindparam("hosts"),
                                                postgresql.ARRAY(String)))
    else:
        names = device_last.c.host.in_(bindparam("hosts", expanding=True))
    query = select(device_last.c.host, device_last.c.record_id).where(names)
    return query.where(device_last.c.status == bindparam("status")) if status else query


def _names_param(dialect: str, hosts: list[str]) -> Any:
    return json.dumps(hosts) if dialect == "sqlite" else hosts


def _recorded(store: ResultsStore, hosts: list[str], status: str | None = None,
              ) -> dict[str, int]:
    """Of these hosts, those with a record (of them, those whose newest record has this
    status): host -> its newest record's id, by device_last's key."""
    out: dict[str, int] = {}
    dialect = store.engine.dialect.name
    query = by_name_query(dialect, status is not None)
    with store.engine.connect() as conn:
        for at in range(0, len(hosts), CHUNK):
            out.update({host: ident for host, ident in conn.execute(query, {
                "hosts": _names_param(dialect, hosts[at:at + CHUNK]), "status": status})})
    return out


def hosts_of_status_query(status: str | None) -> Select[Any]:
    """The devices whose newest record has this status (None: every recorded device),
    along ix_device_last_status_host (tests/unit/test_run_listing.py checks the plan)."""
    query = select(device_last.c.host)
    return query if status is None else query.where(device_last.c.status == status)


def _of_status(store: ResultsStore, chosen: list[str], status: str) -> list[str]:
    """The chosen devices whose newest record has `status` (NEVER: that have none), in
    their order. A few devices are looked up by name; many are compared with the devices
    of that status (or every recorded device, for NEVER), read along an index: the fewer
    rows either way (a site of 10,000 devices and `failed` reads the failed devices)."""
    wanted = None if status == NEVER else status
    if len(chosen) <= LOOKUPS:
        found = set(_recorded(store, chosen, wanted))
    else:
        query = hosts_of_status_query(wanted)
        bound = SCAN_PER_LOOKUP * len(chosen)
        with store.engine.connect() as conn:
            # past `bound` rows of that status, looking each chosen device up costs less
            many = conn.execute(select(func.count()).select_from(
                query.limit(bound).subquery())).scalar_one() >= bound
            found = set() if many else set(conn.execute(query).scalars().all())
        if many:
            found = set(_recorded(store, chosen, wanted))
    if wanted is None:
        return [n for n in chosen if n not in found]
    return [n for n in chosen if n in found]


def device_list(store: ResultsStore, fleet: FleetInventory, where: DeviceFilter | None = None,
                limit: int | None = None, offset: int = 0) -> tuple[int, list[dict[str, Any]]]:
    """(how many devices match, a page of them in inventory order): each with its facts
    and its last run (`runner device --json`, GET /api/devices). Reads the records of the
    page's devices only (and, to filter by status, the devices of that status)."""
    where = (where or DeviceFilter()).checked(fleet)
    chosen = where.chosen(fleet)
    if where.status:
        chosen = _of_status(store, chosen, where.status)
    page = chosen[offset:None if limit is None else offset + limit]
    last = _recorded(store, page)
    records = records_of(store, [last[n] for n in page if n in last])
    out = []
    for name in page:
        host = fleet.hosts[name]
        out.append({"device": name, "hostname": host.hostname or name,
                    "port": host.port or 22, "platform": fleet.platform_of(name),
                    "groups": [g.name for g in host.groups], "last_run": records.get(name)})
    return len(chosen), out


def platforms_of(fleet: FleetInventory) -> list[str]:
    return list(fleet.platforms())


# -- one device -----------------------------------------------------------------------------


def _backup_of(repo: Repo, store: ResultsStore, host: str) -> dict[str, Any] | None:
    """A device in one repository: its versions, the newest, the run that made it, the
    last attempt of the repository's jobs; None when it has neither backup nor attempt."""
    versions = BackupRepo(repo.path).history(host, MAX_VERSIONS)
    attempts = host_runs(store, host, 1, list(repo.jobs), real_only=True) if repo.jobs \
        else []
    if not versions and not attempts:
        return None
    newest = versions[0] if versions else None
    made_by = runs_of_commits(store, [newest["commit"]]) if newest else {}
    return _backup_row(repo, host, newest, len(versions),
                       made_by.get(newest["commit"]) if newest else None,
                       attempts[0] if attempts else None)


def _backup_row(repo: Repo, host: str, newest: dict[str, Any] | None, versions: int,
                run_id: str | None, attempt: dict[str, Any] | None) -> dict[str, Any]:
    failed = attempt is not None and not DeviceStatus(attempt["status"]).success
    state = "never" if newest is None else "failed" if failed else "ok"
    return {"repo": repo.name, "host": host, "state": state, "versions": versions,
            "last_backup": None if newest is None else {
                "commit": newest["commit"], "date": newest["date"], "run_id": run_id},
            "last_attempt": None if attempt is None else {
                k: attempt[k] for k in ("run_id", "job", "status", "finished", "error",
                                        "error_class")}}


def device_document(store: ResultsStore, fleet: FleetInventory, repos: list[Repo],
                    settings: Settings, name: str) -> dict[str, Any]:
    """`runner device NAME --json` and GET /api/devices/NAME: the inventory's facts (no
    secret), its newest runs with their status, its backups per repository, the newest of
    them (`last_backup`), its compliance per feature, and who holds its lease now. A name
    neither the inventory nor any record knows is NotFound."""
    history = host_runs(store, name)
    backups = [b for repo in repos if (b := _backup_of(repo, store, name)) is not None]
    if name in fleet.hosts:
        document = facts(fleet, name)
    elif history or backups:
        document = _absent(name)  # gone from the inventory: its history stays readable
    else:
        raise NotFound(f"no device {name!r} in the inventory ({fleet.source}) or in any "
                       "run", field="device")
    dated = [b["last_backup"] for b in backups if b["last_backup"]]
    newest = max(dated, key=lambda b: b["date"], default=None)
    lease = None
    if document["in_inventory"]:
        hostname, port = fleet.address(name, fleet.driver_for(name, "netmiko"))
        lease = lease_of(device_key(hostname, port), settings.broker_url, settings.lock_dir)
    return {**document, "last_run": history[0] if history else None, "runs": history,
            "backups": backups,
            "last_backup": None if newest is None else
            {"repo": next(b["repo"] for b in backups if b["last_backup"] is newest),
             **newest},
            "compliance": [{k: row[k] for k in ("feature", "status", "job", "since",
                                                "checked", "run_id", "missing_count",
                                                "extra_count", "source")}
                           for row in store_compliance.latest(
                               store, store_compliance.StateFilter(host=name))],
            "lease": lease}


# -- a backup repository's table ------------------------------------------------------------


STATES = ("never", "failed", "ok")  # a device's backup state, in the table's order


def backup_table(store: ResultsStore, repo: Repo, targeted: list[str],
                 state: str | None = None, search: str | None = None, offset: int = 0,
                 limit: int | None = None) -> dict[str, Any]:
    """Every device a repository's jobs target (`targeted`: Repo.targeted() of the
    inventory) and every device with a backup in it: its last backup (time, commit, the
    run that made it), the last attempt of the repository's jobs on it (status, error),
    its number of versions, its state (ok; failed: the last attempt failed, the backup is
    older; never: no backup yet). Never and failed first; `counts` of every state, `rows`
    the page of those in `state` whose name holds `search`."""
    if state is not None and state not in STATES:
        raise InputError(f"{state!r} is not a backup state (one of {', '.join(STATES)})",
                         field="state")
    summary = BackupRepo(repo.path).summary()
    known = set(targeted)
    hosts = targeted + sorted(h for h in summary if h not in known)
    attempts = last_statuses(store, list(repo.jobs), real_only=True) if repo.jobs else {}
    states: dict[str, str] = {}
    for host in hosts:
        attempt = attempts.get(host)
        failed = attempt is not None and attempt[0] not in _SUCCESS
        states[host] = "never" if host not in summary else "failed" if failed else "ok"
    counts = dict.fromkeys(STATES, 0)
    for value in states.values():
        counts[value] += 1
    order = {s: i for i, s in enumerate(STATES)}
    chosen = sorted((h for h in hosts if (state is None or states[h] == state)
                     and (not search or search.lower() in h.lower())),
                    key=lambda h: order[states[h]])  # stable: inventory order in a state
    page = chosen[offset:None if limit is None else offset + limit]
    records = records_of(store, [attempts[h][1] for h in page if h in attempts])
    made_by = runs_of_commits(store, [summary[h]["commit"] for h in page if h in summary])
    rows = [_backup_row(repo, h, summary.get(h), (summary.get(h) or {}).get("versions", 0),
                        made_by.get((summary.get(h) or {}).get("commit", "")),
                        records.get(h)) for h in page]
    return {"repo": repo.name, "path": str(repo.path), "jobs": list(repo.jobs),
            "devices": len(hosts), "counts": counts, "shown": len(chosen), "rows": rows}


def config_at(repo: Repo, host: str, commit: str | None) -> tuple[str, str]:
    """(commit, text) of a device's backup at a version; the newest without one."""
    backups = BackupRepo(repo.path)
    if commit is None:
        versions = backups.history(host, 1)
        if not versions:
            raise NotFound(f"no backup of {host!r} in {repo.name}", field="host")
        commit = versions[0]["commit"]
    full = backups.commit_id(commit)
    try:
        return full, backups.text_at(host, full)
    except BackupError:  # git show: the device has no file in that commit
        raise NotFound(f"{repo.name} has no backup of {host!r} at {commit}",
                       field="at") from None
