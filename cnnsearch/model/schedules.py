"""Learning-rate schedules a study may train with: constant | step | cosine (with warmup) | one-cycle.

Every parameter is a *fraction of the run* (of its optimizer steps), never a
number of epochs: a search at 6 epochs and a confirmation at 20 then train
with the same schedule shape, so what the search found is what is confirmed.
Keras's own schedules where they fit (step: ``ExponentialDecay`` with
``staircase=True``; cosine: ``CosineDecay`` with ``warmup_target``); one-cycle,
which Keras lacks, is the small :func:`one_cycle_class` (PyTorch's ``OneCycleLR``
with cosine annealing, the form the hand-built small MNIST CNNs train with).
Checking the parameters needs no Keras; building a schedule imports it lazily.
"""

from __future__ import annotations

import math
from typing import Any, Mapping

from cnnsearch.ground.errors import ConfigError

#: Each schedule's parameters: name -> (low, high, low inclusive, high inclusive, default, meaning).
SCHEDULES: dict[str, dict[str, tuple[float, float, bool, bool, float, str]]] = {
    "constant": {},
    # The learning rate times `factor` after every `every` of the run (0.3, 0.1: the hand-built nets' StepLR(6, 0.1)
    # over 20 epochs).
    "step": {"every": (0.0, 1.0, False, True, 0.3, "fraction of the run between drops"),
             "factor": (0.0, 1.0, False, True, 0.1, "multiplier at each drop")},
    # Linear warmup from 0 over `warmup` of the run, then cosine decay to `alpha` x the learning rate.
    "cosine": {"warmup": (0.0, 1.0, True, False, 0.05, "fraction of the run warming up"),
               "alpha": (0.0, 1.0, True, True, 0.0, "final learning rate as a fraction of the peak")},
    # From lr/div_factor up to lr over pct_start of the run, then down to lr/div_factor/final_div_factor
    # (PyTorch's OneCycleLR defaults: 0.3, 25, 10,000).
    "onecycle": {"pct_start": (0.0, 1.0, False, False, 0.3, "fraction of the run rising to the peak"),
                 "div_factor": (1.0, 1e6, True, True, 25.0, "peak / starting learning rate"),
                 "final_div_factor": (1.0, 1e9, True, True, 1e4, "starting / final learning rate")},
}


def check(name: str, args: Mapping[str, Any], where: str = "schedule") -> None:
    """Reject an unknown schedule, an unknown parameter, or a parameter out of its range (one line, the key named).

    Raises:
        ConfigError: e.g. ``schedule.pct_start: expected a number in (0, 1); received 1.5``.
    """
    if name not in SCHEDULES:
        raise ConfigError(f"{where}: expected one of {', '.join(SCHEDULES)}; received {name!r}")
    known = SCHEDULES[name]
    for key, v in args.items():
        if key not in known:
            takes = ", ".join(known) or "no parameters"
            raise ConfigError(f"{where}.{key}: expected a parameter of the {name!r} schedule ({takes}); received {key!r}")
        check_value(name, key, v, f"{where}.{key}")


def check_value(name: str, key: str, v: Any, where: str) -> None:
    """One schedule parameter in its range (see :data:`SCHEDULES`)."""
    if not in_range(name, key, v):
        raise ConfigError(f"{where}: expected {expected(name, key)}; received {v!r}")


def in_range(name: str, key: str, v: Any) -> bool:
    """Is ``v`` a valid value of parameter ``key`` of schedule ``name``?"""
    low, high, low_in, high_in = SCHEDULES[name][key][:4]
    return (isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
            and (low <= v if low_in else low < v) and (v <= high if high_in else v < high))


def expected(name: str, key: str) -> str:
    """What parameter ``key`` of schedule ``name`` must be, in words: ``a number in (0, 1) (fraction of ...)``."""
    low, high, low_in, high_in, _, meaning = SCHEDULES[name][key]
    return f"a number in {'[' if low_in else '('}{low:g}, {high:g}{']' if high_in else ')'} ({meaning})"


def value(name: str, args: Mapping[str, Any], key: str) -> float:
    """Parameter ``key`` of schedule ``name``: given, else its default."""
    return float(args.get(key, SCHEDULES[name][key][4]))


def build(name: str, args: Mapping[str, Any], learning_rate: float, total_steps: int) -> Any:
    """The Keras learning rate for a run of ``total_steps`` optimizer steps: a float (constant) or a schedule."""
    if name == "constant":
        return learning_rate
    from cnnsearch.ground._tf import keras

    schedules = keras().optimizers.schedules
    total = max(int(total_steps), 2)
    if name == "step":
        every = max(1, round(value(name, args, "every") * total))
        return schedules.ExponentialDecay(learning_rate, every, value(name, args, "factor"), staircase=True)
    if name == "cosine":
        warmup = min(round(value(name, args, "warmup") * total), total - 1)
        alpha = value(name, args, "alpha")
        if warmup == 0:
            return schedules.CosineDecay(learning_rate, total, alpha=alpha)
        return schedules.CosineDecay(0.0, total - warmup, alpha=alpha, warmup_target=learning_rate,
                                     warmup_steps=warmup)
    return one_cycle_class()(learning_rate, total, value(name, args, "pct_start"), value(name, args, "div_factor"),
                             value(name, args, "final_div_factor"))


def one_cycle(step: float, max_lr: float, total_steps: int, pct_start: float, div_factor: float,
              final_div_factor: float) -> float:
    """The one-cycle learning rate at ``step`` in plain Python: the formula the Keras class computes."""
    initial, peak_step = max_lr / div_factor, pct_start * total_steps - 1
    final, last = initial / final_div_factor, total_steps - 1
    step = min(step, last)

    def anneal(start: float, end: float, pct: float) -> float:
        return end + (start - end) / 2 * (1 + math.cos(math.pi * pct))

    if step <= peak_step:
        return anneal(initial, max_lr, step / peak_step if peak_step > 0 else 1.0)
    return anneal(max_lr, final, (step - peak_step) / (last - peak_step))


_ONE_CYCLE: list[Any] = []


def one_cycle_class() -> Any:
    """The Keras ``LearningRateSchedule`` of :func:`one_cycle` (defined once, registered for ``.keras`` files)."""
    if _ONE_CYCLE:
        return _ONE_CYCLE[0]
    from cnnsearch.ground._tf import keras

    K = keras()
    ops = K.ops

    @K.saving.register_keras_serializable(package="cnnsearch")
    class OneCycle(K.optimizers.schedules.LearningRateSchedule):
        """Cosine one-cycle: up from max_lr/div_factor to max_lr, then down to that / final_div_factor."""

        def __init__(self, max_lr: float, total_steps: int, pct_start: float = 0.3, div_factor: float = 25.0,
                     final_div_factor: float = 1e4) -> None:
            self.max_lr, self.total_steps, self.pct_start = float(max_lr), int(total_steps), float(pct_start)
            self.div_factor, self.final_div_factor = float(div_factor), float(final_div_factor)

        def __call__(self, step: Any) -> Any:
            initial = self.max_lr / self.div_factor
            final = initial / self.final_div_factor
            peak, last = self.pct_start * self.total_steps - 1, float(self.total_steps - 1)
            s = ops.minimum(ops.cast(step, "float32"), last)

            def anneal(start: float, end: float, pct: Any) -> Any:
                return end + (start - end) / 2 * (1 + ops.cos(math.pi * pct))

            up = anneal(initial, self.max_lr, ops.clip(s / max(peak, 1e-9), 0.0, 1.0) if peak > 0 else 1.0)
            down = anneal(self.max_lr, final, ops.clip((s - peak) / (last - peak), 0.0, 1.0))
            return ops.where(s <= peak, up, down)

        def get_config(self) -> dict[str, Any]:
            return {"max_lr": self.max_lr, "total_steps": self.total_steps, "pct_start": self.pct_start,
                    "div_factor": self.div_factor, "final_div_factor": self.final_div_factor}

    _ONE_CYCLE.append(OneCycle)
    return OneCycle
