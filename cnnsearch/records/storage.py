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

from cnnsearch.ground.errors import ConfigError, StorageError
from cnnsearch.records.secrets import mask_url, scrub, secrets_of  # noqa: F401 (re-exported: callers import here)

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
    shown = mask_url(url)
    _check_form(url)
    _opened[:] = [url]
    journal = journal_path(url)
    if journal is not None:
        if not create and not journal.is_file():
            raise StorageError(f"{url}: no such journal file; create a study first (cnnsearch study create NAME"
                               f" --space FILE --storage {url})")
        _make_parent(journal, url)
        from optuna.storages.journal import JournalFileBackend, JournalStorage

        return JournalStorage(JournalFileBackend(str(journal)))
    db = sqlite_path(url)
    if db is not None:
        if not create and not db.is_file():
            raise StorageError(f"{url}: no such database file ({db}); create a study first (cnnsearch study create"
                               f" NAME --space FILE --storage {url}) or pass the right --storage")
        if not create:
            _check_sqlite_is_optuna(db, url)
        _make_parent(db, url)
    hb: dict[str, Any] = {}
    try:
        with experimental_ok():  # the heartbeat's retry callback
            if heartbeat_s:
                hb = {"heartbeat_interval": heartbeat_s, "grace_period": 2 * heartbeat_s,
                      "heartbeat_stale_trial_callback": optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=1)}
            # Only `study create` may add Optuna's tables: read commands never write to a database.
            rdb = optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs(url), skip_table_creation=not create,
                                             **hb)
        if db is not None:
            serialise_sqlite(rdb.engine)
        return rdb
    except ImportError as exc:
        raise StorageError(f"{shown}: the database driver is not installed ({exc}); for PostgreSQL:"
                           " pip install 'cnnsearch[postgres]'") from exc
    except Exception as exc:  # SQLAlchemy's OperationalError and friends: unreachable, refused, not Optuna's
        explained = storage_error(exc, url)
        raise (explained or StorageError(f"{shown}: cannot open the storage ({type(exc).__name__}:"
                                         f" {scrub(first_line(exc), url)})")) from exc


def serialise_sqlite(engine: Any) -> None:
    """Make every transaction on this SQLite engine take the write lock first (``BEGIN IMMEDIATE``).

    Why: Python's sqlite3 driver opens a transaction only at the first write, so Optuna's "pop a
    WAITING trial" (read its state, then set it RUNNING) runs its read outside any transaction: two
    processes both read WAITING, both set RUNNING, and one trial runs twice (issue 26; 3 runs in 3 of
    tests/test_workers_stress.py's 4 x 5 on SQLite before this). With ``BEGIN IMMEDIATE`` the read and
    the write are one transaction holding SQLite's single write lock, so the second process waits
    (up to :data:`SQLITE_TIMEOUT_S`) and then sees RUNNING. PostgreSQL has row locks (Optuna's
    ``SELECT ... FOR UPDATE``) and journal files their own lock, so only SQLite needs this. The recipe
    is SQLAlchemy's own for pysqlite ("Serializable isolation / Savepoints / Transactional DDL").
    """
    from sqlalchemy import event

    def on_connect(dbapi_connection: Any, record: Any) -> None:
        dbapi_connection.isolation_level = None  # the driver's own BEGIN off: the listener below emits it

    def on_begin(connection: Any) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    event.listen(engine, "connect", on_connect)
    event.listen(engine, "begin", on_begin)
    engine.dispose()  # connections pooled while Optuna opened the storage predate the listeners


def _check_form(url: str) -> None:
    """A ConfigError for a URL of no known form: a bare path, or sqlite:/journal: without their slashes."""
    if url.startswith("sqlite:"):
        sqlite_path(url)  # sqlite: or sqlite:/x: says which form is expected, not sqlite:///sqlite:
    if url.startswith("journal:") and not url.startswith("journal://"):
        raise ConfigError(f"--storage: expected journal://relative/path.log or journal:///absolute/path.log;"
                          f" received {url!r}")
    if "://" not in url:
        raise ConfigError(f"--storage: expected a storage URL; received {mask_url(url)!r}; for a SQLite file use"
                          f" sqlite:///{url}, for a journal file journal://{url}")


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
    (("password authentication failed", "authentication failed", "no password supplied", "access denied for user",
      "fe_sendauth"), "authentication failed (wrong user name or password)",
     "check the user and password in the storage URL (a password with @ : / or % must be percent-encoded)"),
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
    db = sqlite_path(url) if url.startswith("sqlite:") else None
    where = f"{mask_url(url)}" + (f" ({db})" if db is not None else "")
    root = chain[-1]
    text = " ".join(f"{type(c).__name__} {c}" for c in chain).lower()
    said = scrub(first_line(root), url)  # a driver may echo the host part of a badly split URL
    for fragments, cause, fix in _CAUSES:
        if any(f in text for f in fragments):
            return StorageError(f"{where}: {cause} ({type(root).__name__}: {said}); {fix}")
    return StorageError(f"{where}: storage error ({type(root).__name__}: {said})")


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


def is_enospc(exc: BaseException) -> bool:
    """Is ``exc`` (or an exception it was raised from) "no space left on device"?"""
    import errno

    e: BaseException | None = exc
    while e is not None:
        if getattr(e, "errno", None) == errno.ENOSPC or "no space left" in str(e).lower():
            return True
        e = e.__cause__ or e.__context__
    return False


def sha256(path: Path) -> str:
    """Hex SHA-256 of a file: stored with kept weights, checked on every read."""
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def artifact_path(url: str, artifact_id: Any) -> Path | None:
    """The file of ``artifact_id`` in the artifact folder; None for an id that would lead outside it.

    Ids come from the database, which another tool (or a person) may have edited: ``../../etc/passwd``,
    an absolute path or a symlink out must never be read, copied or deleted.
    """
    if not isinstance(artifact_id, str) or not artifact_id or "/" in artifact_id or "\\" in artifact_id \
            or artifact_id in (".", ".."):
        return None
    folder = artifact_dir(url).resolve()
    path = (folder / artifact_id).resolve()
    return path if path.parent == folder else None


def kept_weights(url: str, meta: dict[str, Any] | None, which: str = "best") -> Path | None:
    """The kept ``.keras`` file described by ``meta`` (a study's ``best_weights``), verified; None if absent.

    Raises:
        StorageError: the file does not match the checksum stored with it (or,
            for weights kept before checksums, is not a sound zip archive).
    """
    import zipfile

    if not meta:
        return None
    path = artifact_path(url, meta.get("artifact_id"))
    if path is None:
        raise StorageError(f"the kept weights of the {which} trial {meta.get('trial')} are named"
                           f" {str(meta.get('artifact_id'))[:80]!r}, which is not a file of the artifact folder"
                           f" {artifact_dir(url)} (the database was edited?); they are not read: retrain the trial")
    if not path.is_file():
        return None
    problem = ""
    if meta.get("sha256"):
        if sha256(path) != meta["sha256"]:
            problem = "its checksum does not match the one stored when it was saved"
    else:
        try:
            with zipfile.ZipFile(path) as z:
                bad = z.testzip()
            problem = f"member {bad} is damaged" if bad else ""
        except (zipfile.BadZipFile, OSError) as exc:
            problem = f"not a readable .keras archive ({first_line(exc)})"
    if problem:
        raise StorageError(f"the kept weights of the {which} trial {meta.get('trial')} ({path}) are corrupt: {problem};"
                           " they cannot be used: retrain the trial (e.g. cnnsearch study confirm) or restore the file")
    return path


__all__ = ["artifact_dir", "artifact_path", "artifact_store", "engine_kwargs", "experimental_ok", "first_line",
           "is_enospc", "journal_path", "kept_weights", "mask_url", "open_storage", "resolve_storage", "scrub",
           "secrets_of", "serialise_sqlite", "sha256", "sqlite_path", "storage_error"]
