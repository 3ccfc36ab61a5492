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


def test_seeds_only_interval_matches_scipy_and_the_both_sources_one_contains_it() -> None:
    from scipy import stats

    a, b = [0.99, 0.985, 0.992, 0.988], [0.987, 0.986, 0.989, 0.984]
    p = verdict.difference(a, b)
    d = np.subtract(a, b)
    half = stats.t.ppf(0.975, 3) * d.std(ddof=1) / 2
    assert p.ci95_seeds == pytest.approx((d.mean() - half, d.mean() + half))
    assert p.p_seeds == pytest.approx(stats.ttest_rel(a, b).pvalue)
    # Per-image correctness: the same accuracies, plus the test images' own noise.
    rng = np.random.default_rng(3)
    base = rng.random((4, 10_000)) > 0.005
    base[:, :100] = False  # 100 hard images the baseline always misses
    cand = base.copy()
    cand[:, :30] = True  # +0.3 pp on each seed, on the same 30 images: that part is these images' luck
    both = verdict.difference(cand, base)
    assert both.mean == pytest.approx(0.003) and both.images == 10_000
    assert both.ci95[0] <= both.ci95_seeds[0] and both.ci95[1] >= both.ci95_seeds[1]
    assert both.se > both.se_seeds and both.se_images > 0 and both.p >= both.p_seeds


def test_identical_differences_never_give_p_zero() -> None:
    # Seeds only: three identical differences used to give sd 0, p = 0 and a zero-width interval.
    same = verdict.difference([0.9938, 0.9938, 0.9938], [0.9914, 0.9914, 0.9914])
    assert same.p > 0 and same.sd_seeds > 0 and same.ci95_seeds[1] > same.ci95_seeds[0]
    # Per image: one test image better on every seed, otherwise identical models, is not "better".
    base = np.ones((5, 10_000), dtype=bool)
    base[:, :80] = False
    cand = base.copy()
    cand[:, 0] = True
    one = verdict.difference(cand, base)
    assert one.p > 0.05 and one.ci95[0] < 0 < one.ci95[1]
    stored = {"baseline": {s: _run_of(base[s]) for s in range(5)}}
    res = verdict.paired_verdicts(stored["baseline"], {"trial1": {s: _run_of(cand[s]) for s in range(5)}},
                                  np.zeros(10_000, dtype=np.int64))
    assert res["results"]["trial1"]["verdict"] == "inconclusive" and res["results"]["trial1"]["p"] > 0


def _run_of(correct: np.ndarray) -> dict:  # type: ignore[type-arg]
    """A stored run whose predictions are right (class 0) exactly where ``correct`` (labels all 0)."""
    return {"test_accuracy": float(correct.mean()), "predictions": confirm.encode(np.where(correct, 0, 1))}


def test_an_incomplete_candidate_is_in_no_family() -> None:
    rng = np.random.default_rng(4)
    base = {s: _run_of(rng.random(2000) > 0.02) for s in range(3)}
    full = {s: _run_of(rng.random(2000) > 0.01) for s in range(3)}
    res = verdict.paired_verdicts(base, {"trial1": full, "trial2": {0: full[0]}}, np.zeros(2000, dtype=np.int64))
    assert res["family"] == ["trial1"] and res["incomplete"] == {"trial2": 1}
    alone = verdict.paired_verdicts(base, {"trial1": full}, np.zeros(2000, dtype=np.int64))
    assert res["results"]["trial1"]["p_holm"] == alone["results"]["trial1"]["p_holm"]  # Holm over 1, not 2
    assert "trial2" not in res["results"]


def test_runs_without_predictions_stay_inconclusive_with_a_reason() -> None:
    base = {s: {"test_accuracy": 0.990 + s * 1e-4} for s in range(5)}
    cand = {s: {"test_accuracy": 0.996 + s * 1e-4} for s in range(5)}
    res = verdict.paired_verdicts(base, {"trial1": cand}, np.zeros(10, dtype=np.int64))["results"]["trial1"]
    assert res["verdict"] == "inconclusive" and "without test predictions" in res["reason"]
    assert res["ci95_seeds"][0] > 0 and np.isnan(res["ci95"][0])  # the seeds alone would have said better
    other = {s: {**r, "predictions": confirm.encode(np.zeros(7))} for s, r in cand.items()}
    odd = verdict.paired_verdicts(base, {"trial1": other}, np.zeros(10, dtype=np.int64))["results"]["trial1"]
    assert odd["verdict"] == "inconclusive" and "do not match the 10 test labels" in odd["reason"]


def test_tost_claims_equivalence_only_inside_the_margin() -> None:
    rng = np.random.default_rng(5)
    base = rng.random((10, 10_000)) > 0.01
    same = base.copy()
    for s in range(10):  # swap which images are wrong, keep the count: no difference in accuracy
        wrong = np.flatnonzero(~base[s])[:20]
        same[s, wrong] = True
        same[s, np.flatnonzero(base[s])[:20]] = False
    d = verdict.difference(same, base)
    assert verdict.tost(d, 0.002) < 0.05 and verdict.tost(d, 0.00001) > 0.05


def test_alpha_spending_adds_up_to_alpha_and_spends_little_early() -> None:
    levels = verdict.spending([3, 5, 10], 10)
    assert sum(levels) == pytest.approx(verdict.ALPHA)
    assert levels[0] < 0.001 < levels[1] < levels[2]
    assert verdict.spending([3], 3) == pytest.approx([verdict.ALPHA])


def test_seeds_needed_grows_with_noise() -> None:
    assert verdict.seeds_needed(0.004, 0.002) < verdict.seeds_needed(0.004, 0.006)
    assert verdict.seeds_needed(0.0, 0.01) is None


def test_reference_only_at_the_reference_fidelity() -> None:
    accs = {"baseline": [0.9912, 0.9918, 0.9915], "trial2": [0.9930, 0.9935, 0.9932]}
    full = confirm.summarize(_attrs(accs))
    assert full["reference"]["comparable"] is True
    # One published run: its own seed spread counts (the baseline's sd stands in), and the word is never "better".
    assert _rows(full)["trial2"]["vs_reference"]["verdict"] == "above"
    assert _rows(full)["baseline"]["vs_reference"]["verdict"] == "no difference detected"
    assert "above the published figure" in full["verdict"] and "equivalent within ±0.20 pp" in full["verdict"]
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
    assert "over 1 paired seed)" in one and "baseline 0.9700 over 1 seed" in one and "not judged" in one


def test_rank_agreement_is_spearman_with_an_exact_p_for_few_configurations() -> None:
    from scipy.stats import spearmanr

    from cnnsearch.evidence import published

    search, confirmed = [0.97, 0.985, 0.98, 0.99, 0.975], [0.991, 0.990, 0.993, 0.994, 0.989]
    check = published.rank_agreement(search, confirmed)
    assert check.n == 5 and check.rho == pytest.approx(spearmanr(search, confirmed).statistic) and check.exact
    three = published.rank_agreement([1, 2, 3], [3, 2, 1])
    assert three.rho == pytest.approx(-1) and three.p == pytest.approx(1 / 3)  # never "p = 0" for 3 points
    assert np.isnan(published.rank_agreement([0.9, 0.95], [0.9, 0.95]).rho)  # 2 points: no correlation
    assert np.isnan(published.rank_agreement([0.9, 0.9, 0.9], [0.9, 0.95, 0.97]).rho)  # constant side


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


def test_a_second_look_at_more_seeds_is_judged_at_the_level_it_spends() -> None:
    from cnnsearch.evidence import store

    base = [0.9900, 0.9905, 0.9895, 0.9902, 0.9898]
    cand = [b + d for b, d in zip(base, [0.0030, 0.0010, 0.0035, 0.0005, 0.0030])]  # p ~ 0.02 over 5 seeds
    attrs = _attrs({"baseline": base, "trial7": cand})
    once = confirm.summarize(attrs)  # stored without a family: one look at the full 0.05
    assert 0.005 < _rows(once)["trial7"]["p_holm"] < 0.05 and once["verdicts"] == {"trial7": "better"}
    fid = confirm.Fidelity(20, 0)
    fam = store.new_family(attrs, fid, ["trial7"], first_seed=0, max_seeds=10, alpha=0.05)
    fam["looks"] = [{"seeds": 3}, {"seeds": 5}]  # declared for 10 seeds, looked at 3 and again at 5
    attrs[store.family_key(fid, fam["id"])] = fam
    twice = confirm.summarize(attrs)
    levels = [look["alpha"] for look in twice["family"]["looks"]]
    assert levels == pytest.approx(verdict.spending([3, 5], 10)) and levels[1] < 0.006
    r = _rows(twice)["trial7"]
    assert r["p_holm"] == pytest.approx(_rows(once)["trial7"]["p_holm"])  # same data, same p ...
    assert twice["verdicts"] == {"trial7": "inconclusive"}  # ... judged at the second look's level
    assert "look 2 of a confirmation declared for at most 10 seeds" in twice["verdict"]


def test_runs_at_different_fidelities_get_no_verdict() -> None:
    base = {s: {"test_accuracy": 0.990, "epochs": 20, "train_limit": 0} for s in range(3)}
    cand = {s: {"test_accuracy": 0.999, "epochs": 3 if s == 1 else 20, "train_limit": 0} for s in range(3)}
    r = verdict.paired_verdicts(base, {"trial1": cand})["results"]["trial1"]
    assert r["verdict"] == "inconclusive" and "different fidelities (20 epochs/train_limit 0, 3 epochs" in r["reason"]


def test_the_committed_calibration_keeps_the_error_rate() -> None:
    """reports/bench/calibration.json (tests/bench/calibration.py): null rate within alpha, power rising with seeds."""
    import json
    from pathlib import Path

    doc = json.loads((Path(__file__).resolve().parents[1] / "reports" / "bench" / "calibration.json").read_text())
    for r in doc["null"] + doc["null_same_configuration"] + doc["null_family_of_3"] + doc["sequential"][:1]:
        assert r["verdict"]["rate"] <= doc["alpha"] + 2 * r["verdict"]["mc_se"], r
    power = [r["verdict"]["rate"] for r in doc["power"]]
    assert [r["seeds"] for r in doc["power"]] == [3, 5, 10] and power == sorted(power)


def test_a_candidate_stopped_early_is_listed_apart_and_does_not_change_the_others() -> None:
    base = [0.9900, 0.9905, 0.9895]
    full = {"baseline": base, "trial3": [b + 0.004 for b in base]}
    alone = confirm.summarize(_attrs(full))
    both = confirm.summarize(_attrs({**full, "trial5": [0.9950]}))  # an interrupted run: 1 of 3 seeds
    assert both["family"]["family"] == ["trial3"] and both["family"]["incomplete"] == {"trial5": 1}
    assert both["verdicts"] == alone["verdicts"] and "trial5" not in both["verdicts"]
    assert _rows(both)["trial3"]["p_holm"] == _rows(alone)["trial3"]["p_holm"]
    assert _rows(both)["trial5"]["incomplete"] is True and "verdict" not in _rows(both)["trial5"]
    assert "Incomplete, in no family and without a verdict: trial5 (1 of 3 seeds)" in both["verdict"]


def test_a_declared_confirmation_before_its_first_look_counts_against_its_declared_seeds() -> None:
    """Before any look, 'n of N seeds' names the declared maximum (not 0), and the next command repeats it."""
    from cnnsearch.evidence import words
    from cnnsearch.report.headline import headline

    fam = {"id": 1, "candidates": ["trial28", "trial30"], "max_seeds": 5, "looks": [],
           "incomplete": {"trial28": 1, "trial30": 0}, "judged_seeds": [], "pending_runs": 1}
    text = words._family_sentence(fam)
    assert "trial28 (1 of 5 seeds), trial30 (0 of 5 seeds)" in text
    assert "1 run beyond the last look is stored" in text and "run(s)" not in text
    summary = {"fidelity": {"epochs": 20, "train_limit": 0}, "family": fam,
               "configs": [{"config": "trial28", "trial": 28, "param_count": 6740}]}
    h = headline("tiny", summary)
    assert h.status == "not-yet"
    assert h.command == "cnnsearch study confirm tiny --top 2 --seeds 5 --epochs 20 --train-limit 0"
