"""The trained model's forward pass and feature maps in NumPy, never TensorFlow.

Walks :func:`cnnsearch.model.arch.plan` at inference with :mod:`cnnsearch.model.im2col`
(batch norm folded into its conv, augmentation and dropout inactive), so the
report can draw feature maps and confusion matrices from stored weights alone.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

from cnnsearch.model import im2col
from cnnsearch.model.arch import BN_EPSILON, ArchSpec, plan


def conv_weights(model: Any) -> dict[str, list[np.ndarray]]:
    """Weights of every layer of a cnnsearch model that has some: {"conv1": [w, b], "bn1": [...], ...}.

    :func:`predict_proba` and :func:`feature_maps` read conv, batch-norm and dense weights by layer name.
    """
    out = {}
    for layer in model.layers:
        weights = layer.get_weights()
        if weights:
            out[layer.name] = [np.asarray(w) for w in weights]
    return out


def fold_batch_norm(w: np.ndarray, b: np.ndarray, gamma: np.ndarray, beta: np.ndarray, mean: np.ndarray,
                    var: np.ndarray, eps: float = BN_EPSILON) -> tuple[np.ndarray, np.ndarray]:
    """Conv kernel and bias with inference-time batch norm folded in: bn(conv(x, w) + b) = conv(x, w') + b'."""
    scale = np.asarray(gamma, np.float32) / np.sqrt(np.asarray(var, np.float32) + eps)
    return (np.asarray(w, np.float32) * scale).astype(np.float32), ((b - mean) * scale + beta).astype(np.float32)


def _forward(weights: Mapping[str, Sequence[np.ndarray]], spec: ArchSpec, x: np.ndarray,
             wanted: Sequence[str] = ()) -> tuple[np.ndarray | None, dict[str, np.ndarray]]:
    """Walk :func:`arch.plan` in NumPy: class probabilities, or (with ``wanted``) the conv blocks' activations.

    Inference semantics: augmentation and dropout pass through, batch norm is
    folded into the conv before it, and a conv block's activation is its output
    after ReLU. With ``wanted``, stops as soon as those conv blocks are computed.
    """
    n_classes = len(weights["output"][-1]) if "output" in weights else 10
    steps = plan(spec, tuple(x.shape[1:]), n_classes)
    maps: dict[str, np.ndarray] = {}
    z = x
    for i, s in enumerate(steps):
        if s.kind == "conv":
            w, *rest = weights[s.name]
            b = np.asarray(rest[0]) if rest else np.zeros(s.units, np.float32)
            if i + 1 < len(steps) and steps[i + 1].kind == "batch_norm":
                w, b = fold_batch_norm(w, b, *weights[steps[i + 1].name])
            # ReLU is fused into the conv, or follows its batch norm: after folding, the same thing.
            z = im2col.relu(im2col.conv2d(z, w, b, s.stride, s.padding))
            if s.name in wanted:
                maps[s.name] = z
                if len(maps) == len(set(wanted)):
                    return None, maps
        elif s.kind in ("maxpool", "avgpool"):
            z = (im2col.max_pool2d if s.kind == "maxpool" else im2col.avg_pool2d)(z, s.kernel)
        elif s.kind == "flatten":
            z = z.reshape(len(z), -1)
        elif s.kind == "gap":
            z = z.mean(axis=(1, 2))
        elif s.kind == "dense":
            w, b = weights[s.name]
            z = z @ w + b
            if s.activation == "relu":
                z = np.maximum(z, 0)
            elif s.activation == "softmax":
                z = z - z.max(axis=1, keepdims=True)
                e = np.exp(z)
                z = e / e.sum(axis=1, keepdims=True)
        # augment, dropout: inactive at inference; batch_norm: folded above; relu: applied with the conv.
    return z, maps


def feature_maps(weights: Mapping[str, Sequence[np.ndarray]], spec: ArchSpec, images: np.ndarray,
                 layers: Sequence[str] = ("conv1", "conv2")) -> dict[str, np.ndarray]:
    """Activations (after ReLU) of conv ``layers`` for ``images`` (N, H, W, C), from stored weights.

    Computed with :mod:`cnnsearch.model.im2col` in bounded memory, so drawing feature
    maps needs no TensorFlow: only the weights. The layers between follow
    :func:`cnnsearch.model.arch.plan` at inference (batch norm folded into its conv,
    augmentation and dropout inactive).
    """
    return _forward(weights, spec, np.asarray(images, dtype=np.float32), tuple(layers))[1]


def predict_proba(weights: Mapping[str, Sequence[np.ndarray]], spec: ArchSpec, images: np.ndarray,
                  batch: int = 1000) -> np.ndarray:
    """Class probabilities of a trained spec for ``images``, computed in NumPy from its weights.

    The whole forward pass of :func:`cnnsearch.model.arch.plan` at inference (conv
    with batch norm folded in + ReLU, pooling, flatten or global average
    pooling, dense + ReLU, softmax; augmentation and dropout inactive), so a
    report can draw a confusion matrix without TensorFlow.
    """
    outs = []
    for i in range(0, len(images), batch):
        proba, _ = _forward(weights, spec, np.asarray(images[i:i + batch], dtype=np.float32))
        outs.append(proba)
    return np.concatenate(outs) if outs else np.zeros((0, 0), np.float32)
