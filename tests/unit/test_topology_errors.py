"""Every bad topology file gets one error naming file, line and the problem."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from runner.errors import InputError
from runner.lab.topology import load_topology

BAD = sorted((Path(__file__).parent / "bad_topologies").glob("*.clab.yml"))


def expectation(path: Path) -> tuple[int, str]:
    first = path.read_text(encoding="utf-8").splitlines()[0]
    m = re.match(r"# expect: line (\d+): (.*)", first)
    assert m, f"{path.name} lacks its '# expect: line N: text' header"
    return int(m.group(1)), m.group(2)


@pytest.mark.parametrize("path", BAD, ids=[p.stem for p in BAD])
def test_bad_topology_names_file_line_and_problem(path: Path) -> None:
    line, text = expectation(path)
    with pytest.raises(InputError) as info:
        load_topology(path)
    err = info.value
    assert err.path is not None and err.path.name == path.name
    assert err.line == line, str(err)
    assert text in str(err)
    assert str(err).startswith(f"{err.path}:{line}: ")


def test_corpus_covers_the_issue_list() -> None:
    names = {p.stem.removesuffix(".clab") for p in BAD}
    assert {"unknown_node", "duplicate_iface", "eth0_data", "long_ifname", "unknown_kind",
            "mgmt_outside", "yaml_error", "vendor_kind"} <= names


def test_cli_reports_one_error_and_exit_code_2(tmp_path: Path) -> None:
    path = Path(__file__).parent / "bad_topologies" / "unknown_node.clab.yml"
    proc = subprocess.run([sys.executable, "-m", "runner", "lab", "up", str(path)],
                          capture_output=True, text=True, check=False, cwd=tmp_path)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith(f"error: {path.resolve()}:8: ")
    assert "unknown node 'r9'" in lines[0]
    assert not (path.parent / "clab-bad").exists()


def test_missing_file_is_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="file not found"):
        load_topology(tmp_path / "nope.clab.yml")
