"""Which inventory hosts a job targets, and platform names as jobs and inventories write
them (runner's, or napalm's, netmiko's, scrapli's or ansible's, stored as runner's)."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from runner.inventory import platforms


def _platform_names(schema: dict[str, Any]) -> None:
    schema["enum"] = platforms.accepted_names()


def _canonical_platform(value: str) -> str:
    """runner's name for a platform named as runner, napalm, netmiko, scrapli or ansible
    name it (stored and shown so), else a ValueError saying why."""
    found = platforms.canonical(value)
    if found is None:
        raise ValueError(platforms.unknown(value))
    return found


# A platform as a job names it: runner's name or another library's, stored as runner's.
PlatformName = Annotated[str, AfterValidator(_canonical_platform),
                         Field(json_schema_extra=_platform_names)]


class Targets(BaseModel):
    """Which inventory hosts: (hosts + members of groups, or all) narrowed by the rest."""

    # defer_build: validators built on first use (see runner.job.spec._Model)
    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)

    hosts: list[str] = Field(default_factory=list, description="Host names.")
    groups: list[str] = Field(default_factory=list, description="Members of these groups.")
    platforms: list[PlatformName] = Field(
        default_factory=list, description="Only these platforms (runner's names or napalm's, "
                                          "netmiko's, scrapli's or ansible's).")
    where: dict[str, str | int | bool | list[str | int | bool]] = Field(
        default_factory=dict,
        description="Inventory data filters, key (dotted for nested data) -> value or list of "
                    "accepted values.")
    exclude: list[str] = Field(default_factory=list, description="Host names to leave out.")
