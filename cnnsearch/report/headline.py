"""The answer in one sentence, generated from the stored verdicts (the report's first line; `study confirm`'s last).

"Yes: a 93,370-parameter CNN (7.8% of the re-trained reference's parameters) beats it by +0.24 pp
test accuracy [+0.18, +0.31], confirmed over 3 seeds at 20 epochs on all 54,000 training images."
or "Not yet: nothing is confirmed; run `cnnsearch study confirm demo --top 3 --seeds 3`."

Plain data in, plain text out: no HTML, no storage, so the CLI and the report say the same thing.
A "Yes" rests only on a `better` verdict of the confirmation (paired seeds, Holm-corrected);
single search runs never give one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cnnsearch.evidence import confirm as confirm_mod

#: Order of the verdict words in tables: the winner first.
VERDICT_ORDER = {"better": 0, "inconclusive": 1, "worse": 2}


@dataclass(frozen=True)
class Headline:
    """The sentence, its status (``yes``, ``no``, ``not-yet``) and the next command, if one is due."""

    text: str
    status: str
    command: str = ""


def candidates(summary: dict[str, Any]) -> list[dict[str, Any]]:
    """The confirmed candidates (those with a verdict), winner first: better, inconclusive, worse; then by gain."""
    rows = [r for r in summary.get("configs", []) if r.get("config") != "baseline" and "verdict" in r]
    return sorted(rows, key=lambda r: (VERDICT_ORDER.get(r["verdict"], 3), -(r.get("diff_mean") or 0.0)))


def confirm_command(name: str, storage: str = "", *, top: int = 3, seeds: int = 3) -> str:
    """The command that confirms study ``name``'s best configurations (``storage``: a ``--storage URL`` suffix)."""
    return f"cnnsearch study confirm {name} --top {top} --seeds {seeds}{storage}"


def _seeds(n: int) -> str:
    return f"{n} seed{'s' * (n != 1)}"


def headline(name: str, summary: dict[str, Any], *, best: dict[str, Any] | None = None,
             baseline: dict[str, Any] | None = None, reference_ok: bool = False, storage: str = "") -> Headline:
    """The answer in one sentence.

    Args:
        name: Study name (for the next command).
        summary: :func:`cnnsearch.evidence.confirm.summarize`'s result (may have no configurations).
        best: The search's best trial record (used only while nothing is confirmed).
        baseline: The in-study baseline's trial record.
        reference_ok: The confirmation's fidelity and data allow a comparison with the published 99.15%.
        storage: `` --storage URL`` when the study is not in the default storage, for the commands.
    """
    cands = candidates(summary)
    if cands:
        return _confirmed(name, summary, cands, reference_ok, storage)
    if any(r.get("config") != "baseline" for r in summary.get("configs", [])):
        fid = confirm_mod.Fidelity(**summary["fidelity"])
        fam = summary.get("family") or {}
        # The declared confirmation's own size: another --top or --seeds would declare a new family.
        top, seeds = len(fam.get("candidates") or []) or 3, int(fam.get("max_seeds") or 3)
        cmd = (confirm_command(name, storage, top=top, seeds=seeds)
               + f" --epochs {fid.epochs} --train-limit {fid.train_limit}")
        return Headline("Not yet: the candidates are retrained but the baseline has no run with the same seeds at"
                        f" {fid.describe()}; run `{cmd}`.", "not-yet", cmd)
    if best is None:
        cmd = f"cnnsearch study run {name} --trials 10{storage}"
        if baseline is not None:  # a size-limited study: the baseline trained over the limit, as the comparison
            return Headline(f"Not yet: no trial within the size limit has completed yet (the in-study baseline,"
                            f" trial #{baseline['number']}, is over it and serves only as the comparison); run"
                            f" `{cmd}`.", "not-yet", cmd)
        return Headline(f"Not yet: no trial has completed yet; run `{cmd}`.", "not-yet", cmd)
    if baseline is not None and best["number"] == baseline["number"]:
        cmd = f"cnnsearch study run {name} --trials 20{storage}"
        return Headline("Not yet: no searched trial has beaten the in-study baseline on validation accuracy;"
                        f" run more trials: `{cmd}`.", "not-yet", cmd)
    cmd = confirm_command(name, storage)
    gain = ("; the in-study baseline has not completed, so there is nothing to compare it with" if baseline is None
            else "" if best.get("val_accuracy") is None else
            f", {100 * (best['val_accuracy'] - baseline['val_accuracy']):+.2f} pp validation accuracy against the"
            " in-study baseline in a single run")
    return Headline(f"Not yet: nothing is confirmed (the search's best, trial #{best['number']}, has"
                    f" {best['param_count']:,} parameters{gain}); run `{cmd}`.", "not-yet", cmd)


def _confirmed(name: str, summary: dict[str, Any], cands: list[dict[str, Any]], reference_ok: bool,
               storage: str) -> Headline:
    fid = confirm_mod.Fidelity(**summary["fidelity"])
    base = next((r for r in summary["configs"] if r["config"] == "baseline"), None)
    top = cands[0]
    if top["verdict"] == "better":
        share = "" if not base else f", {top['param_count'] / base['param_count']:.1%} of the baseline's parameters"
        ci = top.get("diff_ci95")
        ci_text = "" if not ci else f" [{100 * ci[0]:+.2f}, {100 * ci[1]:+.2f}]"
        text = (f"Yes: a {top['param_count']:,}-parameter CNN (trial #{top['trial']}{share}) beats the re-trained"
                f" in-study baseline by {100 * top['diff_mean']:+.2f} pp test accuracy{ci_text}, confirmed over"
                f" {_seeds(top['paired_seeds'])} at {fid.describe()}")
        ref = top.get("vs_reference")
        if reference_ok and ref:
            where = {"better": "above", "worse": "below"}.get(ref["verdict"], "level with")
            text += (f"; its mean test accuracy, {ref['mean']:.4f}, is {where} the published"
                     f" {summary['reference']['test_accuracy']:.2%}")
        return Headline(text + ".", "yes")
    open_ = [r for r in cands if r["verdict"] == "inconclusive"]
    counts = ", ".join(f"{sum(r['verdict'] == w for r in cands)} {w}" for w in ("inconclusive", "worse")
                       if any(r["verdict"] == w for r in cands))
    head = f"No confirmed win at {fid.describe()} ({counts})"
    if not open_:
        return Headline(f"No: every confirmed candidate is worse than the re-trained in-study baseline at"
                        f" {fid.describe()}.", "no")
    lead = open_[0]
    need = lead.get("seeds_needed_estimate")
    seeds = max(int(need), lead.get("paired_seeds", 0) + 1) if need else lead.get("paired_seeds", 0) + 2
    cmd = (confirm_command(name, storage, top=len(cands), seeds=seeds)
           + f" --epochs {fid.epochs} --train-limit {fid.train_limit}")
    est = f"about {need} seeds would resolve it (estimate)" if need else "more seeds would narrow its interval"
    return Headline(f"Not yet: {head}; trial #{lead['trial']} leads with {100 * lead['diff_mean']:+.2f} pp test"
                    f" accuracy, and {est}: run `{cmd}`.", "not-yet", cmd)


__all__ = ["Headline", "VERDICT_ORDER", "candidates", "confirm_command", "headline"]
