"""Trials left RUNNING by a worker that is gone: fail them and re-queue each once.

For RDB storages Optuna's heartbeat does the same on its own; journal files
have no heartbeat, and a worker killed under ``study run --workers`` should not
wait for one, hence this check of each trial's lease (host, PID, start time).
"""

from __future__ import annotations

import os
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from cnnsearch.ground import private
from cnnsearch.search.objective import process_start
from cnnsearch.search.study import load

#: Trial system attribute naming the failed trial a queued retry repeats (Optuna's retry callback's name).
RETRY_OF = "failed_trial"


def _lease_alive(lease: dict[str, Any]) -> bool | None:
    """True/False for a lease of this machine; None for another machine's (it cannot be checked from here)."""
    import socket

    if lease.get("host") != socket.gethostname():
        return None
    pid = int(lease.get("pid", 0))
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        pass
    started = process_start(pid)
    return started is None or lease.get("started") is None or started == lease["started"]


def fail_stale(study: optuna.Study, *, force: bool = False) -> list[int]:
    """Fail RUNNING trials whose worker is gone, re-queueing each once; returns their numbers.

    A trial's worker is gone when its lease (host, PID, process start time)
    names this machine and no such process runs. Trials of other machines are
    left alone unless ``force`` (``study fail-stale --all``: the user has made
    sure no run is active anywhere). A retry lost to a failed database write
    between the two steps is queued at the next call (:func:`requeue_missing`).
    """
    failed = []
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        lease = t.user_attrs.get("worker")
        alive = _lease_alive(lease) if lease else None
        if alive or (alive is None and not force):
            continue
        who = f"process {lease['pid']} on {lease['host']}" if lease else "an unknown process"
        reason = f"stale: {who} is gone" if alive is False else f"failed by hand (study fail-stale --all; {who})"
        if _fail(study, t, reason):
            failed.append(t.number)
    requeue_missing(study)
    return failed


def _fail(study: optuna.Study, t: FrozenTrial, reason: str) -> bool:
    """Mark ``t`` FAIL as stale with ``reason``; False if its worker finished it meanwhile."""
    storage, tid = private.storage_of(study), private.trial_id(t)
    try:
        storage.set_trial_user_attr(tid, "fail_reason", reason)
        storage.set_trial_user_attr(tid, "failure_kind", "stale")
        return bool(storage.set_trial_state_values(tid, state=TrialState.FAIL))
    except optuna.exceptions.UpdateFinishedTrialError:
        return False


def requeue_missing(study: optuna.Study) -> list[int]:
    """Queue the one retry of every stale-failed trial that has none yet; returns the retried numbers.

    Derived from the study each time (not remembered between the steps), so a write that failed after
    a trial was failed, before its retry was queued, costs no retry: the next run queues it.
    """
    trials = study.get_trials(deepcopy=False)
    retried = {t.system_attrs[RETRY_OF] for t in trials if RETRY_OF in t.system_attrs}
    queued = []
    for t in trials:
        if (t.state == TrialState.FAIL and t.user_attrs.get("failure_kind") == "stale"
                and t.number not in retried and RETRY_OF not in t.system_attrs):
            # One write: the retry carries its params and its origin together (as Optuna's retry callback).
            attrs = {k: v for k, v in t.user_attrs.items() if k == "baseline"}
            study.add_trial(optuna.trial.create_trial(state=TrialState.WAITING, params=t.params,
                                                      distributions=t.distributions, user_attrs=attrs,
                                                      system_attrs={RETRY_OF: t.number}))
            queued.append(t.number)
    return queued


def live_trials(study: optuna.Study) -> list[tuple[int, str]]:
    """RUNNING trials whose worker may still be at work: (number, who), for ``study delete`` to refuse.

    A lease of this machine is checked (a gone process does not count); another machine's cannot be
    checked from here and counts as live.
    """
    live = []
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        lease = t.user_attrs.get("worker")
        if lease and _lease_alive(lease) is not False:
            live.append((t.number, f"process {lease.get('pid')} on {lease.get('host')}"))
    return live


def check_not_running(name: str, url: str | None = None) -> None:
    """Raise a CnnsearchError if study ``name`` has a trial whose worker is alive (deleting it would crash the run)."""
    from cnnsearch.ground.errors import CnnsearchError

    live = live_trials(load(name, url).study)
    if live:
        who = "; ".join(f"trial #{n} by {w}" for n, w in live[:3])
        raise CnnsearchError(f"refusing to delete study {name!r}: it is running ({who}); stop the run first"
                             " (Ctrl-C, or kill its process), or add --force to delete it anyway (the running"
                             " command then fails)")


def fail_stale_trials(name: str, url: str | None = None, *, force: bool = False) -> list[int]:
    """``study fail-stale NAME``: :func:`fail_stale` on a stored study."""
    return fail_stale(load(name, url).study, force=force)


__all__ = ["RETRY_OF", "check_not_running", "fail_stale", "fail_stale_trials", "live_trials", "requeue_missing"]
