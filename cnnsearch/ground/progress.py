"""Progress of long work on stderr: a live bar on a terminal, plain lines elsewhere.

Used by the CLI only (the library functions take callbacks). On a terminal a
tqdm bar shows unit k/N (a trial of a search, a run of a confirmation), the
epoch inside it, the elapsed time and an ETA; finished units print their line
above the bar. Off a terminal (CI, logs, ``| tee``) there is no bar and no ANSI
code: at most one plain line per epoch, plus one line per finished unit.

The ETA is measured, not guessed: remaining epochs times the mean duration of
the epochs run so far, the first (TensorFlow's warm-up) left out once there are
two (before the first one: a prior, e.g. the study's stored per-epoch times, or none).
"""

from __future__ import annotations

import math
import sys
import time
from typing import IO, Any


def duration(seconds: float) -> str:
    """Human wall time: ``41 s``, ``5 min 49 s``, ``2 h 25 min``."""
    if not math.isfinite(seconds) or seconds < 0:
        return "?"
    s = int(round(seconds))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    minutes = int(round(seconds / 60))
    return f"{minutes // 60} h {minutes % 60:02d} min"


def metrics_text(logs: dict[str, float]) -> str:
    """One epoch's Keras metrics, compact: ``loss 0.1234  acc 0.9612  val_loss ...``."""
    names = (("loss", "loss"), ("accuracy", "acc"), ("val_loss", "val_loss"), ("val_accuracy", "val_acc"))
    return "  ".join(f"{short} {float(logs[key]):.4f}" for key, short in names if key in logs)


def plan_line(name: str, trials: int, workers: int, epochs: int, epoch_s: float | None, threads: int | None = None
              ) -> str:
    """A run's first line: ``9 trials of 'demo' on 2 workers (1 thread each); about 6 min 10 s at this machine's
    measured speed`` (``epoch_s``: the median epoch of the study's finished trials; None: not measured yet)."""
    count = f"{trials} trial{'' if trials == 1 else 's'} of {name!r}"
    where = (f" on {workers} workers" + (f" ({threads} thread{'' if threads == 1 else 's'} each)" if threads else "")
             if workers > 1 else " in one process")
    if epoch_s is None:
        return count + where + "; time not measured yet (the first epochs will tell)"
    rounds = math.ceil(trials / max(workers, 1))
    return (f"{count}{where}; about {duration(rounds * epochs * epoch_s)} at this machine's measured speed"
            f" ({epoch_s:.1f} s an epoch, up to {epochs} epochs a trial; pruned trials stop early)")


class Progress:
    """Progress over ``total`` units of ``epochs`` epochs each (a unit may stop early: pruned, failed).

    Args:
        total: Units to run (trials or confirmation runs).
        epochs: Epochs per unit.
        stream: Where to write (default: stderr).
        tty: Draw a live bar (default: ``stream.isatty()``).
        verbose: Also show each epoch's metrics.
        epoch_prior_s: Seconds an epoch is expected to take before one is measured (None: no ETA yet).
        epoch_lines: Off a terminal, print one line per epoch (False: unit lines only, e.g. for workers).
        deadline_s: No unit starts after this many seconds (``--timeout``): the ETA never goes past it
            by more than the current unit's rest.
    """

    def __init__(self, total: int, epochs: int, *, stream: IO[str] | None = None, tty: bool | None = None,
                 verbose: bool = False, epoch_prior_s: float | None = None, epoch_lines: bool = True,
                 deadline_s: float | None = None) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.tty = bool(tty if tty is not None else getattr(self.stream, "isatty", lambda: False)())
        self.total, self.epochs, self.verbose = max(total, 0), max(epochs, 1), verbose
        self.epoch_prior_s, self.epoch_lines, self.deadline_s = epoch_prior_s, epoch_lines, deadline_s
        self.start = time.perf_counter()
        self.k = 0  # units started
        self.label = ""
        self.epoch_done = 0  # epochs finished in the current unit
        self.epoch_times: list[float] = []
        self._mark = self.start
        self._bar: Any = None
        if self.tty and self.total:
            from tqdm import tqdm

            self._bar = tqdm(total=self.total * self.epochs, file=self.stream, dynamic_ncols=True, leave=False,
                             bar_format="{desc} {percentage:3.0f}%|{bar}| elapsed {elapsed}{postfix}")
            self._refresh()

    # --- events ---------------------------------------------------------------------------------

    def start_unit(self, label: str) -> None:
        """A unit (trial, run) starts; ``label`` names it (``trial 3``, ``trial4 seed 1``)."""
        self.k += 1
        self.label, self.epoch_done = label, 0
        self._mark = time.perf_counter()
        self._refresh()

    def epoch_end(self, epoch: int, logs: dict[str, float]) -> None:
        """Epoch ``epoch`` (0-based) of the current unit finished with these Keras logs."""
        now = time.perf_counter()
        self.epoch_times.append(now - self._mark)
        self._mark = now
        self.epoch_done = epoch + 1
        head = f"[{self.k}/{self.total}] {self.label} epoch {self.epoch_done}/{self.epochs}"
        if self._bar is not None:
            if self.verbose:
                self._bar.write(f"{head}  {metrics_text(logs)}", file=self.stream)
            self._refresh()
        elif self.epoch_lines:
            extra = f"  {metrics_text(logs)}" if self.verbose else ""
            self._print(f"{head}{extra}  elapsed {duration(self.elapsed())}, ETA {duration(self.eta())}")

    def end_unit(self, line: str) -> None:
        """The current unit finished: print its line (a pruned unit's remaining epochs drop out of the ETA)."""
        self.epoch_done = self.epochs
        self.write(line)
        self._refresh()

    def skip_unit(self, line: str) -> None:
        """The current unit did not count (a size-limited study's infeasible draw, never trained): print its line."""
        self.k = max(self.k - 1, 0)
        self.epoch_done = self.epochs if self.k else 0  # back to "the previous unit is done"
        self.write(line)
        self._refresh()

    def write(self, line: str) -> None:
        """Print a line (above the bar on a terminal)."""
        if self._bar is not None:
            self._bar.write(line, file=self.stream)
        else:
            self._print(line)

    def close(self, what: str | None = "done") -> str:
        """Remove the bar; print (unless ``what`` is None) and return the final line with the total wall time."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        line = f"{what} in {duration(self.elapsed())} (total wall time)"
        if what is not None:
            self._print(line)
        return line

    # --- arithmetic -----------------------------------------------------------------------------

    def elapsed(self) -> float:
        """Seconds since this progress began."""
        return time.perf_counter() - self.start

    def epoch_seconds(self) -> float | None:
        """Mean measured epoch time of this run, else the prior.

        The run's very first epoch also pays TensorFlow's import and warm-up (10-20 s measured on a
        loaded 2-core machine): it is left out once a second epoch has been measured.
        """
        times = self.epoch_times[1:] if len(self.epoch_times) > 1 else self.epoch_times
        if times:
            return sum(times) / len(times)
        return self.epoch_prior_s

    def remaining_epochs(self) -> int:
        """Epochs left: the rest of the current unit plus every unit not started."""
        current = (self.epochs - self.epoch_done) if self.k else 0
        return current + max(self.total - self.k, 0) * self.epochs

    def eta(self) -> float:
        """Seconds left at the measured speed (nan when nothing is measured yet)."""
        per = self.epoch_seconds()
        if per is None:
            return float("nan")
        left = per * self.remaining_epochs()
        if self.deadline_s is None:
            return left
        current = per * ((self.epochs - self.epoch_done) if self.k else 0)
        return min(left, max(self.deadline_s - self.elapsed(), 0.0) + current)

    def _refresh(self) -> None:
        if self._bar is None:
            return
        self._bar.n = min(self.total * self.epochs - self.remaining_epochs(), self._bar.total)
        self._bar.set_description_str(f"[{self.k}/{self.total}] {self.label} epoch {self.epoch_done}/{self.epochs}",
                                      refresh=False)
        self._bar.set_postfix_str(f"ETA {duration(self.eta())}", refresh=False)  # tqdm puts ", " before it
        self._bar.refresh()

    def _print(self, line: str) -> None:
        print(line, file=self.stream, flush=True)


__all__ = ["Progress", "duration", "metrics_text", "plan_line"]
