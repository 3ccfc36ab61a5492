"""Issue 25 item 4: a signal never interrupts a storage write; it stops the run at the next safe point."""

from __future__ import annotations

import os
import signal

import pytest

from cnnsearch.ground import interrupt
from cnnsearch.ground.errors import Interrupted

# Code that runs as if it were SQLAlchemy's (its frames' module name): a signal arrives in the middle of it.
_STORAGE_CODE = """
def commit(steps):
    os.kill(os.getpid(), signal.SIGTERM)   # delivered at the next bytecode, inside this frame
    for _ in range(1000):
        steps.append(1)                    # the rest of the "commit" runs to its end
    return len(steps)
"""


def _storage_module(name: str) -> dict:  # type: ignore[type-arg]
    scope = {"__name__": name, "os": os, "signal": signal}
    exec(compile(_STORAGE_CODE, f"<{name}>", "exec"), scope)
    return scope


@pytest.mark.parametrize("module", ["sqlalchemy.engine.base", "optuna.storages._rdb.storage"])
def test_a_signal_inside_storage_code_waits_for_the_next_check(module: str) -> None:
    commit = _storage_module(module)["commit"]
    with interrupt.handled():
        steps: list[int] = []
        with pytest.raises(Interrupted) as stop:
            commit(steps)
            assert interrupt.received() == signal.SIGTERM
            interrupt.check()  # the next safe point stops the run (or the re-sent signal, just before it)
        assert len(steps) == 1000  # not cut short: the write finished
        assert stop.value.signum == signal.SIGTERM


def test_a_signal_elsewhere_stops_at_once_and_a_second_is_not_raised_again() -> None:
    with interrupt.handled():
        with pytest.raises(Interrupted):
            os.kill(os.getpid(), signal.SIGTERM)
            for _ in range(10_000):  # the handler raises within these bytecodes, never after the loop
                pass
            pytest.fail("the signal did not stop this code")
        os.kill(os.getpid(), signal.SIGTERM)  # while cleaning up: not raised again
        for _ in range(10_000):
            pass
        with pytest.raises(Interrupted):
            interrupt.check()  # but the flag still stops the next safe point


def test_a_deferred_signal_is_raised_by_a_second_outside_storage() -> None:
    commit = _storage_module("sqlalchemy.orm.session")["commit"]
    with interrupt.handled():
        with pytest.raises(Interrupted) as stop:
            commit([])  # the first signal: deferred, not raised inside
            os.kill(os.getpid(), signal.SIGINT)  # a second one (or the first, re-sent) raises out here
            for _ in range(10_000):
                pass
        assert stop.value.signum == signal.SIGTERM  # the first signal is the one reported
    assert signal.getsignal(signal.SIGTERM) is not interrupt._handler  # restored after the block


def test_a_deferred_signal_stops_a_wait_that_never_checks() -> None:
    """A pool's parent waiting for results calls no check(): the deferred signal is sent again until it lands."""
    import time

    commit = _storage_module("optuna.storages._rdb.storage")["commit"]
    with interrupt.handled():
        with pytest.raises(Interrupted) as stop:
            commit([])  # deferred inside the storage code
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                time.sleep(0.01)  # outside it, no check(): the re-delivered signal raises here
            pytest.fail("the deferred signal was never raised")
        assert stop.value.signum == signal.SIGTERM
