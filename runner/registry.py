"""A table of named things registered explicitly (drivers, engines): a name registered
twice is refused, an unknown name is an error naming the known ones, never a fallback."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from runner.errors import InputError

T = TypeVar("T")


class Registry(Generic[T]):
    def __init__(self, what: str, key: Callable[[T], str]) -> None:
        self.what = what  # "driver", "engine": the word errors use
        self._key = key  # an entry's name
        self._entries: dict[str, T] = {}

    def register(self, entry: T) -> None:
        name = self._key(entry)
        if name in self._entries:
            raise ValueError(f"{self.what} {str(name)!r} is already registered")
        self._entries[name] = entry

    def get(self, name: str) -> T:
        entry = self._entries.get(name)
        if entry is None:
            raise InputError(f"unknown {self.what} {str(name)!r} (expected one of "
                             f"{', '.join(self.names())})")
        return entry

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[T]:
        return iter(self._entries.values())

    def names(self) -> list[str]:
        return [str(n) for n in self._entries]
