"""asyncssh as runner uses it: imported with its search for optional C libraries kept to
what the loader loads, its log lines built only when logged (runner.drivers.sshlog).

At import asyncssh looks for liboqs (post-quantum key exchange) and libnettle (UMAC) with
ctypes.util.find_library, which on Linux runs `ldconfig -p` and, for a library that is not
there, also gcc and ld with child processes: ~25 ms of CPU (60% of it the compiler) at every
start, before the first device, on a machine without liboqs. Here the search is ldconfig's
cache, then LD_LIBRARY_PATH and the loader's default directories: where dlopen, which loads
what find_library names, looks. A library it finds, asyncssh uses as before; one only a
compiler's link search would find (not loadable by name anyway) is left out.
"""

from __future__ import annotations

import ctypes.util
import glob
import os
from collections.abc import Callable, Mapping

# The loader's directories when a library is in neither LD_LIBRARY_PATH nor its cache.
DEFAULT_DIRS = ("/lib", "/usr/lib", "/lib64", "/usr/lib64")


def loader_search(ldconfig: Callable[[str], str | None],
                  env: Mapping[str, str] = os.environ) -> Callable[[str], str | None]:
    """find_library(name) over what dlopen searches: `ldconfig` (the stdlib's lookup in
    ldconfig's cache) first, then LD_LIBRARY_PATH and DEFAULT_DIRS for lib<name>.so*."""

    def find(name: str) -> str | None:
        found = ldconfig(name)
        if found:
            return found
        dirs = [d for d in env.get("LD_LIBRARY_PATH", "").split(":") if d]
        for directory in (*dirs, *DEFAULT_DIRS):
            files = sorted(glob.glob(os.path.join(glob.escape(directory),
                                                  f"lib{glob.escape(name)}.so*")))
            if files:
                return files[0]
        return None

    return find


_ldconfig = getattr(ctypes.util, "_findSoname_ldconfig", None)  # Linux CPython's
_find_library = ctypes.util.find_library
if _ldconfig is not None:  # elsewhere asyncssh searches as it always does
    ctypes.util.find_library = loader_search(_ldconfig)  # type: ignore[assignment]
try:
    import asyncssh
finally:
    ctypes.util.find_library = _find_library

from runner.drivers import sshlog  # noqa: E402 (asyncssh first, with the search above)

sshlog.install()  # asyncssh builds a session's log lines only when they are logged

__all__ = ["asyncssh"]
