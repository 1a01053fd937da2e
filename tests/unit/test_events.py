"""Event intake pieces: webhook signatures (GitHub, Gitea, Standard Webhooks), payload
variables, the answer to each request; syslog messages (RFC 5424, RFC 3164, IOS's own),
TCP framing, who a message names; the store's claims that make each event start once
(SQLite and PostgreSQL)."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from runner.errors import AccessDenied, InputError, NotFound
from runner.job.events import PayloadVar, SyslogSpec, WebhookSpec
from runner.schedule.hooks import (
    Delivery,
    payload_vars,
    receive,
    sign_github,
    sign_standard,
    verify,
)
from runner.schedule.syslog import frames, parse
from runner.store.events import Events
from runner.store.schedule import ScheduleStore
from runner.vocab import EventSource

SECRET = "hook-s3cret-4f9a"  # asserted never to appear in an answer
BODY = b'{"ref": "refs/heads/main", "sender": {"login": "alice"}, "n": 3}'
NOW = 1_800_000_000.0


def test_github_signature_is_checked_in_full() -> None:
    good = {"x-hub-signature-256": sign_github(SECRET, BODY), "x-github-delivery": "d1",
            "x-github-event": "push"}
    found = verify(good, BODY, SECRET, NOW)
    assert (found.scheme, found.delivery, found.event) == ("github", "d1", "push")
    bad = [
        ({**good, "x-hub-signature-256": sign_github("other", BODY)}, "does not match"),
        ({**good, "x-hub-signature-256": sign_github(SECRET, BODY)[:-1]}, "does not match"),
        ({**good, "x-hub-signature-256": sign_github(SECRET, BODY).upper()}, "sha256="),
        ({**good, "x-hub-signature-256": "sha1=" + "0" * 40}, "is not sha256="),
        ({"x-github-delivery": "d1"}, "the request is not signed"),
    ]
    for headers, message in bad:
        with pytest.raises(AccessDenied, match=message):
            verify(headers, BODY, SECRET, NOW)
    with pytest.raises(AccessDenied):  # one byte of the body changed
        verify(good, BODY.replace(b"main", b"mainx"), SECRET, NOW)


def test_gitea_and_standard_webhooks_signatures() -> None:
    import hashlib
    import hmac

    gitea = hmac.new(SECRET.encode(), BODY, hashlib.sha256).hexdigest()
    found = verify({"x-gitea-signature": gitea, "x-gitea-delivery": "g1",
                    "x-gitea-event": "push"}, BODY, SECRET, NOW)
    assert (found.scheme, found.delivery) == ("gitea", "g1")
    with pytest.raises(AccessDenied):
        verify({"x-gitea-signature": gitea[::-1]}, BODY, SECRET, NOW)
    # GitLab's signing token: a whsec_ secret is the base64 of the key
    key = "whsec_" + "c2lnbmluZy1rZXktZm9yLXRlc3RzLTEyMzQ1Njc4OTA="
    stamp = int(NOW)
    headers = {"webhook-id": "msg_1", "webhook-timestamp": str(stamp),
               "webhook-signature": "v1,bm90LWl0 " + sign_standard(key, "msg_1", stamp, BODY),
               "x-gitlab-event": "Push Hook"}
    found = verify(headers, BODY, key, NOW)
    assert (found.scheme, found.delivery, found.event) == ("standard-webhooks", "msg_1",
                                                           "Push Hook")
    with pytest.raises(AccessDenied, match="more than 300s from this server's time"):
        verify(headers, BODY, key, NOW + 301)  # a replay, or a clock off
    with pytest.raises(AccessDenied, match="does not match"):
        verify({**headers, "webhook-id": "msg_2"}, BODY, key, NOW)  # the id is signed
    with pytest.raises(AccessDenied, match="webhook-id and a numeric"):
        verify({**headers, "webhook-timestamp": "soon"}, BODY, key, NOW)


def test_payload_variables_are_single_checked_lines() -> None:
    spec = WebhookSpec.model_validate({
        "secret": {"env": "X"},
        "vars": {"ref": "ref", "count": "n", "branch": {"path": "ref",
                                                        "pattern": "^refs/heads/[a-z]+$"},
                 "sha": {"path": "after", "default": "none"}}})
    data = json.loads(BODY)
    assert payload_vars(spec, data) == {"ref": "refs/heads/main", "count": 3,
                                        "branch": "refs/heads/main", "sha": "none"}
    corpus: list[tuple[Any, str]] = [
        ({**data, "ref": "main\nusername evil privilege 15"}, "is not a single line"),
        ({**data, "ref": "main\x1b[2J"}, "is not a single line"),
        ({**data, "ref": "x" * 1001}, "is not a single line"),
        ({**data, "ref": {"nested": 1}}, "is dict, not a single value"),
        ({**data, "ref": "refs/heads/MAIN"}, "does not match"),
        ({"n": 1, "after": "x"}, "the payload has no 'ref'"),
        ([1, 2], "the payload has no 'ref'"),
    ]
    for payload, message in corpus:
        with pytest.raises(InputError, match=message):
            payload_vars(spec, payload)
    nested = WebhookSpec.model_validate({"secret": {"env": "X"},
                                         "vars": {"sha": "commits.1.id"}})
    assert payload_vars(nested, {"commits": [{"id": "a"}, {"id": "b"}]}) == {"sha": "b"}
    assert PayloadVar(path="a.b").default is None


def test_each_request_gets_one_clear_answer(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOOK_SECRET_T", SECRET)
    spec = WebhookSpec.model_validate({"secret": {"env": "HOOK_SECRET_T"}, "events": ["push"],
                                       "vars": {"ref": "ref"}})
    seen: set[str] = set()
    accepted: list[Delivery] = []

    def accept(delivery: Delivery) -> bool:
        if delivery.delivery in seen:
            return False
        seen.add(delivery.delivery)
        accepted.append(delivery)
        return True

    def find(name: str) -> WebhookSpec | None:
        return spec if name == "deploy" else None

    def ask(headers: dict[str, str], body: bytes = BODY, job: str = "deploy") -> tuple[
            int, dict[str, Any]]:
        return receive(job, headers, body, find, accept, NOW)

    signed = {"x-hub-signature-256": sign_github(SECRET, BODY), "x-github-delivery": "d-7",
              "x-github-event": "push"}
    status, answer = ask(signed)
    assert status == 202 and answer["status"] == "accepted" and answer["vars"] == {
        "ref": "refs/heads/main"}
    assert accepted[0].by == "alice" and accepted[0].replay_safe
    assert ask(signed)[0] == 200 and ask(signed)[1]["status"] == "duplicate"  # replayed
    assert ask({**signed, "x-github-event": "ping"}) == (200, {"status": "pong",
                                                               "job": "deploy"})
    status, answer = ask({**signed, "x-github-event": "issues"})
    assert status == 200 and answer["status"] == "ignored"
    with pytest.raises(NotFound, match="no job 'other' with a webhook trigger"):
        ask(signed, job="other")
    with pytest.raises(AccessDenied):
        ask({**signed, "x-hub-signature-256": sign_github("guess", BODY)})
    other = b'{"nothing": 1}'
    with pytest.raises(InputError, match="the payload has no 'ref'"):
        ask({**signed, "x-hub-signature-256": sign_github(SECRET, other)}, other)
    junk = b"not json"
    with pytest.raises(InputError, match="the body is not JSON"):
        ask({**signed, "x-hub-signature-256": sign_github(SECRET, junk)}, junk)
    with pytest.raises(InputError, match="the delivery id is not"):
        ask({**signed, "x-github-delivery": "d 1; drop"})
    unsigned_id = {k: v for k, v in signed.items() if k != "x-github-delivery"}
    status, answer = ask(unsigned_id)
    assert status == 202 and not accepted[-1].replay_safe  # no id: one of its own
    monkeypatch.delenv("HOOK_SECRET_T")
    status, answer = ask(signed)
    assert status == 503 and "not available on this server" in answer["error"]
    for value in (json.dumps(answer), *(json.dumps(d.vars) for d in accepted)):
        assert SECRET not in value


SYSLOG = [
    (b"<189>1 2026-12-07T03:00:00.000Z r1.lab ios 123 - - %SYS-5-CONFIG_I: Configured from "
     b"console by admin on vty0 (192.0.2.9)", "r1.lab", 189, "admin"),
    (b"<189>Dec  7 03:00:00 r2 123: %SYS-5-CONFIG_I: Configured from console by ops2 on "
     b"vty1", "r2", 189, "ops2"),
    (b"<189>123: *Mar  1 00:00:00.000: %SYS-5-CONFIG_I: Configured from console by "
     b"console", None, 189, "console"),
    (b"<190>Dec  7 03:00:01 eos1 ConfigAgent: %SYS-5-CONFIG_I: Configured from vty3 by "
     b"netops", "eos1", 190, "netops"),
    (b"<189>Dec  7 03:00:02 mx1 mgd[4711]: UI_COMMIT: User 'jdoe' requested 'commit' "
     b"operation", "mx1", 189, "jdoe"),
    (b"<13>Dec  7 03:00:03 frr1 vtysh: config changed user=frruser", "frr1", 13, "frruser"),
    (b"\xef\xbb\xbf<14>1 2026-12-07T03:00:00Z - app - - - no host here", None, 14, None),
    (b"plain text, no priority at all", None, None, None),
]


@pytest.mark.parametrize(("data", "host", "priority", "user"), SYSLOG)
def test_syslog_messages_as_devices_send_them(data: bytes, host: str | None,
                                              priority: int | None, user: str | None) -> None:
    message = parse(data, "192.0.2.1")
    assert (message.hostname, message.priority, message.source) == (host, priority,
                                                                    "192.0.2.1")
    rule = SyslogSpec(match="CONFIG_I|UI_COMMIT|config changed")
    assert rule.who(message.text) == user
    assert "\ufeff" not in message.text and not message.text.startswith("<")


def test_a_rule_names_the_user_its_own_way_and_control_characters_go() -> None:
    rule = SyslogSpec(match="x", user=r"changed by (\w+)")
    assert rule.who("config changed by mallory today") == "mallory"
    assert rule.who("no one") is None
    assert parse(b"<13>Dec  7 03:00:03 r1 a\x1b[31mred\x00", "x").text.endswith("a [31mred")
    with pytest.raises(ValueError, match="is not a valid regex"):
        SyslogSpec(match="(unclosed")
    with pytest.raises(ValueError, match="between 0 and 3600"):
        SyslogSpec(match="x", debounce="2h")


def test_tcp_frames_by_octet_count_or_newline() -> None:
    buffer = bytearray(b"11 <13>msg one<13>by newline\n<14>null ended\x0012 <13>")
    assert frames(buffer) == [b"<13>msg one", b"<13>by newline", b"<14>null ended"]
    assert bytes(buffer) == b"12 <13>"  # incomplete: waits for the rest
    buffer += b"tail xy"
    assert frames(buffer) == []
    buffer += b"z<13>next\n"
    assert frames(buffer) == [b"<13>tail xyz", b"<13>next"]
    assert frames(bytearray(b"\n\n")) == []


# -- the store's claims ---------------------------------------------------------------------


def test_a_message_heard_by_two_servers_starts_one_debounced_event(db_url: str) -> None:
    now = datetime(2026, 12, 7, 3, 0, tzinfo=UTC)
    a, b = Events(ScheduleStore(db_url).engine), Events(ScheduleStore(db_url).engine)
    due = now + timedelta(seconds=10)
    assert a.syslog("backup", "r1", "d1", now, due, "admin", "m1", "host-a") == "new"
    assert b.syslog("backup", "r1", "d1", now, due, "admin", "m1", "host-b") == "duplicate"
    assert b.syslog("backup", "r1", "d2", now, due, "bob", "m2", "host-b") == "merged"
    assert a.syslog("backup", "r2", "d3", now, due, None, "m3", "host-a") == "new"
    rows = {r["key"]: r for r in a.all("backup")}
    assert set(rows) == {"syslog:r1", "syslog:r2"}
    assert rows["syslog:r1"]["detail"]["messages"] == 2
    assert rows["syslog:r1"]["detail"]["users"] == ["admin", "bob"]
    assert rows["syslog:r1"]["by"] == "admin" and rows["syslog:r1"]["hosts"] == ["r1"]
    assert a.due(now) == [] and len(a.due(due)) == 2  # debounced
    key = a.take("backup", "syslog:r1", "run1", "host-a", due)
    assert key == "syslog:r1:run1"
    assert b.take("backup", "syslog:r1", "run2", "host-b", due) is None  # taken once
    # a message after the start makes a new event; the same message again does not
    assert a.syslog("backup", "r1", "d4", due, due + timedelta(seconds=10), "admin", "m4",
                    "host-a") == "new"
    assert b.syslog("backup", "r1", "d4", due, due, "admin", "m4", "host-b") == "duplicate"


def test_a_delivery_is_recorded_once_and_taken_once(db_url: str) -> None:
    now = datetime(2026, 12, 7, 3, 0, tzinfo=UTC)
    a, b = Events(ScheduleStore(db_url).engine), Events(ScheduleStore(db_url).engine)
    assert a.add("deploy", "webhook:d1", EventSource.WEBHOOK, now, vars_={"ref": "main"})
    assert not b.add("deploy", "webhook:d1", EventSource.WEBHOOK, now)
    assert a.take("deploy", "webhook:d1", "r1", "host-a", now) == "webhook:d1"
    assert b.take("deploy", "webhook:d1", "r2", "host-b", now) is None
    row = a.get("deploy", "webhook:d1")
    assert row is not None and row["run_id"] == "r1" and row["vars"] == {"ref": "main"}
    assert time.time() > 0  # the store's own clock is not used: every time is given
