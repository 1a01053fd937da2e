"""runner.store.jsontext writes json.dumps(value, indent=2)'s text to the character: a
corpus of what records hold and what they could (escapes, non-ASCII, floats, empties,
enums, deep nesting, other types), at every depth a document puts them."""

from __future__ import annotations

import enum
import json
import random
from decimal import Decimal
from typing import Any

import pytest

from runner.records import DeviceResult, StepResult
from runner.store.jsontext import indented
from runner.vocab import DeviceStatus, StepKind


class _Level(enum.IntEnum):
    HIGH = 3


CORPUS: list[Any] = [
    None, True, False, 0, -7, 2**70, 0.0, -0.0, 1.5, 1e-300, 1e300, float("nan"),
    float("inf"), float("-inf"), "", "plain", 'quote " and \\ backslash',
    "control \x00\x01\x1b[2J\r\n\t\x7f\x9f", "non-ASCII é ß 中文 \u2028 \U0001f600",
    "lone surrogate \ud800", {}, [], (), {"": ""}, [[]], [{}], {"a": {}}, {"a": []},
    {"nested": {"list": [1, [2, [3, {"deep": None}]]], "t": (1, "x")}},
    DeviceStatus.OK, StepKind.COMMAND, _Level.HIGH, {DeviceStatus.FAILED: 1},
    {7: "int key", 2.5: "float key", True: "bool key", None: "none key"},
    DeviceResult(host="r1", status=DeviceStatus.FAILED, error="% Invalid \x1b",
                 error_class="CommandRejected",
                 steps=[StepResult(name="show", kind=StepKind.COMMAND, output="a\nb",
                                   parsed=[{"k": 1.25, "v": None}])]).to_json(),
]


def _random(rng: random.Random, depth: int = 0) -> Any:
    pick = rng.randrange(9 if depth < 6 else 6)
    if pick == 0:
        return rng.choice([None, True, False])
    if pick == 1:
        return rng.randint(-10**12, 10**12)
    if pick == 2:
        return rng.choice([rng.uniform(-1e6, 1e6), rng.random() * 10 ** rng.randint(-30, 30)])
    if pick in (3, 4, 5):
        return "".join(chr(rng.choice([rng.randrange(0, 0x80), rng.randrange(0x80, 0x3000)]))
                       for _ in range(rng.randrange(12)))
    if pick in (6, 7):
        return {str(_random(rng, 9)): _random(rng, depth + 1) for _ in range(rng.randrange(5))}
    return [_random(rng, depth + 1) for _ in range(rng.randrange(5))]


@pytest.mark.parametrize("level", [0, 1, 2, 5])
def test_the_text_is_json_dumps_text_at_every_depth(level: int) -> None:
    rng = random.Random(28)  # noqa: S311 (a repeatable corpus, not a secret)
    values = CORPUS + [_random(rng) for _ in range(400)]
    for value in values:
        expected = json.dumps(value, indent=2).replace("\n", "\n" + "  " * level)
        assert indented(value, level) == expected, value


def test_other_types_are_what_json_dumps_makes_of_them() -> None:
    with pytest.raises(TypeError) as mine:
        indented({"a": [Decimal("1.5")]})
    with pytest.raises(TypeError) as theirs:
        json.dumps({"a": [Decimal("1.5")]}, indent=2)
    assert str(mine.value) == str(theirs.value)
