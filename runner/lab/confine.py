"""How lab processes are held inside their node: capability bounding sets, a read-only and
locked view of the host's filesystems, and a /dev without the host's disks.

Every process a lab starts (FRR daemons, sshd, a topology's `exec:` lines) runs in a mount
namespace where each filesystem of the host is read-only, then locked that way: the
namespace is a copy made from a child user namespace, so the kernel refuses to make those
mounts writable again, even to a process with every capability. What stays writable is the
node's own: tmpfs for /run, /tmp, /var/tmp, /var/log, a /dev holding a few character
devices and a private devpts, the node's directory (at /run/node) and /proc/sys/net (its
network namespace's sysctls). On top of that each process keeps only the capabilities its
job needs (setpriv's bounding set, no_new_privs), so neither root nor a setuid program
regains the others (module loading, raw I/O, ptrace, mknod, chroot into other namespaces).
FRR insists on CAP_SYS_ADMIN (its zprivs refuses to start without it); the locked mounts
and the device-less /dev are what keep that one from reaching the host.

A check reads the namespace's mount table once it is built: if any mount of the host is
still writable, the node does not start (exit 97), rather than start unconfined.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping, Sequence
from pathlib import Path

# Capability sets (bounding sets: what the process and its children may ever hold).
FRR_CAPS = ("net_admin", "net_raw", "net_bind_service", "sys_admin", "setuid", "setgid",
            "dac_override", "chown", "fowner", "kill")
SSHD_CAPS = ("setuid", "setgid", "sys_chroot", "net_bind_service", "chown", "fowner",
             "dac_override", "kill", "audit_write")
# A topology's exec lines configure the node's network, as an unprivileged user.
EXEC_CAPS = ("net_admin", "net_raw", "net_bind_service")
NO_CAPS: tuple[str, ...] = ()

CLEAN_ENV = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
             "HOME": "/tmp", "LANG": "C.UTF-8"}
NODE_MOUNT = "/run/node"  # the node's own directory, inside its namespaces
CONFINED_EXIT = 97  # the node could not be confined: it does not start
# Writable in a confined namespace: the node's own mounts, and nothing of the host.
_PRIVATE_DIRS = ("/run", "/dev", "/dev/pts", "/dev/shm", "/tmp", "/var/tmp", "/var/log",
                 "/proc/sys/net")
_DEVICES = ("null", "zero", "full", "random", "urandom", "tty")


def unavailable(sysctl: str = "/proc/sys/user/max_user_namespaces") -> str | None:
    """Why nodes cannot be confined on this machine (no user namespaces to lock their
    mounts with), or None."""
    try:
        allowed = int(Path(sysctl).read_text(encoding="utf-8").strip())
    except (OSError, ValueError):
        return None  # a kernel without the knob: unshare itself will say
    if allowed <= 0:
        return ("user namespaces are disabled (sysctl user.max_user_namespaces=0); the lab "
                "locks each node's view of the host read-only with one, and does not start "
                "nodes it cannot confine")
    return None


def caps_arg(caps: Sequence[str]) -> str:
    return ",".join(["-all", *(f"+{c}" for c in caps)])


def setpriv(caps: Sequence[str], *, uid: int | None = None, gid: int | None = None,
            groups: Sequence[int] | None = None) -> list[str]:
    """argv prefix running a program with only `caps` in its bounding set, no_new_privs,
    and (given uid) as that user with `caps` ambient, so an unprivileged user keeps them."""
    argv = ["setpriv"]
    if uid is not None:
        argv += [f"--reuid={uid}", f"--regid={gid if gid is not None else uid}"]
        argv += [f"--groups={','.join(map(str, groups))}"] if groups else ["--clear-groups"]
        argv += [f"--inh-caps={caps_arg(caps)}", f"--ambient-caps={caps_arg(caps)}"]
    else:
        argv += ["--inh-caps=-all"]
    argv += [f"--bounding-set={caps_arg(caps)}", "--no-new-privs", "--"]
    return argv


def setpriv_line(caps: Sequence[str], **kwargs: object) -> str:
    return shlex.join(setpriv(caps, **kwargs))  # type: ignore[arg-type]


def mount_escape(path: str) -> str:
    """A path as /proc/self/mountinfo writes it (space, tab, newline, backslash octal)."""
    return "".join(f"\\{ord(c):03o}" if c in " \t\n\\" else c for c in path)


def _read_only_host() -> list[str]:
    """Remount every mount read-only (and nosuid, nodev outside /dev)."""
    return [
        "for m in $(awk '{print $5}' /proc/self/mountinfo | sort -u); do",
        "  p=$(printf '%b' \"$m\")",
        "  case \"$p\" in /dev|/dev/*) o=ro,nosuid ;; *) o=ro,nosuid,nodev ;; esac",
        "  mount -o \"remount,bind,$o\" \"$p\" 2>&- || true",
        "done",
    ]


def _private_dev(staging: str) -> list[str]:
    """A /dev of a few character devices and a devpts of its own: no disks, no consoles."""
    nodes = " ".join(_DEVICES)
    return [
        f"mkdir -p {staging}",
        f"mount --bind /dev {staging}",
        "mount -t tmpfs -o mode=0755,size=64k,nosuid,noexec runner-dev /dev",
        f"for d in {nodes}; do : >/dev/$d; mount --bind {staging}/$d /dev/$d; done",
        f"umount {staging}",
        f"rmdir {staging}",
        "mkdir /dev/pts /dev/shm",
        "mount -t devpts -o newinstance,ptmxmode=0666,mode=0620,gid=5,nosuid,noexec "
        "runner-pts /dev/pts",
        "ln -s pts/ptmx /dev/ptmx",
        "mount -t tmpfs -o mode=1777,size=16m,nosuid,nodev runner-shm /dev/shm",
        "ln -s /proc/self/fd /dev/fd",
        *[f"ln -s /proc/self/fd/{i} /dev/{name}"
          for i, name in enumerate(("stdin", "stdout", "stderr"))],
    ]


def _tmpfs(path: str, mode: str = "1777", size: str = "64m") -> str:
    return f"mount -t tmpfs -o mode={mode},size={size},nosuid,nodev runner-tmp {path}"


def _net_sysctls_writable() -> list[str]:
    return ["mount --bind /proc/sys/net /proc/sys/net",
            "mount -o remount,bind,rw,nosuid,nodev,noexec /proc/sys/net"]


def _check(mountinfo: str, writable: Sequence[str]) -> list[str]:
    """Fail closed: every mount not in `writable` must be read-only."""
    keep = " ".join(mount_escape(p) for p in writable)
    return [
        f"bad=$(awk -v keep=' {keep} ' '{{ split($6, o, \",\"); "
        f"if (o[1] != \"ro\" && index(keep, \" \" $5 \" \") == 0) print $5 }}' {mountinfo})",
        f"[ -z \"$bad\" ] || {{ echo \"runner lab: could not make read-only:\" $bad >&2; "
        f"exit {CONFINED_EXIT}; }}",
    ]


def router_prepare(node_dir: str) -> list[str]:
    """Shell lines confining a router before its daemons start (root, full capabilities,
    in the mount namespace `ip netns exec` made): the host read-only, the node's private
    mounts, its directory at NODE_MOUNT. The router's own binds come next, then
    router_lock()."""
    q = shlex.quote
    return [
        "# confine: every mount of the host read-only, then the node's own mounts",
        *_read_only_host(),
        "mount -t tmpfs -o mode=0755,size=16m,nosuid,nodev runner-run /run",
        f"mkdir -p /run/sshd /run/frr {NODE_MOUNT}",
        f"mount --bind {q(node_dir)} {NODE_MOUNT}",
        f"mount -o remount,bind,rw,nosuid,nodev {NODE_MOUNT}",
        *_private_dev("/run/.hostdev"),
        *[_tmpfs(p) for p in ("/tmp", "/var/tmp", "/var/log")],
        "mkdir -p /var/tmp/frr /var/log/frr",
        "chown frr:frr /var/tmp/frr /var/log/frr",
        *_net_sysctls_writable(),
    ]


def router_lock(writable: Sequence[str]) -> list[str]:
    """Shell lines locking the namespace router_prepare() built (with `writable`, the
    router's own binds, left writable): afterwards $IN prefixes commands so they run in
    the locked copy, whose read-only mounts nothing can make writable again."""
    return [
        # A copy made from a child user namespace: its read-only mounts are locked.
        "unshare --user --mount --propagation private -- sleep 2147483647 &",
        "holder=$!",
        "trap 'kill $holder 2>/dev/null' EXIT",
        'while [ "$(readlink /proc/$holder/ns/mnt || echo gone)" = '
        '"$(readlink /proc/self/ns/mnt)" ]; do sleep 0.01; done',
        *_check("/proc/$holder/mountinfo", (*_PRIVATE_DIRS, NODE_MOUNT, *writable)),
        'IN="nsenter --mount=/proc/$holder/ns/mnt --"',
    ]


def exec_script(fresh_dev: bool) -> str:
    """`sh -c` script running "$0" (an exec line) in a fresh mount namespace built like a
    router's, its /proc showing only its own processes, as an unprivileged user ($1, group
    $2, supplementary groups $3: a comma-separated list, maybe empty) holding only
    EXEC_CAPS, with a clean environment plus the NAME=VALUE words after $3 (applied only
    to the command: nothing the topology sets reaches the privileged steps before it)."""
    lines = [
        "set -eu",
        *_read_only_host(),
        _tmpfs("/tmp"),
        # A router's namespace has its private /dev already (and its mounts, locked, could
        # not be bound again one by one).
        *(_private_dev("/tmp/.hostdev") if fresh_dev else []),
        _tmpfs("/var/tmp"),
        # Its own view of /proc: other users' processes hidden, read-only but for the
        # node's network sysctls.
        "mount -t proc -o hidepid=invisible,nosuid,nodev,noexec runner-proc /proc",
        "mount -o remount,bind,ro,nosuid,nodev,noexec /proc",
        *_net_sysctls_writable(),
        *_check("/proc/self/mountinfo", ("/dev", "/dev/pts", "/dev/shm", "/tmp", "/var/tmp",
                                         "/proc/sys/net")),
        "cd /",
        'uid=$1 gid=$2 groups=--clear-groups',
        '[ -z "$3" ] || groups="--groups=$3"',
        "shift 3",
        'exec setpriv --reuid="$uid" --regid="$gid" "$groups" '
        f"--inh-caps={caps_arg(EXEC_CAPS)} --ambient-caps={caps_arg(EXEC_CAPS)} "
        f"--bounding-set={caps_arg(EXEC_CAPS)} --no-new-privs -- "
        f"env -i {' '.join(f'{k}={v}' for k, v in CLEAN_ENV.items())} \"$@\" sh -c \"$0\"",
    ]
    return "\n".join(lines)


def exec_argv(command: str, uid: int, gid: int, groups: Sequence[int] = (),
              env: Mapping[str, str] | None = None, *, fresh_dev: bool = True) -> list[str]:
    """argv (after the namespace prefix) running one exec line confined, as `uid`, with
    `env` (names checked when the topology was loaded) set for the command alone. Run it
    with a clean environment too (CLEAN_ENV)."""
    return ["unshare", "--mount", "--propagation", "private", "--", "sh", "-c",
            exec_script(fresh_dev), command, str(uid), str(gid), ",".join(map(str, groups)),
            *(f"{k}={v}" for k, v in (env or {}).items())]
