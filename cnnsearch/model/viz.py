"""Figures: compute plain arrays first, then draw them (after optuna's ``visualization``).

The compute functions (``filters``, ``confusion``, ...) return NumPy arrays that
tests check; the ``draw_*`` functions only draw what they are given and write a
PNG. Nothing here imports Keras: the model's own outputs (feature maps, class
probabilities) come from :mod:`cnnsearch.model.forward`.
"""

from __future__ import annotations

import math
import os
import warnings
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from cnnsearch.ground.output import replacing
from cnnsearch.model.patches import channel_words, filters  # noqa: F401  (re-exported: viz.filters, viz.channel_words)

from cnnsearch.model.arch import REFERENCE

#: The test digits the reference drew its per-digit feature maps for (a 7, a 0 and a 6).
REFERENCE_DIGITS = (0, 3, 11)

#: Dots per inch of saved PNGs: sharp enough to read a 3x3 filter's cells.
DPI = 110
#: Width (inches) of the per-model figures: the report shows two models side by side, about 620 px
#: each on a 1366 px screen, so at DPI 110 they display at (nearly) natural size and a 7-point
#: label stays about 10 px tall (at least 9 px, the readability floor).
MODEL_FIGURE_WIDTH = 5.6
#: Smallest font (points) on any figure: 7 pt at DPI 110 is 10.7 px at natural size.
MIN_FONT_PT = 7
#: Line colours for trials: tab10 without orange (the baseline's) and red (the reference's).
TRIAL_COLOURS = ("tab:blue", "tab:green", "tab:purple", "tab:brown", "tab:pink", "tab:gray", "tab:olive", "tab:cyan")


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")  # files only; never needs a display
    import matplotlib.pyplot as plt

    return plt


# --- compute -----------------------------------------------------------------------------------
# (the filters of a layer, in colour for RGB input: cnnsearch.model.patches, imported here)

def confusion(labels: np.ndarray, predicted: np.ndarray, n_classes: int) -> np.ndarray:
    """Confusion matrix: rows are true classes, columns predicted."""
    m = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(m, (labels, predicted), 1)
    return m


def confident_mistakes(labels: np.ndarray, proba: np.ndarray, k: int = 16) -> np.ndarray:
    """Indices of the ``k`` wrong predictions made with the highest confidence."""
    pred = proba.argmax(axis=1)
    wrong = np.flatnonzero(pred != labels)
    return wrong[np.argsort(-proba[wrong, pred[wrong]])][:k]


# --- draw: each returns a matplotlib Figure; save() or data_uri() renders it ---------------------

def draw_learning_curve(history: dict[str, list[float]], *, title: str = "") -> Any:
    """Loss and val_loss by epoch (left), accuracy and val_accuracy (right)."""
    plt = _plt()
    epochs = np.arange(1, len(history["loss"]) + 1)
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4))
    for ax, key, label in ((ax_loss, "loss", "loss"), (ax_acc, "accuracy", "accuracy")):
        if key in history:
            ax.plot(epochs, history[key], marker="o", label=f"training {label}")
        if f"val_{key}" in history:
            ax.plot(epochs, history[f"val_{key}"], marker="o", label=f"validation {label}")
        ax.set_xlabel("epoch")
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend()
    ax_loss.set_title("loss by epoch")
    ax_acc.set_title("accuracy by epoch")
    if title:
        fig.suptitle(title)
    return fig


def draw_grid(images: Sequence[np.ndarray] | np.ndarray, rows: int, cols: int, *, title: str = "",
              labels: Sequence[str] | None = None, cmap: str = "gray", width: float | None = None,
              fontsize: float = 8) -> Any:
    """Draw ``images`` (n, h, w) in a rows x cols grid, each scaled to its own range (``width`` in inches)."""
    plt = _plt()
    cell = (width / cols) if width else 1.3
    label_room = 0.25 if labels is not None else 0.0
    fig, axes = plt.subplots(rows, cols, figsize=(cols * cell, rows * (cell + label_room) + (0.5 if title else 0)),
                             squeeze=False)
    for i, ax in enumerate(np.atleast_1d(axes).ravel()):
        ax.set_xticks([])
        ax.set_yticks([])
        if i < len(images):
            ax.imshow(np.squeeze(images[i]), cmap=cmap, interpolation="nearest")
            if labels is not None:
                ax.set_title(labels[i], fontsize=fontsize)
        else:
            ax.axis("off")
    if title:
        fig.suptitle(title, fontsize=10)
    return fig


def draw_filters(filters: np.ndarray, title: str) -> Any:
    """Learned filters (n, k, k) in rows of 8, sized for the report's model column."""
    return draw_grid(filters, max(1, -(-len(filters) // 8)), 8, title=title, width=MODEL_FIGURE_WIDTH, cmap="gray")


def draw_mistakes(images: np.ndarray, labels: Sequence[str], *, title: str = "") -> Any:
    """The most confidently wrong digits, 4 a row so each "#index: true→predicted (p)" label stays readable."""
    rows = max(1, -(-len(images) // 4))
    return draw_grid(images, rows, 4, title=title, labels=labels, width=MODEL_FIGURE_WIDTH, fontsize=9)


def draw_digits_with_maps(digits: Sequence[np.ndarray], maps1: Sequence[np.ndarray], maps2: Sequence[np.ndarray],
                          *, title: str = "") -> Any:
    """The reference's 6x8 grid: 16 digits (rows 1-2), their first-layer channel-0 maps
    (rows 3-4) and second-layer channel-0 maps (rows 5-6)."""
    n = min(16, len(digits))
    tiles = [*digits[:n], *maps1[:n], *maps2[:n]]
    labels = ([f"digit {i}" for i in range(n)] + [f"conv1 ch0 #{i}" for i in range(n)]
              + [f"conv2 ch0 #{i}" for i in range(n)])
    return draw_grid(tiles, 6, 8, title=title, labels=labels)


def draw_digit_maps(digit: np.ndarray, maps1: np.ndarray, maps2: np.ndarray, *, title: str = "") -> Any:
    """One digit, 16 first-layer maps (2x8) and 32 of the last conv layer's maps (4x8), as the reference drew them."""
    plt = _plt()
    w = MODEL_FIGURE_WIDTH
    fig = plt.figure(figsize=(w, w * 1.02))
    grid = fig.add_gridspec(7, 8, hspace=0.45, wspace=0.1)
    ax = fig.add_subplot(grid[0, 3:5])
    ax.imshow(np.squeeze(digit), cmap="gray")
    ax.set_title("input", fontsize=9)
    ax.axis("off")
    for row0, maps, n, name in ((1, maps1, 16, "conv1"), (3, maps2, 32, "conv2")):
        for i in range(min(n, maps.shape[-1])):
            a = fig.add_subplot(grid[row0 + i // 8, i % 8])
            a.imshow(maps[..., i], cmap="gray")
            a.set_title(f"{name}#{i}", fontsize=MIN_FONT_PT)
            a.axis("off")
    if title:
        fig.suptitle(title, fontsize=10)
    return fig


def draw_history(numbers: Sequence[int], values: Sequence[float], best_so_far: Sequence[float],
                 baseline_val: float | None, reference: float | None) -> Any:
    """Optimisation history: each trial's val accuracy, the best so far, and the baselines
    (``reference`` None: no published figure applies, e.g. data other than MNIST; no line)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(9, 4))
    ax.scatter(numbers, values, s=16, label="trial (validation accuracy)", color="tab:blue", alpha=0.7)
    ax.step(numbers, best_so_far, where="post", color="tab:green", label="best so far")
    if reference is not None:
        ax.axhline(reference, color="tab:red", ls="--",
                   label=f"reference {reference:.2%} (test, {REFERENCE.epochs} epochs)")
    if baseline_val is not None:
        ax.axhline(baseline_val, color="tab:orange", ls=":", label=f"in-study baseline {baseline_val:.2%} (val)")
    ax.set_xlabel("trial")
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.set_ylabel("validation accuracy")
    _zoom(ax, [*values, *([reference] if reference is not None else []),
               *([baseline_val] if baseline_val is not None else [])], xs=numbers, ys=values)
    ax.grid(alpha=0.3)
    _legend_outside(ax)
    ax.set_title("optimisation history")
    return fig


def pareto_front(params: Sequence[float], accuracy: Sequence[float]) -> list[int]:
    """Indices of the points no other point beats on both (fewer parameters, higher accuracy)."""
    order = sorted(range(len(params)), key=lambda i: (params[i], -accuracy[i]))
    front, best = [], -math.inf
    for i in order:
        if accuracy[i] > best:
            front.append(i)
            best = accuracy[i]
    return front


def draw_pareto(params: Sequence[float], accuracy: Sequence[float], front: Sequence[int],
                baseline: tuple[float, float] | None, reference: float | None) -> Any:
    """Validation accuracy against parameter count (log scale) with the Pareto front (``reference`` None: no line)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(9, 4.5))
    ax.scatter(params, accuracy, s=16, alpha=0.6, label="trial")
    fx = [params[i] for i in front]
    fy = [accuracy[i] for i in front]
    ax.plot(fx, fy, color="tab:green", marker="o", label="Pareto front")
    if baseline is not None:
        ax.scatter([baseline[0]], [baseline[1]], marker="*", s=220, color="tab:orange", zorder=5,
                   label="in-study baseline")
        ax.axvline(baseline[0] / 10, color="gray", ls=":", label="a tenth of the baseline's parameters")
    if reference is not None:
        ax.axhline(reference, color="tab:red", ls="--", label=f"reference {reference:.2%} (test)")
    ax.set_xscale("log")
    _count_ticks(ax.xaxis)
    ax.set_xlabel("parameters (log scale)")
    ax.set_ylabel("validation accuracy")
    _zoom(ax, [*accuracy, *([reference] if reference is not None else [])], xs=params, ys=accuracy)
    ax.grid(alpha=0.3, which="major")
    _legend_outside(ax)
    ax.set_title("accuracy against size")
    return fig


def draw_importance(names: Sequence[str], resamples: Sequence[Sequence[float]],
                    dashboard: Sequence[float | None], not_explored: Sequence[str] = ()) -> Any:
    """fANOVA share per dimension over resamples (bar = mean, line = ±1 sd, dots = each resample), and
    beside it the PED-ANOVA importance optuna-dashboard shows; not-explored dimensions named, not drawn."""
    from matplotlib.ticker import PercentFormatter

    plt = _plt()
    order = list(range(len(names)))[::-1]
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(10, 0.45 * len(names) + 1.6), sharey=True,
                                  gridspec_kw={"width_ratios": [3, 2]})
    ys = np.arange(len(order))
    means = [float(np.mean(resamples[i])) for i in order]
    sds = [float(np.std(resamples[i], ddof=1)) if len(resamples[i]) > 1 else 0.0 for i in order]
    ax.barh(ys, means, xerr=sds, color="tab:purple", alpha=0.75, error_kw={"lw": 1.5, "capsize": 3})
    for y, i in zip(ys, order):
        ax.scatter(resamples[i], np.full(len(resamples[i]), y) + 0.25, s=8, color="black", alpha=0.5, zorder=3)
    ax.set_yticks(ys, [names[i] for i in order])
    ax2.barh(ys, [dashboard[i] or 0.0 for i in order], color="tab:gray")
    for a, label, title in ((ax, f"fANOVA share of variance: mean ± sd over {len(resamples[0]) if resamples else 0}"
                             " resamples", "this report: fANOVA with its spread"),
                            (ax2, "PED-ANOVA importance", "optuna-dashboard's panel (PED-ANOVA)")):
        a.set(xlim=(0, 1), xlabel=label)
        a.set_title(title, fontsize=10)
        a.xaxis.set_major_formatter(PercentFormatter(1.0, decimals=0))
        a.grid(alpha=0.3, axis="x")
    if not_explored:
        fig.text(0.01, 0.01, "not explored (one value only, no evidence either way): " + ", ".join(not_explored),
                 fontsize=8, color="#8a5a00")
    return fig


def draw_slice(study: Any, name: str, baseline_x: Any, baseline_val: float | None) -> Any:
    """Optuna's own slice plot of one parameter (categorical choices on a categorical axis), with the
    in-study baseline drawn on top: its value as a star, its validation accuracy as a line."""
    import optuna
    from optuna.visualization.matplotlib import plot_slice

    plt = _plt()
    # Untrained (infeasible) trials have no validation accuracy: leaving them out is intended, so
    # Optuna's "omitted in visualization" line (one per trial and parameter) is not shown.
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    # plot_slice switches the global style to ggplot; keep that inside this figure.
    try:
        with plt.rc_context(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # plot_slice is "experimental" in Optuna's matplotlib backend
            ax = plot_slice(study, params=[name], target=lambda t: t.user_attrs.get("val_accuracy", float("nan")),
                            target_name="validation accuracy")
    finally:
        optuna.logging.set_verbosity(verbosity)
    ax = np.atleast_1d(ax).ravel()[0]
    fig = ax.figure
    fig.set_size_inches(4.2, 3.2)
    # Optuna always adds an "Infeasible Trial" scatter; only a size-limited study's baseline fills it.
    for c in ax.collections:
        if c.get_label() == "Infeasible Trial" and not len(c.get_offsets()):
            c.remove()
    mapping = getattr(ax.xaxis.get_units(), "_mapping", None)  # set when Optuna drew a categorical axis
    if baseline_val is not None:
        ax.axhline(baseline_val, color="tab:orange", ls=":", lw=1.5, zorder=4, label="baseline val")
        bx = baseline_x if mapping is None else mapping.get(repr(baseline_x))
        if bx is not None:
            ax.scatter([bx], [baseline_val], marker="*", s=170, color="tab:orange", edgecolors="black",
                       linewidths=0.6, zorder=5, label="in-study baseline")
    pts = [(float(x), float(y)) for c in ax.collections[:1] for x, y in c.get_offsets()]  # the trials' scatter
    _zoom(ax, [y for _, y in pts] + [baseline_val or math.nan], xs=[x for x, _ in pts], ys=[y for _, y in pts])
    for text in fig.findobj(match=lambda o: hasattr(o, "get_fontsize") and hasattr(o, "set_fontsize")):
        if text.get_fontsize() < 8:
            text.set_fontsize(8)
    ax.set_title(name, fontsize=10)
    ax.legend(fontsize=7, loc="lower left", bbox_to_anchor=(0, 1.08), ncol=2, frameon=False)
    return fig


def draw_learning_curves(curves: Mapping[str, Sequence[float]], baseline_key: str | None) -> Any:
    """Validation accuracy by epoch of several trials; the baseline's dashed."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(9, 4))
    colours = iter(TRIAL_COLOURS * (1 + len(curves) // len(TRIAL_COLOURS)))
    for key, vals in curves.items():
        style = ({"ls": "--", "color": "tab:orange", "lw": 2.5, "zorder": 4} if key == baseline_key
                 else {"color": next(colours)})
        ax.plot(range(1, len(vals) + 1), vals, marker="o", label=key, **style)
    ax.set_xlabel("epoch")
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.set_ylabel("validation accuracy")
    ax.grid(alpha=0.3)
    _legend_outside(ax)
    ax.set_title("learning curves: top trials and the baseline")
    return fig


def draw_confusion(matrix: np.ndarray, *, title: str = "") -> Any:
    """Confusion matrix with counts; each count dark on a light cell and white on a dark one (a zero stays visible)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(MODEL_FIGURE_WIDTH, MODEL_FIGURE_WIDTH * 0.9))
    shade = np.log1p(matrix)
    top = float(shade.max()) or 1.0
    ax.imshow(shade, cmap="Blues", vmin=0, vmax=top)
    for i in range(matrix.shape[0]):
        for j in range(matrix.shape[1]):
            dark = shade[i, j] / top > 0.55  # Blues is dark above about half its range
            ax.text(j, i, str(matrix[i, j]), ha="center", va="center", fontsize=MIN_FONT_PT + 1,
                    color="white" if dark else "black", fontweight="bold" if i == j else "normal")
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_xticks(range(matrix.shape[1]))
    ax.set_yticks(range(matrix.shape[0]))
    ax.set_title(title or "confusion matrix (test set)", fontsize=10)
    return fig


def _zoom(ax: Any, values: Sequence[float], *, xs: Sequence[float] | None = None,
          ys: Sequence[float] | None = None) -> int:
    """Accuracies crowd near 1: zoom on the upper part unless far-off points need the room.

    Points below the view (the worst tenth, failed-ish trials) are not silently lost: given ``xs``/``ys``,
    each is drawn as a grey triangle on the bottom edge and a note says how many (returned).
    """
    vals = sorted(v for v in values if v is not None and math.isfinite(v))
    if not vals:
        return 0
    lo = vals[len(vals) // 10]  # ignore the worst tenth (failed-ish trials) when choosing the view
    bottom = max(0.0, lo - 0.2 * (1 - lo) - 0.002)
    ax.set_ylim(bottom, min(1.0, vals[-1] + 0.1 * (1 - lo) + 0.001))
    if xs is None or ys is None:
        return 0
    below = [(x, y) for x, y in zip(xs, ys) if y is not None and math.isfinite(y) and y < bottom]
    if below:
        ax.scatter([x for x, _ in below], [bottom] * len(below), marker="v", s=40, color="gray", clip_on=False,
                   zorder=6, label=f"{len(below)} below the view")
        lowest = min(y for _, y in below)
        ax.annotate(f"▼ {len(below)} trial{'s' * (len(below) > 1)} below this view (lowest {lowest:.3f})",
                    xy=(0.01, 0.02), xycoords="axes fraction", fontsize=8, color="dimgray")
    return len(below)


def _legend_outside(ax: Any) -> None:
    """Legend to the right of the axes: it never covers a point."""
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)


def _count_ticks(axis: Any) -> None:
    """Readable ticks on a log axis of counts: 20k, 50k, 100k, 1M (no 10^5, no crowded minor labels)."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    axis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v / 1e6:g}M" if v >= 1e6 else
                                           f"{v / 1e3:g}k" if v >= 1e3 else f"{v:g}"))
    axis.set_minor_formatter(NullFormatter())


def _tight(fig: Any) -> None:
    # One axes has nothing to keep apart: bbox_inches="tight" fits it, without one more draw (issue 24: time).
    if len(fig.axes) > 1:
        with warnings.catch_warnings():  # gridspec and colour bars "not compatible"; the tight bbox crops them
            warnings.simplefilter("ignore", UserWarning)
            fig.tight_layout()


def save(fig: Any, path: str | os.PathLike[str]) -> Path:
    """Write ``fig`` as a PNG, atomically (a failed draw never leaves half a figure over a good one)."""
    plt = _plt()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _tight(fig)
    try:
        with replacing(path) as tmp:
            fig.savefig(tmp, dpi=DPI, bbox_inches="tight")  # keeps a legend drawn outside the axes
    finally:
        plt.close(fig)
    return path


def data_uri(fig: Any) -> str:
    """``fig`` as an inline PNG ``data:`` URI, for self-contained HTML."""
    import base64
    import io

    plt = _plt()
    buf = io.BytesIO()
    _tight(fig)
    fig.savefig(buf, format="png", dpi=DPI, bbox_inches="tight")
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()
