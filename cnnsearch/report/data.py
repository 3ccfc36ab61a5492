"""The numbers a report shows, computed before any drawing: trials, baselines, importance, confirmation, models.

:func:`compute` reads a study (no TensorFlow, no drawing); :func:`compute_models`
turns the kept weights and the test images into arrays (filters, feature maps,
confusion matrix, confident mistakes) with NumPy. :mod:`cnnsearch.report.page` renders both.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import pandas as pd

from cnnsearch.evidence import confirm as confirm_mod
from cnnsearch.evidence import importance as importance_mod
from cnnsearch.search import browse as records_mod
from cnnsearch.search import study as study_mod
from cnnsearch.model import forward
from cnnsearch.model import viz
from cnnsearch.model.arch import ArchSpec, read_weights
from cnnsearch.ground.errors import CnnsearchError
from cnnsearch.search.objective import model_file
from cnnsearch.records.storage import artifact_dir

REFERENCE = confirm_mod.REFERENCE_ACCURACY
#: Columns shown first in the trial table, so the comparisons fit a 1366 px screen without scrolling.
VS_REFERENCE = f"test − {REFERENCE:.2%} (pp)"
LEAD_COLUMNS = ["trial", "role", "val acc", "val − baseline (pp)", "test acc", "test − baseline (pp)",
                VS_REFERENCE, "params"]
#: Columns after the searched parameters.
TAIL_COLUMNS = ["FLOPs", "epochs", "seconds", "state", "reason"]


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
    study: Any = None  # the optuna.Study, for Optuna's own slice plots
    reference: float | None = REFERENCE  # the published 99.15%: only on MNIST (by sha256), None elsewhere


@dataclass
class ModelPanel:
    """One model's figures as arrays: filters, feature maps, confusion matrix, confident mistakes."""

    label: str
    record: dict[str, Any]
    filters1: np.ndarray
    filters2: np.ndarray | None
    digits: list[tuple[int, np.ndarray, np.ndarray, np.ndarray]]  # (test index, image, conv1 maps, last maps)
    confusion: np.ndarray
    accuracy: float
    mistakes: np.ndarray  # images of the most confidently wrong test digits
    mistake_labels: list[str]


@dataclass
class Models:
    """The model panels (best, then baseline), or why they are missing."""

    panels: list[ModelPanel] = field(default_factory=list)
    missing: str = ""
    note: str = ""


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
    from cnnsearch.ground import provenance

    reference = REFERENCE if provenance.is_mnist(h.study) else None  # unknown data (no run yet): as before, MNIST
    data = ReportData(name=name, url=h.url, settings=study_mod.settings_of(h.study) or {},
                      counts=study_mod.counts(h.study), table=trial_table(records, base, reference), baseline=base,
                      best=best, reference=reference,
                      histories={r["number"]: r["history"]["val_accuracy"] for r in records
                                 if r["history"] and r["history"].get("val_accuracy")}, study=h.study)
    data.importance = importance_mod.compute(h.study)
    data.confirm = confirm_mod.summarize(confirm_mod.stored(h.study), search=confirm_mod.search_scores(h))
    return data, h


def trial_table(records: list[dict[str, Any]], base: dict[str, Any] | None,
                reference: float | None = REFERENCE) -> pd.DataFrame:
    """One row per trial, best validation accuracy first: the comparisons, then every parameter.

    ``reference`` None (data other than MNIST): no column against the published 99.15%.
    """
    names = sorted({k for r in records for k in r["params"]})
    rows = []
    for r in records:
        val, test = r["val_accuracy"], r["test_accuracy"]
        row: dict[str, Any] = {
            "trial": r["number"], "role": "baseline" if r["baseline"] else "", "val acc": val,
            "val − baseline (pp)": None if val is None or base is None else 100 * (val - base["val_accuracy"]),
            "test acc": test,
            "test − baseline (pp)": None if test is None or base is None else 100 * (test - base["test_accuracy"]),
            VS_REFERENCE: None if test is None else 100 * (test - REFERENCE), "params": r["param_count"],
        }
        row.update({n: r["params"].get(n) for n in names})
        # An infeasible trial is COMPLETE to Optuna but was never trained: say so, with why.
        row.update({"FLOPs": r["flops"], "epochs": r["epochs_run"], "seconds": r["seconds"],
                    "state": "INFEASIBLE" if r.get("infeasible") else r["state"],
                    "reason": r["fail_reason"] or r.get("infeasible") or ("pruned" if r["state"] == "PRUNED" else "")})
        rows.append(row)
    lead = LEAD_COLUMNS if reference is not None else [c for c in LEAD_COLUMNS if c != VS_REFERENCE]
    df = pd.DataFrame(rows, columns=[*lead, *names, *TAIL_COLUMNS])
    return df.sort_values(["val acc", "trial"], ascending=[False, True], na_position="last", kind="stable",
                          ignore_index=True)


def compute_models(d: ReportData, h: study_mod.Handle, data_path: str | None) -> Models:
    """The best model's (and the baseline's) figures as arrays, from the kept weights and the test images."""
    if d.best is None:
        return Models(missing="No completed trial within the study's size limits: no model to show."
                      if d.baseline is not None else "No completed trial: no model to show.")
    try:
        best_file = model_file(h, "best")  # verified against the checksum stored with it
        base_file = model_file(h, "baseline")
    except CnnsearchError as exc:  # corrupt weights: the rest of the report stands
        return Models(missing=f"The model figures are left out: {exc}")
    if best_file is None:
        return Models(missing=f"The best trial's weights are not in the artifact store"
                              f" ({artifact_dir(h.url)});"
                              " run the study on this machine or point CNNSEARCH_ARTIFACTS at the shared folder.")
    try:
        from cnnsearch.ground import provenance

        # The data the study was trained on (remembered at its first run) unless --data says otherwise.
        ds = provenance.load(h.study, data_path, remember=False, download=False)
    except provenance.DataMismatch:
        raise  # other data than the study's: refused, not drawn around
    except CnnsearchError as exc:
        return Models(missing=f"The test images are needed to draw feature maps and the confusion matrix: {exc}")
    wanted = [("best", d.best, best_file)]
    if base_file is not None and d.baseline is not None and d.baseline["number"] != d.best["number"]:
        wanted.append(("baseline", d.baseline, base_file))
    out = Models()
    idx = [i for i in viz.REFERENCE_DIGITS if i < len(ds.x_test)]
    names = list(ds.class_names) if ds.class_names else [str(k) for k in range(ds.n_classes)]  # folder names
    for label, rec, path in wanted:
        spec = ArchSpec.from_dict(rec["spec"])
        weights = read_weights(path)
        layers = ("conv1", "conv2") if "conv2" in weights else ("conv1",)
        maps = forward.feature_maps(weights, spec, ds.x_test[idx], layers)
        proba = forward.predict_proba(weights, spec, ds.x_test)
        pred = proba.argmax(axis=1)
        wrong = viz.confident_mistakes(ds.y_test, proba, 16)
        out.panels.append(ModelPanel(
            label=label, record=rec, filters1=viz.filters(weights, "conv1", limit=32),
            filters2=viz.filters(weights, "conv2", limit=32) if "conv2" in weights else None,
            digits=[(i, ds.x_test[i], maps["conv1"][j], maps[layers[-1]][j]) for j, i in enumerate(idx)],
            confusion=viz.confusion(ds.y_test, pred, ds.n_classes), accuracy=float((pred == ds.y_test).mean()),
            mistakes=ds.x_test[wrong],
            mistake_labels=[f"#{i}: {names[ds.y_test[i]]}→{names[pred[i]]} ({proba[i, pred[i]]:.0%})"
                            for i in wrong]))
    if len(wanted) == 1:
        out.note = ("The in-study baseline is the best model so far: no trial has beaten it on validation."
                    if d.baseline is not None and d.baseline["number"] == d.best["number"] else
                    "The in-study baseline's weights were not kept, so only the best model is shown.")
    return out
