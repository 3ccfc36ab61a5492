"""The ``cnnsearch`` command: the only module that parses arguments, prints and exits.

Each command is a few lines over a public function. Errors the user can fix
(:class:`~cnnsearch.errors.CnnsearchError`) print one line on stderr and exit
1 (2 for invalid input); ``--debug`` shows the traceback instead.
Exit codes: 0 ok, 1 error, 2 usage or invalid input, 130 interrupted.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

import click

from cnnsearch.errors import CnnsearchError


class _Group(click.Group):
    """Turns CnnsearchError and Ctrl-C into one line and an exit status."""

    def invoke(self, ctx: click.Context) -> Any:
        debug = "--debug" in sys.argv[1:] or bool(os.environ.get("CNNSEARCH_DEBUG"))
        try:
            return super().invoke(ctx)
        except CnnsearchError as exc:
            if debug:
                raise
            click.echo(f"cnnsearch: error: {exc}", err=True)
            ctx.exit(exc.exit_code)
        except KeyboardInterrupt:
            if debug:
                raise
            click.echo("cnnsearch: interrupted", err=True)
            ctx.exit(130)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--debug", is_flag=True, help="Show tracebacks instead of one-line errors.")
@click.version_option(package_name="cnnsearch")
def main(debug: bool) -> None:
    """Search a CNN's filters, kernels, pools and dropout by evidence, against the Keras MNIST baseline."""
    if debug:
        os.environ["CNNSEARCH_DEBUG"] = "1"


def _emit_json(obj: Any) -> None:
    click.echo(json.dumps(obj, indent=2, default=str))


def _epoch_line(epochs: int) -> Any:
    def on_epoch(epoch: int, logs: dict[str, float]) -> None:
        click.echo(
            f"epoch {epoch + 1}/{epochs}  loss {logs.get('loss', float('nan')):.4f}"
            f"  acc {logs.get('accuracy', float('nan')):.4f}  val_loss {logs.get('val_loss', float('nan')):.4f}"
            f"  val_acc {logs.get('val_accuracy', float('nan')):.4f}",
            err=True,
        )
    return on_epoch


@main.command()
@click.option("--data", "data_path", type=str, default=None,
              help="Keras-layout mnist.npz or a folder of the four IDX files (default: $CNNSEARCH_DATA,"
                   " then the Keras cache, then download).")
@click.option("--epochs", type=click.IntRange(min=1), default=20, show_default=True, help="Training epochs.")
@click.option("--train-limit", type=click.IntRange(min=0), default=0, show_default=True,
              help="Train on the first N images after the validation split (0 = all 54,000).")
@click.option("--seed", type=int, default=0, show_default=True, help="Random seed (weights, dropout, shuffling).")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default="reports/baseline", show_default=True,
              help="Run folder for the model, metrics.json and figures.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document on stdout, nothing else.")
@click.option("--verbose", is_flag=True, help="Show Keras's own progress bars (they go to stdout: not with --json).")
def baseline(data_path: str | None, epochs: int, train_limit: int, seed: int, out_dir: str, as_json: bool,
             verbose: bool) -> None:
    """Train the reference CNN (99.15% in the reference) and draw its figures."""
    from cnnsearch import baseline as baseline_mod

    run = baseline_mod.run(data_path=data_path, epochs=epochs, train_limit=train_limit, seed=seed,
                           out_dir=out_dir, on_epoch=_epoch_line(epochs), verbose=1 if verbose else 0)
    m = run.metrics
    if as_json:
        _emit_json(m)
        return
    click.echo(f"baseline: {m['params']:,} params, {m['epochs']} epochs on {m['train_images']:,} images,"
               f" {m['seconds']:.0f} s")
    click.echo(f"test accuracy {m['test_accuracy']:.4f} (reference 0.9915: {m['difference_from_reference_pp']:+.2f} pp),"
               f" test loss {m['test_loss']:.4f}")
    click.echo(f"wrote {run.out_dir}/ (model.keras, metrics.json, figures)")


if __name__ == "__main__":  # pragma: no cover
    main()
