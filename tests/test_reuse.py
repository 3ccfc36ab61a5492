"""Issue 12 lever 3: a study's baseline reuses a finished identical baseline from the same storage."""

from __future__ import annotations


import os
import re
from pathlib import Path

import numpy as np
import optuna
import pytest
from click.testing import CliRunner
from optuna.trial import TrialState

from cnnsearch.records import storage
from cnnsearch.search import study as study_mod
from cnnsearch.cli import main
from conftest import TINY_SPACE, make_tiny


def _baseline(name: str, url: str) -> optuna.trial.FrozenTrial:
    t = study_mod.baseline_trial(study_mod.load(name, url).study)
    assert t is not None, f"{name}: no COMPLETE baseline"
    return t


def test_second_study_reuses_the_baseline_and_others_train_their_own(
        tmp_path: Path, tiny_npz: Path, tiny_space: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"sqlite:///{tmp_path / 'r.db'}"
    monkeypatch.setenv("CNNSEARCH_STORAGE", url)
    monkeypatch.setenv("CNNSEARCH_DATA", str(tiny_npz))

    def run(name: str, space: Path, data: Path = tiny_npz) -> str:
        assert CliRunner().invoke(main, ["study", "create", name, "--space", str(space)]).exit_code == 0
        r = CliRunner().invoke(main, ["study", "run", name, "--trials", "0", "--no-report", "--data", str(data)])
        assert r.exit_code == 0, r.output
        return r.stderr

    err = run("first", tiny_space)
    # Issue 12 item 6: the first line names the device TensorFlow trains on (here a CPU: model and threads).
    model = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                 if line.startswith("model name"))
    cores = len(os.sched_getaffinity(0))
    assert err.splitlines()[0] == f"training on CPU {' '.join(model.split())}, {cores} thread{'s' * (cores != 1)}"
    first = _baseline("first", url)
    assert "reused_from" not in first.user_attrs and first.user_attrs["data_sha256"]
    assert study_mod.trial_attr(first, "training")["epochs"] == 2

    # Same spec, training settings, seed and data: no training at all (fit would raise).
    import cnnsearch.model.train as train_mod

    def no_training(*args: object, **kwargs: object) -> None:
        raise AssertionError("the reused baseline was trained again")

    with monkeypatch.context() as m:
        m.setattr(train_mod, "fit", no_training)
        err = run("second", tiny_space)
    assert "reused from study 'first' trial 0, not trained again" in err
    second = _baseline("second", url)
    assert second.user_attrs["reused_from"] == {"study": "first", "trial": 0}
    assert second.values == first.values
    for key in ("history", "val_accuracy", "test_accuracy", "test_loss", "param_count", "flops", "epoch_seconds",
                "versions", "spec", "training", "data_sha256"):
        assert study_mod.trial_attr(second, key) == study_mod.trial_attr(first, key) is not None, key

    # Its weights are a copy: the report keeps working after the first study is deleted.
    h2 = study_mod.load("second", url)
    kept = h2.study.user_attrs["baseline_weights"]
    assert kept["trial"] == second.number and "second-baseline-trial0" in kept["artifact_id"]
    assert h2.study.user_attrs["best_weights"]["artifact_id"] == kept["artifact_id"]
    study_mod.delete("first", url)
    import keras

    model = keras.models.load_model(storage.artifact_dir(url) / kept["artifact_id"])
    assert model.count_params() == second.user_attrs["param_count"]

    # Another fidelity (3 epochs) trains its own baseline ...
    other_epochs = tmp_path / "three.toml"
    other_epochs.write_text(TINY_SPACE.format(epochs=3, heartbeat=60))
    run("three-epochs", other_epochs)
    assert "reused_from" not in _baseline("three-epochs", url).user_attrs
    assert len(study_mod.trial_attr(_baseline("three-epochs", url), "history")["loss"]) == 3
    # ... and so do other data (same shapes, other images).
    other = tmp_path / "other.npz"
    np.savez(other, **make_tiny(seed=1))
    run("other-data", tiny_space, other)
    t = _baseline("other-data", url)
    assert "reused_from" not in t.user_attrs and t.user_attrs["data_sha256"] != second.user_attrs["data_sha256"]
    # The second study, which reused, can itself be the donor of a fourth.
    run("fourth", tiny_space)
    assert _baseline("fourth", url).user_attrs["reused_from"] == {"study": "second", "trial": 0}
    assert [s.state for s in study_mod.load("fourth", url).study.get_trials()] == [TrialState.COMPLETE]


def test_each_worker_names_its_device_first(tmp_path: Path, tiny_space: Path, tiny_npz: Path) -> None:
    """A worker process (runner.main, what --workers K starts) says first which device and how many threads."""
    import subprocess
    import sys

    url = f"sqlite:///{tmp_path / 'd.db'}"
    study_mod.create("d", tiny_space, url)
    p = subprocess.run([sys.executable, "-m", "cnnsearch.search.runner", "d", "--trials", "0", "--storage", url,
                        "--threads", "1", "--data", str(tiny_npz)], capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    first = p.stderr.splitlines()[0]
    assert first.startswith("worker ") and " training on CPU " in first and first.endswith(", 1 thread"), first
    q = subprocess.run([sys.executable, "-m", "cnnsearch.search.runner", "d", "--trials", "0", "--storage", url,
                        "--threads", "1", "--data", str(tiny_npz), "--quiet"], capture_output=True, text=True,
                       timeout=300)
    assert q.returncode == 0 and "training on" not in q.stderr, q.stderr


def test_auto_workers_rule() -> None:
    """auto = the measured 2 processes on >= 2 cores; 1 where more cannot pay (1 trial, 1 core, a GPU)."""
    from cnnsearch.search import runner

    assert runner.AUTO_WORKERS == 2
    assert runner.auto_workers(10, cores=2, gpu=False) == 2
    assert runner.auto_workers(10, cores=16, gpu=False) == 2
    assert runner.auto_workers(1, cores=2, gpu=False) == 1
    assert runner.auto_workers(0, cores=2, gpu=False) == 1
    assert runner.auto_workers(10, cores=1, gpu=False) == 1
    assert runner.auto_workers(10, cores=2, gpu=True) == 1


def test_workers_auto_and_bad_values(tmp_path: Path, tiny_space: Path, tiny_npz: Path,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """No --workers means auto (= runner.auto_workers: here 1 for a single trial, else as the machine allows);
    CNNSEARCH_WORKERS sets it too; 0 and words are usage errors, from the option and from the variable."""
    import subprocess
    import sys

    from cnnsearch.search import runner

    monkeypatch.delenv("CNNSEARCH_WORKERS", raising=False)
    monkeypatch.setenv("CNNSEARCH_STORAGE", f"sqlite:///{tmp_path / 'w.db'}")
    monkeypatch.setenv("CNNSEARCH_DATA", str(tiny_npz))
    assert CliRunner().invoke(main, ["study", "create", "w", "--space", str(tiny_space)]).exit_code == 0
    h = study_mod.load("w")
    h.study.tell(h.study.ask(), 0.5)
    # One trial to run: auto is one process, which prints the device first.
    r = CliRunner().invoke(main, ["study", "run", "w", "--trials", "1", "--no-report"])
    assert r.exit_code == 0, r.output
    assert r.stderr.splitlines()[0].startswith("training on CPU "), r.stderr
    # Two trials: as many processes as auto_workers says for this machine (2 on the 2-core CI machine).
    # A real process: the workers write to the stderr they inherit, which CliRunner does not capture.
    expected = runner.auto_workers(2)
    before = len(study_mod.load("w").study.trials)
    env = {k: v for k, v in os.environ.items() if k != "CNNSEARCH_WORKERS"}
    q = subprocess.run([sys.executable, "-m", "cnnsearch.cli", "study", "run", "w", "--trials", "2", "--no-report"],
                       capture_output=True, text=True, env=env, timeout=600)
    assert q.returncode == 0, q.stderr
    # The tiny data's small validation set draws one warning (issue 23), said once before the run's own lines.
    lines = [ln for ln in q.stderr.splitlines() if not ln.startswith("cnnsearch: warning: ")]
    worker_pids = {line.split()[1] for line in lines if line.startswith("worker ")}
    if expected > 1:  # one aggregated view: a plan line, the workers' device lines, one overall k/N
        assert lines[0].startswith(f"2 trials of 'w' on {expected} workers (1 thread each); "), q.stderr
        assert len(worker_pids) == expected, q.stderr
        counted = [ln.split("]")[0] for ln in lines if re.match(r"\[\d+/\d+\] #\d+ ", ln)]
        assert counted == ["[1/2", "[2/2"], q.stderr  # no per-worker counters ([1/1] twice)
        assert "\x1b[" not in q.stderr  # off a terminal: plain lines, no ANSI codes
    else:
        assert lines[0].startswith("training on CPU ") and not worker_pids, q.stderr
    assert len(study_mod.load("w").study.trials) == before + 2, q.stderr  # exactly --trials, in any case
    monkeypatch.setenv("CNNSEARCH_WORKERS", "1")
    r = CliRunner().invoke(main, ["study", "run", "w", "--trials", "0", "--no-report"])
    assert r.exit_code == 0 and r.stderr.splitlines()[0].startswith("training on CPU "), r.output
    for bad in ("0", "two"):
        r = CliRunner().invoke(main, ["study", "run", "w", "--trials", "0", "--workers", bad])
        assert r.exit_code == 2 and "expected a whole number >= 1 or 'auto'" in r.stderr, r.output
        monkeypatch.setenv("CNNSEARCH_WORKERS", bad)
        r = CliRunner().invoke(main, ["study", "run", "w", "--trials", "0"])
        assert r.exit_code == 2 and "expected a whole number >= 1 or 'auto'" in r.stderr, r.output


def test_bad_data_with_workers_is_one_line(tmp_path: Path, tiny_space: Path, tiny_npz: Path) -> None:
    """With several workers, missing data is one error line from the parent (no worker starts), exit 1."""
    import subprocess
    import sys

    url = f"sqlite:///{tmp_path / 'b.db'}"
    study_mod.create("b", tiny_space, url)
    env = {**os.environ, "CNNSEARCH_STORAGE": url}
    missing = tmp_path / "nowhere.npz"
    q = subprocess.run([sys.executable, "-m", "cnnsearch.cli", "study", "run", "b", "--trials", "4", "--workers", "2",
                        "--data", str(missing), "--no-report"], capture_output=True, text=True, env=env, timeout=600)
    lines = [line for line in q.stderr.splitlines() if line.strip()]
    assert q.returncode == 1 and len(lines) == 1, q.stderr
    assert lines[0].startswith("cnnsearch: error:") and str(missing) in lines[0], q.stderr
    assert "Traceback" not in q.stderr and not any(line.startswith("worker ") for line in lines)
    # Nothing stored was touched: the queued baseline is still the only trial, still waiting.
    assert [t.state for t in study_mod.load("b", url).study.trials] == [TrialState.WAITING]
