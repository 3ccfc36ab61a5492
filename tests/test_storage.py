"""Storages under fault: not Optuna's, read-only, full, corrupt, unreachable; passwords never printed."""

from __future__ import annotations

import hashlib
import socket
import sqlite3
import threading
import time
from pathlib import Path
from typing import Iterator

import pytest
from click.testing import CliRunner, Result

from cnnsearch.records import storage
from cnnsearch.search import study as study_mod
from cnnsearch.cli import main
from conftest import SmallFs


def cli(*args: str) -> Result:
    return CliRunner().invoke(main, list(args))


def one_error_line(r: Result, *needles: str, code: int = 1) -> str:
    assert r.exit_code == code, r.output
    assert r.exception is None or isinstance(r.exception, SystemExit), r.exception
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("cnnsearch: error:"), r.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# --- item 9: read commands never create tables -------------------------------------------------------------

def _other_apps_db(path: Path) -> Path:
    with sqlite3.connect(path) as con:
        con.execute("CREATE TABLE invoices (id INTEGER PRIMARY KEY, total REAL)")
        con.execute("INSERT INTO invoices (total) VALUES (9.5)")
    return path


@pytest.mark.parametrize("kind", ["empty", "other_app"])
@pytest.mark.parametrize("command", [["study", "list"], ["study", "show", "x"], ["study", "run", "x"],
                                     ["study", "delete", "x", "--yes"], ["report", "x"], ["dashboard"]],
                         ids=lambda c: "_".join(c[:2]))
def test_read_commands_never_create_tables(tmp_path: Path, kind: str, command: list[str]) -> None:
    db = tmp_path / "app.db"
    if kind == "empty":
        db.touch()
    else:
        _other_apps_db(db)
    before = digest(db)
    r = cli(*command, "--storage", f"sqlite:///{db}")
    one_error_line(r, "not a cnnsearch/Optuna storage", str(db))
    assert digest(db) == before  # not one byte written
    with sqlite3.connect(db) as con:
        tables = {row[0] for row in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert tables == (set() if kind == "empty" else {"invoices"})


# --- item 5: storage errors after the database opens --------------------------------------------------------

@pytest.fixture
def made(tmp_path: Path, tiny_space: Path) -> Iterator[tuple[Path, str]]:
    db = tmp_path / "s.db"
    url = f"sqlite:///{db}"
    study_mod.create("s", tiny_space, url)
    yield db, url


def test_partly_corrupt_database_is_one_line(made: tuple[Path, str]) -> None:
    db, url = made
    blob = bytearray(db.read_bytes())
    page = 4096
    assert len(blob) > 4 * page
    for start in range(page, len(blob), page):  # every page but the first (the schema) overwritten
        blob[start:start + 64] = b"\xa5" * 64
    db.write_bytes(bytes(blob))
    line = one_error_line(cli("study", "show", "s", "--storage", url), str(db))
    assert "corrupt" in line or "not a cnnsearch/Optuna storage" in line
    assert "exceeding max length" not in line


def test_read_only_database_is_one_line(made: tuple[Path, str], tmp_path: Path, small_fs: SmallFs,
                                        tiny_npz: Path) -> None:
    db, _ = made
    ro = small_fs.path / "s.db"
    ro.write_bytes(db.read_bytes())
    small_fs.remount("ro")
    url = f"sqlite:///{ro}"
    assert cli("study", "show", "s", "--storage", url).exit_code == 0  # reading works
    before = digest(ro)
    r = cli("study", "run", "s", "--trials", "1", "--storage", url, "--data", str(tiny_npz))
    one_error_line(r, str(ro), "read-only")
    assert digest(ro) == before


def test_full_disk_under_the_database_is_one_line(made: tuple[Path, str], small_fs: SmallFs,
                                                  tiny_space: Path) -> None:
    db, _ = made
    full = small_fs.path / "s.db"
    full.write_bytes(db.read_bytes())
    url = f"sqlite:///{full}"
    small_fs.fill()
    r = cli("study", "create", "another", "--space", str(tiny_space), "--storage", url)
    one_error_line(r, str(full), "no space left")
    assert "exceeding max length" not in r.stderr
    (small_fs.path / "filler").unlink()
    doc = cli("study", "show", "s", "--storage", url)
    assert doc.exit_code == 0, doc.output  # nothing damaged


# --- item 15: PostgreSQL connect timeout and passwords ------------------------------------------------------

@pytest.fixture
def silent_server() -> Iterator[int]:
    """A TCP port that accepts connections and never says a word (a hung database host)."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(16)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        srv.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(srv.accept()[0])
            except OSError:
                pass

    t = threading.Thread(target=accept, daemon=True)
    t.start()
    yield srv.getsockname()[1]
    stop.set()
    t.join(5)
    for c in held:
        c.close()
    srv.close()


def test_hung_postgres_host_times_out_and_password_is_masked(silent_server: int) -> None:
    pytest.importorskip("psycopg")
    url = f"postgresql+psycopg://alice:s3cret-pw@127.0.0.1:{silent_server}/db?connect_timeout=2"
    start = time.monotonic()
    r = cli("study", "list", "--storage", url)
    took = time.monotonic() - start
    line = one_error_line(r, "cannot be reached")
    assert took < 60, took  # the URL's 2 s, not minutes
    assert "s3cret-pw" not in r.output and "***" in line


def test_connect_timeout_default_and_override() -> None:
    assert storage.PG_CONNECT_TIMEOUT_S == 10
    kwargs = storage.engine_kwargs("postgresql+psycopg://u:p@db.example/x")
    assert kwargs["connect_args"]["connect_timeout"] == 10
    assert "connect_args" not in storage.engine_kwargs("postgresql+psycopg://u:p@db/x?connect_timeout=3")


def test_mask_url() -> None:
    assert storage.mask_url("postgresql+psycopg://bob:pa%40ss@h:5432/d") == "postgresql+psycopg://bob:***@h:5432/d"
    assert storage.mask_url("sqlite:///studies/x.db") == "sqlite:///studies/x.db"
    assert storage.mask_url("journal://a@b.log") == "journal://a@b.log"
