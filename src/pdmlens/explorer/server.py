"""Serve the explorer on 127.0.0.1 and stop cleanly.

A threaded WSGI server (werkzeug, which Dash's Flask already uses) in this process, no
reloader and no worker processes: SIGTERM or Ctrl-C shuts the server down, stops any run
started from the Launch view (its whole process group) and returns, so nothing is left
behind.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable
from typing import Any

from werkzeug.serving import make_server

log = logging.getLogger(__name__)


def serve(
    wsgi_app: Any,
    host: str = "127.0.0.1",
    port: int = 8050,
    on_stop: Callable[[], None] | None = None,
    ready: Callable[[str], None] | None = None,
) -> None:
    """Serve until SIGTERM/SIGINT; then ``on_stop()`` (e.g. stop launched runs)."""
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no line per request
    server = make_server(host, port, wsgi_app, threaded=True)
    url = f"http://{host}:{server.server_port}/"
    stopping = threading.Event()

    def stop(signum: int, _frame: Any) -> None:
        if stopping.is_set():
            return
        stopping.set()
        log.info("signal %d: stopping the explorer", signum)
        threading.Thread(target=server.shutdown, daemon=True).start()

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        if ready is not None:
            ready(url)
        server.serve_forever()
    finally:
        server.server_close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if on_stop is not None:
            on_stop()
