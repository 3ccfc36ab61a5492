"""Issue 12 lever 3: a study's baseline reuses a finished identical baseline from the same storage."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import optuna
import pytest
from click.testing import CliRunner
from optuna.trial import TrialState

from cnnsearch import storage
from cnnsearch import study as study_mod
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
    import cnnsearch.train as train_mod

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
    p = subprocess.run([sys.executable, "-m", "cnnsearch.runner", "d", "--trials", "0", "--storage", url,
                        "--threads", "1", "--data", str(tiny_npz)], capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    first = p.stderr.splitlines()[0]
    assert first.startswith("worker ") and " training on CPU " in first and first.endswith(", 1 thread"), first
    q = subprocess.run([sys.executable, "-m", "cnnsearch.runner", "d", "--trials", "0", "--storage", url,
                        "--threads", "1", "--data", str(tiny_npz), "--quiet"], capture_output=True, text=True,
                       timeout=300)
    assert q.returncode == 0 and "training on" not in q.stderr, q.stderr


def test_workers_auto_and_bad_values(tmp_path: Path, tiny_space: Path, tiny_npz: Path,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """--workers auto is accepted (= runner.AUTO_WORKERS, one process until measured); 0 and words are usage errors."""
    from cnnsearch import runner

    monkeypatch.setenv("CNNSEARCH_STORAGE", f"sqlite:///{tmp_path / 'w.db'}")
    monkeypatch.setenv("CNNSEARCH_DATA", str(tiny_npz))
    assert CliRunner().invoke(main, ["study", "create", "w", "--space", str(tiny_space)]).exit_code == 0
    h = study_mod.load("w")
    h.study.tell(h.study.ask(), 0.5)
    r = CliRunner().invoke(main, ["study", "run", "w", "--trials", "0", "--workers", "auto", "--no-report"])
    assert r.exit_code == 0, r.output
    assert runner.AUTO_WORKERS == 1 and r.stderr.splitlines()[0].startswith("training on CPU ")
    for bad in ("0", "two"):
        r = CliRunner().invoke(main, ["study", "run", "w", "--trials", "0", "--workers", bad])
        assert r.exit_code == 2 and "expected a whole number >= 1 or 'auto'" in r.stderr, r.output
