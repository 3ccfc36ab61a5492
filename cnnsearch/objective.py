"""One trial: suggest a spec from the space, fit it, record everything on the trial, keep the best weights.

A trial that cannot finish raises :class:`~cnnsearch.errors.TrialFailed`
(recorded, the search goes on); anything fatal propagates.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable

import optuna
from optuna.trial import FrozenTrial, TrialState

from cnnsearch import data as data_mod
from cnnsearch import limits
from cnnsearch import space as space_mod
from cnnsearch.arch import summarize
from cnnsearch.errors import ArchitectureError, CnnsearchError, TrialFailed
from cnnsearch.storage import artifact_dir, artifact_store, first_line
from cnnsearch.study import Handle, fresh_user_attrs


class Objective:
    """Train one trial's spec; record everything the report needs on the trial."""

    def __init__(self, handle: Handle, splits: data_mod.Splits, *, verbose: int = 0) -> None:
        self.handle = handle
        self.splits = splits
        self.verbose = verbose
        self.versions: dict[str, str] | None = None
        if hasattr(handle.study.sampler, "input_shape"):  # a size-limited study's sampler judges on this data
            handle.study.sampler.input_shape, handle.study.sampler.n_classes = splits.input_shape, splits.n_classes
        self._data_sha256: str | None = None

    @property
    def data_sha256(self) -> str:
        """sha256 of the arrays this run trains, validates and tests on (computed once)."""
        if self._data_sha256 is None:
            self._data_sha256 = splits_sha256(self.splits)
        return self._data_sha256

    def __call__(self, trial: optuna.Trial) -> float | tuple[float, float]:
        from cnnsearch.train import fit, versions

        sp, cfg = self.handle.space, self.handle.training
        start = time.perf_counter()
        is_baseline = bool(trial.user_attrs.get("baseline", False))
        trial.set_user_attr("baseline", is_baseline)
        spec, overrides = space_mod.suggest(trial, sp)
        trial.set_user_attr("spec", spec.to_dict())
        try:
            summary = summarize(spec, self.splits.input_shape, self.splits.n_classes)
        except ArchitectureError as exc:
            if sp.constrained:  # costs no training either: a constraint, so the sampler learns it
                return self._infeasible(trial, None, str(exc), start)
            failure = TrialFailed(str(exc), kind="invalid_architecture")
            _record_failure(trial, failure)
            raise failure from exc
        trial.set_user_attr("params", summary.params)
        trial.set_user_attr("flops", summary.flops)
        reason = limits.infeasible_reason(sp, summary)
        if reason and not is_baseline:  # the baseline trains anyway: it is what every trial is compared with
            return self._infeasible(trial, summary, reason, start)
        for key, value in limits.constraints(sp, summary).items():
            trial.set_constraint(key, value)
        config = replace(cfg, seed=cfg.seed + trial.number, **overrides)
        if is_baseline:
            # What the baseline's result depends on, so a later study can reuse it instead of training it again.
            trial.set_user_attr("training", config.to_dict())
            trial.set_user_attr("data_sha256", self.data_sha256)
            donor = find_reusable_baseline(self.handle, spec.to_dict(), config.to_dict(), self.data_sha256)
            if donor is not None:
                return self._reuse(trial, *donor, candidate=not reason)
        history: dict[str, list[float]] = {}

        def on_epoch(epoch: int, logs: dict[str, float]) -> None:
            for k, v in logs.items():
                history.setdefault(k, []).append(float(v))

        callbacks = []
        if not is_baseline and not sp.multi_objective and sp.study["pruner"] != "none":
            from optuna_integration import KerasPruningCallback

            callbacks.append(KerasPruningCallback(trial, "val_accuracy"))
        if self.versions is None:
            self.versions = versions()
        trial.set_user_attr("versions", self.versions)
        start = time.perf_counter()
        try:
            result = fit(spec, self.splits, config, callbacks=callbacks, on_epoch=on_epoch, verbose=self.verbose)
        except TrialFailed as exc:  # its own root: the order of these clauses does not matter
            self._record_partial(trial, history, start)
            _record_failure(trial, exc)
            raise
        except (optuna.TrialPruned, KeyboardInterrupt, CnnsearchError):
            self._record_partial(trial, history, start)
            raise
        except Exception as exc:  # a crash inside TensorFlow fails this trial, not the search
            self._record_partial(trial, history, start)
            failure = TrialFailed(f"{type(exc).__name__}: {first_line(exc)}")
            _record_failure(trial, failure)
            raise failure from exc
        trial.set_user_attr("history", result.history)
        trial.set_user_attr("epochs_run", result.epochs_run)
        trial.set_user_attr("seconds", round(result.seconds, 3))
        trial.set_user_attr("epoch_seconds", [round(s, 3) for s in result.epoch_seconds])
        trial.set_user_attr("val_accuracy", result.val_accuracy)
        # Recorded for the report only: selection never looks at the test set.
        trial.set_user_attr("test_loss", result.test_loss)
        trial.set_user_attr("test_accuracy", result.test_accuracy)
        self._keep_if_best(trial, result.val_accuracy,
                           lambda tag: _save_model(artifact_store(self.handle.url), self.handle.study, trial,
                                                   result.model, tag), candidate=not reason)
        if sp.multi_objective:
            return result.val_accuracy, float(summary.params)
        return result.val_accuracy

    def _infeasible(self, trial: optuna.Trial, summary: Any, reason: str, start: float) -> float | tuple[float, float]:
        """End a point the study's limits rule out, untrained: COMPLETE with its constraint values set.

        COMPLETE, not FAIL: samplers learn only from finished trials, and
        TPE/NSGA-II rank a trial with a constraint > 0 behind every feasible
        one. Its value (accuracy 0) is never used: best trials are feasible ones,
        and the runner does not count it toward --trials or the failure stop rule.
        """
        for key, value in limits.constraints(self.handle.space, summary).items():
            trial.set_constraint(key, value)
        trial.set_user_attr("infeasible", reason)
        trial.set_user_attr("seconds", round(time.perf_counter() - start, 3))
        if self.handle.space.multi_objective:
            return 0.0, float(summary.params if summary is not None else 0)
        return 0.0

    @staticmethod
    def _record_partial(trial: optuna.Trial, history: dict[str, list[float]], start: float) -> None:
        trial.set_user_attr("history", history)
        trial.set_user_attr("epochs_run", len(history.get("loss", [])))
        trial.set_user_attr("seconds", round(time.perf_counter() - start, 3))

    def _reuse(self, trial: optuna.Trial, study_name: str, donor: FrozenTrial, artifact_id: str,
               candidate: bool) -> float | tuple[float, float]:
        """Make this baseline trial a copy of ``donor`` (study ``study_name``): values, history, weights."""
        for key, value in donor.user_attrs.items():
            if key not in ("baseline", "reused_from"):
                trial.set_user_attr(key, value)
        trial.set_user_attr("reused_from", {"study": study_name, "trial": donor.number})
        if not self.handle.space.multi_objective:  # Optuna keeps no intermediate values for several objectives
            for step, value in sorted(donor.intermediate_values.items()):
                trial.report(value, step)
        # The weights are copied, not referenced: deleting the donor study must not break this study's report.
        store = artifact_store(self.handle.url)
        self._keep_if_best(trial, donor.user_attrs["val_accuracy"],
                           lambda tag: _copy_artifact(store, artifact_id, self.handle.study, trial, tag), candidate)
        values = donor.values
        return (values[0], values[1]) if self.handle.space.multi_objective else values[0]

    def _keep_if_best(self, trial: optuna.Trial, val_accuracy: float, save: Callable[[str], str],
                      candidate: bool = True) -> None:
        """Store this trial's weights if it beats every finished trial (the previous best's are removed).

        The in-study baseline's weights are kept too (``baseline_weights``): the
        report draws its filters beside the best model's. When the baseline is
        also the best (it always is at first), one file serves both.
        """
        study = self.handle.study
        store = artifact_store(self.handle.url)
        saved: str | None = None
        baseline_id = (study.user_attrs.get("baseline_weights") or {}).get("artifact_id")
        if trial.user_attrs.get("baseline") and baseline_id is None:
            saved = baseline_id = save("baseline")
            study.set_user_attr("baseline_weights", {"trial": trial.number, "val_accuracy": val_accuracy,
                                                     "artifact_id": saved})
        current = study.user_attrs.get("best_weights")
        if not candidate or (current and current["val_accuracy"] >= val_accuracy):
            return  # not a candidate: a baseline over the study's size limit is never the best
        artifact_id = saved or save("best")
        # Re-read: another worker may have stored a better one meanwhile.
        current = fresh_user_attrs(study).get("best_weights")
        if current and current["val_accuracy"] >= val_accuracy:
            if artifact_id != saved:
                store.remove(artifact_id)
            return
        study.set_user_attr("best_weights", {"trial": trial.number, "artifact_id": artifact_id,
                                             "val_accuracy": val_accuracy})
        if current and current["artifact_id"] != baseline_id:
            try:
                store.remove(current["artifact_id"])
            except Exception:  # already gone: nothing to free
                pass


def splits_sha256(splits: data_mod.Splits) -> str:
    """sha256 over the training, validation and test arrays (names, dtypes, shapes and bytes)."""
    import numpy as np

    h = hashlib.sha256()
    for name in ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test"):
        arr = np.ascontiguousarray(getattr(splits, name))
        h.update(f"{name}:{arr.dtype.str}:{arr.shape};".encode())
        h.update(arr.data)
    return h.hexdigest()


def find_reusable_baseline(handle: Handle, spec: dict[str, Any], training: dict[str, Any],
                           data_sha256: str) -> tuple[str, FrozenTrial, str] | None:
    """A finished baseline in another study of the same storage that this study's baseline would repeat.

    It must have the same spec, the same effective training settings (epochs,
    train_limit, batch, optimizer, seed, precision, ...) and the same data
    (sha256 of the arrays), and its kept weights must still be there. Baselines
    recorded before these keys existed are never matched. Returns (study name,
    trial, weights artifact id), or None.
    """
    def norm(x: Any) -> str:  # stored attributes went through JSON: compare in that form
        return json.dumps(x, sort_keys=True)

    want = (norm(spec), norm(training), data_sha256)
    storage = handle.study._storage
    folder = artifact_dir(handle.url)
    for other in storage.get_all_studies():
        if other.study_name == handle.name:
            continue
        kept = other.user_attrs.get("baseline_weights") or {}
        if not kept.get("artifact_id") or not (folder / kept["artifact_id"]).is_file():
            continue
        for t in storage.get_all_trials(other._study_id, deepcopy=False, states=(TrialState.COMPLETE,)):
            ua = t.user_attrs
            if (t.number == kept.get("trial") and ua.get("baseline")
                    and (norm(ua.get("spec")), norm(ua.get("training")), ua.get("data_sha256")) == want
                    and len(t.values or []) == len(handle.study.directions)):
                return other.study_name, t, kept["artifact_id"]
    return None


def _copy_artifact(store: Any, source_id: str, study: optuna.Study, trial: optuna.Trial, tag: str) -> str:
    artifact_id = f"{_safe(study.study_name)}-{tag}-trial{trial.number}-{os.getpid()}.keras"
    with store.open_reader(source_id) as reader:
        store.write(artifact_id, reader)
    return artifact_id


def _save_model(store: Any, study: optuna.Study, trial: optuna.Trial, model: Any, tag: str = "baseline") -> str:
    artifact_id = f"{_safe(study.study_name)}-{tag}-trial{trial.number}-{os.getpid()}.keras"
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.keras"
        model.save(path)
        with open(path, "rb") as fh:
            store.write(artifact_id, fh)
    return artifact_id


def model_file(handle: Handle, which: str = "best") -> Path | None:
    """Path of the kept ``.keras`` file of the best (or ``"baseline"``) trial, if any."""
    meta = handle.study.user_attrs.get(f"{which}_weights")
    if not meta:
        return None
    path = artifact_dir(handle.url) / meta["artifact_id"]
    return path if path.is_file() else None


def _record_failure(trial: optuna.Trial, failure: TrialFailed) -> None:
    trial.set_user_attr("failure_kind", failure.kind)
    trial.set_user_attr("fail_reason", failure.reason)


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in name)


__all__ = ["Objective", "find_reusable_baseline", "model_file", "splits_sha256"]
