"""Launch optuna-dashboard over the storage the study commands use.

The real optuna-dashboard server (its ``run_server``); nothing of our own but
the checks that make its failures one clear line: a storage that does not
exist is never created, an unreachable one or a port in use is an error.
"""

from __future__ import annotations

import errno
import socket
from typing import Callable

from cnnsearch.errors import StorageError

#: Loopback by default: the dashboard can edit notes and trials, so it is not exposed unless asked.
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8080


def check_port(host: str, port: int) -> None:
    """Raise if ``host:port`` cannot be bound (in use, or not an address of this machine)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        try:
            s.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise StorageError(f"port {port} on {host} is already in use; pick another with --port"
                                   f" (e.g. --port {port + 1})") from exc
            raise StorageError(f"cannot listen on {host}:{port} ({exc.strerror}); use --host 127.0.0.1 or"
                               " an address of this machine") from exc


def serve(url: str | None = None, *, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT,
          on_ready: Callable[[str], None] | None = None) -> None:
    """Run optuna-dashboard on the study storage until interrupted.

    Args:
        url: Storage URL (resolved as for the study commands); a SQLite file
            or journal that does not exist is an error, never created.
        host: Address to bind (loopback by default).
        port: TCP port.
        on_ready: Called with the dashboard's address just before serving.
    """
    from cnnsearch import storage as storage_mod  # here, not at import: the CLI reads the defaults above

    url = storage_mod.resolve_storage(url)
    storage = storage_mod.open_storage(url)  # create=False: a missing database is an error, not a new file
    check_port(host, port)
    import optuna_dashboard

    store = storage_mod.artifact_store(url, create=False)
    shown = f"[{host}]" if ":" in host else host
    if on_ready is not None:
        on_ready(f"http://{shown}:{port}/dashboard (storage {url})")
    optuna_dashboard.run_server(storage, host=host, port=port, artifact_store=store)
