"""A `runner serve` told to stop while it starts (its metrics already answer, the scheduler
not yet built) stops cleanly, exit 0, instead of dying by the default SIGTERM/SIGINT
handler (exit 143/130: what a supervisor's stop during start-up used to get)."""

from __future__ import annotations

import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from runner.lab.netns import wait_for
from tests.support.base import free_port, user_env


def answers(port: int) -> bool:
    try:
        return urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2).status == 200
    except OSError:
        return False


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGTERM])
def test_a_stop_during_start_up_is_a_clean_stop(tmp_path: Path, sig: signal.Signals) -> None:
    (tmp_path / "jobs").mkdir()
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "runner", "--db", f"sqlite:///{tmp_path / 'r.db'}", "serve",
         "--jobs", str(tmp_path / "jobs"), "--metrics-port", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd=tmp_path,
        env=user_env())
    try:
        wait_for(lambda: answers(port) or proc.poll() is not None, 60, "serve's metrics")
        proc.send_signal(sig)  # at once: the scheduler is still being built
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "Traceback" not in err
