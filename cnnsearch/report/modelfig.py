"""The model figures section: the best model beside the baseline (filters, feature maps, confusion, mistakes).

The arrays come from :mod:`cnnsearch.report.models`; here they are only drawn (the confusion
matrix with :func:`cnnsearch.model.viz.draw_confusion`, as the baseline's figures are). Filters, feature
maps and mistakes are drawn as one mosaic image per panel (each tile scaled to its own range, white
gutters) rather than one matplotlib axes per tile: the ~420 axes of two models' panels took most
of a report's time (issue 24).
"""

from __future__ import annotations

import html
from typing import Any

import numpy as np

from cnnsearch.model import viz
from cnnsearch.report.markup import Section, img, p
from cnnsearch.report.models import ModelPanel, Models


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")  # files only; never needs a display
    import matplotlib.pyplot as plt

    return plt


def mosaic(tiles: np.ndarray, cols: int, gutter: int = 1, below: int = 0) -> np.ndarray:
    """Tiles (n, h, w) in rows of ``cols``, each scaled to [0, 1] by its own range; gutters are NaN (drawn white).

    ``below`` adds that many NaN rows under each tile row (room for a label).
    """
    n, h, w = tiles.shape[:3]
    colour = tiles.ndim == 4 and tiles.shape[3] == 3  # RGB first-layer filters (issue 23): drawn in colour
    depth = (3,) if colour else ()
    rows = max(1, -(-n // cols))
    out = np.full((rows * (h + gutter + below), cols * (w + gutter), *depth), np.nan, dtype=np.float32)
    for i in range(n):
        t = np.asarray(tiles[i], dtype=np.float32).reshape(h, w, *depth)
        lo, hi = float(np.nanmin(t)), float(np.nanmax(t))
        r, c = divmod(i, cols)
        y, x = r * (h + gutter + below), c * (w + gutter)
        out[y:y + h, x:x + w] = (t - lo) / (hi - lo) if hi > lo else 0.5
    return out


def _show(ax: Any, image: np.ndarray, title: str = "", fontsize: float = 9) -> None:
    import matplotlib

    if image.ndim == 3:  # colour: gutters (NaN) white
        ax.imshow(np.where(np.isnan(image), 1.0, image), interpolation="nearest")
    else:
        cmap = matplotlib.colormaps["gray"].with_extremes(bad="white")
        ax.imshow(np.ma.masked_invalid(image), cmap=cmap, interpolation="nearest", vmin=0, vmax=1)
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(False)
    if title:
        ax.set_title(title, fontsize=fontsize)


def draw_filters(filters: np.ndarray, title: str) -> Any:
    """Filters (n, k, k), or colour patches (n, k, k, 3), as one mosaic, 8 a row."""
    plt = _pyplot()
    rows = max(1, -(-len(filters) // 8))
    fig, ax = plt.subplots(figsize=(viz.MODEL_FIGURE_WIDTH, viz.MODEL_FIGURE_WIDTH * rows / 8 + 0.45))
    _show(ax, mosaic(filters, 8), title, 10)
    return fig


def _maps(maps: np.ndarray, n: int) -> np.ndarray:
    return np.moveaxis(maps[..., :n], -1, 0)  # (h, w, c) -> (c, h, w)


def draw_digit_maps(digit: np.ndarray, maps1: np.ndarray, maps_last: np.ndarray, *, title: str = "") -> Any:
    """One test digit, 16 first-layer maps (2x8) and 32 of the last conv layer's maps (4x8)."""
    plt = _pyplot()
    w = viz.MODEL_FIGURE_WIDTH
    fig = plt.figure(figsize=(w, w * 0.95))
    grid = fig.add_gridspec(3, 1, height_ratios=[1.2, 2, 4], hspace=0.3)
    _show(fig.add_subplot(grid[0]), mosaic(np.squeeze(digit)[None], 1), "input", 9)
    n1, n2 = min(16, maps1.shape[-1]), min(32, maps_last.shape[-1])
    _show(fig.add_subplot(grid[1]), mosaic(_maps(maps1, n1), 8), f"first conv layer: maps 0-{n1 - 1}", 9)
    _show(fig.add_subplot(grid[2]), mosaic(_maps(maps_last, n2), 8), f"last conv layer: maps 0-{n2 - 1}", 9)
    if title:
        fig.suptitle(title, fontsize=10)
    return fig


def draw_mistakes(images: np.ndarray, labels: list[str], *, title: str = "") -> Any:
    """The most confidently wrong digits, 4 a row, each labelled "#index: true→predicted (p)" under it."""
    plt = _pyplot()
    tiles = np.asarray(images)
    if tiles.ndim == 4 and tiles.shape[-1] == 1:  # grayscale (n, h, w, 1); colour (n, h, w, 3) stays colour
        tiles = tiles[..., 0]
    if not len(tiles):
        fig, ax = plt.subplots(figsize=(viz.MODEL_FIGURE_WIDTH, 0.8))
        ax.axis("off")
        ax.text(0.5, 0.5, "no wrong predictions among these test images", ha="center", va="center")
        return fig
    h, w = tiles.shape[1:3]
    below = max(4, h // 3)
    rows = max(1, -(-len(tiles) // 4))
    width = viz.MODEL_FIGURE_WIDTH
    fig, ax = plt.subplots(figsize=(width, width * rows * (h + below) / (4 * w) + 0.5))
    _show(ax, mosaic(tiles, 4, gutter=1, below=below), title, 10)
    for i, label in enumerate(labels):
        r, c = divmod(i, 4)
        ax.text(c * (w + 1) + w / 2, r * (h + 1 + below) + h + below / 2, label, ha="center", va="center", fontsize=9)
    return fig


def _panel_html(m: ModelPanel) -> str:
    rec, lab = m.record, m.label
    n_f1 = len(m.filters1)
    parts = [f"<h3>{html.escape(lab)}: trial #{rec['number']}, {rec['param_count']:,} parameters</h3>",
             img(viz.data_uri(draw_filters(m.filters1, f"{lab}: first-layer filters")),
                 f"The {lab} model's {n_f1} first-layer filters as grey 3x3 (or larger) patches")]
    if m.filters2 is not None:
        parts.append(img(viz.data_uri(draw_filters(m.filters2, f"{lab}: second-layer filters, input channel 0")),
                         f"The {lab} model's second-layer filters for input channel 0"))
    for idx, image, m1, m2 in m.digits:
        parts.append(img(viz.data_uri(draw_digit_maps(image, m1, m2, title=f"{lab}: test digit #{idx}")),
                         f"Test digit #{idx} and the {lab} model's first- and last-conv-layer feature maps of it"))
    wrong = int(m.confusion.sum() - np.trace(m.confusion))
    parts.append(img(viz.data_uri(viz.draw_confusion(m.confusion, title=f"{lab}: confusion matrix, first {m.sample:,}"
                                                                    f" test images ({m.accuracy:.4f} correct)")),
                     f"Confusion matrix of the {lab} model on the first {m.sample:,} test images: {wrong} of them"
                     " misclassified"))
    parts.append(img(viz.data_uri(draw_mistakes(m.mistakes, m.mistake_labels,
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


__all__ = ["draw_digit_maps", "draw_filters", "draw_mistakes", "model_section", "mosaic"]
