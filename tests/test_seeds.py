"""Every run's effective sampler seed is stored on the study and shown (issue 20)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from cnnsearch.cli import main
from cnnsearch.search import runner, seeds
from cnnsearch.search import study as study_mod


def test_each_run_stores_the_seed_it_really_used(tmp_path: Path, tiny_space: Path, tiny_npz: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CNNSEARCH_STORAGE", f"sqlite:///{tmp_path / 's.db'}")
    monkeypatch.setenv("CNNSEARCH_DATA", str(tiny_npz))
    study_mod.create("s", tiny_space)
    assert seeds.of(study_mod.system_attrs(study_mod.load("s").study)) == []  # opening to read records nothing
    runner.run("s", trials=0)  # drawn at random
    runner.run("s", trials=0, seed=5)  # given: 5 + trials so far + 7919 x worker
    got = seeds.of(study_mod.system_attrs(study_mod.load("s").study))
    assert [r["given"] for r in got] == [None, 5] and got[1]["seed"] == 5 + got[1]["trials_before"]
    assert 0 <= got[0]["seed"] < 2**31
    shown = CliRunner().invoke(main, ["study", "show", "s"])
    assert shown.exit_code == 0, shown.output
    assert f"sampler seeds: {got[0]['seed']} (drawn at random, worker 0" in shown.stdout
    assert f"{got[1]['seed']} (--seed 5, worker 0" in shown.stdout
    doc = json.loads(CliRunner().invoke(main, ["study", "show", "s", "--json"]).stdout)
    assert [r["seed"] for r in doc["sampler_seeds"]] == [r["seed"] for r in got]
