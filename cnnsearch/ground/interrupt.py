"""Ctrl-C, SIGTERM and SIGHUP during a search: one flag per process, checked where it is safe to stop.

``docker stop``, systemd and Kubernetes send SIGTERM; a closed terminal sends
SIGHUP; Ctrl-C sends SIGINT. All three stop a run the same way: the running
trial fails with the reason "interrupted (SIGTERM)" (never left RUNNING), worker
processes are stopped, and the command exits with 128 + the signal number
(130 SIGINT, 143 SIGTERM, 129 SIGHUP).

The handler sets the flag; it raises :class:`~cnnsearch.ground.errors.Interrupted`
at once only where stopping is safe, so a run stops promptly but never inside a
storage write: while any frame of the interrupted stack belongs to the storage
code (:data:`DEFERRED_MODULES`: SQLAlchemy, Optuna's storages, the database
drivers) it only sets the flag, and the next :func:`check` (every training
batch, every epoch end, every trial start) raises; where no check comes (a wait
on a pool's results), the signal is sent again every :data:`REDELIVER_S`
seconds until it lands outside the storage code. A second signal outside the
storage code raises if the first was deferred and never raised. Python may run
the handler inside a finaliser (TensorFlow and SQLAlchemy have many), where the
exception is swallowed and printed as "Exception ignored ... KeyboardInterrupt":
the hook installed here keeps that quiet, and the flag makes the next
:func:`check` raise again, so an interrupt is never lost.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from contextlib import contextmanager
from typing import Any, Iterator

from cnnsearch.ground.errors import Interrupted

#: Signals handled like Ctrl-C (SIGHUP where the platform has it).
SIGNALS = tuple(s for s in (getattr(signal, n, None) for n in ("SIGINT", "SIGTERM", "SIGHUP")) if s is not None)

_received: list[int] = []  # the first signal this process got, if any
_raised: list[bool] = []  # the handler has raised it (once per process: a second raise would break clean-up)
_redelivering: list[bool] = []  # a thread is re-sending a deferred signal

#: Modules a signal never interrupts (a commit half done): the handler only sets the flag inside them.
DEFERRED_MODULES = ("sqlalchemy", "optuna.storages", "sqlite3", "psycopg2", "pymysql", "filelock")


def received() -> int | None:
    """The first handled signal this process received, or None."""
    return _received[0] if _received else None


def check() -> None:
    """Raise :class:`Interrupted` if a handled signal has arrived (call where stopping is safe)."""
    if _received:
        _raised[:] = [True]
        raise Interrupted(_received[0], _why())


_parent: list[int] = []  # a worker's parent process id, watched by watch_parent()


def watch_parent() -> None:
    """In a worker process: remember the parent, so a signal after its death is recorded as that."""
    _parent[:] = [os.getppid()]


def parent_gone() -> bool:
    """Whether the parent :func:`watch_parent` saw has died (this process was re-parented)."""
    return bool(_parent) and os.getppid() != _parent[0]


def _why() -> str:
    # A worker's parent that dies sends SIGTERM through PR_SET_PDEATHSIG: say that, not a bare SIGTERM.
    return "the run's parent process died" if parent_gone() else ""


def in_storage(frame: Any) -> bool:
    """Whether ``frame`` or any frame below it on the stack runs storage code (:data:`DEFERRED_MODULES`)."""
    while frame is not None:
        module = frame.f_globals.get("__name__", "") or ""
        if module.startswith(DEFERRED_MODULES):
            return True
        frame = frame.f_back
    return False


#: Seconds between re-deliveries of a deferred signal (see :func:`_redeliver`).
REDELIVER_S = 0.2


def _handler(signum: int, frame: Any) -> None:
    if not _received:
        _received.append(signum)
    if _raised:
        # Raised already: a second signal while stopping (the terminal's Ctrl-C reaches the workers and the
        # parent forwards it too) would break the clean-up halfway.
        return
    if in_storage(frame):
        # Inside a storage write: only the flag. A loop that waits without calling check() (a pool's results,
        # a watcher's poll) still stops: the signal is sent again until it lands outside the storage code.
        _redeliver(signum)
        return
    _raised.append(True)
    raise Interrupted(_received[0], _why())


def _redeliver(signum: int) -> None:
    """Send ``signum`` to this process again every :data:`REDELIVER_S` until it has been raised (one thread)."""
    if _redelivering:
        return
    _redelivering.append(True)

    def again() -> None:
        try:
            while not _raised and signal.getsignal(signum) is _handler:  # stops once raised or handlers restored
                time.sleep(REDELIVER_S)
                if not _raised and signal.getsignal(signum) is _handler:
                    os.kill(os.getpid(), signum)
        finally:
            _redelivering.clear()

    threading.Thread(target=again, name="cnnsearch-redeliver", daemon=True).start()


def _quiet_unraisable(unraisable: Any) -> None:
    if isinstance(unraisable.exc_value, KeyboardInterrupt):
        return  # swallowed in a finaliser; the flag re-raises it at the next check()
    _previous_hook[0](unraisable)


_previous_hook: list[Any] = [sys.unraisablehook]


@contextmanager
def handled() -> Iterator[None]:
    """Within this block SIGINT, SIGTERM and SIGHUP raise :class:`Interrupted` (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.getsignal(s) for s in SIGNALS}
    _previous_hook[0] = sys.unraisablehook
    _received.clear()
    _raised.clear()
    for s in SIGNALS:
        if previous[s] is not signal.SIG_IGN:  # nohup (SIGHUP) and `cmd &` in scripts (SIGINT) ignore on purpose
            signal.signal(s, _handler)
    sys.unraisablehook = _quiet_unraisable
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h if h is not None else signal.SIG_DFL)
        sys.unraisablehook = _previous_hook[0]


@contextmanager
def stopping() -> Iterator[None]:
    """:func:`handled`, for a whole command phase (``study confirm``, writing a report): exit 128 + signal.

    Inside TensorFlow's or SQLAlchemy's C code the signal's exception can surface as another error
    (seen: SystemError): any error raised after a signal arrived is that signal. A signal swallowed by
    a finaliser is raised at the end, so the command still exits 143 after finishing its write.
    """
    with handled():
        try:
            yield
        except KeyboardInterrupt:
            raise
        except Exception as exc:
            if _received:
                raise Interrupted(_received[0], _why()) from exc
            raise
        check()


def keras_callback() -> Any:
    """A Keras callback that calls :func:`check` after every batch (training and evaluation)."""
    from cnnsearch.ground._tf import keras

    class StopOnSignal(keras().callbacks.Callback):  # type: ignore[misc, name-defined]
        def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
            check()

        def on_test_batch_end(self, batch: int, logs: Any = None) -> None:
            check()

        def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
            check()

    return StopOnSignal()
