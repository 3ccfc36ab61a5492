"""A space's two value types: one dimension, and the validated space file that holds them.

Their own module so that :mod:`cnnsearch.search.space` (reading files) and
:mod:`cnnsearch.search.points` (the points of a space) both import them, and neither imports
the other's reader: one idea, no circle.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from cnnsearch.ground.errors import ConfigError
from cnnsearch.model.train import TrainConfig


@dataclass(frozen=True)
class Dimension:
    """One searched (or fixed) dimension."""

    name: str
    kind: str  # "fixed" | "choice" | "int" | "float"
    value: Any = None  # fixed value
    choices: tuple[Any, ...] = ()
    low: float = 0.0
    high: float = 0.0
    step: float | None = None
    log: bool = False

    @property
    def continuous(self) -> bool:
        """A float range without a step: two draws almost never repeat a value."""
        return self.kind == "float" and not self.step

    def contains(self, v: Any) -> bool:
        """Is ``v`` a point of this dimension?"""
        if self.kind == "fixed":
            return bool(v == self.value)
        if self.kind == "choice":
            return v in self.choices
        if not (self.low - 1e-12 <= v <= self.high + 1e-12):
            return False
        if self.step:
            k = (v - self.low) / self.step
            return abs(k - round(k)) < 1e-9
        return self.kind == "float" or float(v).is_integer()

    def points(self, limit: int = 64) -> list[Any]:
        """Representative points (all of them for a small discrete dimension)."""
        if self.kind == "fixed":
            return [self.value]
        if self.kind == "choice":
            return list(self.choices)
        if self.kind == "int":
            values = range(int(self.low), int(self.high) + 1, int(self.step or 1))  # a range: never listed whole
            if len(values) > limit:
                idx = sorted({round(i * (len(values) - 1) / (limit - 1)) for i in range(limit)})
                return [values[i] for i in idx]
            return list(values)
        return [self.low, (self.low + self.high) / 2, self.high]

    def grid(self) -> list[Any]:
        """Every point, for the grid sampler (floats need a step)."""
        if self.kind == "float":
            if not self.step:
                raise ConfigError(f"grid sampler: {self.name} is a continuous range; give it a step or a list")
            n = int(round((self.high - self.low) / self.step))
            return [round(self.low + i * self.step, 10) for i in range(n + 1)]
        if self.kind == "int":
            return list(range(int(self.low), int(self.high) + 1, int(self.step or 1)))
        return self.points()

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready description."""
        if self.kind == "fixed":
            return {"value": self.value}
        if self.kind == "choice":
            return {"choices": list(self.choices)}
        d: dict[str, Any] = {"low": self.low, "high": self.high}
        if self.step:
            d["step"] = self.step
        if self.log:
            d["log"] = True
        return d


@dataclass(frozen=True)
class Space:
    """A validated space file."""

    source: str  # the file it came from
    text: str  # the file's exact text, stored on the study
    study: dict[str, Any] = field(default_factory=dict)
    training: TrainConfig = field(default_factory=TrainConfig)
    dims: dict[str, Dimension] = field(default_factory=dict)
    #: The [baseline] section: "reference" (the reference architecture, the default), "none", or a point
    #: (dimension name -> value) of the user's own.
    baseline: Any = "reference"

    @property
    def multi_objective(self) -> bool:
        """Two objectives (accuracy and parameters): a Pareto front, no pruning."""
        return len(self.study["objectives"]) > 1

    @property
    def constrained(self) -> bool:
        """Has a size limit (max_params or max_flops): points over it are infeasible, not trained."""
        return bool(self.study["max_params"] or self.study["max_flops"])

    @property
    def directions(self) -> list[str]:
        """Optuna directions, one per objective."""
        # The first objective is the study's metric: validation accuracy (maximized) or loss (minimized).
        first = "minimize" if self.study.get("metric") == "val_loss" else "maximize"
        return [first if o == "accuracy" else "minimize" for o in self.study["objectives"]]

    @property
    def searched(self) -> list[str]:
        """Names of the dimensions that vary."""
        return [n for n, d in self.dims.items() if d.kind != "fixed"]


__all__ = ["Dimension", "Space"]
