"""The ``cnnsearch`` command: the only package that parses arguments, prints and exits.

Each command is a few lines over a public function. Errors the user can fix
(:class:`~cnnsearch.ground.errors.CnnsearchError`) print one line on stderr and exit
1 (2 for invalid input); ``--debug`` shows the traceback instead.
Exit codes: 0 ok, 1 error, 2 usage or invalid input, 128 + signal when a run is interrupted
(130 Ctrl-C, 143 SIGTERM, 129 SIGHUP).

This module holds the root group ``main``, the options shared by the commands and the top-level
commands (``baseline``, ``report``, ``dashboard``); the ``study`` and ``space`` groups are
:mod:`cnnsearch.cli.study` and :mod:`cnnsearch.cli.space`, registered at the end.
"""

from __future__ import annotations

import json
from typing import Any

import click

from cnnsearch.report import dashboard as dashboard_mod  # light: its optuna side is imported when it serves
from cnnsearch.model.arch import REFERENCE
from cnnsearch.ground.errors import CnnsearchError
from cnnsearch.model.train import TrainConfig

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
            from cnnsearch.records.storage import storage_error

            explained = storage_error(exc)
            if explained is None:
                raise
            click.echo(f"cnnsearch: error: {explained}", err=True)
            ctx.exit(explained.exit_code)
        except KeyboardInterrupt as exc:  # Ctrl-C, and SIGTERM/SIGHUP during a run (cnnsearch.ground.interrupt)
            if debug:
                raise
            click.echo(f"cnnsearch: {getattr(exc, 'reason', 'interrupted')}", err=True)
            ctx.exit(getattr(exc, "exit_code", 130))


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--debug", is_flag=True, help="Show tracebacks instead of one-line errors.")
@click.version_option(package_name="cnnsearch")
def main(debug: bool) -> None:
    """Search a CNN's filters, kernels, pools and dropout by evidence, against the Keras MNIST baseline."""
    from cnnsearch.ground import _tf

    _tf.show_import_log = debug
    _one_line_warnings()


def _one_line_warnings() -> None:
    """Show cnnsearch's own warnings (a skipped corrupt record) as one ``cnnsearch: warning:`` line each."""
    import warnings

    from cnnsearch.evidence.sound import CorruptRecord

    shown = warnings.showwarning

    def show(message: Any, category: Any, filename: str, lineno: int, file: Any = None, line: Any = None) -> None:
        if issubclass(category, CorruptRecord):
            click.echo(f"cnnsearch: warning: {message}", err=True)
        else:
            shown(message, category, filename, lineno, file, line)

    if getattr(shown, "__name__", "") != "show":
        warnings.showwarning = show
    warnings.simplefilter("always", CorruptRecord)  # each skipped record, every time, not once per place


def emit_json(obj: Any) -> None:
    """Print ``obj`` on stdout as one indented JSON document (what every ``--json`` prints)."""
    click.echo(json.dumps(obj, indent=2, default=str))


def val_options(f: Any) -> Any:
    """--val-fraction and --val-data: how the validation set is chosen (cnnsearch.ground.data.split)."""
    f = click.option("--val-data", "val_data", default=None, metavar="PATH",
                     help="Validation images from this file (npz with x_val, y_val) or folder of class subfolders,"
                          " instead of a share of the training set.")(f)
    return click.option("--val-fraction", "val_fraction", type=click.FloatRange(0, 1, min_open=True, max_open=True),
                        default=None, help="Share of the training set held out for validation, seeded and"
                        " stratified [default: 0.1; MNIST: its last 10%, as the reference].")(f)


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
@val_options
def baseline(data_path: str | None, epochs: int, train_limit: int, seed: int, out_dir: str, as_json: bool,
             precision: str, verbose: bool, val_fraction: float | None, val_data: str | None) -> None:
    from cnnsearch.model import baseline as baseline_mod
    from cnnsearch.ground.progress import Progress

    # One unit of `epochs` epochs: a bar on a terminal, one line per epoch (with its metrics) elsewhere.
    bar = Progress(1, epochs, verbose=True)
    bar.start_unit("baseline")
    try:
        run = baseline_mod.run(data_path=data_path, epochs=epochs, train_limit=train_limit, seed=seed,
                               out_dir=out_dir, on_epoch=bar.epoch_end, verbose=1 if verbose else 0,
                               precision=precision, val_data=val_data, val_fraction=val_fraction)
    except BaseException:
        bar.close(None)  # the error's one line is the last
        raise
    bar.close("baseline")
    m = run.metrics
    if as_json:
        emit_json(m)
        return
    click.echo(f"baseline: param_count {m['param_count']:,}, {m['epochs']} epochs on {m['train_images']:,} images,"
               f" {m['seconds']:.0f} s")
    versus = (f" (reference {REFERENCE.test_accuracy}: {m['difference_from_reference_pp']:+.2f} pp)"
              if m["mnist"] else "")  # the published figure is MNIST's: never shown for other data
    click.echo(f"test accuracy {m['test_accuracy']:.4f}{versus}, test loss {m['test_loss']:.4f}")
    for text in m["validation_warnings"]:
        click.echo(f"cnnsearch: warning: {text}", err=True)
    click.echo(f"wrote {run.out_dir}/ (model.keras, metrics.json, figures)")


def space_names(incomplete: str) -> list[Any]:
    """Shell completion: shipped space names."""
    from cnnsearch.search import shipped

    return [n for n in shipped.names() if n.startswith(incomplete)]


def space_or_file(incomplete: str) -> list[Any]:
    """Shell completion for --space: shipped names, then the shell's own file completion."""
    from click.shell_completion import CompletionItem

    return [CompletionItem(n) for n in space_names(incomplete)] + [CompletionItem(incomplete, type="file")]


storage_option = click.option("--storage", "url", default=None, metavar="URL",
                              help="Optuna storage URL (default: $CNNSEARCH_STORAGE, then"
                                   " sqlite:///studies/cnnsearch.db).")
json_option = click.option("--json", "as_json", is_flag=True, help="Print one JSON document on stdout.")


def complete_study(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[str]:
    """Shell completion for a study NAME: the studies in the storage this command line points at.

    Never creates a database (a missing one completes nothing) and never fails: completion must stay silent.
    """
    try:
        import optuna

        from cnnsearch.records.storage import open_storage

        optuna.logging.set_verbosity(optuna.logging.ERROR)
        names = optuna.study.get_all_study_names(storage=open_storage(ctx.params.get("url")))
    except Exception:
        return []
    return sorted(n for n in names if n.startswith(incomplete))


#: The NAME of an existing study (completed from the storage by the shell completion).
study_argument = click.argument("name", shell_complete=complete_study)


@main.command(help="Write the HTML report of study NAME: the answer in one sentence and the verdicts first, then"
                   " the confirmation, the figures and the trials.")
@study_argument
@click.option("--out", type=click.Path(dir_okay=False), default=None,
              help="Output file (default: reports/NAME/index.html, NAME made a safe folder name).")
@click.option("--data", "data_path", default=None,
              help="Test images for the model figures (default: the data the study was trained on, then"
                   " $CNNSEARCH_DATA, then the Keras cache).")
@click.option("--no-models", is_flag=True, help="Skip the learned-filter figures (tables and study figures only).")
@click.option("--frontier-with", "frontier_files", multiple=True, type=click.Path(exists=True, dir_okay=False),
              help="Add a committed confirmation (reports/NAME/confirm.json, from 'study confirm NAME --json') of a"
                   " study in another storage to the frontier figure; repeatable.")
@storage_option
def report(name: str, out: str | None, data_path: str | None, no_models: bool, frontier_files: tuple[str, ...],
           url: str | None) -> None:
    write_report(name, out, url, data_path, models=not no_models, frontier_files=frontier_files)


def write_report(name: str, out: str | None, url: str | None, data_path: str | None, *, models: bool = True,
                 frontier_files: tuple[str, ...] = ()) -> None:
    """Write the report, saying on stderr what it is computing, then its path and the wall time."""
    import time

    from cnnsearch.report import page as report_mod
    from cnnsearch.ground.progress import duration

    from cnnsearch.ground import interrupt

    start = time.perf_counter()
    said: list[str] = []

    def step(text: str) -> None:
        said.append(text)
        click.echo(f"report: {text}", err=True)

    with interrupt.stopping():  # SIGTERM as Ctrl-C: one line, exit 143; the old report stays whole
        path = report_mod.write(name, out, url, data_path=data_path, models=models, on_step=step,
                                frontier_files=frontier_files)
    click.echo(f"wrote {path} in {duration(time.perf_counter() - start)} (open it in a browser; it makes no network"
               " requests)")
    if models:
        from cnnsearch.search import study as study_mod

        for problem in study_mod.weights_problems(name, url):  # the report says it too, in the model section
            if not any(problem in text for text in said):  # once: not again after the report's own step line
                click.echo(f"cnnsearch: warning: {problem}", err=True)


@main.command()
@storage_option
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


# The command groups, each in its own module (they import the shared options above).
from cnnsearch.cli import ablate as _ablate_cli, space as _space_cli, study as _study_cli  # noqa: E402

main.add_command(_space_cli.space)
main.add_command(_study_cli.study)
_study_cli.study.add_command(_ablate_cli.study_ablate)
from cnnsearch.cli import winner as _winner_cli  # noqa: E402

_study_cli.study.add_command(_winner_cli.study_train)
