"""Size limits: which points a study's ``max_params`` / ``max_flops`` rule out, and a sampler that learns it.

A point over a limit is known from :mod:`cnnsearch.model.arch`'s layer arithmetic
before any training. The objective ends it at once as an infeasible trial
(COMPLETE, with Optuna constraint values > 0: :func:`constraints`), which
Optuna 5's TPE and NSGA-II read from the trial (``Trial.set_constraint``; the
samplers' ``constraints_func`` argument is deprecated in Optuna 5). Because
such limits are *known* constraints, :func:`feasible_sampler` also keeps the
sampler from proposing points the arithmetic already rules out.
"""

from __future__ import annotations

import functools
from typing import Any, Mapping

from cnnsearch.model.arch import Summary, summarize
from cnnsearch.ground import private
from cnnsearch.ground.errors import ArchitectureError
from cnnsearch.search.points import spec_from_values, undrawn
from cnnsearch.search.space import Space


def constraints(space: Space, summary: Summary | None) -> dict[str, float]:
    """Optuna constraint values of one point (feasible when all are <= 0); empty when the study has no limit.

    ``params`` and ``flops`` are the relative excess over ``[study] max_params`` /
    ``max_flops`` ((value - limit) / limit: comparable, and graded so a sampler
    learns how far out a point is). In every study an unbuildable point
    (``summary`` None) is infeasible (``buildable`` = 1): like a point over a
    limit it costs no training, so it is a constraint, not a failure.
    """
    limits = {k: space.study[f"max_{k}"] for k in ("params", "flops") if space.study[f"max_{k}"]}
    if summary is None:  # in every study: an unbuildable point is known from the arithmetic, never trained
        return {"buildable": 1.0, **{k: 1.0 for k in limits}}
    if not limits:
        return {}
    return {"buildable": 0.0, **{k: (getattr(summary, k) - lim) / lim for k, lim in limits.items()}}


def feasible(trial: Any) -> bool:
    """Did a (frozen) trial meet its study's size limits? (Optuna's rule: every constraint <= 0.)"""
    return all(v <= 0 for v in trial.constraints.values())


def infeasible_reason(space: Space, summary: Summary) -> str:
    """Why a buildable point breaks the study's size limits ('' when it does not)."""
    over = [f"{getattr(summary, k):,} {k} > max_{k} {space.study[f'max_{k}']:,}" for k in ("params", "flops")
            if space.study[f"max_{k}"] and getattr(summary, k) > space.study[f"max_{k}"]]
    return "over the size limit: " + ", ".join(over) if over else ""


def known_infeasible(params: Mapping[str, Any], space: Space, input_shape: tuple[int, ...] = (28, 28, 1),
                     n_classes: int = 10) -> bool:
    """Do sampled ``params`` fix every active dimension of a point, and is that point infeasible?

    False when some active dimension is still to be drawn (the point is then
    judged in the objective). Without a size limit, only an unbuildable point is infeasible.
    """
    missing = undrawn(params, space)
    # A conv layer's filters not drawn yet (TPE samples conditional dimensions apart): its fewest filters
    # give the smallest model (parameters and FLOPs grow with every layer's filters), so a point
    # infeasible even then is known infeasible. Any other missing dimension: not known yet.
    if any(not n.endswith("_filters") for n in missing):
        return False
    if not space.constrained and missing:
        return False  # filters do not decide whether a point builds
    fill = {n: min(space.dims[n].points()) for n in missing}
    try:
        summary = summarize(spec_from_values({**params, **fill}, space), input_shape, n_classes)
    except ArchitectureError:
        return True
    return bool(infeasible_reason(space, summary))


#: Dimensions whose value can make a model smaller either way (a larger kernel or pool shrinks the flattened
#: map): every combination of them is tried. The others (filters, dense units, batch norm) only grow a model.
_SHAPE_DIMS = ("conv_layers", "stride", "padding", "pool", "pool_size", "pool_every", "head")


def check_some_point_fits(space: Space, *, input_shape: tuple[int, ...] = (28, 28, 1), n_classes: int = 10,
                          budget: int = 20_000) -> None:
    """Reject a size-limited space in which no point is within ``max_params`` / ``max_flops``.

    Known from the layer arithmetic, before any training: every combination of
    the shape dimensions (kernels, depth, padding, pooling, head) with each
    growing dimension at its smallest. Spaces with more than ``budget``
    combinations are not judged (a sample could miss the one point that fits).

    Raises:
        ConfigError: no point fits; the line gives the smallest point's size.
    """
    import itertools
    import math

    from cnnsearch.ground.errors import ConfigError
    from cnnsearch.search.points import LAYER_DIMS

    if not space.constrained:
        return
    shape = [n for n in space.dims if (n in LAYER_DIMS and n.endswith("_kernel")) or n in _SHAPE_DIMS]
    axes = [space.dims[n].points() for n in shape]
    if math.prod(len(a) for a in axes) > budget:
        return
    smallest = {n: min(d.points(), key=lambda v: (v is not False, v if isinstance(v, (int, float)) else 0))
                for n, d in space.dims.items() if n not in shape}
    best: Summary | None = None
    for combo in itertools.product(*axes):
        try:
            summary = summarize(spec_from_values({**smallest, **dict(zip(shape, combo))}, space), input_shape,
                                n_classes)
        except ArchitectureError:
            continue
        if not infeasible_reason(space, summary):
            return
        if best is None or (summary.params, summary.flops) < (best.params, best.flops):
            best = summary
    if best is not None:
        raise ConfigError(f"{space.source}: study.max_params / max_flops: expected a space with at least one point"
                          f" within the limits on images of {tuple(input_shape)}; received one whose smallest point"
                          f" has {best.params:,} params and"
                          f" {best.flops:,} FLOPs ({infeasible_reason(space, best)}); raise the limits or add"
                          " smaller values (fewer filters, dense_units = 0, a larger pool)")


class _Judge:
    """Whether a point is known infeasible for this space, input shape and class count (set by the objective)."""

    def __init__(self, space: Space) -> None:
        self.space, self.input_shape, self.n_classes = space, (28, 28, 1), 10

    def infeasible(self, params: Mapping[str, Any]) -> bool:
        return known_infeasible(params, self.space, self.input_shape, self.n_classes)


def feasible_sampler(base: Any, space: Space, tries: int = 20) -> Any:
    """Wrap an Optuna sampler so its model-based proposals skip points known to be infeasible.

    The size limits are known constraints: the layer arithmetic decides them
    before any training. Each joint (relative) proposal of ``base`` (NSGA-II's
    children, TPE's once past its start-up trials) that :func:`known_infeasible`
    rules out is drawn again, up to ``tries`` times; the last one stands and,
    if infeasible, ends as an infeasible trial the sampler learns from through
    its constraint values. Independent draws (start-up, random) pass through.
    ``input_shape`` and ``n_classes`` (MNIST's by default) are set by the
    objective from its data.
    """
    import optuna

    judge = _Judge(space)
    if isinstance(base, optuna.samplers.TPESampler):
        private.mask_tpe_candidates(base, judge.infeasible)  # Optuna's private TPE hooks, version-checked
    return _sampler_class()(base, judge, tries)


@functools.cache
def _sampler_class() -> type:
    """The wrapper's class, made once (Optuna is imported only when a study runs)."""
    import optuna

    class FeasibleSampler(optuna.samplers.BaseSampler):
        def __init__(self, base: Any, judge: _Judge, tries: int) -> None:
            self.base, self.judge, self.tries = base, judge, tries
            self.redraws = 0  # proposals drawn again, for the benchmark

        @property
        def input_shape(self) -> tuple[int, ...]:
            return self.judge.input_shape

        @input_shape.setter
        def input_shape(self, value: tuple[int, ...]) -> None:
            self.judge.input_shape = tuple(value)

        @property
        def n_classes(self) -> int:
            return self.judge.n_classes

        @n_classes.setter
        def n_classes(self, value: int) -> None:
            self.judge.n_classes = int(value)

        def infer_relative_search_space(self, study: Any, trial: Any) -> dict[str, Any]:
            return self.base.infer_relative_search_space(study, trial)

        def sample_relative(self, study: Any, trial: Any, search_space: dict[str, Any]) -> dict[str, Any]:
            params = self.base.sample_relative(study, trial, search_space)
            for _ in range(self.tries - 1):
                if not params or not self.judge.infeasible(params):
                    break
                self.redraws += 1
                params = self.base.sample_relative(study, trial, search_space)
            return params

        def sample_independent(self, study: Any, trial: Any, name: str, dist: Any) -> Any:
            return self.base.sample_independent(study, trial, name, dist)

        def before_trial(self, study: Any, trial: Any) -> None:
            self.base.before_trial(study, trial)

        def after_trial(self, study: Any, trial: Any, state: Any, values: Any) -> None:
            self.base.after_trial(study, trial, state, values)

        def reseed_rng(self) -> None:
            self.base.reseed_rng()

    return FeasibleSampler
