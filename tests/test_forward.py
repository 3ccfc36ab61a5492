"""cnnsearch.model.forward (predict_proba, feature_maps) equals Keras's on every layer kind of the plan."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from cnnsearch.model import forward
from cnnsearch.model.arch import ArchSpec, build_model, plan, read_weights, summarize

SPECS = {
    "reference": ArchSpec(conv_filters=(4, 8), dense_units=16),
    "batch_norm": ArchSpec(conv_filters=(4, 8), dense_units=16, batch_norm=True),
    "gap": ArchSpec(conv_filters=(4, 8), head="gap", dense_units=0),
    "augment": ArchSpec(conv_filters=(4, 8), dense_units=16, augment=0.1),
    "all": ArchSpec(conv_filters=(6, 8, 12), kernel_sizes=(3, 3, 3), padding="same", pool="avg", pool_every=1,
                    batch_norm=True, head="gap", augment=0.05, dense_units=8),
}


def _randomised(spec: ArchSpec, shape: tuple[int, int, int], n_classes: int) -> object:
    """A model with random weights everywhere, batch norm's moving statistics included (not the identity)."""
    model = build_model(spec, shape, n_classes)
    rng = np.random.default_rng(0)
    for layer in model.layers:
        ws = layer.get_weights()
        if not ws:
            continue
        if layer.name.startswith("bn"):
            c = ws[0].shape
            ws = [rng.uniform(0.5, 2, c), rng.normal(0, 0.3, c), rng.normal(0, 0.5, c), rng.uniform(0.2, 3, c)]
        else:
            ws = [rng.normal(0, 0.4, w.shape) for w in ws]
        layer.set_weights([w.astype(np.float32) for w in ws])
    return model


@pytest.mark.parametrize("name", list(SPECS))
def test_numpy_forward_equals_keras_predict(name: str, tmp_path: Path) -> None:
    from cnnsearch.ground._tf import keras

    spec, shape, n_classes = SPECS[name], (12, 12, 1), 3
    model = _randomised(spec, shape, n_classes)
    x = np.random.default_rng(1).uniform(0, 1, (40, *shape)).astype(np.float32)
    want = model.predict(x, verbose=0)
    assert want.std() > 1e-3  # not a degenerate softmax that any forward pass would match
    got = forward.predict_proba(forward.conv_weights(model), spec, x, batch=16)
    np.testing.assert_allclose(got, want, atol=2e-5)

    # The same from a saved .keras file, read without TensorFlow.
    path = tmp_path / "m.keras"
    model.save(path)
    stored = read_weights(path)
    assert set(stored) == {s.name for s in plan(spec, shape, n_classes) if s.kind in ("conv", "batch_norm", "dense")}
    np.testing.assert_allclose(forward.predict_proba(stored, spec, x), want, atol=2e-5)

    # Feature maps: a conv block's activation after ReLU (after batch norm when there is one).
    blocks = [s.name for s in plan(spec, shape, n_classes) if s.kind == "conv"]
    outs = [model.get_layer(b.replace("conv", "relu") if spec.batch_norm else b).output for b in blocks]
    keras_maps = keras().Model(model.inputs, outs).predict(x, verbose=0)
    ours = forward.feature_maps(stored, spec, x, blocks)
    for b, k in zip(blocks, keras_maps if len(blocks) > 1 else [keras_maps]):
        np.testing.assert_allclose(ours[b], k, atol=2e-5)


@pytest.mark.parametrize("name", list(SPECS))
def test_new_layer_arithmetic_matches_keras(name: str) -> None:
    spec = SPECS[name]
    s = summarize(spec, (28, 28, 1), 10)
    model = build_model(spec, (28, 28, 1), 10)
    assert model.count_params() == s.params
    for layer in s.layers:
        assert tuple(model.get_layer(layer.name).output.shape[1:]) == layer.output_shape
        assert model.get_layer(layer.name).count_params() == layer.params, layer.name


def test_new_layer_params_and_flops_by_hand() -> None:
    base = summarize(ArchSpec())
    bn = summarize(ArchSpec(batch_norm=True))
    # Batch norm: conv biases go (32 + 64), gamma/beta/mean/variance come (4 x 96); 2 FLOPs per conv output.
    assert bn.params - base.params == -96 + 4 * 96
    assert bn.flops - base.flops == 2 * (26 * 26 * 32 + 24 * 24 * 64)
    gap = summarize(ArchSpec(head="gap"))
    # GAP: the dense layer sees 64 values instead of 12*12*64; averaging costs one add per value.
    assert gap.params == 320 + 18_496 + (64 * 128 + 128) + 1_290
    assert gap.flops - base.flops == 12 * 12 * 64 - 2 * 128 * (9216 - 64)
    aug = summarize(ArchSpec(augment=0.1))
    assert (aug.params, aug.flops) == (base.params, base.flops)  # inactive at inference, no weights
