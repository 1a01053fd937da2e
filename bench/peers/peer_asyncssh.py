"""The floor: a minimal asyncssh script, one asyncio process, no framework.

Same SSH work as runner: log in, open an interactive shell, read to the prompt,
`terminal length 0` and `terminal width 511`, the commands (or conf t + lines + end),
disconnect. Same cipher
preference as runner (AES-GCM first) and, as runner, no key, agent or ssh_config lookups
per connection; no host-key checking (runner does check); asyncssh's log lines built only
when logged (runner.drivers.sshlog, which runner and its simulator use: the floor does not
pay for work runner skips in the library). At most
CONCURRENCY devices at once (default 1000, the bench jobs' `concurrency:`), as runner: with
all 10,000 sessions opened at once the logins time out.
usage: peer_asyncssh.py INVENTORY_DIR show|push [CONCURRENCY]
"""

from __future__ import annotations

import asyncio
import re
import sys
from pathlib import Path
from typing import Any

import asyncssh
from work import PUSH, SHOW, fleet, report

from runner.drivers import sshlog

sshlog.install()

PROMPT = re.compile(r"[>#] ?$")


async def device(host: dict[str, Any], defaults: dict[str, Any], mode: str) -> None:
    async with asyncssh.connect(host["hostname"], host["port"], username=defaults["username"],
                                password=defaults["password"], known_hosts=None,
                                encryption_algs=["aes128-gcm@openssh.com"],
                                # as runner: no ~/.ssh keys, agent or config looked up per
                                # connection (the floor must not do work runner skips)
                                client_keys=None, agent_path=None, config=None) as conn:
        writer, reader, _ = await conn.open_session(term_type="vt100")

        async def until_prompt() -> str:
            buf = ""
            while not PROMPT.search(buf[-3:]):
                chunk = await reader.read(65536)
                if not chunk:
                    raise ConnectionError("session closed")
                buf += chunk
            return buf

        await until_prompt()
        setup = ["terminal length 0", "terminal width 511"]  # as runner (and netmiko) do
        lines = [*setup, *SHOW] if mode == "show" else \
            [*setup, "configure terminal", *PUSH, "end"]
        for line in lines:
            writer.write(line + "\n")
            await until_prompt()


async def main() -> None:
    hosts, defaults = fleet(Path(sys.argv[1]))
    limit = asyncio.Semaphore(int(sys.argv[3]) if len(sys.argv) > 3 else 1000)

    async def bounded(host: dict[str, Any]) -> None:
        async with limit:
            await device(host, defaults, sys.argv[2])

    results = await asyncio.gather(*(bounded(h) for h in hosts), return_exceptions=True)
    errors = {h["name"]: repr(r) for h, r in zip(hosts, results, strict=True)
              if isinstance(r, BaseException)}
    report(len(hosts) - len(errors), len(errors), errors)


asyncio.run(main())
