"""One trial: suggest a spec from the space, fit it, record everything on the trial, keep the best weights.

A trial that cannot finish raises :class:`~cnnsearch.ground.errors.TrialFailed`
(recorded, the search goes on); anything fatal propagates.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable

import optuna
from optuna.trial import FrozenTrial, TrialState

from cnnsearch.ground import data as data_mod
from cnnsearch.ground import interrupt
from cnnsearch.search import limits
from cnnsearch.search import points
from cnnsearch.model.arch import summarize
from cnnsearch.ground.errors import ArchitectureError, CnnsearchError, Interrupted, StorageError, TrialFailed
from cnnsearch.records.storage import (ARTIFACTS_ENV, artifact_dir, artifact_path, artifact_store, first_line,
                                       is_enospc, kept_weights, sha256)
from cnnsearch.search.study import (BASELINE_ROLE, SHORT_ATTR, SYSTEM_PREFIX, Handle, fresh_user_attrs, set_trial_data,
                             trial_attr)


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
        from cnnsearch.ground._tf import keras
        from cnnsearch.model.train import fit, versions

        sp, cfg = self.handle.space, self.handle.training
        trial.set_user_attr("worker", worker_lease())  # who runs it: runner.fail_stale() checks it is alive
        start = time.perf_counter()
        is_baseline = bool(trial.user_attrs.get("baseline", False))
        trial.set_user_attr("baseline", is_baseline)
        if is_baseline:
            trial.set_user_attr("role", BASELINE_ROLE)  # readable on the dashboard's trial page
        if self.on_start is not None:
            self.on_start(trial.number, is_baseline)
        spec, overrides = points.suggest(trial, sp)
        set_trial_data(trial, "spec", spec.to_dict())
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
        if is_baseline:
            # What the baseline's result depends on, so a later study can reuse it instead of training it again.
            set_trial_data(trial, "training", config.to_dict())
            trial.set_user_attr("data_sha256", self.data_sha256)
            donor = find_reusable_baseline(self.handle, spec.to_dict(), config.to_dict(), self.data_sha256)
            if donor is not None:
                return self._reuse(trial, *donor, candidate=not reason)
        history: dict[str, list[float]] = {}

        callbacks = [interrupt.keras_callback()]
        pruning = False
        if not is_baseline and not sp.multi_objective and sp.study["pruner"] != "none":
            keras()  # TensorFlow's quiet import first: optuna_integration would import it loudly
            from optuna_integration import KerasPruningCallback

            callbacks.append(KerasPruningCallback(trial, "val_accuracy"))
            pruning = True

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
            signum = interrupt.received()
            if signum is not None:
                # The signal's exception, raised inside C code, can surface as another error (seen:
                # "SystemError: Objects/listobject.c:338: bad argument to internal function"): it is the interrupt.
                raise Interrupted(signum) from exc
            failure = TrialFailed(f"{type(exc).__name__}: {first_line(exc)}")
            _record_failure(trial, failure)
            raise failure from exc
        set_trial_data(trial, "history", result.history)
        if not pruning and not sp.multi_objective:
            # The pruning callback is what reports intermediate values; the baseline (never pruned) and
            # unpruned studies have none, so report them here: the dashboard's intermediate-values chart
            # then shows the baseline's curve beside the others. After training, not per epoch: a Ctrl-C
            # landing in a mid-training SQLite write would leave this process waiting on its own lock.
            # (Optuna cannot report with two objectives.)
            for epoch, value in enumerate(result.history.get("val_accuracy", [])):
                trial.report(float(value), step=epoch)
        trial.set_user_attr("epochs_run", result.epochs_run)
        trial.set_user_attr("seconds", round(result.seconds, 3))
        set_trial_data(trial, "epoch_seconds", [round(s, 3) for s in result.epoch_seconds])
        trial.set_user_attr("val_accuracy", result.val_accuracy)
        # Recorded for the report only: selection never looks at the test set.
        trial.set_user_attr("test_loss", result.test_loss)
        trial.set_user_attr("test_accuracy", result.test_accuracy)
        self._keep_if_best(trial, result.val_accuracy,
                           lambda tag: _save_model(self.handle.url, self.handle.study, trial, result.model, tag),
                           candidate=not reason)
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
                           lambda tag: _copy_artifact(self.handle.url, artifact_id, self.handle.study, trial, tag),
                           candidate)
        values = donor.values
        return (values[0], values[1]) if self.handle.space.multi_objective else values[0]

    def _keep_if_best(self, trial: optuna.Trial, val_accuracy: float, save: Callable[[str], tuple[str, str]],
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
        digest = ""
        if trial.user_attrs.get("baseline") and baseline_id is None:
            saved, digest = save("baseline")
            baseline_id = saved
            study.set_user_attr("baseline_weights", {"trial": trial.number, "val_accuracy": val_accuracy,
                                                     "artifact_id": saved, "sha256": digest})
        current = study.user_attrs.get("best_weights")
        if not candidate or (current and current["val_accuracy"] >= val_accuracy):
            return  # not a candidate: a baseline over the study's size limit is never the best
        if saved is None:
            artifact_id, digest = save("best")
        else:
            artifact_id = saved
        # Re-read: another worker may have stored a better one meanwhile.
        current = fresh_user_attrs(study).get("best_weights")
        if current and current["val_accuracy"] >= val_accuracy:
            if artifact_id != saved:
                store.remove(artifact_id)
            return
        study.set_user_attr("best_weights", {"trial": trial.number, "artifact_id": artifact_id,
                                             "val_accuracy": val_accuracy, "sha256": digest})
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
    for other in storage.get_all_studies():
        if other.study_name == handle.name:
            continue
        kept = other.user_attrs.get("baseline_weights") or {}
        source = artifact_path(handle.url, kept.get("artifact_id"))  # never a file outside the folder
        if source is None or not source.is_file():
            continue
        for t in storage.get_all_trials(other._study_id, deepcopy=False, states=(TrialState.COMPLETE,)):
            ua = t.user_attrs
            if (t.number == kept.get("trial") and ua.get("baseline")
                    and (norm(trial_attr(t, "spec")), norm(trial_attr(t, "training")), ua.get("data_sha256")) == want
                    and len(t.values or []) == len(handle.study.directions)):
                return other.study_name, t, kept["artifact_id"]
    return None


def _copy_artifact(url: str, source_id: str, study: optuna.Study, trial: optuna.Trial, tag: str) -> tuple[str, str]:
    """Copy a kept weights file under this trial's name; returns its artifact id and SHA-256."""
    import shutil

    artifact_id = f"{_safe(study.study_name)}-{tag}-trial{trial.number}-{os.getpid()}.keras"
    folder = artifact_dir(url)
    partial = folder / f".partial-{artifact_id}"
    shutil.copyfile(folder / source_id, partial)
    digest = sha256(partial)
    os.replace(partial, folder / artifact_id)
    return artifact_id, digest


def _save_model(url: str, study: optuna.Study, trial: optuna.Trial, model: Any, tag: str = "baseline"
                ) -> tuple[str, str]:
    """Save ``model`` into the artifact folder; returns its artifact id and SHA-256.

    Written under a temporary name and renamed, so a failure (a full disk) never
    leaves a partial ``.keras`` file behind. A failure fails the trial with the
    reason and stops the run (:class:`~cnnsearch.ground.errors.StorageError`).
    """
    artifact_id = f"{_safe(study.study_name)}-{tag}-trial{trial.number}-{os.getpid()}.keras"
    folder = artifact_dir(url)
    partial = folder / f".partial-{artifact_id}"  # still ends in .keras, as Keras requires
    try:
        folder.mkdir(parents=True, exist_ok=True)
        model.save(partial)
        digest = sha256(partial)
        os.replace(partial, folder / artifact_id)
    except Exception as exc:
        partial.unlink(missing_ok=True)
        nospace = is_enospc(exc)
        reason = (f"no space left on device ({folder})" if nospace
                  else f"cannot save the weights to {folder} ({type(exc).__name__}: {first_line(exc)})")
        trial.set_user_attr("failure_kind", "storage")
        trial.set_user_attr("fail_reason", reason)
        fix = "free some space, then run again" if nospace else "check the folder, then run again"
        raise StorageError(f"trial {trial.number} failed: {reason}; {fix} (completed trials are intact; set"
                           f" {ARTIFACTS_ENV} to keep weights elsewhere)") from exc
    return artifact_id, digest


def model_file(handle: Handle, which: str = "best") -> Path | None:
    """Path of the kept ``.keras`` file of the best (or ``"baseline"``) trial, if any, verified.

    Raises:
        StorageError: the file does not match the checksum stored with it.
    """
    return kept_weights(handle.url, handle.study.user_attrs.get(f"{which}_weights"), which)


def worker_lease() -> dict[str, Any]:
    """Who runs a trial: host, process id and the process's start time (so a reused PID is not taken for it)."""
    import socket

    return {"host": socket.gethostname(), "pid": os.getpid(), "started": process_start(os.getpid())}


def process_start(pid: int) -> str | None:
    """The kernel's start time of process ``pid`` (Linux /proc), or None where unknown."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[19]  # field 22: starttime, after the command name
    except (OSError, IndexError):
        return None


def _record_failure(trial: optuna.Trial, failure: TrialFailed) -> None:
    trial.set_user_attr("failure_kind", failure.kind)
    reason = failure.reason
    short = reason if len(reason) <= SHORT_ATTR else reason[: SHORT_ATTR - 1] + "\u2026"
    trial.set_user_attr("fail_reason", short)  # readable on the dashboard's trial page
    if short != reason:
        set_trial_data(trial, "fail_reason", reason)  # whole, for show, export and the report


def _safe(name: str) -> str:
    """A file-name part made from a study name: ASCII, at most 57 characters, distinct names kept distinct.

    Bytes, not characters, bound a file name (255 on Linux): 100 CJK characters are 300 bytes.
    """
    safe = "".join(c if (c.isascii() and c.isalnum()) or c in "-_" else "_" for c in name)
    if safe == name and len(name) <= 48:
        return name
    return f"{safe[:48]}-{hashlib.sha256(name.encode()).hexdigest()[:8]}"


__all__ = ["Objective", "find_reusable_baseline", "model_file", "process_start", "splits_sha256", "worker_lease"]
