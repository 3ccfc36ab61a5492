"""Progress rendering (no training): plain lines off a terminal, a bar on one, measured ETA."""

from __future__ import annotations

import io
import re

from cnnsearch.progress import Progress, duration, metrics_text

ANSI = re.compile(r"\x1b\[")


class FakeTty(io.StringIO):
    def isatty(self) -> bool:
        return True


def _drive(p: Progress, units: int, epochs: int) -> None:
    for u in range(units):
        p.start_unit(f"trial {u}")
        for e in range(epochs):
            p.epoch_end(e, {"loss": 0.5, "accuracy": 0.8, "val_loss": 0.4, "val_accuracy": 0.85})
        p.end_unit(f"trial {u} complete")
    p.close()


def test_plain_lines_off_a_terminal() -> None:
    out = io.StringIO()
    p = Progress(2, 3, stream=out)
    assert not p.tty
    _drive(p, 2, 3)
    lines = out.getvalue().splitlines()
    assert not ANSI.search(out.getvalue()) and "\r" not in out.getvalue()
    epoch_lines = [ln for ln in lines if " epoch " in ln]
    assert len(epoch_lines) == 6 and epoch_lines[0].startswith("[1/2] trial 0 epoch 1/3")
    assert "ETA" in epoch_lines[0] and "val_acc" not in epoch_lines[0]  # metrics only with --verbose
    assert lines[-1].startswith("done in ") and "total wall time" in lines[-1]


def test_verbose_adds_metrics_and_worker_mode_drops_epoch_lines() -> None:
    out = io.StringIO()
    _drive(Progress(1, 2, stream=out, verbose=True), 1, 2)
    assert "val_acc 0.8500" in out.getvalue()
    out = io.StringIO()
    _drive(Progress(1, 2, stream=out, epoch_lines=False), 1, 2)
    assert out.getvalue().splitlines()[0] == "trial 0 complete"


def test_bar_on_a_terminal() -> None:
    out = FakeTty()
    p = Progress(2, 2, stream=out)
    assert p.tty
    _drive(p, 2, 2)
    text = out.getvalue()
    assert "\r" in text and "[2/2] trial 1 epoch 2/2" in text and "ETA" in text and "trial 1 complete" in text


def test_eta_from_measured_epochs() -> None:
    p = Progress(3, 4, stream=io.StringIO(), epoch_prior_s=10.0)
    assert p.eta() == 120.0  # nothing measured yet: the prior, 12 epochs
    p.start_unit("trial 0")
    p.epoch_times = [2.0]  # measured: replaces the prior
    p.epoch_done = 1
    assert p.remaining_epochs() == 3 + 2 * 4 and p.eta() == 22.0
    p.end_unit("pruned")  # a pruned trial's remaining epochs drop out
    assert p.remaining_epochs() == 8


def test_duration_and_metrics() -> None:
    assert duration(41.4) == "41 s" and duration(349) == "5 min 49 s" and duration(8700) == "2 h 25 min"
    assert duration(float("nan")) == "?"
    assert metrics_text({"val_accuracy": 0.5}) == "val_acc 0.5000"
