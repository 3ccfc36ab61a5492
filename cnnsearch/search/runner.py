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

from cnnsearch.ground import data as data_mod
from cnnsearch.ground import interrupt
from cnnsearch.search import prepare
from cnnsearch.ground import provenance
from cnnsearch.ground.describe import choices
from cnnsearch.ground.errors import CnnsearchError, ConfigError, Interrupted, TrialFailed
from cnnsearch.search.objective import Objective, process_start
from cnnsearch.records.storage import STORAGE_ENV, experimental_ok, storage_error
from cnnsearch.search.study import (WORKER_ENV, Handle, baseline_trial, ensure_baseline_queued, load, param_count,
                             settings_of, trial_attr, write_note)
from cnnsearch.model.train import available_cores

#: Seconds a worker gets to record its interrupted trial after the signal is passed on, before it is killed.
WORKER_STOP_S = 60


#: Worker processes that ``--workers auto`` (``study run``'s default) starts on a CPU with >= 2 cores:
#: tests/bench/bench_speed.py workers (issue 12), 2026-11-29 on an idle 2-core AMD EPYC at seed.toml's
#: fidelity, median of 3 alternating 4-minute runs: two one-thread processes finished 195 trials an hour,
#: one two-thread process 81 (2.4x; 1.9-3.0x rep by rep). Small models are dominated by per-step overhead,
#: which one thread per process pays without waiting for the other core. More than 2 was not measured.
AUTO_WORKERS = 2


def _nvidia_gpu_visible() -> bool:
    # Without importing TensorFlow (seconds): an NVIDIA device node that CUDA_VISIBLE_DEVICES does not hide.
    import glob

    if os.environ.get("CUDA_VISIBLE_DEVICES") in ("", "-1"):
        return False
    return bool(glob.glob("/dev/nvidia[0-9]*"))


def auto_workers(trials: int, cores: int | None = None, gpu: bool | None = None) -> int:
    """What ``--workers auto`` means for a run of ``trials`` new trials on this machine.

    :data:`AUTO_WORKERS` processes, by measurement, except where more than one cannot pay: fewer than
    2 trials to run, fewer than 2 cores, or an NVIDIA GPU (each TensorFlow process would claim the
    whole GPU's memory, its default).
    """
    cores = available_cores() if cores is None else cores
    gpu = _nvidia_gpu_visible() if gpu is None else gpu
    if trials < 2 or cores < 2 or gpu:
        return 1
    return min(AUTO_WORKERS, cores)

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
    data: data_mod.Dataset | None = None,
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


def _study_splits(handle: Handle, data_path: str | None, options: dict[str, Any] | None = None) -> data_mod.Splits:
    """The study's data, split at its fidelity (:func:`cnnsearch.search.prepare.study_splits`); warnings shown once."""
    opts = options or {}
    splits, notes = prepare.study_splits(handle, data_path, data=opts.get("data"), val_data=opts.get("val_data"),
                                         val_fraction=opts.get("val_fraction"))
    opts["notes"] = notes  # shown by the caller once its first line (the device, the workers) is out
    return splits


def _warn(opts: dict[str, Any]) -> None:
    """Show the data's warnings (:func:`cnnsearch.search.prepare.study_splits`) once, through ``on_warning``."""
    if opts.get("on_warning") is not None:
        for note in opts.get("notes", []):
            opts["on_warning"](note)


def _run(name: str, *, trials: int, timeout: float | None, data_path: str | None, url: str | None,
         on_trial: Callable[[TrialLine], None] | None, verbose: int, worker: bool, seed: int | None,
         on_plan: Callable[[int, int, float | None], None] | None = None,
         on_trial_start: Callable[[int, bool], None] | None = None,
         on_epoch: Callable[[int, dict[str, float]], None] | None = None,
         options: dict[str, Any] | None = None) -> Handle:
    handle = load(name, url, heartbeat=True, seed=seed)
    study, sp, cfg = handle.study, handle.space, handle.training
    opts = options or {}
    splits = _study_splits(handle, data_path, opts)
    # A worker that died without a word leaves its trial RUNNING: fail it now (and re-queue it once,
    # through the heartbeat callback) rather than at the next trial start, which --trials 0 never reaches.
    with experimental_ok():
        optuna.storages.fail_stale_trials(study)
    if not isinstance(study._storage, optuna.storages.RDBStorage):
        fail_stale(study)  # journal files have no heartbeat: the lease of each RUNNING trial is checked instead
    total = trials if worker else trials + (1 if ensure_baseline_queued(study, sp) else 0)
    objective = Objective(handle, splits, verbose=verbose, on_start=on_trial_start, on_epoch=on_epoch,
                          build=opts.get("build"), callbacks=opts.get("callbacks", ()),
                          mnist=provenance.is_mnist(study))
    state = {"done": 0, "failures": 0, "last": "", "infeasible": 0, "finished": 0, "training_failures": 0}
    limit = sp.study["max_consecutive_failures"]

    def after_trial(study: optuna.Study, t: FrozenTrial) -> None:
        if t.user_attrs.get("infeasible"):  # untrained: counts toward neither --trials nor the failure rule
            state["infeasible"] += 1
            if on_trial is not None:
                on_trial(_line(study, t, t.user_attrs["infeasible"], state["done"], total))
            if state["infeasible"] >= MAX_INFEASIBLE_IN_A_ROW:
                study.stop()
            return
        state["infeasible"] = 0
        state["done"] += 1
        if state["done"] >= total:
            study.stop()  # n_trials is open-ended in a size-limited study: stop at --trials counted ones
        reason = trial_attr(t, "fail_reason") or t.system_attrs.get("fail_reason", "")
        if t.state == TrialState.FAIL and t.user_attrs.get("failure_kind") != "invalid_architecture":
            state["failures"] += 1
            state["training_failures"] += 1
            state["last"] = reason
        elif t.state != TrialState.FAIL:
            state["failures"] = 0
            state["finished"] += 1
        if t.state == TrialState.PRUNED:
            reason = f"pruned after epoch {t.user_attrs.get('epochs_run', '?')}"
        reused = t.user_attrs.get("reused_from")
        if reused and t.state == TrialState.COMPLETE:
            reason = f"reused from study {reused['study']!r} trial {reused['trial']}, not trained again"
        if t.user_attrs.get("baseline") and t.state == TrialState.COMPLETE:
            write_note(study, settings_of(study) or {})  # now with the in-study baseline's numbers
        if on_trial is not None:
            on_trial(_line(study, t, reason, state["done"], total))
        if limit and state["failures"] >= limit:
            study.stop()
        interrupt.check()

    optuna.logging.set_verbosity(optuna.logging.ERROR if not verbose else optuna.logging.INFO)
    if on_plan is not None:
        on_plan(total, cfg.epochs, _median_epoch_seconds(study))
    _warn(opts)
    # Infeasible draws (unbuildable, or over a size limit) do not count: run until `total` counted trials
    # (after_trial stops).
    study.optimize(objective, n_trials=None if total else total, timeout=timeout,
                   catch=(TrialFailed,), callbacks=[after_trial], gc_after_trial=True)
    if state["infeasible"] >= MAX_INFEASIBLE_IN_A_ROW:
        raise CnnsearchError(f"stopped: {state['infeasible']} points in a row were infeasible (over max_params /"
                             " max_flops or unbuildable); raise the limits or narrow the space to smaller models")
    if limit and state["failures"] >= limit:
        raise CnnsearchError(f"stopped: {state['failures']} trials in a row failed during training (last: "
                             f"{state['last']}); check the space's ranges and [training] settings, then run again")
    if state["done"] and not state["finished"] and state["training_failures"]:
        # Every trial failed (e.g. an optimizer setting no trial can train with): not a successful run.
        raise CnnsearchError(f"every trial of this run failed ({state['done']}; last: {state['last']}); check the"
                             " space's ranges and [training] settings, then run again")
    return handle


def run_workers(
    name: str,
    *,
    trials: int,
    workers: int,
    timeout: float | None = None,
    data_path: str | None = None,
    url: str | None = None,
    quiet: bool = False,
    cores: int | None = None,
    debug: bool = False,
    seed: int | None = None,
    val_data: str | None = None,
    val_fraction: float | None = None,
    on_warning: Callable[[str], None] | None = None,
) -> list[int]:
    """Run ``trials`` new trials of study ``name`` in ``workers`` processes on this machine.

    Each process runs a fixed share, so the study gains exactly ``trials``
    finished trials (plus the baseline if it has not run) and trial numbers
    stay unique (Optuna's storage assigns them). Each process's TensorFlow
    thread pools get ``cores // workers`` threads so the workers do not
    oversubscribe the CPU. Ctrl-C, SIGTERM or SIGHUP here is passed on to
    every worker, which fails its running trial with the signal's name; then
    :class:`~cnnsearch.ground.errors.Interrupted` is raised here. A worker whose
    parent dies (even by SIGKILL) gets SIGTERM (Linux), so none is orphaned. Each worker is
    ``python -m cnnsearch.search.runner`` (:func:`main`); ``debug`` passes ``--debug`` on.

    Returns:
        The workers' exit statuses.
    """
    import subprocess

    if workers < 1:
        raise ConfigError(f"--workers: expected >= 1; received {workers}")
    h = load(name, url)
    # Bad data is one error line from here, not one from each worker; a first run also records the
    # study's data here, once, before the workers start.
    opts = {"val_data": val_data, "val_fraction": val_fraction, "on_warning": on_warning}
    _study_splits(h, data_path, opts)
    _warn(opts)
    total = trials + (1 if ensure_baseline_queued(h.study, h.space) else 0)
    shares = [total // workers + (1 if i < total % workers else 0) for i in range(workers)]
    threads = max(1, (cores or available_cores()) // workers)
    # The storage URL goes by environment, not argv: a PostgreSQL password would show in `ps`.
    base_cmd = [sys.executable, "-m", "cnnsearch.search.runner", name, "--threads", str(threads)]
    if timeout is not None:
        base_cmd += ["--timeout", str(timeout)]
    if data_path:
        base_cmd += ["--data", data_path]
    if quiet:
        base_cmd += ["--quiet"]
    if debug:
        base_cmd += ["--debug"]
    if seed is not None:
        base_cmd += ["--seed", str(seed)]
    if val_data:
        base_cmd += ["--val-data", val_data]
    if val_fraction is not None:
        base_cmd += ["--val-fraction", str(val_fraction)]
    with interrupt.handled():
        procs: list[subprocess.Popen[bytes]] = []
        try:
            for i, n in enumerate(shares):
                if n > 0:
                    procs.append(subprocess.Popen([*base_cmd, "--trials", str(n)], preexec_fn=_die_with_parent,
                                                  env={**os.environ, WORKER_ENV: str(i + 1), STORAGE_ENV: h.url}))
            return [p.wait() for p in procs]
        except KeyboardInterrupt as exc:
            # Pass the same signal on (Ctrl-C in a terminal reaches them anyway; SIGTERM from docker stop does
            # not): each worker fails its running trial with the signal's name and exits.
            signum = exc.signum if isinstance(exc, Interrupted) else 2
            for p in procs:
                if p.poll() is None:
                    p.send_signal(signum)
            for p in procs:
                try:
                    p.wait(timeout=WORKER_STOP_S)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
            raise


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
    sure no run is active anywhere). For RDB storages Optuna's heartbeat does
    the same on its own; journal files have no heartbeat, hence this check.
    """
    failed = []
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        lease = t.user_attrs.get("worker")
        alive = _lease_alive(lease) if lease else None
        if alive or (alive is None and not force):
            continue
        who = f"process {lease['pid']} on {lease['host']}" if lease else "an unknown process"
        reason = f"stale: {who} is gone" if alive is False else f"failed by hand (study fail-stale --all; {who})"
        try:
            study._storage.set_trial_user_attr(t._trial_id, "fail_reason", reason)
            study._storage.set_trial_user_attr(t._trial_id, "failure_kind", "stale")
        except optuna.exceptions.UpdateFinishedTrialError:
            continue
        try:
            if not study._storage.set_trial_state_values(t._trial_id, state=TrialState.FAIL):
                continue
        except optuna.exceptions.UpdateFinishedTrialError:
            continue  # its worker finished it meanwhile
        failed.append(t.number)
        if not t.system_attrs.get("failed_trial"):  # re-queue once, as Optuna's heartbeat retry does
            attrs = {k: v for k, v in t.user_attrs.items() if k == "baseline"}
            study.enqueue_trial(t.params, user_attrs=attrs, skip_if_exists=False)
            queued = study.get_trials(deepcopy=False, states=(TrialState.WAITING,))[-1]
            study._storage.set_trial_system_attr(queued._trial_id, "failed_trial", t.number)
    return failed


def fail_stale_trials(name: str, url: str | None = None, *, force: bool = False) -> list[int]:
    """``study fail-stale NAME``: :func:`fail_stale` on a stored study."""
    return fail_stale(load(name, url).study, force=force)


def _die_with_parent() -> None:
    """In a worker, before exec: SIGTERM this process if the parent dies (even by SIGKILL); Linux only."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, 15)  # PR_SET_PDEATHSIG = 1, SIGTERM = 15
    except Exception:  # not Linux: a parent killed hard may leave its workers to finish their share
        pass


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


def main(argv: list[str] | None = None) -> int:
    """One worker process of :func:`run_workers`: run exactly ``--trials`` trials; returns the exit status.

    Errors are one line on stderr as in the CLI (exit 1, 2 for invalid input,
    130 on Ctrl-C); ``--debug`` shows the traceback instead.
    """
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
    args = ap.parse_args(argv)
    from cnnsearch.ground import _tf

    _tf.show_import_log = args.debug
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
            on_trial=line, worker=True, seed=args.seed, val_data=args.val_data, val_fraction=args.val_fraction)
    except CnnsearchError as exc:
        if args.debug:
            raise
        print(f"cnnsearch: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt as exc:
        if args.debug:
            raise
        print(f"cnnsearch: {getattr(exc, 'reason', 'interrupted')}", file=sys.stderr)
        return int(getattr(exc, "exit_code", 130))
    except Exception as exc:  # a database error after the storage opened: one line naming file and cause
        explained = storage_error(exc)
        if args.debug or explained is None:
            raise
        print(f"cnnsearch: error: {explained}", file=sys.stderr)
        return explained.exit_code
    return 0


__all__ = ["AUTO_WORKERS", "TrialLine", "auto_workers", "fail_stale", "fail_stale_trials", "main", "run",
           "run_workers"]


if __name__ == "__main__":
    sys.exit(main())
