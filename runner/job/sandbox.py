"""The Jinja2 sandbox templates and `expect:` conditions run in, bounded in loops and memory.

Jinja's own sandbox stops attribute escapes, not allocation: `'a'.zfill(3e9)`, a string
doubled in a loop, `'%0999999999d' % 1`, `[big] * 1000 | tojson`. Here every operation
that builds a value (binary operators, `~`, method calls, filters, `{% set %}` blocks,
output) goes through a budget set around each render:

- one value may weigh at most `max_value` (about bytes: characters of strings, 8 per item
  of a sequence plus its items' weight, a number's bytes), checked *before* the operations
  that could allocate past it in one step (padding, repetition, replace, join, format
  widths, container-to-text conversions) and after every other;
- everything a render builds together may weigh at most `max_total`: each value an
  operation returns (or adds to a list or dict) is charged to it;
- loops may run at most MAX_ITERATIONS times (range), powers stay small.

Past a bound the render fails with SecurityError (RenderFailed / CheckFailed for the
device): memory stays bounded whatever the template says, in every process that renders
(`runner run`, `serve`, `web`, `worker`).
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Iterable
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, TypeVar

from jinja2 import nodes
from jinja2.compiler import CodeGenerator, Frame
from jinja2.exceptions import SecurityError
from jinja2.sandbox import SandboxedEnvironment, safe_range
from jinja2.utils import generate_lorem_ipsum

MAX_ITERATIONS = 1_000_000  # range() items one render may produce, nested loops included
MAX_VALUE = 1024 * 1024  # weight of one value (a job's limits.template_value)
MAX_TOTAL = 64 * 1024 * 1024  # weight of all a render builds (limits.template_memory)
MAX_POWER = 100
T = TypeVar("T")


@dataclass
class Budget:
    """What is left of one render's bounds."""

    iterations: int
    max_value: int
    total: int


_BUDGET: ContextVar[Budget | None] = ContextVar("runner_jinja_budget", default=None)


def bounded(render: Callable[[], T], max_value: int = MAX_VALUE,
            max_total: int = MAX_TOTAL) -> T:
    """Run one render (or expression) with a fresh budget."""
    token = _BUDGET.set(Budget(MAX_ITERATIONS, max_value, max_total))
    try:
        return render()
    finally:
        _BUDGET.reset(token)


def _budget() -> Budget:
    # Outside bounded() (a template compiled for validation, say): the defaults.
    return _BUDGET.get() or Budget(MAX_ITERATIONS, MAX_VALUE, MAX_TOTAL)


def weight(value: Any, cap: int) -> int:
    """About the bytes `value` holds, counted up to just past `cap` (so a huge sequence
    costs no more than `cap` steps to weigh)."""
    if isinstance(value, str | bytes | bytearray):
        return len(value)
    if isinstance(value, bool) or value is None:
        return 0
    if isinstance(value, int):
        return value.bit_length() // 8
    if isinstance(value, dict):
        items: Iterable[Any] = itertools.chain.from_iterable(value.items())
    elif isinstance(value, list | tuple | set | frozenset):
        items = value
    else:
        return 0
    total = 0
    for item in items:
        total += 8 + weight(item, cap - total)
        if total > cap:
            return total
    return total


def _refuse(what: str, size: int | None = None) -> SecurityError:
    limit = _budget().max_value
    shown = f" (about {size:,} bytes)" if size is not None else ""
    return SecurityError(f"the template builds {what}{shown}, more than the {limit:,} bytes "
                         "one value may hold (limits.template_value)")


def allow(size: int, what: str = "a value") -> None:
    """Before an operation that would build about `size` bytes at once."""
    if size > _budget().max_value:
        raise _refuse(what, size)


def charge(value: T, what: str = "a value") -> T:
    """After an operation: the value it built counts against the render's bounds."""
    budget = _budget()
    size = weight(value, budget.max_value)
    if size > budget.max_value:
        raise _refuse(what, size)
    budget.total -= size
    if budget.total < 0:
        raise SecurityError("the template builds more than the bytes one render may build "
                            "(limits.template_memory)")
    return value


def _bounded_range(*args: int) -> range:
    items = safe_range(*args)  # Jinja's own cap on one range
    budget = _budget()
    budget.iterations -= len(items)
    if budget.iterations < 0:
        raise SecurityError(f"the template loops more than {MAX_ITERATIONS:,} times")
    return items


def _lipsum(n: int = 5, html: bool = True, min: int = 20, max: int = 100) -> str:
    allow(n * max * 12, "lorem ipsum")
    return charge(generate_lorem_ipsum(n, html, min, max))


# printf widths and precisions (`%0999999999d`, `%*d`), and str.format's (`{:>999999999}`,
# `{:{}}`): the sizes they ask for, checked before formatting.
_PRINTF = re.compile(r"%(?:\([^)]*\))?[-+ #0]*(\*|\d+)?(?:\.(\*|\d+))?[hlL]?[a-zA-Z%]")
_FORMAT_SPEC = re.compile(r"\{[^{}]*?:([^{}]*(?:\{[^{}]*\}[^{}]*)*)\}")


def _format_sizes(fmt: str, printf: bool) -> None:
    if printf:
        specs = [n for m in _PRINTF.finditer(fmt) for n in m.groups() if n]
    else:
        specs = []
        for m in _FORMAT_SPEC.finditer(fmt):
            if "{" in m.group(1):
                raise SecurityError("the template's format takes a width from its arguments")
            specs += re.findall(r"\d+", m.group(1))
    for spec in specs:
        if spec == "*":
            raise SecurityError("the template's format takes a width from its arguments")
        allow(int(spec) + len(fmt), "formatted text")


def _joined(sep: str, iterable: Any) -> list[Any]:
    """The items of a join, materialized within the bound; their joined size checked."""
    budget = _budget()
    items = list(itertools.islice(iterable, budget.max_value + 1))
    size = len(sep) * max(len(items) - 1, 0)
    for item in items:
        size += weight(item, budget.max_value) if isinstance(item, str) else 8
        if size > budget.max_value:
            raise _refuse("joined text", size)
    return items


def _replaced(text: str, old: str, new: str, count: int) -> None:
    occurrences = text.count(old) if old else len(text) + 1
    if count >= 0:
        occurrences = min(occurrences, count)
    allow(len(text) + occurrences * max(len(new) - len(old), 0), "replaced text")


def _str_method(obj: str, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]
                ) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """Checks before a str method that could allocate past the bound in one call."""
    if name in ("zfill", "ljust", "rjust", "center") and args and isinstance(args[0], int):
        allow(args[0], "padded text")
    elif name == "expandtabs":
        size = args[0] if args else kwargs.get("tabsize", 8)
        allow(len(obj) * max(int(size), 1), "expanded text")
    elif name == "replace" and len(args) >= 2:
        _replaced(obj, str(args[0]), str(args[1]), int(args[2]) if len(args) > 2 else -1)
    elif name == "join" and args:
        args = (_joined(obj, args[0]), *args[1:])
    return args, kwargs


_MUTATORS = frozenset({"append", "extend", "insert", "update", "setdefault", "add"})


class _BoundedCodeGenerator(CodeGenerator):
    """`a ~ b` through the environment's checked concatenation, not Jinja's str_join."""

    def visit_Concat(self, node: nodes.Concat, frame: Frame) -> None:
        self.write("environment.checked_concat((")
        for arg in node.nodes:
            self.visit(arg, frame)
            self.write(", ")
        self.write("))")


class BoundedSandbox(SandboxedEnvironment):
    """Jinja's sandbox (no attribute escapes), plus the bounds above."""

    intercepted_binops = frozenset({"+", "*", "%", "**", "//"})
    code_generator_class = _BoundedCodeGenerator

    def __init__(self, **options: Any) -> None:
        options.setdefault("finalize", _output)
        super().__init__(**options)
        self.globals["range"] = _bounded_range
        self.globals["lipsum"] = _lipsum
        self.filters = {name: _guarded(name, f) for name, f in self.filters.items()}
        # `{% set %}` blocks, macros, `{% filter %}`: their captured output, within bounds
        self.concat = _bounded_concat  # type: ignore[method-assign]

    @staticmethod
    def checked_concat(parts: tuple[Any, ...]) -> str:
        budget = _budget()
        allow(sum(weight(p, budget.max_value) for p in parts), "concatenated text")
        return charge("".join(map(str, parts)), "concatenated text")

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        """str.format / format_map (Jinja's sandboxed formatter), its widths checked."""
        wrapped = super().wrap_str_format(value)
        if wrapped is None:
            return None
        text = value.__self__
        format_call: Callable[..., str] = wrapped

        def checked(*args: Any, **kwargs: Any) -> str:
            _format_sizes(str(text), printf=False)
            return format_call(*args, **kwargs)
        return checked

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        cap = _budget().max_value
        if operator == "+" and isinstance(left, str | list | tuple) \
                and isinstance(right, str | list | tuple):
            allow(weight(left, cap) + weight(right, cap), "joined values")
        elif operator == "*":
            for seq, count in ((left, right), (right, left)):
                if isinstance(seq, str | list | tuple) and isinstance(count, int):
                    allow(weight(seq, cap) * max(count, 0), "a repeated sequence")
            if isinstance(left, int) and isinstance(right, int):
                allow((abs(left).bit_length() + abs(right).bit_length()) // 8, "a number")
        elif operator == "%" and isinstance(left, str):
            _format_sizes(left, printf=True)
        elif operator == "**" and isinstance(right, int | float) \
                and isinstance(left, int | float) and abs(left) > 1:
            if abs(right) > MAX_POWER:
                raise SecurityError(f"the template raises to a power above {MAX_POWER}")
            if isinstance(left, int) and isinstance(right, int):
                allow(abs(left).bit_length() * max(right, 0) // 8, "a number")
        return charge(super().call_binop(context, operator, left, right))

    def call(__self, __context: Any, __obj: Any,
             *args: Any, **kwargs: Any) -> Any:
        owner = getattr(__obj, "__self__", None)
        name = getattr(__obj, "__name__", "")
        if isinstance(owner, str):
            args, kwargs = _str_method(owner, name, args, kwargs)
        mutates = isinstance(owner, list | dict | set) and name in _MUTATORS
        if mutates:
            charge(list(args) + list(kwargs.values()), "what a list or dict is given")
        result = SandboxedEnvironment.call(__self, __context, __obj, *args, **kwargs)
        return result if mutates else charge(result)


def _output(value: Any) -> Any:
    """Each `{{ ... }}`: its text, within bounds, before it joins the output."""
    if isinstance(value, str):
        return charge(value, "output")
    allow(weight(value, _budget().max_value), "output")
    return value


def _bounded_concat(parts: Iterable[str]) -> str:
    budget = _budget()
    pieces, size = [], 0
    for part in parts:
        size += len(part)
        if size > budget.max_value:
            raise _refuse("captured text", size)
        pieces.append(part)
    return charge("".join(pieces), "captured text")


# Filters that could allocate past the bound in one call, and what to check first.
def _pre_filter(name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, ...]:
    cap = _budget().max_value
    value = args[0] if args else None
    rest = args[1:]
    if name == "center":
        width = rest[0] if rest else kwargs.get("width", 80)
        if isinstance(width, int):
            allow(width, "centred text")
    elif name == "indent" and isinstance(value, str):
        width = rest[0] if rest else kwargs.get("width", 4)
        per_line = width if isinstance(width, int) else len(str(width))
        allow(len(value) + (value.count("\n") + 1) * max(per_line, 0), "indented text")
    elif name == "wordwrap" and isinstance(value, str):
        wrap = kwargs.get("wrapstring") or (rest[2] if len(rest) > 2 else None) or "\n"
        allow(len(value) * (1 + len(str(wrap))), "wrapped text")
    elif name in ("batch", "slice"):
        count = rest[0] if rest else kwargs.get("linecount", kwargs.get("slices", 1))
        if isinstance(count, int):
            allow(count * 8, f"{name} groups")
    elif name == "format" and isinstance(value, str):
        _format_sizes(value, printf=True)
    elif name == "replace" and isinstance(value, str) and len(rest) >= 2:
        count = rest[2] if len(rest) > 2 else kwargs.get("count")
        _replaced(value, str(rest[0]), str(rest[1]), count if isinstance(count, int) else -1)
    elif name == "join" and value is not None and not isinstance(value, str):
        sep = rest[0] if rest else kwargs.get("d", "")
        args = (_joined(str(sep), value), *rest)
    elif name in ("tojson", "pprint", "string", "urlencode", "xmlattr", "list", "dictsort",
                  "items", "unique", "sort", "map", "groupby"):
        allow(weight(value, cap), f"the {name} of a value")
    return args


def _guarded(name: str, function: Callable[..., Any]) -> Callable[..., Any]:
    def guarded(*args: Any, **kwargs: Any) -> Any:
        # pass_context / pass_environment filters get that first: the value comes after
        lead = 1 if getattr(function, "jinja_pass_arg", None) is not None else 0
        checked = _pre_filter(name, args[lead:], kwargs)
        return charge(function(*args[:lead], *checked, **kwargs), f"the {name} filter's "
                      "result")
    if hasattr(function, "jinja_pass_arg"):
        guarded.jinja_pass_arg = function.jinja_pass_arg  # type: ignore[attr-defined]
    guarded.__name__ = getattr(function, "__name__", name)
    return guarded


def lines_of(generated: Iterable[str], max_rendered: int) -> str | None:
    """A template's output, joined as it is generated; None past `max_rendered`
    characters (static text repeated in a loop is no value the budget sees)."""
    pieces, size = [], 0
    for piece in generated:
        size += len(piece)
        if size > max_rendered:
            return None
        pieces.append(piece)
    return "".join(pieces)
