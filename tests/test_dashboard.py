from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from click.testing import CliRunner

from cnnsearch import runner
from cnnsearch import study as study_mod
from cnnsearch.cli import main


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def get_json(url: str, timeout: float = 30) -> object:
    deadline = time.time() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5) as r:
                return json.loads(r.read())
        except OSError:
            if time.time() > deadline:
                raise
            time.sleep(0.3)


@pytest.fixture
def finished_study(tmp_path: Path, tiny_space: Path, tiny_npz: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    url = f"sqlite:///{tmp_path / 'dash.db'}"
    monkeypatch.setenv("CNNSEARCH_DATA", str(tiny_npz))
    study_mod.create("watched", tiny_space, url)
    runner.run("watched", trials=2, url=url)
    return url


def test_dashboard_serves_study_trials_and_note(finished_study: str) -> None:
    port = free_port()
    p = subprocess.Popen([sys.executable, "-m", "cnnsearch.cli", "dashboard", "--storage", finished_study,
                          "--port", str(port)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        studies = get_json(f"http://127.0.0.1:{port}/api/studies")["study_summaries"]  # type: ignore[index]
        assert [s["study_name"] for s in studies] == ["watched"]
        detail = get_json(f"http://127.0.0.1:{port}/api/studies/{studies[0]['study_id']}?after=0")
        trials = detail["trials"]  # type: ignore[index]
        assert len(trials) == 3
        base = trials[0]
        attrs = {a["key"]: a["value"] for a in base["user_attrs"]}
        assert attrs["baseline"] == "True"  # optuna-dashboard shows attribute values as text
        for key in ("param_count", "flops", "test_accuracy"):
            assert key in attrs
        note = detail["note"]["body"]  # type: ignore[index]
        assert "99.15%" in note and "in-study baseline" in note and "trial 0: val accuracy" in note
        assert "conv1_filters" in note  # the space
    finally:
        p.send_signal(2)
        out, err = p.communicate(timeout=30)
    assert "optuna-dashboard on http://127.0.0.1:" in err
    assert p.returncode == 0, err


def test_dashboard_never_creates_a_database(tmp_path: Path) -> None:
    db = tmp_path / "absent.db"
    r = CliRunner().invoke(main, ["dashboard", "--storage", f"sqlite:///{db}", "--port", str(free_port())])
    assert r.exit_code == 1 and "no such database file" in r.stderr and not db.exists()
    r = CliRunner().invoke(main, ["dashboard", "--storage", str(db)])
    assert r.exit_code == 2 and "sqlite:///" in r.stderr and not db.exists()


def test_dashboard_port_in_use(finished_study: str) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        r = CliRunner().invoke(main, ["dashboard", "--storage", finished_study, "--port", str(port)])
    assert r.exit_code == 1 and "already in use" in r.stderr


def test_workers_on_sqlite_with_a_reader(tmp_path: Path, tiny_space: Path, tiny_npz: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"sqlite:///{tmp_path / 'w.db'}"
    monkeypatch.setenv("CNNSEARCH_DATA", str(tiny_npz))
    study_mod.create("par", tiny_space, url)
    p = subprocess.Popen([sys.executable, "-m", "cnnsearch.cli", "study", "run", "par", "--trials", "6",
                          "--workers", "2", "--storage", url, "--no-report"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True, env={**os.environ})
    polls = 0
    while p.poll() is None:  # a reader polling the same file while the workers write
        json.loads(CliRunner().invoke(main, ["study", "show", "par", "--json", "--storage", url]).stdout)
        polls += 1
        time.sleep(0.2)
    out, err = p.communicate()
    assert p.returncode == 0, err
    assert "database is locked" not in err and polls > 3
    trials = study_mod.load("par", url).study.get_trials()
    assert len(trials) == 7  # the baseline + exactly 6
    assert sorted(t.number for t in trials) == list(range(7))
    assert sum(bool(t.user_attrs.get("baseline")) for t in trials) == 1
    assert all(t.state.name in ("COMPLETE", "FAIL", "PRUNED") for t in trials)
    assert len({os.path.basename(line.split()[1]) for line in err.splitlines() if line.startswith("worker ")}) == 2
