"""Fit and evaluate one :class:`~cnnsearch.model.arch.ArchSpec` with the reference's training settings.

The defaults of :class:`TrainConfig` are the reference's: categorical
cross-entropy, Adadelta(learning_rate=1.0, rho=0.95, epsilon=1e-7) (the old
Keras defaults: today's 0.001 trains the baseline to only ~84%), batch 128,
20 epochs, the last 10% of the training set for validation.
"""

from __future__ import annotations

import gc
import math
import os
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from cnnsearch.ground import interrupt
from cnnsearch.model import schedules
from cnnsearch.model.arch import REFERENCE, ArchSpec, build_model, summarize
from cnnsearch.ground.data import Splits
from cnnsearch.ground.errors import ConfigError, TrialFailed, check_known_keys

#: Optimizers a study may name, with the keyword arguments each accepts.
OPTIMIZERS = {
    "adadelta": ("learning_rate", "rho", "epsilon"),
    "adam": ("learning_rate", "beta_1", "beta_2", "epsilon"),
    # Adam with decoupled weight decay (Keras's default weight_decay: 0.004).
    "adamw": ("learning_rate", "weight_decay", "beta_1", "beta_2", "epsilon"),
    "sgd": ("learning_rate", "momentum", "nesterov"),
    "rmsprop": ("learning_rate", "rho", "momentum", "epsilon"),
}


#: Images per batch when evaluating and predicting (no gradients: larger than training's, same results).
EVAL_BATCH_SIZE = 512

#: TrainConfig fields added for issue 21, with their defaults. :meth:`TrainConfig.to_dict` leaves them out at
#: these values, so the stored settings of every older run are unchanged and identical runs are still reused.
NEW_FIELDS: dict[str, Any] = {"schedule": "constant", "schedule_args": {}, "label_smoothing": 0.0}

#: Keras dtype policies a run may use.
PRECISIONS = ("float32", "mixed_bfloat16")


@dataclass(frozen=True)
class TrainConfig:
    """How one spec is trained; stored on a study so a resumed run trains the same way."""

    epochs: int = REFERENCE.epochs  # full passes over the training subset
    batch_size: int = 128  # images per gradient step (reference: 128)
    train_limit: int = 0  # first N training images after the validation split; 0 = all 54,000
    optimizer: str = "adadelta"  # one of OPTIMIZERS
    learning_rate: float = 1.0  # Adadelta's old Keras default; 0.001 (today's) underfits badly
    optimizer_args: dict[str, Any] = field(default_factory=lambda: {"rho": 0.95, "epsilon": 1e-7})
    seed: int = 0  # weights, dropout and shuffling (keras.utils.set_random_seed)
    # Keras's XLA switch. False: full XLA (True) ran the seed model 10x slower on this CPU (70.5 vs 7.1 s an
    # epoch, README's benchmarks) and "auto" means no XLA on the TensorFlow backend anyway.
    jit_compile: bool | str = False
    precision: str = "float32"  # or "mixed_bfloat16" (opt-in: faster on AVX512-BF16 CPUs; see benchmarks)
    # Batches per compiled call in fit, evaluate and predict (Keras's steps_per_execution; Keras's default is 1).
    # 8, measured (tests/bench/bench_speed.py spe, 2026-11-29, idle 2-core AMD EPYC, median of 3 alternating):
    # training epochs 1.08-1.52x faster than 1 for the reference and an 8/16 model at 1 and 2 threads, never
    # slower (32 was slower once: 0.86x, small model, 1 thread); identical histories for a fixed seed.
    steps_per_execution: int = 8
    # Learning-rate schedule (schedules.SCHEDULES) and its parameters, fractions of the run: the same shape at the
    # search's fidelity and the confirmation's. "constant" = the reference's fixed learning rate.
    schedule: str = "constant"
    schedule_args: dict[str, float] = field(default_factory=dict)
    # Label smoothing of the cross-entropy (Keras's CategoricalCrossentropy): 0 = none, as the reference.
    label_smoothing: float = 0.0

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise ConfigError(f"epochs must be >= 1; received {self.epochs}")
        if self.batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1; received {self.batch_size}")
        if self.steps_per_execution < 1:
            raise ConfigError(f"steps_per_execution must be >= 1; received {self.steps_per_execution}")
        if self.train_limit < 0:
            raise ConfigError(f"train_limit must be >= 0 (0 = all training images); received {self.train_limit}")
        if self.precision not in PRECISIONS:
            raise ConfigError(f"precision must be one of {', '.join(PRECISIONS)}; received {self.precision!r}")
        if self.optimizer not in OPTIMIZERS:
            raise ConfigError(f"optimizer must be one of {', '.join(OPTIMIZERS)}; received {self.optimizer!r}")
        if not self.learning_rate > 0:
            raise ConfigError(f"learning_rate must be > 0; received {self.learning_rate}")
        unknown = sorted(set(self.optimizer_args) - set(OPTIMIZERS[self.optimizer]))
        if unknown:
            raise ConfigError(
                f"optimizer {self.optimizer!r} takes {', '.join(OPTIMIZERS[self.optimizer])};"
                f" received unknown argument(s) {', '.join(unknown)}"
            )
        schedules.check(self.schedule, self.schedule_args)
        if not 0.0 <= self.label_smoothing < 1.0:
            raise ConfigError(f"label_smoothing must be in [0, 1); received {self.label_smoothing}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict; :data:`NEW_FIELDS` at their defaults are left out (see there)."""
        return {k: v for k, v in asdict(self).items() if k not in NEW_FIELDS or v != NEW_FIELDS[k]}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TrainConfig":
        """Inverse of :meth:`to_dict`; unknown keys are an error."""
        check_known_keys(d, cls.__dataclass_fields__, "training setting(s)")
        return cls(**d)


@dataclass
class TrainResult:
    """What one fit produced."""

    model: Any  # the trained keras.Model
    history: dict[str, list[float]]  # loss, accuracy, val_loss, val_accuracy by epoch
    test_loss: float
    test_accuracy: float
    seconds: float  # wall time of fit + evaluate
    epoch_seconds: list[float]
    params: int
    flops: int  # analytic forward FLOPs per image
    test_predictions: np.ndarray | None = None  # predicted class per test image (for McNemar)

    @property
    def epochs_run(self) -> int:
        """Epochs actually run (fewer than asked when pruned or stopped on NaN)."""
        return len(self.history.get("loss", []))

    @property
    def val_accuracy(self) -> float:
        """Validation accuracy after the last epoch run: the search objective."""
        return float(self.history["val_accuracy"][-1])


def configure_threads(intra_op: int | None = None, inter_op: int | None = None) -> None:
    """Size TensorFlow's thread pools; call before the first model is built.

    Several worker processes on one machine each take ``cores // workers`` so
    they do not oversubscribe the cores.
    """
    from cnnsearch.ground._tf import tensorflow

    tf = tensorflow()
    try:
        if intra_op:
            tf.config.threading.set_intra_op_parallelism_threads(intra_op)
        if inter_op:
            tf.config.threading.set_inter_op_parallelism_threads(inter_op)
    except RuntimeError:
        # TensorFlow refuses once its runtime has started; the pools keep their size.
        pass


def device_line(threads: int | None = None) -> str:
    """The device TensorFlow trains on, in words: the GPU's name(s), or the CPU model and thread count.

    Args:
        threads: TensorFlow intra-op threads of the process that trains (None: this process's pool size,
            or every core available to it when the pool is left at TensorFlow's default).
    """
    from cnnsearch.ground._tf import tensorflow

    tf = tensorflow()
    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        names = []
        for gpu in gpus:
            try:
                details = tf.config.experimental.get_device_details(gpu)
            except Exception:  # details are best effort: the device itself is what matters
                details = {}
            names.append(str(details.get("device_name") or gpu.name))
        return f"GPU {', '.join(names)}"
    if not threads:
        threads = tf.config.threading.get_intra_op_parallelism_threads() or available_cores()
    return f"CPU {cpu_model()}, {threads} thread{'s' if threads != 1 else ''}"


def cpu_model() -> str:
    """The CPU's model name (/proc/cpuinfo on Linux, else what :mod:`platform` knows)."""
    import platform

    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if line.lower().startswith(("model name", "hardware", "cpu model")):
                    return " ".join(line.split(":", 1)[1].split())
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def available_cores() -> int:
    """The CPU cores this process may run on (its affinity mask: containers, taskset), else the count."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def make_optimizer(config: TrainConfig, train_images: int = 0) -> Any:
    """The Keras optimizer named by ``config``, its learning rate scheduled over a run on ``train_images`` images.

    ``train_images`` sets the run's optimizer steps (epochs x batches per epoch), which a schedule needs.
    """
    from cnnsearch.ground._tf import keras

    opt = keras().optimizers
    cls = {"adadelta": opt.Adadelta, "adam": opt.Adam, "adamw": opt.AdamW, "sgd": opt.SGD,
           "rmsprop": opt.RMSprop}[config.optimizer]
    steps = config.epochs * max(1, math.ceil(train_images / config.batch_size))
    lr = schedules.build(config.schedule, config.schedule_args, config.learning_rate, steps)
    return cls(learning_rate=lr, **config.optimizer_args)


def fit(
    spec: ArchSpec | None,
    data: Splits,
    config: TrainConfig = TrainConfig(),
    *,
    callbacks: Sequence[Any] = (),
    on_epoch: Callable[[int, dict[str, float]], None] | None = None,
    verbose: int = 0,
    predict_test: bool = False,
    build: Callable[[], Any] | None = None,
) -> TrainResult:
    """Train ``spec`` (or the model ``build()`` returns) on ``data`` and evaluate it on the test set.

    Args:
        spec: The architecture (None when ``build`` makes the model).
        data: Training/validation/test arrays from :func:`cnnsearch.ground.data.split`
            (already cut to ``config.train_limit`` there: fit trains on all of ``data.x_train``).
        config: Training settings.
        callbacks: Extra Keras callbacks (e.g. optuna-integration's pruning callback).
        on_epoch: Called with (epoch index, logs) after each epoch, for progress lines.
        verbose: Keras's own progress output (0 = none).
        predict_test: Also return the predicted class of every test image.
        build: Makes the keras.Model instead of ``spec`` (called after the seed is set, so its
            initial weights are seeded too); it must end in one softmax unit per class. It is
            compiled here, with categorical cross-entropy and ``config``'s optimizer.

    Raises:
        ArchitectureError: the spec cannot be built (checked before Keras is touched).
        TrialFailed: the loss became NaN or infinite, or ``build``'s model has the wrong output size.
    """
    summary = summarize(spec, data.input_shape, data.n_classes) if spec is not None else None
    K = _session(config, verbose)
    model = _compiled(spec, data, config, build)
    y = {part: K.utils.to_categorical(getattr(data, f"y_{part}"), data.n_classes) for part in ("train", "val", "test")}
    epoch_seconds: list[float] = []
    start = time.perf_counter()
    # NumPy arrays straight to Keras: an A/B against a tf.data pipeline (shuffle, batch, prefetch) at
    # 18,000 images gave 10.0 vs 10.1 s an epoch, so the simpler path stays.
    history = model.fit(
        data.x_train, y["train"], batch_size=config.batch_size, epochs=config.epochs,
        validation_data=(data.x_val, y["val"]), shuffle=True, verbose=verbose,
        callbacks=[_epoch_timer(K, model, epoch_seconds, on_epoch), *callbacks],
    )
    hist = {k: [float(v) for v in vals] for k, vals in history.history.items()}
    losses = hist.get("loss", [])
    if not losses or any(not math.isfinite(v) for v in losses + hist.get("val_loss", [])):
        epoch = next((i for i, v in enumerate(losses) if not math.isfinite(v)), len(losses))
        raise TrialFailed(f"loss became NaN or infinite at epoch {epoch + 1}; lower the learning rate")
    test_loss, test_acc = model.evaluate(data.x_test, y["test"], batch_size=EVAL_BATCH_SIZE, verbose=0)
    preds = None
    if predict_test:
        preds = np.argmax(model.predict(data.x_test, batch_size=EVAL_BATCH_SIZE, verbose=0), axis=1)
    seconds = time.perf_counter() - start
    return TrainResult(model=model, history=hist, test_loss=float(test_loss), test_accuracy=float(test_acc),
                       seconds=seconds, epoch_seconds=epoch_seconds,
                       params=summary.params if summary else int(model.count_params()),
                       flops=summary.flops if summary else 0, test_predictions=preds)


def _session(config: TrainConfig, verbose: int) -> Any:
    """A fresh Keras session seeded by ``config``; returns the keras module."""
    from cnnsearch.ground._tf import keras

    K = keras()
    release()  # clears Keras's global state too, so the logging switch below comes after it
    if verbose:
        K.config.enable_interactive_logging()
    else:
        # Keras prints some notices (TerminateOnNaN's "Invalid loss") on stdout, which must stay
        # clean for --json; without interactive logging they go to the (quiet) absl log instead.
        K.config.disable_interactive_logging()
    K.utils.set_random_seed(config.seed)
    return K


def _compiled(spec: ArchSpec | None, data: Splits, config: TrainConfig, build: Callable[[], Any] | None) -> Any:
    """The model of ``spec`` (or ``build()``), compiled with ``config``'s optimizer at its precision."""
    from cnnsearch.ground._tf import keras

    K = keras()
    K.mixed_precision.set_global_policy(config.precision)
    try:
        model = build() if build is not None else build_model(spec, data.input_shape, data.n_classes)
    finally:
        # The policy is global: later models (figures, other trials) start from float32 again.
        K.mixed_precision.set_global_policy("float32")
    out = tuple(model.output_shape) if hasattr(model, "output_shape") else None
    if out is None or out[-1] != data.n_classes:
        raise TrialFailed(f"the model built has output shape {out}; expected (None, {data.n_classes}): one softmax"
                          " unit per class", kind="invalid_architecture")
    loss = K.losses.CategoricalCrossentropy(label_smoothing=config.label_smoothing)
    model.compile(loss=loss, optimizer=make_optimizer(config, len(data.x_train)), metrics=["accuracy"],
                  jit_compile=config.jit_compile, steps_per_execution=config.steps_per_execution)
    return model


def _epoch_timer(K: Any, model: Any, epoch_seconds: list[float],
                 on_epoch: Callable[[int, dict[str, float]], None] | None) -> Any:
    """A callback timing each epoch, stopping on a NaN loss, and passing (epoch, logs) to ``on_epoch``."""
    marks = {"t": 0.0}

    def _begin(epoch: int, logs: dict[str, float] | None = None) -> None:
        marks["t"] = time.perf_counter()

    def _end(epoch: int, logs: dict[str, float] | None = None) -> None:
        epoch_seconds.append(time.perf_counter() - marks["t"])
        logs = dict(logs or {})
        if not all(math.isfinite(float(logs.get(k, 0.0))) for k in ("loss", "val_loss")):
            model.stop_training = True  # fit() returns; the NaN check after it fails the trial
        if on_epoch is not None:
            on_epoch(epoch, logs)
        interrupt.check()  # a signal swallowed inside TensorFlow's C code stops the fit here, between epochs

    # NaN is checked at the end of each epoch, not with keras.callbacks.TerminateOnNaN: a batch-level
    # callback makes Keras pull the loss off the device after every step, a sync per batch for at most
    # one epoch saved on a diverging trial. Listed first so a NaN never reaches a pruner.
    return K.callbacks.LambdaCallback(on_epoch_begin=_begin, on_epoch_end=_end)


def release() -> None:
    """Free the previous models' graph state and memory (between trials).

    ``clear_session`` is not enough with TensorFlow 2.21: every traced
    ``tf.custom_gradient`` registers a "CustomGradient-N" entry in TensorFlow's
    global gradient registry that is never removed, and its closure keeps the
    whole traced training graph alive, about 8.5 MB per trained model (measured:
    RSS +8.4 MB per model over 20 models, +0.1 MB with the purge). Those
    entries are only needed while a model's gradient is being traced, which is
    over once its training function exists, so they are dropped here.
    """
    from cnnsearch.ground._tf import keras

    keras().backend.clear_session()
    from cnnsearch.ground.private import gradient_registry

    registry = gradient_registry()
    if registry is not None:
        for name in [k for k in registry if k.startswith("CustomGradient-")]:
            del registry[name]
    gc.collect()


def versions() -> dict[str, str]:
    """Framework versions, stored with each trial."""
    import platform

    import optuna

    from cnnsearch.ground._tf import keras, tensorflow

    return {"python": platform.python_version(), "tensorflow": tensorflow().__version__,
            "keras": keras().__version__, "optuna": optuna.__version__, "numpy": np.__version__}
