"""The structure of a containerlab topology file as pydantic models, each value checked alone."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from typing import Annotated, Any, ClassVar

from pydantic import (
    AfterValidator,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    model_validator,
)
from pydantic_core import InitErrorDetails

from runner.lab import rules
from runner.source.validation import Strict, describe, problem

NAME_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9._-]*$")
IFNAME_RE = re.compile(r"^[^\s/:]+$")
IFNAME_MAX = 15  # IFNAMSIZ - 1: the kernel refuses longer interface names
LOGIN_RE = re.compile(r"^[a-z_][a-z0-9_-]{0,30}$")
# Fields containerlab accepts that only mean something to a container runtime: accepted on
# every node level, with a warning.
IGNORED_NODE_FIELDS = frozenset(
    {
        "image-pull-policy", "restart-policy", "license", "type", "startup-delay",
        "enforce-startup-config", "suppress-startup-config", "auto-remove", "volumes",
        "ports", "env-files", "user", "hostname", "entrypoint", "cmd", "runtime",
        "mgmt-ipv6", "network-mode", "cpu", "memory", "cpu-set", "config", "stages", "dns",
        "certificate", "healthcheck", "components", "aliases", "shm-size", "cap-add",
        "privileged", "cgroupns-mode", "cgroup-parent", "pid-mode", "tmpfs",
        "security-opts", "devices", "link-apply-mode",
    }
)
FRR_DAEMONS = (
    "bgpd", "ospfd", "ospf6d", "ripd", "ripngd", "isisd", "pimd", "pim6d", "ldpd", "nhrpd",
    "eigrpd", "babeld", "sharpd", "pbrd", "bfdd", "fabricd", "vrrpd", "pathd",
)
ALWAYS_ON_DAEMONS = ("zebra", "staticd", "watchfrr", "mgmtd")
# Endpoints are a union: "node:interface" (brief) or {node, interface} (extended); pydantic
# names the branch after the endpoint's index in error locations.
UNION_TAGS = {"endpoints": frozenset({"brief", "extended"})}
_NOTHING = "expected a string, got nothing"


# ---- single values ------------------------------------------------------------------------


def _text(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise problem(f"expected a string, got {describe(value)}")
    return str(value)


def _text_list(value: Any) -> Any:
    if not isinstance(value, list):
        raise problem(f"expected a list of strings, got {describe(value)}")
    return value


def _mapping(value: Any) -> Any:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise problem(f"expected a mapping, got {describe(value)}")
    return value


def _lab_name(name: str) -> str:
    if not NAME_RE.match(name):
        raise problem(f"{name!r} is not a valid lab name (letters, digits, '.', '_', '-')")
    return name


def _prefix(prefix: str) -> str:
    if prefix not in ("", "__lab-name") and not NAME_RE.match(prefix):
        raise problem(f"{prefix!r} is not a valid prefix")
    return prefix


def _node_name(name: str) -> str:
    why = rules.hostname_problem(name)
    if why is not None:
        raise problem(why)
    return name


def _subnet(value: Any) -> Any:
    if value is None or value == "auto":
        return None
    text = _text(value)
    try:
        subnet = ipaddress.IPv4Network(text, strict=False)
    except ValueError:
        raise problem(f"{text!r} is not an IPv4 subnet such as 172.20.20.0/24") from None
    if subnet.prefixlen > 29:
        raise problem(f"{text} is too small for a management network (use /29 or larger)")
    why = rules.subnet_problem(subnet)
    if why is not None:
        raise problem(why)
    return subnet


def _ipv4(value: Any) -> ipaddress.IPv4Address:
    text = _text(value)
    try:
        return ipaddress.IPv4Address(text)
    except ValueError:
        raise problem(f"{text!r} is not an IPv4 address") from None


def _bridge(name: str) -> str:
    if len(name) > IFNAME_MAX or not IFNAME_RE.match(name):
        raise problem(f"bridge name {name!r} must be 1-15 characters without '/', ':' or "
                      "spaces")
    return name


def _login(name: str) -> str:
    if not LOGIN_RE.match(name) or name == "root":
        raise problem(f"{name!r} is not a usable login name")
    return name


def _password(password: str) -> str:
    if not password or "\n" in password:
        raise problem("password must be non-empty and on one line")
    return password


def _daemon(daemon: str) -> str:
    if daemon not in FRR_DAEMONS + ALWAYS_ON_DAEMONS:
        raise problem(f"unknown FRR daemon {daemon!r} (expected one of "
                      f"{', '.join(FRR_DAEMONS)})")
    return daemon


def _bind(text: str) -> str:
    parts = text.split(":")
    if len(parts) not in (2, 3) or not parts[0] or not parts[1].startswith("/"):
        raise problem(f"bind {text!r} is not host-path:/container/path[:ro]")
    return text


def _brief_endpoint(text: str) -> str:
    if text.count(":") != 1:
        raise problem(f"endpoint {text!r} is not node:interface")
    return text


def _links(value: Any) -> Any:
    if value is None:
        return []
    if not isinstance(value, list):
        raise problem(f"expected a list of links, got {describe(value)}")
    return value


LINK_TYPES = ("veth", "dummy")


def _link_type(value: Any) -> Any:
    if value not in LINK_TYPES:
        raise problem(f"link type {value!r} is not supported by the namespace backend "
                      "(veth or dummy)")
    return value


def _two_endpoints(value: Any) -> Any:
    if not isinstance(value, list) or len(value) != 2:
        raise problem("a veth link has exactly two endpoints")
    return value


def _mtu(value: Any) -> Any:
    if isinstance(value, bool) or not isinstance(value, int) or not 68 <= value <= 65535:
        raise problem("mtu must be a whole number from 68 to 65535")
    return value


def _some_nodes(nodes: dict[str, Any]) -> dict[str, Any]:
    if not nodes:
        raise problem("the topology has no nodes")
    return nodes


# Optional values are None only when absent: a key written without a value is an error
# (the validators run before pydantic's own None check), except for mappings, where it
# means an empty one.
Key = Annotated[str, BeforeValidator(str)]  # YAML reads a name such as 1 as a number
Str = Annotated[str, BeforeValidator(_text)]  # numbers are taken as their text, as before
Text = Annotated[str | None, BeforeValidator(_text)]
TextList = Annotated[list[Str] | None, BeforeValidator(_text_list)]
TextMap = Annotated[dict[Key, Str] | None, BeforeValidator(_mapping)]
ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _env_name(name: str) -> str:
    if not ENV_NAME_RE.match(name):
        raise problem(f"environment variable name {name!r} is not a name such as HTTP_PROXY "
                      "(letters, digits and _, not starting with a digit)")
    return name


EnvMap = Annotated[dict[Annotated[Key, AfterValidator(_env_name)], Str] | None,
                   BeforeValidator(_mapping)]
IPv4 = Annotated[ipaddress.IPv4Address | None, BeforeValidator(_ipv4)]


# ---- mappings -----------------------------------------------------------------------------


class _Model(Strict):
    not_a_mapping = "expected a mapping, got {got}"
    null_is_empty = True


class _Open(_Model):
    """A mapping whose other keys (containerlab's, unused here) are ignored."""

    model_config = ConfigDict(extra="ignore", frozen=True)
    unknown_field = None


class Mgmt(_Open):
    """`mgmt`: the management network (containerlab's IPv6 and other keys are ignored)."""

    ipv4_subnet: Annotated[ipaddress.IPv4Network | None, BeforeValidator(_subnet)] = Field(
        None, alias="ipv4-subnet")
    ipv4_gw: IPv4 = Field(None, alias="ipv4-gw")
    bridge: Annotated[Text, AfterValidator(_bridge)] = None


class Credentials(_Open):
    username: Annotated[Text, AfterValidator(_login)] = None
    password: Annotated[Text, AfterValidator(_password)] = None


class FrrExtras(_Open):
    daemons: Annotated[list[Annotated[Str, AfterValidator(_daemon)]] | None,
                       BeforeValidator(_text_list)] = None


class Extras(_Open):
    frr: FrrExtras = Field(default_factory=FrrExtras)


class NodeFields(_Model):
    """One level of node settings: topology.defaults, a kind's, a group's or a node's own."""

    model_config = ConfigDict(extra="allow", frozen=True)  # only the tolerated keys get in
    unknown_field = "unknown node field {key}"
    tolerated = IGNORED_NODE_FIELDS

    kind: Text = None
    image: Text = None
    group: Text = None
    startup_config: Text = Field(None, alias="startup-config")
    binds: Annotated[list[Annotated[Str, AfterValidator(_bind)]] | None,
                     BeforeValidator(_text_list)] = None
    exec: TextList = None
    labels: TextMap = None
    mgmt_ipv4: IPv4 = Field(None, alias="mgmt-ipv4")
    credentials: Credentials | None = None  # None (or no value): the kind's login
    extras: Extras | None = None
    env: EnvMap = None
    sysctls: TextMap = None


class EndpointRef(_Open):
    """An endpoint in the extended form: {node: r1, interface: eth1}."""

    missing: ClassVar[Mapping[str, str]] = {"node": _NOTHING, "interface": _NOTHING}
    node: Str
    interface: Str


def _endpoint_form(value: Any) -> str:
    return "extended" if isinstance(value, dict) else "brief"


Endpoint = Annotated[
    Annotated[Annotated[Str, AfterValidator(_brief_endpoint)], Tag("brief")]
    | Annotated[EndpointRef, Tag("extended")],
    Discriminator(_endpoint_form),
]


class LinkEntry(_Open):
    """A link: `endpoints: ["r1:eth1", "r2:eth1"]`, or extended with `type: veth`; or
    containerlab's `type: dummy` with one `endpoint`: an interface with no peer (a dummy
    interface, always up), such as a LAN port whose hosts are not in the lab."""

    type: Annotated[Any, AfterValidator(_link_type)] = "veth"
    endpoints: Annotated[list[Endpoint] | None, BeforeValidator(_two_endpoints)] = None
    endpoint: EndpointRef | None = None
    mtu: Annotated[int | None, BeforeValidator(_mtu)] = None

    @model_validator(mode="before")
    @classmethod
    def _shape(cls, data: Any) -> Any:
        """A veth link has `endpoints`, a dummy link one `endpoint`: the missing or
        misplaced key is named."""
        if not isinstance(data, dict):
            return data
        dummy = data.get("type") == "dummy"
        need, other = ("endpoint", "endpoints") if dummy else ("endpoints", "endpoint")
        errors = []
        if other in data:
            errors.append(InitErrorDetails(type=problem(
                f"a {'dummy' if dummy else 'veth'} link has no `{other}` (did you mean "
                f"`{need}`?)", "unknown_field"), loc=(other,), input=data))
        elif need not in data:
            errors.append(InitErrorDetails(type=problem(
                "a dummy link has one `endpoint` ({node, interface})" if dummy
                else "a veth link has exactly two endpoints", "missing_key"),
                loc=(need,), input=data))
        if errors:
            raise ValidationError.from_exception_data(cls.__name__, errors)
        return data


class TopologySection(_Model):
    """`topology`: node settings at four levels, the nodes, and the links between them."""

    unknown_field = "unknown field {key} (expected nodes, links, defaults, kinds, groups)"
    missing: ClassVar[Mapping[str, str]] = {"nodes": "the topology has no nodes"}

    defaults: NodeFields = Field(default_factory=NodeFields)
    kinds: Annotated[dict[Key, NodeFields], BeforeValidator(_mapping)] = Field(
        default_factory=dict)
    groups: Annotated[dict[Key, NodeFields], BeforeValidator(_mapping)] = Field(
        default_factory=dict)
    nodes: Annotated[dict[Annotated[Key, AfterValidator(_node_name)], NodeFields],
                     BeforeValidator(_mapping), AfterValidator(_some_nodes)]
    links: Annotated[list[LinkEntry], BeforeValidator(_links)] = Field(default_factory=list)


class TopologyFile(_Model):
    """A containerlab topology file, as far as the namespace backend reads it."""

    unknown_field = "unknown top-level field {key} (expected name, prefix, mgmt, topology)"
    missing: ClassVar[Mapping[str, str]] = {
        "name": "missing `name` (the lab's name)",
        "topology": "missing `topology` (with `nodes` and `links`)",
    }

    name: Annotated[Str, AfterValidator(_lab_name)]
    # `prefix:` with no value is containerlab's way to ask for bare node names (validators
    # before: the last one given runs first).
    prefix: Annotated[Str, BeforeValidator(lambda v: "" if v is None else v),
                      AfterValidator(_prefix)] = "clab"
    mgmt: Mgmt = Field(default_factory=Mgmt)
    topology: TopologySection
    settings: Any = None  # containerlab's own settings and debug: nothing for us
    debug: Any = None
