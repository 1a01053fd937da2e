"""`expect:` checks: Jinja2 expressions in the templates' sandbox, evaluated on a command's
output; a false one fails the device (CheckFailed), naming itself and the values it saw."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from functools import cache, partial
from typing import Any

import jinja2
import jinja2.meta
from jinja2 import nodes
from jinja2.environment import TemplateExpression
from jinja2.sandbox import SandboxedEnvironment

from runner.errors import CheckFailed
from runner.inventory.secretref import SecretValue
from runner.job.render import stand_in
from runner.job.sandbox import MAX_VALUE, BoundedSandbox, bounded

# What a condition may name: the command's text and parsed result, the host, job vars.
NAMES = ("output", "parsed", "host", "vars")
_SHOWN = 200  # characters of a value shown when a check fails
_TEST_ARGUMENT = {"select": 0, "reject": 0, "selectattr": 1, "rejectattr": 1}
_OPS = {"eq": "==", "ne": "!=", "gt": ">", "gteq": ">=", "lt": "<", "lteq": "<=",
        "in": "in", "notin": "not in"}


@cache
def sandbox() -> SandboxedEnvironment:
    """The same sandbox templates render in (StrictUndefined: a missing key is an error,
    not a silent false), with the regex tests Ansible users reach for: `match` (from the
    start) and `search` (anywhere), e.g. `selectattr('state', 'match', 'Full')`."""
    env = BoundedSandbox(undefined=jinja2.StrictUndefined, autoescape=False)
    env.tests["match"] = _regex(re.match)
    env.tests["search"] = _regex(re.search)
    return env


def _regex(how: Callable[[str, str], re.Match[str] | None]) -> Callable[[Any, str], bool]:
    def test(value: Any, pattern: str) -> bool:
        return how(pattern, str(value)) is not None
    return test


def problem(source: str) -> str | None:
    """Why `source` cannot be a condition (for validating job files), or None."""
    env = sandbox()
    try:
        _parse(env, source)
        unknown = sorted(jinja2.meta.find_undeclared_variables(env.parse(
            "{{ " + source + " }}")) - set(NAMES) - set(env.globals))
    except jinja2.TemplateSyntaxError as exc:
        return f"not a Jinja2 expression: {exc.message}"
    expr = _parse(env, source)
    for node in expr.find_all((nodes.Filter, nodes.Test)):
        known = env.filters if isinstance(node, nodes.Filter) else env.tests
        if node.name not in known:
            kind = "filter" if isinstance(node, nodes.Filter) else "test"
            return f"no Jinja2 {kind} named {node.name!r}"
        # select/reject name a test by string: a misspelt one only fails on a device
        at = _TEST_ARGUMENT.get(node.name) if isinstance(node, nodes.Filter) else None
        named = node.args[at] if at is not None and len(node.args) > at else None
        if isinstance(named, nodes.Const) and named.value not in env.tests:
            return (f"no Jinja2 test named {named.value!r} (in {node.name}; tests are e.g. "
                    "eq, ne, in, defined, none, string, number)")
    if unknown:
        return (f"unknown name {unknown[0]!r} (a condition may use {', '.join(NAMES)} and "
                "Jinja2's filters and tests)")
    return None


def _parse(env: SandboxedEnvironment, source: str) -> nodes.Expr:
    parser = env._parse("{{ " + source + " }}", None, None)
    body = parser.body
    if len(body) != 1 or not isinstance(body[0], nodes.Output) or len(body[0].nodes) != 1:
        raise jinja2.TemplateSyntaxError("expected one expression", 1)
    expr = body[0].nodes[0]
    assert isinstance(expr, nodes.Expr)
    return expr


def _compile(env: SandboxedEnvironment, expr: nodes.Expr) -> TemplateExpression:
    """An expression node as a callable, as Environment.compile_expression builds one."""
    body = [nodes.Assign(nodes.Name("result", "store"), expr, lineno=1)]
    return TemplateExpression(env.from_string(nodes.Template(body, lineno=1)), False)


@cache
def _condition(source: str) -> tuple[nodes.Expr, TemplateExpression]:
    env = sandbox()
    expr = _parse(env, source)
    return expr, _compile(env, expr)


def _shown(value: Any) -> str:
    try:
        text = json.dumps(value, default=str)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= _SHOWN else text[:_SHOWN] + f"... ({len(text)} characters)"


def _saw(expr: nodes.Expr, context: dict[str, Any]) -> list[str]:
    """The values a false condition was made of: each comparison with its operands."""
    env = sandbox()
    if isinstance(expr, nodes.Not):
        return _saw(expr.node, context)
    if isinstance(expr, nodes.And | nodes.Or):
        parts = [expr.left, expr.right]
        false = [p for p in parts if not _compile(env, p)(**context)]
        return [s for p in (false or parts) for s in _saw(p, context)]
    if isinstance(expr, nodes.Compare):
        values = [_compile(env, expr.expr)(**context),
                  *(_compile(env, op.expr)(**context) for op in expr.ops)]
        text = _shown(values[0])
        for op, value in zip(expr.ops, values[1:], strict=True):
            text += f" {_OPS.get(op.op, op.op)} {_shown(value)}"
        return [text]
    return [_shown(_compile(env, expr)(**context))]


def _without_secrets(seen: list[str], expr: nodes.Expr, context: dict[str, Any],
                     size: int) -> list[str]:
    """What a false condition saw, each value that depends on a secret variable (the value
    itself, or what a filter made of it) replaced by a note: found as templates' are, by
    looking again with stand-ins for the secrets."""
    plain = context.get("vars")
    if not isinstance(plain, dict) or not any(isinstance(v, SecretValue)
                                              for v in plain.values()):
        return seen
    shown = []
    for shift in (1, 2):
        stand_ins = {k: stand_in(v, shift) if isinstance(v, SecretValue) else v
                     for k, v in plain.items()}
        other = {**context, "vars": stand_ins}
        try:
            shown.append(bounded(partial(_saw, expr, other), size, 4 * size))
        except Exception:
            return ["(values not shown: the condition uses a secret)"]
    if any(len(other) != len(seen) for other in shown):
        return ["(values not shown: the condition uses a secret)"]
    return [text if all(o[i] == text for o in shown) else "(a value made of a secret)"
            for i, text in enumerate(seen)]


def check(source: str, context: dict[str, Any]) -> None:
    """Evaluate one condition; CheckFailed when it is false or cannot be evaluated."""
    # Bounds in proportion to what the condition is given (a command's answer may be
    # megabytes): values up to four times the answer, all values built up to four times that.
    size = max(MAX_VALUE, 4 * len(str(context.get("output", ""))))
    try:
        expr, compiled = _condition(source)
        if bounded(lambda: compiled(**context), size, 4 * size):
            return
        seen = bounded(lambda: _saw(expr, context), size, 4 * size)
        seen = _without_secrets(seen, expr, context, size)
    except CheckFailed:
        raise
    except jinja2.UndefinedError as exc:
        raise CheckFailed(f"check {source!r} could not be evaluated: {exc.message}") from exc
    except MemoryError:
        raise CheckFailed(f"check {source!r} could not be evaluated: out of memory") from None
    except Exception as exc:  # filters on this device's data: the device's failure
        raise CheckFailed(f"check {source!r} could not be evaluated: "
                          f"{type(exc).__name__}: {exc}"[:500]) from exc
    raise CheckFailed(f"check {source!r} is false: saw {'; '.join(seen)}")
