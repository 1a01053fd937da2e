"""One process of a fleet spread over several (`python -m runner.lab.sim.part`, started by
the supervisor in runner.lab.sim.spread): reads its devices from stdin, serves them, prints
its state when it listens, and stops on SIGTERM or when the supervisor is gone (stdin
closes, even if the supervisor was SIGKILLed)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runner.errors import RunnerError
from runner.logsetup import inherit

if TYPE_CHECKING:
    from runner.lab.sim.server import FleetConfig


async def serve_part(directory: Path, fleet: FleetConfig, label: str) -> None:
    from runner.drivers.sshlib import asyncssh
    from runner.lab.sim import fleet as fleet_files
    from runner.lab.sim.process import part_state, watch_descriptors
    from runner.lab.sim.server import serve

    started = time.monotonic()
    loop = asyncio.get_running_loop()
    watch_descriptors(loop, fleet, label)
    key = asyncssh.read_private_key(str(directory / fleet_files.HOST_KEY))
    acceptors = await serve(fleet, key)
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    gone = asyncio.ensure_future(reader.read())  # returns at EOF: the supervisor is gone
    stopped = asyncio.ensure_future(stop.wait())
    try:
        sys.stdout.write(json.dumps(part_state(fleet, started)) + "\n")
        sys.stdout.flush()
        await asyncio.wait([gone, stopped], return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (gone, stopped):
            task.cancel()
        for acceptor in acceptors:
            acceptor.close()


def main() -> int:
    # Ctrl-C reaches the whole process group: the supervisor stops every part itself, so
    # that a part ending first is never mistaken for one that died.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    inherit(logging.WARNING)  # libraries' deprecation notices stay out of the way, as in runner
    from runner.lab.sim import fleet as fleet_files

    config: dict[str, Any] = json.loads(sys.stdin.buffer.readline())
    slots = [fleet_files.Slot(*row) for row in config["slots"]]
    fleet = fleet_files.serving(slots, config["username"], config["password"],
                                config["slow_delay"], config["enable_secret"])
    label = str(config["label"])
    try:
        asyncio.run(serve_part(Path(config["directory"]), fleet, label))
    except RunnerError as exc:
        print(f"runner lab sim: {label}: {exc}", file=sys.stderr, flush=True)
        return 1
    return 0


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
