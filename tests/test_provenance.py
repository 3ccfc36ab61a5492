"""The data a study was trained on: remembered at the first run, used and checked later."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import numpy as np
import optuna
import pytest
from click.testing import CliRunner

from cnnsearch.ground import provenance
from cnnsearch.search import browse as records
from cnnsearch.search import study as study_mod
from cnnsearch.cli import main
from cnnsearch.ground.errors import DataError
from conftest import make_tiny


@pytest.fixture
def no_env_data(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CNNSEARCH_DATA", raising=False)


def test_remember_resolve_and_refuse(tmp_path: Path, tiny_npz: Path, no_env_data: None) -> None:
    study = optuna.create_study(study_name="mem")
    provenance.load(study, tiny_npz)  # the first run remembers
    rec = provenance.stored(study)
    assert {k: rec[k] for k in ("path", "sha256")} == {"path": str(tiny_npz.resolve()),
                                                       "sha256": hashlib.sha256(tiny_npz.read_bytes()).hexdigest()}
    assert rec["mnist"] is False and rec["val_fraction"] is None  # issue 23: what the split and the 99.15% follow
    assert provenance.resolve(study, None) == rec["path"]  # later runs need no --data
    copy = tmp_path / "moved" / "copy.npz"
    copy.parent.mkdir()
    shutil.copy(tiny_npz, copy)
    assert provenance.load(study, copy).source == str(copy)  # same bytes elsewhere: fine, record unchanged
    assert provenance.stored(study) == rec
    other = tmp_path / "other.npz"
    np.savez(other, **make_tiny(seed=7))
    with pytest.raises(DataError, match=r"was trained on .*tiny\.npz \(sha256 [0-9a-f]{12}\); .*other\.npz differs"):
        provenance.load(study, other)
    tiny_npz.unlink()  # the remembered file is gone and nothing else is set: the usual "not found" error
    with pytest.raises(DataError):
        provenance.load(study, None, download=False)


def test_cli_run_confirm_report_use_the_remembered_data(tmp_path: Path, tiny_space: Path, tiny_npz: Path,
                                                        no_env_data: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # the report goes to reports/ here
    run = CliRunner()
    study_mod.create("d", tiny_space)
    study_mod.load("d").study.enqueue_trial({"conv1_filters": 8, "conv2_filters": 8, "conv1_kernel": 3,
                                             "dropout_dense": 0.0})
    r = run.invoke(main, ["study", "run", "d", "--space", str(tiny_space), "--trials", "1", "--data", str(tiny_npz),
                          "--no-report"])
    assert r.exit_code == 0, r.output
    assert records.show("d")["data"]["path"] == str(tiny_npz.resolve())
    # No --data and no $CNNSEARCH_DATA: the remembered file is used.
    r = run.invoke(main, ["study", "run", "d", "--trials", "0", "--no-report"])
    assert r.exit_code == 0, r.output
    other = tmp_path / "other.npz"
    np.savez(other, **make_tiny(seed=3))
    for cmd in (["study", "run", "d", "--trials", "1"], ["study", "confirm", "d", "--top", "1"], ["report", "d"]):
        r = run.invoke(main, [*cmd, "--data", str(other)])
        assert r.exit_code == 1, (cmd, r.output)
        errors = [ln for ln in r.stderr.splitlines() if ln.startswith("cnnsearch: error: ")]
        assert len(errors) == 1 and "differs" in errors[0] and "Traceback" not in r.output, cmd
    assert len(study_mod.load("d").study.get_trials()) == 2  # nothing was added
    # The data gone: report still writes, and says in one line what it left out.
    tiny_npz.unlink()
    r = run.invoke(main, ["report", "d"])
    assert r.exit_code == 0, r.output
    dropped = [ln for ln in r.stderr.splitlines() if "left out the model figures" in ln]
    assert len(dropped) == 1 and "no MNIST data found" in dropped[0]
    assert (tmp_path / "reports" / "d" / "index.html").is_file()
