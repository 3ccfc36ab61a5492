from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from cnnsearch import confirm
from cnnsearch import runner
from cnnsearch import study as study_mod
from cnnsearch.cli import main


def _run(config: str, seed: int, correct: np.ndarray, labels: np.ndarray) -> dict:  # type: ignore[type-arg]
    pred = np.where(correct, labels, (labels + 1) % 10)
    return {"config": config, "trial": 0 if config == "baseline" else 5, "seed": seed, "epochs": 20,
            "train_limit": 0, "params": {}, "param_count": 1000, "test_accuracy": float(correct.mean()),
            "test_loss": 0.1, "val_accuracy": 0.99, "seconds": 1.0, "predictions": confirm.encode(pred)}


def test_summary_statistics_and_mcnemar() -> None:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 10, 10_000)
    attrs = {"confirm_labels": confirm.encode(labels)}
    for seed in range(3):
        base = rng.random(10_000) > 0.0085  # ~99.15% right
        better = base.copy()
        fixed = np.flatnonzero(~base)[:40]  # the candidate also gets 40 of the baseline's misses right
        better[fixed] = True
        better[np.flatnonzero(base)[:5]] = False  # and misses 5 the baseline got
        same = base.copy()
        same[np.flatnonzero(~base)[:3]] = True
        same[np.flatnonzero(base)[:3]] = False
        attrs[f"confirm:e20-n0:baseline:seed{seed}"] = _run("baseline", seed, base, labels)
        attrs[f"confirm:e20-n0:trial5:seed{seed}"] = _run("trial5", seed, better, labels)
        attrs[f"confirm:e20-n0:trial7:seed{seed}"] = _run("trial7", seed, same, labels)
    s = confirm.summarize(attrs)
    rows = {r["config"]: r for r in s["configs"]}
    assert rows["trial5"]["mcnemar_only_baseline"] == 15 and rows["trial5"]["mcnemar_only_candidate"] == 120
    assert rows["trial5"]["mcnemar_p"] < 1e-10 and rows["trial5"]["beyond_noise"] is True
    assert rows["trial5"]["diff_mean"] == pytest.approx(0.0035)
    assert rows["trial7"]["mcnemar_p"] == 1.0 and rows["trial7"]["beyond_noise"] is False
    assert s["verdict"].startswith("trial5 beats the baseline beyond noise: +0.35 pp")
    assert rows["baseline"]["seeds"] == 3


def test_no_win_is_called_noise() -> None:
    labels = np.zeros(1000, dtype=np.int64)
    rng = np.random.default_rng(1)
    attrs = {"confirm_labels": confirm.encode(labels)}
    for seed in range(2):
        attrs[f"confirm:e5-n0:baseline:seed{seed}"] = _run("baseline", seed, rng.random(1000) > 0.01, labels)
        attrs[f"confirm:e5-n0:trial5:seed{seed}"] = _run("trial5", seed, rng.random(1000) > 0.01, labels)
    for r in attrs.values():
        if isinstance(r, dict):
            r["epochs"] = 5
    assert confirm.summarize(attrs)["verdict"].startswith("No configuration beats the baseline beyond noise")


def test_confirm_runs_and_resumes(tmp_path: Path, tiny_space: Path, tiny_npz: Path,
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"sqlite:///{tmp_path / 'c.db'}"
    monkeypatch.setenv("CNNSEARCH_STORAGE", url)
    monkeypatch.setenv("CNNSEARCH_DATA", str(tiny_npz))
    study_mod.create("c", tiny_space)
    study_mod.load("c").study.enqueue_trial({"conv1_filters": 8, "conv2_filters": 8, "conv1_kernel": 3,
                                             "dropout_dense": 0.0})
    runner.run("c", trials=1)
    r = CliRunner().invoke(main, ["study", "confirm", "c", "--top", "1", "--seeds", "2", "--epochs", "1"])
    assert r.exit_code == 0, r.output
    lines = r.stderr.splitlines()
    # The plan first, with an estimate from the search's measured epoch times, then a counter with an ETA.
    assert lines[0].startswith("4 runs: 2 configurations x 2 seeds at 1 epoch on 216 images; about ")
    assert "measured speed" in lines[0]
    done = [ln for ln in lines if ": test_acc " in ln]
    assert len(done) == 4 and done[0].startswith("[1/4] baseline seed 0") and "ETA" in done[0]
    assert lines[-1].startswith("confirmation in ") and "total wall time" in lines[-1]
    assert "beyond noise" in r.stdout
    again = CliRunner().invoke(main, ["study", "confirm", "c", "--top", "1", "--seeds", "2", "--epochs", "1"])
    assert again.exit_code == 0 and "test_acc" not in again.stderr  # finished seeds are not rerun
    assert again.stderr.startswith("0 runs: ")
    from cnnsearch import report as report_mod

    text = report_mod.build("c", models=False)
    assert "test accuracy mean ± std" in text and "McNemar" in text


def test_confirm_needs_a_completed_search(tmp_path: Path, tiny_space: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CNNSEARCH_STORAGE", f"sqlite:///{tmp_path / 'e.db'}")
    study_mod.create("e", tiny_space)
    r = CliRunner().invoke(main, ["study", "confirm", "e"])
    assert r.exit_code == 1 and "no completed trial besides the baseline" in r.stderr
