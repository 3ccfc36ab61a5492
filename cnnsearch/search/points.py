"""The points of a space: the dimension vocabulary, and a point turned into an ArchSpec.

A point is one value per searched dimension (an Optuna trial's params). This
module knows which dimensions exist, the reference's value of each (trial 0 of
every study), which are asked for a given point (conditional layer and
learning-rate dimensions), and how a point becomes an ArchSpec plus
TrainConfig overrides. Reading and validating a space file is
:mod:`cnnsearch.search.space`, which imports this module (never the reverse). No Keras.
"""

from __future__ import annotations

import itertools
import math
import random
from dataclasses import replace
from typing import Any, Mapping

from cnnsearch.model.arch import ArchSpec, summarize
from cnnsearch.ground.errors import ArchitectureError, ConfigError
from cnnsearch.search import frontier_dims
from cnnsearch.search.dims import Dimension, Space


#: Most conv layers a space may ask for (the dimension ``conv_layers``).
MAX_CONV_LAYERS = 8  # deep narrow stacks (issue 21): the hand-built small MNIST CNNs use 6-8 conv layers

#: The per-layer dimensions (conv1_filters ... conv4_kernel): the ArchSpec field each feeds, and its layer.
LAYER_DIMS = {f"conv{i}_{kind}": (kind, i) for i in range(1, MAX_CONV_LAYERS + 1) for kind in ("filters", "kernel")}
#: Training dimensions, applied to the TrainConfig rather than the ArchSpec.
TRAINING_DIMS = ("learning_rate", "batch_size", "optimizer", "adadelta_learning_rate", "adam_learning_rate",
                 "adamw_learning_rate", *frontier_dims.TRAINING_DIMS)
#: Optimizers a space may choose between; each has a conditional dimension "<name>_learning_rate".
SPACE_OPTIMIZERS = ("adadelta", "adam", "adamw")
#: Learning rate of an optimizer drawn without its own learning-rate dimension (Adadelta: the reference's).
DEFAULT_LEARNING_RATE = {"adadelta": 1.0, "adam": 0.001, "adamw": 0.001}

_SEED = ArchSpec()


def seed_value(dim: str) -> Any:
    """The reference model's value of dimension ``dim`` (None for a conv layer it does not have)."""
    if dim in LAYER_DIMS:
        kind, i = LAYER_DIMS[dim]
        values = _SEED.conv_filters if kind == "filters" else _SEED.kernel_sizes
        return values[i - 1] if i <= len(values) else None
    if dim == "conv_layers":
        return len(_SEED.conv_filters)
    if dim in ("learning_rate", "adadelta_learning_rate"):
        return 1.0
    if dim == "optimizer":
        return "adadelta"
    if dim in ("adam_learning_rate", "adamw_learning_rate"):
        return None  # the reference trains with Adadelta
    if dim == "batch_size":
        return 128
    if dim in frontier_dims.ARCH_DIMS:
        return frontier_dims.seed_value(dim, _SEED)
    return getattr(_SEED, dim)


def baseline_params(space: Space) -> dict[str, Any] | None:
    """The params of trial 0, the baseline: the reference model's value of every searched dimension.

    Its learning rate and batch size are the study's [training] ones. With
    ``[baseline] model = "none"``: None (no baseline trial). With a point of the
    user's own: that point, each searched dimension it leaves out at the reference's value.
    """
    if space.baseline == "none":
        return None
    own = space.baseline if isinstance(space.baseline, dict) else {}
    n_layers = int(own.get("conv_layers", seed_value("conv_layers")))
    opt = own.get("optimizer", space.training.optimizer)
    sched = own.get("schedule", space.training.schedule)
    return {name: own[name] if name in own else _reference_value(space, name)
            for name in space.searched if _active(name, n_layers, opt, sched)}


def _reference_value(space: Space, name: str) -> Any:
    if name.endswith("_learning_rate"):
        return space.training.learning_rate  # active only for the study's own optimizer
    if name in frontier_dims.TRAINING_DIMS:
        return frontier_dims.reference_value(space.training, name)
    if name in TRAINING_DIMS:
        return getattr(space.training, name)
    return seed_value(name)


def _active(name: str, n_layers: int, optimizer: str = "adadelta", schedule: str = "constant") -> bool:
    """Is dimension ``name`` asked for a point with ``n_layers`` conv layers trained by ``optimizer``, ``schedule``?"""
    if name.endswith("_learning_rate"):
        return name == f"{optimizer}_learning_rate"
    if (asked := frontier_dims.active(name, optimizer, schedule)) is not None:
        return asked
    return name not in LAYER_DIMS or LAYER_DIMS[name][1] <= n_layers


def is_active(name: str, n_layers: int, optimizer: str) -> bool:
    """Is dimension ``name`` asked for a point with ``n_layers`` conv layers trained by ``optimizer``?"""
    return _active(name, n_layers, optimizer)


def check_baseline_is_a_point(space: Space, err: Any) -> None:
    """Reject a space that does not hold its baseline (trial 0): the reference model unless [baseline] says otherwise.

    ``err(key, expected, received)`` builds the ConfigError, naming the space file.
    """
    if space.baseline == "none":
        return
    if isinstance(space.baseline, dict):
        params = baseline_params(space) or {}
        for name, value in params.items():
            if not space.dims[name].contains(value):
                raise err(f"baseline.{name}", f"a value of the space's {space.dims[name].to_dict()} (your [baseline]"
                          " point leaves it out, and the reference's value is not in the space)", value)
        return
    n_layers, opt, sched = seed_value("conv_layers"), space.training.optimizer, space.training.schedule
    conv = space.dims.get("conv_layers")
    if conv is not None and not conv.contains(n_layers):
        raise err("space.conv_layers", f"a space holding the reference's {n_layers} (trial 0 is the reference; or"
                  ' set [baseline] model = "none", or a point of your own)',
                  conv.to_dict())
    for name, dim in space.dims.items():
        if not _active(name, n_layers, opt, sched):
            continue
        ref = _reference_value(space, name)
        if not dim.contains(ref):
            raise err(f"space.{name}", f"a space holding the reference's value {ref!r} (trial 0 is the reference"
                      ' model unless [baseline] says model = "none" or gives a point of your own)', dim.to_dict())


def _combinations(axes: list[list[Any]], budget: int) -> Any:
    """Every combination of the axes' values, or ``budget`` seeded random ones when there are more."""
    if math.prod(len(a) for a in axes) <= budget:
        return itertools.product(*axes)
    rng = random.Random(0)
    return ([rng.choice(a) for a in axes] for _ in range(budget))


def check_some_point_builds(space: Space, *, input_shape: tuple[int, int, int] = (28, 28, 1),
                            budget: int = 20_000) -> None:
    """Reject a space in which no architecture can be built (on MNIST-sized input).

    Tries every combination of the shape dimensions, or ``budget`` random ones when there are more.
    """
    shape_dims = [n for n in space.dims if n in LAYER_DIMS and n.endswith("_kernel")] + [
        n for n in ("conv_layers", "stride", "padding", "pool", "pool_size", "pool_every", "pool_at", "transition")
        if n in space.dims]
    axes = [space.dims[n].points() for n in shape_dims]
    combos = _combinations(axes, budget)
    fixed = {n: d.points()[0] for n, d in space.dims.items() if n not in shape_dims}
    last_error = ""
    for combo in combos:
        values = {**fixed, **dict(zip(shape_dims, combo))}
        try:
            summarize(spec_from_values(values, space), input_shape, 10)
            return
        except ArchitectureError as exc:
            last_error = str(exc)
    keys = ", ".join(f"space.{n}" for n in shape_dims) or "space"
    raise ConfigError(f"{space.source}: {keys}: expected at least one buildable architecture on 28x28 images;"
                      f" received a space whose every point fails, e.g.: {last_error}")


def unbuildable_share(space: Space, input_shape: tuple[int, int, int], n_classes: int, *,
                      budget: int = 2_000) -> float:
    """The share of the space's points that cannot be built for ``input_shape`` (by the layer arithmetic).

    Estimated on ``budget`` seeded random points (all of them when fewer), each
    searched dimension drawn uniformly from its representative points.
    """
    names = space.searched
    axes = [space.dims[n].points() for n in names]
    combos = _combinations(axes, budget)
    bad = n = 0
    for combo in combos:
        n += 1
        values = dict(zip(names, combo))
        try:
            summarize(spec_from_values(values, space), input_shape, n_classes)
        except ArchitectureError:
            bad += 1
    return bad / n if n else 0.0


def spec_from_values(values: Mapping[str, Any], space: Space | None = None) -> ArchSpec:
    """Build the ArchSpec for a full assignment of dimension values; unset ones keep the reference's."""
    def get(name: str) -> Any:
        if name in values:
            return values[name]
        if space is not None and name in space.dims and space.dims[name].kind == "fixed":
            return space.dims[name].value
        return seed_value(name)

    n_layers = int(get("conv_layers"))
    filters, kernels = [], []
    for i in range(1, n_layers + 1):
        # A layer beyond the reference's two, left unset, gets the second layer's value.
        f, k = get(f"conv{i}_filters"), get(f"conv{i}_kernel")
        filters.append(f if f is not None else get("conv2_filters"))
        kernels.append(k if k is not None else get("conv2_kernel"))
    pooled_at = "pool_at" in values or (space is not None and "pool_at" in space.dims)
    return replace(_SEED, conv_filters=tuple(filters), kernel_sizes=tuple(kernels),
                   **{n: get(n) for n in ("stride", "padding", "pool", "pool_size", "pool_every", "dropout_conv",
                                          "dense_units", "dropout_dense", "batch_norm", "head", "augment")},
                   **frontier_dims.arch_fields(get, pooled_at))


def suggest(trial: Any, space: Space) -> tuple[ArchSpec, dict[str, Any]]:
    """Ask ``trial`` (an Optuna Trial or FixedTrial) for every searched dimension.

    Layer dimensions beyond the sampled ``conv_layers``, and the learning rate
    of an optimizer not drawn, are not asked (they are conditional). Returns
    the spec and the training overrides (TrainConfig fields: optimizer, its
    arguments, learning rate, batch size) the trial chose. No validation of
    the architecture here: the caller records an unbuildable spec as a failed
    (or, in a size-limited study, infeasible) trial.
    """
    values: dict[str, Any] = {}
    first = [n for n in ("conv_layers", "optimizer", "schedule") if n in space.dims]
    order = first + [n for n in space.dims if n not in first]
    for name in order:
        dim = space.dims[name]
        if dim.kind == "fixed":
            continue
        n_layers = int(values.get("conv_layers", _fixed_or_seed(space, "conv_layers")))
        if not _active(name, n_layers, values.get("optimizer", _optimizer(space)),
                       values.get("schedule", _fixed_or_training(space, "schedule"))):
            continue
        if dim.kind == "choice":
            values[name] = trial.suggest_categorical(name, list(dim.choices))
        elif dim.kind == "int":
            values[name] = trial.suggest_int(name, int(dim.low), int(dim.high), step=int(dim.step or 1), log=dim.log)
        else:
            values[name] = trial.suggest_float(name, dim.low, dim.high, step=dim.step, log=dim.log)
    overrides = training_overrides({n: values.pop(n) for n in TRAINING_DIMS if n in values}, space)
    return spec_from_values(values, space), overrides


def undrawn(params: Mapping[str, Any], space: Space) -> list[str]:
    """The searched architecture dimensions a point with ``params`` asks for that ``params`` lacks."""
    n_layers = int(params.get("conv_layers", _fixed_or_seed(space, "conv_layers")))
    opt = params.get("optimizer", _optimizer(space))
    return [n for n in space.searched if n not in TRAINING_DIMS and _active(n, n_layers, opt) and n not in params]


def _fixed_or_training(space: Space, name: str) -> Any:
    dim = space.dims.get(name)
    return dim.value if dim is not None and dim.kind == "fixed" else getattr(space.training, name)


def asked(name: str, point: Mapping[str, Any], space: Space) -> bool:
    """Is dimension ``name`` asked for a point with these values (conv_layers, optimizer, schedule: else fixed/study's)?"""
    n_layers = int(point.get("conv_layers", _fixed_or_seed(space, "conv_layers")))
    return _active(name, n_layers, point.get("optimizer", _optimizer(space)),
                   point.get("schedule", _fixed_or_training(space, "schedule")))


def _optimizer(space: Space) -> str:
    dim = space.dims.get("optimizer")
    return dim.value if dim is not None and dim.kind == "fixed" else space.training.optimizer


def training_overrides(values: Mapping[str, Any], space: Space) -> dict[str, Any]:
    """TrainConfig fields for a point's training dimensions (fixed ones filled in from the space).

    A drawn optimizer other than the study's starts from Keras's defaults for
    its other arguments; its learning rate is its own dimension's value, else
    ``DEFAULT_LEARNING_RATE``.
    """
    values = {**{n: d.value for n, d in space.dims.items() if n in TRAINING_DIMS and d.kind == "fixed"}, **values}
    out = {n: values[n] for n in ("learning_rate", "batch_size") if n in values}
    opt = values.get("optimizer", space.training.optimizer)
    if opt != space.training.optimizer:
        out.update(optimizer=opt, optimizer_args={}, learning_rate=DEFAULT_LEARNING_RATE[opt])
    if f"{opt}_learning_rate" in values:
        out["learning_rate"] = values[f"{opt}_learning_rate"]
    args = out.get("optimizer_args", space.training.optimizer_args)
    return {**out, **frontier_dims.training_overrides(values, space.training, opt, args)}


def _fixed_or_seed(space: Space, name: str) -> Any:
    dim = space.dims.get(name)
    return dim.value if dim is not None and dim.kind == "fixed" else seed_value(name)


def _grid_len(dim: Dimension) -> int:
    """How many points :meth:`Dimension.grid` would list, without listing them."""
    if dim.kind in ("int", "float") and dim.step:
        return int(round((dim.high - dim.low) / dim.step)) + 1
    if dim.kind == "int":
        return int(dim.high - dim.low) + 1
    return len(dim.grid())  # choices, fixed, or a float range without a step (grid() says so)


def grid_space(space: Space) -> dict[str, list[Any]]:
    """The grid sampler's search space: every point of every searched dimension."""
    size = math.prod(_grid_len(space.dims[name]) for name in space.searched)  # before listing a huge grid
    if size > 100_000:
        raise ConfigError(f"{space.source}: study.sampler: expected a grid of at most 100,000 points; received"
                          f" {size:,}; use sampler = \"tpe\" or \"random\", or fewer values")
    return {name: space.dims[name].grid() for name in space.searched}
