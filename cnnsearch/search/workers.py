"""Worker processes of one ``study run --workers K``: how many, their shares, and what happens when one dies.

Each worker is ``python -m cnnsearch.search.runner`` (:func:`cnnsearch.search.runner.main`), a plain
process on this machine running a fixed share of the trials. On SQLite they share one database file:
:func:`cnnsearch.records.storage.serialise_sqlite` makes each hand-out of a queued trial one locked
transaction, so no trial goes to two workers (docs/reliability.md).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from typing import Any, Callable

from cnnsearch.ground import data as data_mod
from cnnsearch.ground import interrupt
from cnnsearch.ground.errors import CnnsearchError, ConfigError, Interrupted
from cnnsearch.model.train import available_cores
from cnnsearch.records.storage import STORAGE_ENV
from cnnsearch.search.stale import fail_stale
from cnnsearch.search import limits, prepare
from cnnsearch.search.study import WORKER_ENV, Handle, ensure_baseline_queued, load

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


def max_workers(cores: int | None = None) -> int:
    """The most worker processes a run starts: one per core (more only share the cores, and each
    holds its own copy of the data and of TensorFlow, hundreds of MB)."""
    return max(1, available_cores() if cores is None else cores)


def study_splits(handle: Handle, data_path: str | None, options: dict[str, Any] | None = None) -> data_mod.Splits:
    """The study's data, split at its fidelity (:func:`cnnsearch.search.prepare.study_splits`); a DataError if
    missing, changed or too small for the baseline. Its warnings go to ``options["notes"]``, shown once by the caller.
    """
    opts = options if options is not None else {}
    splits, notes = prepare.study_splits(handle, data_path, data=opts.get("data"), val_data=opts.get("val_data"),
                                         val_fraction=opts.get("val_fraction"))
    opts["notes"] = notes
    # Size limits no point meets would record only untrained infeasible draws: refuse before any trial.
    # Here, not at create: a model's size depends on the images' shape, known once the data are.
    limits.check_some_point_fits(handle.space, input_shape=splits.input_shape, n_classes=splits.n_classes)
    return splits


def warn_once(opts: dict[str, Any]) -> None:
    """Show the data's warnings (:func:`study_splits`) once, through ``opts["on_warning"]``."""
    if opts.get("on_warning") is not None:
        for note in opts.get("notes", []):
            opts["on_warning"](note)


class WorkerDied(CnnsearchError):
    """A worker process was killed (SIGKILL, the OOM killer) without recording its trial."""


def _command(name: str, threads: int, timeout: float | None, data_path: str | None, quiet: bool, debug: bool,
             seed: int | None) -> list[str]:
    """A worker's command line (the storage URL goes by environment: a password would show in ``ps``)."""
    cmd = [sys.executable, "-m", "cnnsearch.search.runner", name, "--threads", str(threads)]
    if timeout is not None:
        cmd += ["--timeout", str(timeout)]
    if data_path:
        cmd += ["--data", data_path]
    cmd += ["--quiet"] * quiet + ["--debug"] * debug
    if seed is not None:
        cmd += ["--seed", str(seed)]
    return cmd


def run_workers(name: str, *, trials: int, workers: int, timeout: float | None = None, data_path: str | None = None,
                url: str | None = None, quiet: bool = False, cores: int | None = None, debug: bool = False,
                seed: int | None = None, val_data: str | None = None, val_fraction: float | None = None,
                on_warning: Callable[[str], None] | None = None, watch: Callable[[list[Any], int], list[int]] | None = None) -> list[int]:
    """Run ``trials`` new trials of study ``name`` in ``workers`` processes on this machine.

    Each process runs a fixed share, so the study gains exactly ``trials``
    finished trials (plus the baseline if it has not run) and trial numbers
    stay unique (Optuna's storage assigns them). ``workers`` above the core
    count is bounded to it (:func:`max_workers`) before anything is built. Each
    process's TensorFlow thread pools get ``cores // workers`` threads. Ctrl-C,
    SIGTERM or SIGHUP here is passed on to every worker, which fails its running
    trial with the signal's name; then :class:`~cnnsearch.ground.errors.Interrupted`
    is raised here. A worker whose parent dies (even by SIGKILL) gets SIGTERM
    (Linux), so none is orphaned. A worker killed by a signal not sent from
    here (kill -9, the OOM killer) has its trial failed and re-queued once,
    then :class:`WorkerDied` names it, after the other workers finish.
    ``watch(procs, total)``, if given, shows the run until the workers exit and returns their statuses
    (:class:`cnnsearch.search.watch.Watch`: one aggregated view); the workers' stderr then goes to it by pipe.

    Returns:
        The workers' exit statuses.
    """
    if workers < 1:
        raise ConfigError(f"--workers: expected >= 1; received {workers}")
    workers = min(workers, max_workers(cores))
    h = load(name, url)
    # Bad data is one error line from here, not one from each worker; a first run also records the
    # study's data here, once, before the workers start.
    opts: dict[str, Any] = {"val_data": val_data, "val_fraction": val_fraction, "on_warning": on_warning}
    study_splits(h, data_path, opts)
    warn_once(opts)
    total = trials + (1 if ensure_baseline_queued(h.study, h.space) else 0)
    workers = max(1, min(workers, total))
    shares = [total // workers + (1 if i < total % workers else 0) for i in range(workers)]
    threads = max(1, (cores or available_cores()) // workers)
    cmd = _command(name, threads, timeout, data_path, quiet, debug, seed)
    cmd += ["--val-data", val_data] * bool(val_data) + ["--val-fraction", str(val_fraction)] * (val_fraction is not None)
    with interrupt.handled():
        procs: list[subprocess.Popen[bytes]] = []
        try:
            for i, n in enumerate(shares):
                if n > 0:
                    procs.append(subprocess.Popen([*cmd, "--trials", str(n)], preexec_fn=_die_with_parent,
                                                  env={**os.environ, WORKER_ENV: str(i + 1), STORAGE_ENV: h.url},
                                                  stderr=subprocess.PIPE if watch is not None else None))
            codes = watch(procs, total) if watch is not None else [p.wait() for p in procs]
        except KeyboardInterrupt as exc:
            _stop(procs, exc.signum if isinstance(exc, Interrupted) else signal.SIGINT)
            raise
    _report_deaths(h.study, procs)
    return codes


def _stop(procs: list[subprocess.Popen[bytes]], signum: int) -> None:
    """Pass the signal on (Ctrl-C in a terminal reaches them anyway; SIGTERM from docker stop does not):
    each worker fails its running trial with the signal's name and exits; one that hangs is killed."""
    for p in procs:
        if p.poll() is None:
            p.send_signal(signum)
    for p in procs:
        try:
            p.wait(timeout=WORKER_STOP_S)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def _report_deaths(study: Any, procs: list[subprocess.Popen[bytes]]) -> None:
    """Workers that a signal killed (nothing here sent one): fail and re-queue their trials, then say so."""
    from cnnsearch.search.stale import RETRY_OF

    dead = {p.pid: p.returncode for p in procs if p.returncode is not None and p.returncode < 0}
    if not dead:
        return
    fail_stale(study)  # their leases name processes that no longer exist (Optuna's heartbeat may have been first)
    trials = study.get_trials(deepcopy=False)
    retried = {t.system_attrs.get(RETRY_OF) for t in trials}
    theirs = [t for t in trials if (t.user_attrs.get("worker") or {}).get("pid") in dead and t.state.name == "FAIL"
              and t.user_attrs.get("failure_kind") != "interrupted"]
    who = "; ".join(f"worker process {pid} was killed by {_signame(-code)}" for pid, code in dead.items())
    oom = (" (SIGKILL from outside is often the kernel's out-of-memory killer: see dmesg)"
           if -signal.SIGKILL in dead.values() else "")
    said = ", ".join(f"#{t.number}" + (" (re-queued)" if t.number in retried else "") for t in theirs)
    raise WorkerDied(f"{who}{oom}; its running trial {said or '(none)'} failed; the other workers finished;"
                     " run the same command again to add the trials it did not run")


def _signame(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


def _die_with_parent() -> None:
    """In a worker, before exec: SIGTERM this process if the parent dies (even by SIGKILL); Linux only."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, 15)  # PR_SET_PDEATHSIG = 1, SIGTERM = 15
    except Exception:  # not Linux: a parent killed hard may leave its workers to finish their share
        pass


__all__ = ["AUTO_WORKERS", "WorkerDied", "auto_workers", "max_workers", "run_workers", "study_splits"]
