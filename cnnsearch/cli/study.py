"""``cnnsearch study``: create, run, inspect, confirm and delete architecture searches (Optuna studies)."""

from __future__ import annotations

import sys
from typing import Any

import click

from cnnsearch.model.arch import REFERENCE
from cnnsearch.cli import (emit_json, json_option, space_or_file, storage_option, study_argument, val_options,
                           write_report)
from cnnsearch.cli.types import Workers, not_nan
from cnnsearch.cli.text import confirm_lines, plural, tidy, tidy_params
from cnnsearch.ground.errors import CnnsearchError


@click.group()
def study() -> None:
    """Create, run, inspect and delete architecture searches (Optuna studies)."""
    import optuna

    # Optuna logs "A new study created" and every trial at INFO; cnnsearch prints its own lines.
    optuna.logging.set_verbosity(optuna.logging.WARNING)


@study.command("create")
@click.argument("name")
@click.option("--space", "space_path", required=True, type=click.Path(dir_okay=False),
              shell_complete=lambda ctx, param, incomplete: space_or_file(incomplete),
              help="Space file (TOML), e.g. studies/seed.toml, or a shipped space's name (seed, wide; see"
                   " 'cnnsearch space list'). A path wins.")
@storage_option
def study_create(name: str, space_path: str, url: str | None) -> None:
    """Create study NAME from a space file; the reference model is queued as trial 0."""
    from cnnsearch.search import study as study_mod

    h = study_mod.create(name, space_path, url)
    t = h.training
    click.echo(f"created study {name!r} in {study_mod.mask_url(h.url)}: {len(h.space.searched)} searched dimensions"
               f" ({', '.join(h.space.searched)}); {t.epochs} epochs on"
               f" {'all' if not t.train_limit else f'{t.train_limit:,}'} training images per trial;"
               f" sampler {h.space.study['sampler']}, pruner {h.space.study['pruner']}")
    click.echo(f"next: cnnsearch study run {name} --trials 20")


@study.command("run")
@study_argument
@click.option("--trials", type=click.IntRange(min=0), default=10, show_default=True,
              help="New finished trials to add (the queued baseline, if not run yet, comes on top).")
@click.option("--timeout", type=click.FloatRange(min=0), default=None, callback=not_nan,
              help="Start no new trial after SEC seconds.")
@click.option("--workers", type=Workers(), default="auto", show_default=True, envvar="CNNSEARCH_WORKERS",
              show_envvar=True,
              help="Worker processes on this machine, sharing the trials, shown as one progress view. 'auto': 2"
                   " one-thread processes on a CPU with >= 2 cores (2.4x the trials an hour of one two-thread"
                   " process on 2 cores: docs/benchmarks.md), else 1 (also for --verbose).")
@click.option("--space", "space_path", type=click.Path(dir_okay=False), default=None,
              help="Create the study from this space file if it does not exist yet (an existing study must have"
                   " the same space).")
@click.option("--data", "data_path", default=None,
              help="An .npz, an IDX folder, or a folder of class subfolders of images (default: the data of the"
                   " study's first run, then $CNNSEARCH_DATA, ...). See docs/own-data.md.")
@val_options
@storage_option
@click.option("--no-report", is_flag=True, help="Do not write the HTML report at the end.")
@click.option("--verbose", is_flag=True, help="Per-epoch metrics on stderr.")
@click.option("--quiet", is_flag=True, help="No progress or per-trial lines (errors only).")
@click.option("--seed", type=click.IntRange(0, 2**31 - 1), default=None,
              help="Sampler seed for a reproducible run (default: random, so runs started together differ).")
@click.pass_context
def study_run(ctx: click.Context, name: str, trials: int, timeout: float | None, workers: int | str,
              space_path: str | None, data_path: str | None, val_fraction: float | None, val_data: str | None,
              url: str | None, no_report: bool, verbose: bool, quiet: bool, seed: int | None) -> None:
    """Run (or resume) study NAME: add --trials finished trials, then write its report.

    With --space FILE, a study that does not exist yet is created first (one command from a space
    file to a report), once its space, data and storage have checked out: a failure leaves no study.
    """
    import time

    from cnnsearch.cli.running import run_here, warn
    from cnnsearch.ground.progress import duration
    from cnnsearch.search import prepare, runner
    from cnnsearch.search import study as study_mod

    start = time.perf_counter()
    if space_path is not None:
        h, created = prepare.ready(name, space_path, url, data_path=data_path, val_data=val_data,
                                   val_fraction=val_fraction)
        if created and not quiet:
            click.echo(f"created study {name!r} from {space_path} in {study_mod.mask_url(h.url)}:"
                       f" {len(h.space.searched)} searched dimensions", err=True)
    # auto: one process for --verbose (its per-epoch lines come from one process's progress display).
    processes = (1 if verbose else runner.auto_workers(trials)) if workers == "auto" else int(workers)
    if processes > runner.max_workers():
        click.echo(f"--workers {processes}: more than the {runner.max_workers()} cores here; starting"
                   f" {runner.max_workers()}", err=True)
        processes = runner.max_workers()
    if processes > 1:
        from cnnsearch.model.train import available_cores
        from cnnsearch.search.watch import Watch

        # One view of all workers (plan line, one bar or one line per event, trial lines with their choices).
        watch = None if quiet else Watch(name, url, processes, max(1, available_cores() // processes))
        codes = runner.run_workers(name, trials=trials, workers=processes, timeout=timeout, data_path=data_path,
                                   url=url, quiet=quiet, debug=bool(ctx.find_root().params.get("debug")), seed=seed,
                                   watch=watch, val_data=val_data, val_fraction=val_fraction,
                                   on_warning=None if quiet else warn)
        failed = [c for c in codes if c != 0]
        if failed:
            raise click.exceptions.Exit(130 if 130 in failed else max(failed))
    else:
        run_here(name, trials=trials, timeout=timeout, data_path=data_path, url=url, seed=seed, quiet=quiet,
                  verbose=verbose, val={"val_data": val_data, "val_fraction": val_fraction})
    if not quiet:
        h = study_mod.load(name, url)
        best = study_mod.best_trial(h.study)
        if best is not None:
            click.echo(f"best so far: trial {best.number}, validation accuracy {best.user_attrs['val_accuracy']:.4f},"
                       f" {study_mod.param_count(best.user_attrs) or 0:,} parameters", err=True)
    if not no_report:
        write_report(name, None, url, data_path)
    if not quiet:
        click.echo(f"done in {duration(time.perf_counter() - start)} (total wall time)", err=True)


@study.command("list")
@storage_option
@json_option
def study_list(url: str | None, as_json: bool) -> None:
    """List the studies in a storage."""
    from cnnsearch.search import browse as records

    rows = records.summaries(url)
    if as_json:
        emit_json(rows)
        return
    if not rows:
        from cnnsearch.records.storage import mask_url, resolve_storage

        click.echo(f"no studies in {mask_url(resolve_storage(url))}")
    for r in rows:
        best = "-" if r["best_val_accuracy"] is None else f"{r['best_val_accuracy']:.4f} (trial {r['best_trial']})"
        states = ", ".join(f"{v} {k.lower()}" for k, v in sorted(r["counts"].items()))
        click.echo(f"{r['name']}: {plural(r['trials'], 'trial')} ({states}); best validation accuracy {best}")


@study.command("show")
@study_argument
@click.option("--top", type=click.IntRange(min=1), default=None, help="Only the N best trials by validation accuracy.")
@click.option("--sort", type=click.Choice(["number", "val"]), default="number", show_default=True,
              help="Order: trial number, or validation accuracy (best first).")
@storage_option
@json_option
def study_show(name: str, top: int | None, sort: str, url: str | None, as_json: bool) -> None:
    """Show study NAME: settings and every trial with its choices."""
    from cnnsearch.search import browse as records
    from cnnsearch.search import seeds
    from cnnsearch.ground.describe import choices

    doc = records.show(name, url, top=top, sort=sort)
    for t in doc["trials"]:
        t["params"] = tidy_params(t["params"])
    if as_json:
        emit_json(doc)
        return
    click.echo(f"study {name} ({doc['storage']}), created {doc['created']} from {doc['space_source']}")
    click.echo("training:")
    for key, value in (doc["training"] or {}).items():
        click.echo(f"  {key} = {tidy(value)}")
    click.echo("trials: " + (", ".join(f"{v} {k.lower()}" for k, v in sorted(doc["counts"].items())) or "none"))
    click.echo(seeds.describe(doc.get("sampler_seeds") or []))
    base_val = doc.get("baseline_val_accuracy")
    words = {"COMPLETE": "done", "PRUNED": "pruned", "FAIL": "failed", "RUNNING": "running", "WAITING": "queued"}
    # Columns sized so a seed.toml row fits 100 characters (the choices take up to 53).
    # "running" fills 7 columns: the state column is 8 wide, one space less before the choices.
    click.echo(f"{'trial':<6}{'state':<8}{'val':<7}{'vs':<7}{'test':<7}{'param_count':>11} choices")
    for t in doc["trials"]:
        val = "-" if t["val_accuracy"] is None else f"{t['val_accuracy']:.4f}"
        test = "-" if t["test_accuracy"] is None else f"{t['test_accuracy']:.4f}"
        vs = "base" if t["baseline"] else "-"
        if not t["baseline"] and base_val is not None and t["val_accuracy"] is not None:
            vs = f"{100 * (t['val_accuracy'] - base_val):+.2f}"
        count = "-" if t["param_count"] is None else f"{t['param_count']:,}"
        reason = f"  ({t['fail_reason']})" if t["fail_reason"] and t["state"] == "FAIL" else ""
        click.echo(f"{'#' + str(t['number']):<5} {words.get(t['state'], t['state'].lower()):<8}{val:<7}{vs:<7}"
                   f"{test:<7}{count:>11} {choices(t['spec'], t['params'])}{reason}")
    if doc["trials"] and base_val is not None:
        click.echo("(val, test: accuracy; vs: val accuracy minus the in-study baseline's, in pp)")


@study.command("best")
@study_argument
@click.option("--export", type=click.Path(dir_okay=False), default=None, help="Write the best model to this .keras file.")
@click.option("--confirmed", is_flag=True,
              help="The confirmed winner (highest mean test accuracy over the confirmation's seeds): with --export,"
                   " the weights confirmation kept (its best seed by validation accuracy).")
@storage_option
@json_option
def study_best(name: str, export: str | None, confirmed: bool, url: str | None, as_json: bool) -> None:
    """The best trial of NAME by validation accuracy (or, with --confirmed, the confirmed winner)."""
    from cnnsearch.search import browse as records

    if confirmed:
        from cnnsearch.cli.winner import best_confirmed

        best_confirmed(name, export, url, as_json)
        return
    rec = records.best(name, url, export=export)
    rec["params"] = tidy_params(rec["params"])
    if as_json:
        emit_json(rec)
        return
    from cnnsearch.ground.describe import choices

    click.echo(f"best trial {rec['number']}: validation accuracy {rec['val_accuracy']:.4f}, test accuracy"
               f" {rec['test_accuracy']:.4f} (never used to select), {rec['param_count']:,} parameters")
    click.echo(f"choices: {choices(rec['spec'], rec['params'])}")
    if rec.get("exported"):
        click.echo(f"exported the trained model to {rec['exported']}")


@study.command("delete")
@study_argument
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.option("--force", is_flag=True, help="Delete even while a run is training one of its trials.")
@storage_option
def study_delete(name: str, yes: bool, force: bool, url: str | None) -> None:
    """Delete study NAME, its trials and kept weights."""
    from cnnsearch.search import stale
    from cnnsearch.search import study as study_mod

    study_mod.load(name, url)  # fail clearly on a missing study before asking anything
    if not force:
        stale.check_not_running(name, url)  # a live worker's trial: deleting would crash its run
    if not yes:
        # No terminal to ask (a pipe, cron, or stdin closed: sys.stdin is None) reads as "no".
        if sys.stdin is None or sys.stdin.closed or not sys.stdin.isatty():
            raise CnnsearchError(f"refusing to delete study {name!r} without confirmation (no terminal to ask on);"
                                 " add --yes")
        click.confirm(f"Delete study {name!r} and all its trials?", abort=True)
    study_mod.delete(name, url)
    click.echo(f"deleted study {name!r}")


@study.command("fail-stale")
@click.argument("name")
@click.option("--all", "force", is_flag=True,
              help="Also fail RUNNING trials of other machines (make sure no run is active anywhere first).")
@storage_option
def study_fail_stale(name: str, force: bool, url: str | None) -> None:
    """Fail the RUNNING trials of NAME whose worker is gone, and re-queue each once.

    Needed for journal:// storages, which have no heartbeat (study run also does it on this machine's trials).
    """
    from cnnsearch.search import runner

    failed = runner.fail_stale_trials(name, url, force=force)
    if not failed:
        click.echo(f"no stale trials in {name!r}" + ("" if force else " on this machine (--all for every machine's)"))
        return
    click.echo(f"failed {plural(len(failed), 'stale trial')} of {name!r}: {', '.join(f'#{n}' for n in failed)};"
               " each re-queued once")


@study.command("export")
@study_argument
@click.option("--format", "fmt", type=click.Choice(["csv", "json"]), default="csv", show_default=True,
              help="csv: one row per trial (lists as JSON text); json: an array of the same rows.")
@click.option("--out", type=click.Path(dir_okay=False), default=None, help="Write to FILE instead of stdout.")
@storage_option
def study_export(name: str, fmt: str, out: str | None, url: str | None) -> None:
    """Every trial of NAME as one table: Optuna's trials_dataframe, user attributes flattened, baseline marked."""
    from cnnsearch.search import exchange

    text = exchange.export(name, fmt, url)
    if out is None:
        click.echo(text, nl=False)
        return
    from cnnsearch.ground.output import write_file

    dest = write_file(out, text, what=f"the {fmt} export")  # atomic; through a device, never over it
    click.echo(f"wrote {dest} ({fmt})", err=True)


@study.command("enqueue")
@study_argument
@click.argument("assignments", nargs=-1, required=True, metavar="KEY=VALUE...")
@storage_option
@json_option
def study_enqueue(name: str, assignments: tuple[str, ...], url: str | None, as_json: bool) -> None:
    """Queue a configuration of your own (e.g. conv1_filters=16 dropout_dense=0.3) as NAME's next trial.

    Checked against the study's space first (exit 2, nothing written, when a value is outside it);
    dimensions left out keep the reference model's values.
    """
    from cnnsearch.search import exchange

    queued = exchange.enqueue(name, list(assignments), url)
    queued["params"] = tidy_params(queued["params"])
    if as_json:
        emit_json(queued)
        return
    click.echo(f"queued trial {queued['number']} of {name!r}: "
               + ", ".join(f"{k}={v}" for k, v in queued["params"].items()))  # as typed: KEY=VALUE
    click.echo(f"next: cnnsearch study run {name} --trials 1   (queued trials run first)")


@study.command("confirm")
@study_argument
@click.option("--top", type=click.IntRange(min=1), default=3, show_default=True, help="Configurations to retrain.")
@click.option("--seeds", type=click.IntRange(min=1), default=3, show_default=True,
              help="Training seeds per configuration (a verdict needs at least 3).")
@click.option("--max-seeds", type=click.IntRange(min=1), default=None,
              help="Most seeds this confirmation may reach, declared before its first look [default: --seeds];"
                   " later calls add seeds up to it, each look at the alpha it spends (O'Brien-Fleming).")
@click.option("--new", "new_family", is_flag=True,
              help="Start a new confirmation at seeds no stored run used (after a maximum was reached).")
@click.option("--epochs", type=click.IntRange(min=1), default=None,
              help=f"Epochs per run [default: {REFERENCE.epochs}; the reference's; with --show: the most-run"
                   " fidelity].")
@click.option("--train-limit", type=click.IntRange(min=0), default=None,
              help="Training images per run (0 = all 54,000) [default: 0; with --show: the most-run fidelity].")
@click.option("--data", "data_path", default=None,
              help="MNIST .npz or IDX folder (default: the data the study was trained on).")
@click.option("--show", "show_only", is_flag=True,
              help="Read the stored verdict only: train nothing, load no data.")
@storage_option
@json_option
@click.option("--verbose", is_flag=True, help="Per-epoch metrics on stderr.")
def study_confirm(name: str, top: int, seeds: int, max_seeds: int | None, new_family: bool, epochs: int | None,
                  train_limit: int | None, data_path: str | None, show_only: bool, url: str | None, as_json: bool,
                  verbose: bool) -> None:
    """Retrain the top configurations and the baseline over training seeds; judge each against the baseline."""
    from cnnsearch.evidence import confirm as confirm_mod
    from cnnsearch.ground.progress import Progress, duration

    bar: list[Progress] = []
    took: list[float] = []  # each finished run's own seconds
    at_once = [1]  # runs trained at the same time (the plan's processes)

    def plan(p: Any) -> None:
        click.echo(p.text(), err=True)
        prior = p.seconds / (p.runs * p.epochs) if p.seconds and p.runs else None
        at_once[0] = max(1, p.processes)
        bar.append(Progress(p.runs, p.epochs, verbose=verbose, epoch_prior_s=prior))

    def line(r: dict[str, Any]) -> None:
        b = bar[0]
        took.append(float(r["seconds"]))
        # From whole runs measured so far: runs in the pool's processes send no epochs to this bar, and the
        # plan's estimate is only a prior. The mean run over the runs trained at once, for those still to do.
        n = len(took)  # counted here: the pool's runs do not start units on the bar one by one
        eta = sum(took) / n * (b.total - n) / at_once[0]
        b.end_unit(f"[{n}/{b.total}] {r['config']} seed {r['seed']}: test accuracy {r['test_accuracy']:.4f},"
                   f" {r['seconds']:.0f} s; ETA {duration(eta) if n < b.total else '0 s'}")

    ref = confirm_mod.REFERENCE_FIDELITY
    if show_only:
        fid = None if epochs is None and train_limit is None else confirm_mod.Fidelity(
            ref.epochs if epochs is None else epochs, ref.train_limit if train_limit is None else train_limit)
        summary = confirm_mod.show(name, url, fid)
    else:
        from cnnsearch.cli.running import closing, unit_hooks
        from cnnsearch.ground import interrupt

        # SIGTERM as Ctrl-C: one line, exit 143; the runs stored so far are kept and confirm resumes there.
        with closing(bar, "confirmation"), interrupt.stopping():
            summary = confirm_mod.run(name, top=top, seeds=seeds, max_seeds=max_seeds, new=new_family,
                                      epochs=ref.epochs if epochs is None else epochs,
                                      train_limit=ref.train_limit if train_limit is None else train_limit,
                                      data_path=data_path, url=url, on_run=line, on_plan=plan, **unit_hooks(bar))
    if as_json:
        emit_json(summary)
        return
    if not summary["configs"]:
        click.echo(f"no confirmation runs stored for {name!r}"
                   + (f" at {confirm_mod.Fidelity(**summary['fidelity']).describe()}" if summary["fidelity"] else "")
                   + f"; run: cnnsearch study confirm {name} --top 3 --seeds 3")
        return
    for line in confirm_lines(name, summary, url):
        click.echo(line)
    if not show_only:
        click.echo(f"next: cnnsearch report {name}   (its answer section now shows this verdict)", err=True)

