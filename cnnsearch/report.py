"""One self-contained HTML report per study: every trial against the 99.15% baseline.

The report answers the reference's open question (how are filter counts,
kernel sizes and the rest chosen?) with the study's evidence, and never claims
a win that noise could explain: the selection used validation accuracy only,
and a win is "confirmed" only by :mod:`cnnsearch.confirm`.

Tables come from pandas, figures from matplotlib (inline PNG data URIs); the
file makes no network request. Nothing here imports TensorFlow: the learned
filters, feature maps and confusion matrix are computed from the kept weights
with NumPy (:mod:`cnnsearch.im2col`). The file is written atomically.
"""

from __future__ import annotations

import datetime as _dt
import html
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd
from optuna.trial import TrialState

from cnnsearch import confirm as confirm_mod
from cnnsearch import study as study_mod
from cnnsearch import viz
from cnnsearch.arch import REFERENCE as REFERENCE_RUN, ArchSpec, read_weights
from cnnsearch.errors import CnnsearchError
from cnnsearch.objective import model_file
from cnnsearch.storage import artifact_dir

REFERENCE = REFERENCE_RUN.test_accuracy
_VS_REFERENCE = f"test − {REFERENCE:.2%} (pp)"


@dataclass
class Section:
    """A titled part of the report: HTML body, or a statement of why it is missing."""

    title: str
    body: str
    anchor: str = ""


@dataclass
class ReportData:
    """Everything the report shows, computed before any drawing."""

    name: str
    url: str
    settings: dict[str, Any]
    counts: dict[str, int]
    table: pd.DataFrame
    baseline: dict[str, Any] | None
    best: dict[str, Any] | None
    importance: dict[str, float] = field(default_factory=dict)
    importance_note: str = ""
    confirm: dict[str, Any] = field(default_factory=dict)
    histories: dict[int, list[float]] = field(default_factory=dict)  # val accuracy by epoch, per trial


def compute(name: str, url: str | None = None) -> tuple[ReportData, study_mod.Handle]:
    """Gather the study's numbers (no drawing, no TensorFlow)."""
    h = study_mod.load(name, url)
    trials = h.study.get_trials(deepcopy=False)
    records = [study_mod.trial_record(t) for t in trials]
    base = next((r for r in records if r["baseline"] and r["state"] == "COMPLETE"), None)
    best_t = study_mod.best_trial(h.study)
    best = next((r for r in records if best_t is not None and r["number"] == best_t.number), None)
    table = trial_table(records, base)
    data = ReportData(name=name, url=h.url, settings=h.study.user_attrs[study_mod.SETTINGS_KEY],
                      counts=study_mod.counts(h.study), table=table, baseline=base, best=best,
                      histories={r["number"]: r["history"]["val_accuracy"] for r in records
                                 if r["history"] and r["history"].get("val_accuracy")})
    data.importance, data.importance_note = importance(h)
    data.confirm = confirm_mod.summarize(confirm_mod.stored(h.study))
    return data, h


def trial_table(records: list[dict[str, Any]], base: dict[str, Any] | None) -> pd.DataFrame:
    """One row per trial with every parameter and the differences from both baselines (pp)."""
    names = sorted({k for r in records for k in r["params"]})
    rows = []
    for r in records:
        row: dict[str, Any] = {"trial": r["number"], "role": "baseline" if r["baseline"] else "", "state": r["state"]}
        for n in names:
            row[n] = r["params"].get(n)
        val, test = r["val_accuracy"], r["test_accuracy"]
        row.update({
            "params": r["param_count"], "FLOPs": r["flops"], "val acc": val, "test acc": test,
            _VS_REFERENCE: None if test is None else 100 * (test - REFERENCE),
            "val − baseline (pp)": None if val is None or base is None else 100 * (val - base["val_accuracy"]),
            "test − baseline (pp)": None if test is None or base is None else 100 * (test - base["test_accuracy"]),
            "epochs": r["epochs_run"], "seconds": r["seconds"],
            "reason": r["fail_reason"] or ("pruned" if r["state"] == "PRUNED" else ""),
        })
        rows.append(row)
    return pd.DataFrame(rows)


def importance(h: study_mod.Handle) -> tuple[dict[str, float], str]:
    """fANOVA importances of the searched parameters, or why there are none."""
    import optuna

    done = h.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if len(done) < 3:
        return {}, f"Parameter importance needs at least 3 completed trials; this study has {len(done)}."
    try:
        from optuna.importance import FanovaImportanceEvaluator

        imp = optuna.importance.get_param_importances(
            h.study, evaluator=FanovaImportanceEvaluator(seed=0),
            target=lambda t: t.user_attrs.get("val_accuracy", float("nan")))
    except Exception as exc:  # too few distinct values, or a conditional space with no common part
        return {}, f"Parameter importance could not be computed: {exc}"
    return {k: float(v) for k, v in imp.items()}, ""


def importance_sentence(imp: dict[str, float], n_trials: int) -> str:
    """The plain answer to the reference's question, from the importances."""
    if not imp:
        return ""
    ranked = sorted(imp.items(), key=lambda kv: -kv[1])
    top = [f"{k} ({v:.0%})" for k, v in ranked[:2] if v >= 0.1] or [f"{ranked[0][0]} ({ranked[0][1]:.0%})"]
    low = [f"{k} ({v:.0%})" for k, v in ranked if v < 0.05]
    s = (f"Evidence from {n_trials} completed trials: the choices that mattered most for validation accuracy were "
         f"{' and '.join(top)}")
    s += f"; hardly at all: {', '.join(low)}." if low else "; every searched choice mattered somewhat."
    s += (" Importance is the share of the variance in validation accuracy that each choice explains"
          " (fANOVA) within this space and fidelity; it says which knobs to tune first, not which value"
          " is best: the slice plots show that.")
    if n_trials < 20:
        s += f" With only {n_trials} completed trials this ranking is tentative: run more trials to firm it up."
    return s


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
    out = fmt.to_html(index=False, na_rep="", classes="trials", border=0, escape=True)
    # Mark the baseline row so it stands out.
    return out.replace("<tr>\n      <td>0</td>\n      <td>baseline</td>", '<tr class="baseline">\n      <td>0</td>\n'
                                                                        "      <td>baseline</td>")


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


def summary_section(d: ReportData) -> Section:
    """Best trial against 99.15% and the in-study baseline, on validation and test."""
    if d.best is None:
        return Section("Summary", _p("No trial has completed yet: there is no best trial to compare.", "missing"))
    b, base = d.best, d.baseline
    rows = [
        ("validation accuracy (selected on this)", b["val_accuracy"], None if base is None else base["val_accuracy"]),
        ("test accuracy (never used to select)", b["test_accuracy"], None if base is None else base["test_accuracy"]),
    ]
    body = ["<table class='summary'><tr><th></th><th>best trial</th><th>in-study baseline</th><th>best − baseline</th>"
            f"<th>best − reference {REFERENCE:.2%}</th></tr>"]
    for label, v, bv in rows:
        body.append(f"<tr><th>{html.escape(label)}</th><td>{v:.4f}</td><td>{'' if bv is None else f'{bv:.4f}'}</td>"
                    f"<td>{'' if bv is None else _pp(v - bv)}</td><td>{_pp(v - REFERENCE)}</td></tr>")
    body.append("</table>")
    body.append(_p(f"Best trial: #{b['number']}{' (the baseline itself)' if b['baseline'] else ''} with"
                   f" {b['param_count']:,} parameters"
                   + (f" ({b['param_count'] / base['param_count']:.1%} of the baseline's)" if base else "")
                   + f"; parameters {_tidy(b['params'])}."))
    body.append(_p(f"The search selected on validation accuracy only. The reference's {REFERENCE:.2%} is a test"
                   f" accuracy after {REFERENCE_RUN.epochs} epochs on all 54,000 images; this study trains at a reduced"
                   " fidelity, so its in-study baseline is the fair comparison. A difference of a few tenths of a point between single runs can be"
                   " noise: only the confirmation below can call a win.", "note"))
    if base is None:
        body.append(_p("The in-study baseline (trial 0) has not completed: differences from it are missing.",
                       "missing"))
    return Section("Summary", "\n".join(body), "summary")


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
    if d.counts.get("RUNNING"):
        body += _p(f"{d.counts['RUNNING']} trial(s) were still running when this report was written; they appear"
                   " without results.", "missing")
    return Section("Study", body, "study")


def figure_sections(d: ReportData) -> list[Section]:
    """History, accuracy against size, importance with its sentence, slices, learning curves."""
    t = d.table
    done = t[(t["state"] == "COMPLETE") & t["val acc"].notna()]
    base_val = d.baseline["val_accuracy"] if d.baseline else None
    if done.empty:
        msg = _p("No trial has completed, so there is nothing to plot yet.", "missing")
        return [Section("Figures", msg, "figures")]
    out = []
    nums = done["trial"].tolist()
    vals = done["val acc"].astype(float).tolist()
    best = list(np.maximum.accumulate(vals))
    out.append(Section("Optimisation history", _img(viz.data_uri(viz.draw_history(nums, vals, best, base_val,
                                                                                  REFERENCE)), "history"),
                       "history"))
    params = done["params"].astype(float).tolist()
    front = viz.pareto_front(params, vals)
    base_point = (float(d.baseline["param_count"]), base_val) if d.baseline else None
    front_rows = done.iloc[front][["trial", "params", "val acc", "test acc"]]
    out.append(Section("Accuracy against parameter count",
                       _img(viz.data_uri(viz.draw_pareto(params, vals, front, base_point, REFERENCE)), "pareto")
                       + "<p>Pareto front (no other trial is both smaller and more accurate):</p>"
                       + _fmt_table(front_rows), "pareto"))
    if d.importance:
        body = (_p(importance_sentence(d.importance, len(done)), "answer")
                + _img(viz.data_uri(viz.draw_importance(d.importance)), "importance"))
    else:
        body = _p(d.importance_note, "missing")
    out.append(Section("Which choices mattered: the answer to instinct, experience or evidence", body, "importance"))
    slices = []
    searched = [c for c in d.table.columns if c in _param_columns(d)]
    base_params = d.baseline["params"] if d.baseline else {}
    for name in searched:
        sub = done[done[name].notna()]
        if sub.empty:
            continue
        slices.append(_img(viz.data_uri(viz.draw_slice(name, sub[name].tolist(), sub["val acc"].astype(float).tolist(),
                                                       base_params.get(name), base_val)), name))
    out.append(Section("Slices: validation accuracy against each choice",
                       "<div class='grid'>" + "".join(slices) + "</div>" if slices else
                       _p("No searched parameter has completed values.", "missing"), "slices"))
    out.append(learning_curves_section(d, done))
    return out


def _param_columns(d: ReportData) -> list[str]:
    fixed = {"trial", "role", "state", "params", "FLOPs", "val acc", "test acc", _VS_REFERENCE,
             "val − baseline (pp)", "test − baseline (pp)", "epochs", "seconds", "reason"}
    return [c for c in d.table.columns if c not in fixed]


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


def model_section(d: ReportData, h: study_mod.Handle, data_path: str | None,
                  on_step: Callable[[str], None] | None = None) -> Section:
    """The best model's filters, feature maps, confusion matrix and confident mistakes, beside the baseline's.

    ``on_step`` hears one line when the section is left out for want of the test images.
    """
    title = "What the filters learned: the best model beside the baseline"
    if d.best is None:
        return Section(title, _p("No completed trial: no model to show.", "missing"), "model")
    best_file = model_file(h, "best")
    base_file = model_file(h, "baseline")
    if best_file is None:
        return Section(title, _p("The best trial's weights are not in the artifact store"
                                 f" ({artifact_dir(h.url)}); run the study on this machine or point"
                                 " CNNSEARCH_ARTIFACTS at the shared folder.", "missing"), "model")
    try:
        from cnnsearch import provenance

        # The data the study was trained on (remembered at its first run) unless --data says otherwise.
        ds = provenance.load(h.study, data_path, remember=False, download=False)
    except provenance.DataMismatch:
        raise  # other data than the study's: refused, not drawn around
    except CnnsearchError as exc:
        if on_step is not None:
            on_step(f"left out the model figures: no test images ({exc})")
        return Section(title, _p(f"The test images are needed to draw feature maps and the confusion matrix: {exc}",
                                 "missing"), "model")
    models = [("best", d.best, best_file)]
    if base_file is not None and d.baseline is not None and d.baseline["number"] != d.best["number"]:
        models.append(("baseline", d.baseline, base_file))
    cols = []
    digits = ds.x_test[list(viz.REFERENCE_DIGITS)]
    for label, rec, path in models:
        spec = ArchSpec.from_dict(rec["spec"])
        weights = read_weights(path)
        parts = [f"<h3>{html.escape(label)}: trial #{rec['number']}, {rec['param_count']:,} parameters</h3>"]
        w1 = viz.filters(weights, "conv1", limit=32)
        parts.append(_img(viz.data_uri(viz.draw_grid(w1, max(1, -(-len(w1) // 8)), 8,
                                                      title=f"{label}: first-layer filters")), "conv1 filters"))
        if "conv2" in weights:
            w2 = viz.filters(weights, "conv2", limit=32)
            parts.append(_img(viz.data_uri(viz.draw_grid(w2, max(1, -(-len(w2) // 8)), 8,
                                                          title=f"{label}: second-layer filters, input channel 0")),
                              "conv2 filters"))
        layers = ("conv1", "conv2") if "conv2" in weights else ("conv1",)
        maps = viz.feature_maps(weights, spec, digits, layers)
        for j, idx in enumerate(viz.REFERENCE_DIGITS):
            m2 = maps.get("conv2", maps["conv1"])[j]
            parts.append(_img(viz.data_uri(viz.draw_digit_maps(digits[j], maps["conv1"][j], m2,
                                                                title=f"{label}: test digit #{idx}")),
                              f"digit {idx} maps"))
        proba = viz.predict_proba(weights, spec, ds.x_test)
        pred = proba.argmax(axis=1)
        acc = float((pred == ds.y_test).mean())
        parts.append(_img(viz.data_uri(viz.draw_confusion(viz.confusion(ds.y_test, pred, ds.n_classes),
                                                           title=f"{label}: confusion matrix, test accuracy"
                                                                 f" {acc:.4f}")), "confusion"))
        wrong = viz.confident_mistakes(ds.y_test, proba, 16)
        labels = [f"#{i}: {ds.y_test[i]}→{pred[i]} ({proba[i, pred[i]]:.0%})" for i in wrong]
        parts.append(_img(viz.data_uri(viz.draw_grid(ds.x_test[wrong], 2, 8, labels=labels,
                                                      title=f"{label}: most confidently wrong test digits")),
                          "mistakes"))
        cols.append("<div class='col'>" + "\n".join(parts) + "</div>")
    if len(models) == 2:
        note = ""
    elif d.baseline is not None and d.baseline["number"] == d.best["number"]:
        note = _p("The in-study baseline is the best model so far: no trial has beaten it on validation.", "answer")
    else:
        note = _p("The in-study baseline's weights were not kept, so only the best model is shown.", "missing")
    return Section(title, note + "<div class='cols'>" + "".join(cols) + "</div>", "model")


def confirm_section(d: ReportData) -> Section:
    """Mean ± std over seeds, difference from the baseline with a 95% interval, McNemar."""
    title = "Confirmation over seeds: is the win real?"
    c = d.confirm
    if not c.get("configs"):
        return Section(title, _p(f"Not confirmed yet. A single search run cannot tell a real improvement from noise;"
                                 f" run: cnnsearch study confirm {d.name} --top 3 --seeds 3", "missing"), "confirm")
    rows = []
    for r in c["configs"]:
        accs = ", ".join(f"{a:.4f}" for a in r["test_accuracies"])
        diff = ""
        if "diff_mean" in r:
            lo, hi = r["diff_ci95"]
            diff = f"{100 * r['diff_mean']:+.2f} pp [{100 * lo:+.2f}, {100 * hi:+.2f}]"
        p = r.get("mcnemar_p")
        rows.append({
            "configuration": r["config"], "trial": r["trial"], "parameters": f"{r['param_count']:,}",
            "seeds": r["seeds"], "test accuracy mean ± std": f"{r['mean_test_accuracy']:.4f} ± {r['std_test_accuracy']:.4f}",
            "per seed": accs, "− baseline (95% CI)": diff,
            "McNemar (only baseline / only candidate right)": "" if p is None else
            f"{r['mcnemar_only_baseline']} / {r['mcnemar_only_candidate']}, p = {p:.3g}",
            "beyond noise": "" if "beyond_noise" not in r else ("yes" if r["beyond_noise"] else "no"),
        })
    epochs, limit = c["fidelity"].split("-")
    body = (_p(c["verdict"], "answer") + pd.DataFrame(rows).to_html(index=False, border=0, classes="trials")
            + _p(f"Retrained at {epochs[1:]} epochs on {'all' if limit == 'n0' else limit[1:]} training images with"
                 " the seeds paired (seed s of a candidate against seed s of the baseline). McNemar's exact test"
                 " is pooled over seeds on the 10,000 test images; 'beyond noise' means a positive mean"
                 f" difference and p < {confirm_mod.ALPHA}.", "note"))
    return Section(title, body, "confirm")


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;max-width:1300px;color:#222;
line-height:1.45;padding:0 1rem}
h1{margin-bottom:.2rem}h2{border-bottom:2px solid #ddd;padding-bottom:.2rem;margin-top:2.2rem}
table{border-collapse:collapse;font-size:.82rem;margin:.6rem 0}th,td{padding:.25rem .5rem;border-bottom:1px solid #e5e5e5;
text-align:right}th{background:#f6f6f6}table.meta th,table.meta td{text-align:left}
tr.baseline td{background:#fff3d6;font-weight:600}.missing{color:#8a5a00;background:#fff8e6;padding:.5rem;
border-left:4px solid #e0a000}.answer{font-size:1.05rem;background:#eef6ee;padding:.6rem;border-left:4px solid #2e8b57}
.note{color:#555;font-size:.9rem}img{max-width:100%}.grid{display:flex;flex-wrap:wrap;gap:.5rem}
.grid img{width:32%}.cols{display:flex;gap:1rem}.col{flex:1;min-width:0}.scroll{overflow-x:auto}
nav a{margin-right:1rem}pre{background:#f6f6f6;padding:.6rem;overflow-x:auto}
"""


def _all_failed(table: pd.DataFrame) -> bool:
    finished = table[~table["state"].isin(["WAITING", "RUNNING"])] if len(table) else table
    return bool(len(finished)) and bool((finished["state"] == "FAIL").all())


def render(d: ReportData, sections: list[Section]) -> str:
    """The whole HTML document."""
    nav = " ".join(f'<a href="#{s.anchor}">{html.escape(s.title.split(":")[0])}</a>' for s in sections if s.anchor)
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
    step(f"reading study {name!r} and computing parameter importance")
    d, h = compute(name, url)
    sections = [header_section(d), summary_section(d)]
    trials_body = (_p("Only the baseline has run so far." if len(d.table) == 1 else "")
                   + (_p("Every finished trial failed: see the reasons below.", "missing")
                      if _all_failed(d.table) else "")
                   + "<div class='scroll'>" + (_fmt_table(d.table) if len(d.table) else
                                               _p("No trials yet.", "missing")) + "</div>")
    sections.append(Section("Every trial", trials_body, "trials"))
    step("drawing the study figures")
    sections += figure_sections(d)
    if models:
        step("drawing the best and baseline models' filters and feature maps")
        sections.append(model_section(d, h, data_path, on_step))
    sections.append(confirm_section(d))
    return render(d, sections)


def write(name: str, out: str | os.PathLike[str] | None = None, url: str | None = None, *,
          data_path: str | None = None, models: bool = True, on_step: Callable[[str], None] | None = None) -> Path:
    """Build the report and write it atomically (default ``reports/NAME/index.html``); see :func:`build`."""
    text = build(name, url, data_path=data_path, models=models, on_step=on_step)
    path = Path(out) if out is not None else Path("reports") / name / "index.html"
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".report-", suffix=".html", dir=path.parent)
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
