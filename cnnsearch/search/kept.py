"""What a trial keeps and reuses: its saved weights, a reusable baseline, and who ran it.

Split from :mod:`cnnsearch.search.objective` (one trial's steps), which calls these.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from cnnsearch.ground.output import replacing
from cnnsearch.ground import data as data_mod
from cnnsearch.ground import private
from cnnsearch.ground.errors import StorageError
from cnnsearch.records.storage import (ARTIFACTS_ENV, artifact_dir, artifact_path, first_line, is_enospc, kept_weights, sha256)
from cnnsearch.search.study import Handle, trial_attr


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
    storage = private.storage_of(handle.study)
    for other in storage.get_all_studies():
        if other.study_name == handle.name:
            continue
        kept = other.user_attrs.get("baseline_weights") or {}
        source = artifact_path(handle.url, kept.get("artifact_id"))  # never a file outside the folder
        if source is None or not source.is_file():
            continue
        for t in storage.get_all_trials(private.study_id(other), deepcopy=False, states=(TrialState.COMPLETE,)):
            ua = t.user_attrs
            if (t.number == kept.get("trial") and ua.get("baseline")
                    and (norm(trial_attr(t, "spec")), norm(trial_attr(t, "training")), ua.get("data_sha256")) == want
                    and len(t.values or []) == len(handle.study.directions)):
                return other.study_name, t, kept["artifact_id"]
    return None


def _copy_artifact(url: str, source_id: str, study: optuna.Study, trial: optuna.Trial, tag: str) -> tuple[str, str]:
    """Copy a kept weights file under this trial's name; returns its artifact id and SHA-256."""
    import shutil

    artifact_id = f"{safe_name(study.study_name)}-{tag}-trial{trial.number}-{os.getpid()}.keras"
    folder = artifact_dir(url)
    with replacing(folder / artifact_id) as partial:
        shutil.copyfile(folder / source_id, partial)
        digest = sha256(partial)
    return artifact_id, digest


def _save_model(url: str, study: optuna.Study, trial: optuna.Trial, model: Any, tag: str = "baseline"
                ) -> tuple[str, str]:
    """Save ``model`` into the artifact folder; returns its artifact id and SHA-256.

    Written under a temporary name and renamed, so a failure (a full disk) never
    leaves a partial ``.keras`` file behind. A failure fails the trial with the
    reason and stops the run (:class:`~cnnsearch.ground.errors.StorageError`).
    """
    artifact_id = f"{safe_name(study.study_name)}-{tag}-trial{trial.number}-{os.getpid()}.keras"
    folder = artifact_dir(url)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with replacing(folder / artifact_id) as partial:  # still ends in .keras, as Keras requires
            model.save(partial)
            digest = sha256(partial)
    except Exception as exc:
        nospace = is_enospc(exc)
        reason = (f"no space left on device ({folder})" if nospace
                  else f"cannot save the weights to {folder} ({type(exc).__name__}: {first_line(exc)})")
        trial.set_user_attr("failure_kind", "storage")
        trial.set_user_attr("fail_reason", reason)
        fix = "free some space, then run again" if nospace else "check the folder, then run again"
        raise StorageError(f"trial {trial.number} failed: {reason}; {fix} (completed trials are intact; set"
                           f" {ARTIFACTS_ENV} to keep weights elsewhere)") from exc
    return artifact_id, digest


def prepare_figures(url: str, kept: tuple[str, str], spec: Any, x_test: Any) -> tuple[str, str]:
    """Cache the figure arrays of the model just kept (``kept``: its artifact id and SHA-256); returns ``kept``.

    ``spec``: the model's ArchSpec or its dict; None for a model of your own (left to the report).

    Done here, in the worker that trained it, so the report after ``study run`` only reads them
    (issue 24: the forward pass was most of a report's time). Best effort: a failure costs only the
    report the same time again (it computes what is not cached).
    """
    from cnnsearch.model import figcache

    try:
        figcache.prepare(artifact_dir(url) / kept[0], spec, x_test)
    except Exception:  # noqa: BLE001 - never fail a finished trial for a figure cache
        pass
    return kept


def remove_kept(store: Any, url: str, artifact_id: str) -> None:
    """Remove a kept model that is no longer needed, with its cached figure arrays."""
    from cnnsearch.model import figcache

    store.remove(artifact_id)
    figcache.cache_path(artifact_dir(url) / artifact_id).unlink(missing_ok=True)


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


def safe_name(name: str) -> str:
    """A file-name part made from a study name: ASCII, at most 57 characters, distinct names kept distinct.

    Bytes, not characters, bound a file name (255 on Linux): 100 CJK characters are 300 bytes.
    """
    safe = "".join(c if (c.isascii() and c.isalnum()) or c in "-_" else "_" for c in name)
    if safe == name and len(name) <= 48:
        return name
    return f"{safe[:48]}-{hashlib.sha256(name.encode()).hexdigest()[:8]}"


__all__ = ["find_reusable_baseline", "model_file", "process_start", "safe_name", "splits_sha256", "worker_lease"]
