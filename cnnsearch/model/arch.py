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

from cnnsearch.ground.errors import ArchitectureError, check_known_keys
from cnnsearch.model.weights import read_weights  # noqa: F401  (re-exported; its home since issue 21)

Padding = Literal["valid", "same"]
PoolType = Literal["max", "avg", "none"]
Head = Literal["flatten", "gap"]

#: Name of the layers the figures read; stable across specs.
CONV_LAYER = "conv{}"
#: Batch-norm epsilon (Keras's default), needed to fold batch norm into the conv at inference.
BN_EPSILON = 1e-3
#: Batch-norm momentum of the moving statistics. Keras's 0.99 needs ~500 steps to forget its initial
#: (0, 1) statistics: at a search fidelity of 3 epochs x 12,000 images (282 steps) a batch-norm model
#: scored 0.60 validation accuracy against 0.97 without batch norm. 0.9 forgets in ~50 steps.
BN_MOMENTUM = 0.9
#: Shift fractions an ``augment`` may take (random translation of up to this fraction of the image side).
AUGMENT_MAX = 0.5
#: Largest ``rotation``, degrees either way: 180 already covers every angle (beyond it Keras repeats them).
ROTATION_MAX = 180.0
#: Largest ``zoom``, a fraction of the image side in or out: beyond 0.5 a zoom out leaves a digit a few pixels wide.
ZOOM_MAX = 0.5
#: Fields added by issue 21: :meth:`ArchSpec.to_dict` leaves them out at these defaults, so older stored specs
#: (the reference's) keep their form and identical finished runs are still found and reused.
NEW_FIELDS = {"pool_layers": (), "transition": 0, "rotation": 0.0, "zoom": 0.0}


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
    # Batch norm after each conv, before its ReLU; the conv then has no bias (batch norm's beta is one).
    batch_norm: bool = False
    head: Head = "flatten"  # 'gap': global average pooling instead of flatten before the dense head
    # Random shifts of up to this fraction of the image side, in training only (a Keras preprocessing
    # layer inside the model: inference and the NumPy forward pass skip it). 0 = none, as the reference.
    augment: float = 0.0
    # Conv layers (1-based) that pooling (and conv dropout) follows, e.g. (2, 4); () = the pool_every rule.
    # Given, it is the whole rule: nothing is implied after the last layer (a GAP head pools there itself).
    pool_layers: tuple[int, ...] = ()
    # Filters of a 1x1 "transition" conv after every pooling (batch norm when batch_norm, then ReLU): it
    # mixes and narrows the channels for the next block at little cost. 0 = none, as the reference.
    transition: int = 0
    rotation: float = 0.0  # random rotation up to this many degrees either way, training only; 0 = none
    zoom: float = 0.0  # random zoom in or out up to this fraction of the side, training only

    def __post_init__(self) -> None:
        # Lists come from TOML and JSON; store tuples so specs hash and compare.
        object.__setattr__(self, "conv_filters", tuple(int(f) for f in self.conv_filters))
        object.__setattr__(self, "kernel_sizes", tuple(int(k) for k in self.kernel_sizes))
        layers = tuple(sorted(int(i) for i in self.pool_layers))
        n = len(self.conv_filters)
        rule = tuple(i for i in range(1, n + 1) if i == n or (self.pool_every > 0 and i % self.pool_every == 0))
        # Positions the pool_every rule gives anyway take its form: one spec, one stored form (pool_at = "2" is ArchSpec()).
        object.__setattr__(self, "pool_layers", () if layers == rule else layers)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict (tuples as lists); :data:`NEW_FIELDS` at their defaults are left out."""
        d = asdict(self)
        for key in ("conv_filters", "kernel_sizes", "pool_layers"):
            d[key] = list(getattr(self, key))
        return {k: v for k, v in d.items() if k not in NEW_FIELDS or v != type(v)(NEW_FIELDS[k])}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ArchSpec":
        """Inverse of :meth:`to_dict`; unknown keys are an error (missing ones keep the reference's)."""
        check_known_keys(d, cls.__dataclass_fields__, "ArchSpec field(s)", ArchitectureError)
        return cls(**d)


@dataclass(frozen=True)
class Layer:
    """One step of a spec's layer plan: what Keras builds, NumPy computes and the summary counts.

    ``kind`` is one of ``augment`` (shifts), ``rotate``, ``zoom``, ``conv`` (transitions too), ``batch_norm``, ``relu``,
    ``maxpool``, ``avgpool``, ``dropout``, ``flatten``, ``gap``, ``dense``.
    """

    name: str  # the Keras layer name (conv1, bn1, pool1, dense1, output, ...)
    kind: str
    output_shape: tuple[int, ...]
    params: int  # Keras's count_params() of this layer (batch norm's moving statistics included)
    flops: int  # forward pass, one image, 2 FLOPs per multiply-add
    units: int = 0  # filters of a conv, units of a dense layer
    kernel: int = 0  # conv kernel side or pool window side, pixels
    stride: int = 1  # conv or pool stride, pixels
    padding: str = "valid"
    rate: float = 0.0  # dropout rate, the augment shift or zoom fraction, or the rotation in degrees
    activation: str = ""  # 'relu' or 'softmax' fused into a conv or dense layer; '' = none
    use_bias: bool = True


@dataclass(frozen=True)
class Summary:
    """Every layer of a spec (dropout left out: it computes nothing at inference), and the totals."""

    layers: list[Layer] = field(default_factory=list)

    @property
    def params(self) -> int:
        """Total parameters (Keras's ``count_params()``, batch norm's moving statistics included)."""
        return sum(layer.params for layer in self.layers)

    @property
    def flops(self) -> int:
        """Forward FLOPs per image (training costs about 3x this)."""
        return sum(layer.flops for layer in self.layers)


def conv_output(n: int, kernel: int, stride: int, padding: str) -> int:
    """Output side of a conv or pool layer along one axis, as Keras computes it.

    'valid': floor((n - kernel) / stride) + 1 (0 when the kernel does not fit); 'same': ceil(n / stride).
    The one home of this formula: :mod:`cnnsearch.model.im2col` uses it too.
    """
    if padding == "same":
        return math.ceil(n / stride)
    if padding == "valid":
        return (n - kernel) // stride + 1 if n >= kernel else 0
    raise ValueError(f"padding must be 'valid' or 'same'; received {padding!r}")


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
    if not isinstance(spec.batch_norm, bool):
        raise bad("batch_norm", "true or false", spec.batch_norm)
    if spec.head not in ("flatten", "gap"):
        raise bad("head", "'flatten' or 'gap'", spec.head)
    if not 0.0 <= spec.augment <= AUGMENT_MAX:
        raise bad("augment", f"a shift fraction in [0, {AUGMENT_MAX}]", spec.augment)
    _check_frontier(spec, bad)


def _check_frontier(spec: ArchSpec, bad: Any) -> None:
    """The issue-21 fields: pooling positions, transition width, rotation and zoom."""
    n = len(spec.conv_filters)
    if len(set(spec.pool_layers)) != len(spec.pool_layers) or any(not 1 <= i <= n for i in spec.pool_layers):
        raise bad("pool_layers", f"distinct conv layer numbers from 1 to {n} (this spec has {n} conv layers)",
                  list(spec.pool_layers))
    if spec.transition < 0:
        raise bad("transition", ">= 0 filters (0 = no transition conv)", spec.transition)
    if not 0.0 <= spec.rotation <= ROTATION_MAX:
        raise bad("rotation", f"degrees in [0, {ROTATION_MAX:g}]", spec.rotation)
    if not 0.0 <= spec.zoom <= ZOOM_MAX:
        raise bad("zoom", f"a zoom fraction in [0, {ZOOM_MAX}]", spec.zoom)


def pool_after(spec: ArchSpec, i: int) -> bool:
    """Does pooling (and conv dropout) follow conv layer ``i`` (0-based)?"""
    if spec.pool == "none":
        return False
    if spec.pool_layers:
        return i + 1 in spec.pool_layers
    last = i == len(spec.conv_filters) - 1
    return last or (spec.pool_every > 0 and (i + 1) % spec.pool_every == 0)


def plan(spec: ArchSpec, input_shape: tuple[int, ...] = (28, 28, 1), n_classes: int = 10) -> list[Layer]:
    """The layer sequence of ``spec`` on images of ``input_shape`` (H, W, C), with shapes, params and FLOPs.

    The one walk of a spec: :func:`summarize`, :func:`build_model` and the
    NumPy forward pass of :mod:`cnnsearch.model.forward` all follow it.

    Raises:
        ArchitectureError: an invalid value, or a feature map that would shrink
            to nothing (named by layer, with what to change).
    """
    check(spec)
    if len(input_shape) != 3:
        raise ArchitectureError(f"input_shape must be (height, width, channels); received {input_shape}")
    h, w, c = (int(d) for d in input_shape)
    out = _augment_layers(spec, (h, w, c))
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
        out += _conv_block(spec, (name, f"bn{i + 1}", f"relu{i + 1}"), (h, w, c), filters, k, spec.stride,
                           spec.padding)
        h, w, c = oh, ow, filters
        if pool_after(spec, i):
            pool_no += 1
            block = _pool_block(spec, pool_no, (h, w, c))
            out += block
            h, w, c = block[-1].output_shape
    return out + _head(spec, (h, w, c), n_classes)


def _augment_layers(spec: ArchSpec, shape: tuple[int, int, int]) -> list[Layer]:
    """Random shifts, rotations and zooms: no weights, no inference cost (active in training only)."""
    kinds = (("augment", spec.augment), ("rotate", spec.rotation), ("zoom", spec.zoom))
    return [Layer(kind, kind, shape, 0, 0, rate=float(v)) for kind, v in kinds if v]


def _conv_block(spec: ArchSpec, names: tuple[str, str, str], shape: tuple[int, int, int], filters: int, k: int,
                stride: int, padding: str) -> list[Layer]:
    """A conv layer (ReLU fused), or conv without bias + batch norm + ReLU; ``names``: conv, bn, relu."""
    h, w, c = shape
    oh, ow = conv_output(h, k, stride, padding), conv_output(w, k, stride, padding)
    bias = not spec.batch_norm
    out_shape = (oh, ow, filters)
    out = [Layer(names[0], "conv", out_shape, k * k * c * filters + (filters if bias else 0),
                 2 * oh * ow * filters * k * k * c, units=filters, kernel=k, stride=stride, padding=padding,
                 activation="" if spec.batch_norm else "relu", use_bias=bias)]
    if spec.batch_norm:
        # gamma, beta, moving mean and variance; a scale and a shift per value at inference.
        out.append(Layer(names[1], "batch_norm", out_shape, 4 * filters, 2 * oh * ow * filters, units=filters))
        out.append(Layer(names[2], "relu", out_shape, 0, 0))
    return out


def _pool_block(spec: ArchSpec, n: int, shape: tuple[int, int, int]) -> list[Layer]:
    """Pooling number ``n``, its optional 1x1 transition conv, then the conv dropout."""
    h, w, c = shape
    p = spec.pool_size
    ph, pw = conv_output(h, p, p, "valid"), conv_output(w, p, p, "valid")
    if ph < 1 or pw < 1:
        raise ArchitectureError(
            f"pool{n} ({p}x{p} {spec.pool} pooling) receives a {h}x{w} feature map and would shrink"
            f" it to nothing; use a smaller pool_size, padding='same', or pool less often"
        )
    # One comparison/add per window element per output value.
    out = [Layer(f"pool{n}", f"{spec.pool}pool", (ph, pw, c), 0, ph * pw * c * p * p, kernel=p, stride=p)]
    if spec.transition:
        if spec.transition > c:
            raise ArchitectureError(
                f"transition{n} (1x1 conv, {spec.transition} filters) receives {c} channels from pool{n}; a"
                f" transition narrows the channels: use transition <= {c}, or 0 for none"
            )
        out += _conv_block(spec, (f"transition{n}", f"bn_transition{n}", f"relu_transition{n}"), (ph, pw, c),
                           spec.transition, 1, 1, "valid")
    shape_out = out[-1].output_shape
    out.append(Layer(f"dropout_pool{n}", "dropout", shape_out, 0, 0, rate=spec.dropout_conv))
    return out


def _head(spec: ArchSpec, shape: tuple[int, int, int], n_classes: int) -> list[Layer]:
    """Flatten or global average pooling, the optional hidden dense layer, and the softmax output."""
    h, w, c = shape
    out: list[Layer] = []
    if spec.head == "gap":
        out.append(Layer("gap", "gap", (c,), 0, h * w * c))
        width = c
    else:
        width = h * w * c
        out.append(Layer("flatten", "flatten", (width,), 0, 0))
    if spec.dense_units:
        u = spec.dense_units
        out.append(Layer("dense1", "dense", (u,), width * u + u, 2 * width * u, units=u, activation="relu"))
        out.append(Layer("dropout_dense", "dropout", (u,), 0, 0, rate=spec.dropout_dense))
        width = u
    out.append(Layer("output", "dense", (n_classes,), width * n_classes + n_classes, 2 * width * n_classes,
                     units=n_classes, activation="softmax"))
    return out


def summarize(spec: ArchSpec, input_shape: tuple[int, ...] = (28, 28, 1), n_classes: int = 10) -> Summary:
    """Analytic layer table of ``spec`` on images of ``input_shape`` (H, W, C): :func:`plan` without dropout.

    Raises:
        ArchitectureError: as :func:`plan`.
    """
    return Summary([layer for layer in plan(spec, input_shape, n_classes) if layer.kind != "dropout"])


def build_model(spec: ArchSpec, input_shape: tuple[int, ...], n_classes: int) -> Any:
    """Build the (uncompiled) Keras model of ``spec``: one Keras layer per :func:`plan` layer, same names.

    The spec is checked analytically first, so an unbuildable spec raises
    :class:`~cnnsearch.ground.errors.ArchitectureError` without touching Keras.
    """
    steps = plan(spec, input_shape, n_classes)
    from cnnsearch.ground._tf import keras

    K = keras()
    L = K.layers
    model_layers: list[Any] = [K.Input(shape=tuple(input_shape), name="image")]
    for s in steps:
        act = s.activation or None
        if s.kind in ("augment", "rotate", "zoom"):
            model_layers.append(_augment_layer(L, s))
        elif s.kind == "conv":
            model_layers.append(L.Conv2D(s.units, (s.kernel, s.kernel), strides=s.stride, padding=s.padding,
                                         activation=act, use_bias=s.use_bias, name=s.name))
        elif s.kind == "batch_norm":
            model_layers.append(L.BatchNormalization(momentum=BN_MOMENTUM, epsilon=BN_EPSILON, name=s.name))
        elif s.kind == "relu":
            model_layers.append(L.Activation("relu", name=s.name))
        elif s.kind in ("maxpool", "avgpool"):
            cls = L.MaxPooling2D if s.kind == "maxpool" else L.AveragePooling2D
            model_layers.append(cls(pool_size=(s.kernel, s.kernel), name=s.name))
        elif s.kind == "dropout":
            model_layers.append(L.Dropout(s.rate, name=s.name))
        elif s.kind == "flatten":
            model_layers.append(L.Flatten(name=s.name))
        elif s.kind == "gap":
            model_layers.append(L.GlobalAveragePooling2D(name=s.name))
        elif s.name == "output":
            # float32 output even under a mixed-precision policy: softmax and the loss stay numerically stable.
            model_layers.append(L.Dense(s.units, activation=act, name=s.name, dtype="float32"))
        else:
            model_layers.append(L.Dense(s.units, activation=act, name=s.name))
    return K.Sequential(model_layers, name="cnnsearch")


def _augment_layer(L: Any, s: Layer) -> Any:
    """The Keras preprocessing layer of an augmentation step.

    Active in training only (Keras preprocessing layers pass inputs through at
    inference); constant zero fill: MNIST's background is black.
    """
    if s.kind == "rotate":
        # Keras's factor is a fraction of a full turn: 15 degrees either way = 15 / 360.
        return L.RandomRotation(s.rate / 360.0, fill_mode="constant", name=s.name)
    if s.kind == "zoom":
        # One factor for height, width kept in proportion (width_factor=None): a digit is not stretched.
        return L.RandomZoom(s.rate, fill_mode="constant", name=s.name)
    return L.RandomTranslation(s.rate, s.rate, fill_mode="constant", name=s.name)
