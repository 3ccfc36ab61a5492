"""One queued trial, one worker (issue 26 item 1): N processes x M trials on every storage cnnsearch offers.

Optuna's own storage tests run 8 x 20; here 4 x 5 with a trivial objective (no TensorFlow), small enough
for a loaded 2-core machine. Every trial is queued first, so every pop is the contended "take a WAITING
trial" path that, on SQLite without a write lock, handed one trial to two processes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from cnnsearch.records.storage import open_storage

N_PROCESSES = 4
M_TRIALS = 5

#: One worker: open the storage through cnnsearch, start together with the others, run M queued trials.
WORKER = textwrap.dedent("""
    import json, os, sys, time
    from pathlib import Path
    import optuna
    from cnnsearch.records.storage import open_storage

    url, go, out, m = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3]), int(sys.argv[4])
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    study = optuna.load_study(study_name="stress", storage=open_storage(url))
    while not go.exists():  # every process ready before any pops: the pops overlap
        time.sleep(0.01)
    ran = []

    def objective(trial):
        k = trial.suggest_int("k", 0, 10**6)  # the queued value
        ran.append(k)
        return float(k)

    study.optimize(objective, n_trials=m)
    out.write_text(json.dumps(ran))
""")


def _stress(url: str, tmp_path: Path) -> None:
    storage = open_storage(url, create=True)
    study = optuna.create_study(study_name="stress", storage=storage)
    total = N_PROCESSES * M_TRIALS
    for k in range(total):
        study.enqueue_trial({"k": k})
    go = tmp_path / "go"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    procs = [subprocess.Popen([sys.executable, "-c", WORKER, url, str(go), str(tmp_path / f"ran{i}.json"),
                               str(M_TRIALS)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
             for i in range(N_PROCESSES)]
    try:
        go.touch()
        results = [p.communicate(timeout=600) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    for p, (_, err) in zip(procs, results):
        assert p.returncode == 0 and "Traceback" not in err, err
    ran = [k for i in range(N_PROCESSES) for k in json.loads((tmp_path / f"ran{i}.json").read_text())]
    assert sorted(ran) == list(range(total)), "a queued trial ran twice, or not at all"
    trials = optuna.load_study(study_name="stress", storage=open_storage(url)).get_trials()
    assert len(trials) == total
    assert all(t.state == TrialState.COMPLETE for t in trials)
    assert sorted(t.params["k"] for t in trials) == list(range(total))


@pytest.mark.parametrize("kind", ["sqlite", "journal"])
def test_queued_trials_run_once_each(kind: str, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'stress.db'}" if kind == "sqlite" else f"journal://{tmp_path / 'stress.log'}"
    _stress(url, tmp_path)


@pytest.mark.postgres
def test_queued_trials_run_once_each_on_postgres(postgres_url: str, tmp_path: Path) -> None:
    import sqlalchemy

    # A fresh database per run: the session's server is shared with other tests.
    name = f"stress{os.getpid()}"
    admin = sqlalchemy.create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as con:
        con.exec_driver_sql(f"DROP DATABASE IF EXISTS {name}")
        con.exec_driver_sql(f"CREATE DATABASE {name}")
    admin.dispose()
    _stress(postgres_url.rsplit("/", 1)[0] + f"/{name}", tmp_path)
