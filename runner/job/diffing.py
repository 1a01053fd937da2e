"""Config comparisons: unified diffs of running configs, and a dry-run preview of which
lines a change would add, judged within their section (interface, router, ...)."""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable

# Lines that open a section when written flat (templates often do not indent).
_SECTION = re.compile(
    r"^(interface|router|line|route-map|vrf|ip vrf|key chain|ip access-list|ipv6 access-list"
    r"|policy-map|class-map|segment-routing|mpls ldp|bfd|control-plane|ip prefix-list \S+ seq"
    r"|address-family)\b")
_CLOSE = frozenset({"exit", "end", "exit-address-family", "exit-vrf", "!"})


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


def config_tree(lines: Iterable[str]) -> list[tuple[tuple[str, ...], str]]:
    """(section path, line) for each config line.

    Sections come from indentation (a line followed by deeper lines is a header, as in a
    running config) or, for flat lines, from section keywords (`interface lo` then
    `description x` until `exit` or an unindented line after indented ones).
    """
    rows = [(len(r) - len(r.lstrip()), " ".join(r.split())) for r in lines if r.strip()]
    out: list[tuple[tuple[str, ...], str]] = []
    stack: list[tuple[int, str, bool]] = []  # (indent, header, opened flat)
    for i, (indent, text) in enumerate(rows):
        next_indent = rows[i + 1][0] if i + 1 < len(rows) else 0
        prev_indent = rows[i - 1][0] if i else 0
        if text in _CLOSE:
            if text in ("exit-address-family", "exit-vrf") and len(stack) > 1:
                stack.pop()
            elif text != "!" or indent == 0:
                stack.clear()
            continue
        if indent:
            while stack and stack[-1][0] >= indent and not stack[-1][2]:
                stack.pop()
        elif stack and stack[0][2] and prev_indent == 0 and (
                not _SECTION.match(text) or text.startswith("address-family")):
            out.append((tuple(h for _, h, _ in stack), text))  # child of a flat section
            if text.startswith("address-family"):
                stack.append((0, text, True))
            continue
        else:
            stack.clear()
        out.append((tuple(h for _, h, _ in stack), text))
        if next_indent > indent:
            stack.append((indent, text, False))
        elif indent == 0 and _SECTION.match(text):
            stack.append((0, text, True))
    return out


def preview(running: str, lines: list[str]) -> str:
    """What sending `lines` would add to `running`, as `+` lines under their sections.

    A preview, not a simulation: a line counts as present when the same line stands in the
    same section; `no X` counts as a change when X is present.
    """
    present = set(config_tree(running.splitlines()))
    out: list[str] = []
    shown: set[tuple[str, ...]] = set()
    for path, text in config_tree(lines):
        if text.startswith("no "):
            changes = (path, text[3:]) in present
        else:
            changes = (path, text) not in present
        if not changes:
            continue
        for depth in range(len(path)):
            if path[: depth + 1] not in shown:
                shown.add(path[: depth + 1])
                out.append("  " + " " * depth + path[depth])
        out.append("+ " + " " * len(path) + text)
        if _SECTION.match(text):
            shown.add((*path, text))
    return "\n".join(out) + ("\n" if out else "")
