"""Keeps secrets out of everything runner writes: known credential values and secret config
lines (passwords, keys, communities) are masked at one boundary, before records leave.

A value of 4 characters or more is masked wherever it appears. A weak one (shorter, or
equal to a username, so that every `username admin` would give away the password `admin`)
cannot be: masking `ab` inside words, or every `1`, would shred device output. It is masked
where it stands as a credential (after `password`, `secret`, `key`, `community`... as in
`password ab`, `"secret": "ab"`), as a whole value (a parsed field), and, when 4 characters
or more (a username's), as a whole word.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from runner.inventory.secretlines import BOUNDARY, LinePattern, keyword, prefix, required

MASK = "********"
MIN_SECRET_LEN = 4  # shorter values would mask ordinary words in device output
# Candidate lines remembered masked, per redactor: a fleet's configs repeat most such lines
# (`enable secret ...`, `snmp-server community ...`), and checking one against every rule
# was half of masking a device's output. Bounded: emptied when full.
MASKED_LINES = 4096
# Words after which a value is a credential, and what may stand between them and it:
# quotes, `:` or `=`, an IOS encryption type (`password 7 ...`).
_CONTEXT = (r"(?P<ctx>(?i:\b(?:password|passwd|passphrase|pass|pwd|secret|community|"
            r"key-string|key|token|credentials?)\b)[\"']?[ \t]*(?:[:=][ \t]*|[ \t])"
            r"(?:\d{1,2}[ \t]+)?[\"']?)")


def _checked(patterns: Iterable[LinePattern]) -> tuple[LinePattern, ...]:
    """The patterns, each a secret-line rule (secretlines.compile_rule's: starting with
    BOUNDARY, its `secret` group the value), else ValueError: a pattern without that group
    would match and mask nothing."""
    rules = tuple(patterns)
    for pattern in rules:
        if not pattern.pattern.startswith(BOUNDARY) or "(?P<secret>" not in pattern.pattern:
            raise ValueError(f"not a secret-line rule: {pattern.pattern!r}")
    return rules


def _mask(match: re.Match[str]) -> str:
    """The match up to its secret, then the mask."""
    for name, value in match.groupdict().items():
        if value is not None and name.startswith("secret"):
            return match.string[match.start():match.start(name)] + MASK
    return match.group(0)


# Keys of structured data (parsed output, JSON a device printed) whose values are secrets.
SECRET_KEY = re.compile(r"(?i)^[\w-]*(?:pass(?:word|wd|phrase)?|secret|community|"
                        r"key[-_]?string|psk|pre[-_]?shared[-_]?key|"
                        r"auth(?:entication)?[-_]?key|private[-_]?key|token|credentials?)$")
_KEY_VALUE_WORDS = ("pass", "secret", "key", "token")  # one is in every _KEY_VALUE match
# `"password": "x"`, `secret=x` in text a device or a library printed (not `community`:
# BGP output is full of public `Community: 65000:1`).
_KEY_VALUE = re.compile(
    r"(?P<keep>(?<![\w.-])(?P<q>[\"']?)(?i:[\w-]*(?:password|passwd|secret|"
    r"key-?string|pre-?shared-?key|auth-?key|private-?key|token))(?P=q)[ \t]*[:=][ \t]*)"
    r"(?P<secret>\"[^\"\n]*\"|'[^'\n]*'|[^\s,;}\]]+)")


def _alternatives(values: Iterable[str], before: str = "", after: str = ""
                  ) -> re.Pattern[str] | None:
    """One pattern for all values, longest first (a value inside another is not masked
    apart from it)."""
    ordered = sorted(set(values), key=len, reverse=True)
    if not ordered:
        return None
    return re.compile(before + "|".join(map(re.escape, ordered)) + after)


class Redactor:
    """Masks known secret values and platform secret-line patterns in any text or record."""

    def __init__(self, values: Iterable[str] = (),
                 patterns: Iterable[LinePattern] = (),
                 usernames: Iterable[str] = ()) -> None:
        names = set(usernames)
        every = {v for v in values if v}
        weak = {v for v in every if len(v) < MIN_SECRET_LEN or v in names}
        self._values = _alternatives(every - weak)
        self._words = _alternatives({v for v in weak if len(v) >= MIN_SECRET_LEN},
                                    r"(?<!\w)(?:", r")(?!\w)")
        self._contexts = _alternatives(weak, _CONTEXT + "(?:", r")(?![^\s\"',;)}\]])")
        self._whole = frozenset(weak)
        self._patterns = _checked(patterns)
        # Each rule with its required keywords as prefixes (substring tests on a line), and
        # one pattern finding the lines that hold one of the most selective as a word.
        self._rules = [(rule, tuple(frozenset(map(prefix, g)) for g in required(rule)))
                       for rule in self._patterns]
        self._words_required = frozenset(w for _, groups in self._rules for g in groups
                                         for w in g)
        self._probes = _probes([required(rule) for rule in self._patterns])
        self._masked: dict[str, str] = {}  # candidate line -> masked (MASKED_LINES)

    def text(self, text: str) -> str:
        if self._whole and text.strip() in self._whole:
            return text.replace(text.strip(), MASK)
        if self._values is not None:
            text = self._values.sub(MASK, text)
        if self._words is not None:
            text = self._words.sub(MASK, text)
        if self._contexts is not None:
            text = self._contexts.sub(lambda m: m.group("ctx") + MASK, text)
        return self._secret_lines(text)

    def _secret_lines(self, text: str) -> str:
        """Each line that holds, as a word, one of the most selective keywords some rule
        requires (found by plain substring search, then checked where found), masked by
        every rule whose required words it holds (a line may carry several secrets:
        SNMPv3's auth and priv); no other line is looked at again."""
        lower = text.lower()
        starts: set[int] = {0}  # the first line (an empty one costs nothing)
        for probe, word in self._probes:
            at = lower.find(probe)
            while at >= 0:
                before = lower[at - 1] if at else " "
                # a word of its own: not inside another (a diff's -/+ is no letter)
                inside = before.isalnum() or before == "_" or (
                    before == "-" and at >= 2 and lower[at - 2] not in "\n \t+-")
                if word is None or (not inside and word.match(text, at)):
                    starts.add(lower.rfind("\n", 0, at) + 1)
                at = lower.find(probe, at + 1)
        parts: list[str] = []
        done = 0
        for start in sorted(starts):
            end = text.find("\n", start)
            end = len(text) if end < 0 else end
            line = text[start:end]
            masked = self._masked.get(line)
            if masked is None:
                masked = self._mask_line(line)
                if len(self._masked) >= MASKED_LINES:
                    self._masked.clear()
                self._masked[line] = masked
            if masked != line:
                parts += [text[done:start], masked]
                done = end
        return "".join(parts) + text[done:] if parts else text

    def _mask_line(self, line: str) -> str:
        lower = line.lower()
        # each keyword looked for once per line, not once per rule that requires it
        present = {w for w in self._words_required if w in lower}
        for rule, groups in self._rules:  # plain loops: this runs for ~30 rules a line
            for group in groups:
                if present.isdisjoint(group):
                    break
            else:
                line = rule.sub(_mask, line)
        if any(w in lower for w in _KEY_VALUE_WORDS):
            line = _KEY_VALUE.sub(lambda m: m.group("keep") + _quoted_mask(m.group("secret")),
                                  line)
        return line

    def value(self, value: Any) -> Any:
        """Recursively mask strings inside dicts/lists (parsed output, records); the value
        of a key that names a secret (password, secret, community, key-string...) whole."""
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return {k: MASK if _secret_key(k, v) else self.value(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self.value(v) for v in value]
        return value


# Word prefixes too common in configs to pick lines by (every interface has
# `ip ospf authentication message-digest`, `description`, `ip address`).
_COMMON = frozenset({"aut", "int", "des", "add", "sta", "pas", "sec", "ena", "ser", "use"})


def _probes(rules: list[tuple[frozenset[str], ...]]
            ) -> list[tuple[str, re.Pattern[str] | None]]:
    """What marks a line some rule (or the key/value form) could mask: of each rule, its
    most selective required keywords (longest shortest form, then the fewest common
    words), each as (its shortest form to search for, its pattern as a word there); and
    the key/value form's keys (found anywhere: `"enable_password": ...`)."""
    words: set[str] = set()
    for groups in rules:
        if not groups:  # a rule with no required word: every line is a candidate
            return [("\n", None)]
        words |= max(groups, key=lambda g: (min(len(prefix(w)) for w in g),
                                             -len({prefix(w) for w in g} & _COMMON)))
    probes: list[tuple[str, re.Pattern[str] | None]] = [
        (prefix(w), re.compile(keyword(w))) for w in sorted(words)]
    return probes + [(k, None) for k in ("passw", "passphrase", "secret", "key", "token")]


def _quoted_mask(value: str) -> str:
    quote = value[0] if value[:1] in ("'", '"') and value[-1:] == value[:1] else ""
    return f"{quote}{MASK}{quote}"


def _secret_key(key: object, value: object) -> bool:
    return isinstance(key, str) and bool(SECRET_KEY.match(key)) and \
        isinstance(value, str | int | float) and not isinstance(value, bool) and value != ""
