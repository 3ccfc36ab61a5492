"""Search spaces: parse and validate a space file.

A space file is TOML with three sections (see ``studies/seed.toml``) and an optional fourth::

    [study]     how to search: sampler, pruner, seed, objectives, metric, heartbeat
    [training]  how each trial trains (fixed at create, stored on the study)
    [space]     the dimensions: a scalar fixes a value, a list is a choice,
                a table {low, high, step?, log?} is a range (int when low and
                high are ints)
    [baseline]  trial 0: model = "reference" (the default), "none", or one value per
                searched dimension (your own point; then the space need not hold the reference's values)

Everything is validated before anything is written: one error names the file,
the key, what was expected and what was received. No Keras here; the shape
arithmetic of :mod:`cnnsearch.model.arch` rejects spaces whose every point is an
unbuildable architecture. The points of a space (the reference's, a trial's
ArchSpec, the grid) are :mod:`cnnsearch.search.points`, which this module imports.
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from cnnsearch.search import shipped
from cnnsearch.ground.errors import ConfigError
from cnnsearch.search import frontier_dims
from cnnsearch.search.dims import Dimension, Space
from cnnsearch.search.points import (LAYER_DIMS, MAX_CONV_LAYERS, SPACE_OPTIMIZERS, check_baseline_is_a_point,
                              check_some_point_builds, grid_space)
from cnnsearch.model.train import TrainConfig  # no Keras at import: train imports Keras lazily

SAMPLERS = ("tpe", "random", "grid", "nsga2")
METRICS = ("val_accuracy", "val_loss")
PRUNERS = ("median", "hyperband", "halving", "none")
OBJECTIVES = ("accuracy", "params")

#: [study] keys with their defaults (each explained where it is used, in cnnsearch.search.study).
STUDY_DEFAULTS: dict[str, Any] = {
    "description": "",
    "sampler": "tpe",  # seeded TPE: multivariate with constant liar in Optuna 5
    "pruner": "median",  # prunes a trial whose val accuracy is below the median at the same epoch
    "seed": 0,  # sampler seed; trial i trains with seed + i
    "objectives": ["accuracy"],  # ["accuracy", "params"] = maximize val accuracy, minimize parameters
    "metric": "val_accuracy",  # what "accuracy" optimizes: val_accuracy (maximized) or val_loss (minimized)
    "heartbeat_seconds": 60,  # RDB heartbeat: a worker silent for 2x this is declared dead
    "max_consecutive_failures": 5,  # training failures (NaN, crash) in a row that stop a run
    # Size limits (0 = none): a point over them is infeasible, known before training (see cnnsearch.search.limits).
    "max_params": 0,  # most parameters (Keras's count_params) a trained model may have
    "max_flops": 0,  # most forward FLOPs per image
}

#: Largest [study] seed: sampler seeds add offsets (trial count, worker, process) and NumPy takes < 2**32.
MAX_SEED = 2**31 - 1
#: Most points a searched integer range may have: wider ranges are a typo, and Optuna would list them.
MAX_INT_POINTS = 1_000_000

#: [training] keys: TrainConfig fields a space file may set (optimizer is a table).
TRAINING_KEYS = ("epochs", "train_limit", "batch_size", "optimizer", "jit_compile", "precision",
                 "steps_per_execution", *frontier_dims.TRAINING_KEYS)

#: The type of every dimension a space may name (the per-layer ones, and these).
_SCALAR_DIMS: dict[str, type] = {
    "conv_layers": int, "stride": int, "padding": str, "pool": str, "pool_size": int, "pool_every": int,
    "dropout_conv": float, "dense_units": int, "dropout_dense": float,
    "batch_norm": bool, "head": str, "augment": float,
    "learning_rate": float, "batch_size": int,  # training dimensions (wide space)
    # The optimizer, and a learning rate per optimizer asked only when that optimizer is drawn.
    "optimizer": str, "adadelta_learning_rate": float, "adam_learning_rate": float, "adamw_learning_rate": float,
    **frontier_dims.DIM_TYPES,  # issue 21: pooling positions, transitions, rotation, zoom, schedules, AdamW
}
_DIM_TYPES: dict[str, type] = {**{k: int for k in LAYER_DIMS}, **_SCALAR_DIMS}
_ALLOWED_STR = {"padding": ("valid", "same"), "pool": ("max", "avg", "none"), "head": ("flatten", "gap"),
                "optimizer": SPACE_OPTIMIZERS, **frontier_dims.allowed_strings()}


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

    unknown = sorted(set(doc) - {"study", "training", "space", "baseline"})
    if unknown:
        raise err(unknown[0], "one of the sections [study], [training], [space], [baseline]", f"[{unknown[0]}]")
    for section in ("study", "training", "space", "baseline"):
        if section in doc and not isinstance(doc[section], dict):
            raise err(section, "a table", doc[section])
    study = _parse_study(doc.get("study", {}), err, stored)
    training = _parse_training(doc.get("training", {}), err, source)
    raw_space = doc.get("space", {})
    if not raw_space:
        raise err("space", "at least one dimension, e.g. conv1_filters = [16, 32, 64]", raw_space)
    dims = {name: _parse_dim(name, value, err) for name, value in raw_space.items()}
    frontier_dims.check_transition_fits(dims, _widest(dims), err)
    space = Space(source=source, text=text, study=study, training=training, dims=dims,
                  baseline=parse_baseline(doc.get("baseline", {}), dims, err))
    check_baseline_is_a_point(space, err)
    check_some_point_builds(space)
    if study["sampler"] == "grid":
        grid_space(space)
    return space


#: Longest heartbeat interval a space may set, seconds (one hour): larger values only delay the re-queue of
#: a dead worker's trial, and a huge one overflowed the heartbeat thread's timer (issue 26).
MAX_HEARTBEAT_S = 3600


def _parse_study(raw: dict[str, Any], err: Any, stored: bool = False) -> dict[str, Any]:
    study = dict(STUDY_DEFAULTS)
    for key, value in raw.items():
        if key not in STUDY_DEFAULTS:
            raise err(f"study.{key}", f"one of {', '.join(STUDY_DEFAULTS)}", key)
        study[key] = value
    if study["metric"] not in METRICS:
        raise err("study.metric", f"one of {', '.join(METRICS)}", study["metric"])
    if study["sampler"] not in SAMPLERS:
        raise err("study.sampler", f"one of {', '.join(SAMPLERS)}", study["sampler"])
    if study["pruner"] not in PRUNERS:
        raise err("study.pruner", f"one of {', '.join(PRUNERS)}", study["pruner"])
    for key in ("seed", "heartbeat_seconds", "max_consecutive_failures", "max_params", "max_flops"):
        if not isinstance(study[key], int) or isinstance(study[key], bool) or study[key] < 0:
            raise err(f"study.{key}", "a non-negative integer", study[key])
    if study["heartbeat_seconds"] > MAX_HEARTBEAT_S and not stored:  # a stored one is bounded where it is used
        raise err("study.heartbeat_seconds", f"at most {MAX_HEARTBEAT_S:,} seconds (a dead worker's trial is"
                  " re-queued after twice this; 0 turns the heartbeat off)", study["heartbeat_seconds"])
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


def parse_baseline(raw: dict[str, Any], dims: dict[str, Dimension], err: Any) -> Any:
    """The [baseline] section: "reference", "none", or a point {dimension: value} (checked against the space)."""
    model = raw.get("model", "point" if set(raw) - {"model"} else "reference")
    if model not in ("reference", "none", "point"):
        raise err("baseline.model", '"reference", "none", or your own point (one value per searched dimension)',
                  model)
    point = {k: v for k, v in raw.items() if k != "model"}
    if model != "point":
        if point:
            raise err(f"baseline.{next(iter(point))}", f'no dimension values with model = "{model}"', point)
        return model
    for name, value in point.items():
        if name not in dims:
            raise err(f"baseline.{name}", f"a dimension of [space] ({', '.join(dims)})", name)
        if not dims[name].contains(value):
            raise err(f"baseline.{name}", f"a value of the space's {dims[name].to_dict()}", value)
    return point


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
        elif key in frontier_dims.TRAINING_KEYS:
            cfg.update(frontier_dims.parse_training_key(key, value, err))
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


def _widest(dims: dict[str, Dimension]) -> int:
    """The most filters any conv layer of a space can have (the reference's 64 at least: it is a point)."""
    return max([64, *(max(d.points()) for n, d in dims.items() if n.endswith("_filters"))])


def _check_domain(name: str, v: Any, where: str, err: Any) -> None:
    if name in frontier_dims.DIM_TYPES:
        frontier_dims.check_domain(name, v, where, err, MAX_CONV_LAYERS)
        return
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
