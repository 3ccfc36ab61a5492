"""The model figures section: the best model beside the baseline (filters, feature maps, confusion, mistakes).

The arrays come from :mod:`cnnsearch.report.models`; here they are only drawn. The confusion
matrix is drawn here (not with :func:`cnnsearch.model.viz.draw_confusion`) so that every cell's
count, a zero on the diagonal included, is readable against its own background.
"""

from __future__ import annotations

import html
from typing import Any

import numpy as np

from cnnsearch.model import viz
from cnnsearch.report.markup import Section, img, p
from cnnsearch.report.models import ModelPanel, Models


def draw_confusion(matrix: np.ndarray, *, title: str = "") -> Any:
    """Confusion matrix with counts; each count dark on a light cell and white on a dark one."""
    import matplotlib

    matplotlib.use("Agg")  # files only; never needs a display
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(viz.MODEL_FIGURE_WIDTH, viz.MODEL_FIGURE_WIDTH * 0.9))
    shade = np.log1p(matrix)
    top = float(shade.max()) or 1.0
    ax.imshow(shade, cmap="Blues", vmin=0, vmax=top)
    for i in range(matrix.shape[0]):
        for j in range(matrix.shape[1]):
            dark = shade[i, j] / top > 0.55  # Blues is dark above about half its range
            ax.text(j, i, str(matrix[i, j]), ha="center", va="center", fontsize=viz.MIN_FONT_PT + 1,
                    color="white" if dark else "black", fontweight="bold" if i == j else "normal")
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_xticks(range(matrix.shape[1]))
    ax.set_yticks(range(matrix.shape[0]))
    ax.set_title(title or "confusion matrix (test set)", fontsize=10)
    return fig


def _panel_html(m: ModelPanel) -> str:
    rec, lab = m.record, m.label
    n_f1 = len(m.filters1)
    parts = [f"<h3>{html.escape(lab)}: trial #{rec['number']}, {rec['param_count']:,} parameters</h3>",
             img(viz.data_uri(viz.draw_filters(m.filters1, f"{lab}: first-layer filters")),
                 f"The {lab} model's {n_f1} first-layer filters as grey 3x3 (or larger) patches")]
    if m.filters2 is not None:
        parts.append(img(viz.data_uri(viz.draw_filters(m.filters2, f"{lab}: second-layer filters, input channel 0")),
                         f"The {lab} model's second-layer filters for input channel 0"))
    for idx, image, m1, m2 in m.digits:
        parts.append(img(viz.data_uri(viz.draw_digit_maps(image, m1, m2, title=f"{lab}: test digit #{idx}")),
                         f"Test digit #{idx} and the {lab} model's first- and last-conv-layer feature maps of it"))
    wrong = int(m.confusion.sum() - np.trace(m.confusion))
    parts.append(img(viz.data_uri(draw_confusion(m.confusion, title=f"{lab}: confusion matrix, first {m.sample:,}"
                                                                    f" test images ({m.accuracy:.4f} correct)")),
                     f"Confusion matrix of the {lab} model on the first {m.sample:,} test images: {wrong} of them"
                     " misclassified"))
    parts.append(img(viz.data_uri(viz.draw_mistakes(m.mistakes, m.mistake_labels,
                                                    title=f"{lab}: most confidently wrong test digits")),
                     f"The {len(m.mistake_labels)} test digits the {lab} model got wrong with the most confidence,"
                     " each labelled true→predicted"))
    return "<div class='col'>" + "\n".join(parts) + "</div>"


def model_section(m: Models) -> Section:
    """Draw the model panels side by side, folded away."""
    title = "What the filters learned: the best model beside the baseline"
    if m.missing:
        return Section(title, p(m.missing, "missing"), "model")
    note = p(m.note, "answer") if m.note else ""
    sample = m.panels[0].sample if m.panels else 0
    return Section(title, note + "<details><summary>Filters, feature maps of test digits "
                   + ", ".join(str(i) for i in viz.REFERENCE_DIGITS) + ", confusion matrices and the most"
                   f" confidently wrong digits (of the first {sample:,} test images)</summary><div class='cols'>"
                   + "".join(_panel_html(x) for x in m.panels) + "</div></details>", "model")


__all__ = ["draw_confusion", "model_section"]
