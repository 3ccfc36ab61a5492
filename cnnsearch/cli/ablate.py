"""``cnnsearch study ablate``: which of the winner's choices carry its gain, by experiment over paired seeds."""

from __future__ import annotations

from typing import Any

import click

from cnnsearch.cli import emit_json, json_option, storage_option, study_argument


def _pp(v: float | None) -> str:
    return "-" if v is None else f"{100 * v:+.2f} pp"


def _cell(r: dict[str, Any]) -> str:
    """One direction of one change, for the table: effect, interval, verdict (or why not run)."""
    if r["problem"]:
        return "not run: " + r["problem"].split(":")[0]
    if r["same_model"]:
        return "same model"
    if r["effect"] is None:
        return r["reason"].split(";")[0] or "no runs yet"
    ci = r["ci95"]
    interval = "" if ci is None else f" [{_pp(ci[0])}, {_pp(ci[1])}]"
    return f"{_pp(r['effect'])}{interval} {r['verdict']}"


def print_summary(s: dict[str, Any]) -> None:
    """The ablation as a table on stdout: each change in both directions, the total, then the words."""
    width = max([len(r["name"]) for r in s["changes"]] + [len("change")])
    head = "leave-one-out (winner without it)"
    cells = [(_cell(r["leave_one_out"]), _cell(r["add_one_in"])) for r in s["changes"]]
    col = max([len(c) for c, _ in cells] + [len(head)])
    click.echo(f"{'change':<{width}}  {head:<{col}}  add-one-in (baseline with it)")
    for r, (loo, aoi) in zip(s["changes"], cells):
        click.echo(f"{r['name']:<{width}}  {loo:<{col}}  {aoi}")
    t = s["total"]
    ci = "" if t["ci95"] is None else f" [{_pp(t['ci95'][0])}, {_pp(t['ci95'][1])}]"
    click.echo(f"{'total':<{width}}  winner - baseline {_pp(t['effect'])}{ci} {t['verdict']} over {t['n']} seeds")
    for r in s["changes"]:
        click.echo(f"  {r['name']}: {r['text']}")
    click.echo(s["verdict"])


@click.command("ablate")
@study_argument
@click.option("--trial", type=click.IntRange(min=0), default=None,
              help="The winner to ablate [default: the best trial by validation accuracy].")
@click.option("--seeds", type=click.IntRange(min=1), default=3, show_default=True,
              help="Paired training seeds per variant (a verdict needs at least 3).")
@click.option("--epochs", type=click.IntRange(min=1), default=None,
              help="Epochs per run [default: the fidelity of the winner's confirmation runs, else 20].")
@click.option("--train-limit", type=click.IntRange(min=0), default=None,
              help="Training images per run (0 = all) [default: as --epochs].")
@click.option("--data", "data_path", default=None, help="MNIST .npz or IDX folder (default: the study's data).")
@click.option("--show", "show_only", is_flag=True, help="Read the stored ablation only: train nothing, load no data.")
@storage_option
@json_option
@click.option("--verbose", is_flag=True, help="Per-epoch metrics on stderr.")
def study_ablate(name: str, trial: int | None, seeds: int, epochs: int | None, train_limit: int | None,
                 data_path: str | None, show_only: bool, url: str | None, as_json: bool, verbose: bool) -> None:
    """Ablate the winner of NAME against the baseline: leave each change out, add each in, over paired seeds."""
    from cnnsearch.evidence import ablate as ablate_mod
    from cnnsearch.evidence.confirm import REFERENCE_FIDELITY as ref
    from cnnsearch.evidence.confirm import Fidelity

    if show_only:
        fid = None
        if epochs is not None or train_limit is not None:
            fid = Fidelity(epochs or ref.epochs, ref.train_limit if train_limit is None else train_limit)
        summary = ablate_mod.show(name, url, trial, fid)
        if summary is None:
            click.echo(f"no ablation stored for {name!r}; run: cnnsearch study ablate {name} --seeds 3")
            return
    else:
        summary = _run(name, trial, seeds, epochs, train_limit, data_path, url, verbose)
    if as_json:
        emit_json(summary)
        return
    print_summary(summary)


def _run(name: str, trial: int | None, seeds: int, epochs: int | None, train_limit: int | None,
         data_path: str | None, url: str | None, verbose: bool) -> dict[str, Any]:
    """Train with a plan line, a progress bar with ETA, and one line per finished run (all on stderr)."""
    from cnnsearch.evidence import ablate as ablate_mod
    from cnnsearch.ground.progress import Progress, duration

    bar: list[Progress] = []

    def plan(p: Any) -> None:
        click.echo(p.text(), err=True)
        prior = p.seconds / (p.new * p.fidelity.epochs) if p.seconds and p.new else None
        bar.append(Progress(p.new, p.fidelity.epochs, verbose=verbose, epoch_prior_s=prior))

    def line(r: dict[str, Any]) -> None:
        b = bar[0]
        # The ETA from whole runs so far: at 1-2 epochs, building, testing and predicting a model cost as
        # much as its epochs, which the bar's epoch-based ETA leaves out.
        eta = b.elapsed() / b.k * (b.total - b.k)
        b.end_unit(f"[{b.k}/{b.total}] {b.label}: test_acc {r['test_accuracy']:.4f}, {r['seconds']:.0f} s;"
                   f" ETA {duration(eta)}")

    from cnnsearch.cli.running import closing, unit_hooks

    with closing(bar, "ablation"):
        summary = ablate_mod.run(name, trial=trial, seeds=seeds, epochs=epochs, train_limit=train_limit,
                                 data_path=data_path, url=url, on_plan=plan, on_run=line, **unit_hooks(bar))
    return summary


__all__ = ["print_summary", "study_ablate"]
