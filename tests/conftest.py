"""Shared test helpers: paths of the repository and its shipped files."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LAB_DIR = ROOT / "lab"
SHARED = ROOT.parent / "shared"
