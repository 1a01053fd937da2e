"""The inventory files' structure (Nornir SimpleInventory's hosts, groups and defaults, and
containerlab's flat file) as pydantic models, and their JSON Schemas."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, ConfigDict, Discriminator, Field, RootModel, Tag

from runner.inventory.secretref import SecretRefSpec
from runner.source.validation import Strict, problem

# Nornir's SimpleInventory semantics: a field written without a value (`port:`) is unset
# there and inherits from the host's groups, then the defaults.


def _port(value: Any) -> Any:
    if value is None:
        return None  # unset here: inherited
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value < 65536:
        raise problem("expected a TCP port number")
    return value


def _group_names(value: Any) -> Any:
    if value is None:
        return None  # `groups:` without a value: no groups, as Nornir reads it
    if not isinstance(value, list) or not all(isinstance(g, str) for g in value):
        raise problem("expected a list of group names")
    return value


def _mapping(value: Any) -> Any:
    if value is not None and not isinstance(value, dict):
        raise problem("expected a mapping")
    return value


def _credential_kind(value: Any) -> str:
    return REFERENCE if isinstance(value, dict | SecretRefSpec) else TEXT


# Branch labels of the credential union; pydantic puts them in error locations, and a
# label with "[" is not taken for a key of the file (runner.source.validation).
TEXT, REFERENCE = "[text]", "[reference]"
Port = Annotated[int | None, BeforeValidator(_port)]
Data = Annotated[dict[Any, Any] | None, BeforeValidator(_mapping)]
Name = Annotated[str, BeforeValidator(str)]  # YAML may read a name such as 7 as a number
# A password (username, enable secret, passphrase): written as text, or as a reference to
# an environment variable or file read where the session is opened.
Credential = Annotated[Annotated[str, Tag(TEXT)] | Annotated[SecretRefSpec, Tag(REFERENCE)],
                       Discriminator(_credential_kind)]


class _Entry(Strict):
    not_a_mapping = "expected a mapping"


class ExtrasEntry(_Entry):
    """`connection_options.<driver>.extras`: the driver's own options. Those runner or its
    drivers read are typed here (a secret of 12345 is refused where it is written, not
    found by a session); any other key goes to the driver as written."""

    model_config = ConfigDict(extra="allow", frozen=True)
    unknown_field = None

    secret: Credential | None = None
    passphrase: Credential | None = None
    private_key_passphrase: Credential | None = None
    auth_private_key_passphrase: Credential | None = None
    private_key_path: str | None = None
    key_file: str | None = None
    alt_key_file: str | None = None
    known_hosts: str | None = None
    known_hosts_path: str | None = None
    transport: Literal["bin", "ssh2"] | None = None
    strict_host_keys: bool | None = None
    enable_strict_key: bool | None = None
    ssh_strict: bool | None = None
    system_host_keys: bool | None = None
    alt_host_keys: bool | None = None
    use_keys: bool | None = None
    allow_agent: bool | None = None
    keepalive: Annotated[float, Field(ge=0)] | None = None


class ConnectionOptionsEntry(_Entry):
    """`connection_options.<driver>`: what the driver uses instead of the host's values."""

    model_config = ConfigDict(extra="forbid", frozen=True, title="connection options")
    hostname: str | None = None
    port: Port = None
    username: Credential | None = None
    password: Credential | None = None
    platform: str | None = None
    extras: ExtrasEntry | None = None


class DefaultsEntry(_Entry):
    """defaults.yaml: values every host has unless it or one of its groups sets them."""

    model_config = ConfigDict(extra="forbid", frozen=True, title="runner inventory defaults")
    unknown_field = "unknown field {key} (expected {expected})"

    hostname: str | None = None
    port: Port = None
    username: Credential | None = None
    password: Credential | None = None
    platform: str | None = Field(None, description=(
        "runner's platform name (platforms.yaml); other names are kept, and refused only "
        "for hosts a job targets"))
    data: Data = None
    connection_options: Annotated[dict[str, ConnectionOptionsEntry | None] | None,
                                  BeforeValidator(_mapping)] = None


class HostEntry(DefaultsEntry):
    """One host (hosts.yaml, containerlab's flat file) or group (groups.yaml)."""

    model_config = ConfigDict(extra="forbid", frozen=True, title="inventory entry")
    groups: Annotated[list[str] | None, BeforeValidator(_group_names)] = None


class EntriesFile(RootModel):  # type: ignore[type-arg]  # its type: `root` below
    """hosts.yaml, groups.yaml or containerlab's nornir-simple-inventory.yml: name -> entry."""

    # defer_build: validators built on first use (see runner.job.spec._Model). `root`
    # annotated rather than RootModel[...]: that generic class would be made, and its
    # validator built, at import
    model_config = ConfigDict(title="runner inventory hosts or groups", defer_build=True)
    root: dict[Name, HostEntry | None]


def inventory_schema(kind: Literal["hosts", "defaults"]) -> dict[str, Any]:
    """JSON Schema of hosts.yaml and groups.yaml (and containerlab's flat file), or of
    defaults.yaml."""
    model = EntriesFile if kind == "hosts" else DefaultsEntry
    schema = model.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    return schema
