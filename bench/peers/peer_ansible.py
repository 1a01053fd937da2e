"""Ansible: cisco.ios.ios_command / ios_config over ansible.netcommon.network_cli.

usage: peer_ansible.py INVENTORY_DIR show|push LIMIT
Writes an Ansible inventory (password inside, mode 0600) and playbook into a temporary
directory, runs ansible-playbook with one fork per device, and reports from its JSON output.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml
from work import PUSH, SHOW, fleet, report


def main() -> None:
    hosts, defaults = fleet(Path(sys.argv[1]), int(sys.argv[3]))
    mode = sys.argv[2]
    task = {"cisco.ios.ios_command": {"commands": SHOW}} if mode == "show" else \
        {"cisco.ios.ios_config": {"lines": PUSH}}
    with tempfile.TemporaryDirectory(prefix="runner-bench-ansible-") as tmp:
        work = Path(tmp)
        inventory = {"all": {
            "hosts": {h["name"]: {"ansible_host": h["hostname"], "ansible_port": h["port"]}
                      for h in hosts},
            "vars": {"ansible_connection": "ansible.netcommon.network_cli",
                     "ansible_network_os": "cisco.ios.ios",
                     "ansible_user": defaults["username"],
                     "ansible_password": defaults["password"]}}}
        inv = work / "inventory.yml"
        inv.touch(mode=0o600)
        inv.write_text(yaml.safe_dump(inventory), encoding="utf-8")
        play = work / "play.yml"
        play.write_text(yaml.safe_dump([{"hosts": "all", "gather_facts": False,
                                         "tasks": [task]}]), encoding="utf-8")
        env = {**os.environ, "ANSIBLE_HOST_KEY_CHECKING": "False",
               "ANSIBLE_FORKS": str(len(hosts)), "ANSIBLE_STDOUT_CALLBACK": "ansible.posix.json",
               "ANSIBLE_HOME": str(work / "home"), "ANSIBLE_LOCAL_TEMP": str(work / "tmp"),
               "ANSIBLE_PERSISTENT_CONTROL_PATH_DIR": str(work / "pc"),
               "ANSIBLE_RETRY_FILES_ENABLED": "False", "ANSIBLE_NOCOLOR": "1"}
        bindir = Path(sys.executable).parent
        proc = subprocess.run([str(bindir / "ansible-playbook"), "-i", str(inv), str(play)],
                              env=env, capture_output=True, text=True, check=False)
    try:
        stats = json.loads(proc.stdout)["stats"]
    except (ValueError, KeyError):
        report(0, len(hosts), {"ansible-playbook": (proc.stdout + proc.stderr)[-500:]})
        return
    errors = {name: str(s) for name, s in stats.items()
              if s.get("failures") or s.get("unreachable")}
    missing = {h["name"]: "no result" for h in hosts if h["name"] not in stats}
    errors.update(missing)
    report(len(hosts) - len(errors), len(errors), errors)


main()
