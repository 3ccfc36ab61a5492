"""Figures: compute plain arrays first, then draw them (after optuna's ``visualization``).

The ``filters`` / ``feature_maps`` functions return NumPy arrays that tests
check; the ``draw_*`` functions only draw what they are given and write a PNG.
Nothing here imports Keras: feature maps are computed from the conv weights by
:mod:`cnnsearch.im2col`, so drawing them needs only the weights.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from cnnsearch import im2col
from cnnsearch.arch import REFERENCE, ArchSpec, pool_after

#: The test digits the reference drew its per-digit feature maps for (a 7, a 0 and a 6).
REFERENCE_DIGITS = (0, 3, 11)

#: Dots per inch of saved PNGs: sharp enough to read a 3x3 filter's cells.
DPI = 110


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")  # files only; never needs a display
    import matplotlib.pyplot as plt

    return plt


# --- compute -----------------------------------------------------------------------------------

def filters(weights: Mapping[str, Sequence[np.ndarray]], layer: str = "conv1", *, in_channel: int = 0,
            limit: int = 32) -> np.ndarray:
    """The first ``limit`` filters of conv ``layer`` for one input channel, shape (n, k, k)."""
    kernel = np.asarray(weights[layer][0])
    return np.moveaxis(kernel[:, :, in_channel, :limit], -1, 0)


def conv_weights(model: Any) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Kernel and bias of every conv layer of a cnnsearch model: {"conv1": (w, b), ...}."""
    out = {}
    for layer in model.layers:
        if layer.name.startswith("conv"):
            w, b = layer.get_weights()
            out[layer.name] = (np.asarray(w), np.asarray(b))
    return out


def feature_maps(weights: Mapping[str, Sequence[np.ndarray]], spec: ArchSpec, images: np.ndarray,
                 layers: Sequence[str] = ("conv1", "conv2")) -> dict[str, np.ndarray]:
    """Activations (after ReLU) of conv ``layers`` for ``images`` (N, H, W, C), from stored weights.

    Computed with :mod:`cnnsearch.im2col` in bounded memory, so drawing feature
    maps needs no TensorFlow: only the weights. Pooling between conv layers
    follows ``spec`` (dropout is inactive at inference).
    """
    wanted = set(layers)
    maps: dict[str, np.ndarray] = {}
    z = np.asarray(images, dtype=np.float32)
    for i in range(len(spec.conv_filters)):
        name = f"conv{i + 1}"
        w, b = weights[name]
        z = im2col.relu(im2col.conv2d(z, w, b, spec.stride, spec.padding))
        if name in wanted:
            maps[name] = z
        if len(maps) == len(wanted):
            break
        if pool_after(spec, i):
            pool = im2col.max_pool2d if spec.pool == "max" else im2col.avg_pool2d
            z = pool(z, spec.pool_size)
    return maps


def predict_proba(weights: Mapping[str, Sequence[np.ndarray]], spec: ArchSpec, images: np.ndarray,
                  batch: int = 1000) -> np.ndarray:
    """Class probabilities of a trained spec for ``images``, computed in NumPy from its weights.

    The whole forward pass (conv + ReLU, pooling, dense + ReLU, softmax; dropout
    is inactive at inference), so a report can draw a confusion matrix without
    TensorFlow.
    """
    outs = []
    pool = im2col.max_pool2d if spec.pool == "max" else im2col.avg_pool2d
    for i in range(0, len(images), batch):
        z = np.asarray(images[i:i + batch], dtype=np.float32)
        for j in range(len(spec.conv_filters)):
            w, b = weights[f"conv{j + 1}"]
            z = im2col.relu(im2col.conv2d(z, w, b, spec.stride, spec.padding))
            if pool_after(spec, j):
                z = pool(z, spec.pool_size)
        z = z.reshape(len(z), -1)
        if spec.dense_units:
            w, b = weights["dense1"]
            z = np.maximum(z @ w + b, 0)
        w, b = weights["output"]
        logits = z @ w + b
        logits -= logits.max(axis=1, keepdims=True)
        e = np.exp(logits)
        outs.append(e / e.sum(axis=1, keepdims=True))
    return np.concatenate(outs) if outs else np.zeros((0, 0), np.float32)


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
              labels: Sequence[str] | None = None, cmap: str = "gray") -> Any:
    """Draw ``images`` (n, h, w) in a rows x cols grid, each scaled to its own range."""
    plt = _plt()
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 1.3, rows * 1.3 + (0.5 if title else 0)))
    for i, ax in enumerate(np.atleast_1d(axes).ravel()):
        ax.set_xticks([])
        ax.set_yticks([])
        if i < len(images):
            ax.imshow(np.squeeze(images[i]), cmap=cmap, interpolation="nearest")
            if labels is not None:
                ax.set_title(labels[i], fontsize=7)
        else:
            ax.axis("off")
    if title:
        fig.suptitle(title)
    return fig


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
    """One digit, 16 first-layer maps (2x8) and 32 second-layer maps (4x8), as the reference drew them."""
    plt = _plt()
    fig = plt.figure(figsize=(11, 10))
    grid = fig.add_gridspec(7, 8)
    ax = fig.add_subplot(grid[0, 3:5])
    ax.imshow(np.squeeze(digit), cmap="gray")
    ax.set_title("input")
    ax.axis("off")
    for i in range(min(16, maps1.shape[-1])):
        a = fig.add_subplot(grid[1 + i // 8, i % 8])
        a.imshow(maps1[..., i], cmap="gray")
        a.set_title(f"conv1 #{i}", fontsize=7)
        a.axis("off")
    for i in range(min(32, maps2.shape[-1])):
        a = fig.add_subplot(grid[3 + i // 8, i % 8])
        a.imshow(maps2[..., i], cmap="gray")
        a.set_title(f"conv2 #{i}", fontsize=7)
        a.axis("off")
    if title:
        fig.suptitle(title)
    return fig


def draw_history(numbers: Sequence[int], values: Sequence[float], best_so_far: Sequence[float],
                 baseline_val: float | None, reference: float) -> Any:
    """Optimisation history: each trial's val accuracy, the best so far, and both baselines."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(9, 4))
    ax.scatter(numbers, values, s=16, label="trial (validation accuracy)", color="tab:blue", alpha=0.7)
    ax.step(numbers, best_so_far, where="post", color="tab:green", label="best so far")
    ax.axhline(reference, color="tab:red", ls="--", label=f"reference {reference:.2%} (test, {REFERENCE.epochs} epochs)")
    if baseline_val is not None:
        ax.axhline(baseline_val, color="tab:orange", ls=":", label=f"in-study baseline {baseline_val:.2%} (val)")
    ax.set_xlabel("trial")
    ax.set_ylabel("validation accuracy")
    _zoom(ax, [*values, reference, *([baseline_val] if baseline_val is not None else [])])
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
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
                baseline: tuple[float, float] | None, reference: float) -> Any:
    """Validation accuracy against parameter count (log scale) with the Pareto front."""
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
    ax.axhline(reference, color="tab:red", ls="--", label=f"reference {reference:.2%} (test)")
    ax.set_xscale("log")
    ax.set_xlabel("parameters")
    ax.set_ylabel("validation accuracy")
    _zoom(ax, [*accuracy, reference])
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8, loc="lower right")
    ax.set_title("accuracy against size")
    return fig


def draw_importance(importance: Mapping[str, float]) -> Any:
    """Horizontal bars: each parameter's share of the variance in validation accuracy."""
    plt = _plt()
    names = list(importance)[::-1]
    fig, ax = plt.subplots(figsize=(8, 0.45 * len(names) + 1.2))
    ax.barh(names, [importance[n] for n in names], color="tab:purple")
    for i, n in enumerate(names):
        ax.text(importance[n], i, f" {importance[n]:.0%}", va="center", fontsize=8)
    ax.set_xlabel("importance (fANOVA share of variance)")
    ax.set_xlim(0, max(importance.values()) * 1.2 if importance else 1)
    ax.set_title("which choices mattered")
    return fig


def draw_slice(name: str, xs: Sequence[Any], ys: Sequence[float], baseline_x: Any, baseline_val: float | None) -> Any:
    """One parameter's slice: validation accuracy against its value."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(4, 3))
    categorical = any(isinstance(x, str) for x in xs)
    if categorical:
        cats = sorted({str(x) for x in xs})
        pos = [cats.index(str(x)) for x in xs]
        ax.scatter(pos, ys, s=14, alpha=0.6)
        ax.set_xticks(range(len(cats)), cats)
    else:
        ax.scatter(xs, ys, s=14, alpha=0.6)
    if baseline_val is not None and baseline_x is not None:
        bx = sorted({str(x) for x in xs}).index(str(baseline_x)) if categorical and str(baseline_x) in {
            str(x) for x in xs} else baseline_x
        ax.scatter([bx], [baseline_val], marker="*", s=160, color="tab:orange", zorder=5, label="baseline")
    ax.set_xlabel(name)
    ax.set_ylabel("val accuracy")
    _zoom(ax, list(ys))
    ax.grid(alpha=0.3)
    ax.set_title(name, fontsize=10)
    return fig


def draw_learning_curves(curves: Mapping[str, Sequence[float]], baseline_key: str | None) -> Any:
    """Validation accuracy by epoch of several trials; the baseline's dashed."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(8, 4))
    for key, vals in curves.items():
        style = {"ls": "--", "color": "tab:orange", "lw": 2.5} if key == baseline_key else {}
        ax.plot(range(1, len(vals) + 1), vals, marker="o", label=key, **style)
    ax.set_xlabel("epoch")
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.set_ylabel("validation accuracy")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title("learning curves: top trials and the baseline")
    return fig


def draw_confusion(matrix: np.ndarray, *, title: str = "") -> Any:
    """Confusion matrix with counts."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.5, 5))
    ax.imshow(np.log1p(matrix), cmap="Blues")
    for i in range(matrix.shape[0]):
        for j in range(matrix.shape[1]):
            ax.text(j, i, str(matrix[i, j]), ha="center", va="center", fontsize=7,
                    color="white" if i == j else "black")
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_xticks(range(matrix.shape[1]))
    ax.set_yticks(range(matrix.shape[0]))
    ax.set_title(title or "confusion matrix (test set)")
    return fig


def _zoom(ax: Any, values: Sequence[float]) -> None:
    """Accuracies crowd near 1: zoom on the upper part unless far-off points need the room."""
    vals = sorted(v for v in values if v is not None and math.isfinite(v))
    if not vals:
        return
    lo = vals[len(vals) // 10]  # ignore the worst tenth (failed-ish trials) when choosing the view
    ax.set_ylim(max(0.0, lo - 0.2 * (1 - lo) - 0.002), min(1.0, vals[-1] + 0.1 * (1 - lo) + 0.001))


def save(fig: Any, path: str | os.PathLike[str]) -> Path:
    """Write ``fig`` as a PNG, atomically (a failed draw never leaves half a figure over a good one)."""
    plt = _plt()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    tmp = path.with_name(path.name + ".tmp.png")
    fig.savefig(tmp, dpi=DPI)
    plt.close(fig)
    os.replace(tmp, path)
    return path


def data_uri(fig: Any) -> str:
    """``fig`` as an inline PNG ``data:`` URI, for self-contained HTML."""
    import base64
    import io

    plt = _plt()
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=DPI)
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()
