"""The winner as a trained model (issue 23 item 8): ``study train`` and ``study best --confirmed``."""

from __future__ import annotations

from typing import Any

import click

from cnnsearch.cli import emit_json, json_option, storage_option, study_argument
from cnnsearch.ground.errors import StorageError


@click.command("train")
@study_argument
@click.option("--trial", "trial", type=click.IntRange(min=0), required=True, help="The trial to train.")
@click.option("--epochs", type=click.IntRange(min=1), default=None, help="Epochs [default: the study's].")
@click.option("--train-limit", type=click.IntRange(min=0), default=None,
              help="Training images (0 = all) [default: the study's].")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True, help="Training seed.")
@click.option("--export", type=click.Path(dir_okay=False), required=True, help="Write the trained model here (.keras).")
@storage_option
@json_option
def study_train(name: str, trial: int, epochs: int | None, train_limit: int | None, seed: int, export: str,
                url: str | None, as_json: bool) -> None:
    """Train trial N of study NAME again, at any fidelity, and export the model (the study is not changed)."""
    from cnnsearch.ground.progress import Progress
    from cnnsearch.search import retrain
    from cnnsearch.search import study as study_mod

    h = study_mod.load(name, url)  # a bad name or storage: one line before the bar
    bar = Progress(1, epochs or h.training.epochs, verbose=True)
    bar.start_unit(f"trial {trial}")
    try:
        rec = retrain.train_trial(name, trial, export, epochs=epochs, train_limit=train_limit, seed=seed, url=url,
                                  on_epoch=bar.epoch_end)
    except BaseException:
        bar.close(None)
        raise
    bar.close(f"trial {trial}")
    if as_json:
        emit_json(rec)
        return
    click.echo(f"trial {trial}: {rec['epochs']} epochs, val_acc {rec['val_accuracy']:.4f}, test_acc"
               f" {rec['test_accuracy']:.4f}; exported the trained model to {rec['exported']}")


def best_confirmed(name: str, export: str | None, url: str | None, as_json: bool) -> None:
    """``study best NAME --confirmed [--export FILE]``: the confirmed configuration with the highest mean test
    accuracy at the confirmation's fidelity, and with --export the weights confirmation kept for it."""
    from cnnsearch.evidence import confirm as confirm_mod
    from cnnsearch.search import retrain
    from cnnsearch.search import study as study_mod

    summary = confirm_mod.show(name, url)
    configs = [c for c in summary.get("configs", []) if c.get("mean_test_accuracy") is not None]
    if not configs:
        raise StorageError(f"study {name!r} has no confirmation yet; run: cnnsearch study confirm {name}")
    win = max(configs, key=lambda c: c["mean_test_accuracy"])
    fid = confirm_mod.Fidelity(**summary["fidelity"])
    rec: dict[str, Any] = {"configuration": win["config"], "trial": win["trial"], "fidelity": summary["fidelity"],
                           "mean_test_accuracy": win["mean_test_accuracy"], "seeds": len(win["test_accuracies"])}
    if export is not None:
        rec.update(retrain.export_from(study_mod.load(name, url), f"{fid.key}:{win['config']}", export))
    if as_json:
        emit_json(rec)
        return
    click.echo(f"confirmed winner: {win['config']} (trial {win['trial']}), mean test accuracy"
               f" {win['mean_test_accuracy']:.4f} over {rec['seeds']} seeds at {fid.describe()}")
    if export is not None:
        click.echo(f"exported the weights of its seed {rec['seed']} (best by validation accuracy) to {rec['exported']}")
