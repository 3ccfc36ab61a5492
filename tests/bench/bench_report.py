"""How long `cnnsearch report` takes for a 100-trial study with model figures (issue 24: at most 10 s).

    python tests/bench/bench_report.py [--data PATH] [--trials 100] [--reps 3] [--json reports/bench/report_speed.json]

The study is built with Optuna's ``create_trial`` (no training, so the benchmark itself is quick):
the in-study baseline (the reference model) and 99 searched trials as cnnsearch stores them,
plus kept weights for the best trial and the baseline (Keras models with their initial weights:
the report's NumPy forward pass costs the same whatever the weights are). Then the real command,
``cnnsearch report NAME --data PATH`` in a fresh process (imports included), timed:

- after a study run: the search worker that kept each model cached its figure arrays (what
  ``study run`` now does: :func:`cnnsearch.model.figcache.prepare`), so the report reads them;
  the bound of issue 24 (at most 10 s) is on this case;
- cold: no figure cache beside the weights (a study kept by an older version, or a model of your
  own, which only Keras can run);
- ``--no-models``.

The worker's own cost of caching one kept model (the NumPy forward pass it took off the report) is
timed too, in process, for the best model and the baseline.

The data default to ``$CNNSEARCH_DATA`` (MNIST: the model figures need its 10,000 test images).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))


def machine() -> dict[str, Any]:
    """The machine in lscpu's words (model name, family, model), cores and memory."""
    info: dict[str, Any] = {"cores": os.cpu_count(), "python": platform.python_version(),
                            "load_average_1_5_15_min": [round(x, 2) for x in os.getloadavg()]}
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        for line in out.splitlines():
            key, _, value = line.partition(":")
            if key.strip() in ("Model name", "CPU family", "Model"):
                info[key.strip()] = value.strip()
    except OSError:
        pass
    try:
        kb = next(int(x.split()[1]) for x in Path("/proc/meminfo").read_text().splitlines() if x.startswith("MemTotal"))
        info["memory_gib"] = round(kb / 2**20)
    except (OSError, StopIteration):
        pass
    return info


def build_study(tmp: Path, trials: int) -> tuple[str, str]:
    """A ``trials``-trial study with kept weights for the best trial and the baseline; returns (url, name)."""
    from test_report import fake_trial
    from conftest import TINY_SPACE

    from cnnsearch.model.arch import ArchSpec, build_model
    from cnnsearch.records.storage import artifact_dir, sha256
    from cnnsearch.search import study as study_mod

    space = tmp / "space.toml"
    space.write_text(TINY_SPACE.format(epochs=2, heartbeat=60))
    url, name = f"sqlite:///{tmp / 'bench.db'}", "bench"
    h = study_mod.create(name, space, url)
    h.study.add_trials([fake_trial(0, baseline=True)] + [fake_trial(i) for i in range(1, trials)])
    best = study_mod.best_trial(h.study)
    base = next(t for t in h.study.get_trials(deepcopy=False) if t.user_attrs.get("baseline") and t.value)
    folder = artifact_dir(url)
    folder.mkdir(parents=True, exist_ok=True)
    for key, t in (("best_weights", best), ("baseline_weights", base)):
        spec = ArchSpec.from_dict(t.user_attrs["spec"])
        artifact_id = f"{name}-{key}-trial{t.number}.keras"
        build_model(spec, (28, 28, 1), 10).save(folder / artifact_id)
        h.study.set_user_attr(key, {"trial": t.number, "artifact_id": artifact_id,
                                    "sha256": sha256(folder / artifact_id)})
    return url, name


def timed_report(url: str, name: str, data: str, out: Path, *, models: bool = True) -> float:
    """Wall seconds of ``cnnsearch report`` in a fresh process."""
    cmd = [sys.executable, "-m", "cnnsearch.cli", "report", name, "--out", str(out), "--data", data]
    if not models:
        cmd.append("--no-models")
    env = {**os.environ, "CNNSEARCH_STORAGE": url, "PYTHONPATH": str(ROOT), "MPLBACKEND": "Agg"}
    start = time.perf_counter()
    subprocess.run(cmd, check=True, env=env, capture_output=True, text=True, timeout=600)
    return time.perf_counter() - start


def clear_cache(url: str, which: tuple[str, ...]) -> None:
    from cnnsearch.records.storage import artifact_dir

    for path in artifact_dir(url).glob("*.figures.npz"):
        if any(f"-{w}_weights-" in path.name for w in which):
            path.unlink()


def prepare_as_worker(url: str, name: str, data: str) -> float:
    """What the search workers do when they keep a model: cache its figure arrays; returns the seconds."""
    from cnnsearch.ground import provenance
    from cnnsearch.model import figcache
    from cnnsearch.search import study as study_mod
    from cnnsearch.search.kept import model_file

    h = study_mod.load(name, url)
    x_test = provenance.load(h.study, data, remember=False, download=False).x_test
    start = time.perf_counter()
    for which in ("best", "baseline"):
        number = h.study.user_attrs[f"{which}_weights"]["trial"]
        spec = study_mod.trial_attr(next(t for t in h.study.get_trials(deepcopy=False) if t.number == number), "spec")
        figcache.prepare(model_file(h, which), spec, x_test)
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=os.environ.get("CNNSEARCH_DATA"), help="MNIST (.npz or IDX folder)")
    ap.add_argument("--trials", type=int, default=100)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--json", default=None, help="also write the figures to this JSON file")
    ap.add_argument("--note", default="", help="what else the machine was doing, for the JSON")
    a = ap.parse_args()
    if not a.data:
        sys.exit("bench_report.py: expected --data PATH or $CNNSEARCH_DATA (MNIST); received neither")
    tmp = Path(tempfile.mkdtemp(prefix="bench-report-"))
    os.environ["CNNSEARCH_ARTIFACTS"] = str(tmp / "artifacts")
    url, name = build_study(tmp, a.trials)
    runs: dict[str, list[float]] = {"after_run": [], "cold": [], "no_models": [], "worker_prepare": []}
    for _ in range(a.reps):  # the variants alternate, so a slow spell of a shared machine hits all of them
        clear_cache(url, ("best", "baseline"))
        runs["worker_prepare"].append(prepare_as_worker(url, name, a.data))
        runs["after_run"].append(timed_report(url, name, a.data, tmp / "r.html"))
        clear_cache(url, ("best", "baseline"))
        runs["cold"].append(timed_report(url, name, a.data, tmp / "r.html"))
        runs["no_models"].append(timed_report(url, name, a.data, tmp / "r.html", models=False))
    result = {
        "what": f"cnnsearch report of a {a.trials}-trial study (create_trial) with model figures, fresh process",
        "command": "python " + " ".join(sys.argv),  # as run, --data and --json included
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine(),  # its load average, taken at the end, says how shared the machine was
        "note": a.note,
        "seconds": runs,
        "median_seconds": {k: round(statistics.median(v), 2) for k, v in runs.items()},
        "bound_seconds": 10,
        "report_bytes": (tmp / "r.html").stat().st_size,
    }
    for key, label in (("after_run", "after a study run (the workers cached the models' arrays)"),
                       ("cold", "no cache (older study, or a model of your own)"), ("no_models", "--no-models"),
                       ("worker_prepare", "[the workers' cost, not the report's: caching both kept models]")):
        print(f"report of a {a.trials}-trial study, {label}: median {result['median_seconds'][key]:.1f} s"
              f" ({', '.join(f'{s:.1f}' for s in runs[key])})")
    print(f"bound: {result['bound_seconds']} s after a study run (the 'after_run' case)")
    if a.json:
        Path(a.json).parent.mkdir(parents=True, exist_ok=True)
        Path(a.json).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
