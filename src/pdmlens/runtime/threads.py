"""The CPU thread budget: the one place that changes torch's and the BLAS/OpenMP thread counts.

Why this exists. torch's thread count is a per-thread OpenMP setting *plus* a process-wide
default: ``torch.set_num_threads(n)`` sets the calling thread's count and the count every
thread picks up at its first torch call later on. BLAS (OpenBLAS) counts are process-wide
outright. GEMM results depend on the thread count in their last bits (an LSTM trained with 1
and with 2 threads differs by ~3e-8 in its weights), so a step that changes a count while a
sibling step runs, or that "restores what it saw" when another thread had changed it, makes
the next training repeat with another count and other numbers. Save-and-restore of a global
from several threads is not reentrant: the last restorer wins, whatever it saw.

The rule here: counts are *held*, never saved and restored.

- :func:`compute_threads` ``(n)`` holds ``n`` threads for a block: torch's intra-op threads
  of the calling thread, and (when ``n`` is not the default) the BLAS libraries and this
  thread's OpenMP runtimes through threadpoolctl. Holders asking for the same ``n`` share
  the budget; a holder asking for another ``n`` waits until they have all left. ``None``
  means :data:`DEFAULT_THREADS`.
- :data:`DEFAULT_THREADS` is resolved once, when this module is first imported: torch's own
  count at that moment (its default, every physical core, unless the environment says
  otherwise). It is never "whatever is set now".
- A holder's thread goes back to the default when it leaves; when the last holder of a
  non-default count leaves, the BLAS libraries go back to theirs. The process-wide default
  that new threads pick up is put back to :data:`DEFAULT_THREADS` right after every change,
  so a thread that does torch work without holding anything computes with the default.
- Nested holds in one thread: the outer hold decides (an inner request for another count
  runs under the outer one; it cannot change a count its caller holds, and it cannot wait
  for itself).

Everything in pdmlens that needs a count goes through here: LSTM training and prediction,
the attributions, the gate recorder's workers, the signatures step.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterator
from typing import Any

import torch

log = logging.getLogger(__name__)

DEFAULT_THREADS: int = max(1, int(torch.get_num_threads()))
"""torch's intra-op thread count when pdmlens was first imported: what ``None`` means."""


def resolve(n: int | None) -> int:
    """The count ``n`` stands for: ``None`` (or 0) -> :data:`DEFAULT_THREADS`."""
    if n is None or n == 0:
        return DEFAULT_THREADS
    if n < 0:
        raise ValueError(f"a thread count must be positive (or None for the default), got {n}")
    return int(n)


def _set_process_default(n: int) -> None:
    """Make ``n`` the count threads pick up at their first torch call, leaving the calling
    thread's own count alone (torch writes both at once, so a helper thread writes it)."""
    helper = threading.Thread(target=torch.set_num_threads, args=(n,), name="pdmlens-threads")
    helper.start()
    helper.join()


def _controller() -> Any:
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()


class _Budget:
    """Holders of one thread count at a time; see the module docstring."""

    def __init__(self, default: int) -> None:
        self.default = default
        self._cond = threading.Condition()
        self._count: int | None = None
        self._holders = 0
        self._libs: Any = None  # threadpoolctl's controller while a non-default count is held
        self._blas_limited = False
        self._lib_defaults: dict[str, int] = {
            lib.filepath: int(lib.num_threads) for lib in _controller().lib_controllers
        }
        self._local = threading.local()

    # ---- queries
    def held_by_this_thread(self) -> int | None:
        """The count this thread holds (None when it holds none)."""
        return getattr(self._local, "count", None) if getattr(self._local, "depth", 0) else None

    def state(self) -> tuple[int | None, int]:
        """(the count held, how many holders); (None, 0) when free."""
        with self._cond:
            return self._count, self._holders

    # ---- hold
    @contextlib.contextmanager
    def hold(self, n: int | None, libraries: bool = True) -> Iterator[int]:
        want = resolve(n)
        local = self._local
        depth = getattr(local, "depth", 0)
        if depth:  # nested: the outer hold decides
            if want != local.count:
                log.debug("nested request for %d threads runs under the held %d", want, local.count)
            local.depth = depth + 1
            try:
                yield local.count
            finally:
                local.depth = depth
            return
        with self._cond:
            while self._holders and self._count != want:
                self._cond.wait()
            self._holders += 1
            self._count = want
            try:
                self._enter(want, libraries)
            except BaseException:
                self._leave(want, libraries)
                raise
        local.depth, local.count = 1, want
        try:
            yield want
        finally:
            local.depth, local.count = 0, None
            with self._cond:
                self._leave(want, libraries)

    def _lib_default(self, lib: Any) -> int:
        return self._lib_defaults.setdefault(lib.filepath, self.default)

    def _enter(self, want: int, libraries: bool) -> None:
        """Under the lock: the calling thread computes with ``want`` threads."""
        if want != self.default and libraries:
            if self._libs is None:
                self._libs = _controller()
                for lib in self._libs.lib_controllers:  # loaded since import: as found now
                    self._lib_defaults.setdefault(lib.filepath, int(lib.num_threads))
            for lib in self._libs.lib_controllers:
                # OpenMP counts are per thread, BLAS counts per process
                if lib.user_api == "openmp" or not self._blas_limited:
                    lib.set_num_threads(want)
            self._blas_limited = True
        torch.get_num_threads()  # torch's lazy per-thread set-up first, so that this sticks
        torch.set_num_threads(want)
        if want != self.default:
            _set_process_default(self.default)

    def _leave(self, want: int, libraries: bool) -> None:
        """Under the lock: the calling thread is back at the default; the last holder puts
        the process-wide libraries back and wakes the waiters."""
        self._holders -= 1
        if want != self.default:
            if libraries and self._libs is not None:
                for lib in self._libs.lib_controllers:
                    if lib.user_api == "openmp":
                        lib.set_num_threads(self._lib_default(lib))
            torch.set_num_threads(self.default)  # this thread, and the process default
        if self._holders == 0:
            if self._blas_limited and self._libs is not None:
                for lib in self._libs.lib_controllers:
                    if lib.user_api != "openmp":
                        lib.set_num_threads(self._lib_default(lib))
            self._blas_limited = False
            self._libs = None
            self._count = None
            self._cond.notify_all()


_BUDGET = _Budget(DEFAULT_THREADS)


def compute_threads(
    n: int | None = None, *, libraries: bool = True
) -> contextlib.AbstractContextManager[int]:
    """Hold ``n`` CPU threads (None: :data:`DEFAULT_THREADS`) for a ``with`` block, which
    receives the count actually held.

    While held, the calling thread's torch ops use ``n`` intra-op threads; for a count other
    than the default, BLAS libraries use ``n`` threads and this thread's OpenMP runtimes too
    (``libraries=False``: torch only, for workers that never call BLAS). Blocks while other
    threads hold a different count; nested in a hold of this thread, the outer count holds.
    """
    return _BUDGET.hold(n, libraries)


def held_threads() -> int | None:
    """The count the calling thread holds through :func:`compute_threads` (None: none)."""
    return _BUDGET.held_by_this_thread()


def budget_state() -> tuple[int | None, int]:
    """(the count held, the number of holders) across the process; (None, 0) when free."""
    return _BUDGET.state()
