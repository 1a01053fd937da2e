"""Nornir + nornir_netmiko, the threaded runner with 100 workers: what most users run today.

usage: peer_nornir.py INVENTORY_DIR show|push [LIMIT]
"""

from __future__ import annotations

import sys
from pathlib import Path

from nornir import InitNornir
from nornir.core.task import Result, Task
from nornir_netmiko.tasks import netmiko_send_command, netmiko_send_config
from work import PUSH, SHOW, report


def show(task: Task) -> Result:
    for command in SHOW:
        task.run(task=netmiko_send_command, command_string=command)
    return Result(host=task.host)


def push(task: Task) -> Result:
    task.run(task=netmiko_send_config, config_commands=PUSH)
    return Result(host=task.host)


def main() -> None:
    inv = Path(sys.argv[1])
    limit = int(sys.argv[3]) if len(sys.argv) > 3 else None
    nr = InitNornir(
        runner={"plugin": "threaded", "options": {"num_workers": 100}},
        inventory={"plugin": "SimpleInventory", "options": {
            "host_file": str(inv / "hosts.yaml"), "group_file": str(inv / "groups.yaml"),
            "defaults_file": str(inv / "defaults.yaml")}},
        logging={"enabled": False})
    # netmiko's own defaults (no host-key check), as Nornir users run it: with the fleet's
    # 1,000-line known_hosts, paramiko would re-read the whole file for every session.
    nr.inventory.defaults.connection_options["netmiko"].extras = {}
    if limit:
        keep = set(list(nr.inventory.hosts)[:limit])
        nr = nr.filter(filter_func=lambda h: h.name in keep)
    result = nr.run(task=show if sys.argv[2] == "show" else push)
    nr.close_connections()
    errors = {name: str(r.exception)[:200] for name, r in result.items() if r.failed}
    report(len(result) - len(errors), len(errors), errors)


main()
