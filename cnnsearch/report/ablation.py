"""The report's ablation section: each change's effect with its interval, both directions side by side.

Compute, then draw: :func:`chart_data` turns an ablation summary
(:func:`cnnsearch.evidence.ablate.show`) into plain numbers, :func:`draw` draws
them, :func:`section_html` is the one function the page calls. :func:`mattered_statement`
is the answer's "which choices mattered", citing the ablation when there is one.
"""

from __future__ import annotations

import html
from typing import Any

from cnnsearch.evidence.confirm import Fidelity

#: The section's title and anchor, for the page.
TITLE = "Which choices mattered, by experiment: ablation"
ANCHOR = "ablation"
#: Bar colours: leave one out, add one in, and the winner's total (the reference bar).
COLOURS = {"leave_one_out": "tab:blue", "add_one_in": "tab:green", "total": "tab:gray"}
LABELS = {"leave_one_out": "leave one out (winner without it)", "add_one_in": "add one in (baseline with it)"}


def chart_data(s: dict[str, Any]) -> dict[str, Any]:
    """Bars in percentage points: ``rows`` (one per change and direction), ``total``; None effect = not drawn."""
    def pp(v: float | None) -> float | None:
        return None if v is None else 100 * v

    rows = []
    for r in s["changes"]:
        for d in ("leave_one_out", "add_one_in"):
            x = r[d]
            ci = x.get("ci95")
            rows.append({"change": r["name"], "direction": d, "effect": pp(x["effect"]),
                         "low": pp(ci[0]) if ci else None, "high": pp(ci[1]) if ci else None,
                         "verdict": x["verdict"], "note": "not run" if x["problem"] else
                         "same model" if x["same_model"] else "" if x["effect"] is not None else "no runs"})
    t = s["total"]
    ci = t.get("ci95")
    total = {"effect": pp(t["effect"]), "low": pp(ci[0]) if ci else None, "high": pp(ci[1]) if ci else None,
             "verdict": t["verdict"], "n": t["n"]}
    return {"rows": rows, "total": total, "changes": [r["name"] for r in s["changes"]]}


def draw(data: dict[str, Any]) -> Any:
    """Horizontal bars: per change, leave one out above add one in, with 95% intervals; the total on top."""
    import matplotlib

    matplotlib.use("Agg")  # files only
    import matplotlib.pyplot as plt

    names = data["changes"]
    fig, ax = plt.subplots(figsize=(8, 0.7 * len(names) + 1.8))
    y0 = len(names)
    t = data["total"]
    _bar(ax, y0, t, COLOURS["total"], "winner - baseline (total)")
    for i, name in enumerate(names):
        y = len(names) - 1 - i
        for d, dy in (("leave_one_out", 0.18), ("add_one_in", -0.18)):
            row = next(r for r in data["rows"] if r["change"] == name and r["direction"] == d)
            _bar(ax, y + dy, row, COLOURS[d], LABELS[d] if i == 0 else None, height=0.34)
    if t["effect"] is not None:
        ax.axvline(t["effect"], color=COLOURS["total"], ls="--", lw=1)
    ax.axvline(0, color="black", lw=0.8)
    ax.set_yticks(range(len(names) + 1), [*reversed(names), "total"])
    ax.set_xlabel("effect on test accuracy (pp; positive: the change raises it), 95% interval over paired seeds")
    ax.grid(alpha=0.3, axis="x")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.22), ncol=3, fontsize=8, frameon=False)
    return fig


def _bar(ax: Any, y: float, row: dict[str, Any], colour: str, label: str | None, height: float = 0.6) -> None:
    if row["effect"] is None:
        ax.text(0, y, f"  {row.get('note') or 'no runs'}", va="center", fontsize=8, color="#8a5a00")
        return
    err = None
    if row["low"] is not None:
        err = [[row["effect"] - row["low"]], [row["high"] - row["effect"]]]
    ax.barh(y, row["effect"], height=height, color=colour, alpha=0.8, xerr=err, label=label,
            error_kw={"lw": 1.2, "capsize": 3})
    if row.get("note"):
        ax.text(0, y, f"  {row['note']}", va="center", fontsize=8, color="#555")


def _cell(x: dict[str, Any]) -> str:
    if x["problem"]:
        return f"not run: {html.escape(x['problem'])}"
    if x["same_model"]:
        return "the same model (no effect)"
    if x["effect"] is None:
        return html.escape(x.get("reason") or "no paired runs yet")
    ci = x.get("ci95")
    interval = "" if ci is None else f" [{100 * ci[0]:+.2f}, {100 * ci[1]:+.2f}]"
    return f"{100 * x['effect']:+.2f} pp{interval} <b>{html.escape(x['verdict'])}</b>"


def section_html(name: str, s: dict[str, Any] | None) -> str:
    """The section's HTML: the statement, the chart, the table, interactions; or how to make one."""
    if s is None:
        return (f"<p class='missing'>No ablation yet: which choices carry the winner's gain is answered here by"
                f" experiment once you run <code>cnnsearch study ablate {html.escape(name)} --seeds 3</code>.</p>")
    from cnnsearch.model import viz

    fid = Fidelity(**s["fidelity"])
    rows = "".join(f"<tr><th>{html.escape(r['name'])}</th><td>{html.escape(r['text'])}</td>"
                   f"<td>{_cell(r['leave_one_out'])}</td><td>{_cell(r['add_one_in'])}</td></tr>" for r in s["changes"])
    table = ("<table><tr><th>change</th><th>baseline -> winner</th><th>leave one out (effect, 95% interval,"
             " verdict)</th><th>add one in</th></tr>" + rows + "</table>")
    img = viz.data_uri(draw(chart_data(s)))
    return (f"<p class='answer'>{html.escape(s['mattered'])}</p>"
            f"<img src='{img}' alt='ablation of trial {s['trial']}: each change&#39;s effect in both directions'>"
            f"<p>Trial {s['trial']} against the baseline at {html.escape(fid.describe())}, {s['total']['n']} paired"
            f" seeds; verdicts Holm-corrected over the changes of each direction.</p>" + table
            + f"<p>{html.escape(s['interaction']['sentence'])}</p>")


def mattered_statement(ablation: dict[str, Any] | None, importance_text: str) -> str:
    """The answer's "which choices mattered": the ablation's (experiment) when there is one, else importance's."""
    if ablation is not None:
        return ablation["mattered"]
    return f"Observational (from the search's own trials, no ablation yet): {importance_text}"


__all__ = ["ANCHOR", "TITLE", "chart_data", "draw", "mattered_statement", "section_html"]
