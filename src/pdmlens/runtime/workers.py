"""Persistent worker threads that each run torch with ONE intra-op thread.

Why. A time loop that issues ~9 small torch ops per step (the gate recorder's) makes every
op an OpenMP parallel region with a barrier; on a busy, shared machine every barrier waits
for a descheduled thread (measured: 5-20x slower than on an idle one). Splitting the work
into independent pieces run by k single-threaded workers has no barriers and still uses k
cores.

Each task runs while its worker holds one thread of the process's thread budget
(:func:`pdmlens.runtime.threads.compute_threads` ``(1)``), so a worker never changes a count
anybody else computes with and is back at the default afterwards. A caller that itself holds
another count cannot hand work to 1-thread workers (they would wait for it to let go while
it waits for them): :func:`run_single_threaded` then runs the tasks one after another in the
calling thread, under the caller's count.
"""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Callable, Sequence

from pdmlens.runtime.threads import compute_threads, held_threads

Task = Callable[[], None]


class Job:
    """Completion count and first error of a batch of tasks handed to the workers."""

    def __init__(self, n: int) -> None:
        self._left = n
        self._cond = threading.Condition()
        self.error: BaseException | None = None

    def done(self, error: BaseException | None) -> None:
        with self._cond:
            self._left -= 1
            if error is not None and self.error is None:
                self.error = error
            if self._left == 0:
                self._cond.notify_all()

    def wait(self) -> None:
        with self._cond:
            while self._left > 0:
                self._cond.wait()


class Workers:
    """A pool of daemon threads, grown on demand and never shrunk, serving one queue."""

    def __init__(self, name: str = "pdmlens-worker") -> None:
        self.name = name
        self._lock = threading.Lock()
        self._tasks: queue.SimpleQueue[tuple[Task, Job]] = queue.SimpleQueue()
        self._size = 0

    @property
    def size(self) -> int:
        return self._size

    def reset_after_fork(self) -> None:
        """In a forked child: the parent's threads do not exist there."""
        self._lock = threading.Lock()
        self._tasks = queue.SimpleQueue()
        self._size = 0

    def _grow(self, k: int) -> None:
        with self._lock:
            for _ in range(k - self._size):
                threading.Thread(target=self._serve, daemon=True, name=self.name).start()
            self._size = max(self._size, k)

    def _serve(self) -> None:
        while True:
            fn, job = self._tasks.get()
            try:
                with compute_threads(1, libraries=False):
                    fn()
            except BaseException as exc:  # noqa: BLE001 - handed to the caller
                job.done(exc)
            else:
                job.done(None)

    def run(self, fns: Sequence[Task]) -> None:
        """Run ``fns`` concurrently (one worker each); re-raise the first error."""
        if not fns:
            return
        self._grow(len(fns))
        job = Job(len(fns))
        for fn in fns:
            self._tasks.put((fn, job))
        job.wait()
        if job.error is not None:
            raise job.error


_WORKERS = Workers()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_WORKERS.reset_after_fork)


def run_single_threaded(fns: Sequence[Task]) -> None:
    """Run ``fns`` concurrently on single-threaded workers and wait for all of them; the
    first error is re-raised. Inside a hold of another thread count (see the module
    docstring) they run one after another in the calling thread instead."""
    held = held_threads()
    if held is not None and held != 1:
        for fn in fns:
            fn()
        return
    _WORKERS.run(fns)
