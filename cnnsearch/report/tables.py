"""The report's tables: the confirmation over seeds, the trials (top 20, then all), the study's settings."""

from __future__ import annotations

import datetime as _dt
import html
from typing import Any

import pandas as pd

from cnnsearch.evidence import words as words_mod
from cnnsearch.search import seeds as seeds_mod
from cnnsearch.search import study as study_mod
from cnnsearch.evidence import confirm as confirm_mod
from cnnsearch.records.storage import mask_url
from cnnsearch.report import headline as headline_mod
from cnnsearch.report.answer import storage_flag
from cnnsearch.report.data import REFERENCE, VS_REFERENCE, ReportData, confirm_reference_ok
from cnnsearch.report.markup import Section, badge, interval, p, plural, pp, reason_cell, table, tidy

#: Trials shown before "show all": the best by validation accuracy.
TOP_TRIALS = 20
#: Columns of the trial table, in order (the searched values are in "choices"; every raw value is in the
#: export, `cnnsearch study export NAME`).
SHOWN = ["trial", "state", "val acc", "val − baseline (pp)", "test acc", "test − baseline (pp)", VS_REFERENCE,
         "params", "choices", "epochs", "seconds", "reason"]


def _cell(col: str, v: Any) -> str:
    if v is None or (isinstance(v, float) and pd.isna(v)) or v == "":
        return ""
    if col in ("val acc", "test acc"):
        return f"{v:.4f}"
    if "(pp)" in col:
        return f"{v:+.2f}"
    if col in ("params", "FLOPs"):
        return f"{int(v):,}"
    if col in ("seconds", "epochs"):
        return f"{v:.0f}"
    return str(tidy(v))


def trial_rows(df: pd.DataFrame) -> tuple[list[dict[str, str]], list[str]]:
    """Formatted rows of the trial table and their row classes (the baseline marked)."""
    cols = [c for c in SHOWN if c in df.columns]
    rows, classes = [], []
    for r in df.to_dict("records"):
        row = {c: _cell(c, r.get(c)) for c in cols}
        row["trial"] = f"{row['trial']} (baseline)" if r.get("role") == "baseline" else row["trial"]
        row["reason"] = reason_cell(str(r.get("reason") or ""))
        rows.append(row)
        classes.append("baseline" if r.get("role") == "baseline" else "")
    return rows, classes


def trials_section(d: ReportData) -> Section:
    """The trials, best validation accuracy first: the top 20, then every trial folded away."""
    t = d.table
    running = d.counts.get("RUNNING", 0)
    notes = (p("Only the baseline has run so far.") if len(t) == 1 else "")
    finished = t[~t["state"].isin(["WAITING", "RUNNING"])] if len(t) else t
    if len(finished) and bool((finished["state"] == "FAIL").all()):
        notes += p("Every finished trial failed: see the reasons below.", "missing")
    if running:
        notes += p(f"{plural(running, 'trial')} {'was' if running == 1 else 'were'} still running when this report"
                   " was written; they appear without results.", "missing")
    if not len(t):
        return Section("Trials", notes + p("No trials yet.", "missing"), "trials")
    rows, classes = trial_rows(t)
    head = rows[:TOP_TRIALS]
    body = notes + "<div class='scroll'>" + table(head, ident="top-trials", row_cls=classes, raw=("reason",)) + "</div>"
    if len(rows) > TOP_TRIALS:
        body += (f"<details><summary>Show all {plural(len(rows), 'trial')}</summary><div class='scroll'>"
                 + table(rows, ident="all-trials", row_cls=classes, raw=("reason",)) + "</div></details>")
    body += p("val, test: accuracy; differences in percentage points; choices: the trial's architecture and"
              " training choices in one line (every raw value: cnnsearch study export NAME). A long reason is"
              " cut: hover over it for the full text.", "note")
    top = f"the top {TOP_TRIALS} of " if len(rows) > TOP_TRIALS else ""
    title = f"Trials, best validation accuracy first ({top}{plural(len(rows), 'trial')})"
    return Section(title, body, "trials")


def _confirm_row(r: dict[str, Any], with_ref: bool) -> dict[str, Any]:
    mc = r.get("mcnemar_p_by_seed")
    row = {
        "configuration": r["config"], "trial": r["trial"], "parameters": f"{r['param_count']:,}",
        "search val": "" if r.get("search_val_accuracy") is None else f"{r['search_val_accuracy']:.4f}",
        "test accuracy per seed": ", ".join(f"{a:.4f}" for a in r["test_accuracies"]),
        "mean ± sd": f"{r['mean_test_accuracy']:.4f}" + ("" if r["sd_test_accuracy"] is None
                                                         else f" ± {r['sd_test_accuracy']:.4f}"),
        "− baseline (95% interval, seeds + test images)": ("" if "diff_mean" not in r
                                                           else f"{pp(r['diff_mean'])} {interval(r.get('diff_ci95'))}"),
        "seeds only": interval(r.get("ci95_seeds")),
        "Holm p": "" if r.get("p_holm") is None else f"{r['p_holm']:.2g}",
        "verdict": badge(r["verdict"]) if r.get("verdict") else "",
        "seeds needed (estimate)": r.get("seeds_needed_estimate") or "",
        "McNemar p < 0.05 (supporting)": "" if not mc else f"{sum(x < 0.05 for x in mc)} of {len(mc)} seed pairs",
    }
    if with_ref:
        ref = r.get("vs_reference")
        row[f"vs {REFERENCE:.2%}"] = "" if not ref else ref["verdict"]
    return row


def confirm_section(d: ReportData) -> Section:
    """Per configuration: test accuracy per seed, the paired difference with its interval, Holm p, the verdict."""
    title = "Confirmation over training seeds: is the win real?"
    c = d.confirm
    if not c.get("configs"):
        cmd = headline_mod.confirm_command(d.name, storage_flag(d))
        return Section(title, p("Not confirmed yet. A single search run cannot tell a real improvement from"
                                f" training noise; run: {cmd}", "missing"), "confirm")
    with_ref = confirm_reference_ok(d)
    cands = [r for r in c["configs"] if r["config"] != "baseline" and r.get("paired_seeds")]
    sentences = [confirm_mod.candidate_sentence(r, len(cands)) for r in cands] or [confirm_mod.sentence(c)]
    if with_ref:
        sentences.append(confirm_mod.reference_sentence(c))
    if c.get("rank_check"):
        sentences.append(c["rank_check"]["sentence"])
    fid = confirm_mod.Fidelity(**c["fidelity"])
    others = [f for f in c["fidelities"] if f["epochs"] != fid.epochs or f["train_limit"] != fid.train_limit]
    body = ("<ul class='answer'>" + "".join(f"<li>{html.escape(s)}</li>" for s in sentences) + "</ul>"
            + "<div class='scroll'>" + table([_confirm_row(r, with_ref) for r in c["configs"]], raw=("verdict",))
            + "</div>"
            + p(words_mod.method_note(c), "note"))
    if others:
        body += p("Runs at other fidelities are stored too (cnnsearch study confirm NAME --show --epochs E"
                  " --train-limit N): " + "; ".join(f"{f['epochs']} epochs, train_limit {f['train_limit']}:"
                                                    f" {plural(f['runs'], 'run')}" for f in others), "note")
    return Section(title, body, "confirm")


def header_section(d: ReportData) -> Section:
    """Study, space, training settings, sampler/pruner, dates, counts, versions."""
    s = d.settings
    versions = next((r.get("versions") for r in [d.best, d.baseline] if r and r.get("versions")), None)
    items = [
        ("storage", mask_url(d.url)), ("created", s["created"]), ("space file", s["space_source"]),
        ("sampler / pruner", f"{s['study']['sampler']} / {s['study']['pruner']} (study seed {s['study']['seed']})"),
        ("effective sampler seed of each run",
         seeds_mod.describe(seeds_mod.of(study_mod.system_attrs(d.study))) if d.study else "not read"),
        ("objectives", ", ".join(s["study"]["objectives"])),
        ("training", "; ".join(f"{k} = {tidy(v)}" for k, v in s["training"].items())),
        ("trials", ", ".join(f"{v} {k.lower()}" for k, v in sorted(d.counts.items())) or "none"),
        ("framework versions", ", ".join(f"{k} {v}" for k, v in versions.items()) if versions else "not recorded yet"),
        ("report written", _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")),
    ]
    rows = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>" for k, v in items)
    body = (f"<table class='meta'>{rows}</table><details><summary>space file</summary><pre>"
            f"{html.escape(s['space_text'])}</pre></details>")
    return Section("Study settings", body, "study")


__all__ = ["SHOWN", "TOP_TRIALS", "confirm_section", "header_section", "trial_rows", "trials_section"]
