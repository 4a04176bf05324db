"""An append-only file that several threads and processes write at once without losing a line.

:func:`append_line`: the file is opened in append mode, an exclusive ``fcntl.flock`` is taken,
the whole line is written (one ``os.write`` loop on an ``O_APPEND`` descriptor), then
``fsync``-ed before the lock is released (and the directory ``fsync``-ed when the file was
new). Concurrent writers therefore never interleave, and a crash can at worst leave a *torn*
last line; the lines before it were already on disk. A writer that finds the file not ending in
a newline (a torn line from an earlier crash) first ends that line, so its own line stays
intact. :func:`read_all` reads under a shared lock, so it never sees half a line being written.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def append_line(path: str | os.PathLike[str], line: bytes) -> Path:
    """Append `line` (one line, ending in a newline) durably; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = line
    created = not path.exists()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            size = os.fstat(fd).st_size
            if size:
                # a crash may have left an unterminated (torn) last line: end it first, so that
                # the torn bytes stay one bad line instead of corrupting this record
                with open(path, "rb") as tail:
                    tail.seek(size - 1)
                    if tail.read(1) != b"\n":
                        data = b"\n" + data
            view = memoryview(data)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            os.fsync(fd)
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
    if created:
        _fsync_dir(path.parent)
    return path


def read_all(path: str | os.PathLike[str]) -> bytes:
    """The whole file (b"" when it does not exist), read under a shared lock."""
    path = Path(path)
    if not path.exists():
        return b""
    with open(path, "rb") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_SH)
        try:
            return fh.read()
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
