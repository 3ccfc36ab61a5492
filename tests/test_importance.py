"""Importance with its uncertainty, on studies built with create_trial (no training)."""

from __future__ import annotations

import random
import re
from typing import Any, Callable

import optuna
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import create_trial

from cnnsearch.evidence import importance

DISTS = {"conv1_filters": CategoricalDistribution([8, 16, 32, 64]), "conv1_kernel": CategoricalDistribution([3, 5]),
         "pool_size": CategoricalDistribution([2, 3, 4]), "dropout_dense": FloatDistribution(0.0, 0.7, step=0.05),
         "dropout_conv": FloatDistribution(0.0, 0.5, step=0.05), "conv2_filters": IntDistribution(16, 128, step=16),
         "conv2_kernel": CategoricalDistribution([3, 5])}


def _study(n: int, value: Callable[[dict[str, Any], random.Random], float], *, dims: dict[str, Any] = DISTS,
           fixed: dict[str, Any] | None = None, seed: int = 0) -> optuna.Study:
    rng = random.Random(seed)
    study = optuna.create_study(direction="maximize")
    for _ in range(n):
        params = {}
        for name, d in dims.items():
            if fixed and name in fixed:
                params[name] = fixed[name]
            elif isinstance(d, CategoricalDistribution):
                params[name] = rng.choice(d.choices)
            elif isinstance(d, IntDistribution):
                params[name] = rng.randrange(d.low, d.high + 1, d.step)
            else:
                params[name] = round(rng.randrange(0, int(round((d.high - d.low) / d.step)) + 1) * d.step + d.low, 6)
        v = value(params, rng)
        study.add_trial(create_trial(params=params, distributions=dims, value=v, user_attrs={"val_accuracy": v}))
    return study


def test_one_dimension_that_drives_val_accuracy_is_named() -> None:
    study = _study(30, lambda p, r: 0.95 + 0.04 * p["dropout_dense"] + r.gauss(0, 0.0005))
    imp = importance.compute(study)
    assert imp.mattered == ["dropout_dense"]
    top = imp.dimensions[0]
    assert top.name == "dropout_dense" and top.top_share >= 0.8 and len(top.fanova) == importance.RESAMPLES
    assert top.mean > 0.5 and top.sd >= 0
    assert imp.dashboard_order[0] == "dropout_dense"  # the dashboard's PED-ANOVA tells the same story
    text = importance.sentence(imp)
    assert "mattered most for validation accuracy: dropout_dense" in text and "80%" in text


def test_pure_noise_names_no_dimension() -> None:
    study = _study(30, lambda p, r: 0.98 + r.gauss(0, 0.002), seed=3)
    imp = importance.compute(study)
    assert imp.ranked and imp.mattered == []
    assert "No choice stands out yet" in importance.sentence(imp)


def test_a_never_varied_dimension_is_not_explored() -> None:
    study = _study(30, lambda p, r: 0.95 + 0.04 * p["dropout_dense"] + r.gauss(0, 0.0005),
                   fixed={"conv1_kernel": 3})
    imp = importance.compute(study)
    assert "conv1_kernel" in imp.not_explored
    dim = next(d for d in imp.dimensions if d.name == "conv1_kernel")
    assert dim.fanova == () and dim.distinct == 1
    text = importance.sentence(imp)
    assert "Not explored" in text and "conv1_kernel" in text.split("Not explored")[1]
    assert "hardly" not in text and "did not matter" not in text


def test_eight_trials_on_seven_dimensions_are_too_few() -> None:
    study = _study(8, lambda p, r: 0.95 + 0.04 * p["dropout_dense"])
    imp = importance.compute(study)
    assert imp.too_few and not imp.ranked and imp.mattered == []
    assert importance.sentence(imp).startswith("Too few trials to rank the choices (8 completed, about 14 needed")


def test_a_resample_without_variance_does_not_sink_the_answer() -> None:
    # 8 trials on 2 dimensions, all scoring the same but one: a bootstrap resample that misses that trial
    # (about 1 in 3) has zero variance, which fANOVA refuses; the other resamples still answer.
    dims = {"conv1_kernel": CategoricalDistribution([3, 5]), "pool_size": CategoricalDistribution([2, 3])}
    study = optuna.create_study(direction="maximize")
    for i in range(8):
        params = {"conv1_kernel": [3, 5][i % 2], "pool_size": [2, 3][(i // 2) % 2]}
        v = 0.99 if i == 0 else 0.98
        study.add_trial(create_trial(params=params, distributions=dims, value=v, user_attrs={"val_accuracy": v}))
    imp = importance.compute(study)
    assert imp.error == "" and imp.ranked
    assert all(len(d.fanova) == importance.RESAMPLES for d in imp.dimensions)
    assert "could not be computed" not in importance.sentence(imp)
    # Every trial the same: nothing explains anything, and the answer says no choice stands out.
    flat = optuna.create_study(direction="maximize")
    flat.add_trials([create_trial(params=t.params, distributions=dims, value=0.98, user_attrs={"val_accuracy": 0.98})
                     for t in study.trials])
    assert importance.compute(flat).mattered == []
    assert "No choice stands out yet" in importance.sentence(importance.compute(flat))


def test_a_ranked_choice_says_which_way_and_conditional_dimensions_are_named() -> None:
    dims = {"conv_layers": CategoricalDistribution([2, 3]), "conv1_filters": CategoricalDistribution([8, 16, 32, 64]),
            "dropout_dense": FloatDistribution(0.0, 0.7, step=0.05)}
    rng = random.Random(1)
    study = optuna.create_study(direction="maximize")
    for _ in range(40):
        params = {"conv_layers": rng.choice([2, 3]), "conv1_filters": rng.choice([8, 16, 32, 64]),
                  "dropout_dense": round(rng.randrange(0, 15) * 0.05, 2)}
        dists = dict(dims)
        if params["conv_layers"] == 3:  # conv3_filters exists only with 3 layers: a conditional dimension
            params["conv3_filters"] = rng.choice([32, 64])
            dists["conv3_filters"] = CategoricalDistribution([32, 64])
        v = 0.97 + 0.004 * (params["conv_layers"] == 3) + rng.gauss(0, 0.0005)
        study.add_trial(create_trial(params=params, distributions=dists, value=v, user_attrs={"val_accuracy": v}))
    imp = importance.compute(study, resamples=4)
    assert imp.mattered[0] == "conv_layers"
    d = next(x for x in imp.dimensions if x.name == "conv_layers").direction
    assert d is not None and d.best == "3" and d.runner_up == "2" and 0.003 < d.gain < 0.005
    assert d.n_best + d.n_runner_up == 40
    assert [c.name for c in imp.conditional] == ["conv3_filters"] and 10 < imp.conditional[0].trials < 30
    text = importance.sentence(imp)
    assert re.search(r"conv_layers 3: \+0\.[34]\d pp over 2 \(median of \d+ and \d+ trials\)", text)
    assert "Conditional, not ranked" in text and "conv3_filters (in" in text


def test_a_disagreement_between_fanova_and_ped_anova_is_explained() -> None:
    dims = [importance.Dimension("optimizer", 2, (0.19, 0.2, 0.18), 1.0, 0.0),
            importance.Dimension("conv_layers", 2, (0.5, 0.5, 0.5), 1.0, 0.6)]
    imp = importance.Importance(30, 4, dims, 3)
    assert importance.disagreements(imp) == ["optimizer"]
    text = importance.sentence(imp)
    assert "disagree on optimizer (19% against 0%)" in text and "top 10% of trials" in text
    assert "conv_layers" not in text.split("disagree on")[1]
