"""Checks on one array of a data set: images, or labels. Each failure is one line naming the source."""

from __future__ import annotations

import numpy as np

from cnnsearch.ground.errors import DataError


def check_images(src: str, name: str, x: np.ndarray) -> None:
    """Images: (N, H, W) or (N, H, W, 1 or 3), not empty, uint8 or float in [0, 1]; else one DataError line."""
    if x.ndim not in (3, 4) or (x.ndim == 4 and x.shape[-1] not in (1, 3)):
        raise DataError(f"{src}: {name} must have shape (N, height, width) or (N, height, width, channels) with 1"
                        f" or 3 channels; received {x.shape}")
    if 0 in x.shape:
        raise DataError(f"{src}: {name} is empty; received shape {x.shape}")
    if x.dtype == np.uint8:
        return
    if not np.issubdtype(x.dtype, np.floating):
        raise DataError(f"{src}: {name} must be uint8 (0-255 pixels) or float (0-1 pixels); received dtype {x.dtype}")
    lo, hi = float(np.min(x)), float(np.max(x))
    if not (np.isfinite(lo) and np.isfinite(hi)) or lo < 0.0 or hi > 1.0:
        raise DataError(f"{src}: {name} is float with pixels from {lo:g} to {hi:g}; float images must be scaled to"
                        " [0, 1] (divide 0-255 pixels by 255, or store them as uint8)")


def check_labels(src: str, name: str, y: np.ndarray) -> None:
    """Labels: one non-negative integer per image; else one DataError line."""
    if y.ndim != 1:
        raise DataError(f"{src}: {name} must be one label per image, shape (N,); received {y.shape}")
    if not np.issubdtype(y.dtype, np.integer) or (y.size and int(y.min()) < 0):
        raise DataError(f"{src}: {name} must be integer labels 0..K-1; received dtype {y.dtype}"
                        f"{'' if not y.size or not np.issubdtype(y.dtype, np.number) else f', min {y.min()}'}")
