from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from cnnsearch.model.arch import REFERENCE
from cnnsearch.cli import main
from cnnsearch.ground.errors import StorageError
from cnnsearch.model.train import TrainConfig


def test_help_lists_commands() -> None:
    r = CliRunner().invoke(main, ["--help"])
    assert r.exit_code == 0 and "baseline" in r.output


def test_usage_error_exits_2() -> None:
    r = CliRunner().invoke(main, ["baseline", "--epochs", "0"])
    assert r.exit_code == 2


def test_baseline_json_and_files(tiny_npz: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    r = CliRunner().invoke(main, ["baseline", "--data", str(tiny_npz), "--epochs", "2", "--out", str(out), "--json"])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)  # stdout holds the JSON document and nothing else
    for key in ("param_count", "epochs", "seconds", "test_loss", "test_accuracy", "val_accuracy_by_epoch"):
        assert key in doc
    # 12x12 tiny images: conv 10 -> 8 -> pool 4; 4*4*64 = 1024 into the 128-unit dense layer.
    assert "params" not in doc  # one word for the count: param_count
    assert doc["param_count"] == 320 + 18_496 + 1024 * 128 + 128 + 128 * 3 + 3
    assert doc["epochs"] == 2 and len(doc["val_accuracy_by_epoch"]) == 2
    names = {p.name for p in out.iterdir()}
    assert {"model.keras", "metrics.json", "learning_curve.png", "conv1_filters.png", "conv2_filters_ch0.png",
            "digits_feature_maps.png", "digit_0_maps.png", "digit_3_maps.png", "digit_11_maps.png"} <= names
    assert all((out / n).stat().st_size > 1000 for n in names if n.endswith(".png"))
    assert json.loads((out / "metrics.json").read_text())["test_accuracy"] == doc["test_accuracy"]


def test_missing_data_is_one_line_exit_1(tmp_path: Path) -> None:
    r = CliRunner().invoke(main, ["baseline", "--data", str(tmp_path / "nonexistent")])
    assert r.exit_code == 1
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "nonexistent" in lines[0] and "Traceback" not in r.output


def test_no_hidden_worker_options() -> None:
    # Workers have their own entry point (python -m cnnsearch.search.runner): the CLI has no internal flags.
    for flag in ("--worker", "--threads"):
        r = CliRunner().invoke(main, ["study", "run", "x", flag])
        assert r.exit_code == 2 and "No such option" in r.output


def test_debug_is_not_an_environment_variable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CNNSEARCH_DEBUG", raising=False)
    url = f"sqlite:///{tmp_path / 'none.db'}"
    quiet = CliRunner().invoke(main, ["study", "show", "x", "--storage", url])
    assert quiet.exit_code == 1 and "no such database file" in quiet.stderr
    loud = CliRunner().invoke(main, ["--debug", "study", "show", "x", "--storage", url])
    assert isinstance(loud.exception, StorageError)  # the traceback, not one line
    assert "CNNSEARCH_DEBUG" not in os.environ
    after = CliRunner().invoke(main, ["study", "show", "x", "--storage", url])  # --debug did not stick
    assert after.exit_code == 1 and not isinstance(after.exception, StorageError)


def test_runner_entry_point_has_its_own_arguments() -> None:
    r = subprocess.run([sys.executable, "-m", "cnnsearch.search.runner", "--help"], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0 and "--trials" in r.stdout and "--threads" in r.stdout


def test_defaults_come_from_the_reference() -> None:
    r = CliRunner().invoke(main, ["study", "confirm", "--help"])
    assert f"[default: {REFERENCE.epochs};" in r.output
    r = CliRunner().invoke(main, ["baseline", "--help"])
    assert f"{REFERENCE.test_accuracy:.2%}" in r.output and f"[default: {TrainConfig().epochs};" in r.output


def _db_under_a_file(tmp_path: Path) -> tuple[Path, str]:
    a_file = tmp_path / "plain.txt"
    a_file.write_text("not a folder")
    return a_file, f"sqlite:///{a_file / 'studies' / 'x.db'}"


def test_create_where_the_database_folder_cannot_be_made(tmp_path: Path, tiny_space: Path) -> None:
    a_file, url = _db_under_a_file(tmp_path)
    r = CliRunner().invoke(main, ["study", "create", "x", "--space", str(tiny_space), "--storage", url])
    assert r.exit_code == 1, r.output
    assert r.exception is None or isinstance(r.exception, SystemExit)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "cannot create the folder" in lines[0] and "plain.txt" in lines[0]
    assert a_file.read_text() == "not a folder"


def test_baseline_out_that_cannot_be_made_fails_before_training(tmp_path: Path, tiny_npz: Path) -> None:
    a_file, _ = _db_under_a_file(tmp_path)
    r = CliRunner().invoke(main, ["baseline", "--data", str(tiny_npz), "--epochs", "1", "--out", str(a_file / "run")])
    assert r.exit_code == 1, r.output
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "cannot create the run folder" in lines[0] and "epoch" not in r.stderr


def test_delete_with_stdin_closed_is_a_no(tmp_path: Path, tiny_space: Path) -> None:
    import os
    import subprocess
    import sys

    from cnnsearch.search import study as study_mod

    url = f"sqlite:///{tmp_path / 'd.db'}"
    study_mod.create("keepme", tiny_space, url)
    # A real process whose fd 0 is closed (`cnnsearch study delete NAME <&-`): Python sets sys.stdin to None.
    r = subprocess.run([sys.executable, "-m", "cnnsearch.cli", "study", "delete", "keepme", "--storage", url],
                       preexec_fn=lambda: os.close(0), capture_output=True, text=True, timeout=120)
    assert r.returncode == 1, r.stderr
    assert r.stderr.strip().splitlines() == [r.stderr.strip()] and "--yes" in r.stderr and "Traceback" not in r.stderr
    assert study_mod.load("keepme", url).name == "keepme"  # nothing deleted
