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
import time
import warnings
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable

import optuna
from optuna.trial import FrozenTrial, TrialState

from cnnsearch import data as data_mod
from cnnsearch import interrupt
from cnnsearch import space as space_mod
from cnnsearch.arch import summarize
from cnnsearch.errors import (ArchitectureError, CnnsearchError, ConfigError, DataError, Interrupted, StorageError,
                              TrialFailed)
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
#: Seconds a worker gets to record its interrupted trial after the signal is passed on, before it is killed.
WORKER_STOP_S = 60
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
    shown = mask_url(url)
    if "://" not in url:
        raise ConfigError(f"--storage: expected a storage URL; received {url!r}; for a SQLite file use"
                          f" sqlite:///{url}, for a journal file journal://{url}")
    _opened[:] = [url]
    journal = _journal_path(url)
    if journal is not None:
        if not create and not journal.is_file():
            raise StorageError(f"{url}: no such journal file; create a study first (cnnsearch study create NAME"
                               f" --space FILE --storage {url})")
        _make_parent(journal, url)
        from optuna.storages.journal import JournalFileBackend, JournalStorage

        return JournalStorage(JournalFileBackend(str(journal)))
    db = _sqlite_path(url)
    if db is not None:
        if not create and not db.is_file():
            raise StorageError(f"{url}: no such database file ({db}); create a study first (cnnsearch study create"
                               f" NAME --space FILE --storage {url}) or pass the right --storage")
        if not create:
            _check_sqlite_is_optuna(db, url)
        _make_parent(db, url)
    hb: dict[str, Any] = {}
    if heartbeat_s:
        hb = {"heartbeat_interval": heartbeat_s, "grace_period": 2 * heartbeat_s,
              "heartbeat_stale_trial_callback": optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=1)}
    try:
        # Only `study create` may add Optuna's tables: read commands never write to a database.
        return optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs(url), skip_table_creation=not create, **hb)
    except ImportError as exc:
        raise StorageError(f"{shown}: the database driver is not installed ({exc}); for PostgreSQL:"
                           " pip install 'cnnsearch[postgres]'") from exc
    except Exception as exc:  # SQLAlchemy's OperationalError and friends: unreachable, refused, not Optuna's
        explained = storage_error(exc, url)
        raise (explained or StorageError(f"{shown}: cannot open the storage ({type(exc).__name__}:"
                                         f" {_first_line(exc)})")) from exc


#: Seconds to wait for a PostgreSQL server to answer; override with ?connect_timeout=N in the URL.
PG_CONNECT_TIMEOUT_S = 10
_opened: list[str] = []  # the storage URL this process opened last: named by storage_error()


def engine_kwargs(url: str) -> dict[str, Any]:
    """SQLAlchemy engine arguments: SQLite's busy timeout; PostgreSQL's connect timeout unless the URL sets one."""
    if url.startswith("sqlite:"):
        return {"connect_args": {"timeout": SQLITE_TIMEOUT_S}}
    if url.startswith("postgresql") and "connect_timeout" not in url:
        # A host that accepts TCP but never answers would hang for minutes (130 s measured) without it.
        return {"connect_args": {"connect_timeout": PG_CONNECT_TIMEOUT_S}}
    return {}


def mask_url(url: str) -> str:
    """``url`` with its password replaced by ``***``: every URL cnnsearch prints or stores goes through this."""
    if "@" not in url or "://" not in url or url.startswith(("sqlite:", "journal:")):
        return url
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # not a SQLAlchemy URL: mask what sits between "user:" and "@"
        import re

        return re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", url)


def _check_sqlite_is_optuna(db: Path, url: str) -> None:
    """Read-only look at a SQLite file: corrupt, or without Optuna's tables, is an error (nothing is written)."""
    import sqlite3
    from urllib.parse import quote

    try:
        con = sqlite3.connect(f"file:{quote(str(db.resolve()))}?mode=ro", uri=True, timeout=SQLITE_TIMEOUT_S)
        try:
            tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        finally:
            con.close()
    except sqlite3.Error as exc:
        raise storage_error(exc, url) or StorageError(f"{url}: cannot read {db} ({exc})") from exc
    if not {"studies", "version_info"} <= tables:
        held = f"it holds the tables {', '.join(sorted(tables)[:5])}" if tables else "it is empty"
        raise StorageError(f"{url}: {db} is not a cnnsearch/Optuna storage ({held}); pass the right --storage, or"
                           f" create a study there with 'cnnsearch study create NAME --space FILE --storage {url}'")


#: Causes recognised in a database error's text: (fragments, what to say, how to fix).
_CAUSES = (
    (("readonly database", "read-only", "read only"), "the database is read-only",
     "make the file and its folder writable, or copy it somewhere writable"),
    (("database or disk is full", "no space left", "disk full"), "no space left on the disk",
     "free some space, then run again (completed trials are intact)"),
    (("malformed", "not a database", "file is encrypted", "disk i/o error"), "the database file is corrupt",
     "restore it from a copy; 'sqlite3 FILE .recover' may save its trials"),
    (("no such table", "does not exist", "undefinedtable"), "not a cnnsearch/Optuna storage (no Optuna tables)",
     "pass the right --storage, or create a study there first"),
    (("database is locked",), f"the database stayed locked by another process for {SQLITE_TIMEOUT_S} s",
     "wait for the other writer, or run again"),
    (("unable to open database file",), "the database file cannot be opened",
     "check that the file and its folder exist and are readable"),
    (("timeout expired", "timed out", "connection refused", "could not connect", "connection failed"),
     "the database server cannot be reached", "check the host and port, or that the server is running"),
)


def storage_error(exc: BaseException, url: str | None = None) -> StorageError | None:
    """One line naming the storage and the cause for a database error, or None if ``exc`` is none.

    Optuna reports every failed commit as "exceeding max length"; the real
    cause (read-only, disk full, corrupt, locked) is in the chained driver error.
    """
    import sqlite3

    chain: list[BaseException] = []
    e: BaseException | None = exc
    while e is not None and e not in chain:
        chain.append(e)
        e = e.__cause__ or e.__context__
    kinds: tuple[type[BaseException], ...] = (optuna.exceptions.StorageInternalError, sqlite3.Error)
    try:
        import sqlalchemy.exc

        kinds += (sqlalchemy.exc.SQLAlchemyError,)
    except ImportError:  # pragma: no cover - optuna's RDB storage needs SQLAlchemy
        pass
    if isinstance(exc, StorageError) or not any(isinstance(c, kinds) for c in chain):
        return None
    url = url or (_opened[0] if _opened else resolve_storage(None))
    db = _sqlite_path(url) if url.startswith("sqlite:") else None
    where = f"{mask_url(url)}" + (f" ({db})" if db is not None else "")
    root = chain[-1]
    text = " ".join(f"{type(c).__name__} {c}" for c in chain).lower()
    for fragments, cause, fix in _CAUSES:
        if any(f in text for f in fragments):
            return StorageError(f"{where}: {cause} ({type(root).__name__}: {_first_line(root)}); {fix}")
    return StorageError(f"{where}: storage error ({type(root).__name__}: {_first_line(root)})")


def _make_parent(path: Path, url: str) -> None:
    """Create the storage file's folder, or say in one line why it cannot be made."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StorageError(f"{url}: cannot create the folder {path.parent} ({exc.strerror or exc}); pass a --storage"
                           " in a folder you can write to") from exc


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
        raise StorageError(f"study {name!r} already exists in {mask_url(url)}; continue it with 'cnnsearch study run {name}',"
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
    study.set_metric_names(["val_accuracy", "params"][: len(sp.directions)])
    study.enqueue_trial(space_mod.baseline_params(sp), user_attrs={"baseline": True})
    write_note(study, settings)
    return Handle(study, sp, TrainConfig.from_dict(sp.training), url)


def note_text(study: optuna.Study, settings: dict[str, Any]) -> str:
    """The study note shown by optuna-dashboard: space, training settings, baseline references."""
    base = baseline_trial(study)
    if base is not None:
        ua = base.user_attrs
        in_study = (f"trial {base.number}: val accuracy {ua.get('val_accuracy', float('nan')):.4f}, test accuracy"
                    f" {ua.get('test_accuracy', float('nan')):.4f}, {ua.get('params', 0):,} params, at this study's"
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
        " used to select. User attributes per trial: params, flops, test_accuracy, baseline, history.",
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
    settings = study.user_attrs.get(SETTINGS_KEY)
    if not settings:
        raise StorageError(f"study {name!r} in {mask_url(url)} was not created by cnnsearch (no '{SETTINGS_KEY}' settings);"
                           " create one with 'cnnsearch study create'")
    sp = space_mod.parse(settings["space_text"], source=f"{name} (stored space from {settings['space_source']})",
                         stored=True)
    training = TrainConfig.from_dict(settings["training"])
    if heartbeat and sp.study["heartbeat_seconds"] and isinstance(storage, optuna.storages.RDBStorage):
        storage = open_storage(url, heartbeat_s=sp.study["heartbeat_seconds"])
    sampler = make_sampler(sp, seed=sampler_seed(study, sp, seed))
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
    params: int | None
    val_accuracy: float | None
    vs_baseline_pp: float | None
    seconds: float | None
    reason: str
    done: int
    total: int
    baseline: bool


class Objective:
    """Train one trial's spec; record everything the report needs on the trial."""

    def __init__(self, handle: Handle, splits: data_mod.Splits, *, verbose: int = 0) -> None:
        self.handle = handle
        self.splits = splits
        self.verbose = verbose
        self.versions: dict[str, str] | None = None

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
        from cnnsearch._tf import keras
        from cnnsearch.train import fit, versions

        sp, cfg = self.handle.space, self.handle.training
        trial.set_user_attr("worker", worker_lease())  # who runs it: fail_stale() checks this process is alive
        is_baseline = bool(trial.user_attrs.get("baseline", False))
        trial.set_user_attr("baseline", is_baseline)
        spec, overrides = space_mod.suggest(trial, sp)
        trial.set_user_attr("spec", spec.to_dict())
        try:
            summary = summarize(spec, self.splits.input_shape, self.splits.n_classes)
        except ArchitectureError as exc:
            trial.set_user_attr("failure_kind", "invalid_architecture")
            trial.set_user_attr("fail_reason", str(exc))
            raise TrialFailed(str(exc)) from exc
        trial.set_user_attr("params", summary.params)
        trial.set_user_attr("flops", summary.flops)
        config = replace(cfg, seed=cfg.seed + trial.number, **overrides)
        history: dict[str, list[float]] = {}

        def on_epoch(epoch: int, logs: dict[str, float]) -> None:
            for k, v in logs.items():
                history.setdefault(k, []).append(float(v))

        callbacks = [interrupt.keras_callback()]
        if not is_baseline and not sp.multi_objective and sp.study["pruner"] != "none":
            keras()  # TensorFlow's quiet import first: optuna_integration would import it loudly
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
        digest = ""
        if trial.user_attrs.get("baseline") and baseline_id is None:
            saved, digest = _save_model(self.handle.url, study, trial, result.model)
            baseline_id = saved
            study.set_user_attr("baseline_weights", {"trial": trial.number, "val_accuracy": result.val_accuracy,
                                                     "artifact_id": saved, "sha256": digest})
        current = study.user_attrs.get("best_weights")
        if current and current["val_accuracy"] >= result.val_accuracy:
            return
        if saved is None:
            artifact_id, digest = _save_model(self.handle.url, study, trial, result.model, "best")
        else:
            artifact_id = saved
        # Re-read: another worker may have stored a better one meanwhile.
        current = optuna.load_study(study_name=study.study_name, storage=study._storage).user_attrs.get("best_weights")
        if current and current["val_accuracy"] >= result.val_accuracy:
            if artifact_id != saved:
                store.remove(artifact_id)
            return
        study.set_user_attr("best_weights", {"trial": trial.number, "artifact_id": artifact_id,
                                             "val_accuracy": result.val_accuracy, "sha256": digest})
        if current and current["artifact_id"] != baseline_id:
            try:
                store.remove(current["artifact_id"])
            except Exception:  # already gone: nothing to free
                pass


def _save_model(url: str, study: optuna.Study, trial: optuna.Trial, model: Any, tag: str = "baseline"
                ) -> tuple[str, str]:
    """Save ``model`` into the artifact folder; returns its artifact id and SHA-256.

    Written under a temporary name and renamed, so a failure (a full disk) never
    leaves a partial ``.keras`` file behind. A failure fails the trial with the
    reason and stops the run (:class:`~cnnsearch.errors.StorageError`).
    """
    artifact_id = f"{_safe(study.study_name)}-{tag}-trial{trial.number}-{os.getpid()}.keras"
    folder = artifact_dir(url)
    partial = folder / f".partial-{artifact_id}"  # still ends in .keras, as Keras requires
    try:
        folder.mkdir(parents=True, exist_ok=True)
        model.save(partial)
        digest = _sha256(partial)
        os.replace(partial, folder / artifact_id)
    except Exception as exc:
        partial.unlink(missing_ok=True)
        nospace = _is_enospc(exc)
        reason = (f"no space left on device ({folder})" if nospace
                  else f"cannot save the weights to {folder} ({type(exc).__name__}: {_first_line(exc)})")
        trial.set_user_attr("failure_kind", "storage")
        trial.set_user_attr("fail_reason", reason)
        fix = "free some space, then run again" if nospace else "check the folder, then run again"
        raise StorageError(f"trial {trial.number} failed: {reason}; {fix} (completed trials are intact; set"
                           f" {ARTIFACTS_ENV} to keep weights elsewhere)") from exc
    return artifact_id, digest


def _is_enospc(exc: BaseException) -> bool:
    import errno

    e: BaseException | None = exc
    while e is not None:
        if getattr(e, "errno", None) == errno.ENOSPC or "no space left" in str(e).lower():
            return True
        e = e.__cause__ or e.__context__
    return False


def _sha256(path: Path) -> str:
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def model_file(handle: Handle, which: str = "best") -> Path | None:
    """Path of the kept ``.keras`` file of the best (or ``"baseline"``) trial, if any, verified.

    Raises:
        StorageError: the file does not match the checksum stored with it (or,
            for weights kept before checksums, is not a sound zip archive).
    """
    meta = handle.study.user_attrs.get(f"{which}_weights")
    if not meta:
        return None
    path = artifact_dir(handle.url) / meta["artifact_id"]
    if not path.is_file():
        return None
    _verify_weights(path, meta, which)
    return path


def _verify_weights(path: Path, meta: dict[str, Any], which: str) -> None:
    import zipfile

    problem = ""
    if meta.get("sha256"):
        if _sha256(path) != meta["sha256"]:
            problem = "its checksum does not match the one stored when it was saved"
    else:
        try:
            with zipfile.ZipFile(path) as z:
                bad = z.testzip()
            problem = f"member {bad} is damaged" if bad else ""
        except (zipfile.BadZipFile, OSError) as exc:
            problem = f"not a readable .keras archive ({_first_line(exc)})"
    if problem:
        raise StorageError(f"the kept weights of the {which} trial {meta.get('trial')} ({path}) are corrupt: {problem};"
                           " they cannot be used: retrain the trial (e.g. cnnsearch study confirm) or restore the file")


def weights_problems(name: str, url: str | None = None) -> list[str]:
    """Why the kept weights of study ``name`` cannot be used (empty when they are fine or absent)."""
    h = load(name, url)
    problems = []
    for which in ("best", "baseline"):
        try:
            model_file(h, which)
        except StorageError as exc:
            problems.append(str(exc))
    return problems


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
    seed: int | None = None,
) -> Handle:
    """Add ``trials`` finished trials to study ``name`` (plus the baseline if it has not run yet).

    Data are loaded once for the whole run. Stops starting new trials after
    ``timeout`` seconds. A trial that fails (unbuildable spec, NaN loss) is
    recorded and the search goes on; after the study's
    ``max_consecutive_failures`` training failures in a row the run stops
    with a :class:`~cnnsearch.errors.CnnsearchError`. Ctrl-C, SIGTERM or
    SIGHUP fails the running trial with the reason "interrupted (SIGTERM)"
    (never left RUNNING) and raises :class:`~cnnsearch.errors.Interrupted`.

    ``worker=True`` is one process of :func:`run_workers`: it runs exactly
    ``trials`` trials (whichever queued ones it pops, the baseline included),
    the parent having done the baseline accounting.
    """
    if trials < 0:
        raise ConfigError(f"--trials: expected >= 0; received {trials}")
    with interrupt.handled():
        handle = _run(name, trials=trials, timeout=timeout, data_path=data_path, url=url, on_trial=on_trial,
                      verbose=verbose, worker=worker, seed=seed)
        interrupt.check()  # a signal swallowed after the last trial still ends the run as interrupted
    return handle


def _run(name: str, *, trials: int, timeout: float | None, data_path: str | None, url: str | None,
         on_trial: Callable[[TrialLine], None] | None, verbose: int, worker: bool, seed: int | None) -> Handle:
    handle = load(name, url, heartbeat=True, seed=seed)
    study, sp, cfg = handle.study, handle.space, handle.training
    ds = data_mod.load(data_path)
    splits = data_mod.split(ds, train_limit=cfg.train_limit)
    try:
        summarize(space_mod.spec_from_values(space_mod.baseline_params(sp), sp), splits.input_shape, splits.n_classes)
    except ArchitectureError as exc:
        raise DataError(f"{ds.source}: images of {splits.input_shape} are too small for the reference"
                                f" model: {exc}") from exc
    # A worker that died without a word leaves its trial RUNNING: fail it now (and re-queue it once,
    # through the heartbeat callback) rather than at the next trial start, which --trials 0 never reaches.
    optuna.storages.fail_stale_trials(study)
    if not isinstance(study._storage, optuna.storages.RDBStorage):
        fail_stale(study)  # journal files have no heartbeat: the lease of each RUNNING trial is checked instead
    total = trials if worker else trials + (1 if _ensure_baseline_queued(study, sp) else 0)
    objective = Objective(handle, splits, verbose=verbose)
    state = {"done": 0, "failures": 0, "last": "", "finished": 0, "training_failures": 0}
    limit = sp.study["max_consecutive_failures"]

    def after_trial(study: optuna.Study, t: FrozenTrial) -> None:
        state["done"] += 1
        reason = t.user_attrs.get("fail_reason") or t.system_attrs.get("fail_reason", "")
        if t.state == TrialState.FAIL and t.user_attrs.get("failure_kind") != "invalid_architecture":
            state["failures"] += 1
            state["training_failures"] += 1
            state["last"] = reason
        elif t.state != TrialState.FAIL:
            state["failures"] = 0
            state["finished"] += 1
        if t.state == TrialState.PRUNED:
            reason = f"pruned after epoch {t.user_attrs.get('epochs_run', '?')}"
        if t.user_attrs.get("baseline") and t.state == TrialState.COMPLETE:
            write_note(study, study.user_attrs[SETTINGS_KEY])  # now with the in-study baseline's numbers
        if on_trial is not None:
            on_trial(_line(study, t, reason, state["done"], total))
        if limit and state["failures"] >= limit:
            study.stop()
        interrupt.check()

    optuna.logging.set_verbosity(optuna.logging.ERROR if not verbose else optuna.logging.INFO)
    study.optimize(objective, n_trials=total, timeout=timeout, catch=(TrialFailed,), callbacks=[after_trial],
                   gc_after_trial=True)
    if limit and state["failures"] >= limit:
        raise CnnsearchError(f"stopped: {state['failures']} trials in a row failed during training (last: "
                             f"{state['last']}); check the space's ranges and [training] settings, then run again")
    if state["done"] and not state["finished"] and state["training_failures"]:
        # Every trial failed (e.g. an optimizer setting no trial can train with): not a successful run.
        raise CnnsearchError(f"every trial of this run failed ({state['done']}; last: {state['last']}); check the"
                             " space's ranges and [training] settings, then run again")
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
    seed: int | None = None,
) -> list[int]:
    """Run ``trials`` new trials of study ``name`` in ``workers`` processes on this machine.

    Each process runs a fixed share, so the study gains exactly ``trials``
    finished trials (plus the baseline if it has not run) and trial numbers
    stay unique (Optuna's storage assigns them). Each process's TensorFlow
    thread pools get ``cores // workers`` threads so the workers do not
    oversubscribe the CPU. Ctrl-C, SIGTERM or SIGHUP here is passed on to
    every worker, which fails its running trial with the signal's name; then
    :class:`~cnnsearch.errors.Interrupted` is raised here. A worker whose
    parent dies (even by SIGKILL) gets SIGTERM (Linux), so none is orphaned.

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
    # The storage URL goes by environment, not argv: a PostgreSQL password would show in `ps`.
    base_cmd = [sys.executable, "-m", "cnnsearch.cli", "study", "run", name, "--worker",
                "--threads", str(threads)]
    if timeout is not None:
        base_cmd += ["--timeout", str(timeout)]
    if data_path:
        base_cmd += ["--data", data_path]
    if quiet:
        base_cmd += ["--quiet"]
    if seed is not None:
        base_cmd += ["--seed", str(seed)]
    with interrupt.handled():
        procs: list[subprocess.Popen[bytes]] = []
        try:
            for i, n in enumerate(shares):
                if n > 0:
                    procs.append(subprocess.Popen([*base_cmd, "--trials", str(n)], preexec_fn=_die_with_parent,
                                                  env={**os.environ, WORKER_ENV: str(i + 1), STORAGE_ENV: h.url}))
            return [p.wait() for p in procs]
        except KeyboardInterrupt as exc:
            # Pass the same signal on (Ctrl-C in a terminal reaches them anyway; SIGTERM from docker stop does
            # not): each worker fails its running trial with the signal's name and exits.
            signum = exc.signum if isinstance(exc, Interrupted) else 2
            for p in procs:
                if p.poll() is None:
                    p.send_signal(signum)
            for p in procs:
                try:
                    p.wait(timeout=WORKER_STOP_S)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
            raise


def worker_lease() -> dict[str, Any]:
    """Who runs a trial: host, process id and the process's start time (so a reused PID is not taken for it)."""
    import socket

    return {"host": socket.gethostname(), "pid": os.getpid(), "started": _process_start(os.getpid())}


def _process_start(pid: int) -> str | None:
    """The kernel's start time of process ``pid`` (Linux /proc), or None where unknown."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[19]  # field 22: starttime, after the command name
    except (OSError, IndexError):
        return None


def _lease_alive(lease: dict[str, Any]) -> bool | None:
    """True/False for a lease of this machine; None for another machine's (it cannot be checked from here)."""
    import socket

    if lease.get("host") != socket.gethostname():
        return None
    pid = int(lease.get("pid", 0))
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        pass
    started = _process_start(pid)
    return started is None or lease.get("started") is None or started == lease["started"]


def fail_stale(study: optuna.Study, *, force: bool = False) -> list[int]:
    """Fail RUNNING trials whose worker is gone, re-queueing each once; returns their numbers.

    A trial's worker is gone when its lease (host, PID, process start time)
    names this machine and no such process runs. Trials of other machines are
    left alone unless ``force`` (``study fail-stale --all``: the user has made
    sure no run is active anywhere). For RDB storages Optuna's heartbeat does
    the same on its own; journal files have no heartbeat, hence this check.
    """
    failed = []
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        lease = t.user_attrs.get("worker")
        alive = _lease_alive(lease) if lease else None
        if alive or (alive is None and not force):
            continue
        who = f"process {lease['pid']} on {lease['host']}" if lease else "an unknown process"
        reason = f"stale: {who} is gone" if alive is False else f"failed by hand (study fail-stale --all; {who})"
        try:
            study._storage.set_trial_user_attr(t._trial_id, "fail_reason", reason)
            study._storage.set_trial_user_attr(t._trial_id, "failure_kind", "stale")
        except optuna.exceptions.UpdateFinishedTrialError:
            continue
        try:
            if not study._storage.set_trial_state_values(t._trial_id, state=TrialState.FAIL):
                continue
        except optuna.exceptions.UpdateFinishedTrialError:
            continue  # its worker finished it meanwhile
        failed.append(t.number)
        if not t.system_attrs.get("failed_trial"):  # re-queue once, as Optuna's heartbeat retry does
            attrs = {k: v for k, v in t.user_attrs.items() if k == "baseline"}
            study.enqueue_trial(t.params, user_attrs=attrs, skip_if_exists=False)
            queued = study.get_trials(deepcopy=False, states=(TrialState.WAITING,))[-1]
            study._storage.set_trial_system_attr(queued._trial_id, "failed_trial", t.number)
    return failed


def fail_stale_trials(name: str, url: str | None = None, *, force: bool = False) -> list[int]:
    """``study fail-stale NAME``: :func:`fail_stale` on a stored study."""
    return fail_stale(load(name, url).study, force=force)


def _die_with_parent() -> None:
    """In a worker, before exec: SIGTERM this process if the parent dies (even by SIGKILL); Linux only."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, 15)  # PR_SET_PDEATHSIG = 1, SIGTERM = 15
    except Exception:  # not Linux: a parent killed hard may leave its workers to finish their share
        pass


def _line(study: optuna.Study, t: FrozenTrial, reason: str, done: int, total: int) -> TrialLine:
    base = baseline_trial(study)
    val = t.user_attrs.get("val_accuracy") if t.state == TrialState.COMPLETE else None
    if val is None and t.state == TrialState.PRUNED and t.intermediate_values:
        val = t.intermediate_values[max(t.intermediate_values)]
    vs = None
    if val is not None and base is not None and base.user_attrs.get("val_accuracy") is not None:
        vs = 100 * (val - base.user_attrs["val_accuracy"])
    return TrialLine(number=t.number, state=t.state.name, params=t.user_attrs.get("params"), val_accuracy=val,
                     vs_baseline_pp=vs, seconds=t.user_attrs.get("seconds"), reason=reason, done=done, total=total,
                     baseline=bool(t.user_attrs.get("baseline")))


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
        "param_count": ua.get("params"),
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


def show(name: str, url: str | None = None) -> dict[str, Any]:
    """A study's settings, counts, baseline, best trial and every trial."""
    h = load(name, url)
    settings = h.study.user_attrs[SETTINGS_KEY]
    base, best = baseline_trial(h.study), best_trial(h.study)
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
        "reference_test_accuracy": REFERENCE_ACCURACY,
        "baseline_trial": base.number if base else None,
        "best_trial": best.number if best else None,
        "best_weights": h.study.user_attrs.get("best_weights"),
        "trials": [trial_record(t) for t in h.study.get_trials(deepcopy=False)],
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
        source = model_file(h, "best")  # verified against its stored checksum
        if source is None:
            raise StorageError(f"study {name!r}: weights {weights['artifact_id']} missing from"
                               f" {artifact_dir(h.url)}; retrain the trial or point {ARTIFACTS_ENV} at the folder")
        tmp = export.with_name(export.name + ".tmp")
        try:
            export.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, tmp)
            os.replace(tmp, export)
        except OSError as exc:
            tmp.unlink(missing_ok=True)  # never leave a partial copy (it would keep a full disk full)
            cause = "no space left on device" if _is_enospc(exc) else (exc.strerror or str(exc))
            raise CnnsearchError(f"--export {export}: cannot write the model ({cause}); nothing was written:"
                                 " free some space or pick another place") from exc
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


__all__ = ["Handle", "Objective", "TrialLine", "baseline_trial", "best", "best_trial", "counts", "create", "delete",
           "load", "note_text", "open_storage", "resolve_storage", "run", "run_workers", "show", "summaries",
           "trial_record", "write_note"]
