"""Optuna studies: create, load and delete them; samplers, pruners and the dashboard note.

A study stores its space file and training settings at create (the system
attribute ``cnnsearch:settings``; one short user attribute each for the
dashboard), so ``run`` on any machine, at any later time, trains exactly as the
first run did. Trial 0 is the reference model, enqueued at create and marked ``baseline``. Training trials is
:mod:`cnnsearch.search.objective` (one trial) and :mod:`cnnsearch.search.runner` (many); reading
a study (trial records, summaries, the best trial's export) is :mod:`cnnsearch.search.browse`.
"""

from __future__ import annotations

import datetime as _dt
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from cnnsearch.search import limits
from cnnsearch.search import points
from cnnsearch.search import space as space_mod
from cnnsearch.ground import private
from cnnsearch.search.note import param_count, readable_settings
from cnnsearch.ground.errors import ConfigError, StorageError
from cnnsearch.ground.version import __version__
from cnnsearch.records.storage import (artifact_path, experimental_ok, kept_weights, mask_url, open_storage,
                               resolve_storage)
from cnnsearch.model.train import TrainConfig

#: Longest study name, characters (file names made from it are shortened to fit on their own).
MAX_NAME = 120
#: Set by the runner for each worker process (0, 1, ...): offsets the sampler's seed.
WORKER_ENV = "CNNSEARCH_WORKER_INDEX"
#: Study user attribute that held the settings fixed at create in studies made before SETTINGS_ATTR (still read).
SETTINGS_KEY = "cnnsearch"
#: Prefix of the study and trial *system* attributes cnnsearch writes: machine-readable data kept out of
#: optuna-dashboard's attribute boxes (the trial page does not wrap them: a long value widens the page).
SYSTEM_PREFIX = "cnnsearch:"
#: Study system attribute holding the settings fixed at create (the space file's text among them).
SETTINGS_ATTR = SYSTEM_PREFIX + "settings"
#: Trial data stored as system attributes (long lists and dictionaries); read them with trial_attr().
TRIAL_DATA = ("history", "epoch_seconds", "spec", "training", "versions", "fail_reason")
#: Longest user-attribute text written for the dashboard (a longer fail reason is cut there, kept whole as data).
SHORT_ATTR = 90
#: The baseline trial's readable marker (user attribute "role"); "baseline" stays the boolean code reads.
BASELINE_ROLE = "baseline: the reference Keras MNIST CNN at this study's fidelity"
#: The same on data other than MNIST (the published 99.15% is MNIST's only), and for a baseline of the user's own.
BASELINE_ROLE_OWN_DATA = "baseline: the reference architecture trained on your data, at this study's fidelity"
BASELINE_ROLE_OWN_POINT = "baseline: the [baseline] point of the space file, at this study's fidelity"


def baseline_role(sp: space_mod.Space, mnist: bool) -> str:
    """The baseline trial's role text: what trial 0 is, said truthfully for this space and data."""
    if isinstance(sp.baseline, dict):
        return BASELINE_ROLE_OWN_POINT
    return BASELINE_ROLE if mnist else BASELINE_ROLE_OWN_DATA


# --- settings and loading ----------------------------------------------------------------------------

@dataclass
class Handle:
    """A loaded study with the settings stored at create."""

    study: optuna.Study
    space: space_mod.Space
    training: TrainConfig
    url: str

    @property
    def name(self) -> str:
        """The study's name."""
        return self.study.study_name


def create(name: str, space_path: str | Path, url: str | None = None, *, metric: str | None = None) -> Handle:
    """Create study ``name`` from a space file, storing its settings and enqueuing the baseline as trial 0.

    The space file is validated before anything is written: an invalid file
    creates no study and no database file. ``metric`` (``val_accuracy`` or
    ``val_loss``) overrides the space's ``[study] metric``.
    """
    if not name or any(c in name for c in "\n\r\t") or len(name) > MAX_NAME:  # Optuna's column holds 512 bytes
        raise ConfigError(f"study name: expected a non-empty single-line name of at most {MAX_NAME} characters;"
                          f" received {name[:60]!r}{'...' if len(name) > 60 else ''} ({len(name):,} characters)")
    sp = with_metric(space_mod.load(space_path), metric)  # validate first: nothing written on error
    url = resolve_storage(url)
    storage = open_storage(url, create=True)
    if name in optuna.study.get_all_study_names(storage=storage):
        raise StorageError(f"study {name!r} already exists in {mask_url(url)}; continue it with 'cnnsearch study run {name}',"
                           f" or pick another name, or 'cnnsearch study delete {name}' first")
    study = optuna.create_study(storage=storage, study_name=name, directions=sp.directions)
    settings = {
        "space_source": str(space_path),
        "space_text": sp.text,
        "study": sp.study,
        "training": sp.training.to_dict(),
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "version": __version__,
    }
    # The whole settings as one system attribute (what load reads); short readable ones for the dashboard.
    set_system_attr(study, SETTINGS_ATTR, settings)
    for key, value in readable_settings(settings).items():
        study.set_user_attr(key, value)
    with experimental_ok():
        study.set_metric_names([sp.study["metric"], "param_count"][: len(sp.directions)])
    base = points.baseline_params(sp)
    if base is not None:  # [baseline] model = "none": no trial 0
        study.enqueue_trial(base, user_attrs={"baseline": True})
    write_note(study, settings)
    return Handle(study, sp, sp.training, url)


def with_metric(sp: space_mod.Space, metric: str | None) -> space_mod.Space:
    """``sp`` with its ``[study] metric`` set to ``metric`` (None: unchanged); ConfigError for an unknown one."""
    if metric is None:
        return sp
    if metric not in space_mod.METRICS:
        raise ConfigError(f"metric: expected one of {', '.join(space_mod.METRICS)}; received {metric!r}")
    sp.study["metric"] = metric
    return sp


def same_space(a: space_mod.Space, b: space_mod.Space) -> bool:
    """Whether two spaces search the same way (comments and layout of the files do not count)."""
    def key(sp: space_mod.Space) -> tuple[Any, ...]:
        return sp.study, sp.training, {n: d.to_dict() for n, d in sp.dims.items()}

    return key(a) == key(b)


def ensure(name: str, space_path: str | Path, url: str | None = None) -> tuple[Handle, bool]:
    """Study ``name``, created from ``space_path`` if it does not exist yet; returns (handle, created).

    The file is validated first (nothing is written on a bad file). An existing study must have
    been created from the same space: otherwise ConfigError, and nothing changes.
    """
    sp = space_mod.load(space_path)
    url = resolve_storage(url)
    try:
        exists = name in optuna.study.get_all_study_names(storage=open_storage(url))
    except StorageError:
        exists = False  # no database file yet (an unreachable server fails again, clearly, in create)
    if not exists:
        return create(name, space_path, url), True
    h = load(name, url)
    if not same_space(h.space, sp):
        raise ConfigError(f"--space {space_path}: study {name!r} exists with a different space"
                          f" (created from {(settings_of(h.study) or {}).get('space_source', '?')}); run it without"
                          f" --space, or pick another study name")
    return h, False


def settings_of(study: optuna.Study) -> dict[str, Any] | None:
    """The settings stored at create (a system attribute; in older studies the user attribute ``cnnsearch``)."""
    return system_attrs(study).get(SETTINGS_ATTR) or study.user_attrs.get(SETTINGS_KEY)



def trial_attr(t: FrozenTrial, key: str, default: Any = None) -> Any:
    """A trial attribute cnnsearch wrote: long data from the system attributes, else the user attributes.

    Studies made before the long data moved keep it in the user attributes; both read the same.
    """
    value = t.system_attrs.get(SYSTEM_PREFIX + key)
    return value if value is not None else t.user_attrs.get(key, default)


def set_trial_data(trial: optuna.Trial, key: str, value: Any) -> None:
    """Store long machine-readable trial data (see :data:`TRIAL_DATA`) as a trial system attribute."""
    trial.storage.set_trial_system_attr(private.trial_id(trial), SYSTEM_PREFIX + key, value)


def note_text(study: optuna.Study, settings: dict[str, Any]) -> str:
    """The study note shown by optuna-dashboard (:func:`cnnsearch.search.note.note_text`)."""
    from cnnsearch.search import note

    return note.note_text(study, settings, baseline_trial(study))


def write_note(study: optuna.Study, settings: dict[str, Any]) -> None:
    """Save (or refresh) the optuna-dashboard study note."""
    import optuna_dashboard

    optuna_dashboard.save_note(study, note_text(study, settings))


def load(name: str, url: str | None = None, *, heartbeat: bool = False, seed: int | None = None) -> Handle:
    """Load study ``name`` with its stored space, training settings, sampler and pruner.

    The sampler's seed: with ``seed`` (``study run --seed``), ``seed`` + the
    study's trial count + 7919 x the worker index: the same command on the same
    study state draws the same configurations. Without it, the study's seed
    plus a random component, so two runs started together never draw the same
    configurations.
    """
    url = resolve_storage(url)
    storage = open_storage(url)
    known = optuna.study.get_all_study_names(storage=storage)
    if name not in known:
        raise StorageError(f"no study {name!r} in {mask_url(url)} (studies there: {', '.join(known) or 'none'});"
                           f" create it with 'cnnsearch study create {name} --space studies/seed.toml'")
    study = optuna.load_study(study_name=name, storage=storage)
    settings = settings_of(study)
    if not settings:
        raise StorageError(f"study {name!r} in {mask_url(url)} was not created by cnnsearch (no '{SETTINGS_KEY}' settings);"
                           " create one with 'cnnsearch study create'")
    for key, kind in (("space_text", str), ("space_source", str), ("training", dict)):  # another tool's or version's?
        if not isinstance(settings, dict) or not isinstance(settings.get(key), kind):
            got = type(settings.get(key) if isinstance(settings, dict) else settings).__name__
            raise StorageError(f"study {name!r}: stored setting {SETTINGS_KEY}.{key}: expected a {kind.__name__};"
                               f" received a {got} (made by another tool or version?); create a new study with"
                               " 'cnnsearch study create'")
    sp = space_mod.parse(settings["space_text"], source=f"{name} (stored space from {settings['space_source']})",
                         stored=True)
    sp = with_metric(sp, settings["study"].get("metric"))  # set at create, maybe not by the file
    training = TrainConfig.from_dict(settings["training"])
    if heartbeat and sp.study["heartbeat_seconds"] and isinstance(storage, optuna.storages.RDBStorage):
        # Bounded: a study stored before the bound (or edited) must not overflow the heartbeat's timer.
        storage = open_storage(url, heartbeat_s=min(sp.study["heartbeat_seconds"], space_mod.MAX_HEARTBEAT_S))
    effective = sampler_seed(study, sp, seed)
    if heartbeat:  # opened to run trials (the runner's call): the seed that will draw them is kept
        from cnnsearch.search import seeds

        seeds.record(study, effective, seed, int(os.environ.get(WORKER_ENV, "0") or 0), set_system_attr)
    sampler = make_sampler(sp, seed=effective)
    study = optuna.load_study(study_name=name, storage=storage, sampler=sampler,
                              pruner=make_pruner(sp, training.epochs))
    return Handle(study, sp, training, url)



def sampler_seed(study: optuna.Study, sp: space_mod.Space, seed: int | None = None) -> int:
    """The sampler seed of this process (see :func:`load`); always in [0, 2**31)."""
    if seed is None:
        # Two plain `study run` commands started together see the same trial count, worker index and
        # machine: only a random component keeps them from drawing the very same configurations.
        import secrets

        return (sp.study["seed"] + secrets.randbelow(2**31)) % 2**31
    # By how far the study has come (a resumed run does not replay the first run's start-up points)
    # and by worker index (parallel workers do not propose the same points).
    offset = len(study.get_trials(deepcopy=False)) + 7919 * int(os.environ.get(WORKER_ENV, "0") or 0)
    # Modulo: a study created before seeds were bounded (seed near 2**32) must still open.
    return (seed + offset) % 2**31


def make_sampler(sp: space_mod.Space, offset: int = 0, *, seed: int | None = None) -> optuna.samplers.BaseSampler:
    """The study's sampler, seeded with ``seed``, else ``study.seed + offset`` (kept below 2**31, as NumPy needs)."""
    seed = (sp.study["seed"] + offset if seed is None else seed) % 2**31
    kind = sp.study["sampler"]
    if kind == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if kind == "grid":
        return optuna.samplers.GridSampler(points.grid_space(sp), seed=seed)
    if kind == "nsga2":
        return limits.feasible_sampler(optuna.samplers.NSGAIISampler(seed=seed), sp)
    # group=True: TPE models the layer dimensions that exist only for deep models
    # (conv3_*, conv4_*) jointly with the depth that enables them, instead of
    # falling back to independent sampling in a conditional space.
    with experimental_ok():
        tpe = optuna.samplers.TPESampler(seed=seed, multivariate=True, group=True)
    # The sampler skips candidates the layer arithmetic rules out: unbuildable ones, and any over a size limit.
    return limits.feasible_sampler(tpe, sp)


def make_pruner(sp: space_mod.Space, epochs: int) -> optuna.pruners.BasePruner:
    """The study's pruner; steps are epochs (0-based)."""
    kind = sp.study["pruner"]
    if kind == "median":
        # Never judge a trial on its first epoch alone, nor against fewer than 5 trained trials at that
        # epoch: n_min_trials, not n_startup_trials alone, because a size-limited study's infeasible
        # draws are COMPLETE to Optuna (untrained) and would otherwise leave the baseline as the median.
        return optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=1, n_min_trials=5)
    if kind == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=epochs, reduction_factor=3)
    if kind == "halving":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=3)
    return optuna.pruners.NopPruner()


def ensure_baseline_queued(study: optuna.Study, sp: space_mod.Space) -> bool:
    """Re-enqueue the baseline if no baseline trial is done, queued or running (e.g. it was interrupted)."""
    for t in study.get_trials(deepcopy=False):
        if t.user_attrs.get("baseline") and t.state in (TrialState.COMPLETE, TrialState.WAITING, TrialState.RUNNING):
            return t.state == TrialState.WAITING
    base = points.baseline_params(sp)
    if base is None:  # [baseline] model = "none"
        return False
    study.enqueue_trial(base, user_attrs={"baseline": True})
    return True


def baseline_trial(study: optuna.Study) -> FrozenTrial | None:
    """The completed in-study baseline trial, if any."""
    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        if t.user_attrs.get("baseline"):
            return t
    return None



def counts(study: optuna.Study) -> dict[str, int]:
    """Trials by state; an untrained infeasible trial (COMPLETE to Optuna) counts as ``INFEASIBLE``."""
    out: dict[str, int] = {}
    for t in study.get_trials(deepcopy=False):
        state = "INFEASIBLE" if t.user_attrs.get("infeasible") else t.state.name
        out[state] = out.get(state, 0) + 1
    return out


def best_trial(study: optuna.Study) -> FrozenTrial | None:
    """Best by the study's metric among completed feasible trials: highest validation accuracy, or lowest
    validation loss in a study whose metric is val_loss (test accuracy never decides)."""
    loss = study.directions[0] == optuna.study.StudyDirection.MINIMIZE
    key = "val_loss" if loss else "val_accuracy"
    done = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
            if t.user_attrs.get(key) is not None and limits.feasible(t)]
    sign = -1.0 if loss else 1.0
    return max(done, key=lambda t: (sign * t.user_attrs[key], -t.number)) if done else None


def delete(name: str, url: str | None = None) -> None:
    """Delete study ``name`` and its kept weights (with their cached figure arrays)."""
    from cnnsearch.model import figcache  # here: the figure code is not needed by the rest of this module

    h = load(name, url)
    kept = {(h.study.user_attrs.get(k) or {}).get("artifact_id") for k in ("best_weights", "baseline_weights")}
    optuna.delete_study(study_name=name, storage=private.storage_of(h.study))  # the study's own storage object
    for artifact_id in kept - {None}:
        path = artifact_path(h.url, artifact_id)  # None for a tampered id pointing out of the folder
        if path is not None:
            path.unlink(missing_ok=True)
            figcache.cache_path(path).unlink(missing_ok=True)  # its figure arrays, cached beside it


def weights_problems(name: str, url: str | None = None) -> list[str]:
    """Why the kept weights of study ``name`` cannot be used (empty when they are fine or absent)."""
    h = load(name, url)
    problems = []
    for which in ("best", "baseline"):
        try:
            kept_weights(h.url, h.study.user_attrs.get(f"{which}_weights"), which)
        except StorageError as exc:
            problems.append(str(exc))
    return problems


def set_system_attr(study: optuna.Study, key: str, value: Any) -> None:
    """Store ``key`` as a study *system* attribute: in the same storage, out of the dashboard's user attributes."""
    private.storage_of(study).set_study_system_attr(private.study_id(study), key, value)


def fresh_user_attrs(study: optuna.Study) -> dict[str, Any]:
    """A study's user attributes read again from its storage (another worker may have written meanwhile)."""
    return optuna.load_study(study_name=study.study_name, storage=private.storage_of(study)).user_attrs


def system_attrs(study: optuna.Study) -> dict[str, Any]:
    """A study's system attributes (see :func:`set_system_attr`)."""
    return dict(private.storage_of(study).get_study_system_attrs(private.study_id(study)))


__all__ = ["BASELINE_ROLE", "Handle", "SETTINGS_ATTR", "SETTINGS_KEY", "TRIAL_DATA", "baseline_trial", "best_trial",
           "counts", "create", "delete", "ensure", "ensure_baseline_queued", "fresh_user_attrs", "load", "make_pruner",
           "make_sampler", "note_text", "param_count", "readable_settings", "same_space", "sampler_seed",
           "set_system_attr", "set_trial_data", "settings_of", "system_attrs", "trial_attr", "weights_problems",
           "write_note"]
