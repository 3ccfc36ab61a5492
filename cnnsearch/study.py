"""Optuna studies: storages, create/load/run/resume, samplers, pruners, heartbeat, best weights.

A study stores its space file and training settings in its user attributes
(key ``cnnsearch``) at create, so ``run`` on any machine, at any later time,
trains exactly as the first run did. Trial 0 is the reference model, enqueued
at create and marked ``baseline`` in its user attributes.
"""

from __future__ import annotations

import datetime as _dt
import os
import shutil
import tempfile
import time
import warnings
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable

import optuna
from optuna.trial import FrozenTrial, TrialState

from cnnsearch import data as data_mod
from cnnsearch import provenance
from cnnsearch import space as space_mod
from cnnsearch.arch import summarize
from cnnsearch.errors import ArchitectureError, CnnsearchError, ConfigError, DataError, StorageError, TrialFailed
from cnnsearch.train import TrainConfig

# The Optuna features used here on purpose (heartbeat retry, TPE groups, metric names)
# are marked experimental; their warnings would bury the progress lines.
warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)

#: Where studies live when neither --storage nor $CNNSEARCH_STORAGE says (relative to the working folder).
DEFAULT_STORAGE = "sqlite:///studies/cnnsearch.db"
STORAGE_ENV = "CNNSEARCH_STORAGE"
#: Folder for the best trial's weights; default: beside the SQLite or journal file, else studies/artifacts.
ARTIFACTS_ENV = "CNNSEARCH_ARTIFACTS"
#: Set by run_workers for each worker process (0, 1, ...): offsets the sampler's seed.
WORKER_ENV = "CNNSEARCH_WORKER_INDEX"
#: Study user attribute holding the settings fixed at create.
SETTINGS_KEY = "cnnsearch"
#: The reference's published test accuracy: every trial is compared with it.
REFERENCE_ACCURACY = 0.9915
#: SQLite busy timeout, seconds: how long a writer waits for another's lock before "database is locked".
SQLITE_TIMEOUT_S = 60


# --- storages ------------------------------------------------------------------------------------

def resolve_storage(url: str | None = None) -> str:
    """``--storage`` > ``$CNNSEARCH_STORAGE`` > ``sqlite:///studies/cnnsearch.db``."""
    return url or os.environ.get(STORAGE_ENV) or DEFAULT_STORAGE


def _sqlite_path(url: str) -> Path | None:
    if not url.startswith("sqlite:"):
        return None
    rest = url[len("sqlite:"):]
    if not rest.startswith("///"):
        raise ConfigError(f"--storage: expected sqlite:///relative/path.db or sqlite:////absolute/path.db;"
                          f" received {url!r}")
    return Path(rest[3:])


def _journal_path(url: str) -> Path | None:
    return Path(url[len("journal://"):]) if url.startswith("journal://") else None


def open_storage(url: str | None = None, *, create: bool = False, heartbeat_s: int = 0) -> optuna.storages.BaseStorage:
    """Open an Optuna storage by URL.

    Args:
        url: Any SQLAlchemy URL Optuna's RDBStorage takes (``sqlite:///...``,
            ``postgresql+psycopg://...``) or ``journal://PATH`` for a journal file.
        create: Allow a new SQLite/journal file to be created (only ``study create``).
        heartbeat_s: Enable Optuna's heartbeat (RDB only): a running trial whose
            worker is silent for twice this is failed and re-queued once.

    Raises:
        ConfigError: a bare path instead of a URL.
        StorageError: the database does not exist (and ``create`` is false) or cannot be reached.
    """
    url = resolve_storage(url)
    if "://" not in url:
        raise ConfigError(f"--storage: expected a storage URL; received {url!r}; for a SQLite file use"
                          f" sqlite:///{url}, for a journal file journal://{url}")
    journal = _journal_path(url)
    if journal is not None:
        if not create and not journal.is_file():
            raise StorageError(f"{url}: no such journal file; create a study first (cnnsearch study create NAME"
                               f" --space FILE --storage {url})")
        journal.parent.mkdir(parents=True, exist_ok=True)
        from optuna.storages.journal import JournalFileBackend, JournalStorage

        return JournalStorage(JournalFileBackend(str(journal)))
    db = _sqlite_path(url)
    engine_kwargs: dict[str, Any] = {}
    if db is not None:
        if not create and not db.is_file():
            raise StorageError(f"{url}: no such database file ({db}); create a study first (cnnsearch study create"
                               f" NAME --space FILE --storage {url}) or pass the right --storage")
        db.parent.mkdir(parents=True, exist_ok=True)
        engine_kwargs = {"connect_args": {"timeout": SQLITE_TIMEOUT_S}}
    hb: dict[str, Any] = {}
    if heartbeat_s:
        hb = {"heartbeat_interval": heartbeat_s, "grace_period": 2 * heartbeat_s,
              "heartbeat_stale_trial_callback": optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=1)}
    try:
        return optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs, **hb)
    except ImportError as exc:
        raise StorageError(f"{url}: the database driver is not installed ({exc}); for PostgreSQL:"
                           " pip install 'cnnsearch[postgres]'") from exc
    except Exception as exc:  # SQLAlchemy's OperationalError and friends: unreachable or refused
        raise StorageError(f"{url}: cannot open the storage ({type(exc).__name__}: {_first_line(exc)})") from exc


def artifact_dir(url: str | None = None) -> Path:
    """Folder of the best-weights artifact store for a storage URL."""
    if os.environ.get(ARTIFACTS_ENV):
        return Path(os.environ[ARTIFACTS_ENV])
    url = resolve_storage(url)
    f = _sqlite_path(url) or _journal_path(url)
    if f is not None:
        return f.with_name(f.stem + "-artifacts")
    return Path("studies") / "artifacts"


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


def create(name: str, space_path: str | Path, url: str | None = None) -> Handle:
    """Create study ``name`` from a space file, storing its settings and enqueuing the baseline as trial 0.

    The space file is validated before anything is written: an invalid file
    creates no study and no database file.
    """
    if not name or any(c in name for c in "\n\r\t"):
        raise ConfigError(f"study name: expected a non-empty single-line name; received {name!r}")
    sp = space_mod.load(space_path)  # validate first: nothing written on error
    url = resolve_storage(url)
    storage = open_storage(url, create=True)
    if name in optuna.study.get_all_study_names(storage=storage):
        raise StorageError(f"study {name!r} already exists in {url}; continue it with 'cnnsearch study run {name}',"
                           f" or pick another name, or 'cnnsearch study delete {name}' first")
    study = optuna.create_study(storage=storage, study_name=name, directions=sp.directions)
    settings = {
        "space_source": str(space_path),
        "space_text": sp.text,
        "study": sp.study,
        "training": sp.training,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "version": _version(),
    }
    study.set_user_attr(SETTINGS_KEY, settings)
    study.set_metric_names(["val_accuracy", "param_count"][: len(sp.directions)])
    study.enqueue_trial(space_mod.baseline_params(sp), user_attrs={"baseline": True})
    write_note(study, settings)
    return Handle(study, sp, TrainConfig.from_dict(sp.training), url)


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
                          f" (created from {h.study.user_attrs[SETTINGS_KEY]['space_source']}); run it without"
                          f" --space, or pick another study name")
    return h, False


def note_text(study: optuna.Study, settings: dict[str, Any]) -> str:
    """The study note shown by optuna-dashboard: space, training settings, baseline references."""
    base = baseline_trial(study)
    if base is not None:
        ua = base.user_attrs
        in_study = (f"trial {base.number}: val accuracy {ua.get('val_accuracy', float('nan')):.4f}, test accuracy"
                    f" {ua.get('test_accuracy', float('nan')):.4f}, param_count {param_count(ua) or 0:,}, at this study's"
                    " fidelity")
    else:
        in_study = "trial 0, not finished yet"
    training = settings["training"]
    limit = training["train_limit"] or "all"
    return "\n".join([
        f"# cnnsearch study: {study.study_name}",
        "",
        settings["study"].get("description") or "",
        "",
        "## Baselines every trial is compared with",
        f"- the reference Keras MNIST CNN: test accuracy {REFERENCE_ACCURACY:.2%} (20 epochs, all data)",
        f"- the in-study baseline (the same model at this study's fidelity): {in_study}",
        "",
        "The objective is validation accuracy; test accuracy is recorded (user attribute test_accuracy) but never"
        " used to select. User attributes per trial: param_count, flops, test_accuracy, baseline, history.",
        "",
        "## Training (fixed at create)",
        f"- {training['epochs']} epochs on {limit} training images, batch {training['batch_size']},"
        f" {training['optimizer']} learning rate {training['learning_rate']} {training['optimizer_args']}",
        f"- sampler {settings['study']['sampler']}, pruner {settings['study']['pruner']},"
        f" seed {settings['study']['seed']}",
        "",
        f"## Space ({settings['space_source']})",
        "```toml",
        settings["space_text"].strip(),
        "```",
    ])


def write_note(study: optuna.Study, settings: dict[str, Any]) -> None:
    """Save (or refresh) the optuna-dashboard study note."""
    import optuna_dashboard

    optuna_dashboard.save_note(study, note_text(study, settings))


def load(name: str, url: str | None = None, *, heartbeat: bool = False) -> Handle:
    """Load study ``name`` with its stored space, training settings, sampler and pruner."""
    url = resolve_storage(url)
    storage = open_storage(url)
    known = optuna.study.get_all_study_names(storage=storage)
    if name not in known:
        raise StorageError(f"no study {name!r} in {url} (studies there: {', '.join(known) or 'none'});"
                           f" create it with 'cnnsearch study create {name} --space studies/seed.toml'")
    study = optuna.load_study(study_name=name, storage=storage)
    settings = study.user_attrs.get(SETTINGS_KEY)
    if not settings:
        raise StorageError(f"study {name!r} in {url} was not created by cnnsearch (no '{SETTINGS_KEY}' settings);"
                           " create one with 'cnnsearch study create'")
    sp = space_mod.parse(settings["space_text"], source=f"{name} (stored space from {settings['space_source']})")
    training = TrainConfig.from_dict(settings["training"])
    if heartbeat and sp.study["heartbeat_seconds"] and isinstance(storage, optuna.storages.RDBStorage):
        storage = open_storage(url, heartbeat_s=sp.study["heartbeat_seconds"])
    # Seed the sampler by how far the study has come, so a resumed run does not replay the first
    # run's random start-up points, and by worker index and machine, so parallel workers do not
    # propose the same points; the same command on the same machine stays reproducible.
    import socket
    import zlib

    offset = (len(study.get_trials(deepcopy=False)) + 7919 * int(os.environ.get(WORKER_ENV, "0") or 0)
              + zlib.crc32(socket.gethostname().encode()) % 10007)
    study = optuna.load_study(study_name=name, storage=storage, sampler=make_sampler(sp, offset),
                              pruner=make_pruner(sp, training.epochs))
    return Handle(study, sp, training, url)


def make_sampler(sp: space_mod.Space, offset: int = 0) -> optuna.samplers.BaseSampler:
    """The study's sampler, seeded with ``study.seed + offset``."""
    seed = sp.study["seed"] + offset
    kind = sp.study["sampler"]
    if kind == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if kind == "grid":
        return optuna.samplers.GridSampler(space_mod.grid_space(sp), seed=seed)
    if kind == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed)
    # group=True: TPE models the layer dimensions that exist only for deep models
    # (conv3_*, conv4_*) jointly with the depth that enables them, instead of
    # falling back to independent sampling in a conditional space.
    return optuna.samplers.TPESampler(seed=seed, multivariate=True, group=True)


def make_pruner(sp: space_mod.Space, epochs: int) -> optuna.pruners.BasePruner:
    """The study's pruner; steps are epochs (0-based)."""
    kind = sp.study["pruner"]
    if kind == "median":
        # 5 finished trials before pruning anyone; never judge a trial on its first epoch alone.
        return optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=1)
    if kind == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=epochs, reduction_factor=3)
    if kind == "halving":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=3)
    return optuna.pruners.NopPruner()


# --- running -----------------------------------------------------------------------------------------

@dataclass
class TrialLine:
    """What the progress line of one finished trial shows."""

    number: int
    state: str
    param_count: int | None
    val_accuracy: float | None
    vs_baseline_pp: float | None
    seconds: float | None
    reason: str
    done: int
    total: int
    baseline: bool
    choices: str = ""  # the trial's hyperparameters in one line (cnnsearch.describe)

    def text(self, worker: int | None = None) -> str:
        """``[3/11] #2 conv 16k5 > 64k3 | pool 2 | drop .15/.40 | dense 128: val_acc 0.9820 (+0.20 pp), 41 s``.

        Fits 100 columns for seed.toml's choices; prefixed with the worker's process id when one of several.
        """
        who = f"worker {worker} " if worker is not None else ""
        head = f"{who}[{self.done}/{self.total}] #{self.number}{' baseline' if self.baseline else ''} {self.choices}:"
        val = "" if self.val_accuracy is None else f"val_acc {self.val_accuracy:.4f}"
        if val and self.vs_baseline_pp is not None and not self.baseline and self.state == "COMPLETE":
            val += f" ({self.vs_baseline_pp:+.2f} pp)"
        secs = "" if self.seconds is None else f"{self.seconds:.0f} s"
        if self.state == "COMPLETE":
            tail = [val, secs]
        elif self.state == "PRUNED":
            tail = [self.reason or "pruned", val, secs]
        else:
            tail = [f"{ {'FAIL': 'failed'}.get(self.state, self.state.lower())}{f' ({self.reason})' if self.reason else ''}"]
        return f"{head} {', '.join(p for p in tail if p)}"


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

    def __call__(self, trial: optuna.Trial) -> float | tuple[float, float]:
        from cnnsearch.train import fit, versions

        sp, cfg = self.handle.space, self.handle.training
        is_baseline = bool(trial.user_attrs.get("baseline", False))
        trial.set_user_attr("baseline", is_baseline)
        if self.on_start is not None:
            self.on_start(trial.number, is_baseline)
        spec, overrides = space_mod.suggest(trial, sp)
        trial.set_user_attr("spec", spec.to_dict())
        try:
            summary = summarize(spec, self.splits.input_shape, self.splits.n_classes)
        except ArchitectureError as exc:
            trial.set_user_attr("failure_kind", "invalid_architecture")
            trial.set_user_attr("fail_reason", str(exc))
            raise TrialFailed(str(exc)) from exc
        trial.set_user_attr("param_count", summary.params)
        trial.set_user_attr("flops", summary.flops)
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
        except optuna.TrialPruned:
            self._record_partial(trial, history, start)
            raise
        except TrialFailed as exc:
            self._record_partial(trial, history, start)
            trial.set_user_attr("failure_kind", "training")
            trial.set_user_attr("fail_reason", str(exc))
            raise
        except (KeyboardInterrupt, CnnsearchError):
            self._record_partial(trial, history, start)
            raise
        except Exception as exc:  # a crash inside TensorFlow fails this trial, not the search
            self._record_partial(trial, history, start)
            reason = f"{type(exc).__name__}: {_first_line(exc)}"
            trial.set_user_attr("failure_kind", "training")
            trial.set_user_attr("fail_reason", reason)
            raise TrialFailed(reason) from exc
        trial.set_user_attr("history", result.history)
        trial.set_user_attr("epochs_run", result.epochs_run)
        trial.set_user_attr("seconds", round(result.seconds, 3))
        trial.set_user_attr("epoch_seconds", [round(s, 3) for s in result.epoch_seconds])
        trial.set_user_attr("val_accuracy", result.val_accuracy)
        # Recorded for the report only: selection never looks at the test set.
        trial.set_user_attr("test_loss", result.test_loss)
        trial.set_user_attr("test_accuracy", result.test_accuracy)
        self._keep_if_best(trial, result)
        if sp.multi_objective:
            return result.val_accuracy, float(summary.params)
        return result.val_accuracy

    @staticmethod
    def _record_partial(trial: optuna.Trial, history: dict[str, list[float]], start: float) -> None:
        trial.set_user_attr("history", history)
        trial.set_user_attr("epochs_run", len(history.get("loss", [])))
        trial.set_user_attr("seconds", round(time.perf_counter() - start, 3))

    def _keep_if_best(self, trial: optuna.Trial, result: Any) -> None:
        """Store this trial's weights if it beats every finished trial (the previous best's are removed).

        The in-study baseline's weights are kept too (``baseline_weights``): the
        report draws its filters beside the best model's. When the baseline is
        also the best (it always is at first), one file serves both.
        """
        study = self.handle.study
        store = _artifact_store(self.handle.url)
        saved: str | None = None
        baseline_id = (study.user_attrs.get("baseline_weights") or {}).get("artifact_id")
        if trial.user_attrs.get("baseline") and baseline_id is None:
            saved = baseline_id = _save_model(store, study, trial, result.model)
            study.set_user_attr("baseline_weights", {"trial": trial.number, "val_accuracy": result.val_accuracy,
                                                     "artifact_id": saved})
        current = study.user_attrs.get("best_weights")
        if current and current["val_accuracy"] >= result.val_accuracy:
            return
        artifact_id = saved or _save_model(store, study, trial, result.model, "best")
        # Re-read: another worker may have stored a better one meanwhile.
        current = optuna.load_study(study_name=study.study_name, storage=study._storage).user_attrs.get("best_weights")
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


def _artifact_store(url: str) -> Any:
    from optuna.artifacts import FileSystemArtifactStore

    folder = artifact_dir(url)
    folder.mkdir(parents=True, exist_ok=True)
    return FileSystemArtifactStore(str(folder))


def _ensure_baseline_queued(study: optuna.Study, sp: space_mod.Space) -> bool:
    """Re-enqueue the baseline if no baseline trial is done, queued or running (e.g. it was interrupted)."""
    for t in study.get_trials(deepcopy=False):
        if t.user_attrs.get("baseline") and t.state in (TrialState.COMPLETE, TrialState.WAITING, TrialState.RUNNING):
            return t.state == TrialState.WAITING
    study.enqueue_trial(space_mod.baseline_params(sp), user_attrs={"baseline": True})
    return True


def baseline_trial(study: optuna.Study) -> FrozenTrial | None:
    """The completed in-study baseline trial, if any."""
    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        if t.user_attrs.get("baseline"):
            return t
    return None


def run(
    name: str,
    *,
    trials: int,
    timeout: float | None = None,
    data_path: str | None = None,
    url: str | None = None,
    on_trial: Callable[[TrialLine], None] | None = None,
    verbose: int = 0,
    worker: bool = False,
    on_plan: Callable[[int, int, float | None], None] | None = None,
    on_trial_start: Callable[[int, bool], None] | None = None,
    on_epoch: Callable[[int, dict[str, float]], None] | None = None,
) -> Handle:
    """Add ``trials`` finished trials to study ``name`` (plus the baseline if it has not run yet).

    Data are loaded once for the whole run. Stops starting new trials after
    ``timeout`` seconds. A trial that fails (unbuildable spec, NaN loss) is
    recorded and the search goes on; after the study's
    ``max_consecutive_failures`` training failures in a row the run stops
    with a :class:`~cnnsearch.errors.CnnsearchError`. Ctrl-C fails the running
    trial (Optuna marks it FAIL, never leaves it RUNNING) and re-raises.

    ``worker=True`` is one process of :func:`run_workers`: it runs exactly
    ``trials`` trials (whichever queued ones it pops, the baseline included),
    the parent having done the baseline accounting.

    Progress hooks: ``on_plan(trials, epochs, epoch_prior_s)`` once before the first trial (the
    prior: the median epoch time the study has measured, or None), ``on_trial_start(number,
    is_baseline)``, ``on_epoch(epoch, logs)`` and ``on_trial`` (a :class:`TrialLine`) as trials go.
    The data are the study's (:mod:`cnnsearch.provenance`): remembered at the first run.
    """
    if trials < 0:
        raise ConfigError(f"--trials: expected >= 0; received {trials}")
    handle = load(name, url, heartbeat=True)
    study, sp, cfg = handle.study, handle.space, handle.training
    ds = provenance.load(study, data_path)
    splits = data_mod.split(ds, train_limit=cfg.train_limit)
    try:
        summarize(space_mod.spec_from_values(space_mod.baseline_params(sp), sp), splits.input_shape, splits.n_classes)
    except ArchitectureError as exc:
        raise DataError(f"{ds.source}: images of {splits.input_shape} are too small for the reference"
                                f" model: {exc}") from exc
    # A worker that died without a word leaves its trial RUNNING: fail it now (and re-queue it once,
    # through the heartbeat callback) rather than at the next trial start, which --trials 0 never reaches.
    optuna.storages.fail_stale_trials(study)
    total = trials if worker else trials + (1 if _ensure_baseline_queued(study, sp) else 0)
    objective = Objective(handle, splits, verbose=verbose, on_start=on_trial_start, on_epoch=on_epoch)
    state = {"done": 0, "failures": 0, "last": ""}
    limit = sp.study["max_consecutive_failures"]

    def after_trial(study: optuna.Study, t: FrozenTrial) -> None:
        state["done"] += 1
        reason = t.user_attrs.get("fail_reason") or t.system_attrs.get("fail_reason", "")
        if t.state == TrialState.FAIL and t.user_attrs.get("failure_kind") != "invalid_architecture":
            state["failures"] += 1
            state["last"] = reason
        elif t.state != TrialState.FAIL:
            state["failures"] = 0
        if t.state == TrialState.PRUNED:
            reason = f"pruned after epoch {t.user_attrs.get('epochs_run', '?')}"
        if t.user_attrs.get("baseline") and t.state == TrialState.COMPLETE:
            write_note(study, study.user_attrs[SETTINGS_KEY])  # now with the in-study baseline's numbers
        if on_trial is not None:
            on_trial(_line(study, t, reason, state["done"], total))
        if limit and state["failures"] >= limit:
            study.stop()

    optuna.logging.set_verbosity(optuna.logging.ERROR if not verbose else optuna.logging.INFO)
    if on_plan is not None:
        on_plan(total, cfg.epochs, _median_epoch_seconds(study))
    study.optimize(objective, n_trials=total, timeout=timeout, catch=(TrialFailed,), callbacks=[after_trial],
                   gc_after_trial=True)
    if limit and state["failures"] >= limit:
        raise CnnsearchError(f"stopped: {state['failures']} trials in a row failed during training (last: "
                             f"{state['last']}); check the space's ranges and [training] settings, then run again")
    return handle


def run_workers(
    name: str,
    *,
    trials: int,
    workers: int,
    timeout: float | None = None,
    data_path: str | None = None,
    url: str | None = None,
    quiet: bool = False,
    cores: int | None = None,
) -> list[int]:
    """Run ``trials`` new trials of study ``name`` in ``workers`` processes on this machine.

    Each process runs a fixed share, so the study gains exactly ``trials``
    finished trials (plus the baseline if it has not run) and trial numbers
    stay unique (Optuna's storage assigns them). Each process's TensorFlow
    thread pools get ``cores // workers`` threads so the workers do not
    oversubscribe the CPU. Ctrl-C is passed to every worker, which marks its
    running trial failed; then KeyboardInterrupt is raised here.

    Returns:
        The workers' exit statuses.
    """
    import subprocess
    import sys

    if workers < 1:
        raise ConfigError(f"--workers: expected >= 1; received {workers}")
    h = load(name, url)
    total = trials + (1 if _ensure_baseline_queued(h.study, h.space) else 0)
    shares = [total // workers + (1 if i < total % workers else 0) for i in range(workers)]
    threads = max(1, (cores or os.cpu_count() or 1) // workers)
    base_cmd = [sys.executable, "-m", "cnnsearch.cli", "study", "run", name, "--storage", h.url, "--worker",
                "--threads", str(threads)]
    if timeout is not None:
        base_cmd += ["--timeout", str(timeout)]
    if data_path:
        base_cmd += ["--data", data_path]
    if quiet:
        base_cmd += ["--quiet"]
    procs = [subprocess.Popen([*base_cmd, "--trials", str(n)], env={**os.environ, WORKER_ENV: str(i + 1)})
             for i, n in enumerate(shares) if n > 0]
    try:
        return [p.wait() for p in procs]
    except KeyboardInterrupt:
        import signal

        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGINT)
        for p in procs:
            try:
                p.wait(timeout=60)
            except subprocess.TimeoutExpired:
                p.kill()
        raise


def _median_epoch_seconds(study: optuna.Study) -> float | None:
    """The median epoch time of the study's finished trials (all at the study's fidelity), if any."""
    import statistics

    secs = [s for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
            for s in t.user_attrs.get("epoch_seconds") or []]
    return statistics.median(secs) if secs else None


def _line(study: optuna.Study, t: FrozenTrial, reason: str, done: int, total: int) -> TrialLine:
    base = baseline_trial(study)
    val = t.user_attrs.get("val_accuracy") if t.state == TrialState.COMPLETE else None
    if val is None and t.state == TrialState.PRUNED and t.intermediate_values:
        val = t.intermediate_values[max(t.intermediate_values)]
    vs = None
    if val is not None and base is not None and base.user_attrs.get("val_accuracy") is not None:
        vs = 100 * (val - base.user_attrs["val_accuracy"])
    from cnnsearch.describe import choices

    return TrialLine(number=t.number, state=t.state.name, param_count=param_count(t.user_attrs), val_accuracy=val,
                     vs_baseline_pp=vs, seconds=t.user_attrs.get("seconds"), reason=reason, done=done, total=total,
                     baseline=bool(t.user_attrs.get("baseline")),
                     choices=choices(t.user_attrs.get("spec"), t.params))


# --- reading -----------------------------------------------------------------------------------------

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
        "history": ua.get("history"),
        "intermediate_values": {str(k): v for k, v in t.intermediate_values.items()},
        "spec": ua.get("spec"),
        "versions": ua.get("versions"),
        "fail_reason": ua.get("fail_reason") or t.system_attrs.get("fail_reason"),
        "retry_of": t.system_attrs.get("failed_trial"),
        "datetime_start": t.datetime_start.isoformat() if t.datetime_start else None,
        "datetime_complete": t.datetime_complete.isoformat() if t.datetime_complete else None,
    }


def param_count(user_attrs: dict[str, Any]) -> int | None:
    """A trial's parameter count; studies made before the rename stored it as ``params``."""
    value = user_attrs.get("param_count", user_attrs.get("params"))
    return value if isinstance(value, int) else None


def counts(study: optuna.Study) -> dict[str, int]:
    """Trials by state."""
    out: dict[str, int] = {}
    for t in study.get_trials(deepcopy=False):
        out[t.state.name] = out.get(t.state.name, 0) + 1
    return out


def best_trial(study: optuna.Study) -> FrozenTrial | None:
    """Highest validation accuracy among completed trials (test accuracy never decides)."""
    done = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
            if t.user_attrs.get("val_accuracy") is not None]
    return max(done, key=lambda t: (t.user_attrs["val_accuracy"], -t.number)) if done else None


def show(name: str, url: str | None = None, *, top: int | None = None, sort: str = "number") -> dict[str, Any]:
    """A study's settings, counts, baseline, best trial and its trials.

    Args:
        top: Only the ``top`` trials with the highest validation accuracy (best first).
        sort: ``"number"`` (trial order) or ``"val"`` (validation accuracy, best first; trials without one last).
    """
    if sort not in ("number", "val"):
        raise ConfigError(f"--sort: expected number or val; received {sort!r}")
    h = load(name, url)
    settings = h.study.user_attrs[SETTINGS_KEY]
    base, best = baseline_trial(h.study), best_trial(h.study)
    records = [trial_record(t) for t in h.study.get_trials(deepcopy=False)]
    if top is not None or sort == "val":
        records.sort(key=lambda r: (r["val_accuracy"] is None, -(r["val_accuracy"] or 0.0), r["number"]))
    if top is not None:
        records = [r for r in records if r["val_accuracy"] is not None][:top]
    return {
        "name": name,
        "storage": h.url,
        "directions": [d.name.lower() for d in h.study.directions],
        "created": settings["created"],
        "space_source": settings["space_source"],
        "space": settings["space_text"],
        "study": settings["study"],
        "training": settings["training"],
        "counts": counts(h.study),
        "reference_test_accuracy": REFERENCE_ACCURACY,
        "baseline_trial": base.number if base else None,
        "baseline_val_accuracy": base.user_attrs.get("val_accuracy") if base else None,
        "best_trial": best.number if best else None,
        "best_weights": h.study.user_attrs.get("best_weights"),
        "data": h.study.user_attrs.get("data"),
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
        raise StorageError(f"study {name!r} has no completed trial yet; run it: cnnsearch study run {name} --trials N")
    record = trial_record(t)
    if export is not None:
        weights = h.study.user_attrs.get("best_weights")
        if not weights or weights["trial"] != t.number:
            raise StorageError(f"study {name!r}: the weights of best trial {t.number} were not kept"
                               f" (kept: {weights['trial'] if weights else 'none'}); retrain it or run more trials")
        export = Path(export)
        if export.suffix != ".keras":
            raise ConfigError(f"--export: expected a path ending in .keras; received {str(export)!r}")
        store = _artifact_store(h.url)
        try:
            reader = store.open_reader(weights["artifact_id"])
        except Exception as exc:
            raise StorageError(f"study {name!r}: weights {weights['artifact_id']} missing from"
                               f" {artifact_dir(h.url)} ({_first_line(exc)})") from exc
        export.parent.mkdir(parents=True, exist_ok=True)
        tmp = export.with_name(export.name + ".tmp")
        with reader, open(tmp, "wb") as out:
            shutil.copyfileobj(reader, out)
        os.replace(tmp, export)
        record["exported"] = str(export)
    return record


def delete(name: str, url: str | None = None) -> None:
    """Delete study ``name`` and its kept weights."""
    h = load(name, url)
    kept = {(h.study.user_attrs.get(k) or {}).get("artifact_id") for k in ("best_weights", "baseline_weights")}
    optuna.delete_study(study_name=name, storage=h.study._storage)
    for artifact_id in kept - {None}:
        try:
            _artifact_store(h.url).remove(artifact_id)
        except Exception:  # already gone
            pass


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in name)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _version() -> str:
    from cnnsearch import __version__

    return __version__


__all__ = ["Handle", "Objective", "TrialLine", "baseline_trial", "best", "best_trial", "counts", "create", "delete", "ensure",
           "load", "note_text", "open_storage", "param_count", "resolve_storage", "run", "run_workers", "show", "summaries",
           "trial_record", "write_note"]
