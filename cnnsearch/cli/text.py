"""Terminal text shared by the study commands: plural-correct counts, tidy values, plain tables, confirm's verdict.

Display only: nothing here changes what is stored.
"""

from __future__ import annotations

from typing import Any


def plural(n: int, word: str) -> str:
    """``1 trial``, ``2 trials``."""
    return f"{n:,} {word}{'' if n == 1 else 's'}"


def tidy(v: Any) -> Any:
    """A value for display: a float step's rounding (0.15000000000000002) as 0.15; 4.0 as 4."""
    if isinstance(v, float):
        r = float(f"{v:.12g}")
        return int(r) if r.is_integer() and abs(r) < 1e15 else r
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k} = {tidy(x)}" for k, x in v.items()) + "}"
    return v


def tidy_params(params: dict[str, Any] | None) -> dict[str, Any]:
    """Searched values for output (JSON too): a grid point stored as 0.15000000000000002 becomes 0.15.

    12 significant digits keep every value a space can draw (log-range learning rates included) and drop
    only the binary rounding of a float step.
    """
    return {k: float(f"{v:.12g}") if isinstance(v, float) else v for k, v in (params or {}).items()}


def _table(rows: list[list[str]], right: set[int] = frozenset()) -> list[str]:  # type: ignore[assignment]
    """Plain-text columns, two spaces apart; columns in ``right`` right-aligned."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return ["  ".join(c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths))).rstrip()
            for r in rows]


def confirm_lines(name: str, summary: dict[str, Any], url: str | None) -> list[str]:
    """`study confirm`'s verdict as a table, one sentence per candidate, then the answer in one sentence."""
    from cnnsearch.evidence import confirm as confirm_mod
    from cnnsearch.records.storage import DEFAULT_STORAGE, mask_url, resolve_storage
    from cnnsearch.report.data import reference_applies
    from cnnsearch.report.headline import headline

    rows = [["configuration", "trial", "parameters", "mean test accuracy", "seeds", "− baseline (pp), 95% interval",
             "Holm p", "verdict"]]
    for r in summary["configs"]:
        sd = "" if r["sd_test_accuracy"] is None else f" ± {r['sd_test_accuracy']:.4f}"
        ci = r.get("diff_ci95")
        diff = "" if "diff_mean" not in r else f"{100 * r['diff_mean']:+.2f}" + (
            "" if not ci or ci[0] is None or ci[1] is None else f" [{100 * ci[0]:+.2f}, {100 * ci[1]:+.2f}]")
        rows.append([r["config"], f"#{r['trial']}", f"{r['param_count']:,}", f"{r['mean_test_accuracy']:.4f}{sd}",
                     str(r["seeds"]), diff, "" if r.get("p_holm") is None else f"{r['p_holm']:.2g}",
                     r.get("verdict", "incomplete (no verdict)" if r.get("incomplete") else "")])
    fid = confirm_mod.Fidelity(**summary["fidelity"])
    out = [f"confirmation at {fid.describe()}, paired by training seed:", *_table(rows, right={1, 2, 4, 6})]
    cands = [r for r in summary["configs"] if r["config"] != "baseline" and r.get("paired_seeds")]
    out += [confirm_mod.candidate_sentence(r, len(cands)) for r in cands] or [confirm_mod.sentence(summary)]
    base = next((r for r in summary["configs"] if r["config"] == "baseline"), None)
    ref_ok = bool(summary["reference"]["comparable"]) and reference_applies(
        fid.epochs, fid.train_limit, base["param_count"] if base else None)
    if ref_ok:
        out.append(confirm_mod.reference_sentence(summary))
    if summary.get("rank_check"):
        out.append(summary["rank_check"]["sentence"])
    resolved = resolve_storage(url)
    storage = "" if resolved == DEFAULT_STORAGE else f" --storage {mask_url(resolved)}"
    out.append(headline(name, summary, reference_ok=ref_ok, storage=storage).text)
    return out


__all__ = ["confirm_lines", "plural", "tidy", "tidy_params"]
