"""One progress view for a run in worker processes (``study run --workers K``, the default on 2+ cores).

The parent process watches the study's storage, where every worker records its trials (the epoch
of a running trial is the count of its intermediate values), so the view needs nothing from the
workers but what they already store:

- first a plan line: ``9 trials on 2 workers (1 thread each); about 6 min 10 s at this machine's
  measured speed`` (the median epoch time of the study's finished trials, or "not measured yet");
- on a terminal, one tqdm bar: overall k/N, the epoch of each running trial, elapsed, ETA;
  off a terminal (CI, ``| tee``), one plain line per event (an epoch of a running trial), no ANSI code;
- one line per finished trial with its choices (:class:`cnnsearch.search.runner.TrialLine`), above the bar.

The workers' own stderr comes through a pipe: their device line and any error pass through (above
the bar), their per-trial lines are dropped because this view prints the aggregated ones.
Hooked into :func:`cnnsearch.search.runner.run_workers` by its ``watch`` argument.
"""

from __future__ import annotations

import re
import statistics
import subprocess
import sys
import threading
import time
from typing import IO, Any

from optuna.trial import FrozenTrial, TrialState

from cnnsearch.ground import interrupt
from cnnsearch.ground.describe import choices
from cnnsearch.ground.progress import duration, plan_line
from cnnsearch.search.study import load, param_count, trial_attr

#: A worker's own per-trial line (``worker 123 [2/5] #7 ...``): the aggregated view prints its own instead.
_WORKER_TRIAL_LINE = re.compile(r"^worker \d+ \[\d+/\d+\] ")
_FINISHED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)


def plural(n: int, word: str) -> str:
    """``1 trial``, ``2 trials``."""
    return f"{n:,} {word}{'' if n == 1 else 's'}"


class Watch:
    """The aggregated view of one run; call it with the worker processes (the ``run_workers`` hook).

    Args:
        name: Study name.
        url: Storage URL (as the workers use it).
        workers: Worker processes.
        threads: TensorFlow threads per worker (for the plan line).
        stream: Where to write (default: stderr).
        tty: Draw a live bar (default: ``stream.isatty()``).
        poll_s: Seconds between looks at the storage.
    """

    def __init__(self, name: str, url: str | None, workers: int, threads: int = 1, *, stream: IO[str] | None = None,
                 tty: bool | None = None, poll_s: float = 2.0) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.tty = bool(tty if tty is not None else getattr(self.stream, "isatty", lambda: False)())
        self.name, self.url, self.workers, self.threads, self.poll_s = name, url, workers, threads, poll_s
        self.handle = load(name, url)
        self.epochs = int((self.handle.training.epochs if self.handle.training else 1) or 1)
        trials = self.handle.study.get_trials(deepcopy=False)
        self.seen = {t.number for t in trials if t.state in _FINISHED}  # finished before this run: not shown
        self.epoch_prior = _median_epoch_seconds(trials)
        self.epochs_seen: dict[int, int] = {}
        self.done = 0
        self.total = 0
        self.start = time.perf_counter()
        self._lock = threading.Lock()
        self._bar: Any = None

    # --- the hook ----------------------------------------------------------------------------------

    def __call__(self, procs: list[subprocess.Popen[bytes]], total: int) -> list[int]:
        """Show the run until every worker has exited; returns their exit statuses."""
        self.total = total
        self.write(self.plan_line())
        readers = [threading.Thread(target=self._pass_through, args=(p,), daemon=True) for p in procs
                   if p.stderr is not None]
        for r in readers:
            r.start()
        if self.tty:
            from tqdm import tqdm

            self._bar = tqdm(total=max(total * self.epochs, 1), file=self.stream, dynamic_ncols=True, leave=False,
                             bar_format="{desc} {percentage:3.0f}%|{bar}| elapsed {elapsed}{postfix}")
        try:
            while any(p.poll() is None for p in procs):
                self.poll()
                interrupt.check()  # a signal deferred during the storage read stops here
                time.sleep(self.poll_s)
            for r in readers:
                r.join(timeout=5)
            self.poll()
        finally:
            self.close()
        return [p.returncode for p in procs]

    # --- events ------------------------------------------------------------------------------------

    def plan_line(self) -> str:
        """What will run, on how many workers, and about how long at the measured speed."""
        return plan_line(self.name, self.total, self.workers, self.epochs, self.epoch_prior, self.threads)

    def poll(self) -> None:
        """Look at the storage once: print finished trials and (off a terminal) new epochs; redraw the bar."""
        trials = self.handle.study.get_trials(deepcopy=False)
        running = [t for t in trials if t.state == TrialState.RUNNING and t.number not in self.seen]
        for t in trials:
            if t.state in _FINISHED and t.number not in self.seen:
                self.seen.add(t.number)
                self.epochs_seen.pop(t.number, None)
                self.write(self.finished_line(t))
        for t in running:
            epoch = len(t.intermediate_values)
            if epoch > self.epochs_seen.get(t.number, 0):
                self.epochs_seen[t.number] = epoch
                if not self.tty:
                    self.write(f"[{self.done}/{self.total}] trial {t.number} epoch {epoch}/{self.epochs},"
                               f" elapsed {duration(self.elapsed())}, ETA {duration(self.eta(running))}")
        self._refresh(running)

    def finished_line(self, t: FrozenTrial) -> str:
        """A finished trial's line with its choices; an infeasible draw does not count toward k/N."""
        from cnnsearch.search.runner import TrialLine  # the one-process run's line, so both read the same

        infeasible = bool(t.user_attrs.get("infeasible"))
        if not infeasible:  # an untrained draw over a size limit does not count toward --trials
            self.done += 1
        val = t.user_attrs.get("val_accuracy") if t.state == TrialState.COMPLETE else None
        if val is None and t.state == TrialState.PRUNED and t.intermediate_values:
            val = t.intermediate_values[max(t.intermediate_values)]
        base = self._baseline_val()

        line = TrialLine(number=t.number, state="INFEASIBLE" if infeasible else t.state.name,
                         param_count=param_count(t.user_attrs), val_accuracy=val,
                         vs_baseline_pp=None if val is None or base is None else 100 * (val - base),
                         seconds=t.user_attrs.get("seconds"),
                         reason=str(trial_attr(t, "fail_reason") or t.user_attrs.get("infeasible") or ""),
                         done=self.done, total=self.total, baseline=bool(t.user_attrs.get("baseline")),
                         choices=choices(trial_attr(t, "spec"), t.params), epochs_run=trial_attr(t, "epochs_run"))
        return line.text()

    def write(self, line: str) -> None:
        """Print a line (above the bar on a terminal); safe from the pipe-reading threads."""
        with self._lock:
            if self._bar is not None:
                self._bar.write(line, file=self.stream)
            else:
                print(line, file=self.stream, flush=True)

    def close(self) -> None:
        """Remove the bar."""
        with self._lock:
            if self._bar is not None:
                self._bar.close()
                self._bar = None

    # --- arithmetic --------------------------------------------------------------------------------

    def elapsed(self) -> float:
        """Seconds since the workers started."""
        return time.perf_counter() - self.start

    def epoch_seconds(self) -> float | None:
        """Seconds an epoch takes per worker: measured in this run once an epoch has finished, else the prior."""
        epochs = (self.done * self.epochs) + sum(self.epochs_seen.values())
        if epochs >= self.workers:  # each worker's first epoch also pays TensorFlow's start-up: wait for one each
            return self.elapsed() * self.workers / epochs
        return self.epoch_prior

    def eta(self, running: list[FrozenTrial]) -> float:
        """Seconds left: the epochs not run yet, shared by the workers, at the measured speed (nan if unknown)."""
        per = self.epoch_seconds()
        if per is None:
            return float("nan")
        left = self.total * self.epochs - self.done * self.epochs - sum(self.epochs_seen.get(t.number, 0)
                                                                        for t in running)
        return max(left, 0) * per / max(self.workers, 1)

    def _refresh(self, running: list[FrozenTrial]) -> None:
        with self._lock:
            if self._bar is None:
                return
            epochs = ", ".join(f"#{t.number} epoch {self.epochs_seen.get(t.number, 0)}/{self.epochs}"
                               for t in running) or "starting"
            self._bar.n = min(self.done * self.epochs + sum(self.epochs_seen.get(t.number, 0) for t in running),
                              self._bar.total)
            self._bar.set_description_str(f"[{self.done}/{self.total}] {epochs}", refresh=False)
            self._bar.set_postfix_str(f"ETA {duration(self.eta(running))}", refresh=False)
            self._bar.refresh()

    def _baseline_val(self) -> float | None:
        for t in self.handle.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
            if t.user_attrs.get("baseline") and t.user_attrs.get("val_accuracy") is not None:
                return float(t.user_attrs["val_accuracy"])
        return None

    def _pass_through(self, proc: subprocess.Popen[bytes]) -> None:
        """Copy a worker's stderr lines, except its per-trial lines (this view prints the aggregated ones)."""
        assert proc.stderr is not None
        for raw in iter(proc.stderr.readline, b""):
            line = raw.decode("utf-8", "replace").rstrip("\n")
            if line and not _WORKER_TRIAL_LINE.match(line):
                self.write(line)


def _median_epoch_seconds(trials: list[FrozenTrial]) -> float | None:
    """The median epoch time of the study's finished trials (all at the study's fidelity), if any."""
    secs = [s for t in trials if t.state == TrialState.COMPLETE for s in trial_attr(t, "epoch_seconds") or []]
    return statistics.median(secs) if secs else None


__all__ = ["Watch"]
