"""Many machines: workers on one real PostgreSQL server (started by the postgres_url fixture)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from click.testing import CliRunner
from optuna.trial import TrialState

from cnnsearch.search import runner
from cnnsearch.search import study as study_mod
from cnnsearch.cli import main
from conftest import TINY_SPACE

pytestmark = pytest.mark.postgres


@pytest.fixture
def pg_env(postgres_url: str, tiny_npz: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    env = {"CNNSEARCH_STORAGE": postgres_url, "CNNSEARCH_DATA": str(tiny_npz),
           "CNNSEARCH_ARTIFACTS": str(tmp_path / "artifacts")}
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    return env


def test_every_command_works_on_postgres(pg_env: dict[str, str], tiny_space: Path, tmp_path: Path) -> None:
    r = CliRunner().invoke(main, ["study", "create", "pgcmd", "--space", str(tiny_space)])
    assert r.exit_code == 0, r.output
    assert CliRunner().invoke(main, ["study", "run", "pgcmd", "--trials", "1", "--no-report"]).exit_code == 0
    names = [row["name"] for row in json.loads(CliRunner().invoke(main, ["study", "list", "--json"]).stdout)]
    assert "pgcmd" in names
    assert len(json.loads(CliRunner().invoke(main, ["study", "show", "pgcmd", "--json"]).stdout)["trials"]) == 2
    r = CliRunner().invoke(main, ["study", "best", "pgcmd", "--export", str(tmp_path / "m.keras")])
    assert r.exit_code == 0, r.output
    assert CliRunner().invoke(main, ["study", "delete", "pgcmd", "--yes"]).exit_code == 0


def test_four_workers_exact_trials(pg_env: dict[str, str], tiny_space: Path) -> None:
    study_mod.create("pg4", tiny_space)
    r = subprocess.run([sys.executable, "-m", "cnnsearch.cli", "study", "run", "pg4", "--trials", "20",
                        "--workers", "4", "--quiet", "--no-report"], capture_output=True, text=True, env={**os.environ, **pg_env},
                       timeout=900)
    assert r.returncode == 0, r.stderr
    trials = study_mod.load("pg4").study.get_trials()
    assert len(trials) == 21  # the baseline + exactly 20
    assert sorted(t.number for t in trials) == list(range(21))
    assert all(t.state in (TrialState.COMPLETE, TrialState.FAIL, TrialState.PRUNED) for t in trials)
    assert sum(bool(t.user_attrs.get("baseline")) for t in trials) == 1


def test_killed_worker_trial_is_finished_by_another(pg_env: dict[str, str], tmp_path: Path) -> None:
    f = tmp_path / "hb.toml"
    f.write_text(TINY_SPACE.format(epochs=150, heartbeat=1).replace("[3, 13]", "[3]"))
    study_mod.create("pgkill", f)
    url = pg_env["CNNSEARCH_STORAGE"]
    runner.run("pgkill", trials=0)  # the baseline first, so both machines run searched trials
    cmd = [sys.executable, "-m", "cnnsearch.cli", "study", "run", "pgkill", "--quiet", "--no-report"]
    env = {**os.environ, **pg_env}
    victim = subprocess.Popen([*cmd, "--trials", "1"], env=env, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    target = None
    while target is None and time.time() < deadline:
        running = optuna.load_study(study_name="pgkill", storage=url).get_trials(states=(TrialState.RUNNING,))
        target = next((t.number for t in running if study_mod.trial_attr(t, "versions")), None)
        time.sleep(0.2)
    assert target is not None
    time.sleep(1.5)
    victim.send_signal(signal.SIGKILL)
    victim.wait(30)
    time.sleep(2.5)  # past the grace period: the next trial start anywhere fails and re-queues it
    survivor = subprocess.run([*cmd, "--trials", "2"], env=env, capture_output=True, text=True, timeout=300)
    assert survivor.returncode == 0, survivor.stderr
    trials = optuna.load_study(study_name="pgkill", storage=url).get_trials()
    assert trials[target].state == TrialState.FAIL
    retry = [t for t in trials if t.system_attrs.get("failed_trial") == target]
    assert len(retry) == 1 and retry[0].state == TrialState.COMPLETE
    assert retry[0].params == trials[target].params
    assert not [t for t in trials if t.state == TrialState.RUNNING]
