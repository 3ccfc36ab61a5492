"""Calibration of the confirmation verdict: false better/worse rate under the null, and power (issue 20).

    python tests/bench/calibration.py [--sims 1000] [--seed 0] [--json reports/bench/calibration.json]

Simulated confirmations, judged by the real code (:func:`cnnsearch.evidence.verdict.paired_verdicts`,
:func:`~cnnsearch.evidence.verdict.spending`), with synthetic per-image predictions built to look like
the committed MNIST example (baseline ~99.1-99.2%, seed sd ~0.03 pp, ~90 images on which two models
disagree per seed pair):

- A population of test images; each confirmation draws its own 10,000 from it (so test-image
  sampling is part of what is simulated, as it is for someone who re-runs on new digits).
- Each image is *hard* (missed with probability 0.9), *borderline* (0.2, scaled per seed by a
  log-normal factor: the training seed's own luck) or *easy* (never missed) for an architecture.
- The candidate shares the baseline's category on an image with probability ``rho``; otherwise it
  draws its own from its marginal. Null: the same marginal (equal accuracy on the population, yet a
  different set of hard images). Alternative: fewer hard/borderline images, +0.24 pp on the population
  (the committed example's effect).
- "same configuration" null: candidate = baseline architecture (rho = 1): only the seeds differ.

Reported: the share of null confirmations called ``better`` or ``worse`` (with its Monte-Carlo
standard error), the same for the seeds-only t-test (what cnnsearch used before: it ignores the
images), the power at 3, 5 and 10 seeds, a 3-candidate null family (Holm), and the group-sequential
design (looks at 3, 5, 10 of at most 10 seeds, O'Brien-Fleming spending).
Costs about 45 s of CPU (one core; wall time grows on a loaded machine); the figures in docs/evidence.md
come from its JSON.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from cnnsearch.evidence import verdict  # noqa: E402

M = 10_000  # test images per confirmation (MNIST's test set)
HARD, BORDER = 0.006, 0.013  # population shares of hard and borderline images, per architecture
Q_HARD, Q_BORDER = 0.9, 0.2  # miss probability on a hard / borderline image
SEED_LUCK = 0.2  # sd of the log of a seed's factor on borderline misses
RHO = 0.7  # chance the candidate shares the baseline's category on an image
EFFECT = 0.0024  # +0.24 pp, the committed example's difference (trial228)


def _categories(rng: np.random.Generator, base: np.ndarray | None, rho: float, scale: float) -> np.ndarray:
    """0 easy, 1 borderline, 2 hard per image; shared with ``base`` with probability ``rho``."""
    u = rng.random(M)
    own = np.where(u < HARD * scale, 2, np.where(u < (HARD + BORDER) * scale, 1, 0))
    if base is None:
        return own
    return np.where(rng.random(M) < rho, base, own)


def _correct(rng: np.random.Generator, cat: np.ndarray, seeds: int) -> np.ndarray:
    """Seeds x images: right (True) or not, each seed with its own luck on the borderline images."""
    luck = np.exp(SEED_LUCK * rng.standard_normal((seeds, 1)))
    q = np.where(cat == 2, Q_HARD, np.where(cat == 1, np.minimum(1.0, Q_BORDER * luck), 0.0))
    return rng.random((seeds, M)) >= q


def _scale_for(effect: float) -> float:
    # Population error of the candidate = rho * e_b + (1 - rho) * scale * e_b; solve for +effect accuracy.
    e_b = HARD * Q_HARD + BORDER * Q_BORDER
    return 1 - effect / ((1 - RHO) * e_b)


def confirmation(rng: np.random.Generator, seeds: int, *, k: int = 1, effect: float = 0.0, rho: float = RHO,
                 looks: list[int] | None = None) -> tuple[list[str], list[str]]:
    """One simulated confirmation: (verdict words, seeds-only words), one per candidate."""
    base_cat = _categories(rng, None, 1.0, 1.0)
    base = _correct(rng, base_cat, seeds)
    labels = np.ones(M, dtype=np.int64)
    runs = lambda c: {s: {"test_accuracy": float(c[s].mean()), "predictions": c[s].astype(np.uint8)}  # noqa: E731
                      for s in range(seeds)}
    cands = {f"trial{j}": runs(_correct(rng, _categories(rng, base_cat, rho, _scale_for(effect)), seeds))
             for j in range(k)}
    looks = looks or [seeds]
    levels = verdict.spending(looks, seeds)
    decided: dict[str, str] = {}
    for n, level in zip(looks, levels):
        res = verdict.paired_verdicts(runs(base), cands, labels, seeds=list(range(n)), alpha=level)["results"]
        for key, r in res.items():
            if key not in decided and r["verdict"] != "inconclusive":
                decided[key] = r["verdict"]
    words = [decided.get(key, "inconclusive") for key in cands]
    # The seeds-only t-test at the full level (the rule before issue 20), on the last look's seeds.
    ps = [r["p_seeds"] for r in res.values()]
    seeds_only = [verdict.decide(r["mean"], p, r["n"]) for r, p in zip(res.values(), verdict.holm(ps))]
    return words, seeds_only


def rate(rng: np.random.Generator, sims: int, **kw: Any) -> dict[str, Any]:
    """Share of confirmations with any ``better``/``worse`` (null) or with ``better`` (alternative)."""
    hits = {"verdict": 0, "seeds_only": 0}
    want = ("better",) if kw.get("effect") else ("better", "worse")
    for _ in range(sims):
        words, seeds_only = confirmation(rng, **kw)
        hits["verdict"] += any(w in want for w in words)
        hits["seeds_only"] += any(w in want for w in seeds_only)
    out: dict[str, Any] = {"sims": sims, **{k: v for k, v in kw.items()}}
    for name, h in hits.items():
        p = h / sims
        out[name] = {"rate": p, "mc_se": math.sqrt(max(p * (1 - p), 1 / sims) / sims)}
    return out


def describe(rng: np.random.Generator) -> dict[str, float]:
    """What the simulated models look like, to compare with the committed example."""
    base_cat = _categories(rng, None, 1.0, 1.0)
    b = _correct(rng, base_cat, 10)
    c = _correct(rng, _categories(rng, base_cat, RHO, 1.0), 10)
    return {"baseline_accuracy": float(b.mean()), "seed_sd_pp": float(100 * b.mean(axis=1).std(ddof=1)),
            "discordant_images_per_seed_pair": float((b != c).sum(axis=1).mean()),
            "diff_sd_pp": float(100 * (c.mean(axis=1) - b.mean(axis=1)).std(ddof=1))}


def main() -> None:
    """Run every condition and write the JSON."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sims", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", default=str(ROOT / "reports" / "bench" / "calibration.json"))
    args = ap.parse_args()
    rng = np.random.default_rng(args.seed)
    start, cpu = time.perf_counter(), time.process_time()
    n = args.sims
    out: dict[str, Any] = {
        "model": {"test_images": M, "hard": HARD, "borderline": BORDER, "q_hard": Q_HARD, "q_borderline": Q_BORDER,
                  "seed_luck": SEED_LUCK, "rho": RHO, "effect": EFFECT, **describe(rng)},
        "alpha": verdict.ALPHA,
        "null": [rate(rng, n, seeds=s) for s in (3, 5, 10)],
        "null_same_configuration": [rate(rng, n, seeds=3, rho=1.0)],
        "null_family_of_3": [rate(rng, n // 2, seeds=3, k=3)],
        "power": [rate(rng, n, seeds=s, effect=EFFECT) for s in (3, 5, 10)],
        "sequential": [rate(rng, n // 2, seeds=10, looks=[3, 5, 10]),
                       rate(rng, n // 2, seeds=10, looks=[3, 5, 10], effect=EFFECT)],
    }
    # Wall time depends on what else the machine runs; CPU time is what the benchmark itself costs.
    out["seconds"] = round(time.perf_counter() - start, 1)
    out["cpu_seconds"] = round(time.process_time() - cpu, 1)
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(out, indent=1) + "\n")
    for group in ("null", "null_same_configuration", "null_family_of_3", "power", "sequential"):
        for r in out[group]:
            v, s = r["verdict"], r["seeds_only"]
            print(f"{group:>24} seeds={r['seeds']:>2} looks={r.get('looks')} k={r.get('k', 1)}: verdict"
                  f" {v['rate']:.3f} ± {v['mc_se']:.3f}; seeds-only t-test {s['rate']:.3f} ± {s['mc_se']:.3f}")
    print(f"model: {out['model']}\n{out['seconds']} s wall, {out['cpu_seconds']} s CPU; wrote {args.json}")


if __name__ == "__main__":
    main()
