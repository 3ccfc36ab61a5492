"""The one atomic write (issue 25): a block that fails leaves the old file whole and nothing beside it."""

from __future__ import annotations

from pathlib import Path

import pytest

from cnnsearch.ground.output import replacing


def test_a_finished_block_replaces_the_target(tmp_path: Path) -> None:
    target = tmp_path / "model.keras"
    target.write_text("old")
    with replacing(target) as tmp:
        assert tmp.parent == tmp_path and tmp.suffix == ".keras" and tmp != target  # Keras reads the suffix
        tmp.write_text("new")
    assert target.read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.keras"]
    assert target.stat().st_mode & 0o044  # an ordinary readable file, not mkstemp's private mode


def test_a_failed_block_keeps_the_old_file_and_leaves_nothing(tmp_path: Path) -> None:
    target = tmp_path / "metrics.json"
    target.write_text("old")
    with pytest.raises(OSError, match="disk full"):
        with replacing(target) as tmp:
            tmp.write_text("half")
            raise OSError("disk full")
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.json"]
