"""One CLI session on an emulated device: the mode it is in and what each line does."""

from __future__ import annotations

import hmac
from dataclasses import dataclass

from runner.lab.sim.cli import (
    EXEC,
    GLOBAL_WORDS,
    INCOMPLETE,
    INVALID,
    SUB_WORDS,
    Device,
    Section,
    _caret,
    match_words,
    pipe,
)

_SINGLE = ("description", "ip address", "mtu", "bandwidth", "speed", "duplex",
           "router-id", "exec-timeout", "load-interval", "encapsulation")
CONFIG_BANNER = "Enter configuration commands, one per line.  End with CNTL/Z."


@dataclass
class Reply:
    output: str
    close: bool = False


class Shell:
    """Modes: user exec (>), privileged exec (#), config, and a config sub-mode."""

    def __init__(self, device: Device, enable_secret: str | None = None) -> None:
        self.device = device
        self.enable_secret = enable_secret
        self.privileged = enable_secret is None  # with a secret, logins land in user exec
        self.config = False
        self.sub: Section | None = None
        self.sub_mode = ""
        self.confirm: str | None = None  # a question waiting for its answer
        self.session = 0  # this login's config session number (archive log)

    @property
    def awaiting_secret(self) -> bool:
        """The next line is a password: not echoed."""
        return self.confirm == "enable"

    @property
    def asking(self) -> bool:
        """The last answer was a question: no prompt follows it."""
        return self.confirm is not None

    @property
    def prompt(self) -> str:
        host = self.device.hostname
        if self.config:
            return f"{host}(config{'-' + self.sub_mode if self.sub else ''})#"
        return f"{host}{'#' if self.privileged else '>'}"

    def line(self, text: str) -> Reply:
        if self.confirm is not None:
            action, self.confirm = self.confirm, None
            if action == "enable":
                if hmac.compare_digest(text.strip().encode(), (self.enable_secret or "").encode()):
                    self.privileged = True
                    return Reply("")
                return Reply("% Bad secrets")
            if action == "copy" and text.strip() in ("", "startup-config"):
                self.device.save()
                return Reply("Building configuration...\n[OK]")
            return Reply("%Error opening " + text.strip() + " (Invalid argument)")
        stripped = text.strip()
        if not stripped or stripped.startswith("!"):
            return Reply("")
        if self.config:
            reply = self._config(stripped)
            if not reply.output.startswith("%") and stripped.split()[0] not in (
                    "end", "exit", "do", "\x1a"):
                self.device.config_log.append((self.session, stripped))
            return reply
        return self._exec(stripped)

    def _exec(self, text: str) -> Reply:
        command, _, filt = text.partition("|")
        words, error = match_words(EXEC, command.split())
        if error:
            return Reply(error)
        head = " ".join(words[:2])
        if words[0] in ("exit", "logout", "quit"):
            return Reply("", close=True)
        if words[0] == "enable":
            if not self.privileged and self.enable_secret is not None:
                self.confirm = "enable"
                return Reply("Password: ")
            self.privileged = True
            return Reply("")
        if words[0] == "disable":
            self.privileged, self.config = False, False
            return Reply("")
        if words[0] == "terminal":
            return Reply("")
        if (not self.privileged and words[0] in ("configure", "write", "copy")) \
                or (not self.privileged and head in ("show running-config",
                                                    "show startup-config")):
            return Reply(_caret(words, 0))
        if head == "configure terminal":
            self.config = True
            self.device.config_sessions += 1
            self.session = self.device.config_sessions
            return Reply(CONFIG_BANNER)
        if words[0] == "write":
            self.device.save()
            return Reply("Building configuration...\n[OK]")
        if words[0] == "copy":
            self.confirm = "copy"
            return Reply("Destination filename [startup-config]? ")
        out = self._show(words)
        return Reply(pipe(out, filt) if filt else out)

    def _show(self, words: list[str]) -> str:
        dev = self.device
        what = " ".join(words[1:])
        if what == "running-config":
            return dev.running_config()
        if what == "startup-config":
            return dev.startup_config()
        if what == "version":
            return show_version(dev)
        if what == "ip interface brief":
            rows = ["Interface                  IP-Address      OK? Method Status"
                    "                Protocol"]
            for name, addr, down, _ in dev.interfaces():
                status = "administratively down" if down else "up"
                method = "NVRAM" if addr != "unassigned" else "unset"
                rows.append(f"{name:<26} {addr:<15} YES {method:<6} {status:<21} "
                            f"{'down' if down else 'up'}")
            return "\n".join(rows)
        if what == "interfaces description":
            rows = ["Interface                      Status         Protocol Description"]
            for name, _, down, desc in dev.interfaces():
                short = name.replace("GigabitEthernet", "Gi")
                rows.append(f"{short:<30} {'admin down' if down else 'up':<14} "
                            f"{'down' if down else 'up':<8} {desc}")
            return "\n".join(rows)
        if what == "archive log config all":
            return dev.archive_log()
        if what == "privilege":
            return f"Current privilege level is {15 if self.privileged else 1}"
        if what == "clock":
            return "*12:00:00.000 UTC Sun Nov 22 2026"
        if what == "inventory":
            return (f'NAME: "{dev.model}", DESCR: "Cisco {dev.model} Chassis"\n'
                    f"PID: {dev.model:<18}, VID: 1.0, SN: {dev.serial}")
        return INVALID

    def _config(self, text: str) -> Reply:
        words = text.split()
        first = words[0].lower()
        if first == "end" or text == "\x1a":
            self.config, self.sub = False, None
            return Reply("")
        if first == "do" and len(words) > 1:
            return self._exec(text[2:].strip())
        if first == "exit":
            if self.sub is not None:
                self.sub = None
            else:
                self.config = False
            return Reply("")
        if self.sub is not None and (first in SUB_WORDS or self.sub_mode != "if") \
                and first not in ("interface", "router", "line", "hostname"):
            return self._sub_line(text)
        self.sub = None
        if first not in GLOBAL_WORDS:
            return Reply(_caret(words, 0))
        return self._global(text, words)

    def _global(self, text: str, words: list[str]) -> Reply:
        dev = self.device
        first = words[0].lower()
        if first in ("interface", "router", "line"):
            if len(words) < 2:
                return Reply(INCOMPLETE)
            name = _interface_name(words[1]) if first == "interface" else " ".join(words[1:])
            line = f"{first} {name}" if first == "interface" else " ".join(words)
            self.sub = dev.section(line)
            self.sub_mode = {"interface": "if", "router": "router", "line": "line"}[first]
            return Reply("")
        if first == "hostname":
            if len(words) != 2:
                return Reply(INCOMPLETE if len(words) < 2 else _caret(words, 2))
            dev.hostname = words[1]
            for s in dev.sections:
                if s.line.startswith("hostname "):
                    s.line = f"hostname {words[1]}"
            return Reply("")
        if first == "no":
            if len(words) < 2:
                return Reply(INCOMPLETE)
            rest = " ".join(words[1:])
            before = len(dev.sections)
            dev.sections = [s for s in dev.sections
                            if not (s.line == rest or s.line.startswith(rest + " "))]
            if len(dev.sections) == before:
                dev.section("no " + rest)  # IOS keeps explicit "no" defaults
            return Reply("")
        if len(words) < 2:
            return Reply(INCOMPLETE)
        line = " ".join(words)
        negated = f"no {line}"
        dev.sections = [s for s in dev.sections if s.line != negated]
        dev.section(line)
        return Reply("")

    def _sub_line(self, text: str) -> Reply:
        assert self.sub is not None
        words = text.split()
        children = self.sub.children
        if words[0].lower() == "no":
            rest = " ".join(words[1:])
            if not rest:
                return Reply(INCOMPLETE)
            kept = [c for c in children if not (c.strip() == rest
                                                 or c.strip().startswith(rest + " "))]
            if rest == "shutdown" or len(kept) == len(children):
                kept = [c for c in kept if c.strip() != "shutdown"] if rest == "shutdown" \
                    else kept
            children[:] = kept
            return Reply("")
        line = " " + " ".join(words)
        if line in children:
            return Reply("")
        key = next((k for k in _SINGLE if line.strip().startswith(k + " ")), None)
        at = next((i for i, c in enumerate(children)
                   if key and c.strip().startswith(key + " ")), None)
        if at is not None:
            children[at] = line  # replaces the old value where it stood, as IOS shows it
            return Reply("")
        # IOS lists a section's lines in its own order, not in the order they were typed
        rank = _rank(line)
        at = next((i for i, c in enumerate(children) if _rank(c) > rank), len(children))
        children.insert(at, line)
        return Reply("")


# The order IOS shows a sub-mode's lines in; anything else sits between `ip ...` and duplex.
_ORDER = ("description", "encapsulation", "vrf", "ip address", "ip", "ipv6", "", "duplex",
          "speed", "negotiation", "shutdown")


def _rank(line: str) -> int:
    text = line.strip()
    return next((i for i, key in enumerate(_ORDER)
                 if key and (text == key or text.startswith(key + " "))), _ORDER.index(""))


def _interface_name(word: str) -> str:
    for short, full in (("gigabitethernet", "GigabitEthernet"), ("gi", "GigabitEthernet"),
                        ("loopback", "Loopback"), ("lo", "Loopback"), ("vlan", "Vlan"),
                        ("tengigabitethernet", "TenGigabitEthernet"),
                        ("te", "TenGigabitEthernet"), ("port-channel", "Port-channel"),
                        ("po", "Port-channel"), ("tunnel", "Tunnel")):
        lowered = word.lower()
        if lowered.startswith(short) and (lowered[len(short):][:1].isdigit()):
            return full + word[len(short):]
    return word


def show_version(dev: Device) -> str:
    hours, rest = divmod(dev.uptime_s, 3600)
    return f"""Cisco IOS Software, {dev.model} Software (VIOS-ADVENTERPRISEK9-M), Version \
{dev.version}, RELEASE SOFTWARE (fc3)
Technical Support: http://www.cisco.com/techsupport
Copyright (c) 1986-2021 by Cisco Systems, Inc.
Compiled Tue 06-Jul-21 03:41 by prod_rel_team


ROM: Bootstrap program is {dev.model}

{dev.hostname} uptime is {hours} hours, {rest // 60} minutes
System returned to ROM by reload
System image file is "flash0:/vios-adventerprisek9-m"
Last reload reason: Unknown reason



This product contains cryptographic features and is subject to United
States and local country laws governing import, export, transfer and
use. Delivery of Cisco cryptographic products does not imply
third-party authority to import, export, distribute or use encryption.

Cisco {dev.model} (revision 1.0) with  with 460017K/62464K bytes of memory.
Processor board ID {dev.serial}
{len(dev.interfaces())} Gigabit Ethernet interfaces
DRAM configuration is 72 bits wide with parity disabled.
256K bytes of non-volatile configuration memory.
2097152K bytes of ATA System CompactFlash 0 (Read/Write)

Configuration register is 0x0"""
