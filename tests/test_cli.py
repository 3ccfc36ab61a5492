from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from cnnsearch.cli import main


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
