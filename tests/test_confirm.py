from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from cnnsearch.evidence import confirm
from cnnsearch.search import runner
from cnnsearch.search import study as study_mod
from cnnsearch.cli import main


def _run(config: str, seed: int, correct: np.ndarray, labels: np.ndarray) -> dict:  # type: ignore[type-arg]
    pred = np.where(correct, labels, (labels + 1) % 10)
    return {"config": config, "trial": 0 if config == "baseline" else 5, "seed": seed, "epochs": 20,
            "train_limit": 0, "params": {}, "param_count": 1000, "test_accuracy": float(correct.mean()),
            "test_loss": 0.1, "val_accuracy": 0.99, "seconds": 1.0, "predictions": confirm.encode(pred)}


def test_mcnemar_is_counted_per_seed_pair() -> None:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 10, 10_000)
    attrs = {"confirm_labels": confirm.encode(labels)}
    for seed in range(3):
        base = rng.random(10_000) > 0.0085  # ~99.15% right
        better = base.copy()
        fixed = np.flatnonzero(~base)[:40]  # the candidate also gets 40 of the baseline's misses right
        better[fixed] = True
        better[np.flatnonzero(base)[:5]] = False  # and misses 5 the baseline got
        attrs[f"confirm:e20-n0:baseline:seed{seed}"] = _run("baseline", seed, base, labels)
        attrs[f"confirm:e20-n0:trial5:seed{seed}"] = _run("trial5", seed, better, labels)
    s = confirm.summarize(attrs)
    rows = {r["config"]: r for r in s["configs"]}
    r = rows["trial5"]
    assert [m["only_baseline_right"] for m in r["mcnemar_by_seed"]] == [5, 5, 5]
    assert [m["only_candidate_right"] for m in r["mcnemar_by_seed"]] == [40, 40, 40]
    assert all(p < 1e-5 for p in r["mcnemar_p_by_seed"])
    # Identical +0.35 pp on all 3 seeds is not certainty: the seed spread is floored at what the per-image
    # flips alone produce, so p > 0 and the interval has a width.
    assert r["diff_mean"] == pytest.approx(0.0035) and r["diff_sd"] > 1e-4 and r["p"] > 0
    assert r["ci95"][0] < r["diff_mean"] < r["ci95"][1]
    assert r["verdict"] == "better"  # decided by the seeds and images, not by McNemar
    assert "mcnemar_p" not in r and "beyond_noise" not in r  # no pooled test to misread
    assert rows["baseline"]["seeds"] == 3 and "verdict" not in rows["baseline"]


def test_two_seeds_never_win() -> None:
    labels = np.zeros(1000, dtype=np.int64)
    rng = np.random.default_rng(1)
    attrs = {"confirm_labels": confirm.encode(labels)}
    for seed in range(2):
        attrs[f"confirm:e5-n0:baseline:seed{seed}"] = _run("baseline", seed, rng.random(1000) > 0.01, labels)
        attrs[f"confirm:e5-n0:trial5:seed{seed}"] = _run("trial5", seed, rng.random(1000) > 0.01, labels)
    for r in attrs.values():
        if isinstance(r, dict):
            r["epochs"] = 5
    s = confirm.summarize(attrs)
    assert s["verdicts"] == {"trial5": "inconclusive"} and "beyond noise" not in s["verdict"]


def test_confirm_runs_resumes_and_shows_without_training(tmp_path: Path, tiny_space: Path, tiny_npz: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"sqlite:///{tmp_path / 'c.db'}"
    monkeypatch.setenv("CNNSEARCH_STORAGE", url)
    monkeypatch.setenv("CNNSEARCH_DATA", str(tiny_npz))
    study_mod.create("c", tiny_space)
    r = CliRunner().invoke(main, ["study", "confirm", "c", "--show"])
    assert r.exit_code == 0 and "no confirmation runs stored" in r.stdout
    study_mod.load("c").study.enqueue_trial({"conv1_filters": 8, "conv2_filters": 8, "conv1_kernel": 3,
                                             "dropout_dense": 0.0})
    runner.run("c", trials=1)
    args = ["study", "confirm", "c", "--top", "1", "--seeds", "3", "--epochs", "1"]
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 0, r.output
    lines = r.stderr.splitlines()
    # The plan first, with an estimate from the search's measured epoch times, then a counter with an ETA.
    assert lines[0].startswith("6 new runs; 0 of 6 already done: 2 configurations x 3 seeds at 1 epoch on 216 images;"
                               " about ")
    assert "measured speed" in lines[0]
    done = [ln for ln in lines if ": test accuracy " in ln]  # baseline and trial1, seeds 0-2
    assert len(done) == 6 and done[0].startswith("[1/6] ") and "ETA" in done[0]
    # One count per finished run, on both paths (the pool's runs start no unit on the bar one by one).
    assert [ln.split("]")[0] + "]" for ln in done] == [f"[{i}/6]" for i in range(1, 7)]
    assert done[-1].endswith("ETA 0 s")
    assert [ln for ln in lines if "total wall time" in ln][0].startswith("confirmation in ")
    assert re.search(r"trial1 vs the re-trained baseline: (better|worse|inconclusive)", r.stdout)
    assert "beyond noise" not in r.stdout
    out = r.stdout.splitlines()
    assert out[1].split()[:4] == ["configuration", "trial", "parameters", "mean"]  # the verdict as a table
    assert out[-1].startswith(("Yes: ", "No: ", "Not yet: "))  # then the answer in one sentence
    assert "99.15" not in r.stdout  # 1 epoch on tiny data: no comparison with the published figure
    again = CliRunner().invoke(main, args + ["--json"])
    assert again.exit_code == 0 and "test accuracy" not in again.stderr  # finished seeds are not rerun
    assert again.stderr.startswith("0 new runs; 6 of 6 already done: ")
    doc = json.loads(again.stdout)
    assert doc["fidelity"] == {"epochs": 1, "train_limit": 0} and doc["reference"]["comparable"] is False
    cand = next(c for c in doc["configs"] if c["config"] == "trial1")
    assert cand["verdict"] in ("better", "worse", "inconclusive") and len(cand["test_accuracies"]) == 3
    assert {"trial", "param_count", "mean_test_accuracy", "sd_test_accuracy", "ci95_seeds", "ci95", "p_holm",
            "verdict", "mcnemar_p_by_seed", "vs_reference", "search_val_accuracy"} <= set(cand)
    assert doc["family"]["candidates"] == ["trial1"] and doc["family"]["looks"][0]["seeds"] == 3
    assert doc["family"]["looks"][0]["verdicts"] == doc["verdicts"]
    assert doc["rank_check"]["n"] == 2 and "not computable" in doc["rank_check"]["sentence"]
    # --show reads the same verdict without training and without the data.
    monkeypatch.setenv("CNNSEARCH_DATA", str(tmp_path / "missing.npz"))
    shown = CliRunner().invoke(main, ["study", "confirm", "c", "--show", "--json"])
    assert shown.exit_code == 0 and "test accuracy" not in shown.stderr
    assert json.loads(shown.stdout)["verdicts"] == doc["verdicts"]
    other = CliRunner().invoke(main, ["study", "confirm", "c", "--show", "--epochs", "20"])
    assert other.exit_code == 0 and "no confirmation runs stored for 'c' at 20 epochs" in other.stdout
    from cnnsearch.report import page as report_mod

    text = report_mod.build("c", models=False)
    answer = text.split("<section id='answer'>")[1].split("</section>")[0]
    confirmation = text.split("<section id='confirm'>")[1].split("</section>")[0]
    assert cand["verdict"] in answer and "McNemar" in text and "Fidelity check" in confirmation


def test_runs_stored_by_the_first_release_are_read_and_not_rerun(tmp_path: Path, tiny_space: Path, tiny_npz: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CNNSEARCH_STORAGE", f"sqlite:///{tmp_path / 'o.db'}")
    monkeypatch.setenv("CNNSEARCH_DATA", str(tiny_npz))
    study_mod.create("old", tiny_space)
    study_mod.load("old").study.enqueue_trial({"conv1_filters": 8, "conv2_filters": 8, "conv1_kernel": 3,
                                               "dropout_dense": 0.0})
    runner.run("old", trials=1)
    h = study_mod.load("old")
    cands = confirm.candidates(h, 1)
    labels = np.load(tiny_npz)["y_test"]
    confirm._store(h.study, "confirm_labels", confirm.encode(labels))
    for c in cands:  # exactly as the first release wrote them: key "confirm:e1-n0:<config>:seed0"
        rec = _run(c.key, 0, np.ones(len(labels), dtype=bool), labels)
        rec.update(trial=c.trial, epochs=1, train_limit=0)
        confirm._store(h.study, f"confirm:e1-n0:{c.key}:seed0", rec)
    r = CliRunner().invoke(main, ["study", "confirm", "old", "--top", "1", "--seeds", "1", "--epochs", "1"])
    assert r.exit_code == 0, r.output
    assert r.stderr.startswith("0 new runs; 2 of 2 already done: ") and "test accuracy" not in r.stderr  # not retrained
    assert "inconclusive" in r.stdout and "at least 3 seeds" in r.stdout


def test_candidates_differing_only_in_a_continuous_value_are_one_configuration(tmp_path: Path) -> None:
    space = tmp_path / "lr.toml"
    space.write_text("[training]\nepochs = 1\n[space]\nconv1_filters = [8, 16, 32]\n"
                     "learning_rate = { low = 0.1, high = 2.0, log = true }\n")
    study_mod.create("lr", space, f"sqlite:///{tmp_path / 'lr.db'}")
    h = study_mod.load("lr", f"sqlite:///{tmp_path / 'lr.db'}")
    from cnnsearch.search import points

    # trial 0 is the baseline the study queued at create; then four searched points
    for filters, lr, val in [(None, None, 0.97), (16, 1.10, 0.990), (16, 1.15, 0.989), (8, 0.5, 0.985),
                             (16, 0.3, 0.980)]:
        if filters is not None:
            h.study.enqueue_trial({"conv1_filters": filters, "learning_rate": lr})
        t = h.study.ask()
        points.suggest(t, h.space)
        t.set_user_attr("val_accuracy", val)
        h.study.tell(t, val)
    cands = confirm.candidates(h, 3)
    # the baseline, then conv1 16 at its best learning rate, then conv1 8: 16 filters at lr 1.15 and 0.3
    # differ from the best only in the continuous learning rate
    assert [c.key for c in cands] == ["baseline", "trial1", "trial3"]


def test_confirm_needs_a_completed_search(tmp_path: Path, tiny_space: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CNNSEARCH_STORAGE", f"sqlite:///{tmp_path / 'e.db'}")
    study_mod.create("e", tiny_space)
    r = CliRunner().invoke(main, ["study", "confirm", "e"])
    assert r.exit_code == 1 and "no completed trial besides the baseline" in r.stderr


def test_confirm_on_two_processes_counts_each_finished_run(tmp_path: Path, tiny_space: Path, tiny_npz: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """The pool's runs start no unit on the progress bar one by one: each landing run still gets its own count."""
    url = f"sqlite:///{tmp_path / 'p.db'}"
    monkeypatch.setenv("CNNSEARCH_STORAGE", url)
    monkeypatch.setenv("CNNSEARCH_DATA", str(tiny_npz))
    study_mod.create("p", tiny_space)
    study_mod.load("p").study.enqueue_trial({"conv1_filters": 8, "conv2_filters": 8, "conv1_kernel": 3,
                                             "dropout_dense": 0.0})
    runner.run("p", trials=1)
    monkeypatch.setenv("CNNSEARCH_RUN_WORKERS", "2")  # the pool, as on the default 2-core machine
    r = CliRunner().invoke(main, ["study", "confirm", "p", "--top", "1", "--seeds", "2", "--epochs", "1"])
    assert r.exit_code == 0, r.output
    assert "2 runs at a time" in r.stderr.splitlines()[0], r.stderr  # the plan: it ran on the pool
    done = [ln for ln in r.stderr.splitlines() if ": test accuracy " in ln]
    assert [ln.split("]")[0] + "]" for ln in done] == ["[1/4]", "[2/4]", "[3/4]", "[4/4]"], r.stderr
    assert all("ETA " in ln for ln in done) and done[-1].endswith("ETA 0 s")
