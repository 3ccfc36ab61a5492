"""The architecture of one CNN: a dataclass, its arithmetic, and its Keras model.

:class:`ArchSpec`'s defaults are the reference Keras MNIST CNN::

    Conv2D(32, 3x3, relu) -> Conv2D(64, 3x3, relu) -> MaxPooling2D(2x2) -> Dropout(0.25)
    -> Flatten -> Dense(128, relu) -> Dropout(0.5) -> Dense(10, softmax)

Shapes, parameter counts and FLOPs are computed analytically, so a search can
reject a spec whose feature map vanishes before Keras is imported. No optuna.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from cnnsearch.errors import ArchitectureError, check_known_keys

Padding = Literal["valid", "same"]
PoolType = Literal["max", "avg", "none"]

#: Name of the layers the figures read; stable across specs.
CONV_LAYER = "conv{}"


@dataclass(frozen=True)
class Reference:
    """The reference Keras MNIST CNN's published figures: what every run is compared with."""

    test_accuracy: float = 0.9915
    test_loss: float = 0.0284
    params: int = 1_199_882  # ArchSpec() at 28x28x1, 10 classes (tests check the arithmetic gives this)
    epochs: int = 20


#: The one definition of the reference's figures.
REFERENCE = Reference()


@dataclass(frozen=True)
class ArchSpec:
    """One CNN: conv layers, pooling, dropout and a dense head.

    Conv layer ``i`` has ``conv_filters[i]`` filters of size
    ``kernel_sizes[i]`` x ``kernel_sizes[i]``. Pooling (with dropout
    ``dropout_conv`` after it) follows every ``pool_every`` conv layers, and
    always follows the last one; ``pool_every=0`` means only after the last,
    as in the reference.
    """

    conv_filters: tuple[int, ...] = (32, 64)  # filters per conv layer (reference: 32 then 64)
    kernel_sizes: tuple[int, ...] = (3, 3)  # square kernel side per conv layer, pixels
    stride: int = 1  # conv stride, pixels, all conv layers
    padding: Padding = "valid"  # Keras padding of conv layers: 'valid' shrinks by kernel-1
    pool: PoolType = "max"  # pooling kind; 'none' keeps full resolution
    pool_size: int = 2  # pool window side = pool stride, pixels (Keras default strides=pool_size)
    pool_every: int = 0  # pool after every N conv layers; 0 = once, after the last
    dropout_conv: float = 0.25  # dropout rate after each pooling
    dense_units: int = 128  # hidden dense units; 0 = no hidden dense layer
    dropout_dense: float = 0.5  # dropout rate after the hidden dense layer

    def __post_init__(self) -> None:
        # Lists come from TOML and JSON; store tuples so specs hash and compare.
        object.__setattr__(self, "conv_filters", tuple(int(f) for f in self.conv_filters))
        object.__setattr__(self, "kernel_sizes", tuple(int(k) for k in self.kernel_sizes))

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict (tuples as lists)."""
        d = asdict(self)
        d["conv_filters"] = list(self.conv_filters)
        d["kernel_sizes"] = list(self.kernel_sizes)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ArchSpec":
        """Inverse of :meth:`to_dict`; unknown keys are an error."""
        check_known_keys(d, cls.__dataclass_fields__, "ArchSpec field(s)", ArchitectureError)
        return cls(**d)


@dataclass(frozen=True)
class LayerInfo:
    """One layer's analytic output shape, trainable parameters and forward FLOPs."""

    name: str
    kind: str
    output_shape: tuple[int, ...]
    params: int
    flops: int  # forward pass, one image, 2 FLOPs per multiply-add


@dataclass(frozen=True)
class Summary:
    """Every layer of a spec, and the totals."""

    layers: list[LayerInfo] = field(default_factory=list)

    @property
    def params(self) -> int:
        """Total trainable parameters (Keras's ``count_params()``)."""
        return sum(layer.params for layer in self.layers)

    @property
    def flops(self) -> int:
        """Forward FLOPs per image (training costs about 3x this)."""
        return sum(layer.flops for layer in self.layers)


def conv_output(n: int, kernel: int, stride: int, padding: str) -> int:
    """Output side of a conv or pool layer along one axis, as Keras computes it."""
    if padding == "same":
        return math.ceil(n / stride)
    return (n - kernel) // stride + 1 if n >= kernel else 0


def check(spec: ArchSpec) -> None:
    """Reject values no CNN can have (before any shape arithmetic)."""
    def bad(key: str, expected: str, received: Any) -> ArchitectureError:
        return ArchitectureError(f"ArchSpec.{key} must be {expected}; received {received!r}")

    if not spec.conv_filters:
        raise bad("conv_filters", "at least one conv layer", list(spec.conv_filters))
    if len(spec.kernel_sizes) != len(spec.conv_filters):
        raise ArchitectureError(
            f"ArchSpec has {len(spec.conv_filters)} conv layers but {len(spec.kernel_sizes)} kernel sizes;"
            " give one kernel size per conv layer"
        )
    if any(f < 1 for f in spec.conv_filters):
        raise bad("conv_filters", "positive filter counts", list(spec.conv_filters))
    if any(k < 1 for k in spec.kernel_sizes):
        raise bad("kernel_sizes", "positive kernel sides", list(spec.kernel_sizes))
    if spec.stride < 1:
        raise bad("stride", ">= 1", spec.stride)
    if spec.padding not in ("valid", "same"):
        raise bad("padding", "'valid' or 'same'", spec.padding)
    if spec.pool not in ("max", "avg", "none"):
        raise bad("pool", "'max', 'avg' or 'none'", spec.pool)
    if spec.pool_size < 1:
        raise bad("pool_size", ">= 1", spec.pool_size)
    if spec.pool_every < 0:
        raise bad("pool_every", ">= 0 (0 = only after the last conv layer)", spec.pool_every)
    for key in ("dropout_conv", "dropout_dense"):
        rate = getattr(spec, key)
        if not 0.0 <= rate < 1.0:
            raise bad(key, "a rate in [0, 1)", rate)
    if spec.dense_units < 0:
        raise bad("dense_units", ">= 0 (0 = no hidden dense layer)", spec.dense_units)


def pool_after(spec: ArchSpec, i: int) -> bool:
    """Does pooling (and conv dropout) follow conv layer ``i`` (0-based)?"""
    last = i == len(spec.conv_filters) - 1
    every = spec.pool_every > 0 and (i + 1) % spec.pool_every == 0
    return spec.pool != "none" and (last or every)


def summarize(spec: ArchSpec, input_shape: tuple[int, ...] = (28, 28, 1), n_classes: int = 10) -> Summary:
    """Analytic layer table of ``spec`` on images of ``input_shape`` (H, W, C).

    Raises:
        ArchitectureError: an invalid value, or a feature map that would shrink
            to nothing (named by layer, with what to change).
    """
    check(spec)
    if len(input_shape) != 3:
        raise ArchitectureError(f"input_shape must be (height, width, channels); received {input_shape}")
    h, w, c = (int(d) for d in input_shape)
    layers: list[LayerInfo] = []
    pool_no = 0
    for i, (filters, k) in enumerate(zip(spec.conv_filters, spec.kernel_sizes)):
        name = CONV_LAYER.format(i + 1)
        oh, ow = conv_output(h, k, spec.stride, spec.padding), conv_output(w, k, spec.stride, spec.padding)
        if oh < 1 or ow < 1:
            raise ArchitectureError(
                f"{name} ({k}x{k} kernel, stride {spec.stride}, padding '{spec.padding}') receives a {h}x{w}"
                f" feature map and would shrink it to nothing; use padding='same', a smaller kernel or stride,"
                f" fewer conv layers, or less pooling"
            )
        params = k * k * c * filters + filters
        flops = 2 * oh * ow * filters * k * k * c
        layers.append(LayerInfo(name, "conv", (oh, ow, filters), params, flops))
        h, w, c = oh, ow, filters
        if pool_after(spec, i):
            pool_no += 1
            p = spec.pool_size
            ph, pw = conv_output(h, p, p, "valid"), conv_output(w, p, p, "valid")
            if ph < 1 or pw < 1:
                raise ArchitectureError(
                    f"pool{pool_no} ({p}x{p} {spec.pool} pooling) receives a {h}x{w} feature map and would shrink"
                    f" it to nothing; use a smaller pool_size, padding='same', or pool less often"
                )
            # One comparison/add per window element per output value.
            layers.append(LayerInfo(f"pool{pool_no}", f"{spec.pool}pool", (ph, pw, c), 0, ph * pw * c * p * p))
            h, w = ph, pw
    flat = h * w * c
    layers.append(LayerInfo("flatten", "flatten", (flat,), 0, 0))
    width = flat
    if spec.dense_units:
        layers.append(LayerInfo("dense1", "dense", (spec.dense_units,), width * spec.dense_units + spec.dense_units,
                                2 * width * spec.dense_units))
        width = spec.dense_units
    layers.append(LayerInfo("output", "dense", (n_classes,), width * n_classes + n_classes, 2 * width * n_classes))
    return Summary(layers)


def build_model(spec: ArchSpec, input_shape: tuple[int, ...], n_classes: int) -> Any:
    """Build the (uncompiled) Keras model of ``spec``.

    The spec is checked analytically first, so an unbuildable spec raises
    :class:`~cnnsearch.errors.ArchitectureError` without touching Keras.
    Layer names match :func:`summarize` (``conv1``, ``pool1``, ``dense1``, ``output``).
    """
    summarize(spec, input_shape, n_classes)
    from cnnsearch._tf import keras

    K = keras()
    layers = K.layers
    model_layers: list[Any] = [K.Input(shape=tuple(input_shape), name="image")]
    pool_no = 0
    for i, (filters, k) in enumerate(zip(spec.conv_filters, spec.kernel_sizes)):
        model_layers.append(layers.Conv2D(filters, (k, k), strides=spec.stride, padding=spec.padding,
                                          activation="relu", name=CONV_LAYER.format(i + 1)))
        if pool_after(spec, i):
            pool_no += 1
            pool_cls = layers.MaxPooling2D if spec.pool == "max" else layers.AveragePooling2D
            model_layers.append(pool_cls(pool_size=(spec.pool_size, spec.pool_size), name=f"pool{pool_no}"))
            model_layers.append(layers.Dropout(spec.dropout_conv, name=f"dropout_pool{pool_no}"))
    model_layers.append(layers.Flatten(name="flatten"))
    if spec.dense_units:
        model_layers.append(layers.Dense(spec.dense_units, activation="relu", name="dense1"))
        model_layers.append(layers.Dropout(spec.dropout_dense, name="dropout_dense"))
    # float32 output even under a mixed-precision policy: softmax and the loss stay numerically stable.
    model_layers.append(layers.Dense(n_classes, activation="softmax", name="output", dtype="float32"))
    return K.Sequential(model_layers, name="cnnsearch")


def read_weights(path: str | Any) -> dict[str, list[Any]]:
    """Layer weights of a saved cnnsearch model (``.keras``), without TensorFlow.

    A ``.keras`` file is a zip of ``config.json`` (layer names in order) and
    ``model.weights.h5``, whose groups Keras names by layer class in order
    (conv2d, conv2d_1, dense, ...). Matching the two orders gives
    ``{"conv1": [kernel, bias], "dense1": [...], "output": [...]}``.
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
            base = {"max_pooling2_d": "max_pooling2d", "average_pooling2_d": "average_pooling2d",
                    "conv2_d": "conv2d"}.get(base, base)
            n = counts.get(base, 0)
            counts[base] = n + 1
            group = f"layers/{base}" if n == 0 else f"layers/{base}_{n}"
            if group in h5 and "vars" in h5[group] and len(h5[group]["vars"]):
                variables = h5[group]["vars"]
                out[layer["config"]["name"]] = [np.asarray(variables[str(i)]) for i in range(len(variables))]
    return out
