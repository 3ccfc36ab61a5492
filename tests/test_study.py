from __future__ import annotations

import json
import os
import resource
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Iterator

import optuna
import pytest
from click.testing import CliRunner
from optuna.trial import TrialState

from cnnsearch.search import runner
from cnnsearch.records import storage
from cnnsearch.search import study as study_mod
from cnnsearch.cli import main
from cnnsearch.search.objective import worker_lease
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
    assert "[4/4] #" in r.stderr and "total wall time" in r.stderr.splitlines()[-1]

    doc = json.loads(cli("study", "show", "demo", "--json").stdout)
    # Issue 23: an unbuildable point (conv1_kernel 13 on 12x12 images) is infeasible, untrained and not counted.
    counted = [t for t in doc["trials"] if not t["infeasible"]]
    assert len(counted) == 4 and doc["baseline_trial"] == 0
    base = doc["trials"][0]
    assert base["baseline"] and base["params"] == {"conv1_filters": 32, "conv2_filters": 64, "conv1_kernel": 3,
                                                   "dropout_dense": 0.5}
    assert doc["training"]["epochs"] == 2 and "conv1_filters" in doc["space"]
    for t in doc["trials"]:
        if t["infeasible"]:
            assert "would shrink it to nothing" in t["infeasible"] and t["history"] is None
        elif t["state"] == "COMPLETE":
            for field in ITEM5_FIELDS:
                assert t[field] is not None, field
            assert t["values"] == [t["val_accuracy"]]  # the objective is validation accuracy
            assert len(t["history"]["val_accuracy"]) == 2 == t["epochs_run"]
            assert t["versions"]["tensorflow"] and t["versions"]["optuna"] == optuna.__version__
        else:
            assert t["state"] == "PRUNED", t

    rows = json.loads(cli("study", "list", "--json").stdout)
    assert [r["name"] for r in rows] == ["demo"] and rows[0]["trials"] == len(doc["trials"])

    out = tmp_path / "best.keras"
    r = cli("study", "best", "demo", "--export", str(out), "--json")
    assert r.exit_code == 0, r.output
    rec = json.loads(r.stdout)
    import keras

    model = keras.models.load_model(out)
    assert model.count_params() == rec["param_count"]
    # Only the best trial's weights are kept, and the in-study baseline's for the report.
    kept = sorted(p.name for p in storage.artifact_dir(env["url"]).iterdir() if p.suffix == ".keras")
    assert len(kept) == (1 if rec["baseline"] else 2) and any("-baseline-trial0-" in k for k in kept)
    # Each kept model's figure arrays were cached by the worker that kept it (issue 24), and nothing else.
    caches = sorted(p.name for p in storage.artifact_dir(env["url"]).iterdir() if p.suffix != ".keras")
    assert caches == [k + ".figures.npz" for k in kept]
    # Deleting the study frees its kept weights too.
    assert cli("study", "delete", "demo", "--yes").exit_code == 0
    assert list(storage.artifact_dir(env["url"]).iterdir()) == []


def test_resume_adds_trials_and_keeps_settings(env: dict[str, str], tiny_space: Path) -> None:
    assert cli("study", "create", "r", "--space", str(tiny_space)).exit_code == 0
    tiny_space.write_text("changed on disk after create: must not matter")
    assert cli("study", "run", "r", "--trials", "1").exit_code == 0
    assert cli("study", "run", "r", "--trials", "2").exit_code == 0
    doc = json.loads(cli("study", "show", "r", "--json").stdout)
    counted = [t for t in doc["trials"] if not t["infeasible"]]  # unbuildable draws are neither trained nor counted
    assert len(counted) == 4 and sum(t["baseline"] for t in doc["trials"]) == 1
    assert all(t["epochs_run"] in (2, None) for t in doc["trials"])


def test_unbuildable_point_is_infeasible_and_search_goes_on(env: dict[str, str], tmp_path: Path) -> None:
    # Issue 23 item 5: known from the layer arithmetic in every study, so infeasible (not a failure), untrained,
    # and not counted toward --trials.
    space = tmp_path / "with13.toml"
    space.write_text(TINY_SPACE.format(epochs=2, heartbeat=60))  # conv1_kernel 13 does not fit 12x12 images
    h = study_mod.create("inv", space)
    h.study.enqueue_trial({"conv1_filters": 8, "conv2_filters": 8, "conv1_kernel": 13, "dropout_dense": 0.0})
    r = cli("study", "run", "inv", "--trials", "2")
    assert r.exit_code == 0, r.output
    trials = study_mod.load("inv").study.get_trials()
    assert trials[1].state == TrialState.COMPLETE and trials[1].constraints == {"buildable": 1.0}
    assert "conv1 (13x13 kernel" in trials[1].user_attrs["infeasible"]
    assert study_mod.trial_attr(trials[1], "history") is None  # never trained
    trained = [t for t in trials[2:] if not t.user_attrs.get("infeasible")]
    assert trials[0].state == TrialState.COMPLETE and len(trained) == 2


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
    assert "NaN or infinite" in study_mod.trial_attr(trials[0], "fail_reason")


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
    r = cli("study", "delete", "dup")  # no terminal to ask: read as "no" (issue 13 item 13: exit 1, as stdin closed)
    assert r.exit_code == 1 and "--yes" in r.stderr
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
    for t in study.get_trials()[1:]:
        assert sorted(t.intermediate_values) == list(range(t.user_attrs["epochs_run"]))
    # The baseline (trial 0) is never pruned (no callback) but reports every epoch, for the dashboard's chart.
    base = study.get_trials()[0]
    assert [base.intermediate_values[e] for e in range(3)] == study_mod.trial_attr(base, "history")["val_accuracy"]
    # Tiny data, not MNIST: the baseline is the reference architecture trained on your data (issue 23).
    assert base.user_attrs["role"] == study_mod.BASELINE_ROLE_OWN_DATA


# --- real processes --------------------------------------------------------------------------------

class Spawned:
    """A real ``cnnsearch`` process in its own process group (so its workers can be ended with it)."""

    def __init__(self, args: tuple[str, ...], env: dict[str, str], log: Path) -> None:
        if args[:2] == ("study", "run"):
            args = (*args, "--no-report")  # the report after a run has its own test (test_progress.py)
        self.log = log
        self._fh = open(log, "w")  # a file, not a pipe: a full pipe would block the process
        self.proc = subprocess.Popen([sys.executable, "-m", "cnnsearch.cli", *args], env={**os.environ, **env},
                                     stdout=self._fh, stderr=subprocess.STDOUT, text=True, start_new_session=True)

    def wait(self, timeout: float) -> int:
        return self.proc.wait(timeout)

    def send_signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def output(self) -> str:
        self._fh.flush()
        return self.log.read_text()

    def end(self) -> None:
        """Kill the process and anything it started, if still there."""
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        try:
            self.proc.wait(30)
        finally:
            self._fh.close()


@pytest.fixture
def spawn(tmp_path: Path) -> Iterator[Callable[..., Spawned]]:
    """Start ``cnnsearch`` processes; every one (and its workers) is ended when the test ends, pass or fail."""
    started: list[Spawned] = []

    def start(*args: str, env: dict[str, str]) -> Spawned:
        sp = Spawned(args, env, tmp_path / f"proc-{len(started)}.log")
        started.append(sp)
        return sp

    yield start
    for sp in started:
        sp.end()


def _wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll ``condition`` until it holds; generous deadlines, no fixed sleeps."""
    deadline = time.time() + timeout
    while not condition():
        if time.time() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.2)


def _wait_running(url: str, name: str, min_number: int, timeout: float = 90) -> int:
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            trials = optuna.load_study(study_name=name, storage=url).get_trials(deepcopy=False)
        except Exception:
            trials = []
        running = [t for t in trials if t.state == TrialState.RUNNING and t.number >= min_number
                   and study_mod.trial_attr(t, "versions")]
        if running:
            return running[0].number
        time.sleep(0.2)
    raise AssertionError("no trial started running")


def test_two_processes_write_then_resume(env: dict[str, str], tiny_space: Path, spawn: Callable[..., Spawned]
                                        ) -> None:
    e = {"CNNSEARCH_STORAGE": env["url"], "CNNSEARCH_DATA": env["data"]}
    p = spawn("study", "create", "two", "--space", str(tiny_space), env=e)
    assert p.wait(120) == 0, p.output()
    p = spawn("study", "run", "two", "--trials", "1", env=e)
    assert p.wait(240) == 0, p.output()
    p = spawn("study", "run", "two", "--trials", "2", env=e)
    assert p.wait(240) == 0, p.output()
    trials = study_mod.load("two").study.get_trials()
    assert [t.number for t in trials] == list(range(len(trials)))  # unique numbers across the two processes
    counted = [t for t in trials if not t.user_attrs.get("infeasible")]  # unbuildable draws are not counted
    assert len(counted) == 4 and all(t.state == TrialState.COMPLETE for t in trials)


def test_sigint_mid_trial(env: dict[str, str], tmp_path: Path, spawn: Callable[..., Spawned]) -> None:
    f = tmp_path / "long.toml"
    f.write_text(TINY_SPACE.format(epochs=150, heartbeat=60).replace("[3, 13]", "[3]"))
    e = {"CNNSEARCH_STORAGE": env["url"], "CNNSEARCH_DATA": env["data"]}
    assert cli("study", "create", "int", "--space", str(f)).exit_code == 0
    h = study_mod.load("int")
    # Trial 0 (the baseline) finished before the interrupted run starts.
    h.study.enqueue_trial({"conv1_filters": 4, "conv2_filters": 8, "conv1_kernel": 3, "dropout_dense": 0.0})
    p = spawn("study", "run", "int", "--trials", "3", env=e)
    number = _wait_running(env["url"], "int", 1, timeout=240)
    p.send_signal(signal.SIGINT)
    rc = p.wait(120)
    assert rc == 130, p.output()
    trials = study_mod.load("int").study.get_trials()
    assert not [t for t in trials if t.state == TrialState.RUNNING]
    assert trials[0].state == TrialState.COMPLETE and trials[0].user_attrs["val_accuracy"] > 0
    assert trials[number].state == TrialState.FAIL
    # The next run continues the study.
    r = cli("study", "run", "int", "--trials", "0")
    assert r.exit_code == 0


def test_sigkill_trial_is_requeued_by_heartbeat(env: dict[str, str], tmp_path: Path,
                                                spawn: Callable[..., Spawned]) -> None:
    f = tmp_path / "hb.toml"
    f.write_text(TINY_SPACE.format(epochs=150, heartbeat=1).replace("[3, 13]", "[3]"))
    e = {"CNNSEARCH_STORAGE": env["url"], "CNNSEARCH_DATA": env["data"]}
    assert cli("study", "create", "hb", "--space", str(f)).exit_code == 0
    p = spawn("study", "run", "hb", "--trials", "1", env=e)
    number = _wait_running(env["url"], "hb", 0, timeout=240)
    storage = optuna.storages.RDBStorage(env["url"], heartbeat_interval=1, grace_period=2)
    study_id = storage.get_study_id_from_name("hb")
    trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, number)
    _wait_for(lambda: _has_heartbeat(env["db"], trial_id),
              120, "the trial's first heartbeat")
    p.send_signal(signal.SIGKILL)
    p.wait(30)
    killed = study_mod.load("hb").study.get_trials()[number]
    assert killed.state == TrialState.RUNNING  # nobody has noticed yet
    _wait_for(lambda: trial_id in storage._get_stale_trial_ids(study_id), 60, "the grace period (2 x heartbeat)")
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


def _fake_finished_baseline(name: str) -> None:
    """Finish the queued baseline without training, so the next run starts with a searched trial."""
    study = optuna.load_study(study_name=name, storage=os.environ["CNNSEARCH_STORAGE"])
    t = study.ask()
    assert t.user_attrs.get("baseline")
    t.set_user_attr("val_accuracy", 0.5)
    study.tell(t, 0.5)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP], ids=["SIGTERM", "SIGHUP"])
def test_sigterm_and_sighup_fail_the_trial_with_a_reason(env: dict[str, str], tmp_path: Path,
                                                         spawn: Callable[..., Spawned], sig: int) -> None:
    f = tmp_path / "long.toml"
    # The median pruner makes the first searched trial import optuna-integration's Keras callback: a resumed
    # run used to import TensorFlow loudly through it (8 start-up lines on stderr).
    f.write_text(TINY_SPACE.format(epochs=400, heartbeat=60).replace("[3, 13]", "[3]")
                 .replace('pruner = "none"', 'pruner = "median"'))
    e = {"CNNSEARCH_STORAGE": env["url"], "CNNSEARCH_DATA": env["data"]}
    assert cli("study", "create", "term", "--space", str(f)).exit_code == 0
    _fake_finished_baseline("term")
    p = spawn("study", "run", "term", "--trials", "3", env=e)
    number = _wait_running(env["url"], "term", 1, timeout=240)
    p.send_signal(sig)
    name = signal.Signals(sig).name
    assert p.wait(120) == 128 + sig, p.output()
    trials = study_mod.load("term").study.get_trials()
    assert not [t for t in trials if t.state == TrialState.RUNNING]
    assert trials[number].state == TrialState.FAIL
    assert trials[number].user_attrs["fail_reason"] == f"interrupted ({name})"
    assert trials[number].user_attrs["failure_kind"] == "interrupted"
    # One line, nothing else: no traceback, no "Exception ignored", no TensorFlow start-up notices.
    out = p.output()
    # The run's own lines (device, progress), then the one interrupted line; no traceback or ignored exception.
    assert out.strip().splitlines()[-1] == f"cnnsearch: interrupted ({name})", out
    assert not any(w in out for w in ("Traceback", "Exception ignored", "KeyboardInterrupt")), out


def _has_heartbeat(db: str, trial_id: int) -> bool:
    import sqlite3

    with sqlite3.connect(db, timeout=60) as con:
        return con.execute("SELECT 1 FROM trial_heartbeats WHERE trial_id = ?", (trial_id,)).fetchone() is not None


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["Ctrl-C", "SIGTERM"])
def test_ctrl_c_stops_every_worker(env: dict[str, str], tmp_path: Path, spawn: Callable[..., Spawned],
                                   sig: int) -> None:
    f = tmp_path / "long.toml"
    f.write_text(TINY_SPACE.format(epochs=400, heartbeat=60).replace("[3, 13]", "[3]"))
    assert cli("study", "create", "wint", "--space", str(f)).exit_code == 0
    e = {"CNNSEARCH_STORAGE": env["url"], "CNNSEARCH_DATA": env["data"]}
    p = spawn("study", "run", "wint", "--trials", "6", "--workers", "2", env=e)
    running: list[int] = []

    def two_running() -> bool:
        trials = optuna.load_study(study_name="wint", storage=env["url"]).get_trials(states=(TrialState.RUNNING,))
        running[:] = [t.number for t in trials if study_mod.trial_attr(t, "versions")]
        return len(running) == 2

    _wait_for(two_running, 300, "two workers training at once")
    p.send_signal(sig)  # the parent only (as docker stop does): it must pass the signal on to its workers
    assert p.wait(180) == 128 + sig, p.output()
    trials = study_mod.load("wint").study.get_trials()
    assert not [t for t in trials if t.state == TrialState.RUNNING]
    # The two trials running at the signal failed with its name (neither could finish its 400 epochs).
    assert [trials[n].state for n in running] == [TrialState.FAIL, TrialState.FAIL], p.output()
    reason = "interrupted by Ctrl-C (SIGINT)" if sig == signal.SIGINT else "interrupted (SIGTERM)"
    assert [trials[n].user_attrs.get("fail_reason") for n in running] == [reason, reason]
    out = p.output()
    assert "Traceback" not in out and "Exception ignored" not in out, out
    assert out.strip().splitlines()[-1] == f"cnnsearch: {reason}"
    assert sum(line.startswith("cnnsearch: interrupted") for line in out.splitlines()) == 1, out  # issue 26 item 17


SEEDED = """
[study]
sampler = "random"
pruner = "none"
[training]
epochs = 1
batch_size = 64
[space]
conv1_filters = [4, 8, 32]
dropout_dense = { low = 0.0, high = 0.5 }
"""


def _sampled(name: str, **load_kwargs: object) -> dict[str, object]:
    from cnnsearch.search import points

    h = study_mod.load(name, **load_kwargs)  # type: ignore[arg-type]
    t = h.study.ask()
    points.suggest(t, h.space)
    assert t.params
    return t.params


def test_explicit_seed_reproduces_and_no_seed_differs(env: dict[str, str], tmp_path: Path) -> None:
    f = tmp_path / "seeded.toml"
    f.write_text(SEEDED)
    for name in ("a", "b"):
        study_mod.create(name, f)
        _fake_finished_baseline(name)
    assert _sampled("a", seed=5) == _sampled("b", seed=5)  # same study state, same --seed: same draw
    for name in ("a", "b"):  # drop the two trials just asked: back to the same state
        for t in study_mod.load(name).study.get_trials(states=(TrialState.RUNNING,)):
            study_mod.load(name).study.tell(t.number, state=TrialState.FAIL)
    assert _sampled("a") != _sampled("b")  # no --seed: a random component


def test_two_concurrent_runs_draw_distinct_configurations(env: dict[str, str], tmp_path: Path,
                                                          spawn: Callable[..., Spawned]) -> None:
    f = tmp_path / "seeded.toml"
    f.write_text(SEEDED)
    study_mod.create("pair", f)
    _fake_finished_baseline("pair")
    e = {"CNNSEARCH_STORAGE": env["url"], "CNNSEARCH_DATA": env["data"]}
    import sqlite3

    # Hold the database until both processes wait on it, so both read the study in the same state
    # (as two runs started together do when neither has finished its imports before the other reads).
    lock = sqlite3.connect(env["db"], timeout=60, isolation_level=None)
    lock.execute("BEGIN EXCLUSIVE")
    try:
        procs = [spawn("study", "run", "pair", "--trials", "3", env=e) for _ in range(2)]

        def both_waiting() -> bool:
            for p in procs:
                if p.proc.poll() is not None:
                    raise AssertionError(p.output())
            return all(_has_open(p.proc.pid, env["db"]) for p in procs)

        _wait_for(both_waiting, 300, "both processes opening the database")
    finally:
        lock.execute("ROLLBACK")
        lock.close()
    for p in procs:
        assert p.wait(600) == 0, p.output()
    drawn = [tuple(sorted(t.params.items())) for t in study_mod.load("pair").study.get_trials()
             if not t.user_attrs.get("baseline")]
    assert len(drawn) == 6
    # dropout_dense is continuous: any repeat means both processes sampled with the same seed.
    assert len(set(drawn)) == 6, drawn


def _has_open(pid: int, path: str) -> bool:
    """Has process ``pid`` the file ``path`` open (Linux /proc)?"""
    try:
        return any(os.path.realpath(f"/proc/{pid}/fd/{fd}") == os.path.realpath(path)
                   for fd in os.listdir(f"/proc/{pid}/fd"))
    except OSError:  # the process exited, or a descriptor closed while listing
        return False


def test_a_study_with_a_seed_beyond_2_31_still_opens(env: dict[str, str], tiny_space: Path) -> None:
    h = study_mod.create("huge", tiny_space)
    settings = study_mod.settings_of(h.study)
    settings["study"]["seed"] = 2**32 - 1  # as created before seeds were bounded
    settings["space_text"] = settings["space_text"].replace("seed = 1", f"seed = {2**32 - 1}")
    study_mod.set_system_attr(h.study, study_mod.SETTINGS_ATTR, settings)
    assert _sampled("huge")  # samples: the sampler seed stays below 2**31
    assert cli("study", "show", "huge").exit_code == 0
    r = cli("study", "delete", "huge", "--yes")
    assert r.exit_code == 0, r.output


def test_journal_storage_stale_trials(tmp_path: Path, tiny_space: Path, tiny_npz: Path,
                                      spawn: Callable[..., Spawned], monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 13 item 3: journal files have no heartbeat; a worker's PID/host lease tells a dead one."""
    url = f"journal://{tmp_path / 'j.log'}"
    monkeypatch.setenv("CNNSEARCH_STORAGE", url)
    f = tmp_path / "long.toml"
    f.write_text(TINY_SPACE.format(epochs=400, heartbeat=60).replace("[3, 13]", "[3]"))
    assert cli("study", "create", "jr", "--space", str(f)).exit_code == 0
    p = spawn("study", "run", "jr", "--trials", "1", env={"CNNSEARCH_STORAGE": url, "CNNSEARCH_DATA": str(tiny_npz)})
    running: list[optuna.trial.FrozenTrial] = []

    def one_running() -> bool:
        running[:] = [t for t in study_mod.load("jr").study.get_trials(states=(TrialState.RUNNING,))
                      if study_mod.trial_attr(t, "versions")]
        return len(running) == 1

    _wait_for(one_running, 300, "the trial to start training")
    p.send_signal(signal.SIGKILL)
    p.wait(30)
    # Two other RUNNING trials: one of a live process here (this test), one of another machine.
    h = study_mod.load("jr")
    live, remote = h.study.ask(), h.study.ask()
    live.set_user_attr("worker", worker_lease())
    remote.set_user_attr("worker", {"host": "elsewhere.example", "pid": 1, "started": "1"})
    assert study_mod.load("jr").study.get_trials()[running[0].number].state == TrialState.RUNNING  # no heartbeat

    r = cli("study", "fail-stale", "jr")
    assert r.exit_code == 0, r.output
    assert f"#{running[0].number}" in r.stdout and "re-queued" in r.stdout
    trials = study_mod.load("jr").study.get_trials()
    dead = trials[running[0].number]
    assert dead.state == TrialState.FAIL
    assert dead.user_attrs["fail_reason"] == f"stale: process {p.proc.pid} on {socket.gethostname()} is gone"
    retry = [t for t in trials if t.system_attrs.get("failed_trial") == dead.number]
    assert len(retry) == 1 and retry[0].state == TrialState.WAITING
    assert retry[0].params == dead.params and retry[0].user_attrs.get("baseline")  # Optuna retry callback's form
    assert trials[live.number].state == TrialState.RUNNING and trials[remote.number].state == TrialState.RUNNING
    r = cli("study", "fail-stale", "jr", "--all")  # the user vouches that no run is active anywhere
    assert r.exit_code == 0 and f"#{remote.number}" in r.stdout and f"#{live.number}" not in r.stdout
    assert study_mod.load("jr").study.get_trials()[remote.number].state == TrialState.FAIL


def test_a_run_in_which_every_trial_failed_exits_1(env: dict[str, str], tmp_path: Path) -> None:
    f = tmp_path / "diverges.toml"
    f.write_text(TINY_SPACE.format(epochs=1, heartbeat=60).replace("[3, 13]", "[3]")
                 .replace("batch_size = 32", "batch_size = 32\noptimizer = { name = 'sgd', learning_rate = 1e12 }"))
    assert cli("study", "create", "nan", "--space", str(f)).exit_code == 0
    r = cli("study", "run", "nan", "--trials", "1")
    assert r.exit_code == 1, r.output
    assert "every trial of this run failed (2; last: loss became NaN" in r.stderr
    assert [t.state for t in study_mod.load("nan").study.get_trials()] == [TrialState.FAIL, TrialState.FAIL]


def test_importing_does_not_silence_optuna_warnings_process_wide() -> None:
    code = ("import warnings, optuna, cnnsearch.search.runner, cnnsearch.report.page, cnnsearch.cli\n"
            "print(any(f[2] is optuna.exceptions.ExperimentalWarning for f in warnings.filters))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stdout.strip() == "False", r.stderr


def test_experimental_features_are_quiet_where_used(tiny_space: Path) -> None:
    import warnings

    from cnnsearch.search import space as space_mod

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
