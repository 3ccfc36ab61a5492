"""One trial: build (a spec from the space, or your own model), fit it, record it on the trial, keep the best weights.

What is kept and reused across trials (weights files, a reusable baseline) is :mod:`cnnsearch.search.kept`.

A trial that cannot finish raises :class:`~cnnsearch.ground.errors.TrialFailed`
(recorded, the search goes on); anything fatal propagates.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import Any, Callable, Sequence

import optuna
from optuna.trial import FrozenTrial

from cnnsearch.ground import data as data_mod
from cnnsearch.ground import interrupt
from cnnsearch.search import limits
from cnnsearch.search import points
from cnnsearch.model.arch import summarize
from cnnsearch.ground.errors import ArchitectureError, CnnsearchError, Interrupted, TrialFailed
from cnnsearch.records.storage import artifact_store, first_line
from cnnsearch.search.kept import (_copy_artifact, _save_model, find_reusable_baseline, model_file, prepare_figures,
                                   process_start, remove_kept, splits_sha256, worker_lease)
from cnnsearch.search.study import (SHORT_ATTR, SYSTEM_PREFIX, Handle, baseline_role, fresh_user_attrs, trial_attr,
                                    set_trial_data)


@dataclass
class Built:
    """One trial's model, before training: its spec (None for a builder's model), settings and size."""

    spec: Any  # ArchSpec, or None when the user's build(trial) makes the model
    overrides: dict[str, Any]  # TrainConfig fields the trial's point chose
    summary: Any  # arch.Summary, or a builder model's Size
    reason: str  # why the point is over a size limit ('' when it is not)
    build: Callable[[], Any] | None = None  # makes the keras.Model (the user's builder, bound to the trial)


@dataclass(frozen=True)
class Size:
    """A builder model's size, as the limits read it (FLOPs are not known without the layer arithmetic)."""

    params: int
    flops: int = 0


class Objective:
    """Train one trial's spec (or the user's model); record everything the report needs on the trial.

    ``build``: the user's ``build(trial) -> keras.Model`` (the Python API), called for every trial
    but the baseline, after the space's own dimensions are drawn (``trial.params``). ``callbacks``:
    extra Keras callbacks for every fit. The study's ``[study] metric`` is what the trial returns.
    """

    def __init__(self, handle: Handle, splits: data_mod.Splits, *, verbose: int = 0,
                 on_start: Callable[[int, bool], None] | None = None,
                 on_epoch: Callable[[int, dict[str, float]], None] | None = None,
                 build: Callable[[Any], Any] | None = None, callbacks: Sequence[Any] = (),
                 mnist: bool = True) -> None:
        self.handle = handle
        self.splits = splits
        self.verbose = verbose
        self.versions: dict[str, str] | None = None
        self.on_start = on_start  # (trial number, is baseline), for progress
        self.on_epoch = on_epoch  # (epoch index, Keras logs), for progress
        self.build = build
        self.callbacks = list(callbacks)
        self.role = baseline_role(handle.space, mnist)
        self.metric = handle.space.study.get("metric", "val_accuracy")
        if hasattr(handle.study.sampler, "input_shape"):  # the sampler judges feasibility on this data
            handle.study.sampler.input_shape, handle.study.sampler.n_classes = splits.input_shape, splits.n_classes
        self._data_sha256: str | None = None

    @property
    def data_sha256(self) -> str:
        """sha256 of the arrays this run trains, validates and tests on (computed once)."""
        if self._data_sha256 is None:
            self._data_sha256 = splits_sha256(self.splits)
        return self._data_sha256

    def __call__(self, trial: optuna.Trial) -> float | tuple[float, float]:
        interrupt.check()  # a signal swallowed since the last trial stops the run here, before any work
        try:
            return self._trial(trial)
        except Interrupted as exc:
            # Recorded before Optuna marks the trial FAIL (a finished trial's attributes are read-only).
            trial.set_user_attr("failure_kind", "interrupted")
            trial.set_user_attr("fail_reason", exc.reason)
            raise
        except KeyboardInterrupt:
            trial.set_user_attr("failure_kind", "interrupted")
            trial.set_user_attr("fail_reason", Interrupted(2).reason)
            raise

    def _trial(self, trial: optuna.Trial) -> float | tuple[float, float]:
        """One trial's steps: start, build (or end it infeasible), maybe reuse, fit, record, keep."""
        is_baseline, start = self._start(trial)
        built = self._build(trial, is_baseline)
        if not isinstance(built, Built):
            return self._infeasible(trial, built[0], built[1], start)
        config = replace(self.handle.training, seed=self.handle.training.seed + trial.number, **built.overrides)
        if is_baseline:
            # What the baseline's result depends on, so a later study can reuse it instead of training it again.
            set_trial_data(trial, "training", config.to_dict())
            trial.set_user_attr("data_sha256", self.data_sha256)
            donor = find_reusable_baseline(self.handle, built.spec.to_dict(), config.to_dict(), self.data_sha256)
            if donor is not None:
                return self._reuse(trial, *donor, candidate=not built.reason)
        result, pruning = self._fit(trial, built, config, is_baseline)
        value = self._record(trial, result, pruning)
        self._keep_if_best(trial, result.val_accuracy,
                           lambda tag: prepare_figures(self.handle.url, _save_model(
                               self.handle.url, self.handle.study, trial, result.model, tag), built.spec,
                               self.splits.x_test),
                           candidate=not built.reason, score=-value if self.metric == "val_loss" else value)
        if self.handle.space.multi_objective:
            return value, float(built.summary.params)
        return value

    def _start(self, trial: optuna.Trial) -> tuple[bool, float]:
        """Mark who runs the trial and whether it is the baseline; returns (is baseline, start time)."""
        trial.set_user_attr("worker", worker_lease())  # who runs it: runner.fail_stale() checks it is alive
        start = time.perf_counter()
        is_baseline = bool(trial.user_attrs.get("baseline", False))
        trial.set_user_attr("baseline", is_baseline)
        if is_baseline:
            trial.set_user_attr("role", self.role)  # readable on the dashboard's trial page
        if self.on_start is not None:
            self.on_start(trial.number, is_baseline)
        return is_baseline, start

    def _build(self, trial: optuna.Trial, is_baseline: bool) -> Built | tuple[Any, str]:
        """The trial's point and its size; (summary or None, reason) when it is infeasible (never trained).

        An unbuildable point is infeasible in every study (known from the layer arithmetic, like a
        point over a size limit): a constraint the sampler learns, not a failure that counts.
        """
        sp = self.handle.space
        spec, overrides = points.suggest(trial, sp)
        if self.build is not None and not is_baseline:
            return self._build_user(trial, overrides)
        set_trial_data(trial, "spec", spec.to_dict())
        try:
            summary = summarize(spec, self.splits.input_shape, self.splits.n_classes)
        except ArchitectureError as exc:
            return None, str(exc)
        trial.set_user_attr("param_count", summary.params)
        trial.set_user_attr("flops", summary.flops)
        reason = limits.infeasible_reason(sp, summary)
        if reason and not is_baseline:  # the baseline trains anyway: it is what every trial is compared with
            return summary, reason
        for key, value in limits.constraints(sp, summary).items():
            trial.set_constraint(key, value)
        return Built(spec, overrides, summary, reason)

    def _build_user(self, trial: optuna.Trial, overrides: dict[str, Any]) -> Built | tuple[Any, str]:
        """Call the user's ``build(trial)`` (its errors fail the trial, named); check the model's size."""
        from cnnsearch.model.train import release

        name = getattr(self.build, "__name__", "build")
        release()
        try:
            model = self.build(trial)  # type: ignore[misc]
        except (optuna.TrialPruned, KeyboardInterrupt, CnnsearchError):
            raise
        except Exception as exc:
            failure = TrialFailed(f"{name}(trial) raised {type(exc).__name__}: {first_line(exc)}", kind="builder")
            _record_failure(trial, failure)
            raise failure from exc
        size = Size(int(model.count_params()))
        trial.set_user_attr("param_count", size.params)
        reason = limits.infeasible_reason(self.handle.space, size)
        if reason:
            return size, reason
        for key, value in limits.constraints(self.handle.space, size).items():
            trial.set_constraint(key, value)
        # Built again inside fit, after the seed is set: the same trial, so the same choices.
        return Built(None, overrides, size, "", build=lambda: self.build(trial))  # type: ignore[misc]

    def _fit(self, trial: optuna.Trial, built: Built, config: Any, is_baseline: bool) -> tuple[Any, bool]:
        """Train the trial's model; a failure is recorded on the trial and raised. Returns (result, pruned?)."""
        from cnnsearch.ground._tf import keras
        from cnnsearch.model.train import fit, versions

        sp = self.handle.space
        history: dict[str, list[float]] = {}
        callbacks = [interrupt.keras_callback(), *self.callbacks]
        pruning = not is_baseline and not sp.multi_objective and sp.study["pruner"] != "none"
        if pruning:
            keras()  # TensorFlow's quiet import first: optuna_integration would import it loudly
            from optuna_integration import KerasPruningCallback

            callbacks.append(KerasPruningCallback(trial, self.metric))

        def on_epoch(epoch: int, logs: dict[str, float]) -> None:
            for k, v in logs.items():
                history.setdefault(k, []).append(float(v))
            if self.on_epoch is not None:
                self.on_epoch(epoch, logs)

        if self.versions is None:
            self.versions = versions()
        set_trial_data(trial, "versions", self.versions)
        start = time.perf_counter()
        try:
            return fit(built.spec, self.splits, config, callbacks=callbacks, on_epoch=on_epoch, verbose=self.verbose,
                       build=built.build), pruning
        except TrialFailed as exc:  # its own root: the order of these clauses does not matter
            self._record_partial(trial, history, start)
            _record_failure(trial, exc)
            raise
        except (optuna.TrialPruned, KeyboardInterrupt, CnnsearchError):
            self._record_partial(trial, history, start)
            raise
        except Exception as exc:  # a crash inside TensorFlow fails this trial, not the search
            self._record_partial(trial, history, start)
            signum = interrupt.received()
            if signum is not None:
                # The signal's exception, raised inside C code, can surface as another error (seen:
                # "SystemError: Objects/listobject.c:338: bad argument to internal function"): it is the interrupt.
                raise Interrupted(signum) from exc
            failure = TrialFailed(f"{type(exc).__name__}: {first_line(exc)}")
            _record_failure(trial, failure)
            raise failure from exc

    def _record(self, trial: optuna.Trial, result: Any, pruning: bool) -> float:
        """Store the fit's history and figures on the trial; returns the study's metric (its value)."""
        sp = self.handle.space
        set_trial_data(trial, "history", result.history)
        value = float(result.history[self.metric][-1])
        if not pruning and not sp.multi_objective:
            # The pruning callback is what reports intermediate values; the baseline (never pruned) and
            # unpruned studies have none, so report them here: the dashboard's intermediate-values chart
            # then shows the baseline's curve beside the others. After training, not per epoch: a Ctrl-C
            # landing in a mid-training SQLite write would leave this process waiting on its own lock.
            # (Optuna cannot report with two objectives.)
            for epoch, v in enumerate(result.history.get(self.metric, [])):
                trial.report(float(v), step=epoch)
        trial.set_user_attr("epochs_run", result.epochs_run)
        trial.set_user_attr("seconds", round(result.seconds, 3))
        set_trial_data(trial, "epoch_seconds", [round(s, 3) for s in result.epoch_seconds])
        trial.set_user_attr("val_accuracy", result.val_accuracy)
        trial.set_user_attr("val_loss", float(result.history["val_loss"][-1]))
        # Recorded for the report only: selection never looks at the test set.
        trial.set_user_attr("test_loss", result.test_loss)
        trial.set_user_attr("test_accuracy", result.test_accuracy)
        return value

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
        worst = float("inf") if self.metric == "val_loss" else 0.0  # never a best value, whichever the direction
        if self.handle.space.multi_objective:
            return worst, float(summary.params if summary is not None else 0)
        return worst

    @staticmethod
    def _record_partial(trial: optuna.Trial, history: dict[str, list[float]], start: float) -> None:
        set_trial_data(trial, "history", history)
        trial.set_user_attr("epochs_run", len(history.get("loss", [])))
        trial.set_user_attr("seconds", round(time.perf_counter() - start, 3))

    def _reuse(self, trial: optuna.Trial, study_name: str, donor: FrozenTrial, artifact_id: str,
               candidate: bool) -> float | tuple[float, float]:
        """Make this baseline trial a copy of ``donor`` (study ``study_name``): values, history, weights."""
        for key, value in donor.user_attrs.items():
            if key not in ("baseline", "reused_from"):
                trial.set_user_attr(key, value)
        for key, value in donor.system_attrs.items():  # the long data (history, spec, ...)
            if key.startswith(SYSTEM_PREFIX):
                set_trial_data(trial, key[len(SYSTEM_PREFIX):], value)
        trial.set_user_attr("reused_from", {"study": study_name, "trial": donor.number})
        if not self.handle.space.multi_objective:  # Optuna keeps no intermediate values for several objectives
            for step, value in sorted(donor.intermediate_values.items()):
                trial.report(value, step)
        # The weights are copied, not referenced: deleting the donor study must not break this study's report.
        self._keep_if_best(trial, donor.user_attrs["val_accuracy"],
                           lambda tag: prepare_figures(self.handle.url, _copy_artifact(
                               self.handle.url, artifact_id, self.handle.study, trial, tag),
                               trial_attr(donor, "spec"),
                               self.splits.x_test),
                           candidate)
        values = donor.values
        return (values[0], values[1]) if self.handle.space.multi_objective else values[0]

    def _keep_if_best(self, trial: optuna.Trial, val_accuracy: float, save: Callable[[str], tuple[str, str]],
                      candidate: bool = True, score: float | None = None) -> None:
        """Store this trial's weights if it beats every finished trial (the previous best's are removed).

        The in-study baseline's weights are kept too (``baseline_weights``): the
        report draws its filters beside the best model's. When the baseline is
        also the best (it always is at first), one file serves both. ``score``
        (higher is better; the study's metric, a loss negated) decides; validation accuracy by default.
        """
        score = val_accuracy if score is None else score
        study = self.handle.study
        store = artifact_store(self.handle.url)
        saved: str | None = None
        baseline_id = (study.user_attrs.get("baseline_weights") or {}).get("artifact_id")
        digest = ""
        if trial.user_attrs.get("baseline") and baseline_id is None:
            saved, digest = save("baseline")
            baseline_id = saved
            study.set_user_attr("baseline_weights", {"trial": trial.number, "val_accuracy": val_accuracy,
                                                     "artifact_id": saved, "sha256": digest})
        current = study.user_attrs.get("best_weights")
        if not candidate or (current and current.get("score", current["val_accuracy"]) >= score):
            return  # not a candidate: a baseline over the study's size limit is never the best
        if saved is None:
            artifact_id, digest = save("best")
        else:
            artifact_id = saved
        # Re-read: another worker may have stored a better one meanwhile.
        current = fresh_user_attrs(study).get("best_weights")
        if current and current.get("score", current["val_accuracy"]) >= score:
            if artifact_id != saved:
                remove_kept(store, self.handle.url, artifact_id)
            return
        study.set_user_attr("best_weights", {"trial": trial.number, "artifact_id": artifact_id,
                                             "val_accuracy": val_accuracy, "sha256": digest,
                                             # ranked on another metric (val_loss, negated): its score decides
                                             **({"score": score} if score != val_accuracy else {})})
        if current and current["artifact_id"] != baseline_id:
            try:
                remove_kept(store, self.handle.url, current["artifact_id"])
            except Exception:  # already gone: nothing to free
                pass


def _record_failure(trial: optuna.Trial, failure: TrialFailed) -> None:
    trial.set_user_attr("failure_kind", failure.kind)
    reason = failure.reason
    short = reason if len(reason) <= SHORT_ATTR else reason[: SHORT_ATTR - 1] + "\u2026"
    trial.set_user_attr("fail_reason", short)  # readable on the dashboard's trial page
    if short != reason:
        set_trial_data(trial, "fail_reason", reason)  # whole, for show, export and the report


__all__ = ["Built", "Objective", "Size", "find_reusable_baseline", "model_file", "process_start", "splits_sha256",
           "worker_lease"]
