"""The report's first section, ``#answer``: the headline sentence, the verdict table, which choices mattered.

Extra parts plug in here: :data:`ANSWER_PARTS` is the list of renderers the section joins,
in order (each takes the :class:`~cnnsearch.report.data.ReportData` and returns HTML, or ""
to stay out). An ablation's "which choices mattered, by experiment" or a frontier line adds
its renderer to this list (``ANSWER_PARTS.insert(...)``/``append``) from its own module;
nothing here needs to change.
"""

from __future__ import annotations

import html
from typing import Callable

from cnnsearch.evidence import confirm as confirm_mod
from cnnsearch.evidence import importance as importance_mod
from cnnsearch.ground.describe import choices
from cnnsearch.records.storage import DEFAULT_STORAGE, mask_url
from cnnsearch.report import headline as headline_mod
from cnnsearch.report.data import REFERENCE, ReportData, best_value, confirm_reference_ok
from cnnsearch.report.markup import Section, badge, interval, p, pp, table


def storage_flag(d: ReportData) -> str:
    """`` --storage URL`` for commands, when the study is not in the default storage."""
    return "" if d.url == DEFAULT_STORAGE else f" --storage {mask_url(d.url)}"  # never a password


def headline_of(d: ReportData) -> headline_mod.Headline:
    """The answer in one sentence (see :mod:`cnnsearch.report.headline`)."""
    return headline_mod.headline(d.name, d.confirm, best=d.best, baseline=d.baseline,
                                 reference_ok=confirm_reference_ok(d), storage=storage_flag(d))


def headline_part(d: ReportData) -> str:
    """The headline sentence, its command in code type."""
    h = headline_of(d)
    text = html.escape(h.text)
    if h.command:
        text = text.replace(html.escape(f"`{h.command}`"), f"<code>{html.escape(h.command)}</code>")
    return f"<p class='headline {h.status}' id='headline'>{text}</p>"


def _choice_text(rec: dict | None, trial: int) -> str:
    return choices(rec.get("spec"), rec.get("params")) if rec else f"trial #{trial}"


def verdict_part(d: ReportData) -> str:
    """One row per confirmed candidate, winner first: parameters, mean test accuracy, difference, verdict;
    before any confirmation, the search's best against the baseline in single runs (labelled so)."""
    cands = headline_mod.candidates(d.confirm)
    if cands:
        fid = confirm_mod.Fidelity(**d.confirm["fidelity"])
        by_number = {int(r["trial"]): r for r in d.table.to_dict("records")}
        with_ref = confirm_reference_ok(d)
        rows = []
        for r in cands:
            rec = by_number.get(int(r["trial"]))
            row = {"candidate": f"#{r['trial']} {rec['choices'] if rec else ''}".strip(),
                   "parameters": f"{r['param_count']:,}",
                   "mean test accuracy": f"{r['mean_test_accuracy']:.4f} ({r['paired_seeds']} seeds)",
                   "− baseline, 95% interval": f"{pp(r['diff_mean'])} {interval(r.get('diff_ci95'))}".strip(),
                   "verdict": badge(r["verdict"])}
            if with_ref and r.get("vs_reference"):
                row[f"vs {REFERENCE:.2%}"] = r["vs_reference"]["verdict"]
            rows.append(row)
        base = next((r for r in d.confirm["configs"] if r["config"] == "baseline"), None)
        caption = (f"<p class='note'>Test accuracy at {html.escape(fid.describe())}, each candidate paired with the"
                   " in-study baseline by training seed"
                   + (f" (baseline: {base['param_count']:,} parameters, mean {base['mean_test_accuracy']:.4f})"
                      if base else "") + ". <a href='#confirm'>Per-seed details</a></p>")
        return table(rows, cls="summary", ident="verdicts", raw=("verdict",)) + caption
    b, base = d.best, d.baseline
    if b is None or base is None or b["number"] == base["number"]:
        return ""
    rows = [{"": label, f"best, trial #{b['number']}": f"{b[key]:.4f}", "in-study baseline": f"{base[key]:.4f}",
             "difference": pp(b[key] - base[key])}
            for label, key in (("validation accuracy (selected on this)", "val_accuracy"),
                               ("test accuracy (never used to select)", "test_accuracy"))
            if b.get(key) is not None and base.get(key) is not None]
    rows.append({"": "parameters", f"best, trial #{b['number']}": f"{b['param_count']:,}",
                 "in-study baseline": f"{base['param_count']:,}",
                 "difference": f"{b['param_count'] / base['param_count']:.1%} of the baseline's"})
    fid = confirm_mod.Fidelity(int(d.settings.get("training", {}).get("epochs", 0)),
                               int(d.settings.get("training", {}).get("train_limit", 0)))
    return (table(rows, cls="summary", ident="single-runs")
            + p(f"Single runs at {fid.describe()}: not a verdict (one run cannot tell a real improvement from"
                f" training noise). Best: {_choice_text(b, b['number'])}.", "note"))


def choices_part(d: ReportData) -> str:
    """Which choices mattered (importance, observational), each with the value that did best."""
    if d.ablation is not None:  # an experiment beats an observation: the ablation answers when there is one
        return ("<div class='statement'><b>Which choices mattered (by experiment: an ablation over paired"
                f" seeds):</b> {html.escape(d.ablation['mattered'])} <a href='#ablation'>details</a></div>")
    imp = d.importance
    if imp is None:
        return p("Which choices mattered: importance was not computed.", "missing")
    words = []
    for name in imp.mattered:
        e = best_value(d, name)
        if e is not None:
            words.append(f"{name}: best at {e.value} (mean validation accuracy {e.mean:.4f} over {e.n} trials)")
    lead = ("Which choices mattered (importance over the search, observational): "
            + ("; ".join(words) + ". " if words else ""))
    return (f"<div class='statement'><b>{html.escape(lead)}</b>{html.escape(importance_mod.sentence(imp))}"
            " <a href='#importance'>details</a>, <a href='#effects'>every value</a></div>")


#: The answer section's parts, in order; other modules add theirs (see the module docstring).
ANSWER_PARTS: list[Callable[[ReportData], str]] = [headline_part, verdict_part, choices_part]


def answer_section(d: ReportData) -> Section:
    """The answer, first: the headline, the verdict table, which choices mattered (and any plugged-in part)."""
    return Section("The answer", "\n".join(part for part in (f(d) for f in ANSWER_PARTS) if part), "answer")


__all__ = ["ANSWER_PARTS", "answer_section", "choices_part", "headline_of", "headline_part", "storage_flag",
           "verdict_part"]
