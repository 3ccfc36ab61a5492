"""An ablation's numbers: each change's effect in both directions, its verdict, and interactions.

Effects are in test accuracy (fractions), paired by training seed, and signed
so that positive means *the change raises accuracy*:

* leave one out: winner - (winner without the change);
* add one in: (baseline with the change) - baseline;
* total: winner - baseline.

Verdicts come from :func:`paired_verdicts` (Holm over the changes of one
direction: each direction is one family of tests). Interactions: when the
per-seed residual ``total - sum of single effects`` has a 95% interval that
excludes 0, the choices interact; the likeliest pair are the two changes whose
leave-one-out and add-one-in effects differ most. Pure functions of stored
records: no Optuna, no TensorFlow.
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import numpy as np

from cnnsearch.evidence.summary import no_nan as _no_nan  # one NaN rule for every --json
from cnnsearch.evidence import verdict as verdict_mod
from cnnsearch.evidence.confirm import Fidelity

#: The two directions, in the order shown.
DIRECTIONS = ("leave_one_out", "add_one_in")
#: A change's verdict word from the paired test's word (leave one out compares the variant with the winner).
_WORDS = {"leave_one_out": {"worse": "helps", "better": "hurts"}, "add_one_in": {"better": "helps", "worse": "hurts"}}

Index = Mapping[tuple[str, int], dict[str, Any]]


def paired_verdicts(baseline: Mapping[int, Mapping[str, Any]],
                    candidates: Mapping[str, Mapping[int, Mapping[str, Any]]], labels: np.ndarray | None = None,
                    *, seeds: Sequence[int] | None = None) -> dict[str, Any]:
    """Paired verdicts of candidates against one baseline from stored runs ({seed: record}), one Holm family.

    The family is the candidates that finished every seed in ``seeds`` (default: the baseline's); the
    others are listed under ``incomplete`` with their finished seed count and get no verdict. Results
    carry ``n``, ``mean`` (candidate - baseline), ``ci95``, ``p``, ``p_holm``, ``verdict`` and ``reason``.

    Through :func:`cnnsearch.evidence.verdict.paired_verdicts`, confirmation's own rule: training seeds
    and the test images' noise (from ``labels`` and the runs' stored predictions), Holm over the family.
    """
    return verdict_mod.paired_verdicts(baseline, candidates, labels, seeds=seeds)


def _by_seed(index: Index, ident: str, seeds: int) -> dict[int, dict[str, Any]]:
    return {s: index[(ident, s)] for s in range(seeds) if (ident, s) in index}


def _effect(direction: str, r: dict[str, Any] | None, judged: dict[str, Any], name: str) -> dict[str, Any]:
    """A paired verdict turned into the change's effect (leave one out: the sign and interval flip).

    ``r`` None: the variant has not finished every seed the reference has (``judged["incomplete"]``).
    """
    if r is None:
        done = judged["incomplete"].get(name, 0)
        return {"n": done, "effect": None, "ci95": None, "p": None, "p_holm": None, "verdict": "inconclusive",
                "reason": f"{done} of {len(judged['seeds'])} seeds finished; run study ablate again to finish it"}
    flip = direction == "leave_one_out"
    ci = None if any(math.isnan(c) for c in r["ci95"]) else r["ci95"]
    # "+ 0.0" turns a flipped 0.0 into 0.0, not -0.0 (printed "-0.00 pp").
    return {"n": r["n"], "effect": (-r["mean"] if flip else r["mean"]) + 0.0,
            "ci95": None if ci is None else ([-ci[1] + 0.0, -ci[0] + 0.0] if flip else list(ci)), "p": r["p"],
            "p_holm": r["p_holm"], "verdict": _WORDS[direction].get(r["verdict"], "inconclusive"),
            "reason": r.get("reason", "")}


def _direction(ab: dict[str, Any], index: Index, direction: str, labels: np.ndarray | None
               ) -> dict[str, dict[str, Any]]:
    """Per change: the variant of ``direction`` and its effect (a same-model variant: 0, not tested)."""
    seeds = int(ab["seeds"])
    ref = ab["winner"] if direction == "leave_one_out" else ab["baseline"]
    variants = {v["change"]: v for v in ab["variants"] if v["direction"] == direction}
    tested = {c: _by_seed(index, v["identity"], seeds) for c, v in variants.items()
              if v["problem"] is None and v["identity"] != ref["identity"]}
    judged = paired_verdicts(_by_seed(index, ref["identity"], seeds), tested, labels)
    verdicts = judged["results"]
    out = {}
    for c, v in variants.items():
        row = {"identity": v["identity"], "param_count": v["param_count"], "problem": v["problem"],
               "same_model": v["identity"] == ref["identity"]}
        if row["same_model"]:
            row.update(n=0, effect=0.0, ci95=[0.0, 0.0], p=None, p_holm=None, verdict="inconclusive", reason="")
        else:
            row.update(_effect(direction, verdicts.get(c), judged, c))
        out[c] = row
    return out


def _per_seed(index: Index, ident: str, seed: int) -> float | None:
    r = index.get((ident, seed))
    return None if r is None else float(r["test_accuracy"])


def _residual(ab: dict[str, Any], index: Index, direction: str) -> dict[str, Any]:
    """Per seed: total - the sum of the single effects of ``direction``; its mean and 95% interval."""
    w, b = ab["winner"]["identity"], ab["baseline"]["identity"]
    variants = [v for v in ab["variants"] if v["direction"] == direction]
    if any(v["problem"] for v in variants):
        return {"n": 0, "mean": None, "ci95": None, "interact": None, "sum": None,
                "why": "a variant of this direction was not run, so the sum is incomplete"}
    rows = []
    for s in range(int(ab["seeds"])):
        acc = [_per_seed(index, i, s) for i in (w, b, *[v["identity"] for v in variants])]
        if None in acc:
            continue
        tw, tb, singles = acc[0], acc[1], acc[2:]
        effects = [tw - a for a in singles] if direction == "leave_one_out" else [a - tb for a in singles]
        rows.append((tw - tb, sum(effects)))
    if not rows:
        return {"n": 0, "mean": None, "ci95": None, "interact": None, "sum": None, "why": "no complete seed yet"}
    res = verdict_mod.one_sample([t - s for t, s in rows], 0.0)
    ci = None if math.isnan(res.ci95[0]) else list(res.ci95)
    interact = None if len(rows) < verdict_mod.MIN_SEEDS or ci is None else bool(ci[0] > 0 or ci[1] < 0)
    return {"n": len(rows), "mean": res.mean, "ci95": ci, "interact": interact,
            "sum": sum(s for _, s in rows) / len(rows), "why": None}


def _pp(v: float | None) -> str:
    return "?" if v is None else f"{100 * v:+.2f} pp"


def _interval(ci: list[float] | None) -> str:
    return "" if ci is None else f", 95% interval {_pp(ci[0])} to {_pp(ci[1])}"


def interactions(ab: dict[str, Any], index: Index, rows: list[dict[str, Any]], total: dict[str, Any]
                 ) -> dict[str, Any]:
    """Do the single effects add up to the total? Per direction, and the likeliest interacting pair, in words."""
    out: dict[str, Any] = {d: _residual(ab, index, d) for d in DIRECTIONS}
    gaps = [(r["name"], r["leave_one_out"]["effect"] - r["add_one_in"]["effect"]) for r in rows
            if r["leave_one_out"]["effect"] is not None and r["add_one_in"]["effect"] is not None]
    gaps.sort(key=lambda g: -abs(g[1]))
    out["gaps"] = {name: gap for name, gap in gaps}
    out["likeliest_pair"] = [g[0] for g in gaps[:2]] if len(gaps) >= 2 else None
    out["sentence"] = _interaction_sentence(out, len(rows), total)
    return out


def _interaction_sentence(inter: dict[str, Any], n_changes: int, total: dict[str, Any]) -> str:
    if n_changes < 2:
        return "One change only: its effect is the total, there is nothing to interact with."
    judged = {d: inter[d] for d in DIRECTIONS if inter[d]["interact"] is not None}
    if not judged:
        why = "; ".join(f"{d.replace('_', '-')}: {inter[d]['why'] or 'fewer than ' + str(verdict_mod.MIN_SEEDS) + ' complete seeds'}"
                        for d in DIRECTIONS)
        return f"Interactions not judged yet ({why})."
    sums = "; ".join(f"{d.replace('_', ' ')}: sum {_pp(r['sum'])}, total minus sum {_pp(r['mean'])}"
                     f"{_interval(r['ci95'])}" for d, r in judged.items())
    if any(r["interact"] for r in judged.values()):
        s = (f"The choices interact: the single effects do not add up to the total ({_pp(total['effect'])}) within"
             f" their uncertainty ({sums}).")
        pair = inter["likeliest_pair"]
        if pair:
            s += (f" The likeliest pair: {pair[0]} and {pair[1]} (the largest leave-one-out minus add-one-in gaps,"
                  f" {_pp(inter['gaps'][pair[0]])} and {_pp(inter['gaps'][pair[1]])}).")
        return s
    return (f"No interaction shown: the single effects add up to the total ({_pp(total['effect'])}) within their"
            f" uncertainty ({sums}).")


def summarize(ab: dict[str, Any], index: Index, labels: np.ndarray | None = None) -> dict[str, Any]:
    """The stored ablation ``ab`` judged from the runs in ``index`` ((identity, seed) -> record). JSON-ready.

    ``labels``: the test labels the runs' stored predictions are scored against (for the test-image noise).
    """
    seeds = int(ab["seeds"])
    w, b = (_by_seed(index, ab[k]["identity"], seeds) for k in ("winner", "baseline"))
    judged = paired_verdicts(b, {"winner": w}, labels)
    total = _effect("add_one_in", judged["results"].get("winner"), judged, "winner")
    total["verdict"] = {"helps": "better", "hurts": "worse"}.get(total["verdict"], "inconclusive")
    per_dir = {d: _direction(ab, index, d, labels) for d in DIRECTIONS}
    rows = [{"name": c["name"], "keys": c["keys"], "text": c["text"],
             **{d: per_dir[d][c["name"]] for d in DIRECTIONS}} for c in ab["changes"]]
    out: dict[str, Any] = {
        "trial": ab["trial"], "fidelity": ab["fidelity"], "seeds": seeds, "alpha": verdict_mod.ALPHA,
        "min_seeds": verdict_mod.MIN_SEEDS,
        "winner": {**ab["winner"], "runs": len(w), "mean_test_accuracy": _mean(list(w.values()))},
        "baseline": {**ab["baseline"], "runs": len(b), "mean_test_accuracy": _mean(list(b.values()))},
        "total": total, "changes": rows,
    }
    out["interaction"] = interactions(ab, index, rows, total)
    out["verdict"] = sentence(out)
    out["mattered"] = mattered_sentence(out)
    return _no_nan(out)


def _mean(recs: list[dict[str, Any]]) -> float | None:
    return sum(float(r["test_accuracy"]) for r in recs) / len(recs) if recs else None


def _effect_text(r: dict[str, Any]) -> str:
    if r["problem"]:
        return f"not run ({r['problem']})"
    if r["same_model"]:
        return "the same model (no effect)"
    if r["effect"] is None:
        return r["reason"] or "no paired runs yet"
    return f"{r['verdict']} ({_pp(r['effect'])}{_interval(r['ci95'])}, n = {r['n']})"


def sentence(s: dict[str, Any]) -> str:
    """The ablation in words: the total, each change in both directions, then interactions."""
    fid = Fidelity(**s["fidelity"])
    t = s["total"]
    head = (f"Ablation of trial {s['trial']} against the baseline at {fid.describe()}, paired by training seed:"
            f" the winner is {t['verdict']} ({_pp(t['effect'])}{_interval(t['ci95'])}, {t['n']} seeds).")
    parts = [f"{r['name']}: leave-one-out {_effect_text(r['leave_one_out'])}; add-one-in"
             f" {_effect_text(r['add_one_in'])}" for r in s["changes"]]
    holm = f" Holm-corrected over the {len(s['changes'])} changes of each direction."
    return head + " " + ". ".join(parts) + "." + holm + " " + s["interaction"]["sentence"]


def mattered_sentence(s: dict[str, Any]) -> str:
    """Which choices mattered, by experiment: the changes with a verdict in at least one direction."""
    fid = Fidelity(**s["fidelity"])
    src = (f"By experiment (ablation of trial {s['trial']} over {s['total']['n']} paired seeds at {fid.describe()},"
           f" not the search's observational importance)")
    found = []
    for r in s["changes"]:
        words = {d: r[d]["verdict"] for d in DIRECTIONS if r[d]["verdict"] in ("helps", "hurts")}
        if words:
            found.append(f"{r['name']} ({', '.join(f'{w} {d.replace(chr(95), chr(45))}' for d, w in words.items())})")
    if not found:
        return (f"{src}: no single change had an effect beyond the seeds' noise; the winner's"
                f" {_pp(s['total']['effect'])} is not carried by any one of its {len(s['changes'])} changes alone.")
    rest = " The others showed no effect beyond the seeds' noise." if len(found) < len(s["changes"]) else ""
    return f"{src}: {'; '.join(found)}.{rest}"


__all__ = ["DIRECTIONS", "interactions", "mattered_sentence", "paired_verdicts", "sentence", "summarize"]
