"""Issue 12's speed benchmarks, each a side-by-side comparison in one run (alternating, median of >= 3).

    python tests/bench/bench_speed.py spe        [--reps 3] [--train-limit 6000] [--epochs 2]
    python tests/bench/bench_speed.py workers    [--reps 3] [--minutes 5]
    python tests/bench/bench_speed.py strategies [--seeds 3] [--minutes 15] [--parallel 2]

spe:        Keras steps_per_execution 1 vs 8 vs 32, for the reference model and a small (8/16 filters) one,
            at 1 and 2 TensorFlow threads: seconds per training epoch (fit, incl. validation) and seconds to
            evaluate the test set, as ratios to steps_per_execution=1; and whether a fixed seed gives the
            same history (largest absolute difference in any history value and in test accuracy).
workers:    trials an hour at studies/seed.toml's fidelity, `study run --workers 1` (all threads in one
            process) against `--workers 2` (one share each), each run a fresh study on its own storage
            (so each trains its own baseline), alternating.
strategies: TPE+median, TPE+hyperband (min_resource 1 epoch), TPE+successive halving and random without
            pruning on seed.toml's space and fidelity, one `study run --timeout BUDGET` per strategy and seed
            (fresh storage each: every run trains its baseline), alternating strategies within each seed:
            time to the first searched trial reaching the in-study baseline's val accuracy, and best val
            accuracy at 1/4, 1/2 and 1 of the budget (mean, spread). --parallel 2 runs two at a time,
            each pinned to its own core (one TensorFlow thread): half the wall time, and every run
            gets what one `--workers 2` process gets.

These print figures; they are not tests. Run them on an otherwise idle machine. ``--json FILE`` also writes
the figures. The smoke sizes (seconds of budget, a few hundred images) only show that they run.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import datetime as dt
import json
import os
import queue
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
# Benchmark the checkout this file is in, here and in every process it starts.
sys.path.insert(0, str(ROOT))
os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
SEED_TOML = ROOT / "studies" / "seed.toml"
DEFAULT_DATA = os.environ.get("CNNSEARCH_DATA", str(ROOT.parent / "shared" / "data" / "mnist.npz"))
STRATEGIES = {  # label: (sampler, pruner)
    "tpe+median": ("tpe", "median"),
    "tpe+hyperband": ("tpe", "hyperband"),
    "tpe+halving": ("tpe", "halving"),
    "random, no pruning": ("random", "none"),
}


def log(msg: str) -> None:
    print(msg, flush=True)


def spread(values: list[float], fmt: str = ".4f") -> str:
    """mean ± standard deviation [min-max] of a few runs."""
    if not values:
        return "n/a"
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):{fmt}} ± {sd:{fmt}} [{min(values):{fmt}}-{max(values):{fmt}}]"


def space_text(base: str, *, training: dict[str, Any] | None = None, study: dict[str, Any] | None = None) -> str:
    """seed.toml's text with some [study] / [training] values replaced (or added)."""
    text = base
    for section, values in (("study", study or {}), ("training", training or {})):
        for key, value in values.items():
            lit = json.dumps(value)
            pattern = re.compile(rf"^{key}\s*=.*$", re.M)
            if pattern.search(text):
                text = pattern.sub(f"{key} = {lit}", text, count=1)
            else:
                text = re.sub(rf"^\[{section}\].*$", lambda m: f"{m.group(0)}\n{key} = {lit}", text, count=1,
                              flags=re.M)
    return text


def cli(*args: str, env: dict[str, str] | None = None, core: int | None = None) -> tuple[float, str]:
    """Run ``cnnsearch ARGS`` in a fresh process; returns (wall seconds, stderr).

    ``core``: pin the process to that one CPU (TensorFlow then sizes its thread pools to it).
    """
    t = time.time()
    pin = (lambda: os.sched_setaffinity(0, {core})) if core is not None else None
    p = subprocess.run([sys.executable, "-m", "cnnsearch.cli", *args], capture_output=True, text=True,
                       env={**os.environ, **(env or {})}, preexec_fn=pin)
    if p.returncode != 0:
        raise SystemExit(f"cnnsearch {' '.join(args)} failed ({p.returncode}):\n{p.stderr}")
    return time.time() - t, p.stderr


# spe ----------------------------------------------------------------------------------------------------

def spe_child(threads: int, data: str, train_limit: int, epochs: int, reps: int, values: list[int]) -> None:
    """One process at ``threads`` threads: every model and steps_per_execution value, alternating."""
    from cnnsearch.ground import data as data_mod
    from cnnsearch.model.arch import ArchSpec, summarize
    from cnnsearch.model.train import EVAL_BATCH_SIZE, TrainConfig, configure_threads, fit

    configure_threads(intra_op=threads, inter_op=1)
    splits = data_mod.split(data_mod.load(data), train_limit=train_limit)
    import keras

    y_test = keras.utils.to_categorical(splits.y_test, splits.n_classes)
    models = {"reference": ArchSpec(), "small 8/16": ArchSpec(conv_filters=(8, 16))}
    out: dict[str, Any] = {}
    for label, spec in models.items():
        fit(spec, splits, TrainConfig(epochs=1, train_limit=train_limit))  # warm-up: TensorFlow's first-use costs
        runs: dict[int, dict[str, list[Any]]] = {k: {"epoch": [], "eval": [], "hist": [], "test": []} for k in values}
        for _ in range(reps):
            for k in values:  # alternating
                r = fit(spec, splits, TrainConfig(epochs=epochs, train_limit=train_limit, seed=0,
                                                  steps_per_execution=k))
                # Epoch 1 includes tracing; later epochs are the steady state a long trial sees.
                runs[k]["epoch"].append(statistics.median(r.epoch_seconds[1:] or r.epoch_seconds))
                r.model.evaluate(splits.x_test, y_test, batch_size=EVAL_BATCH_SIZE, verbose=0)  # trace
                t = time.perf_counter()
                r.model.evaluate(splits.x_test, y_test, batch_size=EVAL_BATCH_SIZE, verbose=0)
                runs[k]["eval"].append(time.perf_counter() - t)
                runs[k]["hist"].append(r.history)
                runs[k]["test"].append(r.test_accuracy)
        ref = runs[values[0]]
        row: dict[str, Any] = {"mflops": summarize(spec).flops / 1e6}
        for k in values:
            diff = max(abs(a - b) for key in ref["hist"][0] for a, b in zip(ref["hist"][0][key], runs[k]["hist"][0][key]))
            row[k] = {"epoch_s": statistics.median(runs[k]["epoch"]), "eval_s": statistics.median(runs[k]["eval"]),
                      "epoch_all": runs[k]["epoch"], "eval_all": runs[k]["eval"], "max_history_diff": diff,
                      "test_accuracy_diff": abs(runs[k]["test"][0] - ref["test"][0])}
        out[label] = row
    print("RESULT " + json.dumps(out), flush=True)


def bench_spe(a: argparse.Namespace) -> dict[str, Any]:
    values = [int(v) for v in a.values.split(",")]
    results: dict[str, Any] = {}
    for threads in (int(t) for t in a.threads.split(",")):
        p = subprocess.run([sys.executable, __file__, "spe-child", "--threads", str(threads), "--data", a.data,
                            "--train-limit", str(a.train_limit), "--epochs", str(a.epochs), "--reps", str(a.reps),
                            "--values", a.values], capture_output=True, text=True)
        line = next((ln for ln in p.stdout.splitlines() if ln.startswith("RESULT ")), None)
        if line is None:
            raise SystemExit(f"spe child at {threads} threads failed:\n{p.stderr[-3000:]}")
        results[str(threads)] = json.loads(line[7:])
        for label, row in results[str(threads)].items():
            base = row[str(values[0])]
            cells = []
            for k in values:
                r = row[str(k)]
                cells.append(f"spe={k}: epoch {r['epoch_s']:.2f} s ({base['epoch_s'] / r['epoch_s']:.2f}x),"
                             f" eval {r['eval_s']:.3f} s ({base['eval_s'] / r['eval_s']:.2f}x),"
                             f" max |history diff| {r['max_history_diff']:.1e}, test acc diff"
                             f" {r['test_accuracy_diff']:.1e}")
            log(f"spe {threads} thread(s), {label} ({row['mflops']:.1f} MFLOP/image), {a.train_limit:,} images,"
                f" median of {a.reps}:\n    " + "\n    ".join(cells))
    return results


# workers ------------------------------------------------------------------------------------------------

def _finished(url: str, name: str) -> list[Any]:
    from optuna.trial import TrialState

    from cnnsearch.search import study as study_mod

    return [t for t in study_mod.load(name, url).study.get_trials(deepcopy=False)
            if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]


def bench_workers(a: argparse.Namespace) -> dict[str, Any]:
    base = SEED_TOML.read_text()
    training = {"train_limit": a.train_limit} if a.train_limit else {}
    if a.epochs:
        training["epochs"] = a.epochs
    variants = a.variants.split(",")  # e.g. "1,2" or "1,2,1:32,2:32" (workers[:steps_per_execution])
    rates: dict[str, list[float]] = {v: [] for v in variants}
    tmp = Path(tempfile.mkdtemp(prefix="bench-workers-"))
    for rep in range(a.reps):
        for v in variants:  # alternating
            workers, _, spe = v.partition(":")
            tag = f"{rep}-{v.replace(':', '_')}"
            space = tmp / f"{tag}.toml"
            space.write_text(space_text(base, training={**training, **({"steps_per_execution": int(spe)} if spe
                                                                       else {})}))
            url = f"sqlite:///{tmp / (tag + '.db')}"
            env = {"CNNSEARCH_STORAGE": url, "CNNSEARCH_DATA": a.data}
            cli("study", "create", "w", "--space", str(space), env=env)
            # --seed: the variants of one repetition draw from the same sampler seed.
            seconds, err = cli("study", "run", "w", "--trials", "100000", "--timeout", str(a.minutes * 60),
                               "--workers", workers, "--seed", str(rep), "--quiet", env=env)
            n = len(_finished(url, "w"))
            rates[v].append(n / seconds * 3600)
            log(f"workers rep {rep + 1}: --workers {workers}{f' spe={spe}' if spe else ''}: {n} trials"
                f" (baseline included) in {seconds:.0f} s = {rates[v][-1]:.0f} trials/h")
    first = statistics.median(rates[variants[0]])
    log(f"workers: trials an hour at seed.toml's fidelity{f' (train_limit {a.train_limit})' if a.train_limit else ''},"
        f" median of {a.reps}:")
    for v in variants:
        med = statistics.median(rates[v])
        log(f"    --workers {v}: {med:.0f} trials/h ({med / first:.2f}x of --workers {variants[0]})"
            f" runs {', '.join(f'{r:.0f}' for r in rates[v])}")
    return {"rates_per_hour": rates, "minutes": a.minutes}


# strategies ---------------------------------------------------------------------------------------------

def run_strategy(label: str, seed: int, a: argparse.Namespace, tmp: Path, core: int | None = None) -> dict[str, Any]:
    sampler, pruner = STRATEGIES[label]
    training = {"train_limit": a.train_limit} if a.train_limit else {}
    if a.epochs:
        training["epochs"] = a.epochs
    space = tmp / f"{sampler}-{pruner}-{seed}.toml"
    space.write_text(space_text(SEED_TOML.read_text(), study={"sampler": sampler, "pruner": pruner, "seed": seed},
                                training=training))
    url = f"sqlite:///{tmp / space.with_suffix('.db').name}"
    env = {"CNNSEARCH_STORAGE": url, "CNNSEARCH_DATA": a.data}
    budget = a.minutes * 60
    cli("study", "create", "s", "--space", str(space), env=env)
    t0 = time.time()
    # --seed: `study run` otherwise seeds its sampler at random; the seeds make the runs reproducible.
    cli("study", "run", "s", "--trials", "100000", "--timeout", str(budget), "--seed", str(seed), "--quiet", env=env,
        core=core)
    from optuna.trial import TrialState

    from cnnsearch.search import study as study_mod

    trials = study_mod.load("s", url).study.get_trials(deepcopy=False)

    def at(t: Any) -> float:  # seconds from the command's start to the trial's end (Optuna stores local time)
        return t.datetime_complete.timestamp() - t0 if t.datetime_complete else float("inf")

    done = sorted((t for t in trials if t.state == TrialState.COMPLETE), key=at)
    base = next(t for t in done if t.user_attrs.get("baseline"))
    target = base.user_attrs["val_accuracy"]
    reached = next((at(t) for t in done if not t.user_attrs.get("baseline")
                    and t.user_attrs["val_accuracy"] >= target), None)
    best = {f: max((t.user_attrs["val_accuracy"] for t in done if at(t) <= f * budget), default=None)
            for f in (0.25, 0.5, 1.0)}
    return {"baseline_val": target, "baseline_seconds": at(base), "seconds_to_baseline": reached,
            "best_at": best, "trials": sum(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials),
            "pruned": sum(t.state == TrialState.PRUNED for t in trials)}


def _seconds(s: float | None) -> str:
    return "never" if s is None else f"{s:.0f} s"


def bench_strategies(a: argparse.Namespace) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="bench-strategies-"))
    labels = [s.strip() for s in a.strategies.split(";")] if a.strategies else list(STRATEGIES)
    runs: dict[str, list[dict[str, Any]]] = {k: [] for k in labels}
    # Alternate who goes first (and, with --parallel, who shares the machine with whom) from seed to seed.
    jobs = [(label, seed) for seed in range(a.first_seed, a.first_seed + a.seeds)
            for label in labels[seed % len(labels):] + labels[:seed % len(labels)]]
    cores: queue.Queue[int | None] = queue.Queue()
    for c in (sorted(os.sched_getaffinity(0))[:a.parallel] if a.parallel > 1 else [None]):
        cores.put(c)

    def one(job: tuple[str, int]) -> None:
        label, seed = job
        core = cores.get()
        try:
            r = run_strategy(label, seed, a, tmp, core)
        finally:
            cores.put(core)
        r["seed"] = seed
        runs[label].append(r)
        log(f"strategies seed {seed} {label:<19} {r['trials']:3d} trials ({r['pruned']} pruned), baseline val"
            f" {r['baseline_val']:.4f} at {r['baseline_seconds']:.0f} s, reached by a searched trial after"
            f" {_seconds(r['seconds_to_baseline'])};"
            f" best val at 1/4, 1/2, 1 of {a.minutes:g} min: "
            + ", ".join("-" if v is None else f"{v:.4f}" for v in r["best_at"].values())
            + ("" if core is None else f" (core {core})"))

    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, a.parallel)) as pool:
        for f in [pool.submit(one, job) for job in jobs]:
            f.result()  # a failed run stops the benchmark with its error
    log(f"strategies: {a.seeds} seeds, {a.minutes:g} min each"
        f"{f', {a.parallel} runs at a time, each pinned to one core (1 thread)' if a.parallel > 1 else ''}"
        f" (mean ± sd [min-max]):")
    for label in labels:
        rs = runs[label]
        reached = [r["seconds_to_baseline"] for r in rs if r["seconds_to_baseline"] is not None]
        log(f"    {label:<19} time to baseline val: {spread(reached, '.0f') + ' s' if reached else 'never'}"
            f" (reached in {len(reached)}/{len(rs)})")
        for f in (0.25, 0.5, 1.0):
            vals = [r["best_at"][f] for r in rs if r["best_at"][f] is not None]
            log(f"    {'':<19} best val at {f:g} of the budget: {spread(vals)} ({len(vals)}/{len(rs)} runs had one)")
        log(f"    {'':<19} trials: {spread([float(r['trials']) for r in rs], '.1f')}")
    return runs


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="which", required=True)
    for name in ("spe", "spe-child", "workers", "strategies"):
        s = sub.add_parser(name)
        s.add_argument("--data", default=DEFAULT_DATA)
        s.add_argument("--json", default=None, help="also write the figures to this JSON file")
        s.add_argument("--reps", type=int, default=3, help="alternating repetitions (median taken)")
        if name in ("spe", "spe-child"):
            s.add_argument("--train-limit", type=int, default=6000, help="training images")
            s.add_argument("--epochs", type=int, default=3, help="epochs per fit (the first is not timed)")
            s.add_argument("--values", default="1,8,32", help="steps_per_execution values; the first is the base")
            s.add_argument("--threads", default="1,2", help="TensorFlow thread counts (one process each)")
        else:
            s.add_argument("--minutes", type=float, default=15.0 if name == "strategies" else 5.0,
                           help="time budget per run (study run --timeout)")
            s.add_argument("--train-limit", type=int, default=0, help="override seed.toml's (0 = keep 12,000)")
            s.add_argument("--epochs", type=int, default=0, help="override seed.toml's (0 = keep 4)")
        if name == "workers":
            s.add_argument("--variants", default="1,2", help="--workers values, optionally :steps_per_execution")
        if name == "strategies":
            s.add_argument("--seeds", type=int, default=3, help="study seeds per strategy")
            s.add_argument("--first-seed", type=int, default=0,
                           help="first study seed (to add seeds to an earlier run's figures)")
            s.add_argument("--strategies", default="", help=f"';'-separated subset of {'; '.join(STRATEGIES)}")
            s.add_argument("--parallel", type=int, default=1,
                           help="runs at a time, each pinned to its own core (1 = one run with every core)")
    a = p.parse_args()
    if a.which == "spe-child":
        spe_child(int(a.threads), a.data, a.train_limit, a.epochs, a.reps, [int(v) for v in a.values.split(",")])
        return
    from cnnsearch.model.train import cpu_model

    log(f"bench_speed {a.which}, {dt.datetime.now():%Y-%m-%d %H:%M}, {cpu_model()}, {os.cpu_count()} CPUs,"
        f" load average {os.getloadavg()[0]:.1f}, data {a.data}")
    t = time.time()
    result = {"spe": bench_spe, "workers": bench_workers, "strategies": bench_strategies}[a.which](a)
    log(f"({time.time() - t:.0f} s)")
    if a.json:
        Path(a.json).write_text(json.dumps(result, indent=2, default=str))


if __name__ == "__main__":
    main()
