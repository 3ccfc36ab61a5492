"""The confirmation verdict on synthetic per-seed results: no training, every number known."""

from __future__ import annotations

import numpy as np
import pytest

from cnnsearch.evidence import confirm
from cnnsearch.evidence import verdict


def _record(config: str, seed: int, correct: np.ndarray, labels: np.ndarray, *, epochs: int = 20,
            train_limit: int = 0) -> dict:  # type: ignore[type-arg]
    pred = np.where(correct, labels, (labels + 1) % 10)
    return {"config": config, "trial": 0 if config == "baseline" else int(config[5:]), "seed": seed,
            "epochs": epochs, "train_limit": train_limit, "params": {}, "param_count": 1000,
            "test_accuracy": float(correct.mean()), "test_loss": 0.1, "val_accuracy": 0.99, "seconds": 1.0,
            "predictions": confirm.encode(pred)}


def _attrs(accs: dict[str, list[float]], *, n_images: int = 10_000, epochs: int = 20, train_limit: int = 0,
           seed: int = 0) -> dict:  # type: ignore[type-arg]
    """Stored runs whose per-image correctness gives exactly the wanted accuracy per seed.

    Within a seed the models share their mistakes as far as possible, so a candidate
    that is better on a seed is "only candidate right" on exactly the difference.
    """
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, n_images)
    attrs = {"confirm_labels": confirm.encode(labels)}
    order = rng.permutation(n_images)
    for config, per_seed in accs.items():
        for s, acc in enumerate(per_seed):
            correct = np.zeros(n_images, dtype=bool)
            correct[order[:round(acc * n_images)]] = True
            key = f"{confirm.PREFIX}{confirm.Fidelity(epochs, train_limit).key}:{config}:seed{s}"
            attrs[key] = _record(config, s, correct, labels, epochs=epochs, train_limit=train_limit)
    return attrs


def _rows(summary: dict) -> dict:  # type: ignore[type-arg]
    return {r["config"]: r for r in summary["configs"]}


def test_large_mcnemar_effect_with_a_seed_interval_across_zero_is_inconclusive() -> None:
    # +2.5 pp, -1.0 pp, +3.0 pp: every seed pair differs on hundreds of images (McNemar p << 0.05)
    # but the seeds disagree in sign: the interval over seeds includes 0.
    s = confirm.summarize(_attrs({"baseline": [0.970, 0.980, 0.965], "trial4": [0.995, 0.970, 0.995]}))
    r = _rows(s)["trial4"]
    assert all(p < 1e-10 for p in r["mcnemar_p_by_seed"])
    assert r["diff_ci95"][0] < 0 < r["diff_ci95"][1]
    assert r["verdict"] == "inconclusive" and s["verdicts"] == {"trial4": "inconclusive"}
    assert "inconclusive" in s["verdict"] and "beyond noise" not in s["verdict"]
    assert "Supporting only: McNemar" in s["verdict"] and "3 of 3 seed pairs" in s["verdict"]
    assert r["seeds_needed_estimate"] is not None and r["seeds_needed_estimate"] > 3
    assert "Estimate: about" in s["verdict"]


@pytest.mark.parametrize("gain", [0.004, 0.05, -0.05])
def test_two_seeds_are_inconclusive_whatever_the_numbers(gain: float) -> None:
    s = confirm.summarize(_attrs({"baseline": [0.95, 0.951], "trial2": [0.95 + gain, 0.951 + gain]}))
    r = _rows(s)["trial2"]
    assert r["verdict"] == "inconclusive"
    assert "at least 3 seeds" in s["verdict"]


def test_five_seeds_of_a_consistent_gain_are_better() -> None:
    base = [0.9900, 0.9905, 0.9895, 0.9902, 0.9898]
    cand = [b + d for b, d in zip(base, [0.0040, 0.0041, 0.0039, 0.0040, 0.0042])]
    s = confirm.summarize(_attrs({"baseline": base, "trial7": cand, "trial9": [b - 0.004 for b in base]}))
    rows = _rows(s)
    assert rows["trial7"]["verdict"] == "better"
    assert rows["trial7"]["diff_mean"] == pytest.approx(0.00404, abs=2e-4)
    assert rows["trial7"]["diff_ci95"][0] > 0
    assert rows["trial9"]["verdict"] == "worse"
    assert s["verdicts"] == {"trial7": "better", "trial9": "worse"}
    assert set(s["verdicts"].values()) <= set(verdict.VERDICTS)


def test_holm_correction_changes_a_borderline_case() -> None:
    base = [0.980, 0.980, 0.980, 0.980]
    borderline = [0.982, 0.9835, 0.981, 0.984]   # alone: p ~ 0.03, interval above 0
    noise = [0.981, 0.979, 0.980, 0.9805]          # a second candidate that is noise
    alone = confirm.summarize(_attrs({"baseline": base, "trial3": borderline}))
    assert 0.01 < _rows(alone)["trial3"]["p"] < 0.05
    assert _rows(alone)["trial3"]["verdict"] == "better"
    both = confirm.summarize(_attrs({"baseline": base, "trial3": borderline, "trial5": noise}))
    r = _rows(both)["trial3"]
    assert r["p"] == pytest.approx(_rows(alone)["trial3"]["p"])
    assert r["p_holm"] >= 0.05 and r["verdict"] == "inconclusive"
    assert "not after correcting for 2 candidates" in both["verdict"]


def test_holm_adjustment_matches_the_textbook_step_down() -> None:
    assert verdict.holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert verdict.holm([0.2, float("nan")])[0] == 0.2


def test_paired_statistics_match_scipy() -> None:
    from scipy import stats

    a, b = [0.99, 0.985, 0.992, 0.988], [0.987, 0.986, 0.989, 0.984]
    p = verdict.paired(a, b)
    d = np.subtract(a, b)
    half = stats.t.ppf(0.975, 3) * d.std(ddof=1) / 2
    assert p.ci95 == pytest.approx((d.mean() - half, d.mean() + half))
    assert p.p == pytest.approx(stats.ttest_rel(a, b).pvalue)


def test_seeds_needed_grows_with_noise() -> None:
    assert verdict.seeds_needed(0.004, 0.002) < verdict.seeds_needed(0.004, 0.006)
    assert verdict.seeds_needed(0.0, 0.01) is None


def test_reference_only_at_the_reference_fidelity() -> None:
    accs = {"baseline": [0.9912, 0.9918, 0.9915], "trial2": [0.9930, 0.9935, 0.9932]}
    full = confirm.summarize(_attrs(accs))
    assert full["reference"]["comparable"] is True
    assert _rows(full)["trial2"]["vs_reference"]["verdict"] == "better"
    assert _rows(full)["baseline"]["vs_reference"]["verdict"] == "inconclusive"
    low = confirm.summarize(_attrs(accs, epochs=3, train_limit=12000))
    assert low["reference"]["comparable"] is False
    assert all(r["vs_reference"] is None for r in low["configs"])
    assert "not possible at 3 epochs on 12,000 training images" in low["verdict"]
    assert low["fidelity"] == {"epochs": 3, "train_limit": 12000}


def test_fidelity_is_a_typed_value_and_old_keys_still_read() -> None:
    f = confirm.Fidelity(20, 0)
    assert f.key == "e20-n0" and f.at_reference and f == confirm.REFERENCE_FIDELITY
    assert confirm.Fidelity(3, 12000).describe() == "3 epochs on 12,000 training images"
    # Runs stored under any key (the first release's, or an unexpected one) are read by their fields.
    attrs = _attrs({"baseline": [0.97, 0.98, 0.975], "trial1": [0.975, 0.985, 0.98]}, epochs=3, train_limit=500)
    renamed = {("legacy-" + k if k.startswith(confirm.PREFIX) else k).replace("legacy-", "confirm:old:"): v
               for k, v in attrs.items()}
    s = confirm.summarize(renamed)
    assert s["fidelity"] == {"epochs": 3, "train_limit": 500}
    assert _rows(s)["trial1"]["paired_seeds"] == 3


def test_a_candidate_without_baseline_runs_is_not_called_unretrained() -> None:
    s = confirm.summarize(_attrs({"trial2": [0.98, 0.97, 0.99]}))
    assert s["verdicts"] == {} and "trial2" in _rows(s) and "verdict" not in _rows(s)["trial2"]
    assert "the baseline has no run at this fidelity" in s["verdict"]
    one = confirm.summarize(_attrs({"baseline": [0.97], "trial2": [0.98]}))["verdict"]
    assert "over 1 paired seed)" in one and "baseline 0.9700 over 1 seed:" in one


def test_rank_agreement_is_spearman() -> None:
    from scipy.stats import spearmanr

    search, confirmed = [0.97, 0.985, 0.98, 0.99, 0.975], [0.991, 0.990, 0.993, 0.994, 0.989]
    check = verdict.rank_agreement(search, confirmed)
    assert check.n == 5 and check.rho == pytest.approx(spearmanr(search, confirmed).statistic)
    assert np.isnan(verdict.rank_agreement([0.9, 0.95], [0.9, 0.95]).rho)  # 2 points: no correlation
    assert np.isnan(verdict.rank_agreement([0.9, 0.9, 0.9], [0.9, 0.95, 0.97]).rho)  # constant side


@pytest.mark.parametrize("val, word", [({0: 0.97, 2: 0.98, 5: 0.99}, "Strong"), ({0: 0.99, 2: 0.98, 5: 0.97}, "Weak")])
def test_summary_checks_the_search_fidelity_on_the_confirmed_configurations(val: dict, word: str) -> None:  # type: ignore[type-arg]
    accs = {"baseline": [0.990, 0.991, 0.992], "trial2": [0.991, 0.992, 0.993], "trial5": [0.993, 0.994, 0.995]}
    search = (confirm.Fidelity(6, 18000), {**val, 9: 0.5})  # trial 9 was not confirmed: left out
    s = confirm.summarize(_attrs(accs), search=search)
    check = s["rank_check"]
    assert check["n"] == 3 and check["search_fidelity"] == {"epochs": 6, "train_limit": 18000}
    assert check["spearman"] == pytest.approx(1.0 if word == "Strong" else -1.0)
    assert word in check["sentence"] and "6 epochs on 18,000 training images" in check["sentence"]
    assert "sanity check" in check["sentence"]  # 3 configurations
    assert check["candidate_search_span"] == pytest.approx(0.01) and "within 1.00 pp" in check["sentence"]
    assert _rows(s)["trial5"]["search_val_accuracy"] == val[5]
    assert confirm.summarize(_attrs(accs))["rank_check"] is None
