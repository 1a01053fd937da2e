"""Secret-bearing commands, written as the CLI reads them, compiled into patterns that find
them by meaning rather than spelling: any case, any run of blanks, keywords abbreviated as
the CLI allows, the secret wherever the command puts it, and the command inside other
output (a diff, a prompt's echo, `show archive log config`'s `|`, a logger's `logged
command:`, a JSON string).

A rule is a line of tokens (platforms.yaml, `secrets:`):

    word        a keyword; also matches its abbreviations down to 3 letters (`word~N`: N)
    (a|b c)     one of the alternatives; [ ... ] optional
    <arg>       any one word            <num>  a number       <any>  any words (or none)
    <type>      an optional encryption type or hash name (0, 7, sha512, md5, clear...)
    <secret>    the secret: one word, or a quoted string; it is what gets masked
                (`<secret!a,b>`: not when that word is a or b, a keyword of another form;
                `<any!a,b>`, `<keyed!a,b>` likewise)
    <keyed>     the secret of a bare `key`: a type then a word, or a word that is not a
                number (so a key chain's `key 1` stays)

Each rule has exactly one <secret> (or <keyed>); a line with two secrets (SNMPv3 `auth` and
`priv`) has a rule for each.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import Protocol

_GAP = r"[ \t]+"
MIN_ABBREVIATION = 3
# Where a command may start: a line's start (after blanks, a diff's +/-), or after a
# prompt's # or >, a pipe (archive log), a colon (`logged command:`), a semicolon, a quote.
BOUNDARY = r"(?:^[ \t]*(?:[+-][ \t]*)?|(?<=[#>|:;\"'])[ \t]*)"
_TYPES = ("sha512", "sha256", "scrypt", "md5", "clear", "cleartext", "encrypted", "hidden",
          "plaintext", "unencrypted")
_TYPE = rf"(?:(?i:\d{{1,2}}|{'|'.join(_TYPES)})(?![\w-]){_GAP}(?=\S))?"
_VALUE = r"(?:\"[^\"\n]*\"|'[^'\n]*'|\S+)"
_ANY = rf"(?:\S+{_GAP})*?"
_SPECIAL = {
    "<arg>": r"\S+", "<num>": r"\d+", "<any>": None, "<type>": None,
    "<secret>": rf"(?P<secret>{_VALUE})",
    "<keyed>": rf"(?:[067]{_GAP}(?=\S)|(?!\d+(?:[ \t]|$)))(?P<secret>{_VALUE})",
}


class RuleError(ValueError):
    """A rule in platforms.yaml does not parse."""


@dataclass
class _Parser:
    tokens: list[str]
    pos: int = 0
    secrets: int = 0

    def peek(self) -> str | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def take(self) -> str:
        tok = self.tokens[self.pos]
        self.pos += 1
        return tok

    def sequence(self, stop: tuple[str, ...] = ()) -> list[str]:
        """Regex parts of the tokens up to one of `stop`; each part ends with its gap
        (except the secret, which ends the match)."""
        parts = []
        while (tok := self.peek()) is not None and tok not in stop:
            parts.append(self.item())
        return parts

    def item(self) -> str:
        tok = self.take()
        if tok in ("(", "["):
            close = ")" if tok == "(" else "]"
            branches = [self.sequence(("|", close))]
            while self.peek() == "|":
                self.take()
                branches.append(self.sequence(("|", close)))
            if self.peek() != close:
                raise RuleError(f"missing {close!r}")
            self.take()
            body = "|".join("".join(b) for b in branches)
            return f"(?:{body})" + ("?" if tok == "[" else "")
        if tok in (")", "]", "|"):
            raise RuleError(f"unexpected {tok!r}")
        name, _, exclude = tok.partition("!")
        name = name.removesuffix(">") + ">"
        if name in ("<secret>", "<keyed>"):
            self.secrets += 1
            return _not(exclude) + (_SPECIAL[name] or "")
        if name == "<any>":
            return _not(exclude) + _ANY
        if tok == "<type>":
            return _TYPE
        if tok in _SPECIAL:
            return f"{_SPECIAL[tok]}{_GAP}"
        if tok.startswith("<"):
            raise RuleError(f"unknown placeholder {tok}")
        return keyword(tok) + _GAP


def _not(words: str) -> str:
    """A lookahead refusing these words (`<secret!a,b>`) where the placeholder starts."""
    names = [w for w in words.removesuffix(">").split(",") if w]
    if not names:
        return ""
    return f"(?!(?i:{'|'.join(map(re.escape, names))})(?![\\w-]))"


def keyword(tok: str) -> str:
    """A keyword and its abbreviations, case-insensitive, ending where the word ends."""
    word, _, least = tok.partition("~")
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9-]*", word):
        raise RuleError(f"{word!r} is not a keyword")
    shortest = int(least) if least else min(len(word), MIN_ABBREVIATION)
    head, tail = re.escape(word[:shortest]), word[shortest:]
    rest = ""
    for char in reversed(tail):
        rest = f"(?:{re.escape(char)}{rest})?"
    return f"(?i:{head}{rest})(?![\\w-])"


def _tokens(rule: str) -> list[str]:
    return re.findall(r"[()\[\]|]|[^\s()\[\]|]+", rule)


# Per compiled rule: for each of its required keywords (or groups of them), the prefixes
# one of which every line it matches contains (lower case): candidate lines are found
# with plain substring tests before any rule's pattern runs.
_REQUIRED: dict[str, tuple[frozenset[str], ...]] = {}


def _prefix(tok: str) -> str:
    word, _, least = tok.partition("~")
    return word[:int(least) if least else min(len(word), MIN_ABBREVIATION)].lower()


def _required_words(tokens: list[str]) -> list[frozenset[str]]:
    """For each required keyword or required group of keywords of a rule, the keywords
    one of which (abbreviated or not) a matching line holds."""
    found: list[frozenset[str]] = []
    i = 0
    while i < len(tokens):
        tok = tokens[i]
        if tok in ("(", "["):
            depth, j = 1, i + 1
            while depth:
                depth += {"(": 1, "[": 1, ")": -1, "]": -1}.get(tokens[j], 0)
                j += 1
            if tok == "(":
                branches: list[list[str]] = [[]]
                depth = 0
                for inner in tokens[i + 1:j - 1]:
                    if inner == "|" and depth == 0:
                        branches.append([])
                        continue
                    depth += {"(": 1, "[": 1, ")": -1, "]": -1}.get(inner, 0)
                    branches[-1].append(inner)
                firsts = [_required_words(b) for b in branches]
                if all(firsts):
                    found.append(frozenset().union(*(f[-1] for f in firsts)))
            i = j
            continue
        if not tok.startswith("<") and tok != "|":
            found.append(frozenset({tok}))
        i += 1
    return found


class LinePattern(Protocol):
    """A compiled rule (re.Pattern) or a LazyRule: its source, and substitution."""

    @property
    def pattern(self) -> str: ...

    def sub(self, repl: Callable[[re.Match[str]], str], string: str) -> str: ...


def required(pattern: LinePattern) -> tuple[frozenset[str], ...]:
    """What every line `pattern` (a compiled rule) matches holds: one keyword of each set
    (rule tokens, `word~N`; see keyword() and prefix()). Empty for a pattern that is not
    a compiled rule."""
    return _REQUIRED.get(pattern.pattern, ())


def prefix(tok: str) -> str:
    """The shortest form of a keyword token the rules accept, lower case."""
    return _prefix(tok)


@cache
def rule_pattern(rule: str) -> str:
    """One rule as the text of a pattern (re.M) whose `secret` group is the secret
    (RuleError if malformed)."""
    tokens = _tokens(rule)
    parser = _Parser(tokens)
    body = "".join(parser.sequence())
    last = tokens[-1].partition("!")[0].removesuffix(">") + ">" if tokens else ""
    if parser.secrets != 1 or last not in ("<secret>", "<keyed>"):
        raise RuleError("a rule has exactly one <secret> (or <keyed>), at its end")
    pattern = BOUNDARY + body
    _REQUIRED[pattern] = tuple(_required_words(tokens))
    return pattern


@cache
def compile_rule(rule: str) -> re.Pattern[str]:
    """One rule as a pattern whose `secret` group is the secret (RuleError if malformed)."""
    pattern = rule_pattern(rule)
    try:
        return re.compile(pattern, re.M)
    except re.error as exc:
        raise RuleError(str(exc)) from None


class LazyRule:
    """A rule whose pattern is compiled when first applied: a redactor applies a rule only
    to lines that hold its keywords, and most output (a `show version`) has none for most
    rules (compiling a platform's ~30: ~0.01 s of a small run)."""

    __slots__ = ("_compiled", "_rule", "pattern")

    def __init__(self, rule: str) -> None:
        self._rule = rule
        self.pattern = rule_pattern(rule)  # malformed: RuleError now
        self._compiled: re.Pattern[str] | None = None

    def sub(self, repl: Callable[[re.Match[str]], str], string: str) -> str:
        if self._compiled is None:
            self._compiled = compile_rule(self._rule)
        return self._compiled.sub(repl, string)
