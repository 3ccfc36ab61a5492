"""The best and baseline models' figures as arrays: filters, feature maps, confusion matrix, confident mistakes.

Computed from the kept weights with NumPy (:mod:`cnnsearch.model.forward`), never TensorFlow.
The forward pass over the test images was most of a report's time (63 s of a 3-minute run,
issue 24), so two things bound it:

- the confusion matrix and the confident mistakes use the first :data:`SAMPLE` test images
  (the figures say so; the trial's own test accuracy over all images is in the tables);
- the arrays of a kept model are cached beside its weights (:mod:`cnnsearch.model.figcache`):
  the search worker that keeps a new best writes them, so the report after ``study run`` reads
  them; a report computes only what no worker cached (a model of your own, an older study).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cnnsearch.ground.errors import CnnsearchError
from cnnsearch.model import figcache, viz
from cnnsearch.model.arch import ArchSpec, read_weights
from cnnsearch.model.figcache import SAMPLE
from cnnsearch.records.storage import artifact_dir
from cnnsearch.report.data import ReportData
from cnnsearch.search import study as study_mod
from cnnsearch.search.objective import model_file


@dataclass
class ModelPanel:
    """One model's figures as arrays: filters, feature maps, confusion matrix, confident mistakes."""

    label: str
    record: dict[str, Any]
    filters1: np.ndarray
    filters2: np.ndarray | None
    digits: list[tuple[int, np.ndarray, np.ndarray, np.ndarray]]  # (test index, image, conv1 maps, last maps)
    confusion: np.ndarray
    accuracy: float  # on the first `sample` test images
    mistakes: np.ndarray  # images of the most confidently wrong test digits
    mistake_labels: list[str]
    sample: int = SAMPLE  # test images the confusion matrix and mistakes are computed on
    cached: bool = False  # the arrays came from the cache beside the weights
    class_names: list[str] = field(default_factory=list)  # the confusion matrix's row and column labels


@dataclass
class Models:
    """The model panels (best, then baseline), or why they are missing."""

    panels: list[ModelPanel] = field(default_factory=list)
    missing: str = ""
    note: str = ""


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
    try:
        out = Models(panels=[panel(label, rec, path, ds) for label, rec, path in wanted])
    except CnnsearchError as exc:  # a model of your own that Keras cannot load or that has no conv layer
        return Models(missing=f"The model figures are left out: {exc}")
    if len(wanted) == 1:
        out.note = ("The in-study baseline is the best model so far: no trial has beaten it on validation."
                    if d.baseline is not None and d.baseline["number"] == d.best["number"] else
                    "The in-study baseline's weights were not kept, so only the best model is shown.")
    return out


def panel(label: str, rec: dict[str, Any], path: Path, ds: Any) -> ModelPanel:
    """One model's arrays: from the cache beside its weights when it matches, else computed and cached."""
    idx = figcache.digits(ds.x_test)
    n = min(SAMPLE, len(ds.y_test))
    names = list(ds.class_names) if getattr(ds, "class_names", None) else [str(k) for k in range(ds.n_classes)]
    key = figcache.key(path, ds.x_test)
    arrays = figcache.read(path, key)
    cached = arrays is not None
    if rec.get("spec") is None:  # a model of the user's own build(trial): only Keras can run its layers
        from cnnsearch.model import own

        weights, computed = own.figure_arrays(path, ds.x_test, idx, n, compute=arrays is None)
        arrays = arrays if arrays is not None else computed
    else:
        weights = read_weights(path)
        if arrays is None:
            arrays = figcache.compute(weights, ArchSpec.from_dict(rec["spec"]), ds.x_test)
    if not cached:
        figcache.write(path, key, arrays)
    proba, y = arrays["proba"], ds.y_test[:n]
    pred = proba.argmax(axis=1)
    wrong = viz.confident_mistakes(y, proba, 16)
    return ModelPanel(
        label=label, record=rec, filters1=viz.filters(weights, "conv1", limit=32),
        filters2=viz.filters(weights, "conv2", limit=32) if "conv2" in weights else None,
        digits=[(i, ds.x_test[i], arrays["maps1"][j], arrays["maps_last"][j]) for j, i in enumerate(idx)],
        confusion=viz.confusion(y, pred, ds.n_classes), accuracy=float((pred == y).mean()),
        mistakes=ds.x_test[:n][wrong],
        mistake_labels=[f"#{i}: {names[y[i]]}→{names[pred[i]]} ({proba[i, pred[i]]:.0%})" for i in wrong], sample=n, cached=cached,
        class_names=names)


__all__ = ["ModelPanel", "Models", "SAMPLE", "compute_models", "panel"]
