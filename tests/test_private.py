"""Third-party private names live in one module, exist in the installed versions, and degrade with one warning."""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import optuna
import pytest

from cnnsearch.ground import private

PACKAGE = Path(__file__).resolve().parents[1] / "cnnsearch"
#: Private Optuna/TensorFlow names cnnsearch knows it uses; any of them outside ground/private.py fails the test.
PRIVATE = re.compile(r"\._storage\b|\._study_id\b|\._trial_id\b|\._sample\b|\._compute_acquisition_func\b"
                     r"|_gradient_registry\b|tensorflow\.python\b|keras\.src\b")


def test_private_names_only_in_their_module() -> None:
    found = []
    for p in PACKAGE.rglob("*.py"):
        if p.name == "private.py":
            continue
        for i, line in enumerate(p.read_text().splitlines(), 1):
            if PRIVATE.search(line.split("#")[0]):
                found.append(f"{p.relative_to(PACKAGE)}:{i}: {line.strip()}")
    assert found == [], "\n".join(found)


def test_the_private_names_exist_in_the_installed_versions() -> None:
    assert private.optuna_minor() in private.OPTUNA_WRITTEN_FOR, "pyproject's optuna pin and OPTUNA_WRITTEN_FOR differ"
    study = optuna.create_study(storage=optuna.storages.InMemoryStorage())
    trial = study.ask()
    storage = private.storage_of(study)
    assert isinstance(storage, optuna.storages.BaseStorage)
    assert storage.get_study_id_from_name(study.study_name) == private.study_id(study)
    study.tell(trial, 1.0)
    frozen = study.get_trials()[0]
    assert private.trial_id(trial) == private.trial_id(frozen)
    assert storage.get_trial(private.trial_id(frozen)).number == frozen.number
    assert private.tpe_hooks_fit(optuna.samplers.TPESampler(seed=0))


def test_the_tpe_mask_steers_tpe_away_from_rejected_values() -> None:
    sampler = optuna.samplers.TPESampler(seed=0, n_startup_trials=2)
    assert private.mask_tpe_candidates(sampler, lambda params: params["x"] > 0)
    study = optuna.create_study(sampler=sampler, direction="maximize")
    study.optimize(lambda t: t.suggest_float("x", -1, 1), n_trials=12)
    searched = [t.params["x"] for t in study.trials[2:]]
    assert searched and all(x <= 0 for x in searched), searched


def test_an_unknown_optuna_version_falls_back_with_one_warning(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(private, "optuna_minor", lambda: "9.9")
    sampler = optuna.samplers.TPESampler(seed=0)
    original = sampler._compute_acquisition_func
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert private.mask_tpe_candidates(sampler, lambda params: True) is False
    assert [str(w.message) for w in caught if "TPE candidate mask" in str(w.message)] != []
    assert len(caught) == 1
    assert sampler._compute_acquisition_func == original  # untouched: Optuna's own behaviour


def test_the_gradient_registry_is_found_in_this_tensorflow() -> None:
    registry = private.gradient_registry()
    assert isinstance(registry, dict)
