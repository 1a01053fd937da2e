"""Compliance of one device with its intended config, feature by feature: the lines
missing and extra in each feature's sections (hier_config's trees, section aware), and the
commands that remediate it (hier_config's remediation: adds, `no` lines, exits and order
as the platform needs)."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import Any

from hier_config import HConfig, HConfigChild, MatchRule
from hier_config.platforms.driver_base import HConfigDriverBase

from runner.inventory.platforms import Platform
from runner.job import configtree
from runner.job.spec import ComplianceSpec, Feature


@dataclass
class FeatureResult:
    """One feature of one device: compliant or not, and why, and how to fix it."""

    compliant: bool
    # intended lines the device lacks, and its lines not intended, each with the lines of
    # the sections it is in (context); the counts are of the lines themselves
    missing: list[str] = field(default_factory=list)
    extra: list[str] = field(default_factory=list)
    missing_count: int = 0
    extra_count: int = 0
    remediation: list[str] = field(default_factory=list)  # the commands that fix it
    order_differs: bool = False  # ordered: the same lines in another order

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _ignored(text: str, patterns: list[re.Pattern[str]]) -> bool:
    return any(p.search(text) for p in patterns)


def _copy(source: HConfigChild, into: HConfig | HConfigChild,
          ignore: list[re.Pattern[str]]) -> None:
    if _ignored(source.text, ignore):
        return
    child = into.add_child(source.text, check_if_present=False)
    for sub in source.children:
        _copy(sub, child, ignore)


def part(config: HConfig, feature: Feature, ignore: list[re.Pattern[str]]) -> HConfig:
    """The feature's part of a config: its top-level lines and sections, ignored lines left
    out."""
    out = HConfig(config.driver)
    for child in config.children:
        if matches(child.text, feature):
            _copy(child, out, ignore)
    return out


def matches(line: str, feature: Feature) -> bool:
    """Whether a top-level line is the feature's: it is one of `match`, or one of them
    followed by more words (`interface eth1` is not `interface eth10`'s)."""
    return any(line == m or line.startswith(m + " ") for m in feature.match)


def _only_in(a: HConfig | HConfigChild, b: HConfig | HConfigChild,
             out: HConfig | HConfigChild) -> None:
    """The lines of `a` that `b` lacks, with their sections (parents kept as context)."""
    for child in a.children:
        other = b.children.get(child.text)
        if other is None:
            out.add_deep_copy_of(child)
            continue
        inner = out.instantiate_child(child.text)
        _only_in(child, other, inner)
        if inner.children:
            out.children.append(inner)


def only_in(a: HConfig, b: HConfig) -> tuple[list[str], int]:
    """The lines of `a` that `b` lacks, with their sections' headers as context; and how
    many lines that is, the context aside."""
    out = HConfig(a.driver)
    _only_in(a, b, out)
    own = sum(1 for c in out.all_children() if b.get_child_deep(
        tuple(MatchRule(equals=t) for t in c.path())) is None)
    return [line.rstrip() for line in out.lines()], own


def _order(config: HConfig) -> list[tuple[str, ...]]:
    return [tuple(c.path()) for c in config.all_children()]


def _rewrite(actual: HConfig, intended: HConfig) -> list[str]:
    """An ordered feature in another order: its lines removed, then set in order."""
    negation = actual.driver.negation_prefix
    out = [negation + c.text for c in actual.children]
    return out + configtree.commands(intended)


def check_feature(driver: HConfigDriverBase, intended: HConfig, actual: HConfig,
                  feature: Feature, ignore: list[re.Pattern[str]]) -> FeatureResult:
    patterns = ignore + [re.compile(p) for p in feature.ignore]
    want, have = part(intended, feature, patterns), part(actual, feature, patterns)
    (missing, missing_count), (extra, extra_count) = only_in(want, have), only_in(have, want)
    order_differs = feature.ordered and not missing and not extra \
        and _order(want) != _order(have)
    if order_differs:
        fix = _rewrite(have, want)
    elif missing or extra:
        fix = configtree.commands(have.config_to_get_to(want).set_order_weight())
    else:
        fix = []
    return FeatureResult(not (missing or extra or order_differs), missing, extra,
                         missing_count, extra_count, fix, order_differs)


def check(platform: Platform, spec: ComplianceSpec, intended_lines: list[str],
          actual: str, only: list[str] | None = None) -> dict[str, FeatureResult]:
    """Each feature (of `only`, when given) of the device's `actual` config against the
    rendered intended config."""
    driver = configtree.driver_for(platform, actual)
    want = configtree.sent(driver, intended_lines, platform, "the intended config")
    have = configtree.parse(driver, actual)
    ignore = [re.compile(p) for p in spec.ignore]
    return {f.name: check_feature(driver, want, have, f, ignore) for f in spec.features
            if only is None or f.name in only}


def remediation(results: dict[str, FeatureResult]) -> list[str]:
    """The commands that make every non-compliant feature compliant, feature by feature."""
    return [line for result in results.values() if not result.compliant
            for line in result.remediation]


def report(results: dict[str, FeatureResult]) -> str:
    """A compliance check as people read it: per feature, compliant or its missing and
    extra lines (with their sections) and the remediation."""
    out = []
    for name, result in results.items():
        if result.compliant:
            out.append(f"{name}: compliant")
            continue
        why = "lines in another order" if result.order_differs else \
            f"{result.missing_count} missing, {result.extra_count} extra"
        out.append(f"{name}: NOT compliant ({why})")
        out += [f"  missing  {line}" for line in result.missing]
        out += [f"  extra    {line}" for line in result.extra]
        if result.remediation:
            out.append("  remediation:")
            out += [f"    {line}" for line in result.remediation]
    return "\n".join(out) + "\n"
