"""A conv layer's learned filters as images: one input channel in gray, or RGB patches in colour (issue 23).

Compute only (no matplotlib); :mod:`cnnsearch.model.viz` draws them.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np


def filters(weights: Mapping[str, Sequence[np.ndarray]], layer: str = "conv1", *, in_channel: int | None = None,
            limit: int = 32) -> np.ndarray:
    """The first ``limit`` filters of conv ``layer``: (n, k, k) for one input channel, or (n, k, k, 3) in colour.

    ``in_channel`` None: a layer reading RGB (3 input channels) gives colour patches
    (:func:`rgb_patches`), any other layer its input channel 0 (say so in the figure's title:
    :func:`channel_words`).
    """
    kernel = np.asarray(weights[layer][0])
    if in_channel is None and kernel.shape[2] == 3:
        return rgb_patches(np.moveaxis(kernel[..., :limit], -1, 0))
    return np.moveaxis(kernel[:, :, in_channel or 0, :limit], -1, 0)


def rgb_patches(kernels: np.ndarray) -> np.ndarray:
    """Filters (n, k, k, 3) as colour images: each scaled to [0, 1] over its own three channels together."""
    lo = kernels.min(axis=(1, 2, 3), keepdims=True)
    span = kernels.max(axis=(1, 2, 3), keepdims=True) - lo
    return (kernels - lo) / np.where(span > 0, span, 1.0)


def channel_words(weights: Mapping[str, Sequence[np.ndarray]], layer: str = "conv1") -> str:
    """What a filter figure of ``layer`` (drawn by :func:`filters`) shows: "in colour (RGB)" or "input channel 0"."""
    return "in colour (RGB)" if np.asarray(weights[layer][0]).shape[2] == 3 else "input channel 0"


__all__ = ["channel_words", "filters", "rgb_patches"]
