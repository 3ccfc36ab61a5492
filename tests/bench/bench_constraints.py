"""Does the sampler learn a size limit? Share of infeasible draws late in a constrained TPE study.

    python tests/bench/bench_constraints.py [--data mnist.npz] [--seeds 0,1,2] [--draws 40] [--json out.json]

A space of filters and dense width on real MNIST, 1 epoch on 1,000 images a
trial (cheap, yet accuracy grows with size, so the best points crowd the
limit, as in a real search), with ``max_params`` set to the median parameter
count of the space's points, so about half of uniform draws are infeasible. Runs the real
study machinery (SQLite storage, ``study.run``) with TPE, and with the random
sampler as the control, and prints the infeasible share of the first and last
halves of the first ``--draws`` draws (trial 0, the reference, left out).
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from cnnsearch.search import limits
from cnnsearch.search import points
from cnnsearch.search import space as space_mod
from cnnsearch.search import study as study_mod
from cnnsearch.model.arch import summarize
from cnnsearch.search.objective import Objective

DIMS = {"conv1_filters": [4, 8, 16, 32, 64], "conv2_filters": [8, 16, 32, 64, 128],
        "dense_units": [0, 16, 32, 64, 128, 256]}
SPACE = """
[study]
sampler = "{sampler}"
seed = {seed}
pruner = "none"
max_params = {max_params}
[training]
epochs = 1
train_limit = 1000
batch_size = 64
[space]
""" + "\n".join(f"{k} = {v}" for k, v in DIMS.items()) + "\n"


def median_params() -> tuple[int, float]:
    """The median parameter count over every point of DIMS on MNIST, and the share of points above it."""
    sp = space_mod.parse(SPACE.format(sampler="tpe", seed=0, max_params=0))
    counts = [summarize(points.spec_from_values(dict(zip(DIMS, combo)), sp)).params
              for combo in itertools.product(*DIMS.values())]
    limit = int(statistics.median(counts))
    return limit, float(np.mean([c > limit for c in counts]))


def one_run(sampler: str, seed: int, draws: int, limit: int, tmp: Path, data: str | None) -> dict[str, Any]:
    from cnnsearch.ground import data as data_mod

    toml = tmp / f"{sampler}{seed}.toml"
    toml.write_text(SPACE.format(sampler=sampler, seed=seed, max_params=limit))
    url = f"sqlite:///{tmp / f'{sampler}{seed}.db'}"
    study_mod.create("b", toml, url)
    h = study_mod.load("b", url)
    splits = data_mod.split(data_mod.load(data), train_limit=1000)
    t0 = time.perf_counter()
    # Exactly `draws` draws after the baseline, through the study's own sampler and objective
    # (`study run --trials N` would go on until N *trained* trials).
    h.study.optimize(Objective(h, splits), n_trials=draws + 1, catch=(Exception,))
    seconds = time.perf_counter() - t0
    trials = sorted(h.study.get_trials(deepcopy=False), key=lambda t: t.number)[1:draws + 1]
    bad = [0 if limits.feasible(t) else 1 for t in trials]
    half = draws // 2
    objective_s = [t.user_attrs["seconds"] for t in trials if t.user_attrs.get("infeasible")]
    wall_s = [(t.datetime_complete - t.datetime_start).total_seconds() for t in trials
              if t.user_attrs.get("infeasible")]
    return {"sampler": sampler, "seed": seed, "first_half": float(np.mean(bad[:half])),
            "last_half": float(np.mean(bad[half:])), "redraws": getattr(h.study.sampler, "redraws", None),
            "seconds": round(seconds, 1),
            "infeasible_objective_s_max": round(max(objective_s), 3) if objective_s else None,
            "infeasible_wall_s_median": round(float(np.median(wall_s)), 3) if wall_s else None}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=None, help="MNIST (default: $CNNSEARCH_DATA, then the Keras cache)")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--draws", type=int, default=40)
    ap.add_argument("--random", action=argparse.BooleanOptionalAction, default=True, help="random-sampler control")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    limit, share = median_params()
    print(f"max_params = {limit}: {share:.0%} of the space's points are over it", flush=True)
    rows = []
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        runs = [("tpe", int(s)) for s in args.seeds.split(",")] + ([("random", 0)] if args.random else [])
        for sampler, seed in runs:
            rows.append(one_run(sampler, seed, args.draws, limit, tmp, args.data))
            print(json.dumps(rows[-1]), flush=True)
    tpe = [r["last_half"] for r in rows if r["sampler"] == "tpe"]
    print(f"TPE: infeasible share of the last {args.draws // 2} of {args.draws} draws: mean {np.mean(tpe):.0%}"
          f" ({', '.join(f'{v:.0%}' for v in tpe)})")
    if args.json:
        Path(args.json).write_text(json.dumps({"max_params": limit, "space_share_over": share, "runs": rows}, indent=1))


if __name__ == "__main__":
    main()
