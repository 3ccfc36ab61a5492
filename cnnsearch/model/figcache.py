"""A kept model's figure arrays, cached beside its weights (``<weights>.figures.npz``).

The arrays the report draws for a model (issue 24): the class probabilities of the first
:data:`SAMPLE` test images (the confusion matrix and the confident mistakes) and the feature maps
of the reference digits. They come from the kept weights with NumPy (:mod:`cnnsearch.model.forward`),
never TensorFlow, so any process can make them: the search worker that keeps a new best makes them
right away (:func:`prepare`), and the report after ``study run`` then only reads them. That moves
the forward pass, most of a report's time, into the trial that produced the model.

The key is the weights' SHA-256 and the SHA-256 of the very test images the arrays were computed
from, so a cache made on other data, other weights or by an older version is recomputed, never
misread.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np

from cnnsearch.ground.output import replacing
from cnnsearch.model import forward, viz
from cnnsearch.model.arch import ArchSpec, read_weights

#: Test images the confusion matrix and the confident mistakes are computed on (the first N): 2,000 keep
#: a report of two models under 10 s on a 2-core CPU; every class appears about 200 times.
SAMPLE = 2000
#: Bumped when the cached arrays change meaning, so an old cache is recomputed, never misread.
#: 2: keyed by the test images' own bytes (was the data file's fingerprint), so a worker can write it.
CACHE_VERSION = 2
ARRAYS = ("proba", "maps1", "maps_last")


def cache_path(weights: Path) -> Path:
    """Where a kept model's figure arrays are cached: beside its weights."""
    return weights.with_name(weights.name + ".figures.npz")


def digits(x_test: np.ndarray) -> list[int]:
    """The reference digits' test indices that exist in ``x_test`` (small test sets of your own data)."""
    return [i for i in viz.REFERENCE_DIGITS if i < len(x_test)]


def key(weights: Path, x_test: np.ndarray) -> str:
    """The cache key: format version, weights' SHA-256, the sampled and drawn test images' SHA-256."""
    n, idx = min(SAMPLE, len(x_test)), digits(x_test)
    images = hashlib.sha256(np.ascontiguousarray(x_test[:n]).tobytes())
    images.update(np.ascontiguousarray(x_test[idx]).tobytes())
    images.update(repr((x_test.dtype.str, x_test.shape[1:], n, idx)).encode())
    return f"v{CACHE_VERSION}:{hashlib.sha256(weights.read_bytes()).hexdigest()}:{images.hexdigest()}"


def read(weights: Path, cache_key: str) -> dict[str, np.ndarray] | None:
    """The cached arrays when their key matches; None when absent, damaged, foreign or stale."""
    try:
        with np.load(cache_path(weights), allow_pickle=False) as z:
            if str(z["key"]) != cache_key:
                return None  # other weights under the same name, other data, or an older format
            return {k: z[k] for k in ARRAYS}
    except (OSError, KeyError, ValueError):  # absent, damaged or foreign: compute again
        return None


def write(weights: Path, cache_key: str, arrays: dict[str, np.ndarray]) -> None:
    """Write atomically; a folder that cannot be written only costs the next report the same time again."""
    try:
        with replacing(cache_path(weights)) as tmp, open(tmp, "wb") as fh:
            np.savez(fh, key=np.array(cache_key), **arrays)
    except OSError:
        pass


def compute(weights: dict[str, Any], spec: ArchSpec, x_test: np.ndarray) -> dict[str, np.ndarray]:
    """The arrays of one space model: probabilities of the first :data:`SAMPLE` images, the digits' maps."""
    layers = ("conv1", "conv2") if "conv2" in weights else ("conv1",)
    idx = digits(x_test)
    maps = forward.feature_maps(weights, spec, x_test[idx], layers)
    return {"proba": forward.predict_proba(weights, spec, x_test[:SAMPLE]).astype(np.float32),
            "maps1": maps["conv1"], "maps_last": maps[layers[-1]]}


def prepare(path: Path, spec: ArchSpec | dict[str, Any] | None, x_test: np.ndarray) -> bool:
    """Compute and cache the arrays of the space model kept at ``path`` unless cached; True if written.

    ``spec``: its ArchSpec, or the dict a trial stores. A model of your own (``spec`` None) is left to
    the report (only Keras can run its layers there).
    """
    if spec is None:
        return False
    cache_key = key(path, x_test)
    if read(path, cache_key) is not None:
        return False
    write(path, cache_key, compute(read_weights(path), ArchSpec.from_dict(spec) if isinstance(spec, dict) else spec,
                                   x_test))
    return True


__all__ = ["ARRAYS", "CACHE_VERSION", "SAMPLE", "cache_path", "compute", "digits", "key", "prepare", "read", "write"]
