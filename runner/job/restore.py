"""Putting a config back: the commands that turn one running config into another, section by
section (the inverse of a change), whether two configs are the same, and a digest that
says so without keeping the text."""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass, field

from runner.job.diffing import apply_lines, config_tree

Path_ = tuple[str, ...]


@dataclass
class _Node:
    children: dict[str, _Node] = field(default_factory=dict)


def _build(text: str) -> _Node:
    root = _Node()
    for path, line in config_tree(text.splitlines()):
        node = root
        for header in path:
            node = node.children.setdefault(header, _Node())
        node.children.setdefault(line, _Node())
    return root


def negate(line: str) -> str:
    """The command that undoes `line`: `no X` for X, X for `no X`."""
    return line[3:] if line.startswith("no ") else f"no {line}"


def _flatten(node: _Node, depth: int) -> list[str]:
    out: list[str] = []
    for line, child in node.children.items():
        out.append(" " * depth + line)
        if child.children:
            out += _flatten(child, depth + 1)
            out.append(" " * depth + " exit")
    return out


def _restore(current: _Node, kept: _Node, depth: int) -> list[str]:
    indent = " " * depth
    # What the change added goes first (a replaced value is removed, then set again), then
    # what it removed or altered, in the kept config's order.
    out = [indent + negate(line) for line in current.children if line not in kept.children]
    for line, node in kept.children.items():
        if line not in current.children:
            out.append(indent + line)
            if node.children:
                out += _flatten(node, depth + 1)
                out.append(indent + " exit")
            continue
        inner = _restore(current.children[line], node, depth + 1)
        if inner:
            out += [indent + line, *inner, indent + " exit"]
    return out


def restore_lines(current: str, kept: str) -> list[str]:
    """Config-mode commands that turn running config `current` back into `kept`: each
    section entered, its lines removed or set again, and left with `exit`."""
    return _restore(_build(current), _build(kept), 0)


def simulate(running: str, lines: list[str], single_valued: tuple[str, ...] = ()) -> str:
    """The running config as it would be after sending `lines` (for a dry run's rollback
    preview): diffing.apply_lines, the one model of a change runner has."""
    return apply_lines(running, lines, single_valued)


def _canonical(text: str) -> Counter[tuple[Path_, str]]:
    return Counter(config_tree(text.splitlines()))


def same_config(a: str, b: str) -> bool:
    """The same lines in the same sections (a line's place among its siblings aside: a
    section put back may be listed elsewhere by the device)."""
    return _canonical(a) == _canonical(b)


def digest(text: str) -> str:
    """A fingerprint of a config for same_config-equality; holds none of its text."""
    lines = sorted("\x1f".join(path) + "\x1e" + line
                   for path, line in _canonical(text).elements())
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()
