"""Trials in and out of a study: export every trial as one flat table; enqueue a configuration of your own.

Export is Optuna's ``trials_dataframe`` with the attributes flattened (a
nested one such as ``spec`` becomes ``spec.conv_filters``),
one row per trial and a ``baseline`` column marking the in-study baseline.
Enqueue validates ``key=value`` pairs against the study's stored space before
anything is written, then uses Optuna's ``enqueue_trial``: the configuration is
the next trial a ``study run`` (on any machine) trains.
"""

from __future__ import annotations

import json
from typing import Any, Sequence

import pandas as pd

from cnnsearch.search import points
from cnnsearch.search import browse as records
from cnnsearch.search import space as space_mod
from cnnsearch.search import study as study_mod
from cnnsearch.model.arch import summarize
from cnnsearch.ground.errors import ArchitectureError, ConfigError

FORMATS = ("csv", "json")
#: User attribute marking a trial queued by ``study enqueue`` (the baseline has ``baseline``).
ENQUEUED_KEY = "enqueued"
#: The image shape an enqueued architecture must build on (MNIST's; the space file's check uses it too).
_INPUT_SHAPE = (28, 28, 1)


def _flatten(prefix: str, value: Any, out: dict[str, Any]) -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            _flatten(f"{prefix}.{k}", v, out)
    else:
        out[prefix] = value


def trials_frame(name: str, url: str | None = None) -> pd.DataFrame:
    """Every trial of study ``name``, one row each, user attributes flattened, the baseline marked.

    Columns: ``number``, ``baseline``, ``state``, Optuna's values (named after
    the study's metrics), times (``duration_s`` in seconds), ``params_*``,
    ``user_attrs_*``, the long trial data (``spec.*``, ``history.*``,
    ``epoch_seconds``, ``versions.*``; nested dictionaries spread over dotted
    columns, lists such as per-epoch histories stay lists) and ``fail_reason``.
    """
    h = study_mod.load(name, url)
    df = h.study.trials_dataframe(attrs=("number", "value", "datetime_start", "datetime_complete", "duration",
                                         "params", "user_attrs", "state"), multi_index=False)
    if df.empty:
        return pd.DataFrame({"number": [], "baseline": [], "state": []})
    # The long per-trial data (history, spec, ...) lives in system attributes (older studies: user
    # attributes); give it plain column names, whichever place it came from.
    data_keys = [k for k in study_mod.TRIAL_DATA if k != "fail_reason"]
    df = df.drop(columns=[f"user_attrs_{k}" for k in data_keys], errors="ignore")
    trials = {t.number: t for t in h.study.get_trials(deepcopy=False)}
    for key in data_keys:
        df[key] = df["number"].map(lambda n, key=key: study_mod.trial_attr(trials[n], key))
    nested = [c for c in df.columns if df[c].map(lambda v: isinstance(v, dict)).any()]
    for col in nested:
        rows = []
        for v in df[col]:
            flat: dict[str, Any] = {}
            if isinstance(v, dict):
                _flatten(col, v, flat)
            rows.append(flat)
        spread = pd.DataFrame(rows, index=df.index)
        at = df.columns.get_loc(col)
        df = pd.concat([df.iloc[:, :at], spread, df.iloc[:, at + 1:]], axis=1)
    # No trial finished yet (a fresh study: its queued baseline only): the column is all None, not timedelta.
    df["duration_s"] = pd.to_timedelta(df.pop("duration")).dt.total_seconds()
    baseline = df.pop("user_attrs_baseline") if "user_attrs_baseline" in df else pd.Series(False, index=df.index)
    df.insert(1, "baseline", baseline.map(lambda v: v is True))
    df.insert(2, "state", df.pop("state"))
    df["fail_reason"] = df["number"].map(lambda n: records.trial_record(trials[n])["fail_reason"])
    return df.drop(columns=["user_attrs_fail_reason"], errors="ignore")


def export(name: str, fmt: str = "csv", url: str | None = None) -> str:
    """Study ``name``'s trials as CSV text (lists JSON-encoded in their cells) or a JSON array of rows."""
    if fmt not in FORMATS:
        raise ConfigError(f"--format: expected one of {', '.join(FORMATS)}; received {fmt!r}")
    df = trials_frame(name, url)
    if fmt == "json":
        return df.to_json(orient="records", date_format="iso", indent=2) + "\n"
    cells = df.copy()
    for col in cells.columns:
        if cells[col].map(lambda v: isinstance(v, (list, tuple))).any():
            cells[col] = cells[col].map(lambda v: json.dumps(v) if isinstance(v, (list, tuple)) else v)
    return str(cells.to_csv(index=False))


def parse_assignments(assignments: Sequence[str], sp: space_mod.Space) -> dict[str, Any]:
    """``key=value`` pairs as a full point of space ``sp``: typed, in range, active, buildable.

    Searched dimensions left out take the reference model's value (a layer the
    reference lacks takes the second layer's, when the space holds it), so the
    configuration is "the reference with these changes".

    Raises:
        ConfigError: a malformed pair, an unknown, fixed or inactive dimension,
            a value outside the space, or an architecture that cannot be built.
    """
    if not assignments:
        raise ConfigError("enqueue: expected at least one key=value, e.g. conv1_filters=16; received none")
    params = _complete(_given(assignments, sp), sp)
    try:
        summarize(points.spec_from_values(params, sp), _INPUT_SHAPE, 10)
    except ArchitectureError as exc:
        raise ConfigError(f"enqueue: expected an architecture that builds on 28x28 images; received one that"
                          f" does not: {exc}") from exc
    return params


def _given(assignments: Sequence[str], sp: space_mod.Space) -> dict[str, Any]:
    """The typed, in-range searched values of ``key=value`` pairs (fixed dimensions checked and dropped)."""
    given: dict[str, Any] = {}
    for item in assignments:
        key, sep, raw = item.partition("=")
        key, raw = key.strip(), raw.strip()
        if not sep or not key or not raw:
            raise ConfigError(f"enqueue: expected key=value, e.g. conv1_filters=16; received {item!r}")
        if key in given:
            raise ConfigError(f"enqueue: expected each dimension once; received {key} twice")
        dim = sp.dims.get(key)
        if dim is None:
            raise ConfigError(f"enqueue: {key}: expected a dimension of this study's space"
                              f" ({', '.join(sp.searched)}); received {key!r}")
        value = _typed(key, raw, dim)
        if dim.kind == "fixed":
            if value != dim.value:
                raise ConfigError(f"enqueue: {key}: expected {dim.value!r} (fixed in this study's space);"
                                  f" received {raw!r}")
            continue
        if not dim.contains(value):
            raise ConfigError(f"enqueue: {key}: expected a value in this study's space {dim.to_dict()};"
                              f" received {raw!r}")
        given[key] = value
    return given


def _complete(given: dict[str, Any], sp: space_mod.Space) -> dict[str, Any]:
    """Every dimension the point asks for: given, else the reference's (a deeper layer: the second layer's).

    A dimension the point does not ask for (a layer beyond its depth, the learning rate of an optimizer not
    chosen, a schedule's parameter under another schedule) takes no value.
    """
    ref = points.baseline_params(sp)
    point = {**ref, **given}
    layers = int(point.get("conv_layers", points.seed_value("conv_layers")))
    params: dict[str, Any] = {}
    for name in sp.searched:
        layer = _layer_index(name)
        if not points.asked(name, point, sp):
            if name in given and layer is not None:
                raise ConfigError(f"enqueue: {name}: expected no value with conv_layers={layers} (it applies only"
                                  f" to models with {layer} or more conv layers); received {given[name]!r}")
            if name in given and name.endswith("_learning_rate"):
                raise ConfigError(f"enqueue: {name}: expected no value with optimizer="
                                  f"{point.get('optimizer', sp.training.optimizer)}; received {given[name]!r}")
            if name in given:
                raise ConfigError(f"enqueue: {name}: expected no value for this point (it is asked only with the"
                                  f" schedule it belongs to); received {given[name]!r}")
            continue
        if name in given:
            params[name] = given[name]
        elif name in ref:
            params[name] = ref[name]
        else:
            params[name] = _missing(name, params, point, sp, layer, layers)
    return params


def _missing(name: str, params: dict[str, Any], point: dict[str, Any], sp: space_mod.Space, layer: int | None,
             layers: int) -> Any:
    """An asked dimension neither given nor the reference's: a deeper layer takes the second layer's value, the
    learning rate of an optimizer the study does not train with its default (``points.DEFAULT_LEARNING_RATE``)."""
    if layer is not None:
        value = params.get(name.replace(f"conv{layer}_", "conv2_"),
                           points.seed_value(name.replace(f"conv{layer}_", "conv2_")))
        context = f"conv_layers={layers} needs it"
    else:
        opt = str(point.get("optimizer", sp.training.optimizer))
        value = points.DEFAULT_LEARNING_RATE.get(opt) if name == f"{opt}_learning_rate" else None
        context = f"optimizer={opt} needs it" if value is not None else "this point asks for it"
    if value is None or not sp.dims[name].contains(value):
        raise ConfigError(f"enqueue: {name}: expected a value ({context} and the reference has none in this"
                          f" space: {sp.dims[name].to_dict()}); received none")
    return value


def _typed(key: str, raw: str, dim: space_mod.Dimension) -> Any:
    sample = dim.value if dim.kind == "fixed" else (dim.choices[0] if dim.kind == "choice" else dim.low)
    if isinstance(sample, bool):
        if raw.lower() not in ("true", "false"):
            raise ConfigError(f"enqueue: {key}: expected true or false; received {raw!r}")
        return raw.lower() == "true"
    if dim.kind == "int" or (isinstance(sample, int) and not isinstance(sample, bool)):
        try:
            return int(raw)
        except ValueError:
            raise ConfigError(f"enqueue: {key}: expected an integer; received {raw!r}") from None
    if dim.kind == "float" or isinstance(sample, float):
        try:
            return float(raw)
        except ValueError:
            raise ConfigError(f"enqueue: {key}: expected a number; received {raw!r}") from None
    return raw


def _layer_index(name: str) -> int | None:
    if name.startswith("conv") and name[4:5].isdigit() and "_" in name:
        return int(name[4:name.index("_")])
    return None


def enqueue(name: str, assignments: Sequence[str], url: str | None = None) -> dict[str, Any]:
    """Queue a configuration of your own as the next trial of study ``name`` (validated first).

    Returns:
        ``{"number": the queued trial's number, "params": the full configuration}``.
    """
    h = study_mod.load(name, url)
    params = parse_assignments(assignments, h.space)  # raises before anything is written
    h.study.enqueue_trial(params, user_attrs={ENQUEUED_KEY: "by cnnsearch study enqueue"})
    waiting = [t for t in h.study.get_trials(deepcopy=False)
               if t.state.name == "WAITING" and t.user_attrs.get(ENQUEUED_KEY)]
    return {"number": waiting[-1].number if waiting else None, "params": params}


__all__ = ["ENQUEUED_KEY", "FORMATS", "enqueue", "export", "parse_assignments", "trials_frame"]
