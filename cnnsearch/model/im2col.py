"""Convolution and pooling in NumPy by im2col, in bounded memory. No TensorFlow.

The reference's layer computes, for output pixel (i, j) and filter m,

    u[i, j, m] = sum_k sum_p sum_q z[s*i + p, s*j + q, k] * h[p, q, k, m] + b[m]

im2col turns this into one matrix product: each output pixel's receptive field
(p, q, k) becomes a row of a "patch" matrix, and the filters a (kh*kw*K, M)
matrix. The reference ran out of memory because it unrolled the whole batch at
once with large index arrays: for the second baseline layer over the 10,000
test images that matrix is 10,000 x 576 x 288 float32, about 6.6 GB. Here the
patches are strided *views* of the input (no index arrays, no copy) and only a
chunk of images is materialised at a time, so the extra memory stays under a
budget whatever the batch size.
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from cnnsearch.model.arch import conv_output  # the one home of the output-size formula (pure Python, no Keras)

Padding = Literal["valid", "same"]

#: Default ceiling on the extra memory one call may allocate (patch matrix + output chunk), bytes.
DEFAULT_BUDGET = 256 * 2**20


def output_size(n: int, k: int, s: int, padding: Padding) -> int:
    """Output side as Keras computes it ('valid': floor((n-k)/s)+1; 'same': ceil(n/s)); see :func:`arch.conv_output`."""
    return conv_output(n, k, s, padding)


def same_pads(n: int, k: int, s: int) -> tuple[int, int]:
    """TensorFlow's 'same' padding: the extra pixel, if odd, goes after (bottom/right)."""
    total = max((math.ceil(n / s) - 1) * s + k - n, 0)
    return total // 2, total - total // 2


def _pad(x: np.ndarray, kh: int, kw: int, s: tuple[int, int], padding: Padding, value: float) -> np.ndarray:
    if padding == "valid":
        return x
    (t, b), (l, r) = same_pads(x.shape[1], kh, s[0]), same_pads(x.shape[2], kw, s[1])
    if t == b == l == r == 0:
        return x
    return np.pad(x, ((0, 0), (t, b), (l, r), (0, 0)), constant_values=value)


def _windows(x: np.ndarray, kh: int, kw: int, s: tuple[int, int]) -> np.ndarray:
    """Strided view (N, oh, ow, kh, kw, C) of every receptive field; no copy."""
    v = sliding_window_view(x, (kh, kw), axis=(1, 2))  # (N, H-kh+1, W-kw+1, C, kh, kw)
    v = v[:, :: s[0], :: s[1]]
    return v.transpose(0, 1, 2, 4, 5, 3)


def _chunk(per_image_bytes: int, budget: int, n: int) -> int:
    return max(1, min(n, budget // max(per_image_bytes, 1)))


def _pair(v: int | tuple[int, int]) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else (int(v[0]), int(v[1]))


def conv2d(x: np.ndarray, w: np.ndarray, b: np.ndarray | None = None, stride: int | tuple[int, int] = 1,
           padding: Padding = "valid", *, budget: int = DEFAULT_BUDGET, out: np.ndarray | None = None) -> np.ndarray:
    """2-D convolution (cross-correlation, as Keras's Conv2D) of an NHWC batch.

    Args:
        x: Images (N, H, W, K).
        w: Filters (kh, kw, K, M), Keras's kernel layout.
        b: Biases (M,), or None.
        stride: Step between receptive fields, pixels.
        padding: 'valid' (no padding) or 'same' (TensorFlow's zero padding).
        budget: Most extra bytes to hold at once (one chunk's padded input, patch
            matrix and result).
        out: Optional preallocated (N, oh, ow, M) float32 array to write into
            (a ``np.memmap`` keeps even the result off the heap).

    Returns:
        (N, oh, ow, M) float32, before any activation.
    """
    x = np.asarray(x, dtype=np.float32)
    w = np.asarray(w, dtype=np.float32)
    if x.ndim != 4 or w.ndim != 4 or x.shape[3] != w.shape[2]:
        raise ValueError(f"expected x (N, H, W, K) and w (kh, kw, K, M) with the same K; received {x.shape}, {w.shape}")
    s = _pair(stride)
    kh, kw, k_in, m = w.shape
    n = x.shape[0]
    oh, ow = output_size(x.shape[1], kh, s[0], padding), output_size(x.shape[2], kw, s[1], padding)
    if out is None:
        out = np.empty((n, oh, ow, m), dtype=np.float32)
    elif out.shape != (n, oh, ow, m):
        raise ValueError(f"out must have shape {(n, oh, ow, m)}; received {out.shape}")
    if oh < 1 or ow < 1:
        return out
    wmat = w.reshape(kh * kw * k_in, m)  # row index (p*kw + q)*K + k, matching the patch layout below
    padded_image = (oh * s[0] + kh) * (ow * s[1] + kw) * k_in if padding == "same" else 0
    per_image = (oh * ow * (kh * kw * k_in + m) + padded_image) * 4
    step = _chunk(per_image, budget, n)
    for i in range(0, n, step):
        xp = _pad(x[i:i + step], kh, kw, s, padding, 0.0)  # per chunk: never a padded copy of the whole batch
        patches = _windows(xp, kh, kw, s).reshape(-1, kh * kw * k_in)  # the patch matrix: one chunk's copy
        res = patches @ wmat
        if b is not None:
            res += np.asarray(b, dtype=np.float32)
        out[i:i + step] = res.reshape(-1, oh, ow, m)
        del patches, res
    return out


def _pool(x: np.ndarray, pool_size: int | tuple[int, int], strides: int | tuple[int, int] | None, padding: Padding,
          kind: str, budget: int) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    ph, pw = _pair(pool_size)
    s = _pair(strides) if strides is not None else (ph, pw)  # Keras: strides default to pool_size
    n, h, w_, c = x.shape
    oh, ow = output_size(h, ph, s[0], padding), output_size(w_, pw, s[1], padding)
    out = np.empty((n, oh, ow, c), dtype=np.float32)
    if oh < 1 or ow < 1:
        return out
    # 'same' padding: padded cells (NaN) never win a max and are not counted in an average (as TensorFlow).
    padded = padding == "same" and (same_pads(h, ph, s[0]) != (0, 0) or same_pads(w_, pw, s[1]) != (0, 0))
    step = _chunk(oh * ow * c * ph * pw * 4 * (2 if padded else 1), budget, n)
    for i in range(0, n, step):
        xp = _pad(x[i:i + step], ph, pw, s, padding, np.nan) if padded else x[i:i + step]
        v = _windows(xp, ph, pw, s)  # (n, oh, ow, ph, pw, C) view
        if kind == "max":
            out[i:i + step] = np.nanmax(v, axis=(3, 4)) if padded else v.max(axis=(3, 4))
        else:
            out[i:i + step] = np.nanmean(v, axis=(3, 4)) if padded else v.mean(axis=(3, 4))
    return out


def max_pool2d(x: np.ndarray, pool_size: int | tuple[int, int] = 2, strides: int | tuple[int, int] | None = None,
               padding: Padding = "valid", *, budget: int = DEFAULT_BUDGET) -> np.ndarray:
    """Max pooling of an NHWC batch, as Keras's MaxPooling2D."""
    return _pool(x, pool_size, strides, padding, "max", budget)


def avg_pool2d(x: np.ndarray, pool_size: int | tuple[int, int] = 2, strides: int | tuple[int, int] | None = None,
               padding: Padding = "valid", *, budget: int = DEFAULT_BUDGET) -> np.ndarray:
    """Average pooling of an NHWC batch, as Keras's AveragePooling2D."""
    return _pool(x, pool_size, strides, padding, "avg", budget)


def relu(x: np.ndarray) -> np.ndarray:
    """max(x, 0), in place."""
    return np.maximum(x, 0, out=x)
