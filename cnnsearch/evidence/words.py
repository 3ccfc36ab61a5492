"""A confirmation's verdicts in words that match the statistics (issue 20).

- Against the re-trained baseline: "better / worse on MNIST's test set" with the
  interval over training seeds *and* test images, and the seeds-only one beside it;
  otherwise "inconclusive: no difference detected", never "level".
- Against the published 99.15% (one run): "above / below the published single-run
  figure", never "better"; its own seed spread is counted with the re-trained
  baseline's as the stand-in.
- "Equivalent" only from a TOST with its margin stated.
"""

from __future__ import annotations

import math
from typing import Any

from cnnsearch.evidence import published
from cnnsearch.evidence import verdict as verdict_mod
from cnnsearch.evidence.store import REFERENCE_FIDELITY, Fidelity


def _pp(v: float) -> str:
    return f"{100 * v:+.2f} pp"


def _interval(ci: list[float] | None) -> str:
    return "" if not ci or ci[0] is None else f"{_pp(ci[0])} to {_pp(ci[1])}"


def _look(r: dict[str, Any], fam: dict[str, Any] | None) -> str:
    if not fam or len(fam.get("looks", [])) < 2 and int(fam.get("max_seeds", 0)) <= r["paired_seeds"]:
        return ""
    looks = fam["looks"]
    at = r.get("decided_at_look") or len(looks)
    return (f"; look {at} of a confirmation declared for at most {fam['max_seeds']} seeds, at the level that look"
            f" spent ({looks[at - 1]['alpha']:.2g}, O'Brien-Fleming spending)")


def candidate_sentence(r: dict[str, Any], k: int, fam: dict[str, Any] | None = None) -> str:
    """One candidate's verdict in words: the word, both intervals, the correction, and what would resolve it."""
    n, word = r["paired_seeds"], r["verdict"]
    seeds = f"{n} paired seed{'s' * (n != 1)}"
    both, alone = _interval(r.get("ci95")), _interval(r.get("ci95_seeds"))
    head = {"better": "better on MNIST's test set", "worse": "worse on MNIST's test set"}.get(
        word, "inconclusive: no difference detected")
    numbers = f"{_pp(r['diff_mean'])} test accuracy over {seeds}"
    if both:
        numbers += f", 95% interval over training seeds and test images {both} (training seeds alone {alone})"
    elif alone:
        numbers += f", 95% interval over training seeds alone {alone}"
    if r.get("p_holm") is not None:
        numbers += f", Holm-corrected p = {r['p_holm']:.2g} over {k} candidate{'s' * (k > 1)}"
    s = f"{r['config']} vs the re-trained baseline: {head} ({numbers}{_look(r, fam)})."
    if r.get("reason"):
        return s + f" Verdict limited: {r['reason']}."
    if word == "inconclusive":
        ci, cis = r.get("ci95"), r.get("ci95_seeds")
        if cis and cis[0] is not None and (cis[0] > 0 or cis[1] < 0) and ci and not (ci[0] > 0 or ci[1] < 0):
            s += " The seeds-only interval excludes 0; counting the test images' own noise, it does not."
        elif ci and ci[0] is not None and (ci[0] > 0 or ci[1] < 0):
            s += f" The interval excludes 0, but not after correcting for {k} candidates (or for the looks)."
        need = r.get("seeds_needed_estimate")
        if need is not None:
            s += f" Estimate: about {need} seeds would resolve a difference this size (80% power; itself noisy)."
        elif r.get("diff_mean"):
            s += " More seeds alone may not resolve it: the test images' own noise is about as large as the difference."
    if r.get("equivalent"):
        s += (f" Equivalent within ±{100 * r['margin']:.2f} pp (TOST p = {r['tost_p']:.2g}).")
    mc = r.get("mcnemar_p_by_seed")
    if mc:
        hits = sum(p < verdict_mod.ALPHA for p in mc)
        s += (f" Supporting only: McNemar's test gives p < {verdict_mod.ALPHA} in {hits} of {len(mc)} seed pairs"
              " (two fixed models on fixed images).")
    return s


def reference_sentence(summary: dict[str, Any]) -> str:
    """The comparison with the published 99.15% (one run), or why it is not possible here."""
    ref = summary["reference"]
    if summary.get("mnist") is False:  # issue 23: the published 99.15% is MNIST's only
        return ""
    if not ref["comparable"]:
        fid = Fidelity(**summary["fidelity"]) if summary["fidelity"] else None
        return (f"Against the published {ref['test_accuracy']:.2%}: not possible"
                + (f" at {fid.describe()}" if fid else "") + f"; that needs the reference's fidelity"
                f" ({REFERENCE_FIDELITY.describe()}, --epochs {REFERENCE_FIDELITY.epochs} --train-limit 0)."
                " Only the in-study comparison with the re-trained baseline is shown.")
    parts = []
    for r in summary["configs"]:
        v = r.get("vs_reference")
        if v is None:
            continue
        seeds = f"{r['seeds']} seed{'s' * (r['seeds'] != 1)}"
        word = f"{v['verdict']} the published figure" if v["verdict"] in ("above", "below") else v["verdict"]
        interval = "" if v["ci95"][0] is None else f", 95% interval {_interval(v['ci95'])}"
        part = f"{r['config']} {v['mean']:.4f} over {seeds} ({_pp(v['diff_mean'])}{interval}): {word}"
        if v.get("equivalent"):
            part += f", equivalent within ±{100 * summary['margin']:.2f} pp (TOST p = {v['tost_p']:.2g})"
        elif word == "no difference detected" and v.get("tost_p") is not None:
            part += (f" (not an equivalence claim: TOST within ±{100 * summary['margin']:.2f} pp gives"
                     f" p = {v['tost_p']:.2g})")
        parts.append(part)
    sd = next((r["vs_reference"].get("sd_published") for r in summary["configs"] if r.get("vs_reference")), None)
    spread = "" if sd is None else f" {100 * sd:.2f} pp"
    return (f"Against the published single-run figure of {ref['test_accuracy']:.2%} (one run, so its own seed spread"
            f" is counted, with the re-trained baseline's seed sd{spread} as the stand-in; never 'better'): "
            + "; ".join(parts) + ".")


def rank_sentence(check: dict[str, Any]) -> str:
    """The fidelity check in words: how well the search's ranking held at the confirmation's fidelity."""
    n, rho, search = check["n"], check["spearman"], Fidelity(**check["search_fidelity"])
    head = (f"Fidelity check: the search's validation accuracy ({search.describe()}) against the confirmed mean"
            f" test accuracy of the same {n} configuration{'s' * (n != 1)}")
    if rho is None or math.isnan(rho):
        return head + ": not computable (it needs at least 3 configurations with distinct scores)."
    p = check.get("p")
    how = "" if p is None else (f", exact permutation p = {p:.2g}" if check.get("p_exact") else f", p = {p:.2g}")
    s = f"{head}: Spearman's rho = {rho:+.2f}{how}."
    if rho < 0.5:
        s += (" Weak: the cheap fidelity did not rank these configurations as the confirmation did, so the"
              " search may have picked the wrong ones; search at a higher fidelity (more epochs or images).")
    elif rho < 0.8:
        s += " Moderate: the search's order held only in part."
    else:
        s += " Strong: the search's order held."
    span = check.get("candidate_search_span")
    if span is not None:
        s += f" The candidates' search validation accuracies lie within {100 * span:.2f} pp of each other."
    if n < published.RANK_MIN:
        s += f" With {n} configurations this is a sanity check, not a measurement."
    return s


def _family_sentence(fam: dict[str, Any]) -> str:
    if not fam:
        return ""
    if fam.get("legacy"):
        head = ("Stored by an older version without a declared family: judged as one family of every stored"
                " candidate with all the baseline's seeds.")
    else:
        looks = fam.get("looks", [])
        head = (f"Confirmation {fam['id']} declared {len(fam['candidates'])} candidate"
                f"{'s' * (len(fam['candidates']) != 1)} (its Holm family) and at most {fam['max_seeds']} seeds;"
                f" {len(looks)} look{'s' * (len(looks) != 1)} so far.")
    inc = fam.get("incomplete") or {}
    if inc:
        # Before the first look nothing is judged yet: count against the seeds the confirmation declared.
        of = len(fam.get("judged_seeds") or []) or int(fam.get("max_seeds") or 0)
        head += (" Incomplete, in no family and without a verdict: "
                 + ", ".join(f"{k} ({n} of {of} seed{'s' * (of != 1)})" for k, n in inc.items()) + ".")
    pending = int(fam.get("pending_runs") or 0)
    if pending:
        head += (f" {pending} run{'s' * (pending != 1)} beyond the last look {'are' if pending != 1 else 'is'}"
                 " stored and not judged until the next look.")
    return head


def sentence(summary: dict[str, Any]) -> str:
    """The plain verdict of a confirmation: the family, one sentence per candidate, then the reference."""
    fam = summary.get("family")
    cands = [r for r in summary["configs"] if r["config"] != "baseline" and r.get("paired_seeds")]
    if not cands:
        if fam and not fam.get("legacy") and not fam.get("looks"):
            return (f"Confirmation {fam['id']} has not finished its first look yet; run the same study confirm"
                    " command again to finish it. " + _family_sentence(fam))
        if any(r["config"] != "baseline" for r in summary["configs"]):  # candidates ran, the baseline did not
            return ("No candidate can be judged yet: the baseline has no run at this fidelity with the same seeds"
                    " (run study confirm again with the same --epochs and --train-limit to train it). "
                    + _family_sentence(fam))
        return "No configuration has been retrained beside the baseline yet."
    fid = Fidelity(**summary["fidelity"])
    head = f"Confirmation at {fid.describe()}, paired by training seed: "
    return (head + " ".join(candidate_sentence(r, len(cands), fam) for r in cands) + " " + _family_sentence(fam)
            + " " + reference_sentence(summary))


def method_note(summary: dict[str, Any]) -> str:
    """How the verdicts were made, for the report's confirmation section."""
    fid = Fidelity(**summary["fidelity"])
    return (f"Retrained at {fid.describe()} with the seeds paired (seed s of a candidate against seed s of the"
            " baseline). Each verdict counts two sources of noise: the training seeds, and the test images (the same"
            " 10,000 serve every seed, so more seeds never average their luck away); the interval over both is shown"
            " beside the seeds-only one, from a variance decomposition of the stored per-image predictions with"
            f" Satterthwaite degrees of freedom. 'better' or 'worse' needs at least {summary['min_seeds']} seeds and"
            f" a Holm-corrected p below the level its look spends (family-wise {summary['alpha']} over the candidates"
            " the confirmation declared; O'Brien-Fleming spending over looks when more seeds were added). Against"
            " the published single-run figure the words are 'above' or 'below', counting that run's own seed spread;"
            f" 'equivalent' only from a TOST within ±{100 * summary['margin']:.2f} pp. McNemar's exact test compares"
            " two fixed trained models, so it is shown per seed pair as supporting evidence only. 'Seeds needed' is"
            " an estimate (80% power) from the observed difference and spreads, themselves noisy.")


def answer_phrase(r: dict[str, Any]) -> str:
    """The short form for a report's answer: what follows the verdict word, e.g.

    ``on MNIST's test set vs the re-trained baseline (+0.24 pp over 3 seeds, 95% interval over seeds and test
    images +0.06 to +0.42 pp; seeds alone +0.18 to +0.31 pp; Holm p = 0.024)``.
    """
    where = "on MNIST's test set vs" if r["verdict"] in ("better", "worse") else "(no difference detected) vs"
    both, alone = _interval(r.get("ci95")), _interval(r.get("ci95_seeds"))
    parts = [f"{_pp(r['diff_mean'])} over {r['paired_seeds']} seed{'s' * (r['paired_seeds'] != 1)}"]
    if both:
        parts.append(f"95% interval over seeds and test images {both}; seeds alone {alone}")
    elif alone:
        parts.append(f"95% interval over seeds alone {alone}")
    if r.get("p_holm") is not None:
        parts.append(f"Holm p = {r['p_holm']:.2g}")
    if r.get("reason"):
        parts.append("verdict limited: " + r["reason"])
    return f"{where} the re-trained baseline ({'; '.join(parts)})"
