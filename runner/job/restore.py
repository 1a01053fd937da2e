"""Putting a config back: the commands that turn one running config into another
(hier_config's rollback of the change, runner.job.configtree), whether two configs are the
same, and a digest that says so without keeping the text."""

from __future__ import annotations

import hashlib

from runner.inventory.platforms import Platform

# runner.job.configtree (hier_config) is imported by the functions: a run that changes no
# config never loads it.


def restore_lines(platform: Platform, current: str, kept: str) -> list[str]:
    """Config-mode commands that turn running config `current` back into `kept`: what the
    change added negated, what it removed or replaced set again, each section entered and
    left as the platform needs."""
    from runner.job import configtree

    return configtree.rollback(platform, kept, current)


def same_config(platform: Platform, a: str, b: str) -> bool:
    """The same lines in the same sections (formatting, closers and a line's place among
    its siblings aside: a section put back may be listed elsewhere by the device)."""
    from runner.job import configtree

    return configtree.canonical(platform, a) == configtree.canonical(platform, b)


def digest(platform: Platform, text: str) -> str:
    """A fingerprint of a config for same_config-equality; holds none of its text."""
    from runner.job import configtree

    lines = sorted("\x1f".join(path) for path in configtree.canonical(platform, text)
                   .elements())
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()
