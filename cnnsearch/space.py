"""Search spaces: parse and validate a space file; turn a trial into an ArchSpec.

A space file is TOML with three sections (see ``studies/seed.toml``)::

    [study]     how to search: sampler, pruner, seed, objectives, heartbeat
    [training]  how each trial trains (fixed at create, stored on the study)
    [space]     the dimensions: a scalar fixes a value, a list is a choice,
                a table {low, high, step?, log?} is a range (int when low and
                high are ints)

Everything is validated before anything is written: one error names the file,
the key, what was expected and what was received. No Keras here; the shape
arithmetic of :mod:`cnnsearch.arch` rejects spaces whose every point is an
unbuildable architecture.
"""

from __future__ import annotations

import itertools
import math
import random
import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Mapping, NamedTuple

from cnnsearch import shipped
from cnnsearch.arch import ArchSpec, summarize
from cnnsearch.errors import ArchitectureError, ConfigError
from cnnsearch.train import TrainConfig  # no Keras at import: train imports Keras lazily

#: Most conv layers a space may ask for (the dimension ``conv_layers``).
MAX_CONV_LAYERS = 4

SAMPLERS = ("tpe", "random", "grid", "nsga2")
PRUNERS = ("median", "hyperband", "halving", "none")
OBJECTIVES = ("accuracy", "params")

#: [study] keys with their defaults (each explained where it is used, in cnnsearch.study).
STUDY_DEFAULTS: dict[str, Any] = {
    "description": "",
    "sampler": "tpe",  # seeded TPE: multivariate with constant liar in Optuna 5
    "pruner": "median",  # prunes a trial whose val accuracy is below the median at the same epoch
    "seed": 0,  # sampler seed; trial i trains with seed + i
    "objectives": ["accuracy"],  # ["accuracy", "params"] = maximize val accuracy, minimize parameters
    "heartbeat_seconds": 60,  # RDB heartbeat: a worker silent for 2x this is declared dead
    "max_consecutive_failures": 5,  # training failures (NaN, crash) in a row that stop a run
    # Size limits (0 = none): a point over them is infeasible, known before training (see cnnsearch.limits).
    "max_params": 0,  # most parameters (Keras's count_params) a trained model may have
    "max_flops": 0,  # most forward FLOPs per image
}

#: Largest [study] seed: sampler seeds add offsets (trial count, worker, process) and NumPy takes < 2**32.
MAX_SEED = 2**31 - 1
#: Most points a searched integer range may have: wider ranges are a typo, and Optuna would list them.
MAX_INT_POINTS = 1_000_000

#: [training] keys: TrainConfig fields a space file may set (optimizer is a table).
TRAINING_KEYS = ("epochs", "train_limit", "batch_size", "optimizer", "jit_compile", "precision")

#: The seed architecture's value of every dimension, and the ArchSpec field it feeds.
_LAYER_DIMS = {f"conv{i}_{kind}": (kind, i) for i in range(1, MAX_CONV_LAYERS + 1) for kind in ("filters", "kernel")}
_SCALAR_DIMS: dict[str, type] = {
    "conv_layers": int, "stride": int, "padding": str, "pool": str, "pool_size": int, "pool_every": int,
    "dropout_conv": float, "dense_units": int, "dropout_dense": float,
    "batch_norm": bool, "head": str, "augment": float,
    "learning_rate": float, "batch_size": int,  # training dimensions (wide space)
    # The optimizer, and a learning rate per optimizer asked only when that optimizer is drawn.
    "optimizer": str, "adadelta_learning_rate": float, "adam_learning_rate": float,
}
_DIM_TYPES: dict[str, type] = {**{k: int for k in _LAYER_DIMS}, **_SCALAR_DIMS}
#: Training dimensions, applied to the TrainConfig rather than the ArchSpec.
TRAINING_DIMS = ("learning_rate", "batch_size", "optimizer", "adadelta_learning_rate", "adam_learning_rate")
#: Optimizers a space may choose between; each has a conditional dimension "<name>_learning_rate".
SPACE_OPTIMIZERS = ("adadelta", "adam")
#: Learning rate of an optimizer drawn without its own learning-rate dimension (Adadelta: the reference's).
DEFAULT_LEARNING_RATE = {"adadelta": 1.0, "adam": 0.001}
_ALLOWED_STR = {"padding": ("valid", "same"), "pool": ("max", "avg", "none"), "head": ("flatten", "gap"),
                "optimizer": SPACE_OPTIMIZERS}

_SEED = ArchSpec()


def seed_value(dim: str) -> Any:
    """The reference model's value of dimension ``dim`` (None for a conv layer it does not have)."""
    if dim in _LAYER_DIMS:
        kind, i = _LAYER_DIMS[dim]
        values = _SEED.conv_filters if kind == "filters" else _SEED.kernel_sizes
        return values[i - 1] if i <= len(values) else None
    if dim == "conv_layers":
        return len(_SEED.conv_filters)
    if dim in ("learning_rate", "adadelta_learning_rate"):
        return 1.0
    if dim == "optimizer":
        return "adadelta"
    if dim == "adam_learning_rate":
        return None  # the reference trains with Adadelta
    if dim == "batch_size":
        return 128
    return getattr(_SEED, dim)


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
        return ["maximize" if o == "accuracy" else "minimize" for o in self.study["objectives"]]

    @property
    def searched(self) -> list[str]:
        """Names of the dimensions that vary."""
        return [n for n, d in self.dims.items() if d.kind != "fixed"]


def load(path: str | Path) -> Space:
    """Read and validate a space file, or a shipped space by name (``seed``, ``wide``); a path wins.

    Raises:
        ConfigError: one line: file, key, expected, received (exit status 2).
    """
    path = shipped.resolve(path)  # an existing file wins; else a shipped name such as "seed"
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: expected a UTF-8 text (TOML) file; received bytes that are not UTF-8"
                          f" (byte 0x{exc.object[exc.start]:02x} at offset {exc.start}); save it as UTF-8") from exc
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the space file ({exc.strerror or exc})") from exc
    return parse(text, source=str(path))


def parse(text: str, *, source: str = "<space>", stored: bool = False) -> Space:
    """Validate the TOML ``text`` of a space file (see :func:`load`).

    ``stored=True`` re-reads a space stored on an existing study: bounds added
    since it was created (the seed's) are not applied, so the study still opens.
    """
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: not valid TOML ({exc})") from exc

    def err(key: str, expected: str, received: Any) -> ConfigError:
        return ConfigError(f"{source}: {key}: expected {expected}; received {received!r}")

    unknown = sorted(set(doc) - {"study", "training", "space"})
    if unknown:
        raise err(unknown[0], "one of the sections [study], [training], [space]", f"[{unknown[0]}]")
    for section in ("study", "training", "space"):
        if section in doc and not isinstance(doc[section], dict):
            raise err(section, "a table", doc[section])
    study = _parse_study(doc.get("study", {}), err, stored)
    training = _parse_training(doc.get("training", {}), err, source)
    raw_space = doc.get("space", {})
    if not raw_space:
        raise err("space", "at least one dimension, e.g. conv1_filters = [16, 32, 64]", raw_space)
    dims = {name: _parse_dim(name, value, err) for name, value in raw_space.items()}
    space = Space(source=source, text=text, study=study, training=training, dims=dims)
    _check_baseline_is_a_point(space, err)
    _check_some_point_builds(space)
    if study["sampler"] == "grid":
        grid_space(space)
    return space


def _parse_study(raw: dict[str, Any], err: Any, stored: bool = False) -> dict[str, Any]:
    study = dict(STUDY_DEFAULTS)
    for key, value in raw.items():
        if key not in STUDY_DEFAULTS:
            raise err(f"study.{key}", f"one of {', '.join(STUDY_DEFAULTS)}", key)
        study[key] = value
    if study["sampler"] not in SAMPLERS:
        raise err("study.sampler", f"one of {', '.join(SAMPLERS)}", study["sampler"])
    if study["pruner"] not in PRUNERS:
        raise err("study.pruner", f"one of {', '.join(PRUNERS)}", study["pruner"])
    for key in ("seed", "heartbeat_seconds", "max_consecutive_failures", "max_params", "max_flops"):
        if not isinstance(study[key], int) or isinstance(study[key], bool) or study[key] < 0:
            raise err(f"study.{key}", "a non-negative integer", study[key])
    if study["seed"] > MAX_SEED and not stored:
        raise err("study.seed", f"a seed from 0 to {MAX_SEED:,} (2**31 - 1: seeds are offset per trial and"
                  " worker and must stay valid for NumPy and TensorFlow)", study["seed"])
    if not isinstance(study["description"], str):
        raise err("study.description", "a string", study["description"])
    objectives = study["objectives"]
    if (not isinstance(objectives, list) or not objectives or objectives[0] != "accuracy"
            or any(o not in OBJECTIVES for o in objectives) or len(set(objectives)) != len(objectives)):
        raise err("study.objectives", '["accuracy"] or ["accuracy", "params"]', objectives)
    multi = len(objectives) > 1
    if multi and study["pruner"] != "none":
        raise err("study.pruner", 'pruner = "none" with two objectives (Optuna cannot prune multi-objective'
                  " studies: Trial.report takes one value)", study["pruner"])
    if study["sampler"] == "nsga2" and not multi:
        raise err("study.objectives", '["accuracy", "params"] with sampler = "nsga2"', objectives)
    return study


def _parse_training(raw: dict[str, Any], err: Any, source: str) -> TrainConfig:
    cfg: dict[str, Any] = {}
    for key, value in raw.items():
        if key not in TRAINING_KEYS:
            raise err(f"training.{key}", f"one of {', '.join(TRAINING_KEYS)}", key)
        if key == "optimizer":
            if not isinstance(value, dict) or "name" not in value:
                raise err("training.optimizer", '{ name = "adadelta", learning_rate = 1.0, ... }', value)
            opt = dict(value)
            cfg["optimizer"] = opt.pop("name")
            for arg, v in opt.items():
                _check_optimizer_arg(arg, v, err)
            if "learning_rate" in opt:
                cfg["learning_rate"] = opt.pop("learning_rate")
            if opt or cfg["optimizer"] != "adadelta":
                cfg["optimizer_args"] = opt  # else TrainConfig's defaults: the reference's rho and epsilon
        elif key == "jit_compile":
            if value not in (True, False, "auto"):
                raise err("training.jit_compile", 'true, false or "auto"', value)
            cfg[key] = value
        elif key == "precision":
            if value not in ("float32", "mixed_bfloat16"):
                raise err("training.precision", '"float32" or "mixed_bfloat16"', value)
            cfg[key] = value
        else:
            if not isinstance(value, int) or isinstance(value, bool):
                raise err(f"training.{key}", "an integer", value)
            cfg[key] = value
    try:
        return TrainConfig(**cfg)
    except ConfigError as exc:
        raise ConfigError(f"{source}: training: {exc}") from exc


def _parse_dim(name: str, value: Any, err: Any) -> Dimension:
    key = f"space.{name}"
    if name not in _DIM_TYPES:
        raise err(key, f"a dimension the builder knows ({', '.join(_DIM_TYPES)})", name)
    typ = _DIM_TYPES[name]

    def typed(v: Any, where: str) -> Any:
        ok = (isinstance(v, typ) and (typ is bool or not isinstance(v, bool))) or (
            typ is float and isinstance(v, int) and not isinstance(v, bool))
        if not ok:
            raise err(where, f"{'a number' if typ is float else 'true/false' if typ is bool else typ.__name__}"
                      " value(s)", v)
        if typ is float and not math.isfinite(v):
            raise err(where, "a finite number (not inf or nan)", v)
        v = float(v) if typ is float else v
        _check_domain(name, v, where, err)
        return v

    if isinstance(value, list):
        if not value:
            raise err(key, "a non-empty list of choices", value)
        choices = tuple(typed(v, key) for v in value)
        if len(set(choices)) != len(choices):
            raise err(key, "distinct choices", value)
        return Dimension(name, "choice", choices=choices)
    if isinstance(value, dict):
        extra = sorted(set(value) - {"low", "high", "step", "log"})
        if extra:
            raise err(f"{key}.{extra[0]}", "only low, high, step, log in a range", extra[0])
        if typ is str or typ is bool:
            raise err(key, f"a list of choices for a {'text' if typ is str else 'true/false'} dimension, e.g."
                      f" {list(_ALLOWED_STR.get(name, (False, True)))}", value)
        if "low" not in value or "high" not in value:
            raise err(key, "a range with both low and high", value)
        low, high = typed(value["low"], f"{key}.low"), typed(value["high"], f"{key}.high")
        if low > high:
            raise err(key, "low <= high", f"low={low}, high={high}")
        log = value.get("log", False)
        if not isinstance(log, bool):
            raise err(f"{key}.log", "true or false", log)
        step = value.get("step")
        if step is not None:
            if isinstance(step, bool) or not isinstance(step, (int, float)):
                raise err(f"{key}.step", "a number", step)
            if step <= 0:
                raise err(f"{key}.step", "a step > 0", step)
            if typ is int and not float(step).is_integer():
                raise err(f"{key}.step", "an integer step for an integer dimension", step)
            if log:
                raise err(key, "either step or log = true, not both (Optuna cannot combine them)", value)
        if log and low <= 0:
            raise err(f"{key}.low", "low > 0 with log = true", low)
        if typ is int and (high - low) // int(step or 1) + 1 > MAX_INT_POINTS:
            raise err(key, f"an integer range of at most {MAX_INT_POINTS:,} points", f"low={low}, high={high}")
        return Dimension(name, "int" if typ is int else "float", low=low, high=high,
                         step=None if step is None else (int(step) if typ is int else float(step)), log=log)
    return Dimension(name, "fixed", value=typed(value, key))


def _check_optimizer_arg(arg: str, v: Any, err: Any) -> None:
    """Optimizer arguments are finite numbers (``nesterov`` is true/false): a text or nan would fail every trial."""
    where = f"training.optimizer.{arg}"
    if arg == "name":
        return
    if arg == "nesterov":
        if not isinstance(v, bool):
            raise err(where, "true or false", v)
        return
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise err(where, "a number", v)
    if not math.isfinite(v):
        raise err(where, "a finite number (not inf or nan)", v)
    if arg == "learning_rate" and v <= 0:
        raise err(where, "a learning rate > 0", v)
    if v < 0:
        raise err(where, "a value >= 0", v)


def _check_domain(name: str, v: Any, where: str, err: Any) -> None:
    if name in _ALLOWED_STR and v not in _ALLOWED_STR[name]:
        raise err(where, f"one of {', '.join(_ALLOWED_STR[name])}", v)
    if name.startswith("dropout") and not 0.0 <= v < 1.0:
        raise err(where, "a dropout rate in [0, 1)", v)
    if name == "conv_layers" and not 1 <= v <= MAX_CONV_LAYERS:
        raise err(where, f"1 to {MAX_CONV_LAYERS} conv layers", v)
    if name == "augment" and not 0.0 <= v <= 0.5:
        raise err(where, "a shift fraction in [0, 0.5]", v)
    if name.endswith("learning_rate") and v <= 0:
        raise err(where, "a learning rate > 0", v)
    if name in ("pool_every", "dense_units") and v < 0:
        raise err(where, "a value >= 0", v)
    if (name.endswith(("_filters", "_kernel")) or name in ("stride", "pool_size", "batch_size")) and v < 1:
        raise err(where, "a value >= 1", v)


def baseline_params(space: Space) -> dict[str, Any]:
    """The reference model's value of every searched dimension: the params of trial 0.

    Its learning rate and batch size are the study's [training] ones.
    """
    n_layers = seed_value("conv_layers")
    opt = space.training.optimizer
    return {name: _reference_value(space, name) for name in space.searched if _active(name, n_layers, opt)}


def _reference_value(space: Space, name: str) -> Any:
    if name.endswith("_learning_rate"):
        return space.training.learning_rate  # active only for the study's own optimizer
    if name in TRAINING_DIMS:
        return getattr(space.training, name)
    return seed_value(name)


def _active(name: str, n_layers: int, optimizer: str = "adadelta") -> bool:
    """Is dimension ``name`` asked for a point with ``n_layers`` conv layers trained by ``optimizer``?"""
    if name.endswith("_learning_rate"):
        return name == f"{optimizer}_learning_rate"
    return name not in _LAYER_DIMS or _LAYER_DIMS[name][1] <= n_layers


def _check_baseline_is_a_point(space: Space, err: Any) -> None:
    n_layers = seed_value("conv_layers")
    opt = space.training.optimizer
    conv = space.dims.get("conv_layers")
    if conv is not None and not conv.contains(n_layers):
        raise err("space.conv_layers", f"a space holding the reference's {n_layers} (trial 0 is the reference)",
                  conv.to_dict())
    for name, dim in space.dims.items():
        if not _active(name, n_layers, opt):
            continue
        ref = _reference_value(space, name)
        if not dim.contains(ref):
            raise err(f"space.{name}", f"a space holding the reference's value {ref!r} (trial 0 of every study"
                      " is the reference model)", dim.to_dict())


def _check_some_point_builds(space: Space, *, input_shape: tuple[int, int, int] = (28, 28, 1),
                             budget: int = 20_000) -> None:
    """Reject a space in which no architecture can be built (on MNIST-sized input)."""
    shape_dims = [n for n in space.dims if n in _LAYER_DIMS and n.endswith("_kernel")] + [
        n for n in ("conv_layers", "stride", "padding", "pool", "pool_size", "pool_every") if n in space.dims]
    axes = [space.dims[n].points() for n in shape_dims]
    total = math.prod(len(a) for a in axes)
    if total <= budget:
        combos: Any = itertools.product(*axes)
    else:
        rng = random.Random(0)
        combos = ([rng.choice(a) for a in axes] for _ in range(budget))
    fixed = {n: d.points()[0] for n, d in space.dims.items() if n not in shape_dims}
    last_error = ""
    for combo in combos:
        values = {**fixed, **dict(zip(shape_dims, combo))}
        try:
            summarize(spec_from_values(values, space), input_shape, 10)
            return
        except ArchitectureError as exc:
            last_error = str(exc)
    raise ConfigError(f"{space.source}: space: expected at least one buildable architecture on 28x28 images;"
                      f" received a space whose every point fails, e.g.: {last_error}")


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
    return replace(_SEED, conv_filters=tuple(filters), kernel_sizes=tuple(kernels),
                   **{n: get(n) for n in ("stride", "padding", "pool", "pool_size", "pool_every", "dropout_conv",
                                          "dense_units", "dropout_dense", "batch_norm", "head", "augment")})


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
    first = [n for n in ("conv_layers", "optimizer") if n in space.dims]
    order = first + [n for n in space.dims if n not in first]
    for name in order:
        dim = space.dims[name]
        if dim.kind == "fixed":
            continue
        n_layers = int(values.get("conv_layers", _fixed_or_seed(space, "conv_layers")))
        if not _active(name, n_layers, values.get("optimizer", _optimizer(space))):
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
    return out


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


class SpaceInfo(NamedTuple):
    """One line of ``cnnsearch space list``."""

    name: str
    searched: list[str]  # the dimensions that vary
    epochs: int  # fidelity: epochs per trial
    train_limit: int  # fidelity: training images per trial (0 = all)
    description: str


def shipped_spaces() -> list[SpaceInfo]:
    """Every space that ships with cnnsearch, validated, with its dimensions and fidelity."""
    rows = []
    for name in shipped.names():
        sp = load(shipped.path(name))
        rows.append(SpaceInfo(name, sp.searched, sp.training.epochs, sp.training.train_limit,
                              sp.study["description"]))
    return rows
