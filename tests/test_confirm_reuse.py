"""Issue 21 item 3: the reference's confirmation runs are reused across the studies of one storage, marked."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from cnnsearch.evidence import confirm, reuse
from cnnsearch.search import runner
from cnnsearch.search import study as study_mod


def _searched(name: str, space: Path, point: dict[str, Any]) -> None:
    study_mod.create(name, space)
    study_mod.load(name).study.enqueue_trial(point)
    runner.run(name, trials=1)


def test_reference_runs_are_reused_across_studies_and_marked(tmp_path: Path, tiny_space: Path, tiny_npz: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CNNSEARCH_STORAGE", f"sqlite:///{tmp_path / 'r.db'}")
    monkeypatch.setenv("CNNSEARCH_DATA", str(tiny_npz))
    _searched("first", tiny_space, {"conv1_filters": 8, "conv2_filters": 8, "conv1_kernel": 3, "dropout_dense": 0.0})
    _searched("second", tiny_space, {"conv1_filters": 4, "conv2_filters": 8, "conv1_kernel": 3, "dropout_dense": 0.0})
    confirm.run("first", top=1, seeds=1, epochs=1)
    first = confirm.stored(study_mod.load("first").study)
    base_key = "confirm:e1-n0:baseline:seed0"
    assert reuse.REUSED_FROM not in first[base_key] and first[base_key]["identity"]["data_sha256"]

    import cnnsearch.model.train as train_mod

    real_fit, trained = train_mod.fit, []

    def counting_fit(spec: Any, *args: Any, **kwargs: Any) -> Any:
        trained.append(spec)
        return real_fit(spec, *args, **kwargs)

    monkeypatch.setattr(train_mod, "fit", counting_fit)
    summary = confirm.run("second", top=1, seeds=1, epochs=1)
    # Only the candidate trained: the reference's run (same spec, settings, seed 1000 and data) was copied.
    assert len(trained) == 1 and trained[0].conv_filters == (4, 8)
    second = confirm.stored(study_mod.load("second").study)
    copy = second[base_key]
    assert copy[reuse.REUSED_FROM] == {"study": "first", "key": base_key}
    for field in ("test_accuracy", "predictions", "seconds", "param_count"):
        assert copy[field] == first[base_key][field]
    assert copy["trial"] == 0 and copy["identity"] == first[base_key]["identity"]
    assert reuse.reused(confirm.runs(second)) == [{"config": "baseline", "seed": 0, "study": "first", "key": base_key}]
    assert {c["config"] for c in summary["configs"]} == {"baseline", "trial1"}

    # A different seed is a different run: trained, not reused.
    trained.clear()
    confirm.run("second", top=1, seeds=1, epochs=1, new=True)  # a new confirmation at fresh seeds
    assert len(trained) == 2  # baseline and trial1 at seed 1
    assert reuse.REUSED_FROM not in confirm.stored(study_mod.load("second").study)["confirm:e1-n0:baseline:seed1"]
