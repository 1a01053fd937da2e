"""`json.dumps(value, indent=2)`'s exact text, written without its generators: a run's
--json document is 100,000 records of it, printed after the last device (serial time).

The standard library encodes indented JSON in Python, one generator per dict and list
(its C encoder does not indent); a record took ~0.15 ms that way, ~14 s at the end of a
100,000-device run. This writes the same characters (ensure_ascii, `, `/`: ` separators
as indent gives them, floats by repr, NaN and Infinity allowed) with one recursive
function appending to a list, and hands any other type to json.dumps itself.
"""

from __future__ import annotations

import json
import math
from json.encoder import encode_basestring_ascii
from typing import Any

_FLOATS = {float("inf"): "Infinity", float("-inf"): "-Infinity"}


def _float(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    return _FLOATS.get(value) or float.__repr__(value)


def _key(key: object) -> str:
    if isinstance(key, str):
        return encode_basestring_ascii(key)
    # json.dumps' own conversion of other keys (True -> "true", 1.5 -> "1.5"), or its error
    return encode_basestring_ascii(json.loads(json.dumps({key: 0}))
                                   .popitem()[0])


def indented(value: Any, level: int = 0) -> str:
    """`json.dumps(value, indent=2)`, every line but the first indented `level` steps
    further (as it stands inside a document at that depth)."""
    out: list[str] = []
    _write(value, level, out)
    return "".join(out)


def _write(value: Any, level: int, out: list[str]) -> None:  # noqa: PLR0912 (one switch)
    if isinstance(value, str):
        out.append(encode_basestring_ascii(value))
    elif value is None:
        out.append("null")
    elif value is True:
        out.append("true")
    elif value is False:
        out.append("false")
    elif isinstance(value, int):
        out.append(int.__repr__(value))
    elif isinstance(value, float):
        out.append(_float(value))
    elif isinstance(value, dict):
        if not value:
            out.append("{}")
            return
        inner = "\n" + "  " * (level + 1)
        first = True
        for key, item in value.items():
            out.append(("{" if first else ",") + inner + _key(key) + ": ")
            first = False
            _write(item, level + 1, out)
        out.append("\n" + "  " * level + "}")
    elif isinstance(value, list | tuple):
        if not value:
            out.append("[]")
            return
        inner = "\n" + "  " * (level + 1)
        first = True
        for item in value:
            out.append(("[" if first else ",") + inner)
            first = False
            _write(item, level + 1, out)
        out.append("\n" + "  " * level + "]")
    else:  # what json.dumps makes of anything else (or its TypeError), at this depth
        text = json.dumps(value, indent=2)
        out.append(text.replace("\n", "\n" + "  " * level))
