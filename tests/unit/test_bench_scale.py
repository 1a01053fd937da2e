"""`./dev bench --scale` runs bench/scale.py's list of benches: each names a script that
exists and options that script takes (a bench renamed or an option dropped fails here, not
twenty minutes into a run), and `./dev` hands `--scale` to it."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from bench.scale import SCALE_BENCHES, Bench
from tests.support.base import ROOT


@pytest.mark.parametrize("bench", SCALE_BENCHES, ids=lambda b: b.name)
def test_each_scale_bench_is_a_script_that_takes_its_options(bench: Bench) -> None:
    script = ROOT / bench.argv[0]
    assert script.is_file(), script
    help_text = subprocess.run([sys.executable, str(script), "--help"], cwd=ROOT,
                               capture_output=True, text=True, timeout=120, check=True).stdout
    for option in (a for a in bench.argv[1:] if a.startswith("--")):
        assert re.search(rf"(^|\s|\[){re.escape(option)}\b", help_text), (option, help_text)
    re.compile(bench.figures)


def test_the_list_has_unique_names_and_dev_runs_it() -> None:
    names = [b.name for b in SCALE_BENCHES]
    assert len(names) == len(set(names))
    listed = subprocess.run([sys.executable, "bench/scale.py", "--list"], cwd=ROOT,
                            capture_output=True, text=True, timeout=60, check=True).stdout
    assert [line.split()[0] for line in listed.splitlines() if not line.startswith(" ")] \
        == names
    dev = (ROOT / "dev").read_text(encoding="utf-8")
    assert '"$VENV/bin/python" bench/scale.py "$@"' in dev and "--scale" in dev
