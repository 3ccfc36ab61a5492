"""Every third-party private name cnnsearch uses, in one place, each with why and the versions it was written for.

Optuna 5 offers no public way to read or write a study's *system* attributes, to address a trial
in its storage by id, or to hand a study's own storage object to ``delete_study``; and no public
hook to filter TPE's candidates. TensorFlow keeps custom gradients in a private registry that grows
with every model built in one process. Each use below is the smallest accessor that does the job.
A test (tests/test_private.py) checks that each name still exists in the installed versions, so
an upgrade fails in the suite, not in a user's study; :func:`mask_tpe_candidates` also checks the
Optuna version at run time and, on any other, falls back to Optuna's public constraint handling
with one warning line.
"""

from __future__ import annotations

import warnings
from typing import Any, Callable

#: Optuna minor versions the private names below were written and tested for (pyproject pins the same).
OPTUNA_WRITTEN_FOR = ("5.0", "5.1")
#: TensorFlow minor versions whose private gradient registry :func:`gradient_registry` reads.
TENSORFLOW_WRITTEN_FOR = ("2.16", "2.17", "2.18", "2.19", "2.20", "2.21")


def storage_of(study: Any) -> Any:
    """The storage object a study was loaded with (``Study._storage``): the same connection pool and cache."""
    return study._storage


def study_id(study: Any) -> int:
    """A study's id in its storage (``Study._study_id``): the key of its system attributes."""
    return int(study._study_id)


def trial_id(trial: Any) -> int:
    """A trial's id in its storage (``Trial._trial_id`` / ``FrozenTrial._trial_id``)."""
    return int(trial._trial_id)


def optuna_minor() -> str:
    """The installed Optuna's "major.minor"."""
    import optuna

    return ".".join(optuna.__version__.split(".")[:2])


def tpe_hooks_fit(tpe: Any) -> bool:
    """Can :func:`mask_tpe_candidates` patch this TPESampler (a known Optuna version, both methods there)?"""
    return (optuna_minor() in OPTUNA_WRITTEN_FOR and callable(getattr(tpe, "_sample", None))
            and callable(getattr(tpe, "_compute_acquisition_func", None)))


def mask_tpe_candidates(tpe: Any, infeasible: Callable[[dict[str, Any]], bool]) -> bool:
    """Make TPE pick its proposal among candidates ``infeasible`` does not reject; False (one warning) if it cannot.

    TPE draws ``n_ei_candidates`` candidates from its model of good points and proposes the one
    with the best acquisition value; at a size limit the best points crowd the boundary and
    redrawing whole proposals rarely escapes it (measured: the same infeasible share as without).
    So the acquisition of a known-infeasible candidate is set to -inf, unless every candidate is.
    This wraps TPESampler's private ``_sample`` and ``_compute_acquisition_func`` (Optuna 5.0-5.1).
    """
    if not tpe_hooks_fit(tpe):
        warnings.warn(f"cnnsearch: Optuna {optuna_minor()} is not one the TPE candidate mask was written for"
                      f" ({', '.join(OPTUNA_WRITTEN_FOR)}); size limits fall back to Optuna's constraints alone",
                      RuntimeWarning, stacklevel=2)
        return False
    import numpy as np

    sample, acquisition = tpe._sample, tpe._compute_acquisition_func
    current: dict[str, Any] = {}

    def _sample(study: Any, trial: Any, search_space: dict[str, Any]) -> dict[str, Any]:
        current["space"] = search_space
        return sample(study, trial, search_space)

    def _compute_acquisition_func(samples: dict[str, Any], mpe_below: Any, mpe_above: Any) -> Any:
        acq = acquisition(samples, mpe_below, mpe_above)
        dists = current.get("space") or {}
        n = int(acq.size)
        if n and set(samples) <= set(dists):
            bad = np.array([infeasible({k: dists[k].to_external_repr(v[i].item()) for k, v in samples.items()})
                            for i in range(n)])
            if not bad.all():
                acq = np.where(bad, -np.inf, acq)
        return acq

    tpe._sample, tpe._compute_acquisition_func = _sample, _compute_acquisition_func
    return True


def gradient_registry() -> dict[str, Any] | None:
    """TensorFlow's registry of custom gradients (``ops._gradient_registry._registry``), or None if moved.

    Keras registers a ``CustomGradient-N`` entry per model built in a process and never removes it;
    a long search builds thousands. If a release moves the registry, the purge is skipped, not failed.
    """
    try:
        from tensorflow.python.framework import ops

        registry = ops._gradient_registry._registry
    except (ImportError, AttributeError):
        return None
    return registry if isinstance(registry, dict) else None


__all__ = ["OPTUNA_WRITTEN_FOR", "TENSORFLOW_WRITTEN_FOR", "gradient_registry", "mask_tpe_candidates", "optuna_minor",
           "storage_of", "study_id", "tpe_hooks_fit", "trial_id"]
