"""FRR daemons files (/etc/frr/daemons): the profile, and each daemon's options, checked.

The options become a daemon's command line, run as root before FRR drops its privileges,
so they are an allow-list: the options that tune a daemon (vty address and port, buffer
sizes, ECMP, BGP's port and listen address, modules by name) pass; those that point a
daemon at other files or namespaces (-f, -i, -z, --vty_socket, --log, --moduledir,
--scriptdir, -N, zebra's -n, -u/-g, bgpd's -S) are refused, as is anything the shell would
read (every argument is quoted when a script runs it).
"""

from __future__ import annotations

import ipaddress
import re
import shlex
from collections.abc import Callable
from dataclasses import dataclass

from runner.errors import LabError
from runner.lab.schema import FRR_DAEMONS

_OPTIONS_RE = re.compile(r'^\s*(\w+)_options\s*=\s*(["\']?)(.*?)\2\s*(#.*)?$')
_PROFILE_RE = re.compile(r'^\s*frr_profile\s*=\s*(.*?)\s*$')
_MODULE_RE = re.compile(r"^[A-Za-z0-9_]+(:[A-Za-z0-9_,=.-]*)?$")
PROFILES = ("traditional", "datacenter")
RUN = frozenset(("zebra", "staticd", *FRR_DAEMONS))  # daemons whose options are used


def _address(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def _count(value: str) -> bool:
    return value.isdigit() and len(value) <= 10


def _module(value: str) -> bool:
    return bool(_MODULE_RE.match(value))


Check = Callable[[str], bool]
# option -> (long form, check of its value or None for a flag); per daemon beyond COMMON.
COMMON: dict[str, tuple[str, Check | None]] = {
    "-A": ("--vty_addr", _address), "-P": ("--vty_port", _count),
    "-M": ("--module", _module), "--limit-fds": ("--limit-fds", _count),
}
PER_DAEMON: dict[str, dict[str, tuple[str, Check | None]]] = {
    "zebra": {"-s": ("--nl-bufsize", _count), "-e": ("--ecmp", _count),
              "-r": ("--retain", None), "-K": ("--graceful_restart", _count),
              "-a": ("--allow_delete", None), "--v6-rr-semantics": ("--v6-rr-semantics", None)},
    "bgpd": {"-p": ("--bgp_port", _count), "-l": ("--listenon", _address),
             "-n": ("--no_kernel", None), "-e": ("--ecmp", _count),
             "-I": ("--int_num", _count), "-Z": ("--no_zebra", None)},
    "ospfd": {"-n": ("--instance", _count)},
}
_WHAT: dict[Check, str] = {_address: "an IP address", _count: "a number",
                           _module: "a module name"}


@dataclass(frozen=True)
class DaemonsFile:
    profile: str
    options: dict[str, list[str]]  # daemon -> its checked arguments


def _allowed(daemon: str) -> dict[str, tuple[str, Check | None]]:
    table = {**COMMON, **PER_DAEMON.get(daemon, {})}
    return {**table, **{long: (long, check) for long, check in table.values()}}


def check_options(daemon: str, text: str) -> list[str]:
    """The arguments of `<daemon>_options`, each checked; LabError naming the first bad."""
    try:
        words = shlex.split(text)
    except ValueError as exc:
        raise LabError(f"{daemon}_options: {exc}") from None
    allowed = _allowed(daemon)
    args: list[str] = []
    i = 0
    while i < len(words):
        word, value = words[i], None
        if word.startswith("--") and "=" in word:
            word, value = word.split("=", 1)
        elif re.match(r"^-[A-Za-z].", word):
            word, value = word[:2], word[2:]
        if word not in allowed:
            names = ", ".join(sorted(k for k in allowed if not k.startswith("--")))
            raise LabError(f"{daemon}_options: option {word!r} is not allowed here (a lab "
                           f"router's daemon may be given {names} and their long forms; "
                           "options naming files, users or namespaces are refused)")
        check = allowed[word][1]
        if check is None:
            if value is not None:
                raise LabError(f"{daemon}_options: {word} takes no value")
            args.append(word)
        else:
            if value is None:
                i += 1
                if i == len(words):
                    raise LabError(f"{daemon}_options: {word} needs a value")
                value = words[i]
            if not check(value):
                raise LabError(f"{daemon}_options: {word} {value!r} is not {_WHAT[check]}")
            args += [word, value]
        i += 1
    return args


def parse(text: str) -> DaemonsFile:
    """Read a daemons file; LabError naming the line of a refused option."""
    profile = "traditional"
    options: dict[str, list[str]] = {}
    for number, line in enumerate(text.splitlines(), 1):
        if m := _PROFILE_RE.match(line):
            value = m.group(1).strip("\"'")
            if value not in PROFILES:
                raise LabError(f"line {number}: frr_profile {value!r} is not one of "
                               f"{', '.join(PROFILES)}")
            profile = value
        elif (m := _OPTIONS_RE.match(line)) and m.group(1) in RUN:
            try:
                options[m.group(1)] = check_options(m.group(1), m.group(3))
            except LabError as exc:
                raise LabError(f"line {number}: {exc}") from None
    return DaemonsFile(profile, options)
