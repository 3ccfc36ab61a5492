"""Issue 21, the parts small accurate CNNs are made of: arithmetic = Keras, NumPy forward = Keras, schedules = formulas."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from cnnsearch.ground.errors import ArchitectureError, ConfigError
from cnnsearch.model import forward, schedules
from cnnsearch.model.arch import ArchSpec, build_model, plan, summarize
from cnnsearch.model.train import TrainConfig, fit, make_optimizer
from test_forward import _randomised

# One spec per new part, and one with all of them (batch norm folding into a transition conv included).
SPECS = {
    "transition": ArchSpec(conv_filters=(8, 12), kernel_sizes=(3, 3), pool_every=1, transition=6, dense_units=16),
    "pool_layers": ArchSpec(conv_filters=(6, 8, 10, 12), kernel_sizes=(3, 3, 3, 3), pool_layers=(2, 4),
                            dense_units=0),
    "deep8": ArchSpec(conv_filters=(4, 6, 8, 8, 10, 10, 12, 12), kernel_sizes=(3,) * 8, padding="same",
                      pool_layers=(2, 5), head="gap", dense_units=0),
    "gap_no_dense": ArchSpec(conv_filters=(8, 16), head="gap", dense_units=0),
    "rotate_zoom": ArchSpec(conv_filters=(4, 8), dense_units=16, rotation=15.0, zoom=0.1),
    "all": ArchSpec(conv_filters=(8, 12, 16, 8, 12, 10), kernel_sizes=(3,) * 6, pool_layers=(2,), transition=8,
                    batch_norm=True, pool="avg", head="gap", dense_units=0, rotation=10.0, zoom=0.1, augment=0.05),
}


@pytest.mark.parametrize("name", list(SPECS))
def test_params_and_shapes_equal_keras(name: str) -> None:
    spec = SPECS[name]
    s = summarize(spec, (28, 28, 1), 10)
    model = build_model(spec, (28, 28, 1), 10)
    assert model.count_params() == s.params
    for layer in s.layers:
        assert tuple(model.get_layer(layer.name).output.shape[1:]) == layer.output_shape, layer.name
        assert model.get_layer(layer.name).count_params() == layer.params, layer.name


def _profiled_flops(model: Any) -> dict[str, int]:
    """FLOPs per layer of ``model``'s frozen inference graph, as TensorFlow's profiler counts them.

    Left out, because the arithmetic does not count them: bias adds and the softmax (under 1% of a
    conv's work), and batch norm's per-channel constants (computed once, folded at inference).
    """
    import tensorflow as tf
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    shape = [1, *model.inputs[0].shape[1:]]
    fn = tf.function(lambda x: model(x, training=False)).get_concrete_function(tf.TensorSpec(shape, tf.float32))
    opts = tf.compat.v1.profiler.ProfileOptionBuilder.float_operation()
    opts["output"] = "none"
    prof = tf.compat.v1.profiler.profile(graph=convert_variables_to_constants_v2(fn).graph, options=opts)
    per_channel = ("batchnorm/Rsqrt", "batchnorm/add", "batchnorm/mul", "batchnorm/mul_2", "batchnorm/sub")
    out: dict[str, int] = {}
    for node in prof.children:
        parts = node.name.split("/")
        op = "/".join(parts[2:])
        if op.endswith(("BiasAdd", "Softmax")) or op in per_channel:
            continue
        layer = parts[1].rsplit("_", 1)[0]  # Keras scopes a layer as <name>_<call count>
        out[layer] = out.get(layer, 0) + node.total_float_ops
    return out


@pytest.mark.parametrize("name", ["transition", "pool_layers", "deep8", "gap_no_dense", "all"])
def test_flops_equal_tensorflow_profiler(name: str) -> None:
    spec = SPECS[name]
    s = summarize(spec, (28, 28, 1), 10)
    measured = _profiled_flops(build_model(spec, (28, 28, 1), 10))
    ours = {layer.name: layer.flops for layer in s.layers if layer.flops}
    assert ours == measured
    assert s.flops == sum(measured.values())


@pytest.mark.parametrize("name", list(SPECS))
def test_numpy_forward_equals_keras_predict(name: str) -> None:
    spec, shape, n_classes = SPECS[name], (28, 28, 1), 3
    model = _randomised(spec, shape, n_classes)
    x = np.random.default_rng(1).uniform(0, 1, (24, *shape)).astype(np.float32)
    want = model.predict(x, verbose=0)
    assert want.std() > 1e-3  # not a degenerate softmax that any forward pass would match
    got = forward.predict_proba(forward.conv_weights(model), spec, x, batch=10)
    np.testing.assert_allclose(got, want, atol=2e-5)
    if spec.transition:
        maps = forward.feature_maps(forward.conv_weights(model), spec, x, ["transition1"])
        keras_name = "relu_transition1" if spec.batch_norm else "transition1"
        from cnnsearch.ground._tf import keras

        sub = keras().Model(model.inputs, model.get_layer(keras_name).output)
        np.testing.assert_allclose(maps["transition1"], sub.predict(x, verbose=0), atol=2e-5)


def test_augmentation_is_inactive_at_inference() -> None:
    """Rotation, zoom and shifts change training inputs, never predictions."""
    spec = ArchSpec(conv_filters=(4, 8), dense_units=16, dropout_conv=0.0, dropout_dense=0.0, rotation=30.0,
                    zoom=0.2, augment=0.1)
    model = _randomised(spec, (16, 16, 1), 3)
    x = np.random.default_rng(2).uniform(0, 1, (16, 16, 16, 1)).astype(np.float32)
    inference = model.predict(x, verbose=0)
    np.testing.assert_allclose(np.asarray(model(x, training=False)), inference, atol=1e-6)
    np.testing.assert_allclose(forward.predict_proba(forward.conv_weights(model), spec, x), inference, atol=2e-5)
    training = np.asarray(model(x, training=True))  # no dropout, no batch norm: only augmentation can differ
    assert np.abs(training - inference).max() > 1e-3
    augmented = np.asarray(model.get_layer("rotate")(x, training=True))
    assert not np.allclose(augmented, x) and np.allclose(model.get_layer("rotate")(x, training=False), x)


def _cos(start: float, end: float, pct: float) -> float:
    return end + (start - end) / 2 * (1 + math.cos(math.pi * pct))


# Each schedule's learning rate at step t of a 100-step run with peak learning rate 0.5, written out by hand.
TOTAL, LR = 100, 0.5
FORMULAS = {
    "constant": ({}, lambda t: LR),
    "step": ({"every": 0.3, "factor": 0.1}, lambda t: LR * 0.1 ** (t // 30)),
    "cosine": ({"warmup": 0.1, "alpha": 0.05},
               lambda t: LR * t / 10 if t < 10 else LR * ((1 - 0.05) * 0.5 * (1 + math.cos(math.pi * min(t - 10, 90) / 90))
                                                         + 0.05)),
    "cosine_no_warmup": ({"warmup": 0.0}, lambda t: LR * 0.5 * (1 + math.cos(math.pi * min(t, 100) / 100))),
    "onecycle": ({"pct_start": 0.25, "div_factor": 10.0, "final_div_factor": 100.0},
                 lambda t: _cos(0.05, LR, min(t, 99) / 24) if min(t, 99) <= 24
                 else _cos(LR, 0.0005, (min(t, 99) - 24) / 75)),
}


@pytest.mark.parametrize("name", list(FORMULAS))
def test_schedule_learning_rate_equals_its_formula(name: str) -> None:
    args, formula = FORMULAS[name]
    kind = name.split("_")[0]
    lr = schedules.build(kind, args, LR, TOTAL)
    for t in (0, 1, 9, 10, 24, 25, 29, 30, 31, 50, 60, 61, 99, 100, 150):
        got = float(lr(t)) if callable(lr) else lr
        assert got == pytest.approx(formula(t), rel=1e-5, abs=1e-7), (name, t)
    if kind == "onecycle":  # the plain-Python twin the docs cite is the same formula
        assert schedules.one_cycle(40, LR, TOTAL, 0.25, 10.0, 100.0) == pytest.approx(formula(40))


def test_adamw_label_smoothing_and_one_cycle_train(tiny_npz: Path) -> None:
    from cnnsearch.ground import data as data_mod

    splits = data_mod.split(data_mod.load(tiny_npz))
    config = TrainConfig(epochs=2, batch_size=32, optimizer="adamw", learning_rate=0.01,
                         optimizer_args={"weight_decay": 0.01}, schedule="onecycle", schedule_args={"pct_start": 0.3},
                         label_smoothing=0.1)
    opt = make_optimizer(config, len(splits.x_train))
    assert type(opt).__name__ == "AdamW" and opt.weight_decay == pytest.approx(0.01)
    r = fit(ArchSpec(conv_filters=(4, 8), dense_units=0, head="gap", rotation=10.0), splits, config)
    steps = 2 * math.ceil(len(splits.x_train) / 32)
    assert int(r.model.optimizer.iterations) == steps
    end = schedules.one_cycle(steps, 0.01, steps, 0.3, 25.0, 1e4)
    assert float(r.model.optimizer.learning_rate) == pytest.approx(end, rel=1e-4)
    # Label smoothing 0.1 on 3 classes: the loss cannot fall below the smoothed targets' entropy.
    floor = -(0.1 / 3 * 2 * math.log(0.1 / 3) + (0.9 + 0.1 / 3) * math.log(0.9 + 0.1 / 3))
    assert min(r.history["loss"]) > floor - 1e-3


@pytest.mark.parametrize("spec, match", [
    (ArchSpec(conv_filters=(8, 16), pool_every=1, transition=12), r"transition1 .* receives 8 channels"),
    (ArchSpec(rotation=190.0), r"rotation must be degrees in \[0, 180\]"),
    (ArchSpec(zoom=0.9), r"zoom must be a zoom fraction"),
    (ArchSpec(pool_layers=(3,)), "pool_layers must be distinct conv layer numbers from 1 to 2"),
    (ArchSpec(conv_filters=(8,) * 8, kernel_sizes=(3,) * 8, pool_layers=(1, 2, 3)), "would shrink it to nothing"),
])
def test_bad_parts_are_refused_before_keras(spec: ArchSpec, match: str) -> None:
    with pytest.raises(ArchitectureError, match=match):
        plan(spec, (28, 28, 1), 10)


@pytest.mark.parametrize("kwargs, match", [
    ({"schedule": "onecycle", "schedule_args": {"pct_start": 1.5}}, r"schedule.pct_start: expected a number in \(0, 1\)"),
    ({"schedule": "step", "schedule_args": {"factor": 0.0}}, r"schedule.factor: expected a number in \(0, 1\]"),
    ({"schedule": "cosine", "schedule_args": {"warmup": 1.0}}, r"schedule.warmup: expected a number in \[0, 1\)"),
    ({"schedule": "cosine", "schedule_args": {"every": 0.3}}, "expected a parameter of the 'cosine' schedule"),
    ({"schedule": "linear"}, "schedule: expected one of constant, step, cosine, onecycle"),
    ({"label_smoothing": 1.0}, r"label_smoothing must be in \[0, 1\)"),
])
def test_bad_training_settings_are_refused(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        TrainConfig(**kwargs)


def test_new_fields_at_defaults_keep_the_stored_form() -> None:
    """Older stored specs and settings still compare equal, so identical runs are still found and reused."""
    assert set(ArchSpec().to_dict()) == {"conv_filters", "kernel_sizes", "stride", "padding", "pool", "pool_size",
                                         "pool_every", "dropout_conv", "dense_units", "dropout_dense", "batch_norm",
                                         "head", "augment"}
    assert "schedule" not in TrainConfig().to_dict()
    spec = SPECS["all"]
    assert ArchSpec.from_dict(spec.to_dict()) == spec
    cfg = TrainConfig(schedule="step", schedule_args={"every": 0.5}, label_smoothing=0.1)
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg
