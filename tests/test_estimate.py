"""Run-time estimates scaled from measured epoch times."""

from __future__ import annotations

import pytest

from cnnsearch.evidence.estimate import epoch_seconds, speed, work


def test_speed_scales_by_images_and_flops() -> None:
    trials = [{"epoch_seconds": [9.0, 4.0, 4.0], "flops": 1000},  # the first epoch (graph building) is skipped
              {"epoch_seconds": [8.0, 8.0], "flops": 2000},
              {"epoch_seconds": None, "flops": 5}]  # failed before training: ignored
    s = speed(trials, train_images=100, val_images=50)
    assert s is not None and s.trials == 2
    assert s.seconds_per_flop_image == pytest.approx(4.0 / work(1000, 100, 50))
    # Twice the FLOPs on 10x the images: about 20x the time (validation set held).
    assert epoch_seconds(s, 2000, 1000, 50) == pytest.approx(4.0 * 2 * (3 * 1000 + 50) / (3 * 100 + 50))
    assert speed([], 100, 50) is None


def test_confirm_plan_text() -> None:
    from cnnsearch.evidence.estimate import plan

    trials = [{"epoch_seconds": [4.0, 4.0], "flops": 1000}]
    p = plan(trials, 12_000, 6_000, [1000] * 12, configs=4, seeds=3, epochs=20, train_images=54_000)
    per_epoch = 4.0 * (3 * 54_000 + 6_000) / (3 * 12_000 + 6_000)
    assert p.seconds == pytest.approx(12 * 20 * per_epoch)
    assert p.text().startswith("12 runs: 4 configurations x 3 seeds at 20 epochs on 54,000 images; about 1 h 04 min"
                               " at this machine's measured speed")
    assert "no time estimate" in plan([], 1, 1, [5], configs=2, seeds=1, epochs=1, train_images=1).text()
