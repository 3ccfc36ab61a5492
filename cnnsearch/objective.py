"""One trial: suggest a spec from the space, fit it, record everything on the trial, keep the best weights.

A trial that cannot finish raises :class:`~cnnsearch.errors.TrialFailed`
(recorded, the search goes on); anything fatal propagates.
"""

from __future__ import annotations

import os
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable

import optuna

from cnnsearch import data as data_mod
from cnnsearch import limits
from cnnsearch import space as space_mod
from cnnsearch.arch import summarize
from cnnsearch.errors import ArchitectureError, CnnsearchError, TrialFailed
from cnnsearch.storage import artifact_dir, artifact_store, first_line
from cnnsearch.study import Handle, fresh_user_attrs


class Objective:
    """Train one trial's spec; record everything the report needs on the trial."""

    def __init__(self, handle: Handle, splits: data_mod.Splits, *, verbose: int = 0,
                 on_start: Callable[[int, bool], None] | None = None,
                 on_epoch: Callable[[int, dict[str, float]], None] | None = None) -> None:
        self.handle = handle
        self.splits = splits
        self.verbose = verbose
        self.versions: dict[str, str] | None = None
        self.on_start = on_start  # (trial number, is baseline), for progress
        self.on_epoch = on_epoch  # (epoch index, Keras logs), for progress
        if hasattr(handle.study.sampler, "input_shape"):  # a size-limited study's sampler judges on this data
            handle.study.sampler.input_shape, handle.study.sampler.n_classes = splits.input_shape, splits.n_classes

    def __call__(self, trial: optuna.Trial) -> float | tuple[float, float]:
        from cnnsearch.train import fit, versions

        sp, cfg = self.handle.space, self.handle.training
        start = time.perf_counter()
        is_baseline = bool(trial.user_attrs.get("baseline", False))
        trial.set_user_attr("baseline", is_baseline)
        if self.on_start is not None:
            self.on_start(trial.number, is_baseline)
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
        trial.set_user_attr("param_count", summary.params)
        trial.set_user_attr("flops", summary.flops)
        reason = limits.infeasible_reason(sp, summary)
        if reason and not is_baseline:  # the baseline trains anyway: it is what every trial is compared with
            return self._infeasible(trial, summary, reason, start)
        for key, value in limits.constraints(sp, summary).items():
            trial.set_constraint(key, value)
        config = replace(cfg, seed=cfg.seed + trial.number, **overrides)
        history: dict[str, list[float]] = {}

        def on_epoch(epoch: int, logs: dict[str, float]) -> None:
            for k, v in logs.items():
                history.setdefault(k, []).append(float(v))
            if self.on_epoch is not None:
                self.on_epoch(epoch, logs)

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
        self._keep_if_best(trial, result, candidate=not reason)
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

    def _keep_if_best(self, trial: optuna.Trial, result: Any, candidate: bool = True) -> None:
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
            saved = baseline_id = _save_model(store, study, trial, result.model)
            study.set_user_attr("baseline_weights", {"trial": trial.number, "val_accuracy": result.val_accuracy,
                                                     "artifact_id": saved})
        current = study.user_attrs.get("best_weights")
        if not candidate or (current and current["val_accuracy"] >= result.val_accuracy):
            return  # not a candidate: a baseline over the study's size limit is never the best
        artifact_id = saved or _save_model(store, study, trial, result.model, "best")
        # Re-read: another worker may have stored a better one meanwhile.
        current = fresh_user_attrs(study).get("best_weights")
        if current and current["val_accuracy"] >= result.val_accuracy:
            if artifact_id != saved:
                store.remove(artifact_id)
            return
        study.set_user_attr("best_weights", {"trial": trial.number, "artifact_id": artifact_id,
                                             "val_accuracy": result.val_accuracy})
        if current and current["artifact_id"] != baseline_id:
            try:
                store.remove(current["artifact_id"])
            except Exception:  # already gone: nothing to free
                pass


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


__all__ = ["Objective", "model_file"]
