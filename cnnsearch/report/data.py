"""The numbers a report shows, computed before any drawing: trials, baselines, importance, confirmation, effects.

:func:`compute` reads a study (no TensorFlow, no drawing); :mod:`cnnsearch.report.models`
turns the kept weights and the test images into arrays. :mod:`cnnsearch.report.page` renders both.

One rule for the published 99.15% (:func:`reference_applies`): a number against it
appears only where the fidelity is the reference's (20 epochs on all training images)
and the data are MNIST-shaped (the in-study baseline has the reference's 1,199,882
parameters: 28x28 grey images, 10 classes). Elsewhere the cell, column, line and
sentence are absent, never "not possible".
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable

import pandas as pd

from cnnsearch.evidence import confirm as confirm_mod
from cnnsearch.evidence import importance as importance_mod
from cnnsearch.ground.describe import choices
from cnnsearch.model.arch import REFERENCE as REFERENCE_RUN
from cnnsearch.search import browse as records_mod
from cnnsearch.search import study as study_mod
from cnnsearch.records.storage import mask_url

REFERENCE = confirm_mod.REFERENCE_ACCURACY
#: The trial table's column against the published figure (present only where :func:`reference_applies`).
VS_REFERENCE = f"test − {REFERENCE:.2%} (pp)"
#: Columns shown first in the trial table: state beside the number, then the comparisons.
LEAD_COLUMNS = ["trial", "state", "role", "val acc", "val − baseline (pp)", "test acc", "test − baseline (pp)",
                VS_REFERENCE, "params"]
#: Columns after the searched parameters.
TAIL_COLUMNS = ["choices", "FLOPs", "epochs", "seconds", "reason"]
#: A float dimension with more distinct values than this is binned (quartiles) in the effect table.
EFFECT_BINS_OVER = 6


@dataclass
class ReportData:
    """Everything the report shows, computed before any drawing."""

    name: str
    url: str
    settings: dict[str, Any]
    counts: dict[str, int]
    table: pd.DataFrame  # one row per trial, best validation accuracy first
    baseline: dict[str, Any] | None
    best: dict[str, Any] | None
    importance: importance_mod.Importance | None = None
    confirm: dict[str, Any] = field(default_factory=dict)
    histories: dict[int, list[float]] = field(default_factory=dict)  # val accuracy by epoch, per trial
    study: Any = None  # the optuna.Study, for Optuna's own slice and parallel-coordinate plots
    reference_ok: bool = False  # the published 99.15% may be shown (see reference_applies)
    ablation: dict[str, Any] | None = None  # the stored ablation's summary (evidence.ablate.show), if any
    storage: str = field(default="", repr=False)  # the unmasked storage URL: read from, never rendered
    mnist: bool = True  # the study's data are MNIST (by sha256; unknown data count as MNIST until a run)
    frontier_files: tuple[Any, ...] = ()  # committed confirmation JSONs of other storages' studies (frontier)

    @property
    def param_columns(self) -> list[str]:
        """The searched dimensions, as columns of :attr:`table`."""
        return [c for c in self.table.columns if c not in LEAD_COLUMNS and c not in TAIL_COLUMNS]

    @property
    def completed(self) -> pd.DataFrame:
        """The trained, completed trials (validation accuracy known), by trial number."""
        t = self.table
        return t[(t["state"] == "COMPLETE") & t["val acc"].notna()].sort_values("trial")


def reference_applies(epochs: int, train_limit: int, baseline_params: int | None) -> bool:
    """True where a number against the published 99.15% means something: the reference's fidelity
    (20 epochs, all training images) and MNIST-shaped data (the baseline has the reference's parameter count)."""
    return (epochs == REFERENCE_RUN.epochs and train_limit == 0
            and baseline_params is not None and baseline_params == REFERENCE_RUN.params)


def compute(name: str, url: str | None = None, *, on_loaded: Callable[[], None] | None = None
            ) -> tuple[ReportData, study_mod.Handle]:
    """Gather the study's numbers (no drawing, no TensorFlow).

    ``on_loaded`` is called once the study has opened, before the slow part (importance):
    progress says what is being computed only when there is something to compute, so a bad
    study name or storage stays one error line.
    """
    h = study_mod.load(name, url)
    if on_loaded is not None:
        on_loaded()
    records = [records_mod.trial_record(t) for t in h.study.get_trials(deepcopy=False)]
    # A trained baseline: in a size-limited study an unbuildable one ends infeasible, untrained, without accuracy.
    base = next((r for r in records if r["baseline"] and r["state"] == "COMPLETE" and r["val_accuracy"] is not None),
                None)
    best_t = study_mod.best_trial(h.study)
    best = next((r for r in records if best_t is not None and r["number"] == best_t.number), None)
    settings = study_mod.settings_of(h.study) or {}
    t = settings.get("training", {})
    base_params = base["param_count"] if base else None
    from cnnsearch.ground import provenance

    mnist = provenance.is_mnist(h.study)  # issue 23: the published 99.15% is MNIST's only
    search_ok = mnist and reference_applies(int(t.get("epochs", 0)), int(t.get("train_limit", 0)), base_params)
    data = ReportData(name=name, url=mask_url(h.url), settings=settings,
                      counts=study_mod.counts(h.study), table=trial_table(records, base, search_ok), baseline=base,
                      best=best, histories={r["number"]: r["history"]["val_accuracy"] for r in records
                                            if r["history"] and r["history"].get("val_accuracy")}, study=h.study,
                      reference_ok=search_ok, mnist=mnist)
    data.importance = importance_mod.compute(h.study)
    data.storage = h.url
    data.ablation = _ablation(name, h.url)
    data.confirm = confirm_mod.summarize(confirm_mod.stored(h.study), search=confirm_mod.search_scores(h))
    return data, h


def _ablation(name: str, url: str) -> dict[str, Any] | None:
    """The study's stored ablation, judged (reads only); None without one or when its records cannot be read."""
    import warnings

    from cnnsearch.evidence import ablate

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a skipped corrupt record is said by confirm --show, not here
            return ablate.show(name, url)
    except Exception:  # an unreadable ablation leaves the report with importance (observational) only
        return None


def confirm_reference_ok(d: ReportData) -> bool:
    """The confirmation's comparison with 99.15% may be shown: its fidelity is the reference's, data MNIST-shaped."""
    c = d.confirm
    fid = c.get("fidelity")
    if not d.mnist or not fid or not c.get("reference", {}).get("comparable"):
        return False
    base = next((r for r in c.get("configs", []) if r.get("config") == "baseline"), None)
    count = base["param_count"] if base else (d.baseline or {}).get("param_count")
    return reference_applies(int(fid["epochs"]), int(fid["train_limit"]), count)


def trial_table(records: list[dict[str, Any]], base: dict[str, Any] | None, with_reference: bool = False
                ) -> pd.DataFrame:
    """One row per trial, best validation accuracy first: state, the comparisons, every parameter, the choices."""
    names = sorted({k for r in records for k in r["params"]})
    rows = []
    for r in records:
        val, test = r["val_accuracy"], r["test_accuracy"]
        row: dict[str, Any] = {
            "trial": r["number"], "state": "INFEASIBLE" if r.get("infeasible") else r["state"],
            "role": "baseline" if r["baseline"] else "", "val acc": val,
            "val − baseline (pp)": None if val is None or base is None else 100 * (val - base["val_accuracy"]),
            "test acc": test,
            "test − baseline (pp)": None if test is None or base is None else 100 * (test - base["test_accuracy"]),
            VS_REFERENCE: None if test is None else 100 * (test - REFERENCE), "params": r["param_count"],
        }
        row.update({n: r["params"].get(n) for n in names})
        # An infeasible trial is COMPLETE to Optuna but was never trained: say so, with why.
        row.update({"choices": choices(r["spec"], r["params"]) if r["spec"] or r["params"] else "",
                    "FLOPs": r["flops"], "epochs": r["epochs_run"], "seconds": r["seconds"],
                    "reason": r["fail_reason"] or r.get("infeasible") or ("pruned" if r["state"] == "PRUNED" else "")})
        rows.append(row)
    columns = [c for c in LEAD_COLUMNS if with_reference or c != VS_REFERENCE]
    df = pd.DataFrame(rows, columns=[*columns, *names, *TAIL_COLUMNS])
    return df.sort_values(["val acc", "trial"], ascending=[False, True], na_position="last", kind="stable",
                          ignore_index=True)


@dataclass
class Effect:
    """Validation accuracy of the completed trials that took one value (or bin) of one choice."""

    dimension: str
    value: str
    n: int
    mean: float
    median: float
    best: bool = False  # the highest mean of its dimension (among values with n >= 2 when there are any)


def effects(d: ReportData) -> list[Effect]:
    """The per-choice effect table: mean and median validation accuracy per value, with n (observational).

    Floats with many distinct values (learning rates, dropout on a fine step) are binned into quartiles.
    """
    done = d.completed
    out: list[Effect] = []
    for name in d.param_columns:
        col = done[[name, "val acc"]].dropna()
        if col[name].nunique() < 2:
            continue
        key = col[name]
        if key.dtype.kind == "f" and key.nunique() > EFFECT_BINS_OVER:
            key = pd.qcut(key, 4, duplicates="drop").astype(str)
        else:
            key = key.map(_display_value)
        groups = col.groupby(key, sort=False)["val acc"]
        rows = [Effect(name, str(v), int(g.size), float(g.mean()), float(g.median())) for v, g in groups]
        rows.sort(key=lambda e: _sort_key(e.value))
        pool = [e for e in rows if e.n >= 2] or rows
        top = max(pool, key=lambda e: e.mean)
        top.best = True
        out.extend(rows)
    return out


def _display_value(v: Any) -> str:
    """A searched value as shown: 0.15000000000000002 (a float step's rounding) as 0.15, 4.0 as 4."""
    if isinstance(v, float):
        return f"{round(v, 6):g}" if math.isfinite(v) else str(v)
    return str(v)


def _sort_key(text: str) -> tuple[int, float, str]:
    head = text.lstrip("([").split(",")[0]
    try:
        return (0, float(head), text)
    except ValueError:
        return (1, 0.0, text)


def best_value(d: ReportData, name: str) -> Effect | None:
    """The value of ``name`` with the highest mean validation accuracy (the direction of a choice)."""
    return next((e for e in effects(d) if e.dimension == name and e.best), None)


__all__ = ["Effect", "LEAD_COLUMNS", "REFERENCE", "ReportData", "TAIL_COLUMNS", "VS_REFERENCE", "best_value",
           "compute", "confirm_reference_ok", "effects", "reference_applies", "trial_table"]
