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
from runner.lab.clab import ContainerlabBackend
from runner.lab.netns import NamespaceBackend
from runner.lab.service import Labs
from runner.settings import Settings
from tests.conftest import LAB_DIR, ROOT

FAKE_CLAB = """#!/bin/sh
echo "$@" >> "{log}"
if [ "$1" = inspect ]; then
  cat <<'JSON'
{{"practice": [
  {{"name": "clab-practice-r1", "state": "running", "ipv4_address": "172.20.20.11/24"}},
  {{"name": "clab-practice-r2", "state": "exited", "ipv4_address": ""}}
]}}
JSON
fi
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
    (bindir / "docker").write_text(f'#!/bin/sh\necho "docker $@" >> "{log}"\n'
                                   'exit "${FAKE_DOCKER_RC:-0}"\n', encoding="utf-8")
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
