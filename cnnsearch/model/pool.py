"""Train several independent runs at once: one one-thread process per core, one run at a time each.

A confirmation or an ablation is a list of independent fits (a configuration at a seed). Run one
after another with two threads each, a small model leaves the second core mostly idle: per-step
overhead, not arithmetic, sets its pace. Two one-thread processes, each training its own run, use
both cores, as ``study run``'s workers do (measured there: 2.3x the trials an hour).

The parent keeps every storage write (it hears each finished run through ``on_result``), so the
children never touch the study: no SQLite writer contention, and an interrupted pool loses only the
runs still training. A fixed-seed fit in a one-thread process trains the same history as in a
two-thread one (tests/test_train.py: relative difference below 1e-4).
"""

from __future__ import annotations

import multiprocessing
import os
from dataclasses import dataclass, replace
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from cnnsearch.ground.data import Splits
from cnnsearch.model.arch import ArchSpec
from cnnsearch.model.train import TrainConfig, TrainResult

#: Environment variable: how many processes a pool may start ("1" = sequential, in this process).
POOL_ENV = "CNNSEARCH_RUN_WORKERS"


@dataclass(frozen=True)
class Job:
    """One independent run: an architecture and its training settings (the seed among them)."""

    key: str  # the caller's label, e.g. "trial4 seed 1"
    spec: ArchSpec
    config: TrainConfig


@dataclass
class Done:
    """A finished run as the parent hears it: the fit's result without the Keras model (it stays in the child)."""

    job: Job
    result: TrainResult
    weights: list[np.ndarray] | None = None  # the trained weights, when the pool was asked to keep them


def pool_size(jobs: int, cores: int | None = None) -> int:
    """How many one-thread processes to start: one per core, never more than there are runs.

    ``CNNSEARCH_RUN_WORKERS`` overrides it (1 keeps every run in this process, sequentially).
    """
    env = os.environ.get(POOL_ENV, "").strip()
    if env:
        try:
            wanted = int(env)
        except ValueError:
            from cnnsearch.ground.errors import ConfigError

            raise ConfigError(f"{POOL_ENV}: expected a whole number of processes >= 1, received {env!r};"
                              f" unset it or set e.g. {POOL_ENV}=2") from None
        if wanted < 1:
            from cnnsearch.ground.errors import ConfigError

            raise ConfigError(f"{POOL_ENV}: expected a whole number of processes >= 1, received {env!r}")
    else:
        wanted = cores if cores is not None else (os.cpu_count() or 1)
    return max(1, min(wanted, jobs, os.cpu_count() or 1))


def run(jobs: Sequence[Job], splits: Splits, *, workers: int | None = None, keep_weights: bool = False,
        predict_test: bool = True) -> Iterator[Done]:
    """Train ``jobs`` and yield each as it finishes (in finishing order, not job order).

    ``workers`` processes (default :func:`pool_size`) each train one run at a time with one
    thread; with one worker the runs train here, in order, with this process's threads. Closing
    the generator early (an interrupt in the caller) terminates the children at once.
    """
    n = workers if workers is not None else pool_size(len(jobs))
    if n <= 1:
        for job in jobs:
            yield _fit(job, splits, keep_weights=keep_weights, predict_test=predict_test)
        return
    ctx = multiprocessing.get_context("spawn")  # never fork a process that has TensorFlow's threads running
    pool = ctx.Pool(n, initializer=_child_init, initargs=(splits, keep_weights, predict_test))
    try:
        for done in pool.imap_unordered(_child_fit, list(jobs)):
            yield done
        pool.close()
    finally:
        pool.terminate()  # a no-op after close(); on an interrupt it stops the runs still training
        pool.join()


def _fit(job: Job, splits: Splits, *, keep_weights: bool, predict_test: bool,
         on_epoch: Callable[[int, dict[str, float]], None] | None = None) -> Done:
    from cnnsearch.model.train import fit, release

    result = fit(job.spec, splits, job.config, predict_test=predict_test, on_epoch=on_epoch)
    weights = [np.asarray(w) for w in result.model.get_weights()] if keep_weights else None
    done = Done(job, replace(result, model=None), weights)
    release()  # the next run builds a fresh model: free this one's graph and custom gradients
    return done


def rebuild(spec: ArchSpec, splits: Splits, weights: list[np.ndarray] | None) -> Any:
    """A Keras model of ``spec`` holding ``weights`` (a child's trained weights, to save here); None without them."""
    if weights is None:
        return None
    from cnnsearch.model.arch import build_model

    model = build_model(spec, splits.input_shape, splits.n_classes)
    model.set_weights(weights)
    return model


_CHILD: dict[str, Any] = {}


def _child_init(splits: Splits, keep_weights: bool, predict_test: bool) -> None:
    import signal

    # The parent decides what an interrupt means (it records, then terminates us); Ctrl-C on the
    # terminal reaches the whole process group, and a child that raised would only add a traceback.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    from cnnsearch.model.train import configure_threads

    configure_threads(1, 1)
    _CHILD.update(splits=splits, keep_weights=keep_weights, predict_test=predict_test)


def _child_fit(job: Job) -> Done:
    return _fit(job, _CHILD["splits"], keep_weights=_CHILD["keep_weights"], predict_test=_CHILD["predict_test"])


__all__ = ["Done", "Job", "POOL_ENV", "pool_size", "rebuild", "run"]
