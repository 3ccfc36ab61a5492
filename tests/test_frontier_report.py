"""Issue 21 item 5: the frontier figure's data, from every study's stored confirmation runs (no training)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from cnnsearch.evidence import confirm
from cnnsearch.report import frontier
from cnnsearch.search import study as study_mod


def _store(study: object, config: str, trial: int, seed: int, acc: float, params: int) -> None:
    labels = np.zeros(100, dtype=np.int64)
    pred = np.where(np.arange(100) < round(acc * 100), labels, 1)
    confirm._store(study, f"confirm:e20-n0:{config}:seed{seed}",
                   {"config": config, "trial": trial, "seed": seed, "epochs": 20, "train_limit": 0, "params": {},
                    "param_count": params, "test_accuracy": acc, "test_loss": 0.1, "val_accuracy": acc,
                    "seconds": 1.0, "predictions": confirm.encode(pred)})


def test_frontier_data_from_every_study(tmp_path: Path, tiny_space: Path) -> None:
    url = f"sqlite:///{tmp_path / 'f.db'}"
    ref = [0.99, 0.98, 0.97]
    for name, cand, params in (("small", [0.99, 1.0, 0.99], 90_000), ("tiny", [0.98, 0.99, 0.99], 7_500)):
        study = study_mod.create(name, tiny_space, url).study
        for seed in range(3):
            _store(study, "baseline", 0, seed, ref[seed], 1_199_882)  # the same runs: reused across the studies
            _store(study, "trial7", 7, seed, cand[seed], params)
    study_mod.create("unconfirmed", tiny_space, url)
    data = frontier.compute(url)
    assert data.unconfirmed == ["unconfirmed"]
    assert len(data.reference) == 1 and data.reference[0].study == "small, tiny"  # one point for shared runs
    assert data.reference[0].params == 1_199_882 and data.reference[0].mean == pytest.approx(0.98)
    by_study = {p.study: p for p in data.candidates}
    tiny = by_study["tiny"]
    assert (tiny.config, tiny.params, tiny.seeds) == ("trial7", 7_500, 3)
    assert tiny.mean == pytest.approx(np.mean([0.98, 0.99, 0.99]))
    from scipy import stats

    half = stats.t.ppf(0.975, 2) * np.std([0.98, 0.99, 0.99], ddof=1) / np.sqrt(3)
    assert tiny.ci95[0] == pytest.approx(tiny.mean - half) and tiny.ci95[1] == pytest.approx(tiny.mean + half)
    assert tiny.verdict in ("better", "worse", "inconclusive")
    assert [p.epochs for p in data.published] == [15, 20, 20]
    page = frontier.html(url)
    assert page.startswith("<figure><img src=\"data:image/png;base64,") and "one seed, best epoch" in page
    assert "hand-built, 9,074 params, 20 epochs" in page and "7,500" in page and "Not confirmed at this fidelity: unconfirmed" in page


def test_frontier_without_confirmations_says_so(tmp_path: Path, tiny_space: Path) -> None:
    url = f"sqlite:///{tmp_path / 'e.db'}"
    study_mod.create("s", tiny_space, url)
    page = frontier.html(url)
    assert page.startswith("<p class='missing'>") and "--epochs 20 --train-limit 0" in page


def test_frontier_adds_committed_confirmations(tmp_path: Path, tiny_space: Path) -> None:
    """A study whose storage is elsewhere joins the figure from its committed confirm.json (issue 21 item 5)."""
    import json

    url = f"sqlite:///{tmp_path / 'g.db'}"
    study = study_mod.create("tiny", tiny_space, url).study
    for seed in range(3):
        _store(study, "baseline", 0, seed, 0.99, 1_199_882)
        _store(study, "trial7", 7, seed, 0.99, 7_500)
    row = {"seeds": 3, "seed_list": [0, 1, 2]}
    doc = {"fidelity": {"epochs": 20, "train_limit": 0}, "configs": [
        {**row, "config": "baseline", "param_count": 1_199_882, "test_accuracies": [0.98] * 3,
         "mean_test_accuracy": 0.98},
        {**row, "config": "trial228", "param_count": 93_370, "test_accuracies": [0.995] * 3,
         "mean_test_accuracy": 0.995, "verdict": "better"},  # no 'reason': judged under the older rules
        {**row, "config": "trial9", "param_count": 90_000, "test_accuracies": [0.99] * 3,
         "mean_test_accuracy": 0.99, "verdict": "inconclusive", "reason": ""}]}
    (tmp_path / "example").mkdir()
    path = tmp_path / "example" / "confirm.json"
    path.write_text(json.dumps(doc))
    data = frontier.compute(url, files=[path])
    by = {(p.study, p.config): p for p in data.candidates}
    assert set(by) == {("tiny", "trial7"), ("example", "trial228"), ("example", "trial9")}
    assert by[("example", "trial228")].verdict == "not decidable today (was better under the older rules)"
    assert by[("example", "trial9")].verdict == "inconclusive" and by[("example", "trial228")].params == 93_370
    assert sorted(p.study for p in data.reference) == ["example", "tiny"]  # different runs: two points
    other = json.loads(json.dumps(doc))
    other["fidelity"] = {"epochs": 3, "train_limit": 0}
    path.write_text(json.dumps(other))
    assert frontier.compute(url, files=[path]).unconfirmed == ["example"]
    path.write_text("{not json")
    with pytest.raises(frontier.ConfigError, match=r"--frontier-with .*confirm.json: expected the JSON of"):
        frontier.compute(url, files=[path])
    assert "hand-built" in frontier.html(url, files=[])
