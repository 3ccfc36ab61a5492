"""Launch optuna-dashboard over the storage the study commands use.

The real optuna-dashboard app (its ``wsgi``) on wsgiref, as its ``run_server``
does; of our own only the checks that make its failures one clear line (a
storage that does not exist is never created, an unreachable one or a port in
use is an error) and a clean stop on Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import errno
import signal
import socket
import threading
from typing import Any, Callable

from cnnsearch.ground.errors import StorageError

#: Loopback by default: the dashboard can edit notes and trials, so it is not exposed unless asked.
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8080


def check_port(host: str, port: int) -> None:
    """Raise if ``host:port`` cannot be bound (in use, or not an address of this machine)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        # As the server itself binds (wsgiref sets SO_REUSEADDR): connections of a just-stopped dashboard
        # linger in TIME_WAIT for ~60 s and must not read as "in use"; a live listener still does.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
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
    from cnnsearch.records import storage as storage_mod  # here, not at import: the CLI reads the defaults above

    url = storage_mod.resolve_storage(url)
    storage = storage_mod.open_storage(url)  # create=False: a missing database is an error, not a new file
    check_port(host, port)
    import optuna_dashboard

    store = storage_mod.artifact_store(url, create=False)
    server = _make_server(optuna_dashboard.wsgi(storage, artifact_store=store), host, port)
    shown = f"[{host}]" if ":" in host else host
    if on_ready is not None:
        on_ready(f"http://{shown}:{port}/dashboard (storage {storage_mod.mask_url(url)})")
    _serve_until_interrupted(server)


def _make_server(app: Any, host: str, port: int) -> Any:
    """optuna-dashboard's WSGI app on wsgiref (as its ``run_server``), quiet, IPv6-aware."""
    from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

    class Quiet(WSGIRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
            pass  # one line per request would bury cnnsearch's own lines

    class Server(WSGIServer):
        address_family = socket.AF_INET6 if ":" in host else socket.AF_INET

    try:
        return make_server(host, port, app, server_class=Server, handler_class=Quiet)
    except OSError:  # lost a race with another process since check_port: say it the same way
        check_port(host, port)
        raise


def _serve_until_interrupted(server: Any) -> None:
    """Serve in a thread; the main thread takes Ctrl-C (and SIGTERM) and shuts the server down.

    Python delivers signals to the main thread only, so a KeyboardInterrupt can
    never land inside a request, where wsgiref's catch-all would print it as a
    traceback and keep serving; SIGTERM (``docker stop``, systemd) stops it the same way.
    """
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True,
                              name="optuna-dashboard")

    def on_term(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, on_term) if threading.current_thread() is threading.main_thread() \
        else None
    thread.start()
    try:
        while thread.is_alive():
            thread.join(0.5)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
