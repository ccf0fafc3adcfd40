"""One compute thread for an interactive process: the explorer's server.

The explorer answers small requests (a few hundred windows, a k-means on a sample) from
several server threads at once; on a shared CPU one BLAS/OpenMP/torch thread per request is
many times faster than requests fighting over cores. Unlike a pipeline run, which holds
counts per block (:func:`pdmlens.runtime.threads.compute_threads`), such a process sets one
thread once, for good, at start-up: :func:`pin_one_thread`. This module imports neither
torch nor numpy, so the process can pin before they load (they read the environment then).
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator

THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def pin_one_thread() -> list[str]:
    """One thread for the whole process: the environment for libraries loaded later, the
    BLAS/OpenMP libraries loaded already, and torch if imported. Returns the environment
    variables it set (those the user had not), so child processes can drop them."""
    from threadpoolctl import threadpool_limits

    ours = [v for v in THREAD_VARIABLES if v not in os.environ]
    os.environ.update({v: "1" for v in ours})
    threadpool_limits(1)
    _torch_one_thread()
    return ours


def _torch_one_thread() -> None:
    torch = sys.modules.get("torch")
    if getattr(getattr(torch, "__spec__", None), "_initializing", False):
        return  # another thread is importing it; it reads the pinned environment
    set_threads = getattr(torch, "set_num_threads", None)
    if set_threads is not None:
        set_threads(1)


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """One torch thread in the calling (server worker) thread for a block, in a process
    that called :func:`pin_one_thread` at start.

    The BLAS/OpenMP libraries are not scanned again here: the pin limited those loaded
    then (OpenBLAS's limit is process-wide), and those loaded later read the environment
    it set. A scan (threadpoolctl walks the loaded libraries with ``dl_iterate_phdr`` and a
    Python callback) in one server thread while another imports an extension module (its
    ``dlopen`` holds the GIL) can deadlock the two."""
    _torch_one_thread()
    yield
