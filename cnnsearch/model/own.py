"""A model of the user's own ``build(trial)``, read back with Keras for the report's figures (issue 23 item 7).

The space's models are drawn without TensorFlow, from their weights and the NumPy forward pass
(:mod:`cnnsearch.model.forward`), because cnnsearch knows their layer plan. A builder's layers are the
user's: only Keras knows how to run them, so its kept ``.keras`` file is loaded with Keras here. The
filters drawn are those of its first two ``Conv2D`` layers (top level, in order; nested models are not
looked into), the feature maps their outputs (after the layer's own activation), the probabilities its
``predict``. A file Keras cannot load (a custom layer it does not know) is one reason, not a crash.
"""

from __future__ import annotations

from pathlib import Path
import numpy as np

from cnnsearch.ground.errors import CnnsearchError


def figure_arrays(path: Path, x_test: np.ndarray, idx: list[int], n: int,
                  compute: bool = True) -> tuple[dict[str, list[np.ndarray]], dict[str, np.ndarray] | None]:
    """A builder model's first conv kernels (``{"conv1": [kernel], "conv2": [kernel]}``) and its figure arrays.

    The arrays are those the report caches for a space model: ``proba`` of the first ``n`` test images,
    ``maps1`` and ``maps_last`` (the first and the last drawn conv layer's outputs) of the images ``idx``;
    None when ``compute`` is False (the caller has them cached: only the kernels are read).

    Raises:
        CnnsearchError: Keras cannot load the file, or the model has no top-level Conv2D layer.
    """
    from cnnsearch.ground._tf import keras as quiet_keras

    keras = quiet_keras()  # TensorFlow imported quietly, as everywhere in cnnsearch
    try:
        model = keras.models.load_model(path, compile=False)
    except Exception as exc:  # noqa: BLE001 - any loader failure is one reason: the figures are left out
        raise CnnsearchError(f"{path.name}: Keras cannot load this model of your own build ({type(exc).__name__}:"
                             f" {str(exc).splitlines()[0] if str(exc) else ''}); its figures are left out") from None
    convs = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)][:2]
    if not convs:
        raise CnnsearchError(f"{path.name}: this model of your own build has no top-level Conv2D layer: no filters"
                             " or feature maps to draw")
    weights = {f"conv{i + 1}": [np.asarray(layer.get_weights()[0])] for i, layer in enumerate(convs)}
    if not compute:
        return weights, None
    probe = keras.Model(model.inputs, [convs[0].output, convs[-1].output])
    first, last = probe.predict(x_test[idx], verbose=0) if idx else (np.zeros((0,)), np.zeros((0,)))
    proba = np.asarray(model.predict(x_test[:n], batch_size=500, verbose=0), np.float32)
    return weights, {"proba": proba, "maps1": np.asarray(first), "maps_last": np.asarray(last)}
