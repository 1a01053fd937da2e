"""YAML loading that remembers the line of every key and item, for errors that name lines."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from runner.errors import InputError


class LineDict(dict[Any, Any]):
    """A mapping from YAML that knows its own line and the line of each key."""

    line: int = 0
    lines: dict[Any, int]

    def line_of(self, key: Any) -> int:
        return self.lines.get(key, self.line)


class LineList(list[Any]):
    """A sequence from YAML that knows its own line and the line of each item."""

    line: int = 0
    lines: list[int]

    def line_of(self, index: int) -> int:
        return self.lines[index] if 0 <= index < len(self.lines) else self.line


def line_of(container: Any, key: Any = None) -> int | None:
    """Line of `key` in `container` (or of the container itself), if it came from YAML."""
    if isinstance(container, LineDict):
        return container.line if key is None else container.line_of(key)
    if isinstance(container, LineList):
        return container.line if key is None else container.line_of(key)
    return None


_Base = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _Loader(_Base):  # type: ignore[misc,valid-type]
    """SafeLoader that builds LineDict/LineList and rejects duplicate keys."""

    source: Path
    error_class: type[InputError]


def _construct_mapping(loader: _Loader, node: yaml.MappingNode) -> LineDict:
    loader.flatten_mapping(node)
    result = LineDict()
    result.line = node.start_mark.line + 1
    result.lines = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        line = key_node.start_mark.line + 1
        if key in result:
            raise loader.error_class(
                f"duplicate key {key!r} (first defined on line {result.lines[key]})",
                path=loader.source,
                line=line,
            )
        result[key] = loader.construct_object(value_node, deep=True)
        result.lines[key] = line
    return result


def _construct_sequence(loader: _Loader, node: yaml.SequenceNode) -> LineList:
    result = LineList(loader.construct_object(child, deep=True) for child in node.value)
    result.line = node.start_mark.line + 1
    result.lines = [child.start_mark.line + 1 for child in node.value]
    return result


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)
_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG, _construct_sequence)


def load_yaml(path: Path, error_class: type[InputError] = InputError) -> Any:
    """Parse one YAML file; syntax errors become an `error_class` naming file and line."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise error_class("file not found", path=path) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise error_class(f"cannot read file: {exc}", path=path) from None
    loader = _Loader(text)
    loader.source = path
    loader.error_class = error_class
    try:
        return loader.get_single_data()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        problem = exc.problem or str(exc)
        if exc.context and exc.context_mark is not None and exc.context_mark is not mark:
            problem += f" ({exc.context} started on line {exc.context_mark.line + 1})"
        raise error_class(f"invalid YAML: {problem}", path=path, line=line) from None
    except yaml.YAMLError as exc:
        raise error_class(f"invalid YAML: {exc}", path=path) from None
    finally:
        loader.dispose()
