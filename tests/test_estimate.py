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


def test_a_configurations_own_trial_times_it_and_processes_share_the_runs() -> None:
    """The reference is not a scaled-up small model: its own trial times its runs (issue 21's 35 h plan line)."""
    from cnnsearch.evidence.estimate import packed, plan

    small = {"epoch_seconds": [9.0, 2.0, 2.0], "flops": 1_000}
    ref = {"epoch_seconds": [30.0, 12.0, 12.0], "flops": 24_000}  # 24x the FLOPs, only 6x the time
    trials = [small, dict(small), dict(small), ref]
    scale = (3 * 54_000 + 6_000) / (3 * 18_000 + 6_000)
    flat = plan(trials, 18_000, 6_000, [1_000, 24_000], configs=2, seeds=1, epochs=20, train_images=54_000)
    assert flat.seconds == pytest.approx(20 * scale * (2.0 + 24 * 2.0))  # FLOPs-scaled: the reference 24x
    mine = plan(trials, 18_000, 6_000, [1_000, 24_000], configs=2, seeds=1, epochs=20, train_images=54_000,
                own=[small, ref])
    assert mine.seconds == pytest.approx(20 * scale * (2.0 + 12.0))  # each from its own trial
    assert "each configuration's own search trial's epoch times" in mine.text() and "one run at a time" in mine.text()
    two = plan(trials, 18_000, 6_000, [1_000, 24_000, 1_000], configs=2, seeds=1, epochs=20, train_images=54_000,
               own=[small, ref, None], processes=2)
    assert two.seconds == pytest.approx(20 * scale * 12.0)  # the reference on one process, both small on the other
    assert "2 runs at a time" in two.text() and "2 runs from their own trial's" in two.text()
    assert packed([5.0, 4.0, 3.0, 3.0], 2) == 8.0 and packed([5.0, 4.0], 1) == 9.0 and packed([], 2) == 0.0
