"""YAML loading that remembers the line of every key and item, for errors that name lines,
and refuses files built to exhaust runner (deep nesting, alias bombs, endless numbers)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn, cast

import yaml
from yaml.composer import Composer, ComposerError

from runner.errors import InputError

MAX_DEPTH = 100  # nested mappings/lists; runner's files need a handful
# values a file may expand to through aliases (or 10 per value written, if that is more)
MAX_ALIASED = 1_000_000
MAX_INT_CHARS = 1000  # an integer's text; Python refuses str() of ints past 4300 digits
MAX_BYTES = 64 * 1024 * 1024  # a file; a fleet of 100,000 hosts takes a fraction of this


class LineDict(dict[Any, Any]):
    """A mapping from YAML that knows its own line and the line of each key (slots: a
    100,000-host file has 200,000 of them)."""

    __slots__ = ("line", "lines")
    line: int
    lines: dict[Any, int]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.line = 0
        self.lines = {}

    def line_of(self, key: Any) -> int:
        return self.lines.get(key, self.line)


class LineList(list[Any]):
    """A sequence from YAML that knows its own line and the line of each item."""

    __slots__ = ("line", "lines")
    line: int
    lines: list[int]

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.line = 0
        self.lines = []

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


class _Loader(_Base, Composer):  # type: ignore[misc,valid-type]
    """SafeLoader that builds LineDict/LineList and rejects duplicate keys. Python's
    Composer over libyaml's events: a top-level mapping is composed and built one entry at a
    time (_stream), never as one graph of nodes for the whole file."""

    source: Path
    error_class: type[InputError]
    anchors: dict[str, yaml.Node]

    def __init__(self, stream: str) -> None:
        _Base.__init__(self, stream)

    def node(self, index: Any = None) -> yaml.Node:
        """The next node, composed (`index`, a key's node for its value as the Composer
        passes it, is read only by path resolvers: none here)."""
        return cast(yaml.Node, self.compose_node(None, index))

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep)
        except InputError:
            raise
        except (ValueError, TypeError, OverflowError) as exc:  # e.g. a date like 2026-13-01
            raise self.error_class(f"invalid YAML: cannot read this value: {exc}",
                                   path=self.source, line=node.start_mark.line + 1) from None


def _new_key(loader: _Loader, result: LineDict, key: Any, line: int) -> None:
    """Refuse `key` at `line` when `result` has it already."""
    if key in result:
        raise loader.error_class(
            f"duplicate key {key!r} (first defined on line {result.lines[key]})",
            path=loader.source, line=line)


def _construct_mapping(loader: _Loader, node: yaml.MappingNode) -> LineDict:
    loader.flatten_mapping(node)
    result = LineDict()
    result.line = node.start_mark.line + 1
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        line = key_node.start_mark.line + 1
        if isinstance(key, dict | list):
            raise loader.error_class("invalid YAML: a key is a single value, not a list or "
                                     "mapping", path=loader.source, line=line)
        _new_key(loader, result, key, line)
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
_MAPPING_TAGS = (None, "!", yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG)
_MERGE_TAG = "tag:yaml.org,2002:merge"


def _stream(loader: _Loader) -> Any:
    """The file's one document, as get_single_data() builds it. A top-level mapping (a
    hosts file of 100,000 entries) is composed and built entry by entry: the whole file's
    nodes (~0.5 KiB each, two marks apiece) would take ~500 MiB at 100,000 hosts, and the
    process keeps that much resident after they are freed."""
    loader.anchors = {}
    loader.get_event()  # stream start
    if loader.check_event(yaml.StreamEndEvent):
        return None
    document = loader.get_event()
    start = loader.peek_event()
    if isinstance(start, yaml.MappingStartEvent) and start.anchor is None \
            and start.tag in _MAPPING_TAGS:
        data: Any = _stream_mapping(loader)
    else:
        data = loader.construct_document(loader.node())
    loader.get_event()  # document end
    if not loader.check_event(yaml.StreamEndEvent):
        raise ComposerError("expected a single document in the stream", document.start_mark,
                            "but found another document", loader.get_event().start_mark)
    return data


class _Anchors(dict[str, yaml.Node]):
    """The composer's anchors, noting those added since they were last looked at."""

    def __init__(self) -> None:
        super().__init__()
        self.new: list[yaml.Node] = []

    def __setitem__(self, anchor: str, node: yaml.Node) -> None:
        super().__setitem__(anchor, node)
        self.new.append(node)


class _Shared(dict[yaml.Node, Any]):
    """The constructor's built objects, keeping only those of anchored nodes and what is
    inside them: what an alias (or a merge key) of a later entry reuses, as one object
    (100,000 hosts that merge one anchored block share its values, as when the file is
    built whole); every other node, and what was built of it, goes with its entry."""

    def __init__(self) -> None:
        super().__init__()
        self.nodes: set[yaml.Node] = set()

    def share(self, anchored: list[yaml.Node]) -> None:
        todo = list(anchored)
        while todo:
            node = todo.pop()
            if node in self.nodes:
                continue  # seen (a recursive alias, or an anchor inside another)
            self.nodes.add(node)
            if isinstance(node, yaml.SequenceNode):
                todo.extend(node.value)
            elif isinstance(node, yaml.MappingNode):
                todo.extend(n for pair in node.value for n in pair)

    def __setitem__(self, node: yaml.Node, value: Any) -> None:
        if node in self.nodes:
            super().__setitem__(node, value)


def _stream_mapping(loader: _Loader) -> LineDict:
    """The top-level mapping, one key and value at a time (each built as a mapping of one
    entry: merge keys and duplicate keys behave as in a nested mapping); what anchors hold
    is kept for the aliases of later entries (_Shared)."""
    start = loader.get_event()
    result = LineDict()
    result.line = start.start_mark.line + 1
    merged: list[str] = []  # keys a top-level merge key brought: first, as in a nested one
    anchors = loader.anchors = _Anchors()
    shared = loader.constructed_objects = _Shared()
    while not loader.check_event(yaml.MappingEndEvent):
        key_node = loader.node()
        value_node = loader.node(key_node)
        shared.share(anchors.new)  # before building: merge keys edit the nodes they merge into
        anchors.new.clear()
        entry = _construct_mapping(loader, yaml.MappingNode(
            yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, [(key_node, value_node)],
            start.start_mark, start.end_mark))
        for key, value in entry.items():
            line = entry.lines[key]
            _new_key(loader, result, key, line)
            result[key] = value
            result.lines[key] = line
            if key_node.tag == _MERGE_TAG:
                merged.append(key)
    loader.get_event()
    loader.constructed_objects = {}
    if merged:
        ordered = LineDict({k: result[k] for k in merged} | result)
        ordered.line, ordered.lines = result.line, result.lines
        return ordered
    return result


@dataclass(slots=True)
class _Open:
    """A mapping or list being read by the shape check."""

    anchor: str | None
    is_mapping: bool
    key: Any = None  # mappings: the key whose value is read next
    at_key: bool = True  # mappings: the next node is a key
    index: int = 0  # lists: the item read next
    height: int = 1  # nesting below and including this one
    size: int = 1  # values, with aliases expanded


class _Shape:
    """The shape check of one file, fed its events one by one (libyaml's parser keeps its
    own stack: nothing recursive sees the data before this check passed). Refuses nesting
    deeper than MAX_DEPTH (directly or through aliases), aliases that multiply the data (a
    "billion laughs") and integers too long to be printed."""

    def __init__(self, loader: Any, path: Path, error_class: type[InputError],
                 root: str | None) -> None:
        self.loader, self.path, self.error_class, self.root = loader, path, error_class, root
        self.stack: list[_Open] = []
        self.anchors: dict[str, tuple[int, int]] = {}  # anchor -> (height, size) of its node
        self.written = self.expanded = 0

    def fail(self, message: str, event: yaml.Event) -> NoReturn:
        mark = event.start_mark
        raise self.error_class(message, path=self.path, line=mark.line + 1 if mark else None,
                               field=self.field())

    def field(self) -> str | None:
        """Where the check is, as a field name (the first levels only)."""
        parts = [str(o.key)[:40] if o.is_mapping else f"[{o.index}]" for o in self.stack]
        if self.root is not None:
            parts.insert(0, self.root)
        name = ""
        for part in parts[:3]:
            name += part if part.startswith("[") or not name else f".{part}"
        return (name + ("..." if len(parts) > 3 else "")) or None

    def begin(self, event: yaml.NodeEvent) -> None:
        """Any node: counted, and named if it is a mapping's key."""
        self.written += 1
        if self.stack and self.stack[-1].is_mapping and self.stack[-1].at_key:
            self.stack[-1].key = event.value if isinstance(event, yaml.ScalarEvent) else "?"

    def finish(self, anchor: str | None, height: int, size: int) -> None:
        """A node (scalar, alias or ended collection) of the container around it."""
        if anchor is not None:
            self.anchors[anchor] = (height, size)
        if self.stack:
            parent = self.stack[-1]
            parent.height = max(parent.height, height + 1)
            parent.size += size
            if parent.is_mapping:
                parent.at_key = not parent.at_key
            else:
                parent.index += 1

    def scalar(self, event: yaml.ScalarEvent) -> None:
        self.begin(event)
        self.expanded += 1
        if len(event.value) > MAX_INT_CHARS:
            tag = event.tag
            if tag is None or tag == "!":  # as the composer resolves it
                tag = self.loader.resolve(yaml.ScalarNode, event.value, event.implicit)
            if tag == "tag:yaml.org,2002:int":
                self.fail(f"a number of {len(event.value)} characters is too long (at most "
                          f"{MAX_INT_CHARS})", event)
        self.finish(event.anchor, 0, 1)

    def alias(self, event: yaml.AliasEvent) -> None:
        self.begin(event)
        # an anchor still open (a recursive alias) is the constructor's to refuse
        height, size = self.anchors.get(str(event.anchor), (0, 1))
        if len(self.stack) + height > MAX_DEPTH:
            self.fail(f"nested deeper than {MAX_DEPTH} levels (through alias "
                      f"*{event.anchor})", event)
        self.expanded += size
        limit = max(MAX_ALIASED, 10 * self.written)
        if self.expanded > limit:
            self.fail(f"aliases expand this file to more than {limit} values: refused as a "
                      "YAML bomb", event)
        self.finish(None, height, size)

    def start(self, event: yaml.CollectionStartEvent) -> None:
        self.begin(event)
        if len(self.stack) >= MAX_DEPTH:
            self.fail(f"nested deeper than {MAX_DEPTH} levels", event)
        self.expanded += 1
        self.stack.append(_Open(event.anchor, isinstance(event, yaml.MappingStartEvent)))

    def end(self, _event: yaml.CollectionEndEvent) -> None:
        node = self.stack.pop()
        self.finish(node.anchor, node.height, node.size)


def _check_shape(text: str, path: Path, error_class: type[InputError],
                 root: str | None = None) -> None:
    try:
        _walk_shape(_Base, text, path, error_class, root)
    except yaml.MarkedYAMLError as exc:
        if not _is_depth_refusal(exc):
            raise
        # libyaml (PyYAML >= 6.0.4) refuses deep nesting itself, while scanning ahead and
        # before the first event: walk the text up to where it stopped with the Python
        # parser, which reaches runner's own, shallower, check there and names the field.
        mark = exc.problem_mark or exc.context_mark
        end = mark.index if mark is not None else len(text)
        _walk_shape(yaml.SafeLoader, text[:end], path, error_class, root)
        raise error_class(f"nested deeper than {MAX_DEPTH} levels", path=path,
                          line=mark.line + 1 if mark is not None else None) from None


def _is_depth_refusal(exc: yaml.MarkedYAMLError) -> bool:
    """A YAML library's own refusal of deep nesting (its wording is not runner's)."""
    text = f"{exc.problem or ''} {exc.context or ''}".lower()
    return "nesting" in text or "depth" in text


def _walk_shape(base: Any, text: str, path: Path, error_class: type[InputError],
                root: str | None) -> None:
    loader = base(text)
    shape = _Shape(loader, path, error_class, root)
    handlers: dict[type[yaml.Event], Callable[[Any], None]] = {
        yaml.ScalarEvent: shape.scalar, yaml.AliasEvent: shape.alias,
        yaml.MappingStartEvent: shape.start, yaml.SequenceStartEvent: shape.start,
        yaml.MappingEndEvent: shape.end, yaml.SequenceEndEvent: shape.end}
    try:
        while True:
            event = loader.get_event()
            handler = handlers.get(type(event))
            if handler is not None:
                handler(event)
            elif isinstance(event, yaml.StreamEndEvent):
                return
    finally:
        loader.dispose()


def read_text(path: Path, error_class: type[InputError] = InputError) -> str:
    """A YAML file's text (UTF-8, at most MAX_BYTES), its problems as `error_class`."""
    try:
        with path.open("rb") as fh:  # at most MAX_BYTES + 1: a device such as /dev/zero ends
            # in pieces: read(MAX_BYTES + 1) allocates that much for any file
            chunks: list[bytes] = []
            size = 0
            while size <= MAX_BYTES:
                chunk = fh.read(min(1 << 20, MAX_BYTES + 1 - size))
                if not chunk:
                    break
                chunks.append(chunk)
                size += len(chunk)
            data = b"".join(chunks)
    except FileNotFoundError:
        raise error_class("file not found", path=path) from None
    except OSError as exc:
        raise error_class(f"cannot read file: {exc.strerror or exc}", path=path) from None
    if len(data) > MAX_BYTES:
        raise error_class(f"file too large (over {MAX_BYTES // (1024 * 1024)} MiB)", path=path)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise error_class(f"cannot read file: {exc}", path=path) from None


def load_yaml(path: Path, error_class: type[InputError] = InputError,
              root: str | None = None, text: str | None = None) -> Any:
    """Parse one YAML file (`text`: its text, read_text already read); syntax errors
    become an `error_class` naming file and line (and the field, `root` first if given,
    where the shape check refused it)."""
    if text is None:
        text = read_text(path, error_class)
    loader: _Loader | None = None
    try:
        _check_shape(text, path, error_class, root)
        loader = _Loader(text)
        loader.source = path
        loader.error_class = error_class
        return _stream(loader)
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
        if loader is not None:
            loader.dispose()
