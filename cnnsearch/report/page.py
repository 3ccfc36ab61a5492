"""One self-contained HTML report per study, answer first: every trial against the 99.15% baseline.

The report answers the reference's open question (how are filter counts,
kernel sizes and the rest chosen?) with the study's evidence, and never claims
a win that noise could explain: the selection used validation accuracy only,
and a win is called only by :mod:`cnnsearch.evidence.confirm`'s verdict over training
seeds. Its first section, ``#answer``, holds three statements (the best trial
against both baselines, the confirmation verdict, which choices mattered);
then the trials best first, the confirmation, the figures; the model pictures
and the settings last.

Compute, then render: :mod:`cnnsearch.report.data` gathers plain numbers and
arrays; the ``*_section`` functions here only format and draw them.
Tables come from pandas, figures from matplotlib (inline PNG data URIs); the
file makes no network request. Nothing here imports TensorFlow: the model
figures come from the kept weights with NumPy. The file is written atomically.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import html
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd

from cnnsearch.evidence import confirm as confirm_mod
from cnnsearch.evidence import importance as importance_mod
from cnnsearch.model import viz
from cnnsearch.ground.errors import CnnsearchError
from cnnsearch.records.storage import DEFAULT_STORAGE
from cnnsearch.report.data import (LEAD_COLUMNS, REFERENCE, TAIL_COLUMNS, Models, ReportData, compute,
                                   compute_models)

__all__ = ["Section", "ReportData", "compute", "compute_models", "build", "write"]


@dataclass
class Section:
    """A titled part of the report: HTML body, or a statement of why it is missing."""

    title: str
    body: str
    anchor: str = ""


# --- rendering -------------------------------------------------------------------------------------

def _fmt_table(df: pd.DataFrame) -> str:
    fmt = df.copy()
    for col in fmt.columns:
        if col in ("val acc", "test acc"):
            fmt[col] = fmt[col].map(lambda v: "" if v is None or pd.isna(v) else f"{v:.4f}")
        elif "(pp)" in col:
            fmt[col] = fmt[col].map(lambda v: "" if v is None or pd.isna(v) else f"{v:+.2f}")
        elif col in ("params", "FLOPs"):
            fmt[col] = fmt[col].map(lambda v: "" if v is None or pd.isna(v) else f"{int(v):,}")
        elif col == "seconds":
            fmt[col] = fmt[col].map(lambda v: "" if v is None or pd.isna(v) else f"{v:.0f}")
        elif col == "epochs":
            fmt[col] = fmt[col].map(lambda v: "" if v is None or pd.isna(v) else f"{int(v)}")
        elif fmt[col].dtype.kind == "f":  # a searched number, float only because a row has none: 4.0 -> 4
            fmt[col] = fmt[col].map(lambda v: "" if pd.isna(v) else f"{v:.6g}")
    out = fmt.to_html(index=False, na_rep="", classes="trials", border=0, escape=True)
    # Mark the baseline row so it stands out.
    return re.sub(r"<tr>(\s*<td>\d+</td>\s*<td>baseline</td>)", r'<tr class="baseline">\1', out)


def _img(uri: str, alt: str) -> str:
    return f'<img src="{uri}" alt="{html.escape(alt)}">'


def _p(text: str, cls: str = "") -> str:
    c = f' class="{cls}"' if cls else ""
    return f"<p{c}>{html.escape(text)}</p>"


def _tidy(params: dict[str, Any]) -> dict[str, Any]:
    """Parameters for display: 0.15000000000000002 (a float step's rounding) shows as 0.15."""
    return {k: round(v, 6) if isinstance(v, float) else v for k, v in params.items()}


def _pp(v: float | None) -> str:
    return "n/a" if v is None else f"{100 * v:+.2f} pp"


def _word(w: str) -> str:
    return f"<strong class='verdict {w}'>{w}</strong>"


def _confirm_command(d: ReportData) -> str:
    storage = "" if d.url == DEFAULT_STORAGE else f" --storage {d.url}"
    return f"cnnsearch study confirm {d.name} --top 3 --seeds 3{storage}"


def answer_section(d: ReportData) -> Section:
    """The three answers, first: best trial against both baselines, the verdict, which choices mattered."""
    items = []
    if d.best is None and d.baseline is not None:  # a size-limited study: the baseline trains over the limit
        items.append(_p(f"No trial within the size limit has completed yet (the in-study baseline, trial"
                        f" #{d.baseline['number']}, is over it and serves only as the comparison): there is no"
                        " best trial to compare.", "missing"))
    elif d.best is None:
        items.append(_p("No trial has completed yet: there is no best trial to compare.", "missing"))
    else:
        b, base = d.best, d.baseline
        t = d.settings.get("training", {})
        fid = confirm_mod.Fidelity(int(t.get("epochs", 0)), int(t.get("train_limit", 0)))
        ref = d.reference  # None on data other than MNIST: no 99.15% column
        head = ("<tr><th></th><th>best trial</th><th>in-study baseline</th><th>best − baseline</th>"
                + ("" if ref is None else f"<th>best − reference {ref:.2%} (test,"
                   f" {confirm_mod.REFERENCE_FIDELITY.epochs} epochs)</th>") + "</tr>")
        rows = [("validation accuracy (selected on this)", b["val_accuracy"], base and base["val_accuracy"]),
                ("test accuracy (never used to select)", b["test_accuracy"], base and base["test_accuracy"])]
        body = "".join(f"<tr><th>{html.escape(label)}</th><td>{v:.4f}</td><td>{'' if bv is None else f'{bv:.4f}'}"
                       f"</td><td>{'' if bv is None else _pp(v - bv)}</td>"
                       + ("" if ref is None else f"<td>{_pp(v - ref)}</td>") + "</tr>"
                       for label, v, bv in rows)
        size = f" ({b['param_count'] / base['param_count']:.0%} of the baseline's)" if base else ""
        chosen = ", ".join(f"{k} {v}" for k, v in _tidy(b["params"]).items())
        items.append("<div class='statement'><b>1. Best trial</b>: "
                     + html.escape(f"#{b['number']}{' (the baseline itself)' if b['baseline'] else ''}"
                                   f" ({chosen}), {b['param_count']:,} parameters{size}; single runs at"
                                   f" {fid.describe()}"
                                   + ("" if base else "; the in-study baseline has not completed") + ".")
                     + f"<table class='summary'>{head}{body}</table></div>")
    c = d.confirm
    cands = [r for r in c.get("configs", []) if "verdict" in r]
    if not cands:
        items.append("<div class='statement'><b>2. Confirmation</b>: not confirmed yet. One run per trial cannot"
                     " tell a real improvement from training noise; run <code>"
                     + html.escape(_confirm_command(d)) + "</code> and write this report again.</div>")
    else:
        fid = confirm_mod.Fidelity(**c["fidelity"])
        parts = []
        for r in cands:
            ci = r.get("diff_ci95")
            extra = "" if ci is None else f", 95% interval {_pp(ci[0])} to {_pp(ci[1])}, Holm p = {r['p_holm']:.2g}"
            need = r.get("seeds_needed_estimate")
            more = f"; about {need} seeds would resolve it (estimate)" if need else ""
            parts.append(f"{html.escape(r['config'])} {_word(r['verdict'])} vs the baseline"
                         + html.escape(f" ({_pp(r['diff_mean'])} test accuracy over {r['paired_seeds']} seeds"
                                       f"{extra}{more})"))
        items.append(f"<div class='statement'><b>2. Confirmation</b> ({html.escape(fid.describe())}, paired by"
                     f" training seed): " + "; ".join(parts) + ". "
                     + ("" if d.reference is None else html.escape(confirm_mod.reference_sentence(c)))
                     + ("" if not c.get("rank_check") else " " + html.escape(c["rank_check"]["sentence"]))
                     + " <a href='#confirm'>details</a></div>")
    imp = d.importance
    text = importance_mod.sentence(imp) if imp is not None else "Importance was not computed."
    items.append(f"<div class='statement'><b>3. Which choices mattered</b>: {html.escape(text)}"
                 " <a href='#importance'>details</a></div>")
    return Section("The answer", "\n".join(items), "answer")


def header_section(d: ReportData) -> Section:
    """Study, space, training settings, sampler/pruner, dates, counts, versions."""
    s = d.settings
    versions = next((r.get("versions") for r in [d.best, d.baseline] if r and r.get("versions")), None)
    items = [
        ("storage", d.url), ("created", s["created"]), ("space file", s["space_source"]),
        ("sampler / pruner", f"{s['study']['sampler']} / {s['study']['pruner']} (seed {s['study']['seed']})"),
        ("objectives", ", ".join(s["study"]["objectives"])),
        ("training", ", ".join(f"{k}={v}" for k, v in s["training"].items())),
        ("trials", ", ".join(f"{v} {k.lower()}" for k, v in sorted(d.counts.items())) or "none"),
        ("framework versions", ", ".join(f"{k} {v}" for k, v in versions.items()) if versions else "not recorded yet"),
        ("report written", _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")),
    ]
    rows = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>" for k, v in items)
    body = (f"<table class='meta'>{rows}</table><details><summary>space file</summary><pre>"
            f"{html.escape(s['space_text'])}</pre></details>")
    return Section("Study settings", body, "study")


def importance_section(d: ReportData) -> Section:
    """fANOVA over resamples (mean, spread) beside the dashboard's PED-ANOVA, with the rules in words."""
    title = "Which choices mattered: the answer to instinct, experience or evidence"
    imp = d.importance
    if imp is None:
        return Section(title, _p("Importance was not computed.", "missing"), "importance")
    body = _p(importance_mod.sentence(imp), "answer")
    if imp.ranked:
        ranked = [x for x in imp.dimensions if x.fanova]
        body += _img(viz.data_uri(viz.draw_importance([x.name for x in ranked], [list(x.fanova) for x in ranked],
                                                      [x.dashboard for x in ranked], imp.not_explored)),
                     "importance")
    rows = [{"dimension": x.name, "distinct values": x.distinct,
             f"fANOVA mean ± sd ({importance_mod.RESAMPLES} resamples)": f"{x.mean:.0%} ± {x.sd:.0%}" if x.fanova
             else "not explored" if not x.explored else "too few trials" if imp.too_few else "",
             "in the top 2 (share of resamples)": f"{x.top_share:.0%}" if x.fanova else "",
             "optuna-dashboard (PED-ANOVA)": "" if x.dashboard is None else f"{x.dashboard:.0%}"}
            for x in imp.dimensions]
    if rows:
        body += pd.DataFrame(rows).to_html(index=False, border=0, classes="trials")
    body += _p("Two measures, on purpose: fANOVA (the share of the variance in validation accuracy a choice"
               " explains, refitted on bootstrap resamples of the completed trials to show how stable it is) and"
               " PED-ANOVA, which optuna-dashboard's importance panel shows (how much a choice's values differ"
               " between the top 10% of trials and all of them). Both rank knobs within this space and fidelity;"
               " neither says which value is best: the slice plots do.", "note")
    infeasible = d.counts.get("INFEASIBLE", 0)
    if infeasible:  # Optuna's PED-ANOVA reads every COMPLETE trial's value, and an infeasible one scores 0
        body += _p(f"The optuna-dashboard column includes the {infeasible} infeasible (untrained, over the size"
                   " limit) trials at their stored value 0, as the dashboard does, so it partly ranks which choices"
                   " break the size limit; the fANOVA columns use trained trials only.", "note")
    return Section(title, body, "importance")


def figure_sections(d: ReportData) -> list[Section]:
    """History, accuracy against size, importance, slices (Optuna's), learning curves."""
    t = d.table
    done = t[(t["state"] == "COMPLETE") & t["val acc"].notna()].sort_values("trial")
    base_val = d.baseline["val_accuracy"] if d.baseline else None
    if done.empty:
        msg = _p("No trial has completed, so there is nothing to plot yet.", "missing")
        return [Section("Figures", msg, "figures"), importance_section(d)]
    out = []
    nums = done["trial"].tolist()
    vals = done["val acc"].astype(float).tolist()
    best = list(np.maximum.accumulate(vals))
    out.append(Section("Optimisation history", _img(viz.data_uri(viz.draw_history(nums, vals, best, base_val,
                                                                                  d.reference)), "history"),
                       "history"))
    params = done["params"].astype(float).tolist()
    front = viz.pareto_front(params, vals)
    base_point = (float(d.baseline["param_count"]), base_val) if d.baseline else None
    front_rows = done.iloc[front][["trial", "params", "val acc", "test acc"]]
    out.append(Section("Accuracy against parameter count",
                       _img(viz.data_uri(viz.draw_pareto(params, vals, front, base_point, d.reference)), "pareto")
                       + "<p>Pareto front (no other trial is both smaller and more accurate):</p>"
                       + _fmt_table(front_rows), "pareto"))
    out.append(importance_section(d))
    base_params = d.baseline["params"] if d.baseline else {}
    slices = [_img(viz.data_uri(viz.draw_slice(d.study, name, base_params.get(name), base_val)), name)
              for name in _param_columns(d) if done[name].notna().any()]
    out.append(Section("Slices: validation accuracy against each choice",
                       "<div class='grid'>" + "".join(slices) + "</div>" if slices else
                       _p("No searched parameter has completed values.", "missing"), "slices"))
    out.append(learning_curves_section(d, done))
    return out


def _param_columns(d: ReportData) -> list[str]:
    return [c for c in d.table.columns if c not in LEAD_COLUMNS and c not in TAIL_COLUMNS]


def learning_curves_section(d: ReportData, done: pd.DataFrame) -> Section:
    """Validation accuracy by epoch of the top 5 trials beside the baseline's."""
    h = d.histories
    top = done.sort_values("val acc", ascending=False)["trial"].tolist()[:5]
    curves: dict[str, list[float]] = {}
    base_key = None
    if d.baseline and d.baseline["number"] in h:
        base_key = f"baseline (#{d.baseline['number']})"
        curves[base_key] = h[d.baseline["number"]]
    for n in top:
        if n in h and (d.baseline is None or n != d.baseline["number"]):
            curves[f"trial {n}"] = h[n]
    if not curves:
        return Section("Learning curves", _p("No per-epoch history was recorded.", "missing"), "curves")
    return Section("Learning curves", _img(viz.data_uri(viz.draw_learning_curves(curves, base_key)), "curves"),
                   "curves")


def model_section(m: Models) -> Section:
    """Draw the model panels (computed by :func:`compute_models`) side by side, folded away."""
    title = "What the filters learned: the best model beside the baseline"
    if m.missing:
        return Section(title, _p(m.missing, "missing"), "model")
    cols = []
    for p in m.panels:
        rec, lab = p.record, p.label
        parts = [f"<h3>{html.escape(lab)}: trial #{rec['number']}, {rec['param_count']:,} parameters</h3>"]
        parts.append(_img(viz.data_uri(viz.draw_filters(p.filters1, f"{lab}: first-layer filters")), "conv1 filters"))
        if p.filters2 is not None:
            parts.append(_img(viz.data_uri(viz.draw_filters(p.filters2, f"{lab}: second-layer filters, input"
                                                                         " channel 0")), "conv2 filters"))
        for idx, image, m1, m2 in p.digits:
            parts.append(_img(viz.data_uri(viz.draw_digit_maps(image, m1, m2, title=f"{lab}: test digit #{idx}")),
                              f"digit {idx} maps"))
        parts.append(_img(viz.data_uri(viz.draw_confusion(p.confusion, title=f"{lab}: confusion matrix, test"
                                                                             f" accuracy {p.accuracy:.4f}")),
                          "confusion"))
        parts.append(_img(viz.data_uri(viz.draw_mistakes(p.mistakes, p.mistake_labels,
                                                         title=f"{lab}: most confidently wrong test digits")),
                          "mistakes"))
        cols.append("<div class='col'>" + "\n".join(parts) + "</div>")
    note = _p(m.note, "answer") if m.note else ""
    return Section(title, note + "<details><summary>Filters, feature maps of test digits "
                   + ", ".join(str(i) for i in viz.REFERENCE_DIGITS) + ", confusion matrices and the most"
                   " confidently wrong digits</summary><div class='cols'>" + "".join(cols) + "</div></details>",
                   "model")


def confirm_section(d: ReportData) -> Section:
    """Per configuration: test accuracy per seed, the paired difference with its interval, Holm p, the verdict."""
    title = "Confirmation over training seeds: is the win real?"
    c = d.confirm
    if not c.get("configs"):
        return Section(title, _p("Not confirmed yet. A single search run cannot tell a real improvement from"
                                 f" training noise; run: {_confirm_command(d)}", "missing"), "confirm")
    rows = []
    for r in c["configs"]:
        ci = r.get("diff_ci95")
        mc = r.get("mcnemar_p_by_seed")
        ref = r.get("vs_reference")
        row = {
            "configuration": r["config"], "trial": r["trial"], "parameters": f"{r['param_count']:,}",
            "search val": "" if r.get("search_val_accuracy") is None else f"{r['search_val_accuracy']:.4f}",
            "test accuracy per seed": ", ".join(f"{a:.4f}" for a in r["test_accuracies"]),
            "mean ± sd": f"{r['mean_test_accuracy']:.4f}" + ("" if r["sd_test_accuracy"] is None
                                                             else f" ± {r['sd_test_accuracy']:.4f}"),
            "− baseline (95% interval)": "" if "diff_mean" not in r else _pp(r["diff_mean"]) + (
                "" if ci is None else f" [{100 * ci[0]:+.2f}, {100 * ci[1]:+.2f}]"),
            "Holm p": "" if r.get("p_holm") is None else f"{r['p_holm']:.2g}",
            "verdict": r.get("verdict", ""),
            "seeds needed (estimate)": r.get("seeds_needed_estimate") or "",
            "McNemar p < 0.05 (supporting)": "" if not mc else f"{sum(p < 0.05 for p in mc)} of {len(mc)} seed pairs",
        }
        if c["reference"]["comparable"] and d.reference is not None:
            row[f"vs {REFERENCE:.2%}"] = "" if not ref else ref["verdict"]
        rows.append(row)
    fid = confirm_mod.Fidelity(**c["fidelity"])
    others = [f for f in c["fidelities"] if f["epochs"] != fid.epochs or f["train_limit"] != fid.train_limit]
    body = (_p(c["verdict"], "answer") + (_p(c["rank_check"]["sentence"], "answer") if c.get("rank_check") else "")
            + "<div class='scroll'>"
            + pd.DataFrame(rows).to_html(index=False, border=0, classes="trials") + "</div>"
            + _p(f"Retrained at {fid.describe()} with the seeds paired (seed s of a candidate against seed s of the"
                 " baseline). The verdict rests on the per-seed differences: a 95% t-interval over seeds and its"
                 f" p-value, Holm-corrected over the candidates; 'better' or 'worse' needs at least"
                 f" {c['min_seeds']} seeds and a corrected p < {c['alpha']}. McNemar's exact test compares two"
                 " fixed trained models on the test images, so it cannot see training noise: it is shown per seed"
                 " pair as supporting evidence only. 'Seeds needed' is an estimate (80% power) from the observed"
                 " difference and sd, themselves noisy.", "note"))
    if others:
        body += _p("Runs at other fidelities are stored too (cnnsearch study confirm NAME --show --epochs E"
                   " --train-limit N): " + "; ".join(f"{f['epochs']} epochs, train_limit {f['train_limit']}:"
                                                     f" {f['runs']} runs" for f in others), "note")
    return Section(title, body, "confirm")


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:1rem auto;max-width:1300px;color:#222;
line-height:1.45;padding:0 1rem}
h1{margin-bottom:.2rem}h2{border-bottom:2px solid #ddd;padding-bottom:.2rem;margin-top:2.2rem}
table{border-collapse:collapse;font-size:.82rem;margin:.6rem 0}th,td{padding:.25rem .5rem;border-bottom:1px solid #e5e5e5;
text-align:right}th{background:#f6f6f6}table.meta th,table.meta td{text-align:left}
tr.baseline td{background:#fff3d6;font-weight:600}.missing{color:#8a5a00;background:#fff8e6;padding:.5rem;
border-left:4px solid #e0a000}.answer{font-size:1.05rem;background:#eef6ee;padding:.6rem;border-left:4px solid #2e8b57}
.note{color:#555;font-size:.9rem}img{max-width:100%}.grid{display:flex;flex-wrap:wrap;gap:.5rem}
.grid img{width:32%}.cols{display:flex;gap:1rem}.col{flex:1;min-width:0}.scroll{overflow-x:auto}
nav a{margin-right:1rem}pre{background:#f6f6f6;padding:.6rem;overflow-x:auto}
#answer h2{margin-top:.8rem}.statement{margin:.5rem 0;padding:.4rem .6rem;background:#f3f7fb;
border-left:4px solid #3a6ea5}.statement table{margin:.3rem 0 0}
.verdict{padding:0 .3rem;border-radius:3px}.verdict.better{background:#cdebd3}.verdict.worse{background:#f6d0d0}
.verdict.inconclusive{background:#eee}details>summary{cursor:pointer;font-weight:600;margin:.4rem 0}
"""


def _all_failed(table: pd.DataFrame) -> bool:
    finished = table[~table["state"].isin(["WAITING", "RUNNING"])] if len(table) else table
    return bool(len(finished)) and bool((finished["state"] == "FAIL").all())


def render(d: ReportData, sections: list[Section]) -> str:
    """The whole HTML document."""
    nav = " ".join(f'<a href="#{s.anchor}">{html.escape(s.title.split(":")[0].split(",")[0])}</a>'
                   for s in sections if s.anchor)
    parts = [f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>cnnsearch report:"
             f" {html.escape(d.name)}</title><style>{_CSS}</style></head><body>",
             f"<h1>cnnsearch report: {html.escape(d.name)}</h1>",
             _p(d.settings["study"].get("description") or "", "note"), f"<nav>{nav}</nav>"]
    for s in sections:
        parts.append(f"<section id='{s.anchor}'><h2>{html.escape(s.title)}</h2>{s.body}</section>")
    parts.append("</body></html>")
    return "\n".join(parts)


def build(name: str, url: str | None = None, *, data_path: str | None = None, models: bool = True,
          on_step: Callable[[str], None] | None = None) -> str:
    """The report of study ``name`` as an HTML string.

    Args:
        name: Study name.
        url: Storage URL (resolved as for the study commands).
        data_path: Test images for the model figures (resolved as for ``--data``; never downloaded).
        models: Include the learned-filter figures (set False for a table-and-figures-only report).
        on_step: Hears what is being computed (one short line per step), for progress.
    """
    step = on_step or (lambda _text: None)
    d, h = compute(name, url, on_loaded=lambda: step(f"read study {name!r}; computing parameter importance"))
    running = d.counts.get("RUNNING", 0)
    trials_body = (_p("Only the baseline has run so far." if len(d.table) == 1 else "")
                   + (_p("Every finished trial failed: see the reasons below.", "missing")
                      if _all_failed(d.table) else "")
                   + (_p(f"{running} trial(s) were still running when this report was written; they appear without"
                         " results.", "missing") if running else "")
                   + "<div class='scroll'>" + (_fmt_table(d.table) if len(d.table) else
                                               _p("No trials yet.", "missing")) + "</div>")
    step("drawing the study figures")
    sections = [answer_section(d), Section("Every trial, best validation accuracy first", trials_body, "trials"),
                confirm_section(d), *figure_sections(d)]
    if models:
        step("drawing the best and baseline models' filters and feature maps")
        m = compute_models(d, h, data_path)
        if m.missing:
            step(f"left out the model figures: {m.missing}")
        sections.append(model_section(m))
    sections.append(header_section(d))
    return render(d, sections)


def default_out(name: str) -> Path:
    """``reports/<slug>/index.html``: the study name made a safe folder name.

    Names stay free text in the database; only ``--out`` writes elsewhere. A
    name that is not already safe (``../x``, ``/abs``, spaces, unicode) gets
    its unsafe characters replaced and a short hash of the full name added,
    so two names never share a folder.
    """
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._-")[:80]
    if slug != name:
        slug = f"{slug or 'study'}-{hashlib.sha256(name.encode()).hexdigest()[:8]}"
    return Path("reports") / slug / "index.html"


def write(name: str, out: str | os.PathLike[str] | None = None, url: str | None = None, *,
          data_path: str | None = None, models: bool = True, on_step: Callable[[str], None] | None = None) -> Path:
    """Build the report and write it atomically (default ``reports/NAME/index.html``); see :func:`build`."""
    path = Path(out) if out is not None else default_out(name)
    text = build(name, url, data_path=data_path, models=models, on_step=on_step)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".report-", suffix=".html", dir=path.parent)
    except OSError as exc:
        raise CnnsearchError(f"--out {path}: cannot write the report there ({exc.strerror or exc}:"
                             f" {exc.filename or path.parent}); pass --out a file in a folder you can write to") from exc
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes it private; a report is an ordinary file
        os.replace(tmp, path)  # atomic: a failure never leaves half a report over a good one
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
