"""Issue 27 item 4: cnnsearch, KerasTuner Hyperband and plain Optuna on one space, data set, core and budget.

    python tests/bench/bench_peers.py --data "$CNNSEARCH_DATA" --budget 600 --reps 3 --parallel 2 --json FILE

cnnsearch: ``study create`` + ``study run --timeout BUDGET --workers 1`` (fresh SQLite storage); KerasTuner:
``Hyperband`` on val_accuracy, max_epochs = the space's epochs; Optuna: default TPE + ``MedianPruner``, no extras.
Each tool searches studies/seed.toml's space for BUDGET s, REPS times (order rotated per repetition), in its own
process with one TensorFlow thread on one core; the peers ask the space through cnnsearch's ``points.suggest``
and train its ``build_model`` model on its ``data.split`` arrays as cnnsearch does. Time to baseline: from the
search's start to the first searched trial whose final val accuracy reaches the reference model's, as
cnnsearch's trial 0 of the SAME repetition measured it (the peers train no reference: it would cost them budget).
docs/benchmarks.md ("Peers") says what each tool runs and every figure.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import math
import os
import queue
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from bench_speed import DEFAULT_DATA, SEED_TOML, log, space_text  # also puts this checkout on the paths
from bench_report import machine

TOOLS = ("cnnsearch", "keras-tuner", "optuna")
FRACTIONS = (0.25, 0.5, 1.0)
STUDY = "peers"
LIVE: set[subprocess.Popen[bytes]] = set()  # running children, killed on Ctrl-C (set.add/discard: atomic)
Records = list[dict[str, Any]]


def child_setup(data: str, space_path: str) -> tuple[Any, Any, dict[str, Any]]:
    """One TensorFlow thread (before any op: the pools are sized once); the space, splits and one-hot labels."""
    from cnnsearch.ground import data as data_mod
    from cnnsearch.ground._tf import keras, tensorflow
    from cnnsearch.search import space as space_mod

    tensorflow().config.threading.set_intra_op_parallelism_threads(1)
    tensorflow().config.threading.set_inter_op_parallelism_threads(1)
    space = space_mod.load(space_path)
    splits = data_mod.split(data_mod.load(data), train_limit=space.training.train_limit)
    y = {p: keras().utils.to_categorical(getattr(splits, f"y_{p}"), splits.n_classes) for p in ("train", "val", "test")}
    return space, splits, y


def compiled(spec: Any, splits: Any, config: Any) -> Any:
    """``spec``'s model compiled as cnnsearch compiles it (loss, optimizer, steps_per_execution), seeded."""
    from cnnsearch.ground._tf import keras
    from cnnsearch.model.arch import build_model
    from cnnsearch.model.train import make_optimizer, release

    K = keras()
    release()  # clear_session, plus TensorFlow's gradient registry, which would grow ~8 MB a model
    K.utils.set_random_seed(config.seed)
    model = build_model(spec, splits.input_shape, splits.n_classes)
    model.compile(loss=K.losses.CategoricalCrossentropy(label_smoothing=config.label_smoothing),
                  optimizer=make_optimizer(config, len(splits.x_train)), metrics=["accuracy"],
                  jit_compile=config.jit_compile, steps_per_execution=config.steps_per_execution)
    return model


def train(records: Records, model: Any, splits: Any, y: dict[str, Any], config: Any, callbacks: list[Any],
          epochs: int, initial_epoch: int = 0) -> tuple[Any, float]:
    """Fit as cnnsearch's fit does, then test; record the trial (end time, state, epochs, val, test) however it ends."""
    from cnnsearch.ground._tf import keras
    from cnnsearch.model.train import EVAL_BATCH_SIZE

    seen = [0]  # epochs run, a pruned fit's too: the counter comes before the callback that prunes
    counter = keras().callbacks.LambdaCallback(on_epoch_end=lambda e, logs=None: seen.__setitem__(0, seen[0] + 1))
    rec = {"state": "failed", "val": None, "test": None}
    try:
        hist = model.fit(splits.x_train, y["train"], batch_size=config.batch_size, epochs=epochs,
                         initial_epoch=initial_epoch, validation_data=(splits.x_val, y["val"]), shuffle=True,
                         verbose=0, callbacks=[counter, *callbacks])
        val = float(hist.history["val_accuracy"][-1])
        _, test = model.evaluate(splits.x_test, y["test"], batch_size=EVAL_BATCH_SIZE, verbose=0)
        if math.isfinite(val):  # else failed: a NaN loss fails a trial in cnnsearch too
            rec.update(state="complete", val=val, test=float(test))
        return hist, val
    except BaseException as exc:
        rec["state"] = "pruned" if type(exc).__name__ == "TrialPruned" else "failed"
        raise
    finally:
        records.append({**rec, "end": time.time(), "epochs": seen[0]})


def run_optuna(space: Any, splits: Any, y: dict[str, Any], budget: float, seed: int, records: Records) -> None:
    """Plain Optuna: default TPE and median pruner, KerasPruningCallback on val_accuracy."""
    import optuna
    from optuna_integration import KerasPruningCallback

    from cnnsearch.search import points

    def objective(trial: optuna.Trial) -> float:
        """One trial, seeded as cnnsearch seeds its trial of that number."""
        spec, overrides = points.suggest(trial, space)
        config = replace(space.training, seed=space.training.seed + trial.number, **overrides)
        return train(records, compiled(spec, splits, config), splits, y, config,
                     [KerasPruningCallback(trial, "val_accuracy")], config.epochs)[1]

    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=seed),
                                pruner=optuna.pruners.MedianPruner())
    study.optimize(objective, timeout=budget, catch=(Exception,))  # a failed trial is recorded; the search goes on


@dataclass
class HpTrial:
    """Optuna's ``suggest_*`` answered by KerasTuner's ``hp``: one translation of the space for both peers."""

    hp: Any  # keras_tuner.HyperParameters

    def suggest_categorical(self, name: str, choices: list[Any]) -> Any:
        """One of ``choices``."""
        return self.hp.Choice(name, list(choices))

    def suggest_int(self, name: str, low: int, high: int, step: int = 1, log: bool = False) -> int:
        """An int; on a log scale without a step (KerasTuner reads one there as a factor; Optuna's is 1)."""
        return self.hp.Int(name, low, high, step=None if log else step, sampling="log" if log else "linear")

    def suggest_float(self, name: str, low: float, high: float, step: float | None = None, log: bool = False) -> float:
        """A float, on the space's step or scale."""
        return self.hp.Float(name, low, high, step=step, sampling="log" if log else "linear")


def run_keras_tuner(space: Any, splits: Any, y: dict[str, Any], budget: float, seed: int, records: Records,
                    workdir: str) -> None:
    """KerasTuner Hyperband on the same space, model and training, stopped at the budget."""
    import keras_tuner as kt

    from cnnsearch.search import points

    deadline = time.time() + budget

    def point(hp: Any) -> tuple[Any, Any]:
        """The spec and TrainConfig ``hp`` picks (asked again in fit: hp then returns the same values)."""
        spec, overrides = points.suggest(HpTrial(hp), space)
        return spec, replace(space.training, seed=space.training.seed + len(records), **overrides)

    class Model(kt.HyperModel):
        def build(self, hp: Any) -> Any:
            """The point's model, compiled (KerasTuner loads a continued trial's weights into it)."""
            spec, config = point(hp)
            return compiled(spec, splits, config)

        def fit(self, hp: Any, model: Any, *args: Any, **kwargs: Any) -> Any:
            """Train the epochs Hyperband gives this trial, with the tuner's callbacks; record it."""
            config = point(hp)[1]
            return train(records, model, splits, y, config, list(kwargs.get("callbacks", [])),
                         kwargs.get("epochs", config.epochs), kwargs.get("initial_epoch", 0))[0]

    class Timed(kt.Hyperband):
        def pre_create_trial(self) -> None:
            """The tuner's hook before each new trial: none after the budget."""
            if time.time() >= deadline:
                raise TimeoutError("budget spent")  # ends search() between trials (a trial's errors KerasTuner catches)

    tuner = Timed(Model(), objective=kt.Objective("val_accuracy", "max"), max_epochs=space.training.epochs,
                  factor=3, hyperband_iterations=10**9, seed=seed, directory=workdir, project_name="peers",
                  overwrite=True)
    try:
        tuner.search(verbose=0)
    except TimeoutError:
        pass


def run_cnnsearch(space: str, data: str, budget: float, seed: int, url: str, records: Records) -> float | None:
    """``cnnsearch study create`` and ``run`` in this process (one thread holds), its trials; its first start."""
    from optuna.trial import TrialState

    from cnnsearch.cli import main as cnnsearch_main
    from cnnsearch.search import study as study_mod

    os.environ.update(CNNSEARCH_STORAGE=url, CNNSEARCH_DATA=data)
    for args in (["create", STUDY, "--space", space], ["run", STUDY, "--trials", "100000", "--timeout", str(budget),
                 "--workers", "1", "--seed", str(seed), "--data", data, "--quiet", "--no-report"]):
        try:
            cnnsearch_main(["study", *args])
        except SystemExit as exc:  # click exits after each command, 0 when it went well
            print(f"cnnsearch study {args[0]}: exit status {exc.code}", file=sys.stderr)
    states = {TrialState.COMPLETE: "complete", TrialState.PRUNED: "pruned", TrialState.FAIL: "failed"}
    trials = study_mod.load(STUDY, url).study.get_trials(deepcopy=False)
    # Optuna stores naive local times: .timestamp() reads them as local, as time.time() counts.
    records += [{"end": t.datetime_complete.timestamp(), "state": states[t.state], "val": t.user_attrs.get(
        "val_accuracy"), "test": t.user_attrs.get("test_accuracy"), "epochs": t.user_attrs.get("epochs_run") or 0,
        "baseline": bool(t.user_attrs.get("baseline"))} for t in trials
        if t.state in states and t.datetime_complete and not t.user_attrs.get("infeasible")]
    starts = [t.datetime_start.timestamp() for t in trials if t.datetime_start is not None]
    return min(starts) if starts else None


def child(a: argparse.Namespace) -> None:
    """One run; its records go to ``--out`` even when it fails part-way (the parent reads what there is)."""
    records: Records = []
    out: dict[str, Any] = {"tool": a.child, "trials": records}
    try:
        space, splits, y = child_setup(a.data, a.space)  # cnnsearch: one thread before the CLI's first op
        if a.child == "cnnsearch":
            out["search_start"] = run_cnnsearch(a.space, a.data, a.budget, a.rep, a.storage, records)
            return
        out["search_start"] = time.time()
        if a.child == "optuna":
            run_optuna(space, splits, y, a.budget, a.rep, records)
        else:
            with tempfile.TemporaryDirectory(prefix="bench-kt-") as workdir:  # Hyperband's checkpoints
                run_keras_tuner(space, splits, y, a.budget, a.rep, records, workdir)
    finally:
        Path(a.out).write_text(json.dumps(out))


def launch(tool: str, rep: int, a: argparse.Namespace, space: Path, tmp: Path, core: int) -> dict[str, Any]:
    """One run of ``tool`` in a child process; its trials timed from its search's start."""
    tag = f"{tool}-{rep}"
    out, logfile = tmp / f"{tag}.json", tmp / f"{tag}.log"
    cmd = [sys.executable, __file__, "--child", tool, "--rep", str(rep), "--space", str(space), "--data", a.data,
           "--budget", str(a.budget), "--out", str(out)]
    run: dict[str, Any] = {"tool": tool, "rep": rep, "core": core, "trials": []}
    if tool == "cnnsearch":
        cmd += ["--storage", f"sqlite:///{tmp / (tag + '.db')}"]  # fresh storage each run
    limit, t0 = a.budget * 1.5 + 300, time.time()  # the last trial may run past the budget; a hang may not
    with open(logfile, "wb") as fh:
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT)
        LIVE.add(proc)
        os.sched_setaffinity(proc.pid, {core})  # here, not in preexec_fn (unsafe with threads); before its imports end
        try:
            run["rc"] = proc.wait(timeout=limit)
        except subprocess.TimeoutExpired:
            proc.kill()
            run["rc"] = f"killed after {limit:.0f} s ({proc.wait()})"
        finally:
            LIVE.discard(proc)
    run["wall_s"] = time.time() - t0
    got = json.loads(out.read_text()) if out.exists() else {"trials": []}
    start = got.get("search_start") or t0
    run["startup_s"] = start - t0
    run["trials"] = sorted(({**t, "at": t["end"] - start} for t in got["trials"]), key=lambda t: t["at"])
    if run["rc"] != 0 or not out.exists():
        run["error"] = logfile.read_text(errors="replace")[-2000:]
    return run


def run_all(a: argparse.Namespace, tmp: Path, space: Path) -> list[dict[str, Any]]:
    """Every (repetition, tool) run, the tools' order rotated per repetition, ``--parallel`` at a time."""
    jobs = [(tool, rep) for rep in range(a.reps) for tool in TOOLS[rep % len(TOOLS):] + TOOLS[:rep % len(TOOLS)]]
    cores: queue.Queue[int] = queue.Queue()
    for c in sorted(os.sched_getaffinity(0))[:a.parallel]:
        cores.put(c)
    runs: list[dict[str, Any]] = []
    stopping = threading.Event()

    def one(job: tuple[str, int]) -> None:
        """One run on a free core (there are as many as threads), unless Ctrl-C came."""
        if stopping.is_set():
            return
        core = cores.get()
        try:
            r = launch(*job, a, space, tmp, core)
        finally:
            cores.put(core)
        runs.append(r)
        err = r.get("error", "").strip().splitlines()[-1:]
        log(f"rep {r['rep'] + 1} {r['tool']:<12} core {core}: {sum(t['state'] != 'failed' for t in r['trials'])}"
            f" trials, {r.get('wall_s', 0):.0f} s" + (f"; FAILED ({r.get('rc')}): {err}" if "error" in r else ""))

    pool = concurrent.futures.ThreadPoolExecutor(max_workers=a.parallel)
    try:
        for f in [pool.submit(one, job) for job in jobs]:
            f.result()
    except KeyboardInterrupt:
        stopping.set()
        for p in list(LIVE):  # a child may not have had the terminal's SIGINT (nohup, another session)
            p.kill()
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    pool.shutdown()
    return sorted(runs, key=lambda r: (r["rep"], TOOLS.index(r["tool"])))


def figures(run: dict[str, Any], target: float | None, budget: float) -> dict[str, Any]:
    """A run's figures against ``target``, its repetition's baseline val accuracy (None: no target)."""
    trials = run["trials"]
    done = [t for t in trials if t["state"] == "complete" and t["val"] is not None]  # pruned: no final val
    best = max(done, key=lambda t: t["val"], default=None)
    out = {"baseline_val": target, "best_val_end": best and best["val"], "test_of_best": best and best["test"],
           "seconds_to_baseline": None if target is None else next(
               (t["at"] for t in done if not t.get("baseline") and t["val"] >= target), None),
           "trials": sum(t["state"] != "failed" for t in trials), "pruned": sum(t["state"] == "pruned" for t in trials),
           "failed": sum(t["state"] == "failed" for t in trials), "epochs": sum(t["epochs"] for t in trials),
           "startup_s": run.get("startup_s"), "wall_s": run.get("wall_s")}
    for f in FRACTIONS:
        out[f"best_val_{f:g}"] = max((t["val"] for t in done if t["at"] <= f * budget), default=None)
    return out


ROWS = [("baseline_val", "baseline val (target)", ".4f"), ("seconds_to_baseline", "time to baseline, s", ".0f"),
        *((f"best_val_{f:g}", f"best val at {f:g} budget", ".4f") for f in FRACTIONS),
        ("best_val_end", "best val at the end", ".4f"), ("test_of_best", "test acc of best on val", ".4f"),
        ("trials", "trials (complete+pruned)", ".0f"), ("pruned", "pruned", ".0f"), ("failed", "failed", ".0f"),
        ("epochs", "epochs trained", ".0f"), ("startup_s", "start-up before search, s", ".0f"),
        ("wall_s", "wall time, s", ".0f")]


def summarize(runs: list[dict[str, Any]], budget: float) -> dict[str, dict[str, Any]]:
    """Per tool and figure: median, min, max over the repetitions that have it, and how many do (n of)."""
    goal = {r["rep"]: next((t["val"] for t in r["trials"] if t.get("baseline") and t["val"] is not None), None)
            for r in runs if r["tool"] == "cnnsearch"}  # cnnsearch's trial 0, per repetition
    summary: dict[str, dict[str, Any]] = {}
    for tool in TOOLS:
        mine = [r for r in runs if r["tool"] == tool]
        for r in mine:
            r["figures"] = figures(r, goal.get(r["rep"]), budget)
        summary[tool] = {}
        for key, _, _ in ROWS:
            vals = [float(r["figures"][key]) for r in mine if r["figures"][key] is not None]
            summary[tool][key] = {"median": statistics.median(vals) if vals else None, "min": min(vals, default=None),
                                  "max": max(vals, default=None), "n": len(vals), "of": len(mine)}
    return summary


def table(summary: dict[str, dict[str, Any]]) -> str:
    """The tool x figure table, one figure a line; a cell: median [min-max], and (n/of) when some runs lack it."""
    def cell(s: dict[str, Any], fmt: str) -> str:
        """One cell."""
        if s["median"] is None:
            return f"none (0/{s['of']})" if s["of"] else "-"
        text = f"{s['median']:{fmt}}" + (f" [{s['min']:{fmt}}-{s['max']:{fmt}}]" if s["n"] > 1 else "")
        return text + (f" ({s['n']}/{s['of']})" if s["n"] < s["of"] else "")

    width = max(16, *(len(cell(summary[t][k], f)) + 2 for t in TOOLS for k, _, f in ROWS))
    lines = [f"{'':<27}" + "".join(f"{t:<{width}}" for t in TOOLS)]
    for key, label, fmt in ROWS:
        lines.append(f"{label:<27}" + "".join(f"{cell(summary[t][key], fmt):<{width}}" for t in TOOLS))
    return "\n".join(line.rstrip() for line in lines)


def parse() -> argparse.Namespace:
    """The command line (``--child`` and the hidden options are the parent's, for its children)."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--budget", type=float, default=600.0, help="wall-clock seconds of search per run")
    p.add_argument("--reps", type=int, default=3, help="repetitions (the tools alternate within each)")
    p.add_argument("--parallel", type=int, choices=(1, 2), default=1, help="runs at a time, each on its own core")
    p.add_argument("--data", default=DEFAULT_DATA)
    p.add_argument("--json", default=None, help="also write the figures to this JSON file")
    p.add_argument("--smoke", action="store_true", help="45 s, 1 rep, 600 images, 1 epoch: only shows it runs")
    for name, kw in (("--child", {"choices": TOOLS}), ("--rep", {"type": int, "default": 0}), ("--space", {}),
                     ("--out", {}), ("--storage", {})):
        p.add_argument(name, help=argparse.SUPPRESS, **kw)  # type: ignore[arg-type]
    a = p.parse_args()
    if a.smoke:
        a.budget, a.reps = 45.0, 1
    return a


def main() -> None:
    """Run the benchmark (or, with ``--child``, one run of it)."""
    a = parse()
    if a.child:
        child(a)
        return
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # kill (or docker stop) ends the children too
    tmp = Path(tempfile.mkdtemp(prefix="bench-peers-"))
    space = tmp / "space.toml"  # one space file for every run: seed.toml, smaller under --smoke
    space.write_text(space_text(SEED_TOML.read_text(), training={"train_limit": 600, "epochs": 1} if a.smoke else {}))
    log(f"bench_peers: {', '.join(TOOLS)} x {a.reps} reps x {a.budget:g} s, {a.parallel} at a time, one core and"
        f" one TensorFlow thread each; data {a.data}; load average {os.getloadavg()[0]:.1f}")
    t = time.time()
    try:
        runs = run_all(a, tmp, space)
    except KeyboardInterrupt:
        raise SystemExit(f"interrupted; children killed; their files are in {tmp}")
    summary = summarize(runs, a.budget)
    log(f"({time.time() - t:.0f} s) median [min-max] over {a.reps} repetition(s); times from each search's start;"
        " baseline: cnnsearch's trial 0 (the reference model) of the same repetition\n" + table(summary))
    if a.json:
        Path(a.json).parent.mkdir(parents=True, exist_ok=True)
        Path(a.json).write_text(json.dumps({
            "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "machine": machine(),
            "command": " ".join([Path(sys.executable).name, *sys.argv]),
            "settings": {"budget_s": a.budget, "reps": a.reps, "parallel": a.parallel, "data": a.data,
                         "space": space.read_text()}, "runs": runs, "summary": summary}, indent=2, default=str))
    if any("error" in r for r in runs):
        log(f"some runs failed: their logs are in {tmp}")
    else:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
