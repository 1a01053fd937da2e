"""Configs as hier_config trees, the one module that speaks hier_config: the driver of each
platform (runner's FRR driver among them), lines written flat read into sections, what a
change would leave (a dry run's preview), the commands that turn one config into another
(remediation, rollback), and config equality.

hier_config (the engine of Nautobot's Golden Config) knows per platform which settings
replace each other, how `no` negates, which sections need their own exit and in which
order commands go. FRR's vtysh speaks IOS's CLI, but its running config closes every
section with `exit` at column 0 (and `exit-vrf`, nested ` exit`), which hier_config's IOS
driver reads as duplicate top-level lines; HConfigDriverFRR extends the IOS driver through
hier_config's own mechanism (rules, a preprocessor) with FRR's closers and the settings FRR
replaces (and those it refuses to replace in place, such as `ip ospf area`).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import cache

from hier_config import HConfig, HConfigChild, WorkflowRemediation, get_hconfig
from hier_config.exceptions import DuplicateChildError
from hier_config.models import IdempotentCommandsRule, MatchRule, PerLineSubRule
from hier_config.platforms.cisco_ios.driver import HConfigDriverCiscoIOS
from hier_config.platforms.driver_base import HConfigDriverBase, HConfigDriverRules

from runner.errors import ConfigUnreadable
from runner.inventory.platforms import Platform

# Lines that close a section (FRR writes them; IOS's CLI accepts them): structure, not config.
CLOSERS = frozenset({"exit", "exit-address-family", "exit-vrf", "exit-peer-policy",
                     "exit-peer-session", "exit-af-interface", "exit-af-topology",
                     "exit-service-family", "exit-sf-interface", "exit-sf-topology"})
_FRR_MARK = re.compile(r"^frr (?:version|defaults) ", re.M)

# What FRR keeps one of per section: setting it again replaces the old value (hier_config's
# idempotent commands). Each rule: the lineage, a regex per level.
_FRR_SINGLE: tuple[tuple[str, ...], ...] = (
    (r"^hostname ",),
    (r"^interface ", r"^description "),
    (r"^interface ", r"^ip ospf (cost|hello-interval|dead-interval|network|priority"
                     r"|retransmit-interval|transmit-delay) "),
    (r"^interface ", r"^(mtu|bandwidth) "),
    (r"^router ospf", r"^ospf router-id "),
    (r"^router ospf", r"^(log-adjacency-changes|auto-cost reference-bandwidth|"
                      r"timers throttle spf) "),
    (r"^router bgp ", r"^bgp router-id "),
    (r"^router bgp ", r"^neighbor (\S+) (description|remote-as|update-source|timers connect"
                      r"|timers|ebgp-multihop|password|port|ttl-security hops"
                      r"|advertisement-interval|local-as) "),
    (r"^router bgp ", r"^address-family ", r"^neighbor (\S+) (route-map|prefix-list"
                                           r"|filter-list) \S+ (in|out)$"),
    (r"^router bgp ", r"^address-family ", r"^neighbor (\S+) (maximum-prefix) "),
)


class HConfigDriverFRR(HConfigDriverCiscoIOS):
    """FRR (vtysh): IOS's syntax and rules, with FRR's section closers dropped when a
    config is read (`exit` at column 0 after each section, ` exit-vrf`, nested ` exit`,
    the `frr version` header) and the settings FRR replaces in place. Not among them:
    `ip address` (an FRR interface takes several) and `ip ospf area` (FRR refuses a new
    area until the old one is removed: `no ip ospf area 0` comes first)."""

    @staticmethod
    def config_preprocessor(config_text: str) -> str:
        return "\n".join(line for line in config_text.splitlines()
                         if line.strip() not in CLOSERS)

    @staticmethod
    def _instantiate_rules() -> HConfigDriverRules:
        ios = HConfigDriverCiscoIOS._instantiate_rules()
        kept = [r for r in ios.idempotent_commands
                if not any(m.startswith == "ip address " for m in r.match_rules)]
        own = [IdempotentCommandsRule(match_rules=tuple(MatchRule(re_search=p) for p in rule))
               for rule in _FRR_SINGLE]
        return ios.model_copy(update={
            "indentation": 1,
            "idempotent_commands": [*kept, *own],
            "per_line_sub": [*ios.per_line_sub,
                             PerLineSubRule(search=r"^frr version .*", replace="")],
        })


# hier_config's names (as netutils maps them from netmiko's) to its drivers.
_HIER_DRIVERS: dict[str, str] = {
    "ios": "CISCO_IOS", "eos": "ARISTA_EOS", "nxos": "CISCO_NXOS", "iosxr": "CISCO_XR",
    "junos": "JUNIPER_JUNOS", "aruba_aoscx": "ARUBA_AOSCX", "fastiron": "RUCKUS_FASTIRON",
    "vyos": "VYOS",
}


def is_frr(config: str) -> bool:
    """Whether a running config is FRR's (its `frr version` / `frr defaults` lines): the
    lab's routers are `cisco_ios` to their clients, but their config has FRR's form."""
    return _FRR_MARK.search(config) is not None


@cache
def _driver(platform: Platform, frr: bool, literal: bool) -> HConfigDriverBase:
    if frr:
        driver: HConfigDriverBase = HConfigDriverFRR()
    else:
        from hier_config import Platform as HierPlatform
        from hier_config import get_hconfig_driver
        from netutils.lib_mapper import HIERCONFIG_LIB_MAPPER_REVERSE

        name = HIERCONFIG_LIB_MAPPER_REVERSE.get(platform.netmiko, "")
        hier = HierPlatform[_HIER_DRIVERS.get(name, "GENERIC")]
        driver = get_hconfig_driver(hier)
        # runner's platform data: the settings a section holds one value of
        single = [IdempotentCommandsRule(match_rules=(*(MatchRule(),) * depth,
                                                      MatchRule(startswith=prefix + " ")))
                  for prefix in platform.single_valued for depth in range(3)]
        driver.rules = driver.rules.model_copy(update={
            "indentation": 1, "idempotent_commands": [*driver.rules.idempotent_commands,
                                                      *single]})
    if literal:  # lines as the device shows them (no ACL renumbering, remarks kept)
        driver.rules = driver.rules.model_copy(update={"post_load_callbacks": []})
    return driver


def driver_for(platform: Platform, config: str, *, literal: bool = False) -> HConfigDriverBase:
    """The hier_config driver for a device of `platform` whose running config is `config`.
    `literal`: without the driver's normalisations (ACL sequence numbers, remarks), so a
    tree's lines are the config's own lines (for a preview's text)."""
    return _driver(platform, is_frr(config), literal)


# -- reading ----------------------------------------------------------------------------------


def parse(driver: HConfigDriverBase, text: str, what: str = "the running config") -> HConfig:
    """A running (or intended) config, indented as a device shows it; ConfigUnreadable
    (naming `what`) when hier_config cannot read it."""
    try:
        return get_hconfig(driver, text)
    except (DuplicateChildError, ValueError, TypeError) as exc:  # hier_config's, mapped here
        raise ConfigUnreadable(f"{what} cannot be read as {_name(driver)} config: "
                               f"{exc}") from exc


def _name(driver: HConfigDriverBase) -> str:
    return "FRR" if isinstance(driver, HConfigDriverFRR) else \
        type(driver).__name__.removeprefix("HConfigDriver")


class _Modes:
    """The CLI's mode while lines are read (structured())."""

    def __init__(self, platform: Platform) -> None:
        self.platform = platform
        self.out: list[tuple[int, str]] = []
        self.stack: list[tuple[int, bool]] = []  # open sections: (indent, opened flat)
        self.run: list[int] = []  # flat top-level lines since a boundary (`exit` groups)
        self.previous = 0  # the indent of the previous line

    def close(self, indent: int, text: str) -> None:
        """`exit` (or its kin) at `indent` leaves the section opened at that indent."""
        if text == "end":
            self.stack.clear()
        elif self.stack:
            while len(self.stack) > 1 and not self.stack[-1][1] and self.stack[-1][0] > indent:
                self.stack.pop()  # the lines of the section it closes
            self.stack.pop()
        elif len(self.run) > 1:  # an `exit` after flat lines: the first opened a section
            for at in self.run[1:]:
                self.out[at] = (self.out[at][0] + 1, self.out[at][1])
        self.run.clear()

    def indented(self, indent: int, text: str) -> None:
        while self.stack and self.stack[-1][0] >= indent and not self.stack[-1][1]:
            self.stack.pop()
        self.out.append((len(self.stack), text))
        self.stack.append((indent, False))
        self.run.clear()

    def flat(self, text: str) -> None:
        stack = self.stack
        while stack and not stack[-1][1]:
            stack.pop()
        if stack and self.previous:  # a column-0 line after indented ones: a new start
            stack.clear()
        if any(p.search(text) for p in self.platform.modes):
            stack[:] = [(0, True)]
            self.out.append((0, text))
            self.run.clear()
        elif stack and any(p.search(text) for p in self.platform.submodes):
            del stack[1:]
            self.out.append((1, text))
            stack.append((0, True))
        elif stack:
            self.out.append((len(stack), text))
        else:
            self.out.append((0, text))
            self.run.append(len(self.out) - 1)


def structured(lines: Iterable[str], platform: Platform) -> list[str]:
    """Config lines as a device's CLI reads them, indented by section: lines written flat
    (`interface eth1`, `ip ospf area 1`, `exit`) go into the section the CLI's mode puts
    them in. Indentation written is kept; `exit` (and its kin) leaves a section, `end` all
    of them; a line that enters a mode (platforms.yaml `modes`, `submodes`) opens one; a
    flat line after an opener (or before an `exit`) is that section's."""
    modes = _Modes(platform)
    for raw in lines:
        if not raw.strip() or raw.strip().startswith("!"):
            continue
        indent = len(raw) - len(raw.lstrip())
        text = " ".join(raw.split())
        if text in CLOSERS or text == "end":
            modes.close(indent, text)
        elif indent:
            modes.indented(indent, text)
        else:
            modes.flat(text)
        modes.previous = indent
    return [" " * depth + text for depth, text in modes.out]


def sent(driver: HConfigDriverBase, lines: Iterable[str], platform: Platform,
         what: str = "the change") -> HConfig:
    """Config lines to send (a change, a template's lines), read into sections."""
    return parse(driver, "\n".join(structured(lines, platform)), what)


def paths(config: HConfig) -> Counter[tuple[str, ...]]:
    """Every line of a config with the sections it is in."""
    return Counter(tuple(child.path()) for child in config.all_children())


# -- writing ----------------------------------------------------------------------------------


def commands(config: HConfig) -> list[str]:
    """A remediation or rollback as the lines to send: sections entered and left with the
    exit the platform needs, in the order its rules give (hier_config's)."""
    return list(config.lines(sectional_exiting=True))


def remediation(driver: HConfigDriverBase, running: str, intended: str) -> list[str]:
    """The commands that turn running config `running` into `intended` (hier_config's
    remediation: what is missing added, what is extra negated, replaced values set)."""
    flow = WorkflowRemediation(parse(driver, running), parse(driver, intended))
    return commands(flow.remediation_config)


def rollback(platform: Platform, before: str, after: str) -> list[str]:
    """The commands that put a device whose config went from `before` to `after` back
    (hier_config's rollback of that change)."""
    driver = driver_for(platform, before)
    flow = WorkflowRemediation(parse(driver, before), parse(driver, after))
    return commands(flow.rollback_config)


def canonical(platform: Platform, text: str) -> Counter[tuple[str, ...]]:
    """A config's lines with their sections, as hier_config reads them: equal for configs
    that differ only in formatting, closers, comments or where a section is listed."""
    return paths(parse(driver_for(platform, text), text))


# -- a preview's text -------------------------------------------------------------------------


@dataclass
class _Line:
    """A line of a running config's text, and the config line it is (None: structure)."""

    raw: str
    path: tuple[str, ...] | None
    indent: int


def _lines_of(driver: HConfigDriverBase, text: str) -> list[_Line]:
    """The text's lines, each with the config line (path) hier_config reads from it: the
    same per-line rules and indentation (runner's drivers drop closers line by line)."""
    out: list[_Line] = []
    stack: list[tuple[int, str]] = []
    kept = set(driver.config_preprocessor(text).splitlines())
    for raw in text.splitlines():
        indent = len(raw) - len(raw.lstrip())
        line = " " * indent + " ".join(raw.split())
        for rule in driver.rules.per_line_sub:
            line = re.sub(rule.search, rule.replace, line)
        line = line.rstrip()
        if not line or raw not in kept:
            out.append(_Line(raw, None, indent))
            continue
        indent = len(line) - len(line.lstrip())
        while stack and stack[-1][0] >= indent:
            stack.pop()
        path = (*(t for _, t in stack), line.strip())
        out.append(_Line(raw, path, indent))
        stack.append((indent, line.strip()))
    return out


def _find(config: HConfig, path: tuple[str, ...]) -> HConfig | HConfigChild | None:
    node: HConfig | HConfigChild | None = config
    for text in path:
        node = node.children.get(text) if node is not None else None
    return node


def _walk(node: HConfig | HConfigChild) -> Iterator[HConfigChild]:
    for child in node.children:
        yield child
        yield from _walk(child)


class _Text:
    """A running config's text edited into what a change leaves, line by line: the lines'
    own places, indentation and separators kept, so that a diff against the original reads
    as the device's own before/after diff. What stays, goes and comes is hier_config's."""

    def __init__(self, driver: HConfigDriverBase, running: str) -> None:
        self.driver = driver
        self.lines = _lines_of(driver, running.rstrip("\n"))
        while self.lines and not self.lines[-1].raw.strip():
            self.lines.pop()
        self.closes = any(x.raw == "exit" for x in self.lines)  # FRR: sections end so
        steps = [x.indent for x in self.lines if x.path is not None and x.indent]
        self.unit = min(steps) if steps else 1

    def text(self) -> str:
        return "\n".join(x.raw for x in self.lines) + "\n" if self.lines else ""

    def _block(self, at: int) -> int:
        """The index after config line `at`'s section (its lines and its closer)."""
        path = self.lines[at].path
        assert path is not None
        end = at + 1
        for index in range(at + 1, len(self.lines)):
            other = self.lines[index].path
            if other is None:
                continue
            if other[:len(path)] != path or other == path:
                break
            end = index + 1
        if end < len(self.lines) and self.lines[end].path is None \
                and self.lines[end].raw.strip() in CLOSERS \
                and self.lines[end].indent == self.lines[at].indent and end > at + 1:
            end += 1
        return end

    def remove(self, keep: HConfig) -> None:
        """Drop every line (with its section) that `keep` does not have."""
        at = 0
        while at < len(self.lines):
            path = self.lines[at].path
            if path is None or _find(keep, path) is not None:
                at += 1
                continue
            end = self._block(at)
            if len(path) == 1 and end < len(self.lines) and self.lines[end].raw.strip() == \
                    "!" and (at == 0 or self.lines[at - 1].raw.strip() == "!"):
                end += 1  # its separator goes with it
            del self.lines[at:end]

    def replace(self, old: tuple[str, ...], new: HConfigChild) -> bool:
        """Put `new` where the line it replaces (an idempotent command) stood."""
        for index, line in enumerate(self.lines):
            if line.path == old:
                self.lines[index] = _Line(" " * line.indent + new.text,
                                          (*old[:-1], new.text), line.indent)
                return True
        return False

    def add(self, node: HConfigChild) -> None:
        """A new line (and its section) at the end of its section, the section made when
        missing; FRR's closers (`exit`, `exit-address-family`) and `!` as the text has them."""
        parent = tuple(node.parent.path()) if isinstance(node.parent, HConfigChild) else ()
        block = self._render(node)
        if not parent:
            at = len(self.lines)
            if self.lines and self.lines[-1].raw.strip() == "end":
                at -= 1
            if at and self.lines[at - 1].raw.strip() == "!" and node.children:
                block.append(_Line("!", None, 0))
            self.lines[at:at] = block
            return
        head = next(i for i, x in enumerate(self.lines) if x.path == parent)
        end = self._block(head)
        if end > head + 1 and self.lines[end - 1].path is None \
                and self.lines[end - 1].raw.strip() in CLOSERS:
            end -= 1
        if not node.children:  # a setting goes after its section's settings, before its
            leaves = [i + 1 for i in range(head + 1, end)  # sub-sections (as devices list)
                      if self._leaf_child(i, parent)]
            end = leaves[-1] if leaves else head + 1
        self.lines[end:end] = block

    def _leaf_child(self, at: int, parent: tuple[str, ...]) -> bool:
        """Whether line `at` is a setting of section `parent` with no lines of its own."""
        path = self.lines[at].path
        if path is None or path[:-1] != parent:
            return False
        later = next((x.path for x in self.lines[at + 1:] if x.path is not None), None)
        return later is None or later[:len(path)] != path

    def _render(self, node: HConfigChild) -> list[_Line]:
        indent = self.unit * (node.depth() - 1)
        out = [_Line(" " * indent + node.text, tuple(node.path()), indent)]
        for child in node.children:
            out += self._render(child)
        exit_text = self.driver.sectional_exit(node) if node.children else None
        if exit_text and (self.closes or exit_text != "exit"):
            out.append(_Line(" " * indent + exit_text, None, indent))
        return out


@dataclass(frozen=True)
class Preview:
    """What sending lines would do: the config after, and the diff a real run records."""

    after: str
    diff: str


def future(platform: Platform, running: str, lines: list[str]) -> str:
    """The running config's text as sending `lines` would leave it (hier_config's future
    config, written in the running config's own form): what the change negates goes (with
    its section), a value that replaces another stands where the old one stood, a new line
    goes at the end of its section (the section made first when missing). A `no X` for an
    X the config does not have changes nothing shown."""
    driver = driver_for(platform, running, literal=True)
    before = parse(driver, running)
    after = before.future(sent(driver, lines, platform))
    new = []  # lines the change adds (a new section once, with its lines)
    for node in _walk(after):
        path = tuple(node.path())
        inside_new = len(path) > 1 and _find(before, path[:-1]) is None
        if inside_new or _find(before, path) is not None:
            continue
        if node.text.startswith(driver.negation_prefix) and not node.children:
            continue  # a negation of nothing: hier_config keeps it, devices show nothing
        new.append(node)
    text = _Text(driver, running)
    rest = []
    for node in new:
        siblings = _find(before, tuple(node.path())[:-1])
        assert siblings is not None
        replaced = None if node.children else driver.idempotent_for(node, siblings.children)
        if replaced is None or not text.replace(tuple(replaced.path()), node):
            rest.append(node)
    text.remove(after)
    for node in rest:
        text.add(node)
    return text.text()
