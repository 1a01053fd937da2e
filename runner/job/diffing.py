"""Config comparisons: unified diffs of running configs, config lines placed in their
sections, and a dry run's preview: the diff a real run would record, additions and removals
(preview(): the one function a better config model, hier_config, can replace)."""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable
from dataclasses import dataclass

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


def _entries(lines: list[str]) -> list[tuple[int, int, tuple[str, ...], str]]:
    """(index in `lines`, indent, section path, line) for each config line, section closers
    (exit, !) and blank lines left out: config_tree() with where each line stands."""
    rows = [(i, len(r) - len(r.lstrip()), " ".join(r.split()))
            for i, r in enumerate(lines) if r.strip()]
    out: list[tuple[int, int, tuple[str, ...], str]] = []
    stack: list[tuple[int, str, bool]] = []  # (indent, header, opened flat)
    for n, (index, indent, text) in enumerate(rows):
        next_indent = rows[n + 1][1] if n + 1 < len(rows) else 0
        prev_indent = rows[n - 1][1] if n else 0
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
            out.append((index, indent, tuple(h for _, h, _ in stack), text))  # flat child
            if text.startswith("address-family"):
                stack.append((0, text, True))
            continue
        else:
            stack.clear()
        out.append((index, indent, tuple(h for _, h, _ in stack), text))
        if next_indent > indent:
            stack.append((indent, text, False))
        elif indent == 0 and _SECTION.match(text):
            stack.append((0, text, True))
    return out


def config_tree(lines: Iterable[str]) -> list[tuple[tuple[str, ...], str]]:
    """(section path, line) for each config line.

    Sections come from indentation (a line followed by deeper lines is a header, as in a
    running config) or, for flat lines, from section keywords (`interface lo` then
    `description x` until `exit` or an unindented line after indented ones).
    """
    return [(path, text) for _, _, path, text in _entries(list(lines))]


def _negates(line: str, target: str) -> bool:
    """Whether `no <target>` removes `line` (the line itself, or it with more words)."""
    return line == target or line.startswith(target + " ")


def _replaces(line: str, other: str, single_valued: tuple[str, ...]) -> bool:
    """Whether setting `line` replaces `other` (one value per section: description, ...)."""
    return any(line.startswith(k + " ") and other.startswith(k + " ") for k in single_valued)


class _Config:
    """A running config's text, edited line by line as the device would take a change:
    the lines' own places, indentation and separators kept, so that a diff against the
    original reads as the device's own before/after diff."""

    def __init__(self, text: str) -> None:
        self.raw = text.splitlines()
        while self.raw and not self.raw[-1].strip():
            self.raw.pop()
        self.closes = any(r == "exit" for r in self.raw)  # FRR: sections end with `exit`

    def text(self) -> str:
        return "\n".join(self.raw) + "\n" if self.raw else ""

    def _block_end(self, entries: list[tuple[int, int, tuple[str, ...], str]],
                   at: int) -> int:
        """The index in raw after the last line of entry `at`'s section (its header alone
        when it has no lines of its own)."""
        index, _, path, text = entries[at]
        inside = (*path, text)
        end = index + 1
        for other in entries[at + 1:]:
            if other[2][:len(inside)] != inside:
                break
            end = other[0] + 1
        return end

    def _closer(self, end: int, indent: int) -> bool:
        """Whether raw[end] closes the section whose header is at `indent`."""
        if end >= len(self.raw):
            return False
        line = self.raw[end]
        return len(line) - len(line.lstrip()) == indent and line.strip() in (
            "exit", "exit-address-family", "exit-vrf")

    def remove(self, path: tuple[str, ...], target: str) -> None:
        """`no <target>` in section `path`: the line (and its section's lines) is gone."""
        while True:
            entries = _entries(self.raw)
            found = [n for n, e in enumerate(entries) if e[2] == path and _negates(e[3], target)]
            if not found:
                return
            at = found[-1]
            index, indent = entries[at][0], entries[at][1]
            end = self._block_end(entries, at)
            if end > index + 1 and self._closer(end, indent):
                end += 1
            if not path and end < len(self.raw) and self.raw[end].strip() == "!" \
                    and (index == 0 or self.raw[index - 1].strip() == "!"):
                end += 1  # its separator goes with it
            del self.raw[index:end]

    def add(self, path: tuple[str, ...], line: str, single_valued: tuple[str, ...]) -> None:
        """`line` in section `path` (the section made when missing); a single-valued
        setting replaces its old value where it stood."""
        entries = _entries(self.raw)
        if any(e[2] == path and e[3] == line for e in entries):
            return
        for index, indent, where, text in entries:
            if where == path and _replaces(line, text, single_valued):
                self.raw[index] = " " * indent + line
                return
        self._insert(path, line)

    def _insert(self, path: tuple[str, ...], line: str) -> None:
        entries = _entries(self.raw)
        if not path:
            at = len(self.raw)
            if self.raw and self.raw[-1].strip() == "end":
                at -= 1
            block = [line]
            if _SECTION.match(line) and self.closes:
                block.append("exit")
            if at and self.raw[at - 1].strip() == "!":
                block.append("!")
            self.raw[at:at] = block
            return
        parent = next((n for n, e in enumerate(entries) if e[2] == path[:-1]
                       and e[3] == path[-1]), None)
        if parent is None:
            self._insert(path[:-1], path[-1])  # the section first, then its line
            self._insert(path, line)
            return
        indent = entries[parent][1]
        inside = (*path,)
        children = [e for e in entries[parent + 1:] if e[2] == inside]
        child_indent = children[0][1] if children else indent + 1
        end = self._block_end(entries, parent)
        block = [" " * child_indent + line]
        if line.startswith("address-family") and self.closes:
            block.append(" " * child_indent + "exit-address-family")
        self.raw[end:end] = block


def apply_lines(running: str, lines: list[str], single_valued: tuple[str, ...] = ()) -> str:
    """The running config as it would be after sending `lines`: `no X` removes X (and what
    X with more words names, with its section's lines), a single-valued setting replaces
    its old value, a line already present changes nothing, a new one goes at the end of its
    section (the section made first when missing)."""
    config = _Config(running)
    for path, text in config_tree(lines):
        if text.startswith("no "):
            config.remove(path, text[3:])
        else:
            config.add(path, text, single_valued)
    return config.text()


@dataclass(frozen=True)
class Preview:
    """What sending lines would do: the config after, and the diff a real run records."""

    after: str
    diff: str


def preview(running: str, lines: list[str], single_valued: tuple[str, ...] = ()) -> Preview:
    """A dry run's preview of sending `lines` to a device whose running config is
    `running`: the same unified diff (additions and removals) a real run records, and the
    config it would leave (later steps and the rollback preview start from it)."""
    after = apply_lines(running, lines, single_valued)
    return Preview(after, unified(running, after))
