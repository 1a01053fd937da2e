"""Platform knowledge (failure indicators, config commands, volatile and secret lines) loaded
from platforms.yaml, so adding a platform is a data change; the names other libraries give a
platform (napalm's `eos`, ansible's `cisco.ios.ios`, scrapli's `cisco_iosxe`...) resolve to
runner's through netutils' mapping, the field's shared table."""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache, cached_property

import yaml

from runner.inventory.secretlines import LazyRule, compile_rule
from runner.registry import Registry


@dataclass(frozen=True)
class Platform:
    name: str
    netmiko: str
    scrapli: str
    ntc_templates: str
    running_config: str
    save_config: str
    failure_indicators: tuple[str, ...]
    # The patterns as platforms.yaml writes them, compiled when this platform's are first
    # used (below): a run compiles its devices' platforms' alone, `validate -i` none
    # (~20 ms for the four platforms' ~130 patterns, secret-line rules the most of them).
    volatile_patterns: tuple[str, ...]
    secret_rules: tuple[str, ...]
    single_valued: tuple[str, ...]
    mode_patterns: tuple[str, ...]  # lines that enter a CLI sub-mode from global config
    submode_patterns: tuple[str, ...]  # ... and from inside one of those
    cli_prompt: str
    cli_on_open: tuple[str, ...]
    cli_config_enter: str
    cli_config_exit: str
    cli_enable: str
    cli_password_prompt: str
    tested: bool = False

    @cached_property
    def volatile(self) -> tuple[re.Pattern[str], ...]:
        return tuple(re.compile(p, re.M) for p in self.volatile_patterns)

    @cached_property
    def secrets(self) -> tuple[re.Pattern[str], ...]:
        """The secret-line rules (secretlines.compile_rule: each one's `secret` group)."""
        return tuple(compile_rule(r) for r in self.secret_rules)

    @cached_property
    def secret_lines(self) -> tuple[LazyRule, ...]:
        """The secret-line rules, each compiled when a redactor first applies it."""
        return tuple(LazyRule(r) for r in self.secret_rules)

    @cached_property
    def modes(self) -> tuple[re.Pattern[str], ...]:
        return tuple(re.compile(p) for p in self.mode_patterns)

    @cached_property
    def submodes(self) -> tuple[re.Pattern[str], ...]:
        return tuple(re.compile(p) for p in self.submode_patterns)

    @property
    def asyncssh(self) -> str:
        """runner's own driver needs no separate platform name."""
        return self.name

    def rejected(self, output: str) -> str | None:
        """The failure indicator line in `output`, if the device rejected the input."""
        # each indicator's first word looked for first (a few substring scans): the line
        # pattern tries every position of a clean output (~20 us a running config)
        words = _first_words(self.failure_indicators)
        if words is not None and not any(word in output for word in words):
            return None
        found = _indicators(self.failure_indicators).search(output)
        return found.group(0).strip() if found else None


@cache
def _first_words(indicators: tuple[str, ...]) -> frozenset[str] | None:
    """What every line an indicator starts holds: its first word (`%`, `Command`); None
    if an indicator has no word (then every line may match it)."""
    if not all(i.split() for i in indicators):
        return None
    return frozenset(i.split()[0] for i in indicators)


@cache
def _indicators(indicators: tuple[str, ...]) -> re.Pattern[str]:
    """One pattern for all indicators: a line that starts (after blanks) with any of them.
    Scanning large outputs once per command matters at fleet scale."""
    alternatives = "|".join(re.escape(i) for i in indicators)
    return re.compile(rf"^[ \t]*(?:{alternatives})[^\r\n]*", re.M)


@cache
def _table() -> Registry[Platform]:
    from importlib import resources  # when the table is read, not with every job file

    text = resources.files(__package__).joinpath("platforms.yaml").read_text(encoding="utf-8")
    # libyaml's loader where PyYAML has it: every run reads this file (7 ms in Python)
    raw = yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))  # noqa: S506
    table: Registry[Platform] = Registry("platform", lambda p: p.name)
    for name, spec in raw.items():
        table.register(Platform(
            name=name, netmiko=spec["netmiko"], scrapli=spec["scrapli"],
            ntc_templates=spec["ntc_templates"], running_config=spec["running_config"],
            save_config=spec["save_config"],
            failure_indicators=tuple(spec["failure_indicators"]),
            volatile_patterns=tuple(spec["volatile"]),
            secret_rules=(*spec["secrets"], *spec.get("secrets_extra", ())),
            single_valued=tuple(spec.get("single_valued", ())),
            mode_patterns=tuple(spec.get("modes", ())),
            submode_patterns=tuple(spec.get("submodes", ())),
            cli_prompt=spec["cli"]["prompt"], cli_on_open=tuple(spec["cli"]["on_open"]),
            cli_config_enter=spec["cli"]["config_enter"],
            cli_config_exit=spec["cli"]["config_exit"],
            cli_enable=spec["cli"]["enable"],
            cli_password_prompt=spec["cli"]["password_prompt"],
            tested=spec.get("tested", False) is True,
        ))
    return table


def names() -> list[str]:
    return sorted(_table().names())


def untested() -> list[str]:
    """Platforms no test has run against a device of (platforms.yaml `tested: false`)."""
    return sorted(p.name for p in _table() if not p.tested)


# The libraries whose platform names an inventory may use, as netutils' lib_mapper names them.
ALIAS_LIBRARIES = ("napalm", "netmiko", "scrapli", "ansible")


def get(name: str) -> Platform | None:
    """The platform of a runner name or of any library's name for it."""
    found = canonical(name)
    return None if found is None else _table().get(found)


@cache
def canonical(name: str) -> str | None:
    """runner's name for `name` (its own, or napalm's, netmiko's, scrapli's or ansible's
    name for a platform runner has settings for), else None."""
    table = _table()
    if name in table:
        return name
    for normal in _normalized(name):
        if normal in table:
            return normal
    return None


def _normalized(name: str) -> list[str]:
    """netutils' normalized names for `name` in each library that knows it."""
    from netutils.lib_mapper import MAIN_LIB_MAPPER, NAME_TO_LIB_MAPPER

    key = name.strip().lower()
    found = [NAME_TO_LIB_MAPPER[lib].get(key) for lib in ALIAS_LIBRARIES]
    found.append(MAIN_LIB_MAPPER.get(key))
    return list(dict.fromkeys(n for n in found if n))


def accepted_names() -> list[str]:
    """Every name `canonical` accepts: runner's and the libraries' names for them."""
    from netutils.lib_mapper import NAME_TO_LIB_MAPPER

    table = _table()
    aliases = {alias for lib in ALIAS_LIBRARIES
               for alias, normal in NAME_TO_LIB_MAPPER[lib].items() if normal in table}
    return sorted(set(table.names()) | aliases)


def unknown(name: str) -> str:
    """Why `name` is no platform runner can drive, for an error message."""
    known = ", ".join(names())
    others = _normalized(name)
    if others:
        label = repr(name) if others[0] == name else f"{name!r} ({others[0]})"
        return (f"platform {label} has no settings in runner (runner drives {known}; their "
                "napalm, netmiko, scrapli and ansible names work too)")
    return (f"unknown platform {name!r}: not a name of runner, napalm, netmiko, scrapli or "
            f"ansible (runner drives {known})")
