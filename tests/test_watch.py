"""The one progress view of a run in worker processes (cnnsearch.search.watch), without training."""

from __future__ import annotations

import io
import sys
from pathlib import Path
from typing import Any

import pytest
from optuna.distributions import CategoricalDistribution
from optuna.trial import TrialState, create_trial

from cnnsearch.search import study as study_mod
from cnnsearch.search.watch import Watch

DISTS = {"conv1_filters": CategoricalDistribution([4, 8, 32]), "conv2_filters": CategoricalDistribution([8, 64])}


class FakeProc:
    """A finished worker, as far as the view is concerned: its exit status and a stderr pipe with these lines."""

    def __init__(self, code: int, lines: list[str], running_polls: int = 0, on_exit: Any = None) -> None:
        self.code, self.returncode = code, None
        self.stderr = io.BytesIO("".join(line + "\n" for line in lines).encode())
        self.left, self.on_exit = running_polls, on_exit

    def poll(self) -> int | None:
        """Still running for ``running_polls`` looks; then ``on_exit`` (the worker's last writes) and its status."""
        if self.left > 0:
            self.left -= 1
            return None
        if self.returncode is None and self.on_exit is not None:
            self.on_exit()
        self.returncode = self.code
        return self.returncode


def _trial(number_val: float, baseline: bool = False, state: TrialState = TrialState.COMPLETE) -> Any:
    attrs: dict[str, Any] = {"baseline": baseline, "seconds": 4.0, "epoch_seconds": [2.0, 2.0], "params": 1234,
                             "spec": {"conv_filters": [8, 64], "kernel_sizes": [3, 3]}}
    if state == TrialState.COMPLETE:
        attrs["val_accuracy"] = number_val
        return create_trial(state=state, params={"conv1_filters": 8, "conv2_filters": 64}, distributions=DISTS,
                            value=number_val, user_attrs=attrs, intermediate_values={0: number_val - 0.01,
                                                                                     1: number_val})
    return create_trial(state=state, params={"conv1_filters": 4, "conv2_filters": 8}, distributions=DISTS,
                        user_attrs=attrs, intermediate_values={0: 0.5})


@pytest.fixture
def study(tmp_path: Path, tiny_space: Path) -> tuple[str, study_mod.Handle]:
    url = f"sqlite:///{tmp_path / 'w.db'}"
    h = study_mod.create("w", tiny_space, url)
    h.study.add_trial(_trial(0.97, baseline=True))  # finished before the run: not shown again
    return url, h


def test_plain_lines_aggregate_the_workers(study: tuple[str, study_mod.Handle]) -> None:
    url, h = study
    out = io.StringIO()
    w = Watch("w", url, workers=2, threads=1, stream=out, tty=False, poll_s=0.01)
    assert w.epoch_prior == 2.0  # the median epoch of the finished trials
    running = h.study.ask()  # a worker's trial, one epoch in
    running.report(0.9, 0)

    def finish() -> None:
        h.study.tell(running, 0.98)
        h.study.add_trial(_trial(0.5, state=TrialState.PRUNED))

    procs = [FakeProc(0, ["worker 11 training on CPU x, 1 thread", "worker 11 [1/2] #2 conv ...: val_acc 0.9"],
                      running_polls=1, on_exit=finish),
             FakeProc(0, ["worker 12 training on CPU x, 1 thread", "cnnsearch: error: something one line"])]
    codes = w(procs, 3)  # type: ignore[arg-type]
    assert codes == [0, 0]
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("3 trials of 'w' on 2 workers (1 thread each); about ") and "measured speed" in lines[0]
    assert any(ln.startswith("[0/3] trial ") and " epoch 1/2, elapsed " in ln for ln in lines)  # an event line
    finished = [ln for ln in lines if ln.startswith("[") and " #" in ln.split("]")[1][:3]]
    assert [ln.split("]")[0] for ln in finished] == ["[1/3", "[2/3"], lines  # one overall counter
    assert "worker 11 training on CPU x, 1 thread" in lines and "cnnsearch: error: something one line" in lines
    assert not any(ln.startswith("worker 11 [1/2]") for ln in lines)  # a worker's own counter is dropped
    assert "\x1b[" not in out.getvalue()


def test_a_bar_on_a_terminal(study: tuple[str, study_mod.Handle]) -> None:
    url, h = study
    out = io.StringIO()
    w = Watch("w", url, workers=2, stream=out, tty=True, poll_s=0.01)
    t = h.study.ask()
    t.report(0.9, 0)
    t.report(0.91, 1)
    assert w([FakeProc(0, [], running_polls=1)], 2) == [0]  # type: ignore[list-item]
    text = out.getvalue()
    assert "[0/2] #" in text and "epoch 2/2" in text and "ETA" in text  # each running trial's epoch, overall k/N


def test_no_measurement_yet_says_so(tmp_path: Path, tiny_space: Path) -> None:
    url = f"sqlite:///{tmp_path / 'n.db'}"
    study_mod.create("n", tiny_space, url)
    w = Watch("n", url, workers=2, stream=io.StringIO(), tty=False)
    w.total = 1
    assert w.plan_line() == ("1 trial of 'n' on 2 workers (1 thread each); time not measured yet (the first epochs"
                             " will tell)")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__]))
