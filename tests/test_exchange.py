"""``study export`` (one flat row per trial) and ``study enqueue`` (validated, then run as the next trial)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import optuna
import pandas as pd
import pytest
from click.testing import CliRunner
from conftest import TINY_SPACE, make_tiny

from cnnsearch.search import exchange
from cnnsearch.search import runner
from cnnsearch.search import study as study_mod
from cnnsearch.cli import main
from cnnsearch.ground.errors import ConfigError


@pytest.fixture(scope="module")
def ran(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A real study on the tiny data: the baseline, one enqueued configuration, two sampled trials."""
    tmp = tmp_path_factory.mktemp("exchange")
    npz = tmp / "tiny.npz"
    np.savez(npz, **make_tiny())
    space = tmp / "tiny.toml"
    # No 13x13 kernel: an unbuildable draw would be an extra (infeasible, uncounted) trial (issue 23).
    space.write_text(TINY_SPACE.format(epochs=2, heartbeat=60).replace("[3, 13]", "[3, 5]"))
    url = f"sqlite:///{tmp / 'x.db'}"
    study_mod.create("ex", space, url)
    r = CliRunner().invoke(main, ["study", "enqueue", "ex", "conv1_filters=4", "dropout_dense=0.25", "--storage", url])
    assert r.exit_code == 0, r.output
    assert "queued trial 1" in r.stdout and "conv1_filters=4" in r.stdout
    runner.run("ex", trials=3, url=url, data_path=str(npz))
    return url


def test_enqueued_configuration_runs_as_the_next_trial(ran: str) -> None:
    trials = study_mod.load("ex", ran).study.get_trials()
    assert [t.number for t in trials] == [0, 1, 2, 3]
    assert trials[0].user_attrs["baseline"] is True
    t1 = trials[1]
    # conv1_filters and dropout_dense as given; the other searched dimensions keep the reference's values
    assert t1.params == {"conv1_filters": 4, "conv2_filters": 64, "conv1_kernel": 3, "dropout_dense": 0.25}
    assert t1.user_attrs[exchange.ENQUEUED_KEY] and t1.state.name == "COMPLETE"
    assert study_mod.trial_attr(t1, "spec")["conv_filters"][0] == 4


def test_export_csv_one_row_per_trial_baseline_marked(ran: str, tmp_path: Path) -> None:
    r = CliRunner().invoke(main, ["study", "export", "ex", "--format", "csv", "--storage", ran])
    assert r.exit_code == 0, r.output
    df = pd.read_csv(io.StringIO(r.stdout))
    assert list(df["number"]) == [0, 1, 2, 3]
    assert list(df["baseline"]) == [True, False, False, False]
    stored = study_mod.load("ex", ran).study.get_trials()
    assert list(df["state"]) == [t.state.name for t in stored]  # sampled trials may fail (13x13 on 12x12)
    assert df.loc[:1, "state"].tolist() == ["COMPLETE", "COMPLETE"]
    failed = df[df["state"] == "FAIL"]
    assert failed["fail_reason"].notna().all()
    count = "user_attrs_param_count" if "user_attrs_param_count" in df.columns else "user_attrs_params"
    for col in ("value_val_accuracy", "params_conv1_filters", count, "user_attrs_test_accuracy",
                "spec.conv_filters", "history.val_accuracy", "versions.tensorflow", "epoch_seconds", "duration_s", "fail_reason"):
        assert col in df.columns, col
    assert not any(df[c].astype(str).str.startswith("{").any() for c in df.columns)  # no nested dicts left
    assert len(json.loads(df.loc[0, "history.val_accuracy"])) == 2  # 2 epochs, JSON in the cell
    assert df.loc[1, "params_conv1_filters"] == 4
    out = tmp_path / "sub" / "trials.json"
    r = CliRunner().invoke(main, ["study", "export", "ex", "--format", "json", "--out", str(out), "--storage", ran])
    assert r.exit_code == 0 and r.stdout == "" and str(out) in r.stderr
    rows = json.loads(out.read_text())
    assert [row["baseline"] for row in rows] == [True, False, False, False]
    assert rows[0]["history.val_accuracy"] == df_list(df, 0)
    assert rows[1][count] == df.loc[1, count] > 0


def df_list(df: pd.DataFrame, row: int) -> list[float]:
    return list(json.loads(df.loc[row, "history.val_accuracy"]))


@pytest.mark.parametrize("args, words", [
    (["conv1_filters=16"], "conv1_filters: expected a value in this study's space"),  # not a choice
    (["dropout_dense=0.3"], "dropout_dense: expected a value in this study's space"),  # off the 0.25 step
    (["dropout_dense=0.75"], "dropout_dense: expected a value in this study's space"),  # beyond high
    (["conv1_filters=eight"], "conv1_filters: expected an integer"),
    (["pool_size=3"], "pool_size: expected a dimension of this study's space"),
    (["conv1_filters"], "expected key=value"),
    (["conv1_filters=4", "conv1_filters=8"], "conv1_filters twice"),
])
def test_enqueue_out_of_space_exits_2_and_writes_nothing(args: list[str], words: str, tmp_path: Path,
                                                         tiny_space: Path) -> None:
    url = f"sqlite:///{tmp_path / 'v.db'}"
    study_mod.create("v", tiny_space, url)
    storage = optuna.storages.RDBStorage(url)
    before = [(t.number, t.state.name, t.params) for t in optuna.load_study(study_name="v", storage=storage).trials]
    r = CliRunner().invoke(main, ["study", "enqueue", "v", *args, "--storage", url])
    assert r.exit_code == 2, r.output
    assert words in r.stderr and len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.output
    after = [(t.number, t.state.name, t.params) for t in optuna.load_study(study_name="v", storage=storage).trials]
    assert after == before == [(0, "WAITING", {})]  # only the queued baseline


def test_enqueue_conditional_layers_in_the_wide_space(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'w.db'}"
    h = study_mod.create("w", "wide", url)
    params = exchange.parse_assignments(["conv_layers=3", "conv3_filters=32"], h.space)
    assert params["conv_layers"] == 3 and params["conv3_filters"] == 32
    assert params["conv3_kernel"] == params["conv2_kernel"] == 3  # the layer the reference lacks: the second's
    assert "conv4_filters" not in params
    with pytest.raises(ConfigError, match="conv4_filters: expected no value with conv_layers=3"):
        exchange.parse_assignments(["conv_layers=3", "conv4_filters=32"], h.space)
    with pytest.raises(ConfigError, match="builds on 28x28"):
        exchange.parse_assignments(["conv_layers=4", "conv1_kernel=7", "conv2_kernel=7",
                                    "conv3_kernel=5", "conv4_kernel=5", "pool_every=1", "pool_size=3", "stride=2"], h.space)
