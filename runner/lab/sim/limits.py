"""How many simulated devices one process may serve (the open-files limit, shared out), the
checks a fleet must pass before any process starts, and what each socket error means."""

from __future__ import annotations

import errno
import math
import os
import resource
from dataclasses import dataclass
from pathlib import Path

from runner.errors import InputError

# Descriptors a simulator process holds besides its devices': stdio, epoll, the signal
# wake-up pipe, the host key while it is read, the pipe to the supervisor (~10 in practice).
RESERVE = 64
# Each device: its listening socket, and one accepted session at a time (runner, like any
# client, opens one session per device; a second one at once draws on the spare).
FDS_PER_DEVICE = 2
# More processes than this is a mistake (`--per-process 1`), not a fleet.
MAX_PROCESSES = 128
# Idle memory, measured on this machine (bench/README.md, ~62 MiB and ~6.4 KiB): a process
# with its imports, and each device's listener (its configuration comes at its first
# login, ~16 KiB more). Lower bounds, for the refusal.
PROCESS_MIB = 55.0
DEVICE_KIB = 6.0


@dataclass(frozen=True)
class Budget:
    """The open-files limit every simulator process runs under, and what it allows."""

    limit: int  # RLIMIT_NOFILE soft limit, raised to the hard limit where allowed
    hard: int

    @property
    def per_process(self) -> int:
        """The most devices one process serves within the limit."""
        return max(0, (self.limit - RESERVE) // FDS_PER_DEVICE)

    def describe(self) -> str:
        return (f"a process may hold {self.limit} open files (RLIMIT_NOFILE"
                f"{'' if self.limit == self.hard else f'; hard limit {self.hard}'})")


def open_files_budget() -> Budget:
    """Raise this process's soft open-files limit to the hard one (children inherit it)
    and say what it allows."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        hard = _read_int(Path("/proc/sys/fs/nr_open")) or 1_048_576
    if soft == resource.RLIM_INFINITY or soft > hard:
        soft = hard
    if soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError):
            pass  # kept as it was: the share below follows the limit really in force
    return Budget(limit=soft, hard=hard)


def spread(devices: int, per_process: int | None, budget: Budget) -> list[range]:
    """The device indexes each process serves (contiguous, as even as can be), or an
    InputError saying why the fleet cannot be served here, before anything starts."""
    most = budget.per_process
    if most < 1:
        raise InputError(f"{budget.describe()}: too few to serve even one simulated device "
                         f"({RESERVE} spare plus {FDS_PER_DEVICE} per device); raise it "
                         f"(ulimit -n)", field="--devices")
    if per_process is not None and per_process > most:
        raise InputError(
            f"{per_process}: {budget.describe()}, which serves at most {most} "
            f"devices per process (a listening socket and a session each, {RESERVE} spare)",
            field="--per-process")
    share = per_process or most
    processes = math.ceil(devices / share)
    if processes > MAX_PROCESSES:
        raise InputError(
            f"{devices} at {share} per process needs {processes} simulator "
            f"processes; at most {MAX_PROCESSES} are started"
            + (" (raise --per-process)" if per_process and per_process < most else
               f" ({budget.describe()})"), field="--devices")
    _check_system_files(devices, processes)
    _check_memory(devices, processes)
    size = math.ceil(devices / processes)
    return [range(start, min(start + size, devices)) for start in range(0, devices, size)]


def check_port(port: int) -> None:
    """A port below the kernel's unprivileged start needs root (or CAP_NET_BIND_SERVICE)."""
    start = _read_int(Path("/proc/sys/net/ipv4/ip_unprivileged_port_start"))
    if start is None or port >= start or os.geteuid() == 0 or _can_bind_low_ports():
        return
    raise InputError(f"{port}: ports below {start} need root here "
                     f"(net.ipv4.ip_unprivileged_port_start); use {start} or above",
                     field="--port")


def listen_error(exc: OSError, device: str, where: str, serving: int) -> str:
    """Why a device's listening socket could not be made, in words that name the cause."""
    code = exc.errno
    reason = exc.strerror or str(exc)
    head = f"cannot listen for {device} on {where}: {reason}"
    if code == errno.EMFILE:
        return (f"{head}: {open_files_budget().describe()} and this one was given {serving} "
                f"devices (a listening socket each, plus their sessions); serve fewer per "
                f"process (--per-process) or raise the limit (ulimit -n)")
    if code == errno.ENFILE:
        return (f"{head}: the system's open-file table is full "
                f"(fs.file-max {_read_int(Path('/proc/sys/fs/file-max'))}); serve fewer "
                f"devices or raise fs.file-max")
    if code == errno.EADDRINUSE:
        return f"{head} (another simulator or service on the same --address/--port?)"
    if code == errno.EADDRNOTAVAIL:
        return f"{head} (the address is not on this machine's loopback)"
    if code == errno.EACCES:
        return f"{head} (ports below 1024 need root)"
    if code in (errno.ENOMEM, errno.ENOBUFS):
        return f"{head}: out of memory for sockets; serve fewer devices"
    return head


def accept_error(exc: OSError, label: str, serving: int, sessions: int) -> str:
    """A login refused for want of descriptors, while serving: the cause, not a guess."""
    if exc.errno == errno.ENFILE:
        cause = (f"the system's open-file table is full (fs.file-max "
                 f"{_read_int(Path('/proc/sys/fs/file-max'))})")
    else:
        cause = open_files_budget().describe()
    return (f"runner lab sim: {label}: {exc.strerror or exc} accepting a login: {cause}, "
            f"and this process serves {serving} devices (a listening socket each) with "
            f"{sessions} sessions open; new logins wait until sessions close. Serve fewer "
            f"devices per process (--per-process) or raise the limit (ulimit -n).")


def _check_system_files(devices: int, processes: int) -> None:
    """The system-wide file table must hold every process's share too (ENFILE)."""
    nr = Path("/proc/sys/fs/file-nr")
    top = _read_int(Path("/proc/sys/fs/file-max"))
    try:
        used = int(nr.read_text(encoding="ascii").split()[0])
    except (OSError, ValueError, IndexError):
        return
    if top is None:
        return
    needed = devices * FDS_PER_DEVICE + processes * RESERVE
    if needed > top - used:
        raise InputError(f"{devices} need about {needed} open files and the "
                         f"system has {top - used} free (fs.file-max {top}, {used} in use)",
                         field="--devices")


def _check_memory(devices: int, processes: int) -> None:
    available = _meminfo_kib("MemAvailable")
    if available is None:
        return
    needed = processes * PROCESS_MIB * 1024 + devices * DEVICE_KIB
    if needed > available:
        raise InputError(f"{devices} devices need at least {needed / 1024:.0f} MiB in "
                         f"{processes} processes and {available / 1024:.0f} MiB is "
                         f"available", field="--devices")


def _meminfo_kib(key: str) -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text(encoding="ascii").splitlines():
            name, _, value = line.partition(":")
            if name == key:
                return int(value.split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return None


def _can_bind_low_ports() -> bool:
    """CAP_NET_BIND_SERVICE (bit 10) among this process's effective capabilities."""
    try:
        for line in Path("/proc/self/status").read_text(encoding="ascii").splitlines():
            if line.startswith("CapEff:"):
                return bool(int(line.split()[1], 16) >> 10 & 1)
    except (OSError, ValueError, IndexError):
        return False
    return False


def _read_int(path: Path) -> int | None:
    try:
        return int(path.read_text(encoding="ascii").split()[0])
    except (OSError, ValueError, IndexError):
        return None
