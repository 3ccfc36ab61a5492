"""Optuna storages by URL: resolving, opening without creating, and the best-weights artifact store.

The only module that turns a ``--storage`` URL into an Optuna storage; the
dashboard imports this and nothing else of the study layer.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from pathlib import Path
from typing import Any, Iterator

import optuna

from cnnsearch.errors import ConfigError, StorageError

#: Where studies live when neither --storage nor $CNNSEARCH_STORAGE says (relative to the working folder).
DEFAULT_STORAGE = "sqlite:///studies/cnnsearch.db"
STORAGE_ENV = "CNNSEARCH_STORAGE"
#: Folder for the best trial's weights; default: beside the SQLite or journal file, else studies/artifacts.
ARTIFACTS_ENV = "CNNSEARCH_ARTIFACTS"
#: SQLite busy timeout, seconds: how long a writer waits for another's lock before "database is locked".
SQLITE_TIMEOUT_S = 60


def resolve_storage(url: str | None = None) -> str:
    """``--storage`` > ``$CNNSEARCH_STORAGE`` > ``sqlite:///studies/cnnsearch.db``."""
    return url or os.environ.get(STORAGE_ENV) or DEFAULT_STORAGE


def sqlite_path(url: str) -> Path | None:
    """The database file of a ``sqlite:///`` URL; None for other URLs."""
    if not url.startswith("sqlite:"):
        return None
    rest = url[len("sqlite:"):]
    if not rest.startswith("///"):
        raise ConfigError(f"--storage: expected sqlite:///relative/path.db or sqlite:////absolute/path.db;"
                          f" received {url!r}")
    return Path(rest[3:])


def journal_path(url: str) -> Path | None:
    """The journal file of a ``journal://`` URL; None for other URLs."""
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
    journal = journal_path(url)
    if journal is not None:
        if not create and not journal.is_file():
            raise StorageError(f"{url}: no such journal file; create a study first (cnnsearch study create NAME"
                               f" --space FILE --storage {url})")
        journal.parent.mkdir(parents=True, exist_ok=True)
        from optuna.storages.journal import JournalFileBackend, JournalStorage

        return JournalStorage(JournalFileBackend(str(journal)))
    db = sqlite_path(url)
    engine_kwargs: dict[str, Any] = {}
    if db is not None:
        if not create and not db.is_file():
            raise StorageError(f"{url}: no such database file ({db}); create a study first (cnnsearch study create"
                               f" NAME --space FILE --storage {url}) or pass the right --storage")
        db.parent.mkdir(parents=True, exist_ok=True)
        engine_kwargs = {"connect_args": {"timeout": SQLITE_TIMEOUT_S}}
    hb: dict[str, Any] = {}
    try:
        with experimental_ok():  # the heartbeat's retry callback
            if heartbeat_s:
                hb = {"heartbeat_interval": heartbeat_s, "grace_period": 2 * heartbeat_s,
                      "heartbeat_stale_trial_callback": optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=1)}
            return optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs, **hb)
    except ImportError as exc:
        raise StorageError(f"{url}: the database driver is not installed ({exc}); for PostgreSQL:"
                           " pip install 'cnnsearch[postgres]'") from exc
    except Exception as exc:  # SQLAlchemy's OperationalError and friends: unreachable or refused
        raise StorageError(f"{url}: cannot open the storage ({type(exc).__name__}: {first_line(exc)})") from exc


def artifact_dir(url: str | None = None) -> Path:
    """Folder of the best-weights artifact store for a storage URL."""
    if os.environ.get(ARTIFACTS_ENV):
        return Path(os.environ[ARTIFACTS_ENV])
    url = resolve_storage(url)
    f = sqlite_path(url) or journal_path(url)
    if f is not None:
        return f.with_name(f.stem + "-artifacts")
    return Path("studies") / "artifacts"


def artifact_store(url: str, *, create: bool = True) -> Any:
    """The artifact store of a storage URL (a folder; made if ``create``); None if absent and not ``create``."""
    from optuna.artifacts import FileSystemArtifactStore

    folder = artifact_dir(url)
    if not create and not folder.is_dir():
        return None
    folder.mkdir(parents=True, exist_ok=True)
    return FileSystemArtifactStore(str(folder))


@contextlib.contextmanager
def experimental_ok() -> Iterator[None]:
    """Silence Optuna's ExperimentalWarning inside this block only.

    The features used on purpose (heartbeat retry, TPE groups, metric names) are
    marked experimental; their warnings would bury the progress lines. Scoped,
    so a program that imports cnnsearch keeps its own warnings.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        yield


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (its type's name if empty), for one-line errors."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


__all__ = ["artifact_dir", "artifact_store", "experimental_ok", "first_line", "journal_path", "open_storage", "resolve_storage",
           "sqlite_path"]
