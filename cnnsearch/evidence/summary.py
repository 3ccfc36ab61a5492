"""A confirmation's verdicts from what is stored: one declared family, its looks replayed in order.

:func:`summarize` never trains. It picks the confirmation (the family its run
declared, see :mod:`cnnsearch.evidence.store`), replays each look with the
level that look spent (:func:`cnnsearch.evidence.verdict.spending`), keeps a
verdict once a look decided it, and so gives exactly the verdicts the run
printed, whatever was stored after it (an interrupted follow-up's extra seeds
are counted as pending, not judged). Runs stored by a version without families
are judged as one legacy family: every stored candidate with all of the
baseline's seeds, one look at the full level; the others are listed apart.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from cnnsearch.evidence import published
from cnnsearch.evidence import verdict as verdict_mod
from cnnsearch.evidence import words
from cnnsearch.evidence.store import (LABELS_KEY, REFERENCE_FIDELITY, REFERENCE_RUN, Fidelity, decode, families,
                                      fidelities, runs)

#: The reference's test accuracy (20 epochs on all training images); defined in arch.REFERENCE.
REFERENCE_ACCURACY = REFERENCE_RUN.test_accuracy


def _legacy_family(by_config: dict[str, dict[int, dict[str, Any]]], fid: Fidelity, keys: list[str] | None
                   ) -> dict[str, Any]:
    # Stored by a version that did not record families: the question is rebuilt from the runs.
    base = sorted(by_config.get("baseline", {}))
    cands = [k for k in by_config if k != "baseline" and (keys is None or k in keys)]
    return {"id": 0, **fid.to_dict(), "candidates": sorted(cands, key=_config_order), "first_seed": base[0] if base
            else 0, "max_seeds": len(base), "alpha": verdict_mod.ALPHA, "looks": [{"seeds": len(base)}] if base else [],
            "legacy": True, "seed_list": base}


def _pick(attrs: dict[str, Any], fidelity: Fidelity | None, family: int | None) -> tuple[Fidelity | None, Any]:
    fams = families(attrs, fidelity)
    if family is not None:
        fams = [f for f in fams if int(f["id"]) == family]
    looked = [f for f in fams if f.get("looks")]
    fam = (looked or fams or [None])[-1]
    if fidelity is None and fam is not None:
        fidelity = Fidelity.of(fam)
    stored_fids = fidelities(attrs)
    if fidelity is None and stored_fids:
        fidelity = max(stored_fids, key=lambda f: (stored_fids[f], f))
    return fidelity, fam


def _replay(fam: dict[str, Any], base: dict[int, dict[str, Any]], cands: dict[str, dict[int, dict[str, Any]]],
            labels: np.ndarray | None) -> tuple[dict[str, Any] | None, list[float]]:
    """The last look's :func:`paired_verdicts`, with verdicts decided at earlier looks kept, and each look's level."""
    looks = [int(look["seeds"]) for look in fam.get("looks", [])]
    levels = verdict_mod.spending(looks, int(fam["max_seeds"]), float(fam["alpha"]))
    seeds_of = (lambda n: fam["seed_list"][:n]) if "seed_list" in fam else \
        (lambda n: list(range(int(fam["first_seed"]), int(fam["first_seed"]) + n)))
    decided: dict[str, tuple[str, int]] = {}
    last = None
    for i, (n, level) in enumerate(zip(looks, levels), start=1):
        last = verdict_mod.paired_verdicts(base, cands, labels, seeds=seeds_of(n), alpha=level)
        for k, r in last["results"].items():
            if k in decided:
                r["verdict"], r["decided_at_look"] = decided[k][0], decided[k][1]
            elif r["verdict"] != "inconclusive":
                decided[k] = (r["verdict"], i)
                r["decided_at_look"] = i
        last["look"] = i
    return last, levels


def summarize(attrs: dict[str, Any], fidelity: Fidelity | None = None, labels: np.ndarray | None = None,
              keys: list[str] | None = None, search: tuple[Fidelity, dict[int, float]] | None = None,
              family: int | None = None) -> dict[str, Any]:
    """Per-configuration statistics and verdicts of one confirmation, from the stored runs.

    Args:
        attrs: :func:`cnnsearch.evidence.store.stored` of a study.
        fidelity: Which runs to judge; default: the latest judged confirmation's, else the most-run fidelity.
        labels: Test labels; default: the copy the runs stored (``confirm_labels``).
        keys: Legacy runs only: judge these candidates (default: all stored).
        search: :func:`cnnsearch.evidence.confirm.search_scores`, for the fidelity check; None leaves it out.
        family: The id of a declared confirmation; default: the latest one with a look.

    Returns a JSON-ready dict: ``fidelity``, ``fidelities``, ``reference``, ``family`` (declared
    candidates, looks, ``incomplete``), ``configs`` (the baseline first, then each family member with
    ``ci95_seeds``, ``ci95``, ``p_holm``, ``verdict``; then incomplete candidates), ``verdicts``
    ({config: word}, family members only), ``verdict`` (the sentence) and ``rank_check``.
    """
    fidelity, fam = _pick(attrs, fidelity, family)
    rs = runs(attrs, fidelity) if fidelity is not None else []
    out: dict[str, Any] = {
        "fidelity": fidelity.to_dict() if fidelity else None,
        "fidelities": [{**f.to_dict(), "runs": n} for f, n in sorted(fidelities(attrs).items())],
        "alpha": verdict_mod.ALPHA, "min_seeds": verdict_mod.MIN_SEEDS, "margin": verdict_mod.EQUIVALENCE_MARGIN,
        "mnist": attrs.get("mnist", True),  # False: other data, where the published 99.15% is never mentioned
        "reference": {"test_accuracy": REFERENCE_ACCURACY if attrs.get("mnist", True) else None,
                      "fidelity": REFERENCE_FIDELITY.to_dict(),
                      "comparable": bool(fidelity and fidelity.at_reference and attrs.get("mnist", True))},
        "family": None, "configs": [], "verdicts": {}, "verdict": None, "rank_check": None,
    }
    if not rs:
        return out
    if labels is None and LABELS_KEY in attrs:
        labels = decode(attrs[LABELS_KEY])
    by_config: dict[str, dict[int, dict[str, Any]]] = {}
    for r in rs:
        by_config.setdefault(r["config"], {})[int(r["seed"])] = r
    if fam is None or (fidelity is not None and Fidelity.of(fam) != fidelity):
        fam = _legacy_family(by_config, fidelity, keys)
    base = by_config.get("baseline", {})
    cands = {k: by_config.get(k, {}) for k in fam["candidates"]}
    last, levels = _replay(fam, base, cands, labels) if base else (None, [])
    seeds = last["seeds"] if last else sorted(base)
    out["family"] = _family_json(fam, last, levels, by_config, seeds)
    rows = [_row("baseline", base, base, seeds, labels)] if base else []
    members = last["family"] if last else []
    rows += [_row(k, cands[k], base, seeds, labels, last["results"][k], len(members)) for k in members]
    rows += [_row(k, cands[k], base, sorted(cands[k]), labels) for k in fam["candidates"]
             if k not in members and cands[k]]
    if fidelity is not None and fidelity.at_reference and base and attrs.get("mnist", True):
        _vs_reference(rows, base, seeds)
    out["rank_check"] = None if search is None else _rank_check(rows, *search)
    out["configs"] = _no_nan(rows)
    out["verdicts"] = {k: last["results"][k]["verdict"] for k in members}
    out["verdict"] = words.sentence(out)
    return out


def _family_json(fam: dict[str, Any], last: dict[str, Any] | None, levels: list[float],
                 by_config: dict[str, dict[int, dict[str, Any]]], seeds: list[int]) -> dict[str, Any]:
    looks = [{**look, "alpha": a} for look, a in zip(fam.get("looks", []), levels)]
    judged = set(seeds)
    pending = sum(1 for k in ["baseline", *fam["candidates"]] for s in by_config.get(k, {}) if s not in judged)
    return {k: v for k, v in {**fam, "looks": looks, "family": last["family"] if last else [],
                              "incomplete": last["incomplete"] if last else
                              {k: len(by_config.get(k, {})) for k in fam["candidates"]},
                              "judged_seeds": seeds if last else [], "pending_runs": pending}.items()
            if k != "seed_list"}


def _vs_reference(rows: list[dict[str, Any]], base: dict[int, dict[str, Any]], seeds: list[int]) -> None:
    base_accs = [base[s]["test_accuracy"] for s in seeds if s in base]
    judged = []
    for r in rows:
        accs = r["test_accuracies"]
        one = published.vs_published(accs, base_accs, REFERENCE_ACCURACY)
        tp = one.tost(verdict_mod.EQUIVALENCE_MARGIN)
        r["vs_reference"] = {"mean": one.mean, "diff_mean": one.diff_mean, "ci95": list(one.ci95), "p": one.p,
                             "sd_published": one.sd_published, "p_holm": None, "verdict": published.TOO_FEW,
                             "tost_p": tp, "equivalent": bool(math.isfinite(tp) and tp < verdict_mod.ALPHA)}
        if len(accs) >= 2:
            judged.append(r)
    for r, p in zip(judged, verdict_mod.holm([r["vs_reference"]["p"] for r in judged])):
        v = r["vs_reference"]
        v["p_holm"] = p
        v["verdict"] = published.word(v["diff_mean"], p, verdict_mod.ALPHA) if r["seeds"] >= verdict_mod.MIN_SEEDS \
            else published.TOO_FEW


def _rank_check(rows: list[dict[str, Any]], search_fid: Fidelity, val: dict[int, float]) -> dict[str, Any]:
    # The search rests on its cheap fidelity ranking as the full one does: the confirmed configurations test it.
    pairs = [(r["config"], val[r["trial"]], r["mean_test_accuracy"]) for r in rows if r["trial"] in val]
    for r in rows:
        r["search_val_accuracy"] = val.get(r["trial"])
    check = published.rank_agreement([p[1] for p in pairs], [p[2] for p in pairs])
    cand = [v for c, v, _ in pairs if c != "baseline"]
    out = {"search_fidelity": search_fid.to_dict(), "n": check.n, "spearman": check.rho,
           "p": check.p if check.exact or check.n >= published.RANK_MIN else None, "p_exact": check.exact,
           "candidate_search_span": max(cand) - min(cand) if len(cand) > 1 else None}
    return _no_nan({**out, "sentence": words.rank_sentence(out)})


def no_nan(obj: Any) -> Any:
    """NaN (a statistic that one seed cannot give) as None, so ``--json`` stays strict JSON."""
    if isinstance(obj, float):
        return None if math.isnan(obj) else obj
    if isinstance(obj, dict):
        return {k: no_nan(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [no_nan(v) for v in obj]
    return obj


_no_nan = no_nan  # the name the first release's callers use


def _config_order(key: str) -> tuple[int, str]:
    digits = key[len("trial"):] if key.startswith("trial") else ""
    return (int(digits), key) if digits.isdigit() else (10**9, key)


def _row(key: str, seeds: dict[int, dict[str, Any]], base: dict[int, dict[str, Any]], judged: list[int],
         labels: np.ndarray | None, result: dict[str, Any] | None = None, k: int = 0) -> dict[str, Any]:
    order = [s for s in judged if s in seeds]
    accs = np.array([seeds[s]["test_accuracy"] for s in order], dtype=float)
    first = seeds[order[0]] if order else next(iter(seeds.values()))
    row: dict[str, Any] = {
        "config": key, "trial": first["trial"], "param_count": first["param_count"], "params": first["params"],
        "seeds": len(order), "seed_list": order, "test_accuracies": accs.tolist(),
        "mean_test_accuracy": float(accs.mean()) if len(accs) else math.nan,
        "sd_test_accuracy": float(accs.std(ddof=1)) if len(accs) > 1 else None,
        "seconds": [seeds[s].get("seconds") for s in order], "vs_reference": None,
    }
    if result is None:
        if key != "baseline":
            row["incomplete"] = True
        return row
    row.update(paired_seeds=result["n"], diff_mean=result["mean"], diff_sd=result["sd_seeds"],
               ci95_seeds=result["ci95_seeds"], ci95=result["ci95"], diff_ci95=result["ci95"],
               se_seeds=result["se_seeds"], se_images=result["se_images"], df=result["df"],
               p_seeds=result["p_seeds"], p=result["p"], p_holm=result["p_holm"], verdict=result["verdict"],
               decided_at_look=result.get("decided_at_look"), reason=result["reason"], tost_p=result["tost_p"],
               equivalent=result["equivalent"], margin=result["margin"])
    judged = row["verdict"] == "inconclusive" and not result["reason"]
    level = verdict_mod.ALPHA / max(k, 1)
    row["seeds_needed_estimate"] = verdict_mod.seeds_needed(result["mean"], result["sd_seeds"], level,
                                                            se_images=result["se_images"]) if judged else None
    if labels is not None and all(seeds[s].get("predictions") and base[s].get("predictions") for s in order):
        pairs = [(decode(base[s]["predictions"]), decode(seeds[s]["predictions"])) for s in order]
        if all(len(b) == len(labels) == len(c) for b, c in pairs):
            tests = [verdict_mod.mcnemar(b == labels, c == labels) for b, c in pairs]
            row["mcnemar_by_seed"] = [{"seed": s, "only_baseline_right": b, "only_candidate_right": c, "p": p}
                                      for s, (b, c, p) in zip(order, tests)]
            row["mcnemar_p_by_seed"] = [p for _, _, p in tests]
    return row
