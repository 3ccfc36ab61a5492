"""How long training will take here, from the epoch times a study has already measured.

An epoch costs about ``flops * (3 * train_images + val_images)`` floating-point
operations: forward and backward (about 3x the forward FLOPs) over the training
images, one forward pass over the validation images. Each finished trial gives a
speed, its median epoch time (the median skips the first epoch's graph building)
divided by that count; the median over trials is this machine's measured speed.
Scaled by images and FLOPs, it estimates any other run. No TensorFlow, no optuna.
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


__all__ = ["Speed", "TRAIN_COST", "epoch_seconds", "speed", "work"]
