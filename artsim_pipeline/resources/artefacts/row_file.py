"""Rows of a stored 2-D ``.npy`` array read on demand with ``pread``: the full vectors of a
two-stage `ann_index` (`core.ann.reduction`), of which a query reads only its candidates' rows.

Why not a memory map: every page fault on a mapped file maps the pages around it too (the
kernel's fault-around, 64 KB), and they count as the server's resident memory. Measured with
`benchmarks/bench_serve.py` at 470,000 works x 1,280 float16 dimensions: 400 `/api/similar`
requests left 1.29 GB of the 1.15 GB file's pages resident (with the serving copies). Read with
``pread`` the rows pass through the page cache, which the kernel manages, never the process's
memory.

The file descriptor is opened once: a newer index written over the directory (renamed into
place) does not change what an index already loaded reads.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np


class RowFile:
    """A read-only 2-D array on disk: ``rows[labels]`` (an integer array) reads those rows;
    ``np.asarray(rows)`` reads them all (what an update of the index starts from)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        with open(self.path, "rb") as f:
            version = np.lib.format.read_magic(f)
            read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            shape, fortran, dtype = read_header(f)
            self._offset = f.tell()
        if len(shape) != 2 or fortran:
            raise ValueError(f"{self.path}: expected a C-ordered 2-D array, got shape {shape}")
        self.shape, self.dtype = tuple(shape), np.dtype(dtype)
        self._row_bytes = self.shape[1] * self.dtype.itemsize
        self._fd = os.open(self.path, os.O_RDONLY)

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, labels) -> np.ndarray:
        labels = np.asarray(labels, dtype=np.int64)
        flat = labels.ravel()
        if flat.size and (flat.min() < 0 or flat.max() >= self.shape[0]):
            raise IndexError(f"row out of range 0..{self.shape[0] - 1}")
        out = np.empty((flat.size, self.shape[1]), dtype=self.dtype)
        buffer = memoryview(out).cast("B")
        for i, label in enumerate(flat.tolist()):
            self._read_into(buffer[i * self._row_bytes : (i + 1) * self._row_bytes], self._offset + label * self._row_bytes)
        return out.reshape(*labels.shape, self.shape[1])

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        out = np.empty(self.shape, dtype=self.dtype)
        buffer = memoryview(out).cast("B")
        chunk = 64 << 20
        for start in range(0, len(buffer), chunk):
            self._read_into(buffer[start : start + chunk], self._offset + start)
        return out if dtype is None else out.astype(dtype)

    def _read_into(self, buffer: memoryview, offset: int) -> None:
        done = 0
        while done < len(buffer):
            got = os.preadv(self._fd, [buffer[done:]], offset + done)
            if got <= 0:
                raise OSError(f"{self.path}: file ends before row data at byte {offset + done}")
            done += got

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __del__(self) -> None:
        self.close()
