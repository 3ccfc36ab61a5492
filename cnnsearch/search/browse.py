"""Reading studies: one trial's record, a study's summary, the best trial and its export.

Read-only queries over what :mod:`cnnsearch.search.study` stores (it creates, loads and
deletes studies; this module never writes to a study). Only ``best`` with
``export`` writes, and only the exported ``.keras`` file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial

from cnnsearch.model.arch import REFERENCE
from cnnsearch.ground.errors import CnnsearchError, ConfigError, StorageError
from cnnsearch.ground.output import write_file
from cnnsearch.search import seeds
from cnnsearch.records.storage import ARTIFACTS_ENV, artifact_dir, kept_weights, mask_url, open_storage
from cnnsearch.search.study import (baseline_trial, best_trial, counts, load, param_count, settings_of, system_attrs,
                                    trial_attr)


def trial_record(t: FrozenTrial) -> dict[str, Any]:
    """Everything stored on one trial, JSON-ready."""
    ua = t.user_attrs
    return {
        "number": t.number,
        "state": t.state.name,
        "baseline": bool(ua.get("baseline", False)),
        "params": t.params,
        "values": t.values,
        "val_accuracy": ua.get("val_accuracy"),
        "test_accuracy": ua.get("test_accuracy"),
        "test_loss": ua.get("test_loss"),
        "param_count": param_count(ua),
        "flops": ua.get("flops"),
        "epochs_run": ua.get("epochs_run"),
        "seconds": ua.get("seconds"),
        "history": trial_attr(t, "history"),
        "intermediate_values": {str(k): v for k, v in t.intermediate_values.items()},
        "epoch_seconds": trial_attr(t, "epoch_seconds"),
        "spec": trial_attr(t, "spec"),
        "versions": trial_attr(t, "versions"),
        "fail_reason": trial_attr(t, "fail_reason") or t.system_attrs.get("fail_reason"),
        "infeasible": ua.get("infeasible"),  # why a size-limited study did not train it (None: feasible)
        "retry_of": t.system_attrs.get("failed_trial"),
        "datetime_start": t.datetime_start.isoformat() if t.datetime_start else None,
        "datetime_complete": t.datetime_complete.isoformat() if t.datetime_complete else None,
    }


def show(name: str, url: str | None = None, *, top: int | None = None, sort: str = "number") -> dict[str, Any]:
    """A study's settings, counts, baseline, best trial and its trials.

    Args:
        top: Only the ``top`` trials with the highest validation accuracy (best first).
        sort: ``"number"`` (trial order) or ``"val"`` (validation accuracy, best first; trials without one last).
    """
    if sort not in ("number", "val"):
        raise ConfigError(f"--sort: expected number or val; received {sort!r}")
    h = load(name, url)
    settings = settings_of(h.study) or {}
    base, best = baseline_trial(h.study), best_trial(h.study)
    records = [trial_record(t) for t in h.study.get_trials(deepcopy=False)]
    if top is not None or sort == "val":
        records.sort(key=lambda r: (r["val_accuracy"] is None, -(r["val_accuracy"] or 0.0), r["number"]))
    if top is not None:
        records = [r for r in records if r["val_accuracy"] is not None][:top]
    return {
        "name": name,
        "storage": mask_url(h.url),
        "directions": [d.name.lower() for d in h.study.directions],
        "created": settings["created"],
        "space_source": settings["space_source"],
        "space": settings["space_text"],
        "study": settings["study"],
        "training": settings["training"],
        "counts": counts(h.study),
        "reference_test_accuracy": REFERENCE.test_accuracy,
        "baseline_trial": base.number if base else None,
        "baseline_val_accuracy": base.user_attrs.get("val_accuracy") if base else None,
        "best_trial": best.number if best else None,
        "best_weights": h.study.user_attrs.get("best_weights"),
        "data": h.study.user_attrs.get("data"),
        "sampler_seeds": seeds.of(system_attrs(h.study)),
        "trials": records,
    }


def summaries(url: str | None = None) -> list[dict[str, Any]]:
    """One row per study in a storage."""
    storage = open_storage(url)
    rows = []
    for s in optuna.study.get_all_study_summaries(storage=storage, include_best_trial=False):
        study = optuna.load_study(study_name=s.study_name, storage=storage)
        best = best_trial(study)
        rows.append({"name": s.study_name, "trials": s.n_trials, "counts": counts(study),
                     "best_val_accuracy": best.user_attrs["val_accuracy"] if best else None,
                     "best_trial": best.number if best else None,
                     "created": s.datetime_start.isoformat() if s.datetime_start else None})
    return rows


def best(name: str, url: str | None = None, *, export: str | Path | None = None) -> dict[str, Any]:
    """The best trial's record; with ``export``, write its trained model (``.keras``) there."""
    h = load(name, url)
    t = best_trial(h.study)
    if t is None:
        within = " within its size limits" if h.space.constrained else ""  # the over-limit baseline is never best
        raise StorageError(f"study {name!r} has no completed trial{within} yet; run it: cnnsearch study run {name}"
                           " --trials N")
    record = trial_record(t)
    if export is not None:
        weights = h.study.user_attrs.get("best_weights")
        if not weights or weights["trial"] != t.number:
            raise StorageError(f"study {name!r}: the weights of best trial {t.number} were not kept"
                               f" (kept: {weights['trial'] if weights else 'none'}); retrain it or run more trials")
        export = Path(export)
        if export.suffix != ".keras":
            raise ConfigError(f"--export: expected a path ending in .keras; received {str(export)!r}")
        source = kept_weights(h.url, weights, "best")  # verified against its stored checksum
        if source is None:
            raise StorageError(f"study {name!r}: weights {weights['artifact_id']} missing from"
                               f" {artifact_dir(h.url)}; retrain the trial or point {ARTIFACTS_ENV} at the folder")
        # Atomic, no partial copy left on a full disk; a symlink's target written, a device never replaced.
        write_file(export, source.read_bytes(), flag="--export", what="the model")
        record["exported"] = str(export)
    return record


__all__ = ["best", "show", "summaries", "trial_record"]
