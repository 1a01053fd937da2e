"""The containerlab backend's command plumbing and backend selection.

FAKE: Docker and containerlab cannot run on these machines, so `docker` and `containerlab`
here are stand-in shell scripts that record their arguments and print canned `inspect`
JSON. What is tested is runner's side: which commands it runs and how it reads answers.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from runner.errors import BackendUnavailable
from runner.inventory.loading import load_inventory
from runner.inventory.targets import Targets
from runner.lab.clab import ContainerlabBackend
from runner.lab.netns import NamespaceBackend
from runner.lab.service import Labs
from runner.settings import Settings
from tests.support.base import LAB_DIR, ROOT

FAKE_CLAB = """#!/bin/sh
echo "$@" >> "{log}"
if [ "$1" = deploy ]; then  # containerlab makes the lab directory and its own flat file
  mkdir -p "$(dirname "$3")/clab-practice"
  echo "# containerlab's own" > "$(dirname "$3")/clab-practice/nornir-simple-inventory.yml"
fi
if [ "$1" = inspect ]; then
  cat <<'JSON'
{{"practice": [
  {{"name": "clab-practice-r1", "state": "running", "ipv4_address": "172.20.20.11/24"}},
  {{"name": "clab-practice-r2", "state": "exited", "ipv4_address": ""}},
  {{"name": "clab-practice-r3", "state": "running", "ipv4_address": "172.20.20.99/24"}}
]}}
JSON
fi
"""

# Host keys as `docker exec NODE sh -c 'cat /etc/ssh/ssh_host_*_key.pub'` prints them: r1
# and r3 run sshd, r2's container has exited.
KEY_R1 = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHRlc3Qta2V5LW9mLXIxLXJ1bm5lci10ZXN0cw"
KEY_R3 = ("ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBHRl"
          "c3Qta2V5LW9mLXIz")
FAKE_DOCKER = f"""#!/bin/sh
echo "docker $@" >> "{{log}}"
if [ "$1" = exec ]; then
  case "$2" in
    clab-practice-r1) echo "{KEY_R1} root@r1";;
    clab-practice-r3) echo "{KEY_R3} root@r3"; echo "not a key";;
    *) echo "Error response from daemon: container is not running" >&2; exit 1;;
  esac
  exit 0
fi
exit "${{{{FAKE_DOCKER_RC:-0}}}}"
"""


@pytest.fixture
def labs(tmp_path: Path) -> Labs:
    """The lab service with its index of labs in the test's own directory."""
    return Labs(Settings(lab_index=tmp_path / "index"))


@pytest.fixture
def fake_tools(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    bindir = tmp_path / "bin"
    bindir.mkdir()
    log = tmp_path / "calls.log"
    (bindir / "containerlab").write_text(FAKE_CLAB.format(log=log), encoding="utf-8")
    (bindir / "docker").write_text(FAKE_DOCKER.format(log=log), encoding="utf-8")
    for tool in bindir.iterdir():
        tool.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bindir}:/usr/bin:/bin:/usr/sbin:/sbin")
    return log


def test_auto_prefers_containerlab_when_docker_engine_answers(fake_tools: Path,
                                                              labs: Labs) -> None:
    assert isinstance(labs.choose_backend("auto"), ContainerlabBackend)


def test_auto_falls_back_to_namespaces_without_docker_engine(
        fake_tools: Path, labs: Labs, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_DOCKER_RC", "1")
    assert isinstance(labs.choose_backend("auto"), NamespaceBackend)
    with pytest.raises(BackendUnavailable, match="no Docker engine is running"):
        labs.choose_backend("containerlab")


def test_up_status_down_run_containerlab(fake_tools: Path, labs: Labs, tmp_path: Path) -> None:
    topo = tmp_path / "practice.clab.yml"
    topo.write_text((LAB_DIR / "practice.clab.yml").read_text(encoding="utf-8"),
                    encoding="utf-8")
    shutil.copytree(LAB_DIR / "practice", tmp_path / "practice")  # a link out is refused
    st = labs.up(topo, "containerlab")
    assert st.backend == "containerlab"
    nodes = {n.name: n for n in st.nodes}
    assert nodes["r1"].running and nodes["r1"].mgmt_ip == "172.20.20.11"
    assert not nodes["r2"].running
    assert labs.index.load_by_name("practice").backend == "containerlab"
    assert (tmp_path / "index" / "practice.json").exists()  # the index the settings name
    assert labs.down(str(topo))
    calls = fake_tools.read_text(encoding="utf-8").splitlines()
    assert f"deploy -t {topo}" in calls
    assert f"inspect -t {topo} --format json" in calls
    assert f"destroy -t {topo} --cleanup" in calls
    assert labs.index.all_labs() == []


def test_unknown_backend_is_refused(labs: Labs) -> None:
    with pytest.raises(BackendUnavailable, match="unknown backend 'docker'"):
        labs.choose_backend("docker")



def test_cli_passes_the_settings_it_read_down_to_the_lab(
        fake_tools: Path, labs: Labs, tmp_path: Path) -> None:
    """RUNNER_LAB_INDEX, read once by the `runner` group, is where `lab status` looks."""
    topo = tmp_path / "practice.clab.yml"
    topo.write_text((LAB_DIR / "practice.clab.yml").read_text(encoding="utf-8"),
                    encoding="utf-8")
    shutil.copytree(LAB_DIR / "practice", tmp_path / "practice")  # a link out is refused
    labs.up(topo, "containerlab")
    env = {**os.environ, "PATH": f"{tmp_path / 'bin'}:/usr/bin:/bin",
           "RUNNER_LAB_INDEX": str(tmp_path / "index"), "RUNNER_LAB_READY_TIMEOUT": "5"}
    proc = subprocess.run([sys.executable, "-m", "runner", "lab", "status", "--json"],
                          capture_output=True, text=True, check=False, env=env, cwd=ROOT)
    assert [lab["lab"] for lab in json.loads(proc.stdout)] == ["practice"], proc.stderr
    env["RUNNER_LAB_INDEX"] = str(tmp_path / "elsewhere")
    proc = subprocess.run([sys.executable, "-m", "runner", "lab", "status"],
                          capture_output=True, text=True, check=False, env=env, cwd=ROOT)
    assert proc.stdout.strip() == "no labs are up", proc.stderr
    assert Labs(Settings(lab_ready_timeout=5)).namespace.ready_timeout == 5


def test_containerlab_up_writes_the_client_files(fake_tools: Path, labs: Labs,
                                                 tmp_path: Path) -> None:
    """After a containerlab deploy, `-i clab-X/inventory`, known_hosts and ssh_config exist
    as the namespace backend writes them, from `inspect`'s management addresses (r3 has
    none in the topology: docker chose .99) and the containers' host keys; containerlab's
    own flat inventory stays as it wrote it."""
    topo = tmp_path / "practice.clab.yml"
    text = (LAB_DIR / "practice.clab.yml").read_text(encoding="utf-8")
    assert "      mgmt-ipv4: 172.20.20.13\n" in text
    topo.write_text(text.replace("      mgmt-ipv4: 172.20.20.13\n", ""), encoding="utf-8")
    shutil.copytree(LAB_DIR / "practice", tmp_path / "practice")
    labs.up(topo, "containerlab")
    lab_dir = tmp_path / "clab-practice"
    assert (lab_dir / "nornir-simple-inventory.yml").read_text(
        encoding="utf-8") == "# containerlab's own\n"
    calls = fake_tools.read_text(encoding="utf-8").splitlines()
    assert "docker exec clab-practice-r1 sh -c cat /etc/ssh/ssh_host_*_key.pub" in calls

    known_hosts = lab_dir / "known_hosts"
    assert known_hosts.read_text(encoding="utf-8").splitlines() == [
        f"172.20.20.11,r1,clab-practice-r1 {KEY_R1}",
        f"172.20.20.99,r3,clab-practice-r3 {KEY_R3}"]

    inv = load_inventory(lab_dir / "inventory")
    assert inv.select(Targets(groups=["routers"])) == ["r1", "r2", "r3", "r4"]
    assert {h: inv.address(h, "netmiko")[0] for h in ("r1", "r2", "r3", "r4")} == {
        "r1": "172.20.20.11", "r2": "172.20.20.12", "r3": "172.20.20.99",
        "r4": "172.20.20.14"}
    for driver in ("netmiko", "scrapli", "asyncssh"):
        params = inv.connect_params("r3", driver)
        assert (params.hostname, params.port, params.username) == ("172.20.20.99", 22, "admin")
        assert params.host_key_checking
        assert str(known_hosts) in json.dumps(params.extras)
    assert "ssh_key_file" not in inv.nornir.defaults.data  # no lab key on this backend
    for name in ("inventory/hosts.yaml", "inventory/defaults.yaml"):
        assert (lab_dir / name).stat().st_mode & 0o077 == 0, name

    # OpenSSH itself reads the ssh_config: address, user, the lab's known_hosts, strict
    ssh = subprocess.run(["ssh", "-G", "-F", str(lab_dir / "ssh_config"), "r3"],
                         capture_output=True, text=True, check=True)
    options = dict(line.split(" ", 1) for line in ssh.stdout.splitlines() if " " in line)
    assert options["hostname"] == "172.20.20.99"
    assert options["user"] == "admin"
    assert options["userknownhostsfile"] == str(known_hosts)
    assert options["stricthostkeychecking"] in ("true", "yes")
    assert str(lab_dir / "id_ed25519") not in ssh.stdout
    assert not (lab_dir / "id_ed25519").exists()
    assert labs.down(str(topo))
