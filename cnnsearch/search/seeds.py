"""Every run's effective sampler seed, kept on the study (issue 20).

Without ``study run --seed`` the sampler's seed is drawn at random (so two runs
started together never draw the same configurations); before this module it was
never stored, and a report's "seed 0" was not the seed that ran. Each run that
opens a study to sample (:func:`cnnsearch.search.study.load` with ``heartbeat``)
records the seed it really used here, one system attribute per process, so
parallel workers never overwrite each other's (no read-modify-write of a shared list).
"""

from __future__ import annotations

import datetime
import os
from typing import Any, Callable

import optuna

#: System-attribute prefix of one run's record: cnnsearch:sampler_seed:<UTC time>:<pid>.
PREFIX = "cnnsearch:sampler_seed:"


def record(study: optuna.Study, effective: int, given: int | None, worker: int,
           write: Callable[[optuna.Study, str, Any], None]) -> None:
    """Store the sampler seed a run really used, the ``--seed`` it was given (None: drawn), worker and start.

    ``write``: how a system attribute is stored (:func:`cnnsearch.search.study.set_system_attr`; passed in,
    so this module imports nothing of the study module that calls it).
    """
    now = datetime.datetime.now(datetime.timezone.utc)
    write(study, f"{PREFIX}{now.strftime('%Y%m%dT%H%M%S.%f')}:{os.getpid()}",
          {"seed": effective, "given": given, "worker": worker, "trials_before": len(study.get_trials(deepcopy=False)),
           "at": now.isoformat(timespec="seconds")})


def of(attrs: dict[str, Any]) -> list[dict[str, Any]]:
    """Every run's effective sampler seed record among a study's system attributes, oldest first."""
    return [attrs[k] for k in sorted(attrs) if k.startswith(PREFIX)]


def describe(records: list[dict[str, Any]]) -> str:
    """``sampler seeds: 1234567 (drawn at random, worker 0, from trial 0, 2026-12-03T10:00:00+00:00); ...``."""
    if not records:
        return "sampler seeds: none recorded (no run since seeds were stored)"
    parts = []
    for r in records:
        how = "drawn at random" if r["given"] is None else f"--seed {r['given']}"
        parts.append(f"{r['seed']} ({how}, worker {r['worker']}, from trial {r['trials_before']}, {r['at']})")
    return "sampler seeds: " + "; ".join(parts)
