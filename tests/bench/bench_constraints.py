"""Does the sampler learn a size limit? Share of infeasible draws late in a constrained TPE study.

    python tests/bench/bench_constraints.py [--seeds 0,1,2] [--draws 40] [--json out.json]

A space of filters and dense width on tiny synthetic 12x12 images (1 epoch a
trial: the accuracy is beside the point, the sampler's draws are the
measurement), with ``max_params`` set to the median parameter count of the
space's points, so about half of uniform draws are infeasible. Runs the real
study machinery (SQLite storage, ``study.run``) with TPE, and with the random
sampler as the control, and prints the infeasible share of the first and last
halves of the first ``--draws`` draws (trial 0, the reference, left out).
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))

from conftest import make_tiny  # noqa: E402

from cnnsearch import space as space_mod  # noqa: E402
from cnnsearch import study as study_mod  # noqa: E402
from cnnsearch.arch import summarize  # noqa: E402

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
batch_size = 64
[space]
""" + "\n".join(f"{k} = {v}" for k, v in DIMS.items()) + "\n"


def median_params() -> tuple[int, float]:
    """The median parameter count over every point of DIMS on 12x12x1 images, 3 classes, and the share above it."""
    sp = space_mod.parse(SPACE.format(sampler="tpe", seed=0, max_params=0))
    counts = [summarize(space_mod.spec_from_values(dict(zip(DIMS, combo)), sp), (12, 12, 1), 3).params
              for combo in itertools.product(*DIMS.values())]
    limit = int(statistics.median(counts))
    return limit, float(np.mean([c > limit for c in counts]))


def one_run(sampler: str, seed: int, draws: int, limit: int, tmp: Path, data: Path) -> dict[str, Any]:
    toml = tmp / f"{sampler}{seed}.toml"
    toml.write_text(SPACE.format(sampler=sampler, seed=seed, max_params=limit))
    url = f"sqlite:///{tmp / f'{sampler}{seed}.db'}"
    study_mod.create("b", toml, url)
    t0 = time.perf_counter()
    # --trials counts trained trials only; `draws` of them always mean at least `draws` draws.
    h = study_mod.run("b", trials=draws, data_path=str(data), url=url)
    seconds = time.perf_counter() - t0
    trials = sorted(h.study.get_trials(deepcopy=False), key=lambda t: t.number)[1:draws + 1]
    bad = [0 if space_mod.feasible(t) else 1 for t in trials]
    half = draws // 2
    inf_seconds = [(t.datetime_complete - t.datetime_start).total_seconds() for t in trials
                   if t.user_attrs.get("infeasible")]
    return {"sampler": sampler, "seed": seed, "first_half": float(np.mean(bad[:half])),
            "last_half": float(np.mean(bad[half:])), "seconds": round(seconds, 1),
            "max_infeasible_trial_s": round(max(inf_seconds), 3) if inf_seconds else None}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
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
        data = tmp / "tiny.npz"
        np.savez(data, **make_tiny(n_train=600, n_test=100))
        runs = [("tpe", int(s)) for s in args.seeds.split(",")] + ([("random", 0)] if args.random else [])
        for sampler, seed in runs:
            rows.append(one_run(sampler, seed, args.draws, limit, tmp, data))
            print(json.dumps(rows[-1]), flush=True)
    tpe = [r["last_half"] for r in rows if r["sampler"] == "tpe"]
    print(f"TPE: infeasible share of the last {args.draws // 2} of {args.draws} draws: mean {np.mean(tpe):.0%}"
          f" ({', '.join(f'{v:.0%}' for v in tpe)})")
    if args.json:
        Path(args.json).write_text(json.dumps({"max_params": limit, "space_share_over": share, "runs": rows}, indent=1))


if __name__ == "__main__":
    main()
