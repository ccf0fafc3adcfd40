"""Reusable host buffers: large float32 arrays kept for the next computation of the same size.

Fresh memory page-faults slowly (a 0.6 GiB gate trace spends a good part of its time
faulting pages in), so a second extraction of the same size should find the first one's
memory already mapped. :func:`take` hands out a 1-D float32 array from a module-level pool;
the array returns to the pool by itself when the last numpy view of it is garbage collected
(a :class:`Lease` is the views' base and gives the buffer back in ``__del__``). The pool
keeps at most :func:`set_workspace_limit` bytes, the oldest buffers going first.
"""

from __future__ import annotations

import contextlib
import threading

import numpy as np

DEFAULT_LIMIT = 1 << 30
"""Bytes of released buffers kept for reuse by default (1 GiB)."""


class Lease:
    """Exposes one pooled buffer to numpy; gives it back to the pool when the last view of
    it is garbage collected (numpy keeps this object as the views' base)."""

    def __init__(self, pool: BufferPool, buf: np.ndarray) -> None:
        self._pool: BufferPool | None = pool
        self._buf = buf
        self.__array_interface__ = buf.__array_interface__

    def __del__(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            with contextlib.suppress(Exception):  # at interpreter shutdown: nothing to do
                pool.give_back(self._buf)


class BufferPool:
    """Large float32 buffers kept for reuse, at most ``max_bytes`` of them (thread-safe)."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = int(max_bytes)
        self._free: list[np.ndarray] = []
        self._lock = threading.Lock()

    def take(self, numel: int) -> np.ndarray:
        """A 1-D float32 array of ``numel`` elements (uninitialised): a kept buffer of at
        least that size (and at most about twice it) when there is one, else fresh memory."""
        buf = None
        with self._lock:
            fits = [b for b in self._free if numel <= b.size <= 2 * numel + 4096]
            if fits:
                buf = min(fits, key=lambda b: b.size)
                self._free = [b for b in self._free if b is not buf]
        if buf is None:
            buf = np.empty(max(int(numel), 1), dtype=np.float32)
        return np.asarray(Lease(self, buf))[:numel]

    def give_back(self, buf: np.ndarray) -> None:
        with self._lock:
            if buf.nbytes > self.max_bytes:
                return
            self._free.append(buf)
            while sum(b.nbytes for b in self._free) > self.max_bytes:
                self._free.pop(0)  # the oldest goes first

    def clear(self) -> None:
        with self._lock:
            self._free = []

    @property
    def pooled_bytes(self) -> int:
        with self._lock:
            return sum(b.nbytes for b in self._free)


_POOL = BufferPool(max_bytes=DEFAULT_LIMIT)


def take(numel: int) -> np.ndarray:
    """A 1-D float32 array of ``numel`` elements from the shared pool (uninitialised); it
    returns to the pool when the last array viewing it is dropped."""
    return _POOL.take(numel)


def release_workspace() -> None:
    """Free the memory kept for reuse by earlier computations."""
    _POOL.clear()


def set_workspace_limit(max_bytes: int) -> None:
    """Keep at most ``max_bytes`` of released buffers for reuse (0 = none)."""
    _POOL.max_bytes = int(max_bytes)
    if max_bytes <= 0:
        _POOL.clear()


def workspace_bytes() -> int:
    """Bytes currently kept for reuse (not held by any live array)."""
    return _POOL.pooled_bytes
