"""The dimensions small accurate CNNs are made of: batch_norm, head, augment, optimizer with its own learning rate."""

from __future__ import annotations

import re

import pytest
from optuna.trial import FixedTrial

from cnnsearch.search import limits
from cnnsearch.search import points
from cnnsearch.search import space
from cnnsearch.model.arch import ArchSpec
from cnnsearch.ground.errors import ConfigError
from cnnsearch.model.train import TrainConfig

NEW = """
[training]
epochs = 2
[space]
batch_norm = [false, true]
head = ["flatten", "gap"]
augment = [0.0, 0.05, 0.1]
optimizer = ["adadelta", "adam"]
adadelta_learning_rate = { low = 0.3, high = 2.0, log = true }
adam_learning_rate = { low = 3e-4, high = 3e-3, log = true }
"""


def test_reference_is_a_point_and_adam_rate_is_conditional() -> None:
    sp = space.parse(NEW)
    base = points.baseline_params(sp)
    assert base == {"batch_norm": False, "head": "flatten", "augment": 0.0, "optimizer": "adadelta",
                    "adadelta_learning_rate": 1.0}  # adam_learning_rate: not asked for Adadelta
    spec, overrides = points.suggest(FixedTrial(base), sp)
    assert spec == ArchSpec()
    assert TrainConfig(**overrides) == TrainConfig()


def test_adam_point_trains_with_adam_and_its_own_rate() -> None:
    sp = space.parse(NEW)
    point = {"batch_norm": True, "head": "gap", "augment": 0.1, "optimizer": "adam", "adam_learning_rate": 1e-3}
    spec, overrides = points.suggest(FixedTrial(point), sp)  # FixedTrial raises if adadelta's rate were asked
    assert (spec.batch_norm, spec.head, spec.augment) == (True, "gap", 0.1)
    cfg = TrainConfig(**overrides)
    assert (cfg.optimizer, cfg.learning_rate, cfg.optimizer_args) == ("adam", 1e-3, {})


@pytest.mark.parametrize("line, message", [
    ("batch_norm = [0, 1]", "space.batch_norm: expected true/false value(s)"),
    ("head = ['flatten', 'avg']", "space.head: expected one of flatten, gap"),
    ("augment = [0.0, 0.7]", "space.augment: expected a shift fraction in [0, 0.5]"),
    ("optimizer = ['adadelta', 'sgd']", "space.optimizer: expected one of adadelta, adam"),
    ("adam_learning_rate = { low = 0.0, high = 0.1 }", "expected a learning rate > 0"),
    ("augment = [0.05, 0.1]", "space.augment: expected a space holding the reference's value 0.0"),
])
def test_bad_new_dimensions(line: str, message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        space.parse(f"[space]\n{line}\n")


def test_size_limits_are_study_keys() -> None:
    sp = space.parse("[study]\nmax_params = 119988\nmax_flops = 10000000\n[space]\nconv1_filters = [16, 32]\n")
    assert sp.study["max_params"] == 119988 and sp.constrained
    with pytest.raises(ConfigError, match="study.max_params: expected a non-negative integer"):
        space.parse("[study]\nmax_params = -1\n[space]\nconv1_filters = [16, 32]\n")


def test_small_space_holds_keras_io_like_winners() -> None:
    """studies/small.toml: the limits, and keras.io-like points with batch norm, shifts and Adam are feasible."""
    from pathlib import Path

    from cnnsearch.model.arch import summarize

    sp = space.load(Path(__file__).resolve().parents[1] / "studies" / "small.toml")
    assert (sp.study["max_params"], sp.study["max_flops"], sp.constrained) == (119988, 10_000_000, True)
    keras_io = {"conv_layers": 2, "conv1_filters": 32, "conv2_filters": 64, "padding": "valid", "pool_every": 1,
                "dropout_conv": 0.25, "dense_units": 0, "dropout_dense": 0.5, "batch_norm": False, "head": "flatten", "augment": 0.0,
                "optimizer": "adadelta", "adadelta_learning_rate": 1.0}
    variant = {**keras_io, "batch_norm": True, "augment": 0.1, "optimizer": "adam", "adam_learning_rate": 1e-3}
    del variant["adadelta_learning_rate"]
    for point in (keras_io, variant):
        spec, _ = points.suggest(FixedTrial(point), sp)
        s = summarize(spec)
        assert limits.infeasible_reason(sp, s) == "" and s.params < 40_000, point
    assert summarize(points.suggest(FixedTrial(keras_io), sp)[0]).params == 34_826
    # The reference itself is over the limit: trial 0 trains as the comparison but is never a candidate.
    ref, _ = points.suggest(FixedTrial(points.baseline_params(sp)), sp)
    assert "over the size limit" in limits.infeasible_reason(sp, summarize(ref))
