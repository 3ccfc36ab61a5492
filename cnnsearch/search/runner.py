"""Run a study: many trials in one process, or in worker processes with their own entry point.

``python -m cnnsearch.search.runner NAME --trials N ...`` is one worker of
:func:`run_workers` (not a user command: ``cnnsearch study run --workers K``
starts them). Workers are plain processes, never started through the CLI.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import optuna
from optuna.trial import FrozenTrial, TrialState

from cnnsearch.ground import interrupt, provenance
from cnnsearch.ground.describe import choices
from cnnsearch.ground.errors import CnnsearchError, ConfigError, TrialFailed
from cnnsearch.search.objective import Objective
from cnnsearch.records.storage import experimental_ok, storage_error
from cnnsearch.search.stale import fail_stale, fail_stale_trials
from cnnsearch.search.study import (Handle, baseline_trial, ensure_baseline_queued, load, param_count,
                             settings_of, trial_attr, write_note)
# Re-exported: run_workers and auto_workers lived here, and callers (the CLI, tests) still find them here.
from cnnsearch.search.workers import (AUTO_WORKERS, WorkerDied, auto_workers, max_workers, run_workers,  # noqa: F401
                                      study_splits, warn_once)

#: Infeasible draws in a row that stop a run (the sampler is not finding the feasible region).
MAX_INFEASIBLE_IN_A_ROW = 200


@dataclass
class TrialLine:
    """What the progress line of one finished trial shows."""

    number: int
    state: str
    param_count: int | None
    val_accuracy: float | None
    vs_baseline_pp: float | None
    seconds: float | None
    reason: str
    done: int
    total: int
    baseline: bool
    choices: str = ""  # the trial's hyperparameters in one line (cnnsearch.ground.describe)
    epochs_run: int | None = None

    def text(self, worker: int | None = None) -> str:
        """``[3/11] #2 conv 16k5 > 64k3 | pool 2 | drop .15/.40 | dense 128: val_acc 0.9820 (+0.20 pp), 41 s``.

        Fits 100 columns for seed.toml's choices; prefixed with the worker's process id when one of several.
        """
        who = f"worker {worker} " if worker is not None else ""
        head = f"{who}[{self.done}/{self.total}] #{self.number}{' baseline' if self.baseline else ''} {self.choices}:"
        val = "" if self.val_accuracy is None else f"val_acc {self.val_accuracy:.4f}"
        if val and self.vs_baseline_pp is not None and not self.baseline and self.state == "COMPLETE":
            val += f" ({self.vs_baseline_pp:+.2f} pp)"
        secs = "" if self.seconds is None else f"{self.seconds:.0f} s"
        if self.state == "COMPLETE":
            tail = [val, secs, f"({self.reason})" if self.reason else ""]  # e.g. a reused baseline
        elif self.state == "PRUNED":  # short, so a seed.toml line still fits 100 columns
            acc = "" if self.val_accuracy is None else f" (val {self.val_accuracy:.4f})"
            tail = [f"pruned at epoch {self.epochs_run if self.epochs_run is not None else '?'}{acc}"]
        else:
            word = {"FAIL": "failed"}.get(self.state, self.state.lower())
            tail = [f"{word} ({self.reason})" if self.reason else word]
        return f"{head} {', '.join(p for p in tail if p)}"


def run(
    name: str,
    *,
    trials: int,
    timeout: float | None = None,
    data_path: str | None = None,
    url: str | None = None,
    on_trial: Callable[[TrialLine], None] | None = None,
    verbose: int = 0,
    worker: bool = False,
    on_plan: Callable[[int, int, float | None], None] | None = None,
    on_trial_start: Callable[[int, bool], None] | None = None,
    on_epoch: Callable[[int, dict[str, float]], None] | None = None,
    seed: int | None = None,
    data: Any = None,
    val_data: str | None = None,
    val_fraction: float | None = None,
    build: Callable[[Any], Any] | None = None,
    callbacks: Sequence[Any] = (),
    on_warning: Callable[[str], None] | None = None,
) -> Handle:
    """Add ``trials`` finished trials to study ``name`` (plus the baseline if it has not run yet).

    Data are loaded once for the whole run. Stops starting new trials after
    ``timeout`` seconds. A trial that fails (unbuildable spec, NaN loss) is
    recorded and the search goes on; after the study's
    ``max_consecutive_failures`` training failures in a row the run stops
    with a :class:`~cnnsearch.ground.errors.CnnsearchError`, and a run in which every
    trial failed during training ends with one too. Ctrl-C, SIGTERM or SIGHUP
    fails the running trial with the reason "interrupted (SIGTERM)" (never left
    RUNNING) and raises :class:`~cnnsearch.ground.errors.Interrupted` (see
    :mod:`cnnsearch.ground.interrupt`). ``seed``: see :func:`cnnsearch.search.study.load`.

    ``worker=True`` is one process of :func:`run_workers`: it runs exactly
    ``trials`` trials (whichever queued ones it pops, the baseline included),
    the parent having done the baseline accounting.

    Progress hooks: ``on_plan(trials, epochs, epoch_prior_s)`` once before the first trial (the
    prior: the median epoch time the study has measured, or None), ``on_trial_start(number,
    is_baseline)``, ``on_epoch(epoch, logs)`` and ``on_trial`` (a :class:`TrialLine`) as trials go.
    The data are the study's (:mod:`cnnsearch.ground.provenance`): remembered at the first run, with
    how validation is chosen (``val_data``, ``val_fraction``); ``data`` passes arrays already loaded.
    ``build`` and ``callbacks``: see :class:`~cnnsearch.search.objective.Objective`. ``on_warning(text)``:
    once per run, why the validation set may not be trusted, or that much of the space cannot be built.
    """
    if trials < 0:
        raise ConfigError(f"--trials: expected >= 0; received {trials}")
    with interrupt.handled():
        handle = _run(name, trials=trials, timeout=timeout, data_path=data_path, url=url, on_trial=on_trial,
                      verbose=verbose, worker=worker, seed=seed, on_plan=on_plan, on_trial_start=on_trial_start,
                      on_epoch=on_epoch, options={"data": data, "val_data": val_data, "val_fraction": val_fraction,
                                                  "build": build, "callbacks": callbacks, "on_warning": on_warning})
        interrupt.check()  # a signal swallowed after the last trial still ends the run as interrupted
    return handle


class _Tally:
    """The run's count of trials, called by Optuna after each one: stops the run by the rules below."""

    def __init__(self, handle: Handle, total: int, on_trial: Callable[[TrialLine], None] | None) -> None:
        self.handle, self.total, self.on_trial = handle, total, on_trial
        self.limit = handle.space.study["max_consecutive_failures"]
        self.done = self.failures = self.infeasible = self.finished = self.training_failures = 0
        self.last = ""

    def __call__(self, study: optuna.Study, t: FrozenTrial) -> None:
        if t.user_attrs.get("infeasible"):  # untrained: counts toward neither --trials nor the failure rule
            self.infeasible += 1
            if self.on_trial is not None:
                self.on_trial(_line(study, t, t.user_attrs["infeasible"], self.done, self.total))
            if self.infeasible >= MAX_INFEASIBLE_IN_A_ROW:
                study.stop()
            return
        self.infeasible = 0
        self.done += 1
        if self.done >= self.total:
            study.stop()  # n_trials is open-ended in a size-limited study: stop at --trials counted ones
        reason = trial_attr(t, "fail_reason") or t.system_attrs.get("fail_reason", "")
        if t.state == TrialState.FAIL and t.user_attrs.get("failure_kind") != "invalid_architecture":
            self.failures += 1
            self.training_failures += 1
            self.last = reason
        elif t.state != TrialState.FAIL:
            self.failures = 0
            self.finished += 1
        if t.state == TrialState.PRUNED:
            reason = f"pruned after epoch {t.user_attrs.get('epochs_run', '?')}"
        reused = t.user_attrs.get("reused_from")
        if reused and t.state == TrialState.COMPLETE:
            reason = f"reused from study {reused['study']!r} trial {reused['trial']}, not trained again"
        if t.user_attrs.get("baseline") and t.state == TrialState.COMPLETE:
            write_note(study, settings_of(study) or {})  # now with the in-study baseline's numbers
        if self.on_trial is not None:
            self.on_trial(_line(study, t, reason, self.done, self.total))
        if self.limit and self.failures >= self.limit:
            study.stop()
        interrupt.check()

    def raise_if_stopped(self) -> None:
        """After the run: a CnnsearchError if a stop rule ended it, or if every trial failed."""
        if self.infeasible >= MAX_INFEASIBLE_IN_A_ROW:
            raise CnnsearchError(f"stopped: {self.infeasible} points in a row were infeasible (over max_params /"
                                 " max_flops or unbuildable); raise the limits or narrow the space to smaller models")
        if self.limit and self.failures >= self.limit:
            raise CnnsearchError(f"stopped: {self.failures} trials in a row failed during training (last:"
                                 f" {self.last}); check the space's ranges and [training] settings, then run again")
        if self.done and not self.finished and self.training_failures:
            # Every trial failed (e.g. an optimizer setting no trial can train with): not a successful run.
            raise CnnsearchError(f"every trial of this run failed ({self.done}; last: {self.last}); check the"
                                 " space's ranges and [training] settings, then run again")


def _run(name: str, *, trials: int, timeout: float | None, data_path: str | None, url: str | None,
         on_trial: Callable[[TrialLine], None] | None, verbose: int, worker: bool, seed: int | None,
         on_plan: Callable[[int, int, float | None], None] | None = None,
         on_trial_start: Callable[[int, bool], None] | None = None,
         on_epoch: Callable[[int, dict[str, float]], None] | None = None,
         options: dict[str, Any] | None = None) -> Handle:
    handle = load(name, url, heartbeat=True, seed=seed)
    study, sp, cfg = handle.study, handle.space, handle.training
    opts = options or {}
    splits = study_splits(handle, data_path, opts)
    # A worker that died without a word leaves its trial RUNNING: fail it now (and re-queue it once)
    # rather than at the next trial start, which --trials 0 never reaches. Optuna's heartbeat does it
    # for RDB storages after its grace period; the lease check (fail_stale) at once, on any storage,
    # and it also queues a retry an earlier failed write lost.
    with experimental_ok():
        optuna.storages.fail_stale_trials(study)
    fail_stale(study)
    total = trials if worker else trials + (1 if ensure_baseline_queued(study, sp) else 0)
    objective = Objective(handle, splits, verbose=verbose, on_start=on_trial_start, on_epoch=on_epoch,
                          build=opts.get("build"), callbacks=opts.get("callbacks", ()),
                          mnist=provenance.is_mnist(study))
    tally = _Tally(handle, total, on_trial)
    optuna.logging.set_verbosity(optuna.logging.ERROR if not verbose else optuna.logging.INFO)
    if on_plan is not None:
        on_plan(total, cfg.epochs, _median_epoch_seconds(study))
    # With a size limit, infeasible draws do not count: run until `total` counted trials (the tally stops).
    warn_once(opts)
    # Infeasible draws (unbuildable, or over a size limit) do not count: run until `total` counted trials.
    study.optimize(objective, n_trials=None if total else total, timeout=timeout,
                   catch=(TrialFailed,), callbacks=[tally], gc_after_trial=True)
    tally.raise_if_stopped()
    return handle


def _median_epoch_seconds(study: optuna.Study) -> float | None:
    """The median epoch time of the study's finished trials (all at the study's fidelity), if any."""
    import statistics

    secs = [s for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
            for s in trial_attr(t, "epoch_seconds") or []]
    return statistics.median(secs) if secs else None


def _line(study: optuna.Study, t: FrozenTrial, reason: str, done: int, total: int) -> TrialLine:
    base = baseline_trial(study)
    val = t.user_attrs.get("val_accuracy") if t.state == TrialState.COMPLETE else None
    if val is None and t.state == TrialState.PRUNED and t.intermediate_values:
        val = t.intermediate_values[max(t.intermediate_values)]
    vs = None
    if val is not None and base is not None and base.user_attrs.get("val_accuracy") is not None:
        vs = 100 * (val - base.user_attrs["val_accuracy"])
    state = "INFEASIBLE" if t.user_attrs.get("infeasible") else t.state.name
    return TrialLine(number=t.number, state=state, param_count=param_count(t.user_attrs), val_accuracy=val,
                     vs_baseline_pp=vs, seconds=t.user_attrs.get("seconds"), reason=reason, done=done, total=total,
                     baseline=bool(t.user_attrs.get("baseline")),
                     choices=choices(trial_attr(t, "spec"), t.params), epochs_run=trial_attr(t, "epochs_run"))


def _worker_args(argv: list[str] | None) -> Any:
    import argparse

    ap = argparse.ArgumentParser(prog="python -m cnnsearch.search.runner", description=main.__doc__)
    ap.add_argument("name")
    ap.add_argument("--trials", type=int, required=True)
    ap.add_argument("--storage", default=None, help="default: $CNNSEARCH_STORAGE (how run_workers passes it)")
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--threads", type=int, default=None, help="TensorFlow intra-op threads for this process")
    ap.add_argument("--timeout", type=float, default=None)
    ap.add_argument("--data", default=None)
    ap.add_argument("--val-data", default=None)
    ap.add_argument("--val-fraction", type=float, default=None)
    ap.add_argument("--quiet", action="store_true")
    ap.add_argument("--debug", action="store_true")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """One worker process of :func:`run_workers`: run exactly ``--trials`` trials; returns the exit status.

    Errors are one line on stderr as in the CLI (exit 1, 2 for invalid input,
    130 on Ctrl-C); ``--debug`` shows the traceback instead. An interrupted
    worker prints nothing: its parent says "interrupted" once for the run
    (unless the parent died, which the worker then says).
    """
    args = _worker_args(argv)
    from cnnsearch.ground import _tf

    _tf.show_import_log = args.debug
    interrupt.watch_parent()
    if args.threads:
        from cnnsearch.model.train import configure_threads

        configure_threads(intra_op=args.threads, inter_op=1)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    pid = os.getpid()
    if not args.quiet:  # the worker's first line: the device it trains on (issue 12)
        from cnnsearch.model.train import device_line

        print(f"worker {pid} training on {device_line(args.threads)}", file=sys.stderr, flush=True)

    def line(t: TrialLine) -> None:
        if not args.quiet:
            print(t.text(worker=pid), file=sys.stderr, flush=True)

    try:
        run(args.name, trials=args.trials, timeout=args.timeout, data_path=args.data, url=args.storage,
            on_trial=line, worker=True, seed=args.seed, val_data=args.val_data,
            val_fraction=args.val_fraction)
    except CnnsearchError as exc:
        if args.debug:
            raise
        print(f"cnnsearch: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt as exc:
        if args.debug:
            raise
        if interrupt.parent_gone():
            print(f"cnnsearch: worker {pid}: {getattr(exc, 'reason', 'interrupted')}", file=sys.stderr)
        return int(getattr(exc, "exit_code", 130))
    except Exception as exc:  # a database error after the storage opened: one line naming file and cause
        explained = storage_error(exc)
        if args.debug or explained is None:
            raise
        print(f"cnnsearch: error: {explained}", file=sys.stderr)
        return explained.exit_code
    return 0


__all__ = ["AUTO_WORKERS", "MAX_INFEASIBLE_IN_A_ROW", "TrialLine", "WorkerDied", "auto_workers", "fail_stale",
           "fail_stale_trials", "main", "max_workers", "run", "run_workers", "study_splits"]


if __name__ == "__main__":
    sys.exit(main())
