"""cnnsearch benchmarks: six measurements side by side in one run, printed as a table.

    python tests/bench/run_all.py [--data PATH] [--only 1,2,...] [--search-minutes 3] [--json out.json]

1. overhead: a cnnsearch trial of the seed model vs a plain Keras script, alternating runs;
2. throughput: images/s and GFLOP/s against the CPU's FP32 peak; jit_compile auto/False/True;
   mixed_bfloat16 vs float32 (speed and test accuracy at equal epochs);
3. start-up: `cnnsearch --help`, `study list`, a table-only report (and that none imports TensorFlow);
4. memory: peak RSS after 10 and after 100 tiny trials in one process;
5. search efficiency: TPE+median, TPE+hyperband, random without pruning on one time budget;
6. scaling: seconds per epoch against training-set size and against model FLOPs;
7. the report of a 1,000-trial study (built with create_trial) without model figures.

These are benchmarks, not tests: they print figures. Machines are noisy, so each
comparison is made in one run, as ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))

RESULTS: dict[str, Any] = {}


def log(msg: str) -> None:
    print(msg, flush=True)


def splits_for(data: str, train_limit: int) -> Any:
    from cnnsearch.ground import data as data_mod

    return data_mod.split(data_mod.load(data), train_limit=train_limit)


# 1 ----------------------------------------------------------------------------------------------------

PLAIN_KERAS = """
import keras
from keras import layers
def plain_keras(x, y, xv, yv, xt, yt, epochs, seed):
    keras.utils.set_random_seed(seed)
    model = keras.Sequential([keras.Input((28, 28, 1)), layers.Conv2D(32, 3, activation="relu"),
        layers.Conv2D(64, 3, activation="relu"), layers.MaxPooling2D(2), layers.Dropout(0.25), layers.Flatten(),
        layers.Dense(128, activation="relu"), layers.Dropout(0.5), layers.Dense(10, activation="softmax")])
    model.compile(loss="categorical_crossentropy",
                  optimizer=keras.optimizers.Adadelta(learning_rate=1.0, rho=0.95, epsilon=1e-7), metrics=["accuracy"])
    model.fit(x, keras.utils.to_categorical(y, 10), batch_size=128, epochs=epochs, verbose=0,
              validation_data=(xv, keras.utils.to_categorical(yv, 10)))
    return model.evaluate(xt, keras.utils.to_categorical(yt, 10), verbose=0)
"""


def bench_overhead(data: str, reps: int = 5, train_limit: int = 12000, epochs: int = 4) -> None:
    """The shipped seed.toml fidelity (4 epochs on 12,000 images): what a user's trial costs."""
    import optuna

    from cnnsearch.search import study as study_mod
    from cnnsearch.search.objective import Objective
    from cnnsearch.model.train import release

    ns: dict[str, Any] = {}
    exec(PLAIN_KERAS, ns)
    sp = splits_for(data, train_limit)
    tmp = Path(tempfile.mkdtemp())
    space = tmp / "one.toml"
    space.write_text(f"[study]\npruner = 'none'\n[training]\nepochs = {epochs}\ntrain_limit = {train_limit}\n"
                     "[space]\nconv1_filters = [32]\n")
    os.environ["CNNSEARCH_ARTIFACTS"] = str(tmp / "artifacts")
    optuna.logging.set_verbosity(optuna.logging.WARNING)

    def cnnsearch_trial(i: int) -> float:
        url = f"sqlite:///{tmp / f'o{i}.db'}"
        h = study_mod.create(f"o{i}", space, url)
        h = study_mod.load(f"o{i}", url)
        objective = Objective(h, sp)
        t = time.perf_counter()
        h.study.optimize(objective, n_trials=1)  # the queued baseline: the seed model, pruning off
        return time.perf_counter() - t

    def plain(i: int) -> float:
        release()
        t = time.perf_counter()
        ns["plain_keras"](sp.x_train, sp.y_train, sp.x_val, sp.y_val, sp.x_test, sp.y_test, epochs, i)
        return time.perf_counter() - t

    plain(100)  # warm-up: TensorFlow's first graph and oneDNN kernels
    ours, theirs = [], []
    for i in range(reps):
        theirs.append(plain(i))
        ours.append(cnnsearch_trial(i))
    ratio = statistics.median(ours) / statistics.median(theirs)
    RESULTS["overhead"] = {"cnnsearch_s": ours, "plain_keras_s": theirs, "ratio": ratio}
    extra = statistics.median(ours) - statistics.median(theirs)
    RESULTS["overhead"]["extra_s"] = extra
    log(f"1 overhead: cnnsearch trial {statistics.median(ours):.2f} s vs plain Keras {statistics.median(theirs):.2f} s"
        f" (median of {reps}, alternating; {epochs} epochs on {train_limit:,} images): ratio {ratio:.3f}"
        f" (bound 1.05); {extra:+.2f} s a trial (storage writes, clear_session + gc, saving the best weights)")


# 2 ----------------------------------------------------------------------------------------------------

def cpu_peak_gflops() -> tuple[float, str]:
    """FP32 peak: cores x FLOPs/cycle (AVX-512: 2 FMA units x 16 lanes x 2) x clock."""
    mhz = [float(line.split(":")[1]) for line in open("/proc/cpuinfo") if line.startswith("cpu MHz")]
    flags = next(line for line in open("/proc/cpuinfo") if line.startswith("flags"))
    cores = os.cpu_count() or 1
    lanes = 16 if "avx512f" in flags else 8
    ghz = max(mhz) / 1000 if mhz else 2.0
    per_cycle = 2 * lanes * 2  # two FMA ports, each lane a multiply and an add
    how = (f"{cores} cores x {per_cycle} FLOP/cycle ({'AVX-512' if lanes == 16 else 'AVX2'}, 2 FMA units assumed)"
           f" x {ghz:.2f} GHz (/proc/cpuinfo)")
    return cores * per_cycle * ghz, how


def bench_throughput(data: str, train_limit: int = 12000) -> None:
    from cnnsearch.model.arch import ArchSpec, summarize
    from cnnsearch.model.train import TrainConfig, fit

    sp = splits_for(data, train_limit)
    flops = summarize(ArchSpec()).flops
    peak, how = cpu_peak_gflops()
    rows = {}
    fit(ArchSpec(), sp, TrainConfig(epochs=1, train_limit=2000))  # warm-up
    for jit in ("auto", False, True):
        r = fit(ArchSpec(), sp, TrainConfig(epochs=2, train_limit=train_limit, jit_compile=jit))
        s = r.epoch_seconds[-1]  # the second epoch: no tracing or compiling
        ips = train_limit / s
        rows[str(jit)] = {"epoch_s": s, "images_per_s": ips, "gflops": 3 * flops * ips / 1e9}
    best = min(rows, key=lambda k: rows[k]["epoch_s"])
    res: dict[str, Any] = {"jit": rows, "peak_gflops": peak, "peak_how": how, "fastest_jit": best}
    log(f"2 throughput (seed model, {train_limit:,} images, second epoch incl. validation of 6,000):")
    for k, v in rows.items():
        log(f"    jit_compile={k:<5} {v['epoch_s']:6.2f} s/epoch  {v['images_per_s']:7.0f} img/s"
            f"  {v['gflops']:6.1f} GFLOP/s = {v['gflops'] / peak:.1%} of peak {peak:.0f} GFLOP/s")
    log(f"    peak: {how}")
    acc = {}
    for prec in ("float32", "mixed_bfloat16"):
        r = fit(ArchSpec(), sp, TrainConfig(epochs=3, train_limit=train_limit, precision=prec, seed=0))
        acc[prec] = {"epoch_s": statistics.median(r.epoch_seconds[1:]), "test_accuracy": r.test_accuracy}
    speed = acc["float32"]["epoch_s"] / acc["mixed_bfloat16"]["epoch_s"]
    dacc = 100 * (acc["mixed_bfloat16"]["test_accuracy"] - acc["float32"]["test_accuracy"])
    res["precision"] = {**acc, "speedup": speed, "accuracy_diff_pp": dacc}
    log(f"    precision: mixed_bfloat16 {speed:.2f}x the speed of float32; test accuracy after 3 epochs"
        f" {acc['mixed_bfloat16']['test_accuracy']:.4f} vs {acc['float32']['test_accuracy']:.4f} ({dacc:+.2f} pp)")
    RESULTS["throughput"] = res


# 3 ----------------------------------------------------------------------------------------------------

def bench_startup(reps: int = 3) -> None:
    from conftest import TINY_SPACE

    tmp = Path(tempfile.mkdtemp())
    url = f"sqlite:///{tmp / 's.db'}"
    space = tmp / "s.toml"
    space.write_text(TINY_SPACE.format(epochs=1, heartbeat=60))
    env = {**os.environ, "CNNSEARCH_STORAGE": url}
    subprocess.run([sys.executable, "-m", "cnnsearch.cli", "study", "create", "s", "--space", str(space)], env=env,
                   check=True, capture_output=True)
    probe = ("import sys, runpy; sys.argv = ['cnnsearch'] + sys.argv[1:];"
             "\ntry:\n    runpy.run_module('cnnsearch.cli', run_name='__main__')\nexcept SystemExit:\n    pass"
             "\nsys.stderr.write('TF_IMPORTED=%s' % ('tensorflow' in sys.modules))")
    cmds = {"cnnsearch --help": ["--help"], "cnnsearch study list": ["study", "list"],
            "cnnsearch report (table only)": ["report", "s", "--no-models", "--out", str(tmp / "r.html")]}
    rows = {}
    for label, args in cmds.items():
        times, tf = [], None
        for _ in range(reps):
            t = time.perf_counter()
            r = subprocess.run([sys.executable, "-c", probe, *args], env=env, capture_output=True, text=True)
            times.append(time.perf_counter() - t)
            tf = "TF_IMPORTED=True" in r.stderr
        rows[label] = {"seconds": statistics.median(times), "tensorflow_imported": tf}
        log(f"3 start-up: {label:<30} {statistics.median(times):.2f} s (median of {reps}; bound 1.5 s);"
            f" TensorFlow imported: {tf}")
    RESULTS["startup"] = rows


# 4 ----------------------------------------------------------------------------------------------------

MEMORY_WORKER = textwrap.dedent("""
    import json, resource, sys
    sys.path.insert(0, sys.argv[1])
    import numpy as np
    from conftest import make_tiny
    from cnnsearch.search import runner
    from cnnsearch.search import study as study_mod
    tmp = sys.argv[2]
    np.savez(tmp + "/tiny.npz", **make_tiny())
    open(tmp + "/m.toml", "w").write("[study]\\nsampler = 'random'\\npruner = 'none'\\n[training]\\nepochs = 1\\n"
                                     "batch_size = 64\\n[space]\\nconv1_filters = [4, 8, 16, 32]\\n"
                                     "conv2_filters = [8, 16, 64]\\n")
    url = "sqlite:///" + tmp + "/m.db"
    study_mod.create("m", tmp + "/m.toml", url)
    peaks = {}
    def sample(line):
        if line.done in (10, 100):
            peaks[line.done] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    runner.run("m", trials=100, url=url, data_path=tmp + "/tiny.npz", on_trial=sample)
    print(json.dumps(peaks))
""")


def bench_memory() -> None:
    tmp = tempfile.mkdtemp()
    t = time.perf_counter()
    r = subprocess.run([sys.executable, "-c", MEMORY_WORKER, str(ROOT / "tests"), tmp], capture_output=True,
                       text=True, env={**os.environ, "CNNSEARCH_ARTIFACTS": tmp + "/a"})
    if r.returncode:
        raise RuntimeError(r.stderr[-2000:])
    peaks = {int(k): v for k, v in json.loads(r.stdout.strip().splitlines()[-1]).items()}
    growth = peaks[100] - peaks[10]
    RESULTS["memory"] = {"peak_rss_mb_after_10": peaks[10], "peak_rss_mb_after_100": peaks[100],
                         "growth_mb": growth, "seconds": time.perf_counter() - t}
    log(f"4 memory: peak RSS {peaks[10]:.0f} MB after 10 tiny trials, {peaks[100]:.0f} MB after 100:"
        f" growth {growth:.0f} MB (bound 200 MB)")


# 5 ----------------------------------------------------------------------------------------------------

SEARCH_SPACE = """
[study]
sampler = "{sampler}"
pruner = "{pruner}"
seed = 0
[training]
epochs = 4
train_limit = 3000
[space]
conv1_filters = [8, 16, 24, 32, 48, 64]
conv2_filters = [16, 32, 48, 64, 96, 128]
conv1_kernel  = [3, 5]
conv2_kernel  = [3, 5]
pool_size     = [2, 3, 4]
dropout_conv  = {{ low = 0.0, high = 0.5, step = 0.05 }}
dropout_dense = {{ low = 0.0, high = 0.7, step = 0.05 }}
"""


def bench_search(data: str, minutes: float) -> None:
    from optuna.trial import TrialState

    from cnnsearch.search import runner
    from cnnsearch.search import study as study_mod

    tmp = Path(tempfile.mkdtemp())
    os.environ["CNNSEARCH_ARTIFACTS"] = str(tmp / "artifacts")
    rows = {}
    for label, sampler, pruner in (("tpe+median", "tpe", "median"), ("tpe+hyperband", "tpe", "hyperband"),
                                   ("random, no pruning", "random", "none")):
        space = tmp / f"{sampler}-{pruner}.toml"
        space.write_text(SEARCH_SPACE.format(sampler=sampler, pruner=pruner))
        url = f"sqlite:///{tmp / 'search.db'}"
        name = f"{sampler}-{pruner}"
        study_mod.create(name, space, url)
        t0 = time.time()
        runner.run(name, trials=10_000, timeout=minutes * 60, data_path=data, url=url)
        trials = study_mod.load(name, url).study.get_trials()
        base = next(t for t in trials if t.user_attrs.get("baseline"))
        target = base.user_attrs["val_accuracy"]
        reached = None
        for t in sorted(trials, key=lambda t: t.datetime_complete or t.datetime_start):
            if (not t.user_attrs.get("baseline") and t.state == TrialState.COMPLETE
                    and t.user_attrs["val_accuracy"] >= target):
                reached = (t.datetime_complete.timestamp() - t0)
                break
        done = [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
        epochs_run = sum(t.user_attrs.get("epochs_run", 0) for t in done)
        best = max(t.user_attrs["val_accuracy"] for t in trials if t.state == TrialState.COMPLETE)
        rows[label] = {"trials": len(done), "pruned": sum(t.state == TrialState.PRUNED for t in done),
                       "baseline_val": target, "best_val": best, "seconds_to_baseline": reached,
                       "epochs_saved_share": 1 - epochs_run / (4 * len(done)) if done else 0.0}
        r = rows[label]
        log(f"5 search {label:<20} {r['trials']:3d} trials ({r['pruned']} pruned) in {minutes:.0f} min;"
            f" baseline val {target:.4f} reached after"
            f" {'never' if reached is None else f'{reached:.0f} s'}; best val {best:.4f};"
            f" epochs saved by pruning {r['epochs_saved_share']:.0%}")
    RESULTS["search"] = rows


# 6 ----------------------------------------------------------------------------------------------------

def bench_scaling(data: str) -> None:
    from cnnsearch.model.arch import ArchSpec, summarize
    from cnnsearch.model.train import TrainConfig, fit

    from cnnsearch.ground import data as data_mod

    ds = data_mod.load(data)
    rows: dict[str, Any] = {"size": {}, "flops": {}}
    fit(ArchSpec(), data_mod.split(ds, train_limit=2000), TrainConfig(epochs=1, train_limit=2000))  # warm-up
    for n in (6000, 18000, 54000):
        sp = data_mod.split(ds, train_limit=n)
        r = fit(ArchSpec(), sp, TrainConfig(epochs=2, train_limit=n))
        rows["size"][n] = r.epoch_seconds[-1]
        log(f"6 scaling: {n:>6,} images: {r.epoch_seconds[-1]:6.2f} s/epoch ({r.epoch_seconds[-1] / n * 1e3:.3f} ms"
            " per image, incl. validating 6,000)")
    sp = data_mod.split(ds, train_limit=12000)
    for spec in (ArchSpec(conv_filters=(8, 16)), ArchSpec(conv_filters=(16, 32)), ArchSpec(),
                 ArchSpec(conv_filters=(64, 128))):
        f = summarize(spec).flops
        r = fit(spec, sp, TrainConfig(epochs=2, train_limit=12000))
        rows["flops"][f] = r.epoch_seconds[-1]
        log(f"6 scaling: {f / 1e6:7.1f} MFLOP/image forward ({spec.conv_filters}): {r.epoch_seconds[-1]:6.2f} s/epoch"
            f" on 12,000 images")
    RESULTS["scaling"] = rows


# 7 (issue 4's bound) -----------------------------------------------------------------------------------

def bench_report_1000() -> None:
    """A table-and-figures report of a 1,000-trial study built with create_trial: under 30 s."""
    from test_report import fake_trial

    from cnnsearch.report import page as report_mod
    from cnnsearch.search import study as study_mod
    from conftest import TINY_SPACE

    tmp = Path(tempfile.mkdtemp())
    space = tmp / "s.toml"
    space.write_text(TINY_SPACE.format(epochs=2, heartbeat=60))
    url = f"sqlite:///{tmp / 'big.db'}"
    h = study_mod.create("big", space, url)
    h.study.add_trials([fake_trial(0, baseline=True)] + [fake_trial(i) for i in range(1, 1000)])
    t = time.perf_counter()
    path = report_mod.write("big", tmp / "big.html", url, models=False)
    seconds = time.perf_counter() - t
    RESULTS["report_1000"] = {"seconds": seconds, "bytes": path.stat().st_size}
    log(f"7 report of a 1,000-trial study (create_trial, no model figures): {seconds:.1f} s (bound 30 s),"
        f" {path.stat().st_size / 1e6:.1f} MB")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default=os.environ.get("CNNSEARCH_DATA", str(ROOT.parent / "shared/data/mnist.npz")))
    p.add_argument("--only", default="1,2,3,4,5,6,7", help="comma-separated benchmark numbers")
    p.add_argument("--search-minutes", type=float, default=3.0, help="time budget per strategy in benchmark 5")
    p.add_argument("--json", default=None, help="also write the figures to this JSON file")
    a = p.parse_args()
    only = {int(x) for x in a.only.split(",")}
    log(f"cnnsearch benchmarks, {time.strftime('%Y-%m-%d %H:%M')}, {os.cpu_count()} CPUs, data {a.data}")
    t0 = time.time()
    steps = {1: lambda: bench_overhead(a.data), 2: lambda: bench_throughput(a.data), 3: bench_startup,
             4: bench_memory, 5: lambda: bench_search(a.data, a.search_minutes), 6: lambda: bench_scaling(a.data),
             7: bench_report_1000}
    for k in sorted(only):
        t = time.time()
        steps[k]()
        log(f"   ({time.time() - t:.0f} s)")
    log(f"all done in {time.time() - t0:.0f} s")
    if a.json:
        Path(a.json).write_text(json.dumps(RESULTS, indent=2, default=str))


if __name__ == "__main__":
    main()
