"""`runner lab graph` from the files alone: mermaid keeps distinct node names distinct and
quotes every label (names such as `end` or `graph` are mermaid keywords), and neither
mermaid nor DOT lets an interface name's quotes or pipes end a label early."""

from __future__ import annotations

import itertools
import re
import subprocess
import sys
from pathlib import Path

import pytest

from runner.lab.graph import build, to_dot, to_mermaid
from runner.lab.topology import load_topology

NAMES = ["r-1", "r.1", "r1", "end", "graph", "subgraph", "style", "click", "classDef",
         "linkStyle", "default", "flowchart"]


@pytest.fixture
def topology(tmp_path: Path) -> Path:
    nodes = "".join(f"    {n}: {{kind: linux}}\n" for n in NAMES)
    links = "".join(f'    - endpoints: ["{a}:eth{i}", "{b}:eth{i}"]\n'
                    for i, (a, b) in enumerate(itertools.pairwise(NAMES), 1))
    links += '    - endpoints: [\'r1:e"x|y\', \'end:a#b<c>\']\n'
    path = tmp_path / "g.clab.yml"
    path.write_text(f"name: g\ntopology:\n  nodes:\n{nodes}  links:\n{links}", encoding="utf-8")
    return path


def test_mermaid_keeps_every_node_apart_and_quoted(topology: Path) -> None:
    text = to_mermaid(build(load_topology(topology), None, None))
    declared = re.findall(r"^  (n\d+)(?:\(\(|\[)\"([^\"]*)\"", text, re.M)
    assert sorted(name for _, name in declared) == sorted(NAMES)
    assert len({node_id for node_id, _ in declared}) == len(NAMES)
    ids = dict((name, node_id) for node_id, name in declared)
    edges = re.findall(r"^  (n\d+) -(?:--|\.-)\|\"([^\"]*)\"\| (n\d+)$", text, re.M)
    assert len(edges) == len(NAMES)  # each link once, whole
    assert (ids["r-1"], ids["r.1"]) in {(a, b) for a, _, b in edges}
    assert any(label == "e#quot;x#124;y -- a#35;b#lt;c#gt;" for _, label, _ in edges)
    for keyword in ("end", "graph", "subgraph", "style", "click"):  # never a bare keyword
        assert not re.search(rf"^\s*{keyword}\b", text.split("\n", 1)[1], re.M)


def test_dot_escapes_quotes_in_labels(topology: Path) -> None:
    text = to_dot(build(load_topology(topology), None, None))
    assert 'taillabel="e\\"x|y"' in text
    for line in text.splitlines()[4:-1]:
        unescaped = re.sub(r'\\.', "", line)
        assert unescaped.count('"') % 2 == 0, line  # every string closed where it should


def test_the_cli_prints_it(topology: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "runner", "lab", "graph", str(topology),
                           "--format", "mermaid"], capture_output=True, text=True, check=False,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("graph LR\n") and '(("r-1"))' not in proc.stdout
    assert '[\"r-1\"]' in proc.stdout
