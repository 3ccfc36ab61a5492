"""The ``cnnsearch`` command: the only module that parses arguments, prints and exits.

Each command is a few lines over a public function. Errors the user can fix
(:class:`~cnnsearch.errors.CnnsearchError`) print one line on stderr and exit
1 (2 for invalid input); ``--debug`` shows the traceback instead.
Exit codes: 0 ok, 1 error, 2 usage or invalid input, 128 + signal when a run is interrupted
(130 Ctrl-C, 143 SIGTERM, 129 SIGHUP).
"""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from cnnsearch import dashboard as dashboard_mod  # light: its optuna side is imported when it serves
from cnnsearch.arch import REFERENCE
from cnnsearch.errors import CnnsearchError
from cnnsearch.train import TrainConfig

#: The defaults every training option shows: the reference's settings.
_TRAIN = TrainConfig()


class _Group(click.Group):
    """Turns CnnsearchError and Ctrl-C into one line and an exit status."""

    def invoke(self, ctx: click.Context) -> Any:
        debug = bool(ctx.params.get("debug"))  # parsed before invoke; read here, never from the environment
        try:
            return super().invoke(ctx)
        except CnnsearchError as exc:
            if debug:
                raise
            click.echo(f"cnnsearch: error: {exc}", err=True)
            ctx.exit(exc.exit_code)
        except Exception as exc:  # a database error after the storage opened: one line naming file and cause
            if debug:
                raise
            from cnnsearch.storage import storage_error

            explained = storage_error(exc)
            if explained is None:
                raise
            click.echo(f"cnnsearch: error: {explained}", err=True)
            ctx.exit(explained.exit_code)
        except KeyboardInterrupt as exc:  # Ctrl-C, and SIGTERM/SIGHUP during a run (cnnsearch.interrupt)
            if debug:
                raise
            click.echo(f"cnnsearch: {getattr(exc, 'reason', 'interrupted')}", err=True)
            ctx.exit(getattr(exc, "exit_code", 130))


class _Workers(click.ParamType):
    """--workers: a whole number >= 1, or "auto" (the runner's AUTO_WORKERS)."""

    name = "K|auto"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
            return value
        if str(value).strip().lower() == "auto":
            from cnnsearch.runner import AUTO_WORKERS

            return AUTO_WORKERS
        try:
            k = int(str(value))
        except ValueError:
            k = 0
        if k < 1:
            self.fail(f"expected a whole number >= 1 or 'auto'; received {value!r}", param, ctx)
        return k


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--debug", is_flag=True, help="Show tracebacks instead of one-line errors.")
@click.version_option(package_name="cnnsearch")
def main(debug: bool) -> None:
    """Search a CNN's filters, kernels, pools and dropout by evidence, against the Keras MNIST baseline."""
    from cnnsearch import _tf

    _tf.show_import_log = debug


def _emit_json(obj: Any) -> None:
    click.echo(json.dumps(obj, indent=2, default=str))


@main.command(help=f"Train the reference CNN ({REFERENCE.test_accuracy:.2%} in the reference) and draw its figures.")
@click.option("--data", "data_path", type=str, default=None,
              help="Keras-layout mnist.npz or a folder of the four IDX files (default: $CNNSEARCH_DATA,"
                   " then the Keras cache, then download).")
@click.option("--epochs", type=click.IntRange(min=1), default=_TRAIN.epochs, show_default=True, help="Training epochs.")
@click.option("--train-limit", type=click.IntRange(min=0), default=_TRAIN.train_limit, show_default=True,
              help="Train on the first N images after the validation split (0 = all 54,000).")
@click.option("--seed", type=int, default=_TRAIN.seed, show_default=True,
              help="Random seed (weights, dropout, shuffling).")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default="reports/baseline", show_default=True,
              help="Run folder for the model, metrics.json and figures.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document on stdout, nothing else.")
@click.option("--precision", type=click.Choice(["float32", "mixed_bfloat16"]), default=_TRAIN.precision, show_default=True,
              help="Keras dtype policy (mixed_bfloat16: faster on AVX512-BF16 CPUs; see README's benchmarks).")
@click.option("--verbose", is_flag=True, help="Show Keras's own progress bars (they go to stdout: not with --json).")
def baseline(data_path: str | None, epochs: int, train_limit: int, seed: int, out_dir: str, as_json: bool,
             precision: str, verbose: bool) -> None:
    from cnnsearch import baseline as baseline_mod
    from cnnsearch.progress import Progress

    # One unit of `epochs` epochs: a bar on a terminal, one line per epoch (with its metrics) elsewhere.
    bar = Progress(1, epochs, verbose=True)
    bar.start_unit("baseline")
    try:
        run = baseline_mod.run(data_path=data_path, epochs=epochs, train_limit=train_limit, seed=seed,
                               out_dir=out_dir, on_epoch=bar.epoch_end, verbose=1 if verbose else 0,
                               precision=precision)
    except BaseException:
        bar.close(None)  # the error's one line is the last
        raise
    bar.close("baseline")
    m = run.metrics
    if as_json:
        _emit_json(m)
        return
    click.echo(f"baseline: param_count {m['param_count']:,}, {m['epochs']} epochs on {m['train_images']:,} images,"
               f" {m['seconds']:.0f} s")
    click.echo(f"test accuracy {m['test_accuracy']:.4f} (reference {REFERENCE.test_accuracy}:"
               f" {m['difference_from_reference_pp']:+.2f} pp),"
               f" test loss {m['test_loss']:.4f}")
    click.echo(f"wrote {run.out_dir}/ (model.keras, metrics.json, figures)")



@main.group()
def space() -> None:
    """The search spaces that ship with cnnsearch: list, show, copy one to edit."""


@space.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document on stdout.")
def space_list(as_json: bool) -> None:
    """Name, searched dimensions, fidelity and description of each shipped space."""
    from cnnsearch import space as space_mod

    rows = space_mod.shipped_spaces()
    if as_json:
        _emit_json([r._asdict() for r in rows])
        return
    width = max((len(r.name) for r in rows), default=4)
    for r in rows:
        images = "all" if not r.train_limit else f"{r.train_limit:,}"
        click.echo(f"{r.name:<{width}}  {len(r.searched):>2} dimensions  {r.epochs} epochs on {images} images"
                   f"  {r.description}")
    click.echo("use one: cnnsearch study create NAME --space <name>; edit one: cnnsearch space init my.toml"
               " --from <name>", err=True)


@space.command("show")
@click.argument("name", shell_complete=lambda ctx, param, incomplete: _space_names(incomplete))
def space_show(name: str) -> None:
    """Print the text of shipped space NAME (e.g. seed, wide)."""
    from cnnsearch import shipped

    click.echo(shipped.text(name), nl=False)


@space.command("init")
@click.argument("path", type=click.Path(dir_okay=False))
@click.option("--from", "from_name", default="seed", show_default=True, metavar="NAME",
              shell_complete=lambda ctx, param, incomplete: _space_names(incomplete),
              help="Shipped space to copy.")
def space_init(path: str, from_name: str) -> None:
    """Write a commented copy of a shipped space to PATH, to edit (never overwrites)."""
    from cnnsearch import shipped

    dest = shipped.init(path, from_name)
    click.echo(f"wrote {dest} (a copy of {from_name}); edit it, then: cnnsearch study create NAME --space {dest}")


def _space_names(incomplete: str) -> list[Any]:
    """Shell completion: shipped space names."""
    from cnnsearch import shipped

    return [n for n in shipped.names() if n.startswith(incomplete)]


def _space_or_file(incomplete: str) -> list[Any]:
    """Shell completion for --space: shipped names, then the shell's own file completion."""
    from click.shell_completion import CompletionItem

    return [CompletionItem(n) for n in _space_names(incomplete)] + [CompletionItem(incomplete, type="file")]


_storage_option = click.option("--storage", "url", default=None, metavar="URL",
                               help="Optuna storage URL (default: $CNNSEARCH_STORAGE, then"
                                    " sqlite:///studies/cnnsearch.db).")
_json_option = click.option("--json", "as_json", is_flag=True, help="Print one JSON document on stdout.")


def _complete_study(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[str]:
    """Shell completion for a study NAME: the studies in the storage this command line points at.

    Never creates a database (a missing one completes nothing) and never fails: completion must stay silent.
    """
    try:
        import optuna

        from cnnsearch.storage import open_storage

        optuna.logging.set_verbosity(optuna.logging.ERROR)
        names = optuna.study.get_all_study_names(storage=open_storage(ctx.params.get("url")))
    except Exception:
        return []
    return sorted(n for n in names if n.startswith(incomplete))


#: The NAME of an existing study (completed from the storage by the shell completion).
_study_argument = click.argument("name", shell_complete=_complete_study)


@main.group()
def study() -> None:
    """Create, run, inspect and delete architecture searches (Optuna studies)."""
    import optuna

    # Optuna logs "A new study created" and every trial at INFO; cnnsearch prints its own lines.
    optuna.logging.set_verbosity(optuna.logging.WARNING)


@study.command("create")
@click.argument("name")
@click.option("--space", "space_path", required=True, type=click.Path(dir_okay=False),
              shell_complete=lambda ctx, param, incomplete: _space_or_file(incomplete),
              help="Space file (TOML), e.g. studies/seed.toml, or a shipped space's name (seed, wide; see"
                   " 'cnnsearch space list'). A path wins.")
@_storage_option
def study_create(name: str, space_path: str, url: str | None) -> None:
    """Create study NAME from a space file; the reference model is queued as trial 0."""
    from cnnsearch import study as study_mod

    h = study_mod.create(name, space_path, url)
    t = h.training
    click.echo(f"created study {name!r} in {study_mod.mask_url(h.url)}: {len(h.space.searched)} searched dimensions"
               f" ({', '.join(h.space.searched)}); {t.epochs} epochs on"
               f" {'all' if not t.train_limit else f'{t.train_limit:,}'} training images per trial;"
               f" sampler {h.space.study['sampler']}, pruner {h.space.study['pruner']}")
    click.echo(f"next: cnnsearch study run {name} --trials 20")


@study.command("run")
@_study_argument
@click.option("--trials", type=click.IntRange(min=0), default=10, show_default=True,
              help="New finished trials to add (the queued baseline, if not run yet, comes on top).")
@click.option("--timeout", type=click.FloatRange(min=0), default=None, help="Start no new trial after SEC seconds.")
@click.option("--workers", type=_Workers(), default="1", show_default=True,
              help="Worker processes on this machine, sharing the trials; 'auto' = 1 until measured (issue 12).")
@click.option("--space", "space_path", type=click.Path(dir_okay=False), default=None,
              help="Create the study from this space file if it does not exist yet (an existing study must have"
                   " the same space).")
@click.option("--data", "data_path", default=None,
              help="MNIST .npz or IDX folder (default: the data of the study's first run, then $CNNSEARCH_DATA, ...).")
@_storage_option
@click.option("--no-report", is_flag=True, help="Do not write the HTML report at the end.")
@click.option("--verbose", is_flag=True, help="Per-epoch metrics on stderr.")
@click.option("--quiet", is_flag=True, help="No progress or per-trial lines (errors only).")
@click.option("--seed", type=click.IntRange(0, 2**31 - 1), default=None,
              help="Sampler seed for a reproducible run (default: random, so runs started together differ).")
@click.pass_context
def study_run(ctx: click.Context, name: str, trials: int, timeout: float | None, workers: int,
              space_path: str | None, data_path: str | None, url: str | None, no_report: bool, verbose: bool,
              quiet: bool, seed: int | None) -> None:
    """Run (or resume) study NAME: add --trials finished trials, then write its report.

    With --space FILE, a study that does not exist yet is created first (one command from a space
    file to a report).
    """
    import time

    from cnnsearch import runner
    from cnnsearch import study as study_mod
    from cnnsearch.progress import Progress, duration

    start = time.perf_counter()
    if space_path is not None:
        h, created = study_mod.ensure(name, space_path, url)
        if created and not quiet:
            click.echo(f"created study {name!r} from {space_path} in {study_mod.mask_url(h.url)}:"
                       f" {len(h.space.searched)} searched dimensions", err=True)
    if not quiet and workers == 1:  # first line: which device trains (issue 12), before any data are read
        from cnnsearch.train import device_line

        # Workers print their own: TensorFlow's threads in this parent would take the Ctrl-C it must pass on.
        click.echo(f"training on {device_line()}", err=True)
    if workers > 1:
        codes = runner.run_workers(name, trials=trials, workers=workers, timeout=timeout, data_path=data_path,
                                   url=url, quiet=quiet, debug=bool(ctx.find_root().params.get("debug")), seed=seed)
        failed = [c for c in codes if c != 0]
        if failed:
            raise click.exceptions.Exit(130 if 130 in failed else max(failed))
    else:
        bar: list[Progress] = []

        def plan(total: int, epochs: int, prior: float | None) -> None:
            bar.append(Progress(total, epochs, verbose=verbose, epoch_prior_s=prior))

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
            runner.run(name, trials=trials, timeout=timeout, data_path=data_path, url=url, seed=seed,
                       **({} if quiet else {"on_plan": plan, "on_trial_start": begin, "on_epoch":
                                            lambda e, logs: bar[0].epoch_end(e, logs), "on_trial": line}))
        finally:
            if bar:
                bar[0].close(None)
    if not quiet:
        h = study_mod.load(name, url)
        best = study_mod.best_trial(h.study)
        if best is not None:
            click.echo(f"best so far: trial {best.number}, val_acc {best.user_attrs['val_accuracy']:.4f},"
                       f" param_count {study_mod.param_count(best.user_attrs) or 0:,}", err=True)
    if not no_report:
        _write_report(name, None, url, data_path)
    if not quiet:
        click.echo(f"done in {duration(time.perf_counter() - start)} (total wall time)", err=True)


@study.command("list")
@_storage_option
@_json_option
def study_list(url: str | None, as_json: bool) -> None:
    """List the studies in a storage."""
    from cnnsearch import study as study_mod

    rows = study_mod.summaries(url)
    if as_json:
        _emit_json(rows)
        return
    if not rows:
        from cnnsearch.storage import mask_url, resolve_storage

        click.echo(f"no studies in {mask_url(resolve_storage(url))}")
    for r in rows:
        best = "-" if r["best_val_accuracy"] is None else f"{r['best_val_accuracy']:.4f} (trial {r['best_trial']})"
        states = ", ".join(f"{v} {k.lower()}" for k, v in sorted(r["counts"].items()))
        click.echo(f"{r['name']}: {r['trials']} trials ({states}); best val_acc {best}")


@study.command("show")
@_study_argument
@click.option("--top", type=click.IntRange(min=1), default=None, help="Only the N best trials by validation accuracy.")
@click.option("--sort", type=click.Choice(["number", "val"]), default="number", show_default=True,
              help="Order: trial number, or validation accuracy (best first).")
@_storage_option
@_json_option
def study_show(name: str, top: int | None, sort: str, url: str | None, as_json: bool) -> None:
    """Show study NAME: settings and every trial with its choices."""
    from cnnsearch import study as study_mod
    from cnnsearch.describe import choices

    doc = study_mod.show(name, url, top=top, sort=sort)
    if as_json:
        _emit_json(doc)
        return
    click.echo(f"study {name} ({doc['storage']}), created {doc['created']} from {doc['space_source']}")
    click.echo(f"training: {doc['training']}")
    click.echo(f"trials: {doc['counts']}")
    base_val = doc.get("baseline_val_accuracy")
    words = {"COMPLETE": "done", "PRUNED": "pruned", "FAIL": "failed", "RUNNING": "running", "WAITING": "queued"}
    # Columns sized so a seed.toml row fits 100 characters (the choices take up to 53).
    click.echo(f"{'trial':<6}{'state':<7}{'val':<7}{'vs':<7}{'test':<7}{'param_count':>11}  choices")
    for t in doc["trials"]:
        val = "-" if t["val_accuracy"] is None else f"{t['val_accuracy']:.4f}"
        test = "-" if t["test_accuracy"] is None else f"{t['test_accuracy']:.4f}"
        vs = "base" if t["baseline"] else "-"
        if not t["baseline"] and base_val is not None and t["val_accuracy"] is not None:
            vs = f"{100 * (t['val_accuracy'] - base_val):+.2f}"
        count = "-" if t["param_count"] is None else f"{t['param_count']:,}"
        reason = f"  ({t['fail_reason']})" if t["fail_reason"] and t["state"] == "FAIL" else ""
        click.echo(f"{'#' + str(t['number']):<5} {words.get(t['state'], t['state'].lower()):<7}{val:<7}{vs:<7}"
                   f"{test:<7}{count:>11}  {choices(t['spec'], t['params'])}{reason}")
    if doc["trials"] and base_val is not None:
        click.echo("(val, test: accuracy; vs: val accuracy minus the in-study baseline's, in pp)")


@study.command("best")
@_study_argument
@click.option("--export", type=click.Path(dir_okay=False), default=None, help="Write the best model to this .keras file.")
@_storage_option
@_json_option
def study_best(name: str, export: str | None, url: str | None, as_json: bool) -> None:
    """The best trial of NAME by validation accuracy."""
    from cnnsearch import study as study_mod

    rec = study_mod.best(name, url, export=export)
    if as_json:
        _emit_json(rec)
        return
    from cnnsearch.describe import choices

    click.echo(f"best trial {rec['number']}: val_acc {rec['val_accuracy']:.4f}, test_acc {rec['test_accuracy']:.4f},"
               f" param_count {rec['param_count']:,}")
    click.echo(f"choices: {choices(rec['spec'], rec['params'])}")
    if rec.get("exported"):
        click.echo(f"exported the trained model to {rec['exported']}")


@study.command("delete")
@_study_argument
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@_storage_option
def study_delete(name: str, yes: bool, url: str | None) -> None:
    """Delete study NAME, its trials and kept weights."""
    from cnnsearch import study as study_mod

    study_mod.load(name, url)  # fail clearly on a missing study before asking anything
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
@_storage_option
def study_fail_stale(name: str, force: bool, url: str | None) -> None:
    """Fail the RUNNING trials of NAME whose worker is gone, and re-queue each once.

    Needed for journal:// storages, which have no heartbeat (study run also does it on this machine's trials).
    """
    from cnnsearch import runner

    failed = runner.fail_stale_trials(name, url, force=force)
    if not failed:
        click.echo(f"no stale trials in {name!r}" + ("" if force else " on this machine (--all for every machine's)"))
        return
    click.echo(f"failed {len(failed)} stale trial(s) of {name!r}: {', '.join(f'#{n}' for n in failed)};"
               " each re-queued once")


@study.command("export")
@_study_argument
@click.option("--format", "fmt", type=click.Choice(["csv", "json"]), default="csv", show_default=True,
              help="csv: one row per trial (lists as JSON text); json: an array of the same rows.")
@click.option("--out", type=click.Path(dir_okay=False), default=None, help="Write to FILE instead of stdout.")
@_storage_option
def study_export(name: str, fmt: str, out: str | None, url: str | None) -> None:
    """Every trial of NAME as one table: Optuna's trials_dataframe, user attributes flattened, baseline marked."""
    from cnnsearch import exchange

    text = exchange.export(name, fmt, url)
    if out is None:
        click.echo(text, nl=False)
        return
    from pathlib import Path

    dest = Path(out)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(dest.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(dest)  # atomic: a reader never sees half a file
    click.echo(f"wrote {dest} ({fmt})", err=True)


@study.command("enqueue")
@_study_argument
@click.argument("assignments", nargs=-1, required=True, metavar="KEY=VALUE...")
@_storage_option
@_json_option
def study_enqueue(name: str, assignments: tuple[str, ...], url: str | None, as_json: bool) -> None:
    """Queue a configuration of your own (e.g. conv1_filters=16 dropout_dense=0.3) as NAME's next trial.

    Checked against the study's space first (exit 2, nothing written, when a value is outside it);
    dimensions left out keep the reference model's values.
    """
    from cnnsearch import exchange

    queued = exchange.enqueue(name, list(assignments), url)
    if as_json:
        _emit_json(queued)
        return
    click.echo(f"queued trial {queued['number']} of {name!r}: "
               + ", ".join(f"{k}={v}" for k, v in queued["params"].items()))
    click.echo(f"next: cnnsearch study run {name} --trials 1   (queued trials run first)")


@main.command(help=f"Write the HTML report of study NAME: every trial against the {REFERENCE.test_accuracy:.2%}"
                   " baseline.")
@_study_argument
@click.option("--out", type=click.Path(dir_okay=False), default=None,
              help="Output file (default: reports/NAME/index.html, NAME made a safe folder name).")
@click.option("--data", "data_path", default=None,
              help="Test images for the model figures (default: the data the study was trained on, then"
                   " $CNNSEARCH_DATA, then the Keras cache).")
@click.option("--no-models", is_flag=True, help="Skip the learned-filter figures (tables and study figures only).")
@_storage_option
def report(name: str, out: str | None, data_path: str | None, no_models: bool, url: str | None) -> None:
    _write_report(name, out, url, data_path, models=not no_models)


def _write_report(name: str, out: str | None, url: str | None, data_path: str | None, *, models: bool = True) -> None:
    """Write the report, saying on stderr what it is computing, then its path and the wall time."""
    import time

    from cnnsearch import report as report_mod
    from cnnsearch.progress import duration

    start = time.perf_counter()
    path = report_mod.write(name, out, url, data_path=data_path, models=models,
                            on_step=lambda text: click.echo(f"report: {text}", err=True))
    click.echo(f"wrote {path} in {duration(time.perf_counter() - start)} (open it in a browser; it makes no network"
               " requests)")
    if models:
        from cnnsearch import study as study_mod

        for problem in study_mod.weights_problems(name, url):  # the report says it too, in the model section
            click.echo(f"cnnsearch: warning: {problem}", err=True)


@study.command("confirm")
@_study_argument
@click.option("--top", type=click.IntRange(min=1), default=3, show_default=True, help="Configurations to retrain.")
@click.option("--seeds", type=click.IntRange(min=1), default=3, show_default=True,
              help="Training seeds per configuration (a verdict needs at least 3).")
@click.option("--epochs", type=click.IntRange(min=1), default=None,
              help=f"Epochs per run [default: {REFERENCE.epochs}; the reference's; with --show: the most-run"
                   " fidelity].")
@click.option("--train-limit", type=click.IntRange(min=0), default=None,
              help="Training images per run (0 = all 54,000) [default: 0; with --show: the most-run fidelity].")
@click.option("--data", "data_path", default=None,
              help="MNIST .npz or IDX folder (default: the data the study was trained on).")
@click.option("--show", "show_only", is_flag=True,
              help="Read the stored verdict only: train nothing, load no data.")
@_storage_option
@_json_option
@click.option("--verbose", is_flag=True, help="Per-epoch metrics on stderr.")
def study_confirm(name: str, top: int, seeds: int, epochs: int | None, train_limit: int | None,
                  data_path: str | None, show_only: bool, url: str | None, as_json: bool, verbose: bool) -> None:
    """Retrain the top configurations and the baseline over training seeds; judge each against the baseline."""
    from cnnsearch import confirm as confirm_mod
    from cnnsearch.progress import Progress, duration

    bar: list[Progress] = []

    def plan(p: Any) -> None:
        click.echo(p.text(), err=True)
        prior = p.seconds / (p.runs * p.epochs) if p.seconds and p.runs else None
        bar.append(Progress(p.runs, p.epochs, verbose=verbose, epoch_prior_s=prior))

    def line(r: dict[str, Any]) -> None:
        b = bar[0]
        b.end_unit(f"[{b.k}/{b.total}] {r['config']} seed {r['seed']}: test_acc {r['test_accuracy']:.4f},"
                   f" {r['seconds']:.0f} s; ETA {duration(b.eta()) if b.k < b.total else '0 s'}")

    ref = confirm_mod.REFERENCE_FIDELITY
    if show_only:
        fid = None if epochs is None and train_limit is None else confirm_mod.Fidelity(
            ref.epochs if epochs is None else epochs, ref.train_limit if train_limit is None else train_limit)
        summary = confirm_mod.show(name, url, fid)
    else:
        try:
            summary = confirm_mod.run(name, top=top, seeds=seeds, epochs=ref.epochs if epochs is None else epochs,
                                      train_limit=ref.train_limit if train_limit is None else train_limit,
                                      data_path=data_path, url=url, on_run=line, on_plan=plan,
                                      on_start=lambda label: bar[0].start_unit(label),
                                      on_epoch=lambda e, logs: bar[0].epoch_end(e, logs))
        except BaseException:
            if bar:
                bar[0].close(None)  # the error's one line is the last
            raise
        if bar:
            bar[0].close("confirmation")
    if as_json:
        _emit_json(summary)
        return
    if not summary["configs"]:
        click.echo(f"no confirmation runs stored for {name!r}"
                   + (f" at {confirm_mod.Fidelity(**summary['fidelity']).describe()}" if summary["fidelity"] else "")
                   + f"; run: cnnsearch study confirm {name} --top 3 --seeds 3")
        return
    for r in summary["configs"]:
        sd = "" if r["sd_test_accuracy"] is None else f" ± {r['sd_test_accuracy']:.4f}"
        word = f"  {r['verdict']}" if "verdict" in r else ""
        click.echo(f"{r['config']:>10}: {r['mean_test_accuracy']:.4f}{sd} over {r['seeds']} seeds,"
                   f" param_count {r['param_count']:,}{word}")
    click.echo(summary["verdict"])
    if not show_only:
        click.echo(f"next: cnnsearch report {name}   (its answer section now shows this verdict)", err=True)


@main.command()
@_storage_option
@click.option("--host", default=dashboard_mod.DEFAULT_HOST, show_default=True,
              help="Address to bind (loopback by default).")
@click.option("--port", type=click.IntRange(1, 65535), default=dashboard_mod.DEFAULT_PORT, show_default=True,
              help="TCP port.")
def dashboard(url: str | None, host: str, port: int) -> None:
    """Open optuna-dashboard on the study storage (Ctrl-C stops it)."""
    def ready(address: str) -> None:
        click.echo(f"optuna-dashboard on {address}; Ctrl-C to stop", err=True)

    try:
        dashboard_mod.serve(url, host=host, port=port, on_ready=ready)
    except KeyboardInterrupt:
        click.echo("dashboard stopped", err=True)


if __name__ == "__main__":  # pragma: no cover
    main()
