"""One `artsim materialize` at a time per `$ARTSIM_HOME`.

Two runs over one home would both ingest, embed and train, and register two model versions for
one change. The lock is an exclusive `flock` on `<home>/locks/materialize.lock`, so the kernel
drops it when the process ends, however it ends (nothing stale to clean up after a crash). The
file names its holder (pid, host, start time, command) for the message the second run prints.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterator

LOCK_NAME = "locks/materialize.lock"


class RunLockBusy(RuntimeError):
    """Another run holds the lock (the message says which)."""


def _holder(path: Path) -> str:
    try:
        info = json.loads(path.read_text(encoding="utf-8") or "{}")
    except (OSError, ValueError):
        info = {}
    if not isinstance(info, dict) or not info.get("pid"):
        return "another artsim materialize"
    return (f"artsim materialize (pid {info.get('pid')} on {info.get('host', '?')}, "
            f"started {info.get('started_at', '?')})")


@contextmanager
def run_lock(home: str | os.PathLike[str], *, wait: bool = False, poll_s: float = 1.0,
             on_wait: Callable[[str], None] | None = None) -> Iterator[Path]:
    """Hold the run lock of `home` for the block. Busy: raise `RunLockBusy`, or with `wait`
    call `on_wait(holder)` once and wait until the lock is free."""
    import fcntl

    path = Path(home) / LOCK_NAME
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        told = False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                holder = _holder(path)
                if not wait:
                    raise RunLockBusy(f"{holder} is already running on this ARTSIM_HOME; wait for it to finish, "
                                      "or run again with --wait") from None
                if not told and on_wait is not None:
                    on_wait(holder)
                    told = True
                time.sleep(poll_s)
        info = {"pid": os.getpid(), "host": socket.gethostname(), "command": " ".join(sys.argv[:4]),
                "started_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(info).encode("utf-8"), 0)
        try:
            yield path
        finally:
            os.ftruncate(fd, 0)
    finally:
        os.close(fd)  # releases the lock
