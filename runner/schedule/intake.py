"""Events coming in to any `runner serve` (leader or standing by): a verified webhook
delivery, a syslog message matching a job's rule. Each is recorded in the store under its
claim (the delivery id; the device's pending event, debounced; the message's digest), so
however many servers hear it, the active scheduler starts one run for it."""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

from runner.errors import InputError
from runner.inventory.loading import load_inventory
from runner.job.events import WebhookSpec
from runner.job.load import JobFile
from runner.schedule.hooks import Delivery
from runner.schedule.starts import Scheduling, inventory_stamp
from runner.schedule.syslog import Message
from runner.vocab import EventSource

log = logging.getLogger("runner.serve")


def find_hook(s: Scheduling, name: str) -> WebhookSpec | None:
    job = s.jobs.all.get(name)
    trigger = job.spec.trigger if job is not None else None
    return trigger.webhook if trigger is not None else None


def accept_webhook(s: Scheduling, delivery: Delivery) -> bool:
    """Record a verified delivery once: False when its id was recorded before."""
    now = s.clock.now()
    new = s.events.add(delivery.job, f"webhook:{delivery.delivery}", EventSource.WEBHOOK, now,
                       vars_=delivery.vars or None, by=delivery.by, server=s.owner,
                       detail={"delivery": delivery.delivery, "event": delivery.event,
                               "scheme": delivery.scheme,
                               "replay_safe": delivery.replay_safe})
    if new:
        log.info("%s: webhook delivery %s (%s%s) accepted", delivery.job, delivery.delivery,
                 delivery.scheme, f", event {delivery.event}" if delivery.event else "")
        s.wake.set()
    else:
        log.warning("%s: webhook delivery %s was received before: nothing new starts",
                    delivery.job, delivery.delivery)
    return new


class Devices:
    """Which inventory device a syslog message comes from: by the sender's address (the
    host's `hostname`), else by the message's host name (the host's name or address)."""

    def __init__(self, inventory: Path) -> None:
        self.inventory = inventory
        self._stamp: object = None
        self.by_address: dict[str, list[str]] = {}
        self.names: set[str] = set()

    def _load(self) -> None:
        stamp = inventory_stamp(self.inventory)
        if stamp == self._stamp:
            return
        fleet = load_inventory(self.inventory)
        by_address: dict[str, list[str]] = {}
        for name, host in fleet.hosts.items():
            if host.hostname:
                by_address.setdefault(str(host.hostname), []).append(name)
        self.by_address, self.names, self._stamp = by_address, set(fleet.hosts), stamp

    def of(self, message: Message, among: set[str]) -> str | None:
        self._load()
        found = [h for h in self.by_address.get(message.source, []) if h in among]
        if len(found) == 1:
            return found[0]
        name = message.hostname
        if name is not None:
            if name in among:
                return name
            found = [h for h in self.by_address.get(name, []) if h in among]
            if len(found) == 1:
                return found[0]
        return None


def syslog_handler(s: Scheduling, devices: Devices) -> Callable[[Message], None]:
    """The listener's callback: every job whose rule matches the message and that targets
    its device gets the device's event (debounced: a burst is one run)."""
    def handle(message: Message) -> None:
        for _name, job in sorted(s.jobs.all.items()):
            rule = job.spec.trigger.syslog if job.spec.trigger is not None else None
            if rule is None or re.search(rule.match, message.text) is None:
                continue
            _one(s, devices, job, message)
    return handle


def _one(s: Scheduling, devices: Devices, job: JobFile, message: Message) -> None:
    name = job.spec.name
    assert job.spec.trigger is not None and job.spec.trigger.syslog is not None
    rule = job.spec.trigger.syslog
    try:
        targets = set(s.targets.hosts(job, s.inventory, s.templates))
        host = devices.of(message, targets)
    except InputError as exc:
        log.error("%s: syslog message from %s not handled: %s", name, message.source, exc)
        return
    if host is None:
        log.info("%s: syslog message from %s (%s) matches its rule but comes from no "
                 "device it targets: %s", name, message.source, message.hostname or "-",
                 message.text[:200])
        return
    now = s.clock.now()
    by = rule.who(message.text)
    digest = hashlib.sha256(f"{host}\0{message.text}".encode()).hexdigest()
    outcome = s.events.syslog(name, host, digest, now,
                              now + timedelta(seconds=rule.debounce_seconds), by,
                              message.text, s.owner)
    if outcome == "duplicate":
        log.info("%s: syslog message from %s already recorded (another server heard it)",
                 name, host)
        return
    log.info("%s: syslog message from %s%s: %s", name, host, f" by {by}" if by else "",
             "run in " + f"{rule.debounce_seconds:g}s" if outcome == "new"
             else "joined the pending run (debounce)")
    s.wake.set()


def describe(detail: dict[str, Any] | None) -> str:
    """An event's detail in a few words, for listings."""
    if not detail:
        return ""
    parts = []
    if detail.get("event"):
        parts.append(f"event {detail['event']}")
    if detail.get("messages"):
        parts.append(f"{detail['messages']} message(s)")
    if detail.get("users"):
        parts.append("by " + ", ".join(detail["users"]))
    if detail.get("devices"):
        parts.append(f"{detail['devices']} device(s)")
    if detail.get("after"):
        parts.append(str(detail["after"]))
    return "; ".join(parts)
