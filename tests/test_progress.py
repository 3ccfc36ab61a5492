"""Progress rendering (no training): plain lines off a terminal, a bar on one, measured ETA."""

from __future__ import annotations

import io
import re

from cnnsearch.ground.progress import Progress, duration, metrics_text

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
    p.epoch_times = [20.0, 2.0, 4.0]  # the run's first epoch (TensorFlow's warm-up) is left out
    assert p.epoch_seconds() == 3.0
    p.start_unit("trial 1")
    p.skip_unit("infeasible")  # an untrained draw of a size-limited study does not count
    assert p.k == 1 and p.remaining_epochs() == 8


def test_eta_stops_at_the_timeout() -> None:
    # 1,000 trials of 6 epochs at 10 s would be 16 h; --timeout 600 starts no trial after 10 minutes,
    # so the ETA is at most the time left to the deadline plus the current trial's rest.
    p = Progress(1000, 6, stream=io.StringIO(), epoch_prior_s=10.0, deadline_s=600.0)
    p.start_unit("trial 0")
    p.epoch_times, p.epoch_done = [10.0], 2
    left = p.eta()
    assert 600.0 - p.elapsed() + 40.0 - 1.0 <= left <= 600.0 + 40.0
    assert Progress(1000, 6, stream=io.StringIO(), epoch_prior_s=10.0).eta() == 60_000.0  # no deadline: all
    short = Progress(2, 6, stream=io.StringIO(), epoch_prior_s=10.0, deadline_s=3600.0)
    assert short.eta() == 120.0  # the trials end first


def test_duration_and_metrics() -> None:
    assert duration(41.4) == "41 s" and duration(349) == "5 min 49 s" and duration(8700) == "2 h 25 min"
    assert duration(float("nan")) == "?"
    assert metrics_text({"val_accuracy": 0.5}) == "val_acc 0.5000"


# --- `study run` in a real process: stderr a pipe, then a pseudo-terminal -----------------------------

import os  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import threading  # noqa: E402
from pathlib import Path  # noqa: E402

EPOCH_LINE = re.compile(r"^\[\d+/\d+\] trial \d+( \(baseline\))? epoch (\d+)/(\d+)  loss \d.* val_acc \d\.\d{4}"
                        r"  elapsed .*, ETA ")


def _env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "CNNSEARCH_DATA"}
    return {**env, "CNNSEARCH_STORAGE": f"sqlite:///{tmp_path / 'p.db'}"}


def test_study_run_off_a_terminal(tmp_path: Path, tiny_space: Path, tiny_npz: Path) -> None:
    """--space creates the study; stderr (a pipe) gets plain lines, at most one per epoch; the report is written."""
    r = subprocess.run([sys.executable, "-m", "cnnsearch.cli", "study", "run", "plain", "--space", str(tiny_space),
                        "--trials", "2", "--data", str(tiny_npz), "--verbose"], cwd=tmp_path, env=_env(tmp_path),
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    err = r.stderr
    assert "\x1b" not in err and "\r" not in err  # no ANSI codes, no carriage-return redraws
    lines = err.splitlines()
    assert lines[0].startswith("created study 'plain'")
    assert lines[2].startswith("3 trials of 'plain' in one process; ")  # after the device line: the plan
    epochs = [EPOCH_LINE.match(ln) for ln in lines if " epoch " in ln]
    assert epochs and all(epochs)
    trial_lines = [ln for ln in lines if re.match(r"^\[\d/3\] #\d", ln)]
    assert len(trial_lines) == 3 and "conv 32k3 > 64k3 | pool 2 | drop .25/.50 | dense 128" in trial_lines[0]
    # At most one line per epoch run: the baseline and trial 2 train 2 epochs each, one trial may fail at once.
    # (+9: the plan line, and the tiny data's 24 validation images get one warning line, issue 23)
    assert len(epochs) <= 3 * 2 and len(lines) <= len(epochs) + len(trial_lines) + 9
    assert sum("cnnsearch: warning: the validation set has 24 images" in ln for ln in lines) == 1
    assert any(ln.startswith("report: ") for ln in lines)
    assert lines[-1].startswith("done in ") and lines[-1].endswith("(total wall time)")
    # The run ends with the report, its path on stdout.
    path = tmp_path / "reports" / "plain" / "index.html"
    assert r.stdout.startswith(f"wrote {Path('reports/plain/index.html')} in ") and path.stat().st_size > 10_000
    assert len(r.stdout.splitlines()) == 1  # --verbose: metrics on stderr, never Keras's bars on stdout


def test_study_run_on_a_terminal_draws_a_bar(tmp_path: Path, tiny_space: Path, tiny_npz: Path) -> None:
    import fcntl
    import pty
    import struct
    import termios

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 100, 0, 0))  # 100 columns
    p = subprocess.Popen([sys.executable, "-m", "cnnsearch.cli", "study", "run", "tty", "--space", str(tiny_space),
                          "--trials", "0", "--data", str(tiny_npz), "--no-report"], cwd=tmp_path, env=_env(tmp_path),
                         stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=slave)
    os.close(slave)
    chunks: list[bytes] = []

    def drain() -> None:  # keep reading, or a full pty buffer would block the child
        while True:
            try:
                data = os.read(master, 4096)
            except OSError:  # EIO: the child closed its end
                return
            if not data:
                return
            chunks.append(data)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    try:
        assert p.wait(timeout=600) == 0
    finally:
        if p.poll() is None:
            p.kill()
        reader.join(timeout=30)
        os.close(master)
    text = b"".join(chunks).decode("utf-8", "replace")
    assert "\r" in text and "%|" in text and "ETA" in text  # a redrawn tqdm bar
    assert "[1/1] trial 0 (baseline) epoch 2/2" in text
    assert "[1/1] #0 baseline conv 32k3 > 64k3" in text and "(total wall time)" in text


def test_trial_lines_fit_100_columns_for_seed_toml() -> None:
    from cnnsearch.model.arch import ArchSpec
    from cnnsearch.ground.describe import choices
    from cnnsearch.search.runner import TrialLine

    # The widest seed.toml point, trial 99 of 99, every state.
    widest = choices(ArchSpec(conv_filters=(64, 128), kernel_sizes=(5, 5), pool_size=4, dropout_conv=0.45,
                              dropout_dense=0.55).to_dict())
    for state in ("COMPLETE", "PRUNED", "FAIL"):
        t = TrialLine(number=99, state=state, param_count=1, val_accuracy=0.98123, vs_baseline_pp=-10.23, seconds=99,
                      reason="loss became NaN" if state == "FAIL" else "", done=99, total=99, baseline=False,
                      choices=widest, epochs_run=3)
        assert len(t.text()) <= 100, t.text()
    assert t.text().endswith(": failed (loss became NaN)")
