"""One Holm family per confirmation, and more seeds only under alpha spending (issue 20).

The logic runs through the real CLI and real SQLite storage; the training itself is a
fake fit (deterministic predictions per configuration and seed), since what is tested is
which runs are judged, at which level, and what is stored.
"""

from __future__ import annotations

import json
import zlib
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner

from cnnsearch.cli import main
from cnnsearch.evidence import confirm, store, verdict
from cnnsearch.search import points
from cnnsearch.search import study as study_mod


def _fake_fit(spec: Any, splits: Any, config: Any, predict_test: bool = False, on_epoch: Any = None) -> Any:
    # Each (architecture, seed) misses its own random 20% of the test images.
    rng = np.random.default_rng(zlib.crc32(repr(spec).encode()) + config.seed)
    y = np.asarray(splits.y_test)
    pred = np.where(rng.random(len(y)) < 0.8, y, (y + 1) % 10)
    return SimpleNamespace(params=1000, test_accuracy=float((pred == y).mean()), test_loss=0.1, val_accuracy=0.9,
                           seconds=0.01, test_predictions=pred)


@pytest.fixture
def searched(tmp_path: Path, tiny_space: Path, tiny_npz: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A study with the baseline and two searched configurations (told, not trained), and the fake fit."""
    monkeypatch.setenv("CNNSEARCH_STORAGE", f"sqlite:///{tmp_path / 'f.db'}")
    monkeypatch.setenv("CNNSEARCH_DATA", str(tiny_npz))
    monkeypatch.setattr("cnnsearch.model.train.fit", _fake_fit)
    study_mod.create("f", tiny_space)
    h = study_mod.load("f")
    for params, val in [(None, 0.90), ({"conv1_filters": 8, "conv2_filters": 8, "conv1_kernel": 3,
                                        "dropout_dense": 0.0}, 0.95),
                        ({"conv1_filters": 4, "conv2_filters": 8, "conv1_kernel": 3, "dropout_dense": 0.25}, 0.94)]:
        if params is not None:
            h.study.enqueue_trial(params)
        t = h.study.ask()
        points.suggest(t, h.space)
        t.set_user_attr("val_accuracy", val)
        h.study.tell(t, val)
    return "f"


def _confirm(*args: str) -> Any:
    return CliRunner().invoke(main, ["study", "confirm", "f", "--top", "2", "--epochs", "1", *args])


def test_looks_spend_alpha_and_show_reproduces_them(searched: str) -> None:
    first = _confirm("--seeds", "3", "--max-seeds", "5", "--json")
    assert first.exit_code == 0, first.output
    doc = json.loads(first.stdout)
    fam = doc["family"]
    assert fam["candidates"] == ["trial1", "trial2"] and fam["max_seeds"] == 5
    assert fam["looks"][0]["alpha"] == pytest.approx(verdict.spending([3], 5)[0]) and fam["looks"][0]["alpha"] < 0.05
    second = _confirm("--seeds", "5", "--json")
    assert second.exit_code == 0, second.output
    assert second.stderr.startswith("6 new runs; 9 of 15 already done: 3 configurations x 5 seeds")
    doc = json.loads(second.stdout)
    levels = [look["alpha"] for look in doc["family"]["looks"]]
    assert [look["seeds"] for look in doc["family"]["looks"]] == [3, 5]
    assert levels == pytest.approx(verdict.spending([3, 5], 5)) and sum(levels) <= 0.05 + 1e-12
    for c in doc["configs"][1:]:
        assert {"ci95_seeds", "ci95", "p_holm", "verdict"} <= set(c) and c["paired_seeds"] == 5
        assert c["ci95"][0] <= c["ci95_seeds"][0] and c["ci95"][1] >= c["ci95_seeds"][1]
    # Beyond the declared maximum after a look: refused, with the way out, nothing stored.
    over = _confirm("--seeds", "6")
    assert over.exit_code == 2 and "declared at most 5 seeds" in over.stderr and "--new" in over.stderr
    assert "Traceback" not in over.output
    # An interrupted follow-up (one run of a new seed stored): --show still gives the run's verdicts.
    h = study_mod.load("f")
    extra = dict(confirm.stored(h.study)[store.run_key(confirm.Fidelity(1, 0), "baseline", 4)], seed=5)
    store.put(h.study, store.run_key(confirm.Fidelity(1, 0), "baseline", 5), extra)
    shown = CliRunner().invoke(main, ["study", "confirm", "f", "--show", "--json"])
    again = json.loads(shown.stdout)
    assert again["verdicts"] == doc["verdicts"] == doc["family"]["looks"][-1]["verdicts"]
    assert [c.get("p_holm") for c in again["configs"]] == [c.get("p_holm") for c in doc["configs"]]
    assert again["family"]["pending_runs"] == 1
    # A new confirmation starts at seeds no run used (never looked at), with its own family.
    fresh = _confirm("--seeds", "3", "--new", "--json")
    assert fresh.exit_code == 0, fresh.output
    new = json.loads(fresh.stdout)["family"]
    assert new["id"] == 2 and new["first_seed"] == 6 and new["judged_seeds"] == [6, 7, 8]


def test_a_changed_maximum_after_a_look_is_refused(searched: str) -> None:
    low = _confirm("--seeds", "5", "--max-seeds", "3")
    assert low.exit_code == 2 and "--max-seeds >= --seeds" in low.stderr and "max_seeds=3" in low.stderr
    assert _confirm("--seeds", "3").exit_code == 0
    r = _confirm("--seeds", "3", "--max-seeds", "10")
    assert r.exit_code == 2 and "declared at most 3 seeds before its first look" in r.stderr


def test_an_interrupted_first_confirmation_has_no_verdict_and_its_candidates_no_family(searched: str) -> None:
    h = study_mod.load("f")
    fid = confirm.Fidelity(1, 0)
    fam = store.new_family({}, fid, ["trial1", "trial2"], first_seed=0, max_seeds=3, alpha=0.05)
    store.put(h.study, store.family_key(fid, 1), fam)
    labels = np.arange(50) % 10
    store.put(h.study, store.LABELS_KEY, confirm.encode(labels))
    for key, seeds in [("baseline", 3), ("trial1", 3), ("trial2", 1)]:
        for s in range(seeds):
            store.put(h.study, store.run_key(fid, key, s),
                              {"config": key, "trial": 0, "seed": s, "epochs": 1, "train_limit": 0, "params": {},
                               "param_count": 10, "test_accuracy": 0.9, "seconds": 0.1,
                               "predictions": confirm.encode(labels)})
    s = confirm.show("f")
    assert s["verdicts"] == {} and "has not finished its first look" in s["verdict"]
