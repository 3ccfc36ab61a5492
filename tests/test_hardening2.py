"""Hardening, round two (issue 26): each test names its item and fails on the code before the fix."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from cnnsearch.cli import main
from cnnsearch.records import storage
from cnnsearch.search import study as study_mod

ROOT = Path(__file__).resolve().parents[1]


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


# --- item 3: no password in any output; "authentication failed" ----------------------------------------

@pytest.mark.parametrize("url, secret", [
    ("postgresql+psycopg://bob:p@ss@db.example:5432/d", "ss@"),  # a raw @: SQLAlchemy split it at the first
    ("postgresql://bob:a/b@c@db.example/d", "a/b"),
    ("postgresql://bob@db.example/d?sslmode=require&password=hunter2", "hunter2"),
])
def test_mask_url_hides_the_whole_password(url: str, secret: str) -> None:
    shown = storage.mask_url(url)
    assert secret not in shown and "***" in shown and "db.example" in shown, shown


def test_wrong_password_says_authentication_failed() -> None:
    import sqlalchemy.exc

    url = "postgresql+psycopg://bob:pa@ss@db.example/d"
    driver = Exception('connection failed: connection to server at "10.0.0.1", port 5432 failed: FATAL:  password'
                       ' authentication failed for user "bob" (host ss@db.example)')
    exc = sqlalchemy.exc.OperationalError("SELECT 1", {}, driver)
    said = str(storage.storage_error(exc, url))
    assert "authentication failed" in said and "cannot be reached" not in said, said
    assert "pa@ss" not in said and "ss@db" not in said, said


@pytest.mark.postgres
def test_report_and_outputs_carry_no_password(postgres_url: str, tiny_space: Path, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    # The test server trusts every local user: any password connects, so the URL can carry one.
    secret = "Zq7%40pw"  # percent-encoded "Zq7@pw"
    url = postgres_url.replace("postgres@", f"postgres:{secret}@", 1)
    monkeypatch.setenv("CNNSEARCH_ARTIFACTS", str(tmp_path / "artifacts"))
    name = f"pw{os.getpid()}"
    outputs = [cli("study", "create", name, "--space", str(tiny_space), "--storage", url)]
    outputs.append(cli("study", "show", name, "--json", "--storage", url))
    outputs.append(cli("study", "list", "--storage", url))
    outputs.append(cli("report", name, "--no-models", "--out", str(tmp_path / "r.html"), "--storage", url))
    for r in outputs:
        assert r.exit_code == 0, r.output
        assert "Zq7" not in r.output, r.output
    html = (tmp_path / "r.html").read_text()
    assert "Zq7" not in html and "***" in html
    study_mod.delete(name, url)


# --- item 17: small ones ---------------------------------------------------------------------------------

@pytest.mark.parametrize("url", ["sqlite:", "sqlite:/x.db", "journal:x.log"])
def test_short_storage_url_says_the_expected_form(url: str) -> None:
    line = one_error_line(cli("study", "list", "--storage", url), "expected", code=2)
    assert "sqlite:///sqlite:" not in line and "journal://journal:" not in line, line
