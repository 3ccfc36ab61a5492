"""Figures: compute plain arrays first, then draw them (after optuna's ``visualization``).

The ``filters`` / ``feature_maps`` functions return NumPy arrays that tests
check; the ``draw_*`` functions only draw what they are given and write a PNG.
Nothing here imports Keras: feature maps are computed from the conv weights by
:mod:`cnnsearch.im2col`, so drawing them needs only the weights.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from cnnsearch import im2col
from cnnsearch.arch import ArchSpec, pool_after

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

def conv_kernel(model: Any, layer: str) -> np.ndarray:
    """The kernel of conv ``layer`` as an array (k, k, in_channels, filters)."""
    return np.asarray(model.get_layer(layer).get_weights()[0])


def filters(model: Any, layer: str = "conv1", *, in_channel: int = 0, limit: int = 32) -> np.ndarray:
    """The first ``limit`` filters of ``layer`` for one input channel, shape (n, k, k)."""
    kernel = conv_kernel(model, layer)
    return np.moveaxis(kernel[:, :, in_channel, :limit], -1, 0)


def conv_weights(model: Any) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Kernel and bias of every conv layer of a cnnsearch model: {"conv1": (w, b), ...}."""
    out = {}
    for layer in model.layers:
        if layer.name.startswith("conv"):
            w, b = layer.get_weights()
            out[layer.name] = (np.asarray(w), np.asarray(b))
    return out


def feature_maps(weights: dict[str, tuple[np.ndarray, np.ndarray]], spec: ArchSpec, images: np.ndarray,
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


# --- draw --------------------------------------------------------------------------------------

def draw_learning_curve(history: dict[str, list[float]], path: str | os.PathLike[str], *, title: str = "") -> Path:
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
    return _save(fig, path)


def draw_grid(images: Sequence[np.ndarray] | np.ndarray, rows: int, cols: int, path: str | os.PathLike[str], *, title: str = "",
              labels: Sequence[str] | None = None, cmap: str = "gray") -> Path:
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
    return _save(fig, path)


def draw_digits_with_maps(digits: np.ndarray, maps1: np.ndarray, maps2: np.ndarray,
                          path: str | os.PathLike[str], *, title: str = "") -> Path:
    """The reference's 6x8 grid: 16 digits (rows 1-2), their first-layer channel-0 maps
    (rows 3-4) and second-layer channel-0 maps (rows 5-6)."""
    n = min(16, len(digits))
    tiles = [*digits[:n], *maps1[:n], *maps2[:n]]
    labels = ([f"digit {i}" for i in range(n)] + [f"conv1 ch0 #{i}" for i in range(n)]
              + [f"conv2 ch0 #{i}" for i in range(n)])
    return draw_grid(tiles, 6, 8, path, title=title, labels=labels)


def draw_digit_maps(digit: np.ndarray, maps1: np.ndarray, maps2: np.ndarray, path: str | os.PathLike[str],
                    *, title: str = "") -> Path:
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
    return _save(fig, path)


def _save(fig: Any, path: str | os.PathLike[str]) -> Path:
    plt = _plt()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    tmp = path.with_name(path.name + ".tmp.png")
    fig.savefig(tmp, dpi=DPI)
    plt.close(fig)
    os.replace(tmp, path)  # atomic: a failed draw never leaves half a figure over a good one
    return path
