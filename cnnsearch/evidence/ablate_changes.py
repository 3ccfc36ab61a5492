"""The changes between a winner and the baseline, and the variants an ablation trains (no training here).

A *change* is a set of dimensions that only make sense together (:func:`changes`):
the number of conv layers with the filters and kernel of the layers it adds or
removes, an optimizer with its own learning rate; every other differing
dimension is a change of its own. Each change gives two variants: the winner
with it reverted (leave one out) and the baseline with it applied (add one in).
A variant that cannot be built, or that breaks the study's size limit while
being larger than the baseline, is listed with its reason and not trained.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any, Mapping

from cnnsearch.evidence.confirm import Fidelity
from cnnsearch.ground.errors import ArchitectureError, ConfigError, StorageError
from cnnsearch.search import points
from cnnsearch.search import study as study_mod

#: Study system-attribute prefix of one ablation's description (``ablate:plan:<fidelity>:trial<N>``).
PLAN_PREFIX = "ablate:plan:"


@dataclass(frozen=True)
class Change:
    """Dimensions that change together; ``winner``/``baseline``: their values (a missing one: inactive there)."""

    name: str
    keys: tuple[str, ...]
    winner: dict[str, Any]
    baseline: dict[str, Any]

    def describe(self) -> str:
        """``optimizer adadelta -> adam, adam_learning_rate - -> 0.0012, ...``."""
        def v(d: dict[str, Any], k: str) -> str:
            return "-" if k not in d else repr(d[k]) if isinstance(d[k], str) else f"{d[k]:g}" \
                if isinstance(d[k], float) else str(d[k])

        return ", ".join(f"{k} {v(self.baseline, k)} -> {v(self.winner, k)}" for k in self.keys)


def changes(winner: Mapping[str, Any], baseline: Mapping[str, Any]) -> list[Change]:
    """The differences between two points (trial params), grouped into changes that make sense alone."""
    seed_layers = points.seed_value("conv_layers")
    nw, nb = int(winner.get("conv_layers", seed_layers)), int(baseline.get("conv_layers", seed_layers))
    optimizer_changed = winner.get("optimizer") != baseline.get("optimizer")
    order = {k: i for i, k in enumerate([*baseline, *[k for k in winner if k not in baseline]])}
    groups: dict[str, list[str]] = {}
    for key in sorted(set(winner) | set(baseline), key=lambda k: order[k]):
        if winner.get(key) == baseline.get(key):
            continue
        group = key
        if nw != nb and (key == "conv_layers" or (key in points.LAYER_DIMS and points.LAYER_DIMS[key][1] > min(nw, nb))):
            group = "conv_layers"  # the layers a depth change adds or removes come with it
        elif optimizer_changed and (key == "optimizer" or key.endswith("_learning_rate") and key != "learning_rate"):
            group = "optimizer"  # an optimizer's own learning rate is asked only for that optimizer
        groups.setdefault(group, []).append(key)
    return [Change(name, tuple(keys), {k: winner[k] for k in keys if k in winner},
                   {k: baseline[k] for k in keys if k in baseline}) for name, keys in groups.items()]


def apply(params: Mapping[str, Any], values: Mapping[str, Any], keys: tuple[str, ...]) -> dict[str, Any]:
    """``params`` with ``keys`` set to ``values`` (a key missing from ``values`` is dropped: inactive there)."""
    out = {k: v for k, v in params.items() if k not in keys}
    out.update({k: values[k] for k in keys if k in values})
    return out


def identity(spec: Any, overrides: Mapping[str, Any]) -> str:
    """A short hash of what a run trains (architecture + training overrides): equal models share runs."""
    text = json.dumps({"spec": spec.to_dict(), "training": dict(overrides)}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def point(params: Mapping[str, Any], space: Any) -> tuple[Any, dict[str, Any]]:
    """The ArchSpec and training overrides of ``params``, read as a trial's (conditional dimensions included)."""
    import optuna

    return points.suggest(optuna.trial.FixedTrial(dict(params)), space)


@dataclass(frozen=True)
class Ablation:
    """One ablation, before any training: what to run and what cannot be run."""

    trial: int
    fidelity: Fidelity
    seeds: int
    winner: dict[str, Any]  # {"params", "identity", "param_count", "flops"}
    baseline: dict[str, Any]
    changes: list[Change]
    variants: list[dict[str, Any]]  # {"direction", "change", "params", "identity", "param_count", "problem"}

    @property
    def key(self) -> str:
        """Its study system-attribute key."""
        return f"{PLAN_PREFIX}{self.fidelity.key}:trial{self.trial}"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (stored on the study, and the head of ``--json``)."""
        return {"trial": self.trial, "fidelity": self.fidelity.to_dict(), "seeds": self.seeds,
                "winner": self.winner, "baseline": self.baseline,
                "changes": [{"name": c.name, "keys": list(c.keys), "winner": c.winner, "baseline": c.baseline,
                             "text": c.describe()} for c in self.changes],
                "variants": self.variants}


def winner_trial(h: study_mod.Handle, trial: int | None) -> Any:
    """The winner: trial ``trial``, else the best trial by validation accuracy; one clear line when unusable."""
    import optuna

    name = h.name
    if trial is None:
        best = study_mod.best_trial(h.study)
        if best is None or best.user_attrs.get("baseline"):
            what = "no completed trial" if best is None else "no trial better than the baseline itself"
            raise StorageError(f"study {name!r} has {what} to ablate; run the search first"
                               f" (cnnsearch study run {name} --trials N) or pass --trial N")
        return best
    trials = h.study.get_trials(deepcopy=False)
    found = next((t for t in trials if t.number == trial), None)
    if found is None:
        raise ConfigError(f"--trial: expected a trial of study {name!r} (0-{len(trials) - 1}); received {trial};"
                          f" see cnnsearch study show {name}")
    if found.state != optuna.trial.TrialState.COMPLETE or found.user_attrs.get("val_accuracy") is None:
        state = "infeasible" if found.user_attrs.get("infeasible") else found.state.name.lower()
        raise ConfigError(f"--trial: expected a completed, trained trial of {name!r}; received trial {trial},"
                          f" which is {state}; pick one from cnnsearch study show {name}")
    return found


def check_differs(h: study_mod.Handle, trial: Any) -> None:
    """Refuse a winner that builds the baseline's very model (before any data is loaded): nothing to ablate."""
    if identity(*point(trial.params, h.space)) == identity(*point(points.baseline_params(h.space), h.space)):
        raise ConfigError(f"--trial: expected a trial that differs from the baseline; received trial {trial.number},"
                          " which builds the baseline's model, so there is nothing to ablate; pick another trial")


def describe_point(params: Mapping[str, Any], h: study_mod.Handle, input_shape: tuple[int, ...],
                   n_classes: int) -> dict[str, Any]:
    """A point's identity and size, or why it cannot be built: ``{"params", "identity", ...,"problem"}``."""
    from cnnsearch.model.arch import summarize

    spec, overrides = point(params, h.space)
    out: dict[str, Any] = {"params": dict(params), "identity": identity(spec, overrides), "param_count": None,
                           "flops": None, "problem": None}
    try:
        s = summarize(spec, input_shape, n_classes)
    except ArchitectureError as exc:
        return {**out, "problem": f"cannot be built: {exc}"}
    return {**out, "param_count": s.params, "flops": s.flops}


def _size_problem(v: dict[str, Any], base: dict[str, Any], h: study_mod.Handle) -> str | None:
    # The baseline trains over a size-limited study's limit as the comparison; a variant no larger than the
    # baseline costs no more, so only a variant over the limit AND larger than the baseline is left out.
    limits = {k: h.space.study.get(f"max_{k}") for k in ("params", "flops")}
    over = [f"{v[f]:,} {k} > max_{k} {lim:,}" for k, f, lim in (("params", "param_count", limits["params"]),
                                                                  ("flops", "flops", limits["flops"]))
            if lim and v[f] > lim and v[f] > (base[f] or 0)]
    return "over the size limit (and larger than the baseline): " + ", ".join(over) if over else None


def plan_ablation(h: study_mod.Handle, trial: Any, fid: Fidelity, seeds: int, input_shape: tuple[int, ...],
                  n_classes: int) -> Ablation:
    """The changes between ``trial`` and the baseline, and the two variants of each (with their problems)."""
    base_params = points.baseline_params(h.space)
    winner = describe_point(trial.params, h, input_shape, n_classes)
    base = describe_point(base_params, h, input_shape, n_classes)
    found = changes(trial.params, base_params)
    variants = []
    for c in found:
        for direction, start, values in (("leave_one_out", trial.params, c.baseline),
                                          ("add_one_in", base_params, c.winner)):
            v = describe_point(apply(start, values, c.keys), h, input_shape, n_classes)
            if v["problem"] is None:
                v["problem"] = _size_problem(v, base, h)
            variants.append({"direction": direction, "change": c.name, **v})
    return Ablation(trial.number, fid, seeds, winner, base, found, variants)


__all__ = ["Ablation", "Change", "PLAN_PREFIX", "apply", "changes", "check_differs", "describe_point", "identity", "plan_ablation",
           "point", "winner_trial"]
