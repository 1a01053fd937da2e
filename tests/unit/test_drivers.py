"""The driver registry, and each driver's error tables: library exceptions -> runner errors,
the cause chained, credentials never in the message. No device needed."""

from __future__ import annotations

import inspect
from importlib import resources
from typing import Any

import asyncssh
import paramiko
import pytest
import yaml
from netmiko.exceptions import (
    NetmikoAuthenticationException,
    NetmikoTimeoutException,
    ReadException,
    ReadTimeout,
)
from scrapli.exceptions import OperationException

from runner.drivers import asyncssh as asyncssh_driver
from runner.drivers import netmiko as netmiko_driver
from runner.drivers import scrapli as scrapli_driver
from runner.drivers.base import ConnectParams, ErrorTable, Rule
from runner.drivers.registry import DriverEntry, DriverRegistry, SessionOpener, builtin_drivers
from runner.errors import (
    AuthFailed,
    ConnectFailed,
    DeviceError,
    DeviceTimeout,
    HostKeyMismatch,
    InputError,
    SessionLost,
)
from runner.inventory import platforms
from runner.redact import MASK
from runner.vocab import Driver

PASSWORD = "Pw-8c1e93-secret"


# --- the registry -------------------------------------------------------------------------

def test_a_driver_name_registered_twice_is_refused() -> None:
    registry = DriverRegistry()
    entry = DriverEntry(Driver.NETMIKO)
    registry.register(entry)
    with pytest.raises(ValueError, match="'netmiko' is already registered"):
        registry.register(DriverEntry(Driver.NETMIKO))
    assert registry.names() == ["netmiko"]
    assert registry.get("netmiko") is entry


def test_an_unknown_driver_is_an_input_error_naming_the_known_ones() -> None:
    with pytest.raises(InputError) as caught:
        builtin_drivers().get("telnetlib")
    message = str(caught.value)
    assert "'telnetlib'" in message
    for name in ("netmiko", "scrapli", "asyncssh"):
        assert name in message
    assert caught.value.exit_code == 2


def test_every_driver_is_registered_with_the_same_open_signature() -> None:
    registry = builtin_drivers()
    assert sorted(registry.names()) == sorted(Driver)
    expected = inspect.signature(SessionOpener.open, eval_str=True)
    for entry in registry:
        opener = entry.load()
        assert entry.class_name == opener.__name__
        got = inspect.signature(opener.open, eval_str=True)
        assert list(got.parameters) == ["params", "timeouts", "executor"], entry.name
        for name, parameter in got.parameters.items():
            assert parameter.annotation == expected.parameters[name].annotation, \
                (entry.name, name)
        assert inspect.iscoroutinefunction(opener.open), entry.name


def test_every_platform_names_itself_for_every_driver() -> None:
    raw = yaml.safe_load(resources.files("runner.inventory").joinpath("platforms.yaml")
                         .read_text(encoding="utf-8"))
    assert raw and sorted(raw) == platforms.names()
    fields = {f for f in dir(platforms.Platform) if not f.startswith("_")} | \
        set(platforms.Platform.__dataclass_fields__)
    for entry in builtin_drivers():
        assert entry.platform_attr in fields, entry.name
        for name in platforms.names():
            platform = platforms.get(name)
            value = getattr(platform, entry.platform_attr)
            assert isinstance(value, str) and value.strip(), (entry.name, name)


# --- error tables ---------------------------------------------------------------------------

def _wrapped(outer: BaseException, inner: BaseException) -> BaseException:
    """`outer` raised while handling `inner`, as netmiko wraps paramiko's errors."""
    try:
        try:
            raise inner
        except BaseException:
            raise outer  # noqa: B904 - the implicit context is the point
    except BaseException as exc:
        return exc


NM_OPEN, NM_OP = netmiko_driver._OPEN, netmiko_driver._OPERATION
SC_OPEN, SC_OP = scrapli_driver._OPEN, scrapli_driver._OPERATION
AS_OPEN, AS_OP = asyncssh_driver._OPEN, asyncssh_driver._OPERATION
NETMIKO_AUTH = NetmikoAuthenticationException(
    "Authentication to device failed.\n\nCommon causes of this problem are:\n1. Invalid "
    "username and password\n\nDevice settings: cisco_ios 10.0.0.1:22\n\n\nAuthentication "
    "failed.")
HOSTKEY = "Host key for server '10.0.0.1' does not match: got 'AAAA1', expected 'AAAA2'"

CASES: list[tuple[str, ErrorTable, BaseException, type[DeviceError], str]] = [
    # netmiko, opening
    ("nm-auth", NM_OPEN, NETMIKO_AUTH, AuthFailed, "authentication failed"),
    ("nm-auth-timeout", NM_OPEN, paramiko.AuthenticationException("Authentication timeout."),
     ConnectFailed, "timed out logging in"),
    ("nm-hostkey-mismatch", NM_OPEN, _wrapped(
        NetmikoTimeoutException(f"\nA paramiko SSHException occurred during connection "
                                f"creation:\n\n{HOSTKEY}\n\n"),
        paramiko.SSHException(HOSTKEY)), HostKeyMismatch, f"host key not trusted: {HOSTKEY}"),
    ("nm-hostkey-unknown", NM_OPEN, paramiko.SSHException(
        "Server '[10.0.0.1]:22' not found in known_hosts"), HostKeyMismatch,
     "host key not trusted: Server '[10.0.0.1]:22' not found in known_hosts"),
    ("nm-banner", NM_OPEN, _wrapped(
        NetmikoTimeoutException("\nA paramiko SSHException occurred during connection "
                                "creation:\n\nError reading SSH protocol banner\n\n"),
        paramiko.SSHException("Error reading SSH protocol banner")),
     ConnectFailed, "Error reading SSH protocol banner"),
    ("nm-no-hostkey-algorithm", NM_OPEN, paramiko.SSHException(
        "Incompatible ssh server (no acceptable host key)"), ConnectFailed,
     "Incompatible ssh server (no acceptable host key)"),
    ("nm-eof-open", NM_OPEN, EOFError(), ConnectFailed, "EOFError"),
    ("nm-lost-open", NM_OPEN, ReadException("Channel stream closed by remote device."),
     ConnectFailed, "Channel stream closed by remote device."),
    ("nm-hang-open", NM_OPEN, ReadTimeout("\nPattern not detected: 'r1\\#' in output.\n"),
     DeviceTimeout, "logged in, but the CLI did not answer: Pattern not detected"),
    # netmiko, an open session
    ("nm-lost", NM_OP, ReadException("the device closed the session"), SessionLost,
     "session lost: the device closed the session"),
    ("nm-write", NM_OP, OSError("Socket is closed"), SessionLost, "session lost: Socket is"),
    ("nm-eof", NM_OP, EOFError(), SessionLost, "session lost: EOFError"),
    ("nm-inactive", NM_OP, paramiko.SSHException("SSH session not active"), SessionLost,
     "session lost: SSH session not active"),
    ("nm-timeout", NM_OP, ReadTimeout("\nPattern not detected: 'r1\\#' in output.\n"),
     DeviceTimeout, "command timed out: Pattern not detected: 'r1\\#' in output."),
    ("nm-value", NM_OP, ValueError("Failed to enter configuration mode."), DeviceError,
     "ValueError: Failed to enter configuration mode."),
    # scrapli: libscrapli's `<error>: <text>`
    ("sc-timeout-open", SC_OPEN, TimeoutError(), ConnectFailed, "timed out opening"),
    ("sc-refused", SC_OPEN, OperationException(
        "Session: session.Session authenticate: open failed, error: 'connection refused'"),
     ConnectFailed, "open failed, error: 'connection refused'"),
    ("sc-eof-open", SC_OPEN, OperationException("EOF: "), ConnectFailed,
     "the session closed while opening: EOF"),
    ("sc-auth", SC_OPEN, OperationException(
        "Session: session.Session authenticate: password prompt  seen multiple times, "
        "assuming authentication failed"), AuthFailed, "authentication failed"),
    ("sc-hostkey-bin", SC_OPEN, OperationException(
        "Session: session.Session authenticate: open failed, error: 'host key verification "
        "failed'"), HostKeyMismatch, "host key not trusted: "),
    ("sc-hostkey-ssh2", SC_OPEN, OperationException(
        "Transport: ssh2.Transport initKnownHost: known host check mismatch"),
     HostKeyMismatch, "known host check mismatch"),
    ("sc-no-hostkey-algorithm", SC_OPEN, OperationException(
        "Session: open failed, error: 'no matching host key type found'"), ConnectFailed,
     "no matching host key type found"),
    ("sc-ssh2-silent", SC_OPEN, OperationException("Transport: "), DeviceError,
     "the ssh2 transport gave no reason"),
    ("sc-eof", SC_OP, OperationException("EOF: "), SessionLost, "session lost: EOF"),
    ("sc-reset", SC_OP, OperationException("Transport: ConnectionResetByPeer"), SessionLost,
     "session lost: Transport: ConnectionResetByPeer"),
    ("sc-timeout", SC_OP, TimeoutError(), DeviceTimeout, "command timed out"),
    ("sc-other", SC_OP, OperationException("Driver: no such mode 'shell'"), DeviceError,
     "OperationException: Driver: no such mode 'shell'"),
    # runner's asyncssh driver: asyncssh's errors and its own prompt reads
    ("as-refused", AS_OPEN, ConnectionRefusedError(111, "Connection refused"), ConnectFailed,
     "Connection refused"),
    ("as-timeout-open", AS_OPEN, TimeoutError(), ConnectFailed, "timed out opening"),
    ("as-auth", AS_OPEN, asyncssh.PermissionDenied("Permission denied for user admin"),
     AuthFailed, "authentication failed"),
    ("as-hostkey", AS_OPEN, asyncssh.HostKeyNotVerifiable("Host key is not trusted"),
     HostKeyMismatch, "host key not trusted: Host key is not trusted"),
    ("as-closed-open", AS_OPEN, asyncssh_driver.ChannelClosed("Connection lost"),
     ConnectFailed, "the session closed before the first prompt: Connection lost"),
    ("as-hang-open", AS_OPEN, asyncssh_driver.NoPrompt("no prompt within 5s"), DeviceTimeout,
     "logged in, but the CLI did not answer: no prompt within 5s"),
    ("as-closed", AS_OP, asyncssh_driver.ChannelClosed("Connection lost"), SessionLost,
     "session lost mid-command: Connection lost"),
    ("as-write", AS_OP, BrokenPipeError("Channel not open for sending"), SessionLost,
     "session lost mid-command: Channel not open for sending"),
    ("as-lost", AS_OP, asyncssh.ConnectionLost("Connection lost"), SessionLost,
     "session lost mid-command: Connection lost"),
    ("as-hang", AS_OP, asyncssh_driver.NoPrompt("no prompt within 5s"), DeviceTimeout,
     "no prompt within 5s"),
]


@pytest.mark.parametrize(("table", "exc", "error", "message"),
                         [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_error_tables_map_library_errors(table: ErrorTable, exc: BaseException,
                                         error: type[DeviceError], message: str) -> None:
    with pytest.raises(DeviceError) as caught, table.boundary((PASSWORD,)):
        raise exc
    assert type(caught.value) is error
    assert message in str(caught.value), str(caught.value)
    assert caught.value.__cause__ is exc  # the library's own error stays in the traceback
    assert "\n" not in str(caught.value)


def test_loss_is_unreachable_before_the_session_and_failed_after() -> None:
    for opening, operating, lost in ((NM_OPEN, NM_OP, EOFError()),
                                     (SC_OPEN, SC_OP, OperationException("EOF: ")),
                                     (AS_OPEN, AS_OP, asyncssh_driver.ChannelClosed("gone"))):
        before, after = opening.map(lost), operating.map(lost)
        assert before is not None and after is not None
        assert (before.status, before.error_class) == ("unreachable", "ConnectFailed")
        assert (after.status, after.error_class) == ("failed", "SessionLost")


def test_runner_errors_and_cancellation_pass_a_boundary_unchanged() -> None:
    mine = AuthFailed("enable refused: the secret was not accepted")
    for table in (NM_OPEN, NM_OP, SC_OPEN, SC_OP, AS_OPEN, AS_OP):
        with pytest.raises(AuthFailed) as caught, table.boundary():
            raise mine
        assert caught.value is mine and caught.value.__cause__ is None
        with pytest.raises(KeyboardInterrupt), table.boundary():
            raise KeyboardInterrupt


def test_errors_no_row_knows_are_left_alone() -> None:
    # not the library's: a bug, for the engine to record as InternalError with its traceback
    for table in (SC_OPEN, SC_OP, AS_OPEN, AS_OP):
        with pytest.raises(KeyError), table.boundary():
            raise KeyError("bug")
    assert ErrorTable(Rule(OSError, ConnectFailed, "{reason}")).map(ValueError("x")) is None


def test_a_credential_in_a_library_message_is_masked() -> None:
    params = ConnectParams(host="r1", hostname="10.0.0.1", port=22, username="admin",
                           password=PASSWORD, platform="cisco_ios",
                           driver_platform="cisco_ios",
                           extras={"secret": "En4ble-77f2", "known_hosts": "/x"})
    assert set(params.secrets) == {PASSWORD, "En4ble-77f2"}
    assert PASSWORD not in repr(params)
    for table, exc in ((SC_OPEN, OperationException(
            f"Session: open failed, error: 'bad login {PASSWORD}'")),
                       (NM_OP, OSError(f"write failed: En4ble-77f2 {PASSWORD}")),
                       (AS_OPEN, OSError(f"no route ({PASSWORD})"))):
        error = table.map(exc, params.secrets)
        assert error is not None
        assert PASSWORD not in str(error) and "En4ble-77f2" not in str(error)
        assert MASK in str(error)


def test_a_long_library_message_is_one_capped_line() -> None:
    error = SC_OP.map(OperationException("EOF: " + "x" * 5000 + "\nmore"))
    assert error is not None and len(str(error)) < 400 and "\n" not in str(error)


# --- netmiko: a dropped session is noticed at once ----------------------------------------

class _Chan:
    """The part of a paramiko channel netmiko's SSHChannel reads."""

    def __init__(self, data: bytes = b"", closed: bool = False, eof: bool = False) -> None:
        self.data = data
        self.closed = closed
        self.eof_received = eof

    def recv_ready(self) -> bool:
        return bool(self.data)

    def recv(self, n: int) -> bytes:
        out, self.data = self.data[:n], self.data[n:]
        return out


@pytest.mark.parametrize(("closed", "eof"), [(True, False), (False, True)])
def test_netmiko_reads_what_came_before_a_close_then_raises(closed: bool, eof: bool) -> None:
    chan: Any = _Chan(b"hostname r1\r\n", closed=closed, eof=eof)
    live = netmiko_driver._LiveSSHChannel(chan, "utf-8")
    assert live.read_channel() == "hostname r1\r\n"
    with pytest.raises(ReadException):
        live.read_channel()
    error = NM_OP.map(ReadException("the device closed the session"))
    assert isinstance(error, SessionLost)


def test_netmiko_waits_quietly_on_an_open_channel() -> None:
    chan: Any = _Chan()
    assert netmiko_driver._LiveSSHChannel(chan, "utf-8").read_channel() == ""
