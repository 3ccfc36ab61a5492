"""The one-line rendering of a trial's choices."""

from __future__ import annotations

from cnnsearch.model.arch import ArchSpec
from cnnsearch.ground.describe import choices, rate


def test_reference_renders_as_in_the_readme() -> None:
    assert choices(ArchSpec().to_dict()) == "conv 32k3 > 64k3 | pool 2 | drop .25/.50 | dense 128"


def test_non_reference_choices_show() -> None:
    spec = ArchSpec(conv_filters=(16, 64, 128), kernel_sizes=(5, 3, 3), stride=2, padding="same", pool="avg",
                    pool_every=1, dropout_conv=0.15, dense_units=0).to_dict()
    text = choices(spec, {"learning_rate": 0.35, "batch_size": 64, "conv1_filters": 16})
    assert text == "conv 16k5 > 64k3 > 128k3 s2 same | avgpool 2 every 1 | drop .15 | no dense | lr 0.35 batch 64"


def test_new_layer_choices_show_only_when_used() -> None:
    spec = ArchSpec(batch_norm=True, head="gap", augment=0.1).to_dict()
    assert choices(spec) == "conv 32k3 > 64k3 bn | pool 2 | gap | drop .25/.50 | dense 128 | augment .10"


def test_a_searched_optimizer_shows_with_its_learning_rate() -> None:
    params = {"optimizer": "adam", "adam_learning_rate": 0.0024719, "conv1_filters": 24}
    assert choices(ArchSpec().to_dict(), params).endswith("| dense 128 | adam lr 0.00247")
    assert choices(ArchSpec().to_dict(), {"optimizer": "adadelta", "adadelta_learning_rate": 1.5}).endswith(
        "| adadelta lr 1.5")


def test_no_spec_and_unknown_fields() -> None:
    assert choices(None, {"conv1_kernel": 13}) == "conv1_kernel 13"
    assert choices(None) == "-"
    assert choices({**ArchSpec().to_dict(), "future_field": 3}).endswith("| future_field 3")
    assert rate(0) == "0" and rate(0.4) == ".40" and rate(0.05) == ".05"


def test_seed_space_line_fits_100_columns() -> None:
    # The widest seed.toml point: 64 filters, 5x5 kernels, pool 3, two-digit dropout rates.
    spec = ArchSpec(conv_filters=(64, 128), kernel_sizes=(5, 5), pool_size=3, dropout_conv=0.45,
                    dropout_dense=0.55).to_dict()
    assert len(choices(spec)) <= 60
