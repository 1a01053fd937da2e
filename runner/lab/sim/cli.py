"""An emulated IOS-style device: exec and config modes, a running configuration that config
commands really change, and the platform's own error text. Pure logic, no I/O."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

INVALID = "% Invalid input detected at '^' marker."
INCOMPLETE = "% Incomplete command."

# Exec-mode command words: each maps to its next words (None: takes free arguments).
_Tree = dict[str, "_Tree | None"]
EXEC: _Tree = {
    "show": {
        "version": {}, "running-config": {}, "startup-config": {}, "clock": {},
        "ip": {"interface": {"brief": {}}},
        "interfaces": {"description": {}},
        "inventory": {}, "privilege": {},
        "archive": {"log": {"config": {"all": {}}}},
    },
    "terminal": {"length": None, "width": None, "no": None, "monitor": {}},
    "configure": {"terminal": {}},
    "write": {"memory": {}},
    "copy": {"running-config": {"startup-config": {}}},
    "enable": {}, "disable": {}, "exit": {}, "logout": {}, "quit": {},
}
# First words of global config commands the simulator keeps verbatim in the configuration.
GLOBAL_WORDS = frozenset({
    "hostname", "interface", "router", "ntp", "logging", "snmp-server", "ip", "ipv6",
    "username", "service", "banner", "aaa", "line", "access-list", "vlan", "spanning-tree",
    "clock", "enable", "cdp", "lldp", "crypto", "boot", "archive", "alias", "vrf", "no",
    "end", "exit", "do", "tacacs-server", "radius-server", "object-group", "route-map",
    "prefix-list", "policy-map", "class-map", "key", "license", "platform", "control-plane",
})
# Sub-mode commands (interface, router, line): the first words each keeps as child lines.
SUB_WORDS = frozenset({
    "description", "ip", "ipv6", "shutdown", "no", "speed", "duplex", "mtu", "bandwidth",
    "switchport", "channel-group", "cdp", "load-interval", "negotiation", "vrf", "network",
    "neighbor", "redistribute", "passive-interface", "router-id", "address-family",
    "exit-address-family", "transport", "login", "exec-timeout", "password", "logging",
    "maximum-paths", "default-information", "area", "timers", "bgp", "standby", "vrrp",
    "service-policy", "encapsulation", "access-class", "privilege", "stopbits", "media-type",
    "mpls", "ospf", "authentication", "keepalive", "hold-queue", "storm-control",
})


@dataclass
class Section:
    line: str
    children: list[str] = field(default_factory=list)


@dataclass
class Device:
    hostname: str
    serial: str
    model: str = "IOSv"
    version: str = "15.9(3)M4"
    sections: list[Section] = field(default_factory=list)
    startup: list[Section] = field(default_factory=list)
    uptime_s: int = 3600
    # IOS `archive log config`: every accepted config line, with its config session number
    # (one per `configure terminal`): how a test asks a device how often it was configured.
    config_log: list[tuple[int, str]] = field(default_factory=list)
    config_sessions: int = 0

    @classmethod
    def default(cls, hostname: str, index: int, interfaces: int = 8) -> Device:
        """A device with a small, realistic configuration (management plus interfaces)."""
        dev = cls(hostname=hostname, serial=f"9SIM{index:08d}")
        lines: list[tuple[str, list[str]]] = [
            ("version 15.9", []),
            ("service timestamps debug datetime msec", []),
            ("service timestamps log datetime msec", []),
            ("service password-encryption", []),
            (f"hostname {hostname}", []),
            ("boot-start-marker", []), ("boot-end-marker", []),
            ("no aaa new-model", []),
            ("ip domain name sim.example.net", []),
            ("ip cef", []), ("no ipv6 cef", []),
            ("username admin privilege 15 secret 9 $9$simulated$notarealhash", []),
        ]
        for i in range(interfaces):
            a, b = divmod(index, 250)
            addr = [f" ip address 10.{i}.{a}.{b + 1} 255.255.255.0"] if i else [
                f" ip address 172.16.{a}.{b + 1} 255.255.0.0"]
            lines.append((f"interface GigabitEthernet0/{i}",
                          [" description mgmt" if i == 0 else f" description link {i}",
                           *addr, " duplex auto", " speed auto",
                           *([" shutdown"] if i == interfaces - 1 else [])]))
        lines += [
            ("router ospf 1", [" router-id 10.255.{}.{}".format(*divmod(index, 250)),
                               " network 10.0.0.0 0.255.255.255 area 0"]),
            ("ip forward-protocol nd", []), ("no ip http server", []),
            ("ip route 0.0.0.0 0.0.0.0 172.16.0.1", []),
            ("logging host 192.0.2.50", []),
            ("snmp-server community s1mC0mmunity RO", []),
            *((f"access-list 10 permit 192.0.2.{n} 0.0.0.255", []) for n in range(0, 80, 8)),
            ("banner motd ^C Authorized access only. Disconnect now if not authorized. ^C", []),
            ("ntp server 192.0.2.123", []),
            ("line con 0", [" exec-timeout 0 0", " logging synchronous"]),
            ("line vty 0 4", [" login local", " transport input ssh"]),
        ]
        dev.sections = [Section(line, list(children)) for line, children in lines]
        dev.startup = [Section(s.line, list(s.children)) for s in dev.sections]
        return dev

    @classmethod
    def from_config(cls, hostname: str, index: int, config: str) -> Device:
        """A device whose running and startup configuration is `config`, as `show
        running-config` prints it (a backup's text): top-level lines open sections,
        indented ones belong to the section above, `!` and `end` only separate."""
        dev = cls(hostname=hostname, serial=f"9SIM{index:08d}")
        current: Section | None = None
        for raw in config.splitlines():
            line = raw.rstrip()
            if not line or line.startswith(("Building configuration",
                                            "Current configuration")):
                continue
            if line in ("!", "end"):
                current = None
            elif line[0].isspace() and current is not None:
                current.children.append(line)
            else:
                current = Section(line.strip())
                dev.sections.append(current)
        dev.startup = [Section(s.line, list(s.children)) for s in dev.sections]
        return dev

    def running_config(self) -> str:
        body = []
        for section in self.sections:
            body.append(section.line)
            body.extend(section.children)
            body.append("!")
        text = "\n".join(["!", *body, "end"])
        return (f"Building configuration...\n\nCurrent configuration : {len(text)} bytes\n"
                f"{text}")

    def startup_config(self) -> str:
        lines = [ln for s in self.startup for ln in (s.line, *s.children, "!")]
        text = "\n".join(["!", *lines, "end"])
        return f"Using {len(text)} out of 262144 bytes\n{text}"

    def interfaces(self) -> list[tuple[str, str, bool, str]]:
        """(name, address, shutdown, description) of each interface, in config order."""
        found = []
        for s in self.sections:
            if not s.line.startswith("interface "):
                continue
            addr = next((c.split()[2] for c in s.children
                         if c.strip().startswith("ip address ")), "unassigned")
            desc = next((c.strip()[12:] for c in s.children
                         if c.strip().startswith("description ")), "")
            found.append((s.line.split(None, 1)[1], addr, " shutdown" in s.children, desc))
        return found

    def section(self, line: str, create: bool = True) -> Section | None:
        for s in self.sections:
            if s.line == line:
                return s
        if not create:
            return None
        new = Section(line)
        # Keep interfaces together, as IOS orders them.
        at = len(self.sections)
        if line.startswith("interface "):
            last = [i for i, s in enumerate(self.sections) if s.line.startswith("interface ")]
            at = last[-1] + 1 if last else at
        self.sections.insert(at, new)
        return new

    def archive_log(self) -> str:
        rows = [" idx   sess           user@line      Logged command"]
        for index, (session, line) in enumerate(self.config_log, 1):
            rows.append(f"{index:>5} {session:>5}           admin@vty0    |{line}")
        return "\n".join(rows)

    def save(self) -> None:
        self.startup = [Section(s.line, list(s.children)) for s in self.sections]


def match_words(tree: _Tree, words: list[str]) -> tuple[list[str], str | None]:
    """Expand unique abbreviations ("sh ip int br"); return (full words, error text)."""
    full: list[str] = []
    node: _Tree | None = tree
    for i, word in enumerate(words):
        if node is None:  # free arguments from here on
            return full + words[i:], None
        if not node:
            return full, _caret(words, i)
        options = [k for k in node if k.startswith(word.lower())]
        exact = word.lower() in node
        if exact:
            options = [word.lower()]
        if not options:
            return full, _caret(words, i)
        if len(options) > 1:
            return full, f'% Ambiguous command:  "{" ".join(words)}"'
        full.append(options[0])
        node = node[options[0]]
    if node:  # more words needed
        return full, INCOMPLETE
    return full, None


def _caret(words: list[str], index: int) -> str:
    col = len(" ".join(words[:index])) + (1 if index else 0)
    return f"{' ' * col}^\n{INVALID}"


def pipe(text: str, spec: str) -> str:
    """IOS output filters: include, exclude, begin, section."""
    parts = spec.strip().split(None, 1)
    if len(parts) != 2:
        return INCOMPLETE
    how, pattern = parts
    how = how.lower()
    try:
        rx = re.compile(pattern)
    except re.error:
        return INVALID
    lines = text.splitlines()
    if "include".startswith(how):
        return "\n".join(ln for ln in lines if rx.search(ln))
    if "exclude".startswith(how):
        return "\n".join(ln for ln in lines if not rx.search(ln))
    if "begin".startswith(how):
        for i, ln in enumerate(lines):
            if rx.search(ln):
                return "\n".join(lines[i:])
        return ""
    if "section".startswith(how):
        out, keep = [], False
        for ln in lines:
            if not ln.startswith(" "):
                keep = bool(rx.search(ln))
            elif not keep and rx.search(ln):
                out.append(ln)
                continue
            if keep:
                out.append(ln)
        return "\n".join(out)
    return INVALID
