"""Keeping the best weights: a full disk fails the trial cleanly; corrupt weights are caught on read."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from optuna.trial import TrialState

from cnnsearch.records import storage
from cnnsearch.search import study as study_mod
from cnnsearch.ground.errors import StorageError
from cnnsearch.search.objective import model_file
from cnnsearch.cli import main
from conftest import TINY_SPACE, SmallFs
from test_storage import one_error_line  # one helper for "one error line, exit 1" (shared with the storage tests)


def cli(*args: str) -> Result:
    return CliRunner().invoke(main, list(args))


@pytest.fixture
def buildable_space(tmp_path: Path) -> Path:
    """The tiny space without the 13x13 kernel: every trial trains (and may be saved)."""
    path = tmp_path / "buildable.toml"
    path.write_text(TINY_SPACE.format(epochs=2, heartbeat=60).replace("[3, 13]", "[3]"))
    return path


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, tiny_npz: Path) -> str:
    url = f"sqlite:///{tmp_path / 's.db'}"
    monkeypatch.setenv("CNNSEARCH_STORAGE", url)
    monkeypatch.setenv("CNNSEARCH_DATA", str(tiny_npz))
    return url


def test_disk_full_while_keeping_weights(env: str, buildable_space: Path, small_fs: SmallFs,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 13 item 1: a real full filesystem (tmpfs) under the artifact folder."""
    monkeypatch.setenv(storage.ARTIFACTS_ENV, str(small_fs.path / "artifacts"))
    assert cli("study", "create", "full", "--space", str(buildable_space)).exit_code == 0
    assert cli("study", "run", "full", "--trials", "0").exit_code == 0  # the baseline, its weights kept
    h = study_mod.load("full")
    kept = model_file(h, "best")
    assert kept is not None and h.study.get_trials()[0].state == TrialState.COMPLETE
    # Make the next trial a new best, so its weights are saved, onto a disk with no byte free.
    h.study.set_user_attr("best_weights", {**h.study.user_attrs["best_weights"], "val_accuracy": -1.0})
    small_fs.fill()
    r = cli("study", "run", "full", "--trials", "1", "--quiet")  # the run's own lines off: only the error
    one_error_line(r, "no space left on device", str(small_fs.path / "artifacts"))
    trials = study_mod.load("full").study.get_trials()
    assert trials[0].state == TrialState.COMPLETE  # completed trials intact
    assert trials[1].state == TrialState.FAIL
    assert trials[1].user_attrs["fail_reason"] == f"no space left on device ({small_fs.path / 'artifacts'})"
    # no partial file (the report's figure cache beside the kept weights is not one)
    assert sorted(p.name for p in (small_fs.path / "artifacts").iterdir() if not p.name.endswith(".figures.npz")) \
        == [kept.name]
    assert model_file(study_mod.load("full"), "baseline") == kept  # still verifies

    # best --export onto the full disk: one line, and no best.keras.tmp left to keep it full.
    out = small_fs.path / "best.keras"
    r = cli("study", "best", "full", "--export", str(out))
    one_error_line(r, "no space left on device", str(out))
    assert not out.exists() and not out.with_name("best.keras.tmp").exists()


def test_corrupt_kept_weights(env: str, tiny_space: Path, tmp_path: Path, tiny_npz: Path) -> None:
    """Issue 13 item 12: a checksum stored with the kept weights, verified on every read."""
    assert cli("study", "create", "rot", "--space", str(tiny_space)).exit_code == 0
    assert cli("study", "run", "rot", "--trials", "0").exit_code == 0
    h = study_mod.load("rot")
    meta = h.study.user_attrs["best_weights"]
    assert len(meta["sha256"]) == 64
    kept = model_file(h, "best")
    assert kept is not None
    original = kept.read_bytes()
    kept.write_bytes(original[: len(original) // 2])  # truncated, as a half-copied file is

    out = tmp_path / "exported.keras"
    one_error_line(cli("study", "best", "rot", "--export", str(out)), "corrupt", str(kept))
    assert not out.exists() and not out.with_name("exported.keras.tmp").exists()

    html = tmp_path / "report.html"
    r = cli("report", "rot", "--out", str(html), "--data", str(tiny_npz))
    assert r.exit_code == 0, r.output
    said = [line for line in r.stderr.splitlines() if "weights of the best trial" in line and "corrupt" in line]
    assert len(said) == 1, r.stderr  # once, not again as a warning after the report's step line (issue 26)
    text = html.read_text()
    assert "The model figures are left out" in text and "corrupt" in text

    # A flipped byte that keeps the size (and might keep the zip readable) is caught by the checksum too.
    flipped = bytearray(original)
    flipped[len(flipped) // 2] ^= 0xFF
    kept.write_bytes(bytes(flipped))
    with pytest.raises(StorageError, match="checksum does not match"):
        model_file(study_mod.load("rot"), "best")


def test_an_error_raised_by_the_signal_inside_c_code_is_the_interrupt(env: str, buildable_space: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """The signal handler's exception can surface from C code as another error (seen in CI under load:
    "SystemError: Objects/listobject.c:338: bad argument to internal function"): still an interrupted trial."""
    from cnnsearch.ground import interrupt
    from cnnsearch.model import train

    monkeypatch.setattr(interrupt, "_received", [])

    def fit(*args: object, **kwargs: object) -> None:
        interrupt._received.append(15)  # SIGTERM arrived ...
        raise SystemError("Objects/listobject.c:338: bad argument to internal function")  # ... and surfaced so

    monkeypatch.setattr(train, "fit", fit)
    assert cli("study", "create", "sig", "--space", str(buildable_space)).exit_code == 0
    r = cli("study", "run", "sig", "--trials", "1", "--no-report")
    assert r.exit_code == 143, r.output
    t = study_mod.load("sig").study.get_trials()[0]
    assert t.state == TrialState.FAIL and t.user_attrs["fail_reason"] == "interrupted (SIGTERM)"
    assert "SystemError" not in r.output and "Traceback" not in r.output
