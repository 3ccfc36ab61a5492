"""Issue 21's space dimensions: read, refused with one line, turned into points, infeasible without training."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import optuna
import pytest
from click.testing import CliRunner
from optuna.trial import TrialState

from cnnsearch.cli import main
from cnnsearch.model.arch import ArchSpec, summarize
from cnnsearch.search import limits, points
from cnnsearch.search import space as space_mod
from cnnsearch.search import study as study_mod

STUDIES = Path(__file__).resolve().parents[1] / "studies"

# On the 12x12 tiny data: small points under the limit, and the ones the arithmetic rules out.
FRONTIER = """
[study]
seed = 1
pruner = "none"
max_params = 20000
[training]
epochs = 1
batch_size = 32
[space]
conv_layers = {{ low = 2, high = 8 }}
conv1_filters = [4, 32]
conv2_filters = [8, 64]
conv3_filters = [4, 8]
padding = ["valid", "same"]
pool_at = ["2", "1", "1,3"]
transition = [0, 4, 8]
head = ["flatten", "gap"]
dense_units = [0, 128]
rotation = [0.0, 15.0]
zoom = [0.0, 0.1]
optimizer = ["adadelta", "adamw"]
adamw_learning_rate = {{ low = 1e-3, high = 1e-2, log = true }}
weight_decay = {{ low = 1e-4, high = 1e-2, log = true }}
schedule = ["constant", "step", "cosine", "onecycle"]
onecycle_pct_start = [0.2, 0.3]
cosine_warmup = [0.0, 0.1]
label_smoothing = [0.0, 0.1]
{extra}
"""


def _write(tmp_path: Path, extra: str = "", text: str | None = None) -> Path:
    path = tmp_path / "frontier.toml"
    path.write_text(text if text is not None else FRONTIER.format(extra=extra))
    return path


def test_tiny_space_holds_the_reference_and_the_hand_built_shape() -> None:
    sp = space_mod.load(STUDIES / "tiny.toml")
    assert sp.study["max_params"] == 8000
    spec, overrides = points.suggest(optuna.trial.FixedTrial(points.baseline_params(sp)), sp)
    assert spec == ArchSpec() and replace(sp.training, **overrides) == sp.training
    # A point in the hand-built style: 7 narrow 3x3 convs, pool after 2 with a 1x1 transition, GAP, one-cycle.
    p = {**points.baseline_params(sp), "conv_layers": 7, "conv1_filters": 8, "conv2_filters": 12, "conv3_filters": 12,
         "conv4_filters": 12, "conv5_filters": 12, "conv6_filters": 12, "conv7_filters": 12, "pool_at": "2",
         "transition": 8, "batch_norm": True, "head": "gap", "dense_units": 0, "rotation": 7.0,
         "optimizer": "adam", "adam_learning_rate": 0.01, "schedule": "onecycle", "onecycle_pct_start": 0.3}
    spec, overrides = points.suggest(optuna.trial.FixedTrial(p), sp)
    assert spec.pool_layers == (2,) and spec.transition == 8 and len(spec.conv_filters) == 7
    assert overrides["schedule"] == "onecycle" and overrides["schedule_args"] == {"pct_start": 0.3}
    assert summarize(spec).params == 7562  # Keras's count: batch norm's moving statistics included


def test_points_become_specs_and_training_overrides(tmp_path: Path) -> None:
    sp = space_mod.load(_write(tmp_path))
    base = points.baseline_params(sp)
    assert base["pool_at"] == "2" and base["schedule"] == "constant" and "weight_decay" not in base
    assert points.suggest(optuna.trial.FixedTrial(base), sp)[0] == ArchSpec()
    p = {"conv_layers": 3, "conv1_filters": 4, "conv2_filters": 8, "conv3_filters": 8, "padding": "same", "pool_at": "1,3",
         "transition": 4, "head": "gap", "dense_units": 0, "rotation": 15.0, "zoom": 0.1, "optimizer": "adamw",
         "adamw_learning_rate": 0.005, "weight_decay": 0.001, "schedule": "cosine", "cosine_warmup": 0.1,
         "label_smoothing": 0.1}
    spec, overrides = points.suggest(optuna.trial.FixedTrial(p), sp)
    assert (spec.pool_layers, spec.transition, spec.rotation, spec.zoom) == ((1, 3), 4, 15.0, 0.1)
    assert overrides == {"optimizer": "adamw", "optimizer_args": {"weight_decay": 0.001}, "learning_rate": 0.005,
                         "label_smoothing": 0.1, "schedule": "cosine", "schedule_args": {"warmup": 0.1}}
    # A schedule's parameters are asked only when it is drawn; weight decay only with AdamW.
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=3))
    for _ in range(30):
        t = study.ask()
        points.suggest(t, sp)
        assert ("onecycle_pct_start" in t.params) == (t.params["schedule"] == "onecycle")
        assert ("cosine_warmup" in t.params) == (t.params["schedule"] == "cosine")
        assert ("weight_decay" in t.params) == (t.params["optimizer"] == "adamw")
        study.tell(t, 0.5)


@pytest.mark.parametrize("extra, key, words", [
    ("onecycle_div_factor = [0.5, 25.0]", "space.onecycle_div_factor", "expected a number in [1, 1e+06]"),
    ("step_factor = { low = 0.1, high = 1.5 }", "space.step_factor.high", "expected a number in (0, 1]"),
    ("cosine_alpha = [-0.1]", "space.cosine_alpha", "expected a number in [0, 1]"),
])
def test_bad_schedule_parameters_refused_at_read(tmp_path: Path, extra: str, key: str, words: str) -> None:
    _refused(tmp_path, _write(tmp_path, extra), key, words)


@pytest.mark.parametrize("old, new, key, words", [
    ("rotation = [0.0, 15.0]", "rotation = [0.0, 200.0]", "space.rotation", "degrees in [0, 180]"),
    ("transition = [0, 4, 8]", "transition = [0, 4, 128]", "space.transition", "widths of at most 64"),
    ('pool_at = ["2", "1", "1,3"]', 'pool_at = ["2", "3,1"]', "space.pool_at", "increasing"),
    ('pool_at = ["2", "1", "1,3"]', 'pool_at = ["2", "9"]', "space.pool_at", "conv layer numbers from 1 to 8"),
    ("zoom = [0.0, 0.1]", "zoom = [0.0, 0.9]", "space.zoom", "a zoom fraction in [0, 0.5]"),
    ("label_smoothing = [0.0, 0.1]", "label_smoothing = [0.0, 1.0]", "space.label_smoothing", "[0, 1)"),
    ("batch_size = 32", 'batch_size = 32\nschedule = { name = "onecycle", pct_start = 1.2 }',
     "training.schedule.pct_start", "expected a number in (0, 1)"),
    ("batch_size = 32", 'batch_size = 32\nschedule = { name = "cyclic" }', "training.schedule.name", "one of constant"),
])
def test_bad_parts_refused_at_read_with_one_line(tmp_path: Path, old: str, new: str, key: str, words: str) -> None:
    text = FRONTIER.format(extra="")
    assert old in text
    _refused(tmp_path, _write(tmp_path, text=text.replace(old, new)), key, words)


def _refused(tmp_path: Path, path: Path, key: str, words: str) -> None:
    r = CliRunner().invoke(main, ["study", "create", "bad", "--space", str(path),
                                  "--storage", f"sqlite:///{tmp_path / 'b.db'}"])
    assert r.exit_code == 2, r.output
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and f"{key}:" in lines[0] and words in lines[0], r.stderr
    assert "Traceback" not in r.output


def test_points_that_cannot_build_are_infeasible_without_training(tmp_path: Path, tiny_npz: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CNNSEARCH_DATA", str(tiny_npz))
    monkeypatch.setenv("CNNSEARCH_STORAGE", f"sqlite:///{tmp_path / 'f.db'}")
    h = study_mod.create("fr", _write(tmp_path))
    small = {"conv1_filters": 4, "conv2_filters": 8, "head": "gap", "dense_units": 0, "optimizer": "adadelta",
             "schedule": "constant", "rotation": 0.0, "zoom": 0.0, "label_smoothing": 0.0, "padding": "valid"}
    too_wide = {**small, "conv_layers": 2, "pool_at": "1", "transition": 8}  # 4 channels into an 8-wide transition
    too_deep = {**small, "conv_layers": 8, "conv3_filters": 4, "pool_at": "1,3", "transition": 0}  # 12x12 -> nothing
    trained = {**small, "padding": "same", "conv_layers": 3, "conv3_filters": 8, "pool_at": "1,3", "transition": 4, "rotation": 15.0,
               "zoom": 0.1, "optimizer": "adamw", "adamw_learning_rate": 0.005, "weight_decay": 0.001,
               "schedule": "onecycle", "onecycle_pct_start": 0.3, "label_smoothing": 0.1}
    sp = h.space
    assert limits.known_infeasible(too_wide, sp, (12, 12, 1), 3) and limits.known_infeasible(too_deep, sp, (12, 12, 1), 3)
    for p in (too_wide, too_deep, trained):
        h.study.enqueue_trial(p)
    r = CliRunner().invoke(main, ["study", "run", "fr", "--trials", "1", "--no-report"])
    assert r.exit_code == 0, r.output
    trials = study_mod.load("fr").study.get_trials()
    assert "transition1 (1x1 conv, 8 filters) receives 4 channels" in trials[1].user_attrs["infeasible"]
    assert "would shrink it to nothing" in trials[2].user_attrs["infeasible"]
    for t in trials[1:3]:
        assert t.state == TrialState.COMPLETE and not limits.feasible(t) and study_mod.trial_attr(t, "history") is None
    t = trials[3]
    assert t.state == TrialState.COMPLETE and study_mod.trial_attr(t, "history") is not None
    assert (t.params["optimizer"], t.params["schedule"], t.params["weight_decay"]) == ("adamw", "onecycle", 0.001)
    spec = study_mod.trial_attr(t, "spec")
    assert (spec["pool_layers"], spec["transition"], spec["rotation"]) == ([1, 3], 4, 15.0)


def test_enqueue_a_hand_built_point_in_the_tiny_space() -> None:
    """`study enqueue` takes the new dimensions (a bool as true/false); a schedule's parameter needs its schedule."""
    from cnnsearch.ground.errors import ConfigError
    from cnnsearch.search import exchange

    sp = space_mod.load(STUDIES / "tiny.toml")
    pairs = ("conv_layers=7 conv1_filters=8 conv2_filters=12 conv3_filters=12 conv4_filters=12 conv5_filters=12"
             " conv6_filters=12 conv7_filters=12 pool_at=2 transition=8 batch_norm=true head=gap dense_units=0"
             " optimizer=adam adam_learning_rate=0.01 schedule=onecycle onecycle_pct_start=0.3").split()
    params = exchange.parse_assignments(pairs, sp)
    assert params["batch_norm"] is True and params["pool_at"] == "2" and "adadelta_learning_rate" not in params
    assert "step_factor" not in params and params["onecycle_pct_start"] == 0.3
    spec, overrides = points.suggest(optuna.trial.FixedTrial(params), sp)
    assert summarize(spec).params == 7562 and overrides["schedule"] == "onecycle"
    with pytest.raises(ConfigError, match="enqueue: onecycle_pct_start: expected no value for this point"):
        exchange.parse_assignments(["onecycle_pct_start=0.3"], sp)
    # Another optimizer than the study's, its rate left out: that optimizer's default rate (issue 26 item 6).
    assert exchange.parse_assignments(["optimizer=adam"], sp)["adam_learning_rate"] == points.DEFAULT_LEARNING_RATE["adam"]
