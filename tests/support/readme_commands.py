"""The `runner` commands the README and docs/tutorial.md show: read from their fenced `sh`
blocks (and inline `runner ...` spans), resolved against the real click command tree."""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path

import click
import yaml

from runner.cli import cli
from tests.support.base import ROOT

# The README, then the docs site's pages in its navigation order (mkdocs.yml)
DOCS = (ROOT / "README.md", *(ROOT / "docs" / next(iter(page.values()))
                              for page in yaml.safe_load((ROOT / "mkdocs.yml").read_text(
                                  encoding="utf-8"))["nav"]))
RUNNER_PREFIXES = ("runner", "$R", ".venv/bin/runner")
# Inline spans that name something other than a command line.
NOT_COMMANDS = {"runner <job>: <status>, <counts>"}


@dataclass(frozen=True)
class Command:
    """One documented command line: where it is written, and its words after `runner`."""

    doc: Path
    line: int
    text: str                 # as written (continuations joined, comment dropped)
    argv: tuple[str, ...]     # after `runner`, placeholders as written, `[`/`]` dropped
    inline: bool              # an inline `runner ...` span rather than a fenced block line

    @property
    def where(self) -> str:
        return f"{self.doc.relative_to(ROOT)}:{self.line}"


def _split(text: str) -> list[str]:
    """Words of a shell line, comments dropped; `<run id>` stays one word, `[--json]` is
    `--json`, a trailing `&` goes, and a pipe or redirect ends the line."""
    text = re.sub(r"<([^>]*)>", lambda m: "<" + m.group(1).replace(" ", "_") + ">", text)
    words = shlex.split(text, comments=True)
    for end, word in enumerate(words):  # a pipe or redirect: the rest is another program
        if word in {"|", "||", "&&", ";", ">", ">>", "2>"}:
            words = words[:end]
            break
    words = [w.strip("[]") for w in words if w.strip("[]")]
    return words[:-1] if words and words[-1] == "&" else words


def _fenced(doc: Path) -> list[Command]:
    found = []
    lines = doc.read_text(encoding="utf-8").splitlines()
    in_sh = False
    number = 0
    while number < len(lines):
        raw = lines[number]
        start = number + 1
        number += 1
        if raw.strip().startswith("```"):
            in_sh = not in_sh and raw.strip() == "```sh"
            continue
        if not in_sh:
            continue
        text = raw.strip()
        while text.endswith("\\") and number < len(lines):
            text = text[:-1] + " " + lines[number].strip()
            number += 1
        words = _split(text) if text and not text.startswith("#") else []
        if words and words[0] in RUNNER_PREFIXES:
            found.append(Command(doc, start, " ".join(words), tuple(words[1:]), False))
    return found


def _inline(doc: Path) -> list[Command]:
    found = []
    for number, raw in enumerate(doc.read_text(encoding="utf-8").splitlines(), 1):
        for span in re.findall(r"`(runner [^`]+)`", raw):
            if span in NOT_COMMANDS:
                continue
            words = _split(span)
            alternatives = words[1].split("|") if len(words) > 1 else [""]
            for alt in alternatives:
                argv = (alt, *words[2:]) if alt else ()
                found.append(Command(doc, number, span, argv, True))
    return found


def documented() -> list[Command]:
    """Every command line of the documents that exist (the tutorial may not, yet)."""
    return [c for doc in DOCS if doc.exists() for c in (*_fenced(doc), *_inline(doc))]


def _takes_value(command: click.Command, ctx: click.Context, word: str) -> bool:
    for param in command.get_params(ctx):
        if isinstance(param, click.Option) and word in (*param.opts, *param.secondary_opts):
            return not param.is_flag and not param.count
    return False


def check(argv: tuple[str, ...]) -> tuple[tuple[str, ...], list[str]]:
    """(the command path, problems): every word that should name a command does, and every
    option is one of that command's (or the group's before it)."""
    problems: list[str] = []
    command: click.Command = cli
    path: list[str] = []
    words = list(argv)
    while words:
        word = words.pop(0)
        ctx = click.Context(command)
        if word == "--":
            break
        if word.startswith("-"):
            name = word.split("=", 1)[0]
            if name in {"--help", "-h"}:
                continue
            known = {o for p in command.get_params(ctx) for o in
                     (*p.opts, *getattr(p, "secondary_opts", []))}
            if name not in known:
                problems.append(f"`runner {' '.join(path)}` has no option {name}")
            elif "=" not in word and _takes_value(command, ctx, name) and words:
                words.pop(0)
            continue
        if isinstance(command, click.Group):
            sub = command.get_command(ctx, word)
            if sub is None:
                problems.append(f"`runner {' '.join(path)}` has no command {word!r}")
                break
            command = sub
            path.append(word)
    return tuple(path), problems
