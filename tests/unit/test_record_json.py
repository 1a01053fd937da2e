"""A device record's JSON (DeviceResult.to_json, built field by field for speed) has the
shape dataclasses.asdict gave it, printed and in transport, and reads back as the record."""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Any

import pytest

from runner.records import DeviceResult, RestorePlan, StepResult
from runner.vocab import DeviceStatus, StepKind

RECORDS = [
    DeviceResult("plain", DeviceStatus.OK),
    DeviceResult("failed", DeviceStatus.FAILED, error="boom", error_class="CommandFailed",
                 attempts=2, driver="asyncssh", worker="w1", started="t0", finished="t1"),
    DeviceResult("changed", DeviceStatus.CHANGED, changed=True, duration_s=1.5, steps=[
        StepResult("show", StepKind.COMMAND, output="out", parsed=[{"a": [1, {"b": 2}]}]),
        StepResult("push", StepKind.CONFIG, output="x", diff="+ y", changed=True,
                   digest="abc")], backup="config text",
        restore=RestorePlan(["no y"], "k", "a", save=True, blocked=None)),
    DeviceResult("drift", DeviceStatus.NON_COMPLIANT, stored=True, steps=[
        StepResult("check", StepKind.COMPLIANCE,
                   parsed={"features": {"ntp": {"compliant": False, "missing": ["x"]}}})]),
]


def as_before(record: DeviceResult, transport: bool) -> dict[str, Any]:
    data = asdict(record)
    if not transport:
        data.pop("backup")
        data.pop("restore")
    if not data["stored"]:
        data.pop("stored")
    if record.compliance is not None:
        data["compliance"] = record.compliance
    return data


@pytest.mark.parametrize("record", RECORDS, ids=lambda r: r.host)
@pytest.mark.parametrize("transport", [False, True])
def test_json_is_what_asdict_gave(record: DeviceResult, transport: bool) -> None:
    data = record.to_json(transport=transport)
    assert data == as_before(record, transport)
    assert json.dumps(data) == json.dumps(as_before(record, transport))
    assert list(data) == list(as_before(record, transport))


@pytest.mark.parametrize("record", RECORDS, ids=lambda r: r.host)
def test_transport_json_reads_back_as_the_record(record: DeviceResult) -> None:
    again = DeviceResult.from_json(json.loads(json.dumps(record.to_json(transport=True))))
    assert again == record
    if record.restore is not None:  # the plan's lines are the JSON's own, not the record's
        data = record.to_json(transport=True)
        data["restore"]["lines"].append("extra")
        assert record.restore.lines == ["no y"]
