"""The one way runner keeps a table of named things (drivers, engines, lab kinds and
backends, platforms): each registered explicitly, a name (or alias) registered twice is
refused, an unknown name is an error naming the known ones, never a fallback."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Generic, TypeVar

from runner.errors import InputError, RunnerError

T = TypeVar("T")


class Registry(Generic[T]):
    def __init__(self, what: str, key: Callable[[T], str], entries: Iterable[T] = (),
                 *, error: type[RunnerError] = InputError) -> None:
        self.what = what  # "driver", "engine", "kind": the word errors use
        self._key = key  # an entry's name
        self._error = error  # what an unknown name raises
        self._entries: dict[str, T] = {}
        self._aliases: dict[str, str] = {}
        for entry in entries:
            self.register(entry)

    def register(self, entry: T, *aliases: str) -> None:
        name = self._key(entry)
        names = (name, *aliases)
        for each in names:
            if each in self._entries or each in self._aliases or names.count(each) > 1:
                raise ValueError(f"{self.what} {str(each)!r} is already registered")
        self._entries[name] = entry
        self._aliases.update(dict.fromkeys(aliases, name))

    def find(self, name: str) -> T | None:
        """The entry of a name or alias, or None."""
        found = self._entries.get(name)
        if found is None and name in self._aliases:
            found = self._entries[self._aliases[name]]
        return found

    def get(self, name: str) -> T:
        entry = self.find(name)
        if entry is None:
            raise self.unknown(name)
        return entry

    def unknown(self, name: str) -> RunnerError:
        """The error for a name nothing is registered under (subclasses say more)."""
        return self._error(f"unknown {self.what} {str(name)!r} (expected one of "
                           f"{', '.join(self.names())})")

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.find(name) is not None

    def __iter__(self) -> Iterator[T]:
        return iter(self._entries.values())

    def __len__(self) -> int:
        return len(self._entries)

    def names(self, *, aliases: bool = False) -> list[str]:
        """Registered names in order (and their aliases after them, if asked)."""
        return [str(n) for n in self._entries] + (list(self._aliases) if aliases else [])
