"""Config comparisons as a run shows them: running configs with their volatile lines
dropped, unified diffs, and a dry run's preview (the diff a real run would record, additions
and removals as hier_config's future config has them: runner.job.configtree)."""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable
from typing import TYPE_CHECKING

from runner.inventory.platforms import Platform

if TYPE_CHECKING:  # hier_config loads with the first preview, not with every show job
    from runner.job.configtree import Preview

__all__ = ["normalize", "preview", "unified"]


def normalize(config: str, volatile: Iterable[re.Pattern[str]]) -> str:
    """Drop volatile lines and trailing blanks, so equal configs compare equal."""
    patterns = list(volatile)
    kept = [line.rstrip() for line in config.splitlines()
            if not any(p.search(line) for p in patterns)]
    while kept and not kept[-1]:
        kept.pop()
    while kept and not kept[0]:
        kept.pop(0)
    return "\n".join(kept) + "\n"


def unified(before: str, after: str, label: str = "running-config") -> str:
    return "".join(difflib.unified_diff(before.splitlines(keepends=True),
                                        after.splitlines(keepends=True),
                                        f"{label} (before)", f"{label} (after)"))


def preview(running: str, lines: list[str], platform: Platform) -> Preview:
    """A dry run's preview of sending `lines` to a device of `platform` whose running
    config is `running`: the same unified diff (additions and removals) a real run records,
    and the config it would leave (later steps and the rollback preview start from it)."""
    from runner.job.configtree import Preview, future

    after = future(platform, running, lines)
    return Preview(after, unified(running, after))
