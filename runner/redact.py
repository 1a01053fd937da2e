"""Keeps secrets out of everything runner writes: known credential values and secret config
lines (passwords, keys, communities) are masked at one boundary, before records leave."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

MASK = "********"
MIN_SECRET_LEN = 4  # shorter values would mask ordinary words in device output


class Redactor:
    """Masks known secret values and platform secret-line patterns in any text or record."""

    def __init__(self, values: Iterable[str] = (),
                 patterns: Iterable[re.Pattern[str]] = ()) -> None:
        known = sorted({v for v in values if v and len(v) >= MIN_SECRET_LEN}, key=len,
                       reverse=True)
        self._values = re.compile("|".join(map(re.escape, known))) if known else None
        self._patterns = tuple(patterns)

    def text(self, text: str) -> str:
        if self._values is not None:
            text = self._values.sub(MASK, text)
        for pattern in self._patterns:
            text = pattern.sub(lambda m: (m.group("keep") if "keep" in m.groupdict() else "")
                               + MASK, text)
        return text

    def value(self, value: Any) -> Any:
        """Recursively mask strings inside dicts/lists (parsed output, records)."""
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return {k: self.value(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self.value(v) for v in value]
        return value
