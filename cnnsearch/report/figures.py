"""The study's figures and the per-choice effect table: history, size, importance, slices, parallel coordinates,
learning curves. Computed numbers come from :mod:`cnnsearch.report.data`; this module only draws.

Every figure has an alt text that says what it shows. The published 99.15% is drawn only where
:attr:`ReportData.reference_ok` (the reference's fidelity, MNIST-shaped data).
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np

from cnnsearch.evidence import importance as importance_mod
from cnnsearch.model import viz
from cnnsearch.report.data import REFERENCE, ReportData, effects
from cnnsearch.report.markup import Section, img, p, plural, table, tidy

#: Slice plots: two a row, each about 650 px wide (natural size at viz.DPI), so no text is under 9 px.
SLICE_INCHES = (6.0, 3.9)
SLICE_FONT_PT = 9
#: Dimensions on the parallel-coordinate plot: the most important first (more lines would be unreadable).
PARALLEL_DIMENSIONS = 8
#: An integer dimension with at most this many distinct values gets one tick per value (no 1.5 ticks).
INTEGER_TICKS_MAX = 12


def _reference(d: ReportData) -> float:
    # nan draws no line; its legend entry is removed by _drop_reference.
    return REFERENCE if d.reference_ok else math.nan


def _drop_reference(fig: Any, d: ReportData) -> Any:
    """Remove the published figure's line (and its legend entry) where it does not apply."""
    if d.reference_ok:
        return fig
    for ax in fig.axes:
        for line in list(ax.lines):
            if str(line.get_label()).startswith("reference"):
                line.remove()
        if ax.get_legend() is not None:
            ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    return fig


def history_section(d: ReportData) -> Section:
    """Each trial's validation accuracy in order, the best so far, the baselines."""
    done = d.completed
    nums, vals = done["trial"].tolist(), done["val acc"].astype(float).tolist()
    base_val = d.baseline["val_accuracy"] if d.baseline else None
    fig = _drop_reference(viz.draw_history(nums, vals, list(np.maximum.accumulate(vals)), base_val, _reference(d)), d)
    alt = (f"Validation accuracy of {plural(len(vals), 'completed trial')} in trial order, best so far"
           f" {max(vals):.4f}" + ("" if base_val is None else f", in-study baseline {base_val:.4f}"))
    return Section("Optimisation history", img(viz.data_uri(fig), alt), "history")


def pareto_section(d: ReportData) -> Section:
    """Validation accuracy against parameter count, with the Pareto front."""
    from cnnsearch.report.tables import trial_rows

    done = d.completed
    params, vals = done["params"].astype(float).tolist(), done["val acc"].astype(float).tolist()
    front = viz.pareto_front(params, vals)
    base_val = d.baseline["val_accuracy"] if d.baseline else None
    base_point = (float(d.baseline["param_count"]), base_val) if d.baseline else None
    fig = _drop_reference(viz.draw_pareto(params, vals, front, base_point, _reference(d)), d)
    smallest = min(params[i] for i in front)
    alt = (f"Validation accuracy against parameter count (log scale): the Pareto front has"
           f" {plural(len(front), 'trial')}, the smallest {int(smallest):,} parameters")
    rows, classes = trial_rows(done.iloc[front])
    return Section("Accuracy against parameter count",
                   img(viz.data_uri(fig), alt) + "<p>Pareto front (no other trial is both smaller and more"
                   " accurate):</p><div class='scroll'>" + table(rows, row_cls=classes, raw=("reason",)) + "</div>",
                   "pareto")


def importance_section(d: ReportData) -> Section:
    """fANOVA over resamples (mean, spread) beside the dashboard's PED-ANOVA, with what the figure leaves out."""
    title = "Which choices mattered: importance"
    imp = d.importance
    if imp is None:
        return Section(title, p("Importance was not computed.", "missing"), "importance")
    body = p(importance_mod.sentence(imp), "answer")
    if imp.ranked:
        ranked = [x for x in imp.dimensions if x.fanova]
        left = [x.name for x in imp.dimensions if not x.fanova]
        fig = viz.draw_importance([x.name for x in ranked], [list(x.fanova) for x in ranked],
                                  [x.dashboard for x in ranked], imp.not_explored)
        alt = (f"Share of validation-accuracy variance per choice (fANOVA over {imp.resamples} resamples):"
               f" {ranked[0].name} first at {ranked[0].mean:.0%}")
        body += img(viz.data_uri(fig), alt)
        body += p(f"The figure shows {len(ranked)} of {plural(len(imp.dimensions), 'searched dimension')}"
                  + (f"; left out: {', '.join(left)} (not explored or not ranked: no evidence either way)."
                     if left else "."), "note")
    rows = [{"dimension": x.name, "distinct values": x.distinct,
             f"fANOVA mean ± sd ({importance_mod.RESAMPLES} resamples)": f"{x.mean:.0%} ± {x.sd:.0%}" if x.fanova
             else "not explored" if not x.explored else "too few trials" if imp.too_few else "",
             "in the top 2 (share of resamples)": f"{x.top_share:.0%}" if x.fanova else "",
             "optuna-dashboard (PED-ANOVA)": "" if x.dashboard is None else f"{x.dashboard:.0%}"}
            for x in imp.dimensions]
    body += table(rows)
    body += p("Two measures, on purpose: fANOVA (the share of the variance in validation accuracy a choice"
              " explains, refitted on bootstrap resamples of the completed trials to show how stable it is) and"
              " PED-ANOVA, which optuna-dashboard's importance panel shows (how much a choice's values differ"
              " between the top 10% of trials and all of them). Both rank knobs within this space and fidelity;"
              " neither says which value is best: the effect table and the slice plots do. The direction per"
              " choice (median validation accuracy of the trials with each value) is observational, not a"
              " controlled comparison: an ablation is.", "note")
    infeasible = d.counts.get("INFEASIBLE", 0)
    if infeasible:  # Optuna's PED-ANOVA reads every COMPLETE trial's value, and an infeasible one scores 0
        body += p(f"The optuna-dashboard column includes the {infeasible} infeasible (untrained, over the size"
                  " limit) trials at their stored value 0, as the dashboard does, so it partly ranks which choices"
                  " break the size limit; the fANOVA columns use trained trials only.", "note")
    return Section(title, body, "importance")


def effects_section(d: ReportData) -> Section:
    """Mean and median validation accuracy per value of each choice, with n; the best value of each marked."""
    rows = [{"choice": e.dimension, "value": e.value, "n": e.n, "mean val acc": f"{e.mean:.4f}",
             "median val acc": f"{e.median:.4f}", "": "best" if e.best else ""} for e in effects(d)]
    if not rows:
        return Section("Effect of each choice", p("No searched choice took two values among the completed"
                                                  " trials.", "missing"), "effects")
    return Section("Effect of each choice", table(rows, ident="effect-table", row_cls=["best" if r[""] else ""
                                                                                     for r in rows])
                   + p("Observational: the trials that took a value also differ in every other choice, and the"
                       " sampler chose more often where it scored well. 'best' marks the highest mean among values"
                       " tried at least twice. Floats with many values are shown in quartile bins.", "note"),
                   "effects")


def _distribution(d: ReportData, name: str) -> Any:
    return next((t.distributions[name] for t in d.study.get_trials(deepcopy=False) if name in t.distributions),
                None)


def slice_points(d: ReportData, name: str) -> tuple[list[Any], list[float], list[int], bool, bool]:  # noqa: D401
    """One choice's slice as plain data: values, validation accuracies, trial numbers, categorical?, log scale?

    A categorical choice, or an integer one with at most :data:`INTEGER_TICKS_MAX` values, is drawn on a
    categorical axis (one tick per value, in order): ``conv_layers`` never gets a 1.5 tick.
    """
    import optuna

    col = d.completed[[name, "val acc", "trial"]].dropna(subset=[name, "val acc"])
    dist = _distribution(d, name)
    values = col[name].tolist()
    categorical = (isinstance(dist, optuna.distributions.CategoricalDistribution)
                   or (isinstance(dist, optuna.distributions.IntDistribution)
                       and len(set(values)) <= INTEGER_TICKS_MAX))
    log = bool(getattr(dist, "log", False)) and not categorical
    return values, col["val acc"].astype(float).tolist(), col["trial"].astype(int).tolist(), categorical, log


def draw_slices(d: ReportData, names: list[str]) -> Any:
    """Validation accuracy against each choice, two a row in one figure (one image: one encoding, not one per
    choice); the in-study baseline's value as an orange star and its validation accuracy as a dotted line."""
    import matplotlib

    matplotlib.use("Agg")  # files only; never needs a display
    import matplotlib.pyplot as plt

    rows = -(-len(names) // 2)
    fig, axes = plt.subplots(rows, 2, figsize=(2 * SLICE_INCHES[0], rows * SLICE_INCHES[1]), squeeze=False)
    base = d.baseline
    base_val = base["val_accuracy"] if base else None
    for ax, name in zip(axes.ravel(), names):
        values, vals, _numbers, categorical, log = slice_points(d, name)
        if categorical:
            order = sorted(set(values), key=lambda v: (not isinstance(v, (int, float)), v if isinstance(v, (int, float))
                                                       else str(v)))
            pos = {v: i for i, v in enumerate(order)}
            xs = [pos[v] for v in values]
            ax.set_xticks(range(len(order)))
            ax.set_xticklabels([str(tidy(v)) for v in order])  # 4.0 (a column with gaps is float) as 4
            ax.set_xlim(-0.5, len(order) - 0.5)
        else:
            xs = [float(v) for v in values]
            if log:
                ax.set_xscale("log")
        ax.scatter(xs, vals, color="tab:blue", alpha=0.55, edgecolors="#234", linewidths=0.4, s=28, zorder=3,
                   label="completed trial")
        if base_val is not None:
            ax.axhline(base_val, color="tab:orange", ls=":", lw=1.5, zorder=2, label="in-study baseline (val)")
            bx = base["params"].get(name)
            if bx is not None:
                bx = pos.get(bx) if categorical else float(bx)
                if bx is not None:
                    ax.scatter([bx], [base_val], marker="*", s=190, color="tab:orange", edgecolors="black",
                               linewidths=0.6, zorder=5, label="in-study baseline")
        viz._zoom(ax, [*vals, base_val if base_val is not None else math.nan], xs=xs, ys=vals)
        ax.set_title(name, fontsize=SLICE_FONT_PT + 1)
        ax.set_ylabel("validation accuracy", fontsize=SLICE_FONT_PT)
        ax.tick_params(labelsize=SLICE_FONT_PT)
        ax.grid(alpha=0.3)
    for ax in axes.ravel()[len(names):]:
        ax.axis("off")
    handles, labels = axes.ravel()[0].get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=len(handles),
                   fontsize=SLICE_FONT_PT, frameon=False)
    return fig


def slices_section(d: ReportData) -> Section:
    """Validation accuracy against each searched choice that took values, two a row."""
    done = d.completed
    names = [n for n in d.param_columns if done[n].notna().any()]
    if not names:
        return Section("Slices: validation accuracy against each choice",
                       p("No searched parameter has completed values.", "missing"), "slices")
    tops = []
    for name in names:
        top = done[[name, "val acc"]].dropna().sort_values("val acc").iloc[-1]
        tops.append(f"{name} {top[name]!s}")
    alt = ("Validation accuracy of each completed trial against each choice, two a row; the best trial took "
           + ", ".join(tops) + "; the orange star is the in-study baseline")
    return Section("Slices: validation accuracy against each choice", img(viz.data_uri(draw_slices(d, names)), alt),
                   "slices")


def parallel_section(d: ReportData) -> Section:
    """Optuna's parallel-coordinate plot of the most important choices, the in-study baseline in orange."""
    import optuna
    from optuna.visualization.matplotlib import plot_parallel_coordinate

    title = "Parallel coordinates: every completed trial across the choices"
    done = d.completed
    names = [n for n in _ordered(d) if done[n].nunique() >= 2][:PARALLEL_DIMENSIONS]
    if len(names) < 2 or len(done) < 2:
        return Section(title, p("Fewer than two explored choices or completed trials: nothing to connect.",
                                "missing"), "parallel")
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "experimental" in Optuna's matplotlib backend
            ax = plot_parallel_coordinate(d.study, params=names, target_name="validation accuracy",
                                          target=lambda t: t.user_attrs.get("val_accuracy", float("nan")))
    finally:
        optuna.logging.set_verbosity(verbosity)
    fig = ax.figure
    fig.set_size_inches(12, 4.6)
    ax.set_title("")
    base_val = d.baseline["val_accuracy"] if d.baseline else None
    marked = False
    for coll in ax.collections:  # the trials' LineCollection: the first column of each line is its objective
        for seg in getattr(coll, "get_segments", lambda: [])():
            if base_val is not None and len(seg) and math.isclose(seg[0][1], base_val, rel_tol=0, abs_tol=1e-12):
                ax.plot(seg[:, 0], seg[:, 1], color="tab:orange", lw=3, zorder=10,
                        label=None if marked else "in-study baseline")
                marked = True
    if marked:
        ax.legend(loc="lower left", bbox_to_anchor=(0, 1.02), frameon=False, fontsize=9)
    alt = (f"Parallel coordinates of {plural(len(done), 'completed trial')} over {', '.join(names)}; darker"
           " lines scored higher validation accuracy" + ("; the baseline is the orange line" if marked else ""))
    return Section(title, img(viz.data_uri(fig), alt), "parallel")


def _ordered(d: ReportData) -> list[str]:
    """Searched dimensions, the most important first (fANOVA mean), then the rest in name order."""
    imp = d.importance
    ranked = [x.name for x in imp.dimensions if x.fanova] if imp is not None and imp.ranked else []
    return ranked + [n for n in d.param_columns if n not in ranked]


def learning_curves_section(d: ReportData) -> Section:
    """Validation accuracy by epoch of the top 5 trials beside the baseline's."""
    h = d.histories
    top = d.completed.sort_values("val acc", ascending=False)["trial"].tolist()[:5]
    curves: dict[str, list[float]] = {}
    base_key = None
    if d.baseline and d.baseline["number"] in h:
        base_key = f"baseline (#{d.baseline['number']})"
        curves[base_key] = h[d.baseline["number"]]
    for n in top:
        if n in h and (d.baseline is None or n != d.baseline["number"]):
            curves[f"trial {n}"] = h[n]
    if not curves:
        return Section("Learning curves", p("No per-epoch history was recorded.", "missing"), "curves")
    alt = (f"Validation accuracy by epoch of {plural(len(curves), 'trial')}: the top trials and, dashed orange,"
           " the in-study baseline")
    return Section("Learning curves", img(viz.data_uri(viz.draw_learning_curves(curves, base_key)), alt), "curves")


def figure_sections(d: ReportData) -> list[Section]:
    """History, size, importance, effects, slices, parallel coordinates, learning curves."""
    if d.completed.empty:
        msg = p("No trial has completed, so there is nothing to plot yet.", "missing")
        return [Section("Figures", msg, "figures"), importance_section(d)]
    return [history_section(d), pareto_section(d), importance_section(d), effects_section(d), slices_section(d),
            parallel_section(d), learning_curves_section(d)]


__all__ = ["figure_sections", "effects_section", "history_section", "importance_section", "learning_curves_section",
           "parallel_section", "pareto_section", "slice_points", "slices_section"]
