"""The docs site builds with `mkdocs build --strict`: a broken link or anchor, a page left out
of the navigation or a page the navigation names but nobody wrote fails the suite."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml

from tests.support.base import ROOT


def test_the_site_builds_strictly(tmp_path: Path) -> None:
    site = tmp_path / "site"
    ran = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-f",
                          str(ROOT / "mkdocs.yml"), "-d", str(site)],
                         capture_output=True, text=True, check=False, timeout=300,
                         env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    assert ran.returncode == 0, ran.stderr
    assert (site / "tutorial" / "index.html").is_file()


def test_every_page_is_in_the_navigation() -> None:
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text(encoding="utf-8"))
    listed = {next(iter(entry.values())) for entry in config["nav"]}
    assert listed == {p.name for p in (ROOT / "docs").glob("*.md")}


def test_a_broken_link_fails_the_build(tmp_path: Path) -> None:
    """The strict build is what catches it (a copy of the site with one bad link)."""
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "index.md").write_text("# x\n\nsee [missing](nowhere.md)\n", encoding="utf-8")
    settings = yaml.safe_load((ROOT / "mkdocs.yml").read_text(encoding="utf-8"))
    settings["nav"] = [{"Home": "index.md"}]
    config = tmp_path / "mkdocs.yml"
    config.write_text(yaml.safe_dump(settings), encoding="utf-8")
    ran = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-f",
                          str(config), "-d", str(tmp_path / "site")],
                         capture_output=True, text=True, check=False, timeout=300,
                         env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    assert ran.returncode != 0 and "nowhere.md" in ran.stderr
