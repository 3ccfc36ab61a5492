"""A saved cnnsearch model's layer weights, read without TensorFlow (h5py and the zip's config only).

Its own module (issue 21) so :mod:`cnnsearch.model.arch` stays one idea: the spec, its plan and its Keras model.
"""

from __future__ import annotations

from typing import Any


def read_weights(path: str | Any) -> dict[str, list[Any]]:
    """Layer weights of a saved cnnsearch model (``.keras``), without TensorFlow.

    A ``.keras`` file is a zip of ``config.json`` (layer names in order) and
    ``model.weights.h5``, whose groups Keras names by layer class in order
    (conv2d, conv2d_1, dense, ...). Matching the two orders gives
    ``{"conv1": [kernel, bias], "bn1": [gamma, beta, mean, variance], "dense1": [...], "output": [...]}``
    (a conv followed by batch norm has no bias: ``[kernel]``).
    """
    import io
    import json
    import re
    import zipfile

    import h5py
    import numpy as np

    with zipfile.ZipFile(path) as z:
        config = json.loads(z.read("config.json"))
        blob = z.read("model.weights.h5")
    layers = [layer for layer in config["config"]["layers"] if layer["class_name"] != "InputLayer"]
    counts: dict[str, int] = {}
    out: dict[str, list[Any]] = {}
    with h5py.File(io.BytesIO(blob), "r") as h5:
        for layer in layers:
            base = re.sub(r"(?<!^)(?=[A-Z])", "_", layer["class_name"]).lower()
            base = base.replace("2_d", "2d")  # Conv2D -> conv2d, GlobalAveragePooling2D -> ..._pooling2d
            n = counts.get(base, 0)
            counts[base] = n + 1
            group = f"layers/{base}" if n == 0 else f"layers/{base}_{n}"
            if group in h5 and "vars" in h5[group] and len(h5[group]["vars"]):
                variables = h5[group]["vars"]
                out[layer["config"]["name"]] = [np.asarray(variables[str(i)]) for i in range(len(variables))]
    return out
