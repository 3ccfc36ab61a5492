"""The issue-21 dimensions of a space: the parts small accurate CNNs are made of.

One table and a few small functions that :mod:`cnnsearch.search.space` (reading a
file) and :mod:`cnnsearch.search.points` (a point -> ArchSpec + TrainConfig) call, so the
new vocabulary lives in one place:

- ``pool_at``: the conv layers pooling follows, ``"2"`` or ``"2,4"`` (ArchSpec.pool_layers);
- ``transition``: filters of the 1x1 conv after every pooling, 0 = none;
- ``rotation`` (degrees) and ``zoom`` (fraction): augmentation, training only;
- ``label_smoothing``; ``weight_decay`` (asked only when the optimizer is ``adamw``);
- ``schedule`` (constant | step | cosine | onecycle) and its parameters, each asked only
  when its schedule is drawn: ``step_every``, ``step_factor``, ``cosine_warmup``,
  ``cosine_alpha``, ``onecycle_pct_start``, ``onecycle_div_factor``, ``onecycle_final_div_factor``.

In a [training] section: ``schedule = { name = "onecycle", pct_start = 0.3 }`` and
``label_smoothing = 0.1``. No Keras.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

from cnnsearch.ground.errors import ConfigError
from cnnsearch.model import schedules
from cnnsearch.model.arch import ROTATION_MAX, ZOOM_MAX, ArchSpec, pool_after
from cnnsearch.model.train import TrainConfig

#: Dimension -> (schedule, its parameter): asked only when ``schedule`` is that schedule.
SCHEDULE_DIMS = {f"{name}_{arg}": (name, arg) for name, args in schedules.SCHEDULES.items() for arg in args}
#: Architecture dimensions (ArchSpec fields, ``pool_at`` feeding ``pool_layers``).
ARCH_DIMS: dict[str, type] = {"pool_at": str, "transition": int, "rotation": float, "zoom": float}
#: Training dimensions (TrainConfig fields, ``weight_decay`` feeding AdamW's optimizer_args).
TRAINING_DIMS: dict[str, type] = {"schedule": str, "label_smoothing": float, "weight_decay": float,
                                  **{k: float for k in SCHEDULE_DIMS}}
#: Every dimension this module adds, with its type.
DIM_TYPES: dict[str, type] = {**ARCH_DIMS, **TRAINING_DIMS}
#: [training] keys this module parses.
TRAINING_KEYS = ("schedule", "label_smoothing")
#: AdamW's weight decay when the space does not search it (Keras's default).
DEFAULT_WEIGHT_DECAY = 0.004

Err = Callable[[str, str, Any], ConfigError]


def parse_pool_at(text: str) -> tuple[int, ...]:
    """``"2,4"`` -> (2, 4); raises ValueError unless distinct increasing layer numbers (1-based)."""
    layers = tuple(int(part) for part in text.replace(" ", "").split(","))
    if any(i < 1 for i in layers) or list(layers) != sorted(set(layers)):
        raise ValueError(text)
    return layers


def check_domain(name: str, v: Any, where: str, err: Err, max_layers: int) -> None:
    """Reject a value no point can use, naming the key (called by the space reader for every value)."""
    if name == "pool_at":
        try:
            layers = parse_pool_at(v)
        except ValueError:
            layers = ()
        if not layers or layers[-1] > max_layers:
            raise err(where, f'conv layer numbers from 1 to {max_layers}, increasing, e.g. "2" or "2,4"', v)
    elif name == "transition" and v < 0:
        raise err(where, "a width >= 0 (0 = no transition conv)", v)
    elif name == "rotation" and not 0.0 <= v <= ROTATION_MAX:
        raise err(where, f"degrees in [0, {ROTATION_MAX:g}] (either way: 180 covers every angle)", v)
    elif name == "zoom" and not 0.0 <= v <= ZOOM_MAX:
        raise err(where, f"a zoom fraction in [0, {ZOOM_MAX}]", v)
    elif name == "label_smoothing" and not 0.0 <= v < 1.0:
        raise err(where, "a label smoothing in [0, 1)", v)
    elif name == "weight_decay" and v < 0:
        raise err(where, "a weight decay >= 0", v)
    elif name == "schedule" and v not in schedules.SCHEDULES:
        raise err(where, f"one of {', '.join(schedules.SCHEDULES)}", v)
    elif name in SCHEDULE_DIMS and not schedules.in_range(*SCHEDULE_DIMS[name], v):
        raise err(where, schedules.expected(*SCHEDULE_DIMS[name]), v)


def allowed_strings() -> dict[str, tuple[str, ...]]:
    """Text dimensions with a fixed vocabulary (for the reader's "use a list of" hints)."""
    return {"schedule": tuple(schedules.SCHEDULES)}


def parse_training_key(key: str, value: Any, err: Err) -> dict[str, Any]:
    """TrainConfig fields for a [training] ``schedule`` table or ``label_smoothing`` number."""
    if key == "label_smoothing":
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
            raise err("training.label_smoothing", "a number in [0, 1)", value)
        return {"label_smoothing": float(value)}
    if isinstance(value, str):
        value = {"name": value}
    if not isinstance(value, dict) or "name" not in value:
        raise err("training.schedule", '{ name = "onecycle", pct_start = 0.3 } or a name', value)
    args = dict(value)
    name = args.pop("name")
    if name not in schedules.SCHEDULES:
        raise err("training.schedule.name", f"one of {', '.join(schedules.SCHEDULES)}", name)
    for arg, v in args.items():
        where = f"training.schedule.{arg}"
        if arg not in schedules.SCHEDULES[name]:
            raise err(where, f"a parameter of the {name!r} schedule ({', '.join(schedules.SCHEDULES[name]) or 'none'})",
                      arg)
        if not schedules.in_range(name, arg, v):
            raise err(where, schedules.expected(name, arg), v)
    return {"schedule": name, "schedule_args": {k: float(v) for k, v in args.items()}}


def active(name: str, optimizer: str, schedule: str) -> bool | None:
    """Is conditional dimension ``name`` asked for this optimizer and schedule? None: not one of this module's."""
    if name in SCHEDULE_DIMS:
        return SCHEDULE_DIMS[name][0] == schedule
    if name == "weight_decay":
        return optimizer == "adamw"
    return True if name in DIM_TYPES else None


def seed_value(name: str, seed: ArchSpec) -> Any:
    """The reference model's value of architecture dimension ``name``."""
    if name == "pool_at":
        return ",".join(str(i + 1) for i in range(len(seed.conv_filters)) if pool_after(seed, i))
    return getattr(seed, name)


def reference_value(training: TrainConfig, name: str) -> Any:
    """The study's own [training] value of training dimension ``name`` (the baseline's)."""
    if name == "weight_decay":
        return training.optimizer_args.get("weight_decay", DEFAULT_WEIGHT_DECAY)
    if name in SCHEDULE_DIMS:
        schedule, arg = SCHEDULE_DIMS[name]
        return schedules.value(schedule, training.schedule_args, arg) if schedule == training.schedule else None
    return getattr(training, name)


def arch_fields(get: Callable[[str], Any], pooled_at: bool) -> dict[str, Any]:
    """ArchSpec fields of a point (``get(dim)`` gives its value, or the reference's).

    ``pooled_at``: the point names ``pool_at``; without it, pooling follows ``pool_every`` (pool_layers empty).
    """
    pool_at = get("pool_at") if pooled_at else ""
    return {"pool_layers": parse_pool_at(pool_at) if pool_at else (), "transition": int(get("transition")),
            "rotation": float(get("rotation")), "zoom": float(get("zoom"))}


def training_overrides(values: Mapping[str, Any], training: TrainConfig, optimizer: str,
                       optimizer_args: Mapping[str, Any]) -> dict[str, Any]:
    """TrainConfig overrides of a point's issue-21 training dimensions (``values``: drawn and fixed ones).

    ``optimizer``/``optimizer_args``: what the point trains with so far, into which ``weight_decay`` goes.
    """
    out: dict[str, Any] = {}
    if "label_smoothing" in values:
        out["label_smoothing"] = float(values["label_smoothing"])
    if "weight_decay" in values and optimizer == "adamw":
        out["optimizer_args"] = {**optimizer_args, "weight_decay": float(values["weight_decay"])}
    schedule = values.get("schedule", training.schedule)
    args = dict(training.schedule_args) if schedule == training.schedule else {}
    args.update({SCHEDULE_DIMS[k][1]: float(v) for k, v in values.items()
                 if k in SCHEDULE_DIMS and SCHEDULE_DIMS[k][0] == schedule})
    if schedule != training.schedule or args != training.schedule_args:
        out.update(schedule=schedule, schedule_args=args)
    return out


def check_transition_fits(dims: Mapping[str, Any], widest: int, err: Err) -> None:
    """Refuse a ``transition`` none of whose widths can fit: each must be <= the widest conv layer possible.

    ``widest``: the most filters any conv layer of the space can have. A width that fits only some
    points is left to the points (infeasible, known before training).
    """
    dim = dims.get("transition")
    if dim is None:
        return
    too_wide = [w for w in dim.points() if w > widest]
    if too_wide:
        raise err("space.transition", f"widths of at most {widest} (the most filters any conv layer here has: a"
                  " transition narrows the channels; 0 = none)", too_wide[0] if dim.kind == "fixed" else dim.to_dict())
