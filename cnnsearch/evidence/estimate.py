"""How long training will take here, from the epoch times a study has already measured.

An epoch costs about ``flops * (3 * train_images + val_images)`` floating-point
operations: forward and backward (about 3x the forward FLOPs) over the training
images, one forward pass over the validation images. Each finished trial gives a
speed, its median epoch time (the median skips the first epoch's graph building)
divided by that count; the median over trials is this machine's measured speed.
Scaled by images and FLOPs, it estimates any other run. No TensorFlow, no optuna.

Scaling by FLOPs is rough across model sizes: on a 2-core CPU a 7,562-parameter model trained at
5.9 GFLOP/s and the reference at 35.8 (``tests/bench/bench_small.py``), so a small study's median
speed made the reference's runs 6x too long. A run whose configuration is itself a trial of the
study (every confirmation candidate and the baseline) is therefore scaled from that trial's own
epoch times: the same model, only more images. Runs spread over ``processes`` one-thread
processes are packed longest first (each process takes the next run when free).
"""

from __future__ import annotations

import statistics
from typing import Any, Iterable, Mapping, NamedTuple

#: A training step costs about this many forward passes (forward + backward).
TRAIN_COST = 3


class Speed(NamedTuple):
    """Measured seconds per forward FLOP-image, and how many trials it rests on."""

    seconds_per_flop_image: float
    trials: int


def work(flops: int, train_images: int, val_images: int) -> float:
    """Forward FLOP-images of one epoch (see the module docstring)."""
    return float(flops) * (TRAIN_COST * train_images + val_images)


def speed(trials: Iterable[Mapping[str, Any]], train_images: int, val_images: int) -> Speed | None:
    """This machine's speed from trials' user attributes (``epoch_seconds``, ``flops``).

    Args:
        trials: The user attributes of finished trials.
        train_images, val_images: What each of those trials trained and validated on.
    """
    rates = []
    for ua in trials:
        secs, flops = ua.get("epoch_seconds"), ua.get("flops")
        if not secs or not flops:
            continue
        rates.append(statistics.median(secs) / work(flops, train_images, val_images))
    if not rates:
        return None
    return Speed(statistics.median(rates), len(rates))


def epoch_seconds(s: Speed, flops: int, train_images: int, val_images: int) -> float:
    """Estimated seconds for one epoch of a model of ``flops`` forward FLOPs per image."""
    return s.seconds_per_flop_image * work(flops, train_images, val_images)


class Plan(NamedTuple):
    """What a confirmation will train, and how long that should take here."""

    runs: int  # (configuration, seed) runs still to train
    configs: int  # configurations, the baseline included
    seeds: int
    epochs: int
    train_images: int
    seconds: float | None  # None: nothing measured to scale from
    speed: Speed | None
    trial_images: int  # images each measured trial trained on
    total: int = 0  # runs the confirmation needs, new and already stored (0: not said)
    processes: int = 1  # runs trained at once
    own: int = 0  # runs timed from their own configuration's trial (the rest from the median speed)

    def text(self) -> str:
        """``12 runs: 4 configurations x 3 seeds at 20 epochs on 54,000 images; about 2 h 25 min ...``."""
        def n(count: int, word: str) -> str:
            return f"{count} {word}{'' if count == 1 else 's'}"

        runs = (f"{self.runs} new run{'' if self.runs == 1 else 's'}; {self.total - self.runs} of {self.total} already"
                " done" if self.total else n(self.runs, 'run'))
        head = (f"{runs}: {n(self.configs, 'configuration')} x {n(self.seeds, 'seed')} at"
                f" {n(self.epochs, 'epoch')} on {self.train_images:,} images")
        if not self.runs:
            return head + "; every one is stored already (nothing to train)"
        if self.seconds is None or self.speed is None:
            return head + "; no time estimate (no trial of this study has measured epoch times)"
        from cnnsearch.ground.progress import duration

        where = (f"{self.processes} runs at a time" if self.processes > 1 else "one run at a time")
        if self.own == self.runs:
            how = "each configuration's own search trial's epoch times, scaled by images"
        else:
            how = (f"the median epoch time of {self.speed.trials} finished trial{'s' if self.speed.trials != 1 else ''}"
                   f" on {self.trial_images:,} images, scaled by images and FLOPs"
                   + (f"; {self.own} run{'s' if self.own != 1 else ''} from their own trial's" if self.own else ""))
        return f"{head}; about {duration(self.seconds)} at this machine's measured speed ({how}; {where})"


def plan(trials: Iterable[Mapping[str, Any]], trial_images: int, val_images: int, run_flops: list[int],
         *, configs: int, seeds: int, epochs: int, train_images: int, total: int = 0,
         own: list[Mapping[str, Any] | None] | None = None, processes: int = 1) -> Plan:
    """A confirmation's plan: ``run_flops`` holds the forward FLOPs of each run still to train.

    ``own``: for each run, the user attributes of the trial of its own configuration (None where there is
    none): its speed is that trial's, else the median over ``trials``. ``processes``: runs at once.
    """
    s = speed(trials, trial_images, val_images)
    mine = [None if o is None else speed([o], trial_images, val_images) for o in (own or [None] * len(run_flops))]
    if s is None and any(m is None for m in mine):
        return Plan(len(run_flops), configs, seeds, epochs, train_images, None, s, trial_images, total, processes)
    each = [epochs * epoch_seconds(m or s, f, train_images, val_images)  # type: ignore[arg-type]
            for m, f in zip(mine, run_flops)]
    return Plan(len(run_flops), configs, seeds, epochs, train_images, packed(each, processes), s or mine[0],
                trial_images, total, processes, sum(m is not None for m in mine))


def packed(seconds: list[float], processes: int) -> float:
    """Wall time of ``seconds`` runs on ``processes`` workers, each taking the longest run left when free."""
    loads = [0.0] * max(1, processes)
    for t in sorted(seconds, reverse=True):
        loads[loads.index(min(loads))] += t
    return max(loads)


__all__ = ["Plan", "Speed", "TRAIN_COST", "epoch_seconds", "plan", "speed", "work"]
