from __future__ import annotations

import pytest

from cnnsearch.model.arch import ArchSpec, build_model, conv_output, summarize
from cnnsearch.ground.errors import ArchitectureError


def test_seed_spec_matches_the_reference() -> None:
    s = summarize(ArchSpec(), (28, 28, 1), 10)
    assert s.params == 1_199_882
    shapes = {layer.name: layer.output_shape for layer in s.layers}
    assert shapes["conv1"] == (26, 26, 32)
    assert shapes["conv2"] == (24, 24, 64)
    assert shapes["pool1"] == (12, 12, 64)
    assert shapes["flatten"] == (9216,)
    params = {layer.name: layer.params for layer in s.layers}
    assert params == {"conv1": 320, "conv2": 18_496, "pool1": 0, "flatten": 0, "dense1": 1_179_776, "output": 1_290}
    # 2 FLOPs per multiply-add: conv2 does 24*24*64 outputs of 3*3*32 MACs.
    assert {layer.name: layer.flops for layer in s.layers}["conv2"] == 2 * 24 * 24 * 64 * 288


@pytest.mark.parametrize("n, k, s, pad, out", [(28, 3, 1, "valid", 26), (28, 5, 2, "valid", 12), (28, 5, 2, "same", 14),
                                               (3, 5, 1, "valid", 0), (7, 2, 2, "valid", 3)])
def test_conv_output(n: int, k: int, s: int, pad: str, out: int) -> None:
    assert conv_output(n, k, s, pad) == out


@pytest.mark.parametrize("spec, match", [
    (ArchSpec(conv_filters=(32, 64, 64, 64), kernel_sizes=(5, 5, 5, 5), pool_every=1), "would shrink it to nothing"),
    (ArchSpec(conv_filters=(8, 8, 8, 8), kernel_sizes=(9, 9, 9, 9)), "conv4 .* would shrink it to nothing"),
    (ArchSpec(pool_size=30, padding="same"), "pool1 .* would shrink"),
    (ArchSpec(conv_filters=(0, 64)), "conv_filters must be positive"),
    (ArchSpec(kernel_sizes=(3,)), "2 conv layers but 1 kernel sizes"),
    (ArchSpec(dropout_conv=1.0), r"dropout_conv must be a rate in \[0, 1\)"),
    (ArchSpec(padding="full"), "padding must be 'valid' or 'same'"),
    (ArchSpec(conv_filters=(), kernel_sizes=()), "at least one conv layer"),
])
def test_invalid_specs_are_rejected_before_keras(spec: ArchSpec, match: str) -> None:
    with pytest.raises(ArchitectureError, match=match):
        summarize(spec, (28, 28, 1), 10)


def test_round_trip_dict() -> None:
    spec = ArchSpec(conv_filters=[16, 32, 48], kernel_sizes=[3, 5, 3], pool="avg", pool_every=2)  # type: ignore[arg-type]
    assert ArchSpec.from_dict(spec.to_dict()) == spec
    with pytest.raises(ArchitectureError, match="unknown ArchSpec field"):
        ArchSpec.from_dict({"filters": 3})


@pytest.mark.parametrize("spec, input_shape, n_classes", [
    (ArchSpec(), (28, 28, 1), 10),
    (ArchSpec(conv_filters=(16, 32, 48), kernel_sizes=(5, 3, 3), padding="same", pool="avg", pool_every=1,
              stride=1, dense_units=0), (28, 28, 1), 10),
    (ArchSpec(conv_filters=(8,), kernel_sizes=(3,), stride=2, pool_size=3), (12, 12, 3), 4),
    (ArchSpec(pool="none", dense_units=64), (12, 12, 1), 3),
])
def test_keras_agrees_with_arithmetic(spec: ArchSpec, input_shape: tuple[int, int, int], n_classes: int) -> None:
    s = summarize(spec, input_shape, n_classes)
    model = build_model(spec, input_shape, n_classes)
    assert model.count_params() == s.params
    for layer in s.layers:
        assert tuple(model.get_layer(layer.name).output.shape[1:]) == layer.output_shape


def test_build_model_rejects_without_importing_keras(monkeypatch: pytest.MonkeyPatch) -> None:
    import cnnsearch.ground._tf as tfmod

    def boom() -> None:
        raise AssertionError("Keras was touched for an invalid spec")

    monkeypatch.setattr(tfmod, "keras", boom)
    with pytest.raises(ArchitectureError):
        build_model(ArchSpec(kernel_sizes=(15, 15)), (28, 28, 1), 10)


def test_reference_figures_have_one_owner() -> None:
    from cnnsearch.model.arch import REFERENCE

    assert summarize(ArchSpec(), (28, 28, 1), 10).params == REFERENCE.params
    assert (REFERENCE.test_accuracy, REFERENCE.test_loss, REFERENCE.epochs) == (0.9915, 0.0284, 20)
    with pytest.raises(Exception):
        REFERENCE.epochs = 10  # type: ignore[misc]  # frozen


def test_from_dict_checks_share_one_message() -> None:
    from cnnsearch.ground.errors import ConfigError
    from cnnsearch.model.train import TrainConfig

    with pytest.raises(ArchitectureError, match=r"unknown ArchSpec field\(s\) colour; known: augment, batch_norm, conv_filters"):
        ArchSpec.from_dict({"colour": 1})
    with pytest.raises(ConfigError, match=r"unknown training setting\(s\) colour; known: batch_size"):
        TrainConfig.from_dict({"colour": 1})
