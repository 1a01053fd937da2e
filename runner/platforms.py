"""Platform knowledge (failure indicators, config commands, volatile and secret lines) loaded
from platforms.yaml, so adding a platform is a data change."""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from importlib import resources

import yaml


@dataclass(frozen=True)
class Platform:
    name: str
    netmiko: str
    scrapli: str
    ntc_templates: str
    running_config: str
    save_config: str
    failure_indicators: tuple[str, ...]
    volatile: tuple[re.Pattern[str], ...]
    secrets: tuple[re.Pattern[str], ...]

    def rejected(self, output: str) -> str | None:
        """The failure indicator line in `output`, if the device rejected the input."""
        for line in output.splitlines():
            stripped = line.strip()
            for indicator in self.failure_indicators:
                if stripped.startswith(indicator):
                    return stripped
        return None


@cache
def _table() -> dict[str, Platform]:
    text = resources.files("runner").joinpath("platforms.yaml").read_text(encoding="utf-8")
    raw = yaml.safe_load(text)
    table = {}
    for name, spec in raw.items():
        table[name] = Platform(
            name=name, netmiko=spec["netmiko"], scrapli=spec["scrapli"],
            ntc_templates=spec["ntc_templates"], running_config=spec["running_config"],
            save_config=spec["save_config"],
            failure_indicators=tuple(spec["failure_indicators"]),
            volatile=tuple(re.compile(p, re.M) for p in spec["volatile"]),
            secrets=tuple(re.compile(p, re.M) for p in spec["secrets"]),
        )
    return table


def names() -> list[str]:
    return sorted(_table())


def get(name: str) -> Platform | None:
    return _table().get(name)
