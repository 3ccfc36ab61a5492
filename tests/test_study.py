from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from click.testing import CliRunner
from optuna.trial import TrialState

from cnnsearch import runner
from cnnsearch import storage
from cnnsearch import study as study_mod
from cnnsearch.cli import main
from conftest import TINY_SPACE

ITEM5_FIELDS = ("params", "val_accuracy", "test_accuracy", "test_loss", "param_count", "flops", "seconds",
                "epochs_run", "history", "versions", "intermediate_values")


def cli(*args: str) -> "CliRunner.invoke":  # type: ignore[name-defined]
    if args[:2] == ("study", "run"):
        args = (*args, "--no-report")  # the report after a run has its own test (test_progress.py)
    return CliRunner().invoke(main, list(args))


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, tiny_npz: Path) -> dict[str, str]:
    url = f"sqlite:///{tmp_path / 's.db'}"
    monkeypatch.setenv("CNNSEARCH_STORAGE", url)
    monkeypatch.setenv("CNNSEARCH_DATA", str(tiny_npz))
    return {"url": url, "db": str(tmp_path / "s.db"), "data": str(tiny_npz)}


def test_create_run_show_best_export(env: dict[str, str], tiny_space: Path, tmp_path: Path) -> None:
    r = cli("study", "create", "demo", "--space", str(tiny_space))
    assert r.exit_code == 0, r.output
    r = cli("study", "run", "demo", "--trials", "3")
    assert r.exit_code == 0, r.output
    assert "[1/4] #0 baseline conv 32k3 > 64k3 | pool 2 | drop .25/.50 | dense 128: val_acc " in r.stderr
    assert "[4/4] #3 " in r.stderr and "total wall time" in r.stderr.splitlines()[-1]

    doc = json.loads(cli("study", "show", "demo", "--json").stdout)
    assert len(doc["trials"]) == 4 and doc["baseline_trial"] == 0
    base = doc["trials"][0]
    assert base["baseline"] and base["params"] == {"conv1_filters": 32, "conv2_filters": 64, "conv1_kernel": 3,
                                                   "dropout_dense": 0.5}
    assert doc["training"]["epochs"] == 2 and "conv1_filters" in doc["space"]
    for t in doc["trials"]:
        if t["state"] == "COMPLETE":
            for field in ITEM5_FIELDS:
                assert t[field] is not None, field
            assert t["values"] == [t["val_accuracy"]]  # the objective is validation accuracy
            assert len(t["history"]["val_accuracy"]) == 2 == t["epochs_run"]
            assert t["versions"]["tensorflow"] and t["versions"]["optuna"] == optuna.__version__
        else:  # the only way to fail here: conv1_kernel 13 on 12x12 images
            assert t["state"] == "FAIL" and "would shrink it to nothing" in t["fail_reason"]

    rows = json.loads(cli("study", "list", "--json").stdout)
    assert [r["name"] for r in rows] == ["demo"] and rows[0]["trials"] == 4

    out = tmp_path / "best.keras"
    r = cli("study", "best", "demo", "--export", str(out), "--json")
    assert r.exit_code == 0, r.output
    rec = json.loads(r.stdout)
    import keras

    model = keras.models.load_model(out)
    assert model.count_params() == rec["param_count"]
    # Only the best trial's weights are kept, and the in-study baseline's for the report.
    kept = sorted(p.name for p in storage.artifact_dir(env["url"]).iterdir())
    assert len(kept) == (1 if rec["baseline"] else 2) and any("-baseline-trial0-" in k for k in kept)
    # Deleting the study frees its kept weights too.
    assert cli("study", "delete", "demo", "--yes").exit_code == 0
    assert list(storage.artifact_dir(env["url"]).iterdir()) == []


def test_resume_adds_trials_and_keeps_settings(env: dict[str, str], tiny_space: Path) -> None:
    assert cli("study", "create", "r", "--space", str(tiny_space)).exit_code == 0
    tiny_space.write_text("changed on disk after create: must not matter")
    assert cli("study", "run", "r", "--trials", "1").exit_code == 0
    assert cli("study", "run", "r", "--trials", "2").exit_code == 0
    doc = json.loads(cli("study", "show", "r", "--json").stdout)
    assert len(doc["trials"]) == 4 and sum(t["baseline"] for t in doc["trials"]) == 1
    assert all(t["epochs_run"] in (2, None) for t in doc["trials"])


def test_invalid_architecture_fails_one_trial_and_search_goes_on(env: dict[str, str], tiny_space: Path) -> None:
    h = study_mod.create("inv", tiny_space)
    h.study.enqueue_trial({"conv1_filters": 8, "conv2_filters": 8, "conv1_kernel": 13, "dropout_dense": 0.0})
    r = cli("study", "run", "inv", "--trials", "2")
    assert r.exit_code == 0, r.output
    trials = study_mod.load("inv").study.get_trials()
    assert trials[1].state == TrialState.FAIL
    assert "conv1 (13x13 kernel" in trials[1].user_attrs["fail_reason"]
    assert trials[1].user_attrs["failure_kind"] == "invalid_architecture"
    assert "history" not in trials[1].user_attrs  # never trained
    assert trials[0].state == TrialState.COMPLETE and trials[2].state != TrialState.RUNNING


def test_nan_fails_trials_and_five_in_a_row_stop_the_run(env: dict[str, str], tmp_path: Path) -> None:
    f = tmp_path / "nan.toml"
    f.write_text("[training]\nepochs = 2\nbatch_size = 32\noptimizer = { name = 'sgd', learning_rate = 1e12 }\n"
                 "[space]\nconv1_filters = [4, 8, 32]\n")
    assert cli("study", "create", "nan", "--space", str(f)).exit_code == 0
    r = cli("study", "run", "nan", "--trials", "9")
    assert r.exit_code == 1
    assert "stopped: 5 trials in a row failed during training" in r.stderr
    assert "Traceback" not in r.output and r.stdout == ""
    trials = study_mod.load("nan").study.get_trials()
    assert len(trials) == 5 and all(t.state == TrialState.FAIL for t in trials)
    assert "NaN or infinite" in trials[0].user_attrs["fail_reason"]


def test_errors_for_existing_and_missing_studies(env: dict[str, str], tiny_space: Path, tmp_path: Path) -> None:
    missing_db = tmp_path / "nothing_here.db"
    r = cli("study", "show", "x", "--storage", f"sqlite:///{missing_db}")
    assert r.exit_code == 1 and "no such database file" in r.stderr and not missing_db.exists()
    r = cli("study", "list", "--storage", str(missing_db))
    assert r.exit_code == 2 and f"sqlite:///{missing_db}" in r.stderr
    assert cli("study", "create", "dup", "--space", str(tiny_space)).exit_code == 0
    r = cli("study", "create", "dup", "--space", str(tiny_space))
    assert r.exit_code == 1 and "already exists" in r.stderr
    r = cli("study", "run", "ghost", "--trials", "1")
    assert r.exit_code == 1 and "no study 'ghost'" in r.stderr and "dup" in r.stderr
    r = cli("study", "delete", "dup")
    assert r.exit_code == 2 and "--yes" in r.stderr
    assert cli("study", "delete", "dup", "--yes").exit_code == 0
    assert json.loads(cli("study", "list", "--json").stdout) == []


def test_best_of_study_without_completed_trial(env: dict[str, str], tiny_space: Path) -> None:
    assert cli("study", "create", "empty", "--space", str(tiny_space)).exit_code == 0
    r = cli("study", "best", "empty")
    assert r.exit_code == 1 and "no completed trial" in r.stderr


def test_multi_objective_pareto(env: dict[str, str], tmp_path: Path) -> None:
    f = tmp_path / "mo.toml"
    f.write_text("[study]\nsampler = 'nsga2'\npruner = 'none'\nobjectives = ['accuracy', 'params']\n"
                 "[training]\nepochs = 1\nbatch_size = 32\n[space]\nconv1_filters = [4, 32]\nconv2_filters = [8, 64]\n")
    assert cli("study", "create", "mo", "--space", str(f)).exit_code == 0
    assert cli("study", "run", "mo", "--trials", "3").exit_code == 0
    study = study_mod.load("mo").study
    assert [d.name for d in study.directions] == ["MAXIMIZE", "MINIMIZE"]
    done = study.get_trials(states=(TrialState.COMPLETE,))
    assert all(t.values[1] == t.user_attrs["param_count"] for t in done)
    assert study.best_trials  # the Pareto front


@pytest.mark.parametrize("pruner", ["median", "hyperband", "halving"])
def test_pruners_use_the_keras_callback(env: dict[str, str], tmp_path: Path, pruner: str) -> None:
    f = tmp_path / "p.toml"
    f.write_text(f"[study]\npruner = '{pruner}'\n[training]\nepochs = 3\nbatch_size = 32\n"
                 "[space]\nconv1_filters = [4, 32]\n")
    assert cli("study", "create", "p", "--space", str(f)).exit_code == 0
    assert cli("study", "run", "p", "--trials", "2").exit_code == 0
    study = study_mod.load("p").study
    assert isinstance(study.pruner, {"median": optuna.pruners.MedianPruner, "hyperband": optuna.pruners.HyperbandPruner,
                                     "halving": optuna.pruners.SuccessiveHalvingPruner}[pruner])
    for t in study.get_trials()[1:]:  # the baseline (trial 0) is never pruned and reports nothing
        assert sorted(t.intermediate_values) == list(range(t.user_attrs["epochs_run"]))
    assert study.get_trials()[0].intermediate_values == {}


# --- real processes --------------------------------------------------------------------------------

def _spawn(*args: str, env: dict[str, str]) -> subprocess.Popen[str]:
    if args[:2] == ("study", "run"):
        args = (*args, "--no-report")
    return subprocess.Popen([sys.executable, "-m", "cnnsearch.cli", *args], env={**os.environ, **env},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_running(url: str, name: str, min_number: int, timeout: float = 90) -> int:
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            trials = optuna.load_study(study_name=name, storage=url).get_trials(deepcopy=False)
        except Exception:
            trials = []
        running = [t for t in trials if t.state == TrialState.RUNNING and t.number >= min_number
                   and t.user_attrs.get("versions")]
        if running:
            return running[0].number
        time.sleep(0.2)
    raise AssertionError("no trial started running")


def test_two_processes_write_then_resume(env: dict[str, str], tiny_space: Path) -> None:
    e = {"CNNSEARCH_STORAGE": env["url"], "CNNSEARCH_DATA": env["data"]}
    p = _spawn("study", "create", "two", "--space", str(tiny_space), env=e)
    assert p.wait(60) == 0
    p = _spawn("study", "run", "two", "--trials", "1", env=e)
    assert p.wait(120) == 0, p.stderr.read() if p.stderr else ""
    p = _spawn("study", "run", "two", "--trials", "2", env=e)
    assert p.wait(120) == 0
    trials = study_mod.load("two").study.get_trials()
    assert [t.number for t in trials] == [0, 1, 2, 3]
    assert all(t.state in (TrialState.COMPLETE, TrialState.FAIL) for t in trials)


def test_sigint_mid_trial(env: dict[str, str], tmp_path: Path) -> None:
    f = tmp_path / "long.toml"
    f.write_text(TINY_SPACE.format(epochs=150, heartbeat=60).replace("[3, 13]", "[3]"))
    e = {"CNNSEARCH_STORAGE": env["url"], "CNNSEARCH_DATA": env["data"]}
    assert cli("study", "create", "int", "--space", str(f)).exit_code == 0
    h = study_mod.load("int")
    # Trial 0 (the baseline) finished before the interrupted run starts.
    h.study.enqueue_trial({"conv1_filters": 4, "conv2_filters": 8, "conv1_kernel": 3, "dropout_dense": 0.0})
    p = _spawn("study", "run", "int", "--trials", "3", env=e)
    number = _wait_running(env["url"], "int", 1, timeout=180)
    time.sleep(1.5)
    p.send_signal(signal.SIGINT)
    rc = p.wait(60)
    assert rc == 130, p.stderr.read() if p.stderr else ""
    trials = study_mod.load("int").study.get_trials()
    assert not [t for t in trials if t.state == TrialState.RUNNING]
    assert trials[0].state == TrialState.COMPLETE and trials[0].user_attrs["val_accuracy"] > 0
    assert trials[number].state == TrialState.FAIL
    # The next run continues the study.
    r = cli("study", "run", "int", "--trials", "0")
    assert r.exit_code == 0


def test_sigkill_trial_is_requeued_by_heartbeat(env: dict[str, str], tmp_path: Path) -> None:
    f = tmp_path / "hb.toml"
    f.write_text(TINY_SPACE.format(epochs=150, heartbeat=1).replace("[3, 13]", "[3]"))
    e = {"CNNSEARCH_STORAGE": env["url"], "CNNSEARCH_DATA": env["data"]}
    assert cli("study", "create", "hb", "--space", str(f)).exit_code == 0
    p = _spawn("study", "run", "hb", "--trials", "1", env=e)
    number = _wait_running(env["url"], "hb", 0, timeout=180)
    time.sleep(2.5)  # at least one heartbeat written
    p.send_signal(signal.SIGKILL)
    p.wait(30)
    killed = study_mod.load("hb").study.get_trials()[number]
    assert killed.state == TrialState.RUNNING  # nobody has noticed yet
    time.sleep(3)  # past the grace period (2 x heartbeat)
    r = cli("study", "run", "hb", "--trials", "0")
    assert r.exit_code == 0, r.output
    trials = study_mod.load("hb").study.get_trials()
    assert trials[number].state == TrialState.FAIL
    retries = [t for t in trials if t.system_attrs.get("failed_trial") == number]
    assert len(retries) == 1 and retries[0].params == killed.params
    assert retries[0].state == TrialState.COMPLETE and retries[0].user_attrs["baseline"] is True


def test_memory_growth_over_50_trials(env: dict[str, str], tmp_path: Path) -> None:
    f = tmp_path / "mem.toml"
    f.write_text("[study]\nsampler = 'random'\npruner = 'none'\n[training]\nepochs = 1\nbatch_size = 64\n"
                 "[space]\nconv1_filters = [4, 8, 16, 32]\nconv2_filters = [8, 16, 64]\n")
    study_mod.create("mem", f)
    rss: list[int] = []

    def sample(_: runner.TrialLine) -> None:
        with open("/proc/self/statm") as fh:
            rss.append(int(fh.read().split()[1]) * resource.getpagesize())

    runner.run("mem", trials=50, on_trial=sample)
    assert len(rss) == 51
    # From the first finished trial (TensorFlow's runtime is up by then) to the peak after 50 more.
    growth_mb = (max(rss) - rss[0]) / 2**20
    print(f"RSS after the first trial: {rss[0] / 2**20:.0f} MB, peak over 50 more: {max(rss) / 2**20:.0f} MB")
    assert growth_mb < 200


def test_timeout_stops_starting_new_trials(env: dict[str, str], tiny_space: Path) -> None:
    assert cli("study", "create", "to", "--space", str(tiny_space)).exit_code == 0
    r = cli("study", "run", "to", "--trials", "5", "--timeout", "0.01")
    assert r.exit_code == 0, r.output
    trials = study_mod.load("to").study.get_trials()
    assert len(trials) == 1 and trials[0].state == TrialState.COMPLETE  # the running one finishes, no new one


def test_ctrl_c_stops_every_worker(env: dict[str, str], tmp_path: Path) -> None:
    f = tmp_path / "long.toml"
    f.write_text(TINY_SPACE.format(epochs=150, heartbeat=60).replace("[3, 13]", "[3]"))
    assert cli("study", "create", "wint", "--space", str(f)).exit_code == 0
    e = {"CNNSEARCH_STORAGE": env["url"], "CNNSEARCH_DATA": env["data"]}
    p = _spawn("study", "run", "wint", "--trials", "6", "--workers", "2", env=e)
    deadline = time.time() + 180
    while time.time() < deadline:
        running = optuna.load_study(study_name="wint", storage=env["url"]).get_trials(states=(TrialState.RUNNING,))
        if len([t for t in running if t.user_attrs.get("versions")]) == 2:
            break
        time.sleep(0.3)
    else:
        raise AssertionError("two workers never ran at once")
    p.send_signal(signal.SIGINT)  # the parent only: it must pass Ctrl-C on to its workers
    assert p.wait(90) == 130
    trials = study_mod.load("wint").study.get_trials()
    assert not [t for t in trials if t.state == TrialState.RUNNING]
    assert len([t for t in trials if t.state == TrialState.FAIL]) == 2


def test_importing_does_not_silence_optuna_warnings_process_wide() -> None:
    code = ("import warnings, optuna, cnnsearch.runner, cnnsearch.report, cnnsearch.cli\n"
            "print(any(f[2] is optuna.exceptions.ExperimentalWarning for f in warnings.filters))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stdout.strip() == "False", r.stderr


def test_experimental_features_are_quiet_where_used(tiny_space: Path) -> None:
    import warnings

    from cnnsearch import space as space_mod

    sp = space_mod.load(tiny_space)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        study_mod.make_sampler(sp)
        storage.open_storage("sqlite:///:memory:", create=True, heartbeat_s=60)
        warnings.warn("outside", optuna.exceptions.ExperimentalWarning)  # still shown outside those calls
    assert [str(w.message) for w in seen if issubclass(w.category, optuna.exceptions.ExperimentalWarning)] == [
        "outside"]


def test_study_system_attrs_are_public(env: dict[str, str], tiny_space: Path) -> None:
    h = study_mod.create("sys", tiny_space)
    study_mod.set_system_attr(h.study, "confirm:x", {"a": 1})
    assert study_mod.system_attrs(study_mod.load("sys").study)["confirm:x"] == {"a": 1}
    assert "confirm:x" not in h.study.user_attrs


# --- everyday use: choices in plain sight, --top/--sort, --space ---------------------------------------

def test_show_renders_choices_top_and_sort(env: dict[str, str], tiny_space: Path) -> None:
    from test_report import fake_trial, make_study

    # fake_trial stores the count as "params", as studies made before the rename did: still read.
    make_study("old", tiny_space, [fake_trial(0, baseline=True)] + [fake_trial(i) for i in range(1, 7)])
    r = cli("study", "show", "old")
    assert r.exit_code == 0, r.output
    rows = [ln for ln in r.stdout.splitlines() if ln.startswith("#")]
    assert len(rows) == 8 and all(len(ln) <= 100 for ln in rows)  # #0: the baseline create queued, never run
    assert rows[1].startswith("#1    done   ") and " base " in rows[1] and "1,199,882" in rows[1]
    assert rows[1].endswith("conv 32k3 > 64k3 | pool 2 | drop .25/.50 | dense 128")
    assert "params" not in r.stdout  # one word for the count: param_count
    doc = json.loads(cli("study", "show", "old", "--top", "3", "--json").stdout)
    vals = [t["val_accuracy"] for t in doc["trials"]]
    assert len(vals) == 3 and vals == sorted(vals, reverse=True)
    assert all(isinstance(t["param_count"], int) and isinstance(t["params"], dict) for t in doc["trials"])
    everything = json.loads(cli("study", "show", "old", "--json").stdout)["trials"]
    assert vals[0] == max(t["val_accuracy"] for t in everything if t["val_accuracy"] is not None)
    by_val = json.loads(cli("study", "show", "old", "--sort", "val", "--json").stdout)["trials"]
    assert len(by_val) == 8 and [t["val_accuracy"] for t in by_val][:3] == vals
    top = cli("study", "show", "old", "--top", "2").stdout.splitlines()
    assert len([ln for ln in top if ln.startswith("#")]) == 2


def test_run_with_space_creates_validates_and_refuses(env: dict[str, str], tiny_space: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(TINY_SPACE.format(epochs=0, heartbeat=60))
    r = cli("study", "run", "new", "--space", str(bad), "--trials", "0")
    assert r.exit_code == 2 and "epochs" in r.stderr and not Path(env["db"]).exists()  # nothing written
    r = cli("study", "run", "new", "--space", str(tiny_space), "--trials", "0")
    assert r.exit_code == 0, r.output
    assert r.stderr.startswith("created study 'new'") and "[1/1] #0 baseline" in r.stderr
    # The same space again (another file with the same settings, other comments): runs on.
    same = tmp_path / "same.toml"
    same.write_text("# a comment\n" + tiny_space.read_text())
    r = cli("study", "run", "new", "--space", str(same), "--trials", "0")
    assert r.exit_code == 0 and "created" not in r.stderr
    other = tmp_path / "other.toml"
    other.write_text(TINY_SPACE.format(epochs=3, heartbeat=60))
    r = cli("study", "run", "new", "--space", str(other), "--trials", "1")
    assert r.exit_code == 2 and "exists with a different space" in r.stderr
    assert len(study_mod.load("new").study.get_trials()) == 1
