"""Train the reference CNN and write its run folder: model, metrics and the reference's figures."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from cnnsearch.ground.output import replacing
from cnnsearch.ground import data as data_mod
from cnnsearch.model import forward
from cnnsearch.model import viz
from cnnsearch.model.arch import REFERENCE, ArchSpec, summarize
from cnnsearch.ground.errors import ArchitectureError, CnnsearchError, DataError
from cnnsearch.model.train import TrainConfig, TrainResult, fit, versions

#: Files written into a baseline run folder.
FIGURES = {
    "learning_curve": "learning_curve.png",
    "conv1_filters": "conv1_filters.png",
    "conv2_filters": "conv2_filters_ch0.png",
    "digits_maps": "digits_feature_maps.png",
}


@dataclass
class BaselineRun:
    """A finished baseline run: its metrics and where the files are."""

    metrics: dict[str, Any]
    out_dir: Path
    result: TrainResult


def run(
    *,
    data_path: str | None = None,
    epochs: int = REFERENCE.epochs,
    train_limit: int = 0,
    seed: int = 0,
    out_dir: str | os.PathLike[str] = "reports/baseline",
    on_epoch: Callable[[int, dict[str, float]], None] | None = None,
    verbose: int = 0,
    precision: str = "float32",
    val_data: str | None = None,
    val_fraction: float | None = None,
) -> BaselineRun:
    """Train the reference CNN with its settings and write model, metrics.json and figures.

    Data are resolved as :func:`cnnsearch.ground.data.load_raw` describes (``data_path`` first);
    validation as :func:`cnnsearch.ground.data.split` chooses it (``val_data``, ``val_fraction``).
    The published 99.15% is compared with only on MNIST (recognised by its sha256).
    """
    ds = data_mod.load(data_path, val_data=val_data)
    config = TrainConfig(epochs=epochs, train_limit=train_limit, seed=seed, precision=precision)
    splits = data_mod.split(ds, train_limit=train_limit, val_fraction=val_fraction)
    spec = ArchSpec()
    try:
        summarize(spec, splits.input_shape, splits.n_classes)
    except ArchitectureError as exc:
        raise DataError(f"{ds.source}: images of {splits.input_shape} are too small for the reference model: {exc};"
                        " pass images of at least 10x10 pixels") from exc
    out = Path(out_dir)
    try:  # before training: an unwritable --out must not cost a whole training run
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CnnsearchError(f"--out {out}: cannot create the run folder ({exc.strerror or exc}); pass a folder"
                             " you can write to") from exc
    result = fit(spec, splits, config, on_epoch=on_epoch, verbose=verbose)
    model_path = out / "model.keras"
    with replacing(model_path) as tmp:
        result.model.save(tmp)
    figures = draw_figures(result, spec, splits.x_test, out, mnist=ds.mnist)
    metrics = _metrics(result, splits, ds, spec, config)
    metrics["files"] = {"model": str(model_path), **{k: str(v) for k, v in figures.items()}}
    _write_json(out / "metrics.json", metrics)
    return BaselineRun(metrics=metrics, out_dir=out, result=result)


def _metrics(result: TrainResult, splits: data_mod.Splits, ds: data_mod.Dataset, spec: ArchSpec,
             config: TrainConfig) -> dict[str, Any]:
    """metrics.json: the run's figures; the published reference's only on MNIST (no 99.15% on other data)."""
    metrics: dict[str, Any] = {
        "param_count": result.params,
        "flops_forward_per_image": result.flops,
        "epochs": result.epochs_run,
        "train_images": len(splits.x_train),
        "val_images": len(splits.x_val),
        "validation": splits.method,
        "validation_warnings": list(splits.warnings),
        "test_images": len(splits.x_test),
        "seconds": round(result.seconds, 2),
        "seconds_per_epoch": [round(s, 2) for s in result.epoch_seconds],
        "test_loss": result.test_loss,
        "test_accuracy": result.test_accuracy,
        "val_accuracy_by_epoch": result.history["val_accuracy"],
        "history": result.history,
        "role": "the reference Keras MNIST CNN" if ds.mnist else "the reference architecture trained on your data",
        "mnist": ds.mnist,
        "class_names": list(ds.class_names) if ds.class_names else None,
        "spec": spec.to_dict(),
        "training": config.to_dict(),
        "data": ds.source,
        "versions": versions(),
    }
    if ds.mnist:
        metrics["reference"] = {"test_accuracy": REFERENCE.test_accuracy, "test_loss": REFERENCE.test_loss}
        metrics["difference_from_reference_pp"] = round(100 * (result.test_accuracy - REFERENCE.test_accuracy), 3)
    return metrics


def draw_figures(result: TrainResult, spec: ArchSpec, x_test: np.ndarray, out: Path, *,
                 mnist: bool = True) -> dict[str, Path]:
    """The reference's figures for a trained model of ``spec``, into ``out`` (colour filters for RGB data;
    a figure showing one channel says which)."""
    model = result.model
    paths: dict[str, Path] = {}
    paths["learning_curve"] = viz.save(viz.draw_learning_curve(result.history, title="baseline CNN: learning curve"),
                                       out / FIGURES["learning_curve"])
    weights = forward.conv_weights(model)
    w1 = viz.filters(weights, "conv1", limit=32)
    paths["conv1_filters"] = viz.save(viz.draw_grid(
        w1, 4, 8, title=f"first-layer filters (32, 3x3), {viz.channel_words(weights, 'conv1')}"),
                                      out / FIGURES["conv1_filters"])
    w2 = viz.filters(weights, "conv2", in_channel=0, limit=32)
    paths["conv2_filters"] = viz.save(viz.draw_grid(w2, 4, 8, title="second-layer filters 0-31, input channel 0"),
                                      out / FIGURES["conv2_filters"])
    digits = x_test[:16]
    maps = forward.feature_maps(weights, spec, digits)
    what = "digits" if mnist else "images"
    paths["digits_maps"] = viz.save(viz.draw_digits_with_maps(
        list(digits), list(maps["conv1"][..., 0]), list(maps["conv2"][..., 0]),
        title=f"first 16 test {what}, conv1 and conv2 output-channel-0 maps"), out / FIGURES["digits_maps"])
    picked = x_test[[i for i in viz.REFERENCE_DIGITS if i < len(x_test)]]
    maps = forward.feature_maps(weights, spec, picked)
    for j, idx in enumerate(viz.REFERENCE_DIGITS[:len(picked)]):
        key = f"digit_{idx}_maps"
        paths[key] = viz.save(viz.draw_digit_maps(picked[j], maps["conv1"][j], maps["conv2"][j],
                                                  title=f"test {what[:-1]} #{idx}: 16 conv1 and 32 conv2 feature maps"),
                              out / f"{key}.png")
    return paths


def _write_json(path: Path, obj: Any) -> None:
    with replacing(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2))
