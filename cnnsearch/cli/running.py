"""``study run`` in this process: its progress bar and its warnings (split from :mod:`cnnsearch.cli.study`)."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator

import click


def warn(text: str) -> None:
    """One warning line on stderr (the run shows each once)."""
    click.echo(f"cnnsearch: warning: {text}", err=True)


def run_here(name: str, *, trials: int, timeout: float | None, data_path: str | None, url: str | None,
              seed: int | None, quiet: bool, verbose: bool, val: dict[str, Any]) -> None:
    """``study run`` in this process, with its progress bar (unless ``quiet``)."""
    from cnnsearch.ground.progress import Progress, plan_line
    from cnnsearch.search import runner

    bar: list[Progress] = []

    def plan(total: int, epochs: int, prior: float | None) -> None:
        # First line of the run: which device trains (issue 12). Here, once the study and its data
        # have opened, so bad input stays one error line. (Workers print their own: TensorFlow's
        # threads in a --workers parent would take the Ctrl-C it must pass on.)
        from cnnsearch.model.train import device_line

        click.echo(f"training on {device_line()}", err=True)
        click.echo(plan_line(name, total, 1, epochs, prior), err=True)
        bar.append(Progress(total, epochs, verbose=verbose, epoch_prior_s=prior, deadline_s=timeout))

    def begin(number: int, is_baseline: bool) -> None:
        bar[0].start_unit(f"trial {number}{' (baseline)' if is_baseline else ''}")

    def line(t: runner.TrialLine) -> None:
        if t.state == "INFEASIBLE":  # untrained, not counted toward --trials
            bar[0].skip_unit(t.text())
        else:
            bar[0].end_unit(t.text())

    try:
        # --verbose means per-epoch metrics on stderr (the progress module), not Keras's per-batch
        # bars, which go to stdout.
        hooks = {} if quiet else {"on_plan": plan, "on_trial_start": begin, "on_trial": line, "on_warning": warn,
                                  "on_epoch": lambda e, logs: bar[0].epoch_end(e, logs)}
        runner.run(name, trials=trials, timeout=timeout, data_path=data_path, url=url, seed=seed, **val, **hooks)
    finally:
        if bar:
            bar[0].close(None)


def unit_hooks(bar: list[Any]) -> dict[str, Any]:
    """``on_start`` and ``on_epoch`` hooks that drive the run's progress bar (``bar[0]``, made by the plan hook)."""
    return {"on_start": lambda label: bar[0].start_unit(label), "on_epoch": lambda e, logs: bar[0].epoch_end(e, logs)}


@contextmanager
def closing(bar: list[Any], what: str) -> Iterator[None]:
    """Close the progress bar when the block ends: with ``what``'s total time, or silently when it raises, so
    the error's one line is the last."""
    try:
        yield
    except BaseException:
        if bar:
            bar[0].close(None)
        raise
    if bar:
        bar[0].close(what)
