"""Size limits: points over [study] max_params / max_flops are infeasible, untrained, uncounted and never best."""

from __future__ import annotations

import json
from pathlib import Path

import optuna
import pytest
from click.testing import CliRunner
from optuna.trial import TrialState

from cnnsearch.search import limits
from cnnsearch.search import points
from cnnsearch.search import runner
from cnnsearch.search import space as space_mod
from cnnsearch.search import study as study_mod
from cnnsearch.model.arch import ArchSpec, summarize
from cnnsearch.cli import main

# On 12x12 images: the reference has 132,099 params; conv 4/8 filters with a 16-unit head about 2,500.
LIMITED = """
[study]
seed = 1
pruner = "none"
max_params = 20000
[training]
epochs = 1
batch_size = 32
[space]
conv1_filters = [4, 32]
conv2_filters = [8, 64]
conv1_kernel = [3, 13]
"""


@pytest.fixture
def limited(tmp_path: Path, tiny_npz: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("CNNSEARCH_DATA", str(tiny_npz))
    path = tmp_path / "limited.toml"
    path.write_text(LIMITED)
    return path


def test_constraint_values_and_reason() -> None:
    sp = space_mod.parse(LIMITED)
    assert sp.constrained and not space_mod.parse(LIMITED.replace("max_params = 20000", "")).constrained
    small, big = summarize(ArchSpec(conv_filters=(4, 8)), (12, 12, 1), 3), summarize(ArchSpec(), (12, 12, 1), 3)
    assert limits.constraints(sp, small)["params"] == pytest.approx((small.params - 20000) / 20000)
    assert limits.constraints(sp, small)["params"] < 0 < limits.constraints(sp, big)["params"]
    assert limits.constraints(sp, None) == {"buildable": 1.0, "params": 1.0}
    assert limits.infeasible_reason(sp, big) == f"over the size limit: {big.params:,} params > max_params 20,000"
    assert limits.infeasible_reason(sp, small) == ""
    assert limits.constraints(space_mod.parse(LIMITED.replace("max_params = 20000", "")), big) == {}


def test_infeasible_points_cost_under_a_second_and_do_not_count(limited: Path) -> None:
    h = study_mod.create("lim", limited)
    # Three points the limit rules out (two over it, one unbuildable on 12x12), then the run's own draws.
    for p in ({"conv1_filters": 32, "conv2_filters": 64, "conv1_kernel": 3},
              {"conv1_filters": 4, "conv2_filters": 64, "conv1_kernel": 3},
              {"conv1_filters": 4, "conv2_filters": 8, "conv1_kernel": 13}):
        h.study.enqueue_trial(p)
    r = CliRunner().invoke(main, ["study", "run", "lim", "--trials", "2", "--no-report"])
    assert r.exit_code == 0, r.output
    assert "infeasible" in r.stderr and "[3/3]" in r.stderr
    trials = study_mod.load("lim").study.get_trials()
    infeasible = [t for t in trials if t.user_attrs.get("infeasible")]
    trained = [t for t in trials if study_mod.trial_attr(t, "history") is not None]
    assert len(trained) == 3  # the baseline and --trials 2: the infeasible draws did not count
    assert [t.number for t in infeasible][:3] == [1, 2, 3]
    for t in infeasible:
        assert t.state == TrialState.COMPLETE and not limits.feasible(t)
        assert study_mod.trial_attr(t, "history") is None and "fail_reason" not in t.user_attrs
        assert t.user_attrs["seconds"] < 1.0  # the objective's own cost: arithmetic and a few storage writes
        assert (t.datetime_complete - t.datetime_start).total_seconds() < 2.0  # with sampling, on a loaded CI
    assert "over the size limit" in trials[1].user_attrs["infeasible"]
    assert "would shrink it to nothing" in trials[3].user_attrs["infeasible"]
    assert trials[3].constraints["buildable"] == 1.0
    # The baseline trains (it is the comparison) but is over the limit: never the best, its weights not "best".
    base = trials[0]
    assert base.user_attrs["baseline"] and study_mod.trial_attr(base, "history") and not limits.feasible(base)
    best = study_mod.best_trial(study_mod.load("lim").study)
    assert best is not None and limits.feasible(best) and not best.user_attrs.get("baseline")
    assert study_mod.load("lim").study.best_trial.number == best.number  # Optuna agrees: feasible only
    doc = json.loads(CliRunner().invoke(main, ["study", "best", "lim", "--json"]).stdout)
    assert doc["number"] == best.number
    shown = json.loads(CliRunner().invoke(main, ["study", "show", "lim", "--json"]).stdout)["trials"]
    assert shown[1]["infeasible"].startswith("over the size limit") and all(
        t["infeasible"] is None for t in shown if t["val_accuracy"] is not None and not t["baseline"])


def test_all_infeasible_space_stops_with_one_line(limited: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Issue 26 item 12: refused before any trial (the layer arithmetic knows no point fits), not after 200 draws.
    limited.write_text(LIMITED.replace("max_params = 20000", "max_params = 100"))
    study_mod.create("none", limited)
    r = CliRunner().invoke(main, ["study", "run", "none", "--trials", "2", "--no-report"])
    assert r.exit_code == 2 and "smallest point has" in r.stderr and "Traceback" not in r.output, r.output
    trials = study_mod.load("none").study.get_trials()
    assert [t.state.name for t in trials] == ["WAITING"]  # nothing trained, nothing recorded


def test_tpe_sees_infeasible_trials() -> None:
    """The constraint is stored where Optuna 5's samplers read it (Trial.set_constraint, not constraints_func)."""
    study = optuna.create_study(direction="maximize")
    t = study.ask()
    t.set_constraint("params", 0.5)
    study.tell(t, 0.0)
    assert study.trials[0].constraints == {"params": 0.5}


def test_infeasible_draws_do_not_make_the_baseline_the_pruning_bar(tmp_path: Path) -> None:
    """Untrained infeasible trials are COMPLETE to Optuna: the median pruner must wait for 5 *trained* trials.

    Found in the first small.toml search: after 6 infeasible draws and the baseline, the median of one
    curve (the 1.2M-parameter baseline's) pruned every small model behind it at epoch 2.
    """
    f = tmp_path / "m.toml"
    f.write_text("[study]\npruner = 'median'\nmax_params = 20000\n[training]\nepochs = 6\n[space]\n"
                 "conv1_filters = [4, 32]\n")
    study = optuna.create_study(direction="maximize", pruner=study_mod.make_pruner(space_mod.load(f), 6))
    for _ in range(6):  # infeasible: no intermediate values
        t = study.ask()
        t.set_constraint("params", 1.0)
        study.tell(t, 0.0)
    base = study.ask()
    for step in range(6):
        base.report(0.98 + step * 0.001, step)
    study.tell(base, 0.985)
    t = study.ask()
    t.report(0.90, 0)
    t.report(0.95, 1)
    assert not t.should_prune()  # one trained curve is no median
    study.tell(t, 0.95)
    for _ in range(3):  # 5 trained trials at epoch 1: now it judges
        u = study.ask()
        u.report(0.97, 0)
        u.report(0.97, 1)
        study.tell(u, 0.97)
    late = study.ask()
    late.report(0.90, 0)
    late.report(0.91, 1)
    assert late.should_prune()


def test_new_dimensions_train_in_a_study(tmp_path: Path, tiny_npz: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A batch-norm, GAP, shifted, Adam-trained point trains as a trial, with Adam at its own learning rate."""
    monkeypatch.setenv("CNNSEARCH_DATA", str(tiny_npz))
    path = tmp_path / "new.toml"
    path.write_text("[study]\npruner = 'none'\n[training]\nepochs = 1\nbatch_size = 32\n[space]\n"
                    "conv1_filters = [4, 32]\nconv2_filters = [8, 64]\nbatch_norm = [false, true]\n"
                    "head = ['flatten', 'gap']\naugment = [0.0, 0.1]\noptimizer = ['adadelta', 'adam']\n"
                    "adam_learning_rate = { low = 1e-3, high = 1e-2, log = true }\n")
    h = study_mod.create("new", path)
    h.study.enqueue_trial({"conv1_filters": 4, "conv2_filters": 8, "batch_norm": True, "head": "gap",
                           "augment": 0.1, "optimizer": "adam", "adam_learning_rate": 0.005})
    r = CliRunner().invoke(main, ["study", "run", "new", "--trials", "1", "--no-report"])
    assert r.exit_code == 0, r.output
    t = study_mod.load("new").study.get_trials()[1]
    assert t.state == TrialState.COMPLETE and t.params["optimizer"] == "adam"
    spec = study_mod.trial_attr(t, "spec")
    assert (spec["batch_norm"], spec["head"], spec["augment"]) == (True, "gap", 0.1)
    assert t.user_attrs["param_count"] == summarize(ArchSpec.from_dict(spec), (12, 12, 1), 3).params


HALF = """
[study]
seed = {seed}
pruner = "none"
max_params = 35191
[space]
conv1_filters = [4, 8, 16, 32, 64]
conv2_filters = [8, 16, 32, 64, 128]
dense_units = [0, 16, 32, 64, 128, 256]
"""


def _late_infeasible_share(seed: int, sampler: optuna.samplers.BaseSampler | None) -> float:
    """Draws 21-40 of a TPE study whose objective grows with size (the optimum crowds the limit), no training."""
    import numpy as np

    sp = space_mod.parse(HALF.format(seed=seed))  # 50% of this space's 150 points are over max_params (on MNIST)
    study = optuna.create_study(direction="maximize", sampler=sampler or study_mod.make_sampler(sp))

    def objective(trial: optuna.Trial) -> float:
        spec, _ = points.suggest(trial, sp)
        s = summarize(spec)
        for key, value in limits.constraints(sp, s).items():
            trial.set_constraint(key, value)
        return 0.0 if limits.infeasible_reason(sp, s) else float(np.log(s.params))

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    study.optimize(objective, n_trials=40)
    return sum(not limits.feasible(t) for t in study.trials[20:]) / 20


def test_sampler_learns_the_feasible_region() -> None:
    ours = [_late_infeasible_share(seed, None) for seed in range(3)]
    plain = [_late_infeasible_share(seed, optuna.samplers.TPESampler(seed=seed, multivariate=True, group=True))
             for seed in range(3)]
    assert max(ours) <= 0.2, ours  # the bar: at most 20% of the last 20 of 40 draws
    assert sum(plain) > sum(ours), (plain, ours)  # TPE's constraint handling alone stays near the boundary


def test_dashboard_note_says_what_an_infeasible_value_0_is(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CNNSEARCH_STORAGE", f"sqlite:///{tmp_path / 'n.db'}")
    (tmp_path / "free.toml").write_text(LIMITED.replace("max_params = 20000", ""))
    (tmp_path / "lim.toml").write_text(LIMITED)
    for name in ("free", "lim"):
        study_mod.create(name, tmp_path / f"{name}.toml")
    notes = {name: study_mod.note_text(h.study, study_mod.settings_of(h.study))
             for name in ("free", "lim") for h in [study_mod.load(name)]}
    assert "size limits max_params 20,000: a point over them is an infeasible trial" in notes["lim"]
    assert "infeasible" not in notes["free"]


def test_best_of_a_study_where_only_the_over_limit_baseline_trained(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CNNSEARCH_STORAGE", f"sqlite:///{tmp_path / 'b.db'}")
    (tmp_path / "lim.toml").write_text(LIMITED)
    h = study_mod.create("lim", tmp_path / "lim.toml")
    t = h.study.ask()  # the queued baseline, "trained" here: over max_params, so infeasible and never best
    t.set_user_attr("val_accuracy", 0.9)
    t.set_constraint("params", 5.0)
    h.study.tell(t, 0.9)
    r = CliRunner().invoke(main, ["study", "best", "lim"])
    assert r.exit_code == 1 and "no completed trial within its size limits yet" in r.stderr
