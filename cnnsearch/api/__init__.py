"""The Python API: search, confirm and report from Python, with your own data and your own model.

Everything the CLI does goes through these functions or the ones they call; see docs/python-api.md.
Data may be a path (npz, IDX folder, image folder), arrays, or ``tf.data`` datasets; arrays are
written once to an npz beside the study's weights (named by their sha256), so ``confirm``,
``report`` and the CLI find them again as they find a file. The model may be the space file's
(the default) or your own ``build(trial) -> keras.Model``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, Sequence

from typing import TYPE_CHECKING

import numpy as np

from cnnsearch.ground.output import replacing
from cnnsearch.ground import data as data_mod
from cnnsearch.ground.errors import ConfigError

if TYPE_CHECKING:  # Optuna (and the storage module, which imports it) load on first use: `import cnnsearch` stays light
    import optuna

#: What ``data=`` may be: a path, a Dataset, a dict of the npz keys, Keras's ((x_train, y_train), (x_test,
#: y_test)), or (train, test) tf.data datasets of (image, label) pairs.
DataLike = Any


def run_study(name: str, *, data: DataLike = None, space: str | os.PathLike[str] = "seed", trials: int = 10,
           build: Callable[[Any], Any] | None = None, metric: str | None = None, callbacks: Sequence[Any] = (),
           validation_data: Any = None, val_fraction: float | None = None, storage: str | None = None,
           timeout: float | None = None, seed: int | None = None, verbose: int = 0) -> optuna.Study:
    """Create (if new) and run study ``name``: ``trials`` more finished trials; returns the Optuna study.

    Args:
        name: The study's name in ``storage``.
        data: See :data:`DataLike` (None: ``$CNNSEARCH_DATA``, then MNIST from the Keras cache).
        space: A space file or a shipped space's name; its [training] fixes each trial's fidelity.
        trials: New finished trials (infeasible points are neither trained nor counted).
        build: Your own ``build(trial) -> keras.Model`` (uncompiled, or compiled: cnnsearch compiles it
            with categorical cross-entropy and the space's optimizer); ``trial`` is an Optuna trial whose
            ``params`` already hold the space's point, and which may ``suggest_*`` more. The baseline
            (trial 0) stays the space's ``[baseline]``.
        metric: ``"val_accuracy"`` (maximized) or ``"val_loss"`` (minimized); default: the space's.
        callbacks: Extra Keras callbacks for every trial's fit.
        validation_data: (x_val, y_val) or a tf.data dataset: the validation set (else a seeded,
            stratified ``val_fraction`` of the training set; MNIST keeps its last 10%).
        storage: An Optuna storage URL (default: ``$CNNSEARCH_STORAGE``, then the SQLite file).

    Raises:
        ConfigError, DataError: one line, before any study is created.
    """
    import optuna

    from cnnsearch.records.storage import resolve_storage
    from cnnsearch.search import prepare, runner

    if not verbose:  # Optuna's INFO lines ("A new study created ...") are not cnnsearch's output
        optuna.logging.set_verbosity(optuna.logging.WARNING)
    url = resolve_storage(storage)
    ds = as_dataset(data, validation_data)
    path = _data_path(ds, url) if ds is not None else None
    if build is not None:
        check_builder(build, space, ds if ds is not None else data_mod.load(None))
    handle, created = prepare.ready(name, space, url, data_path=path, val_fraction=val_fraction, metric=metric)
    if created and build is not None:
        handle.study.set_user_attr("builder", getattr(build, "__qualname__", repr(build)))
    runner.run(name, trials=trials, timeout=timeout, data_path=path, url=url, seed=seed, verbose=verbose,
               val_fraction=val_fraction, build=build, callbacks=callbacks)
    return load_study(name, storage=url)


def load_study(name: str, storage: str | None = None) -> optuna.Study:
    """The Optuna study ``name`` (``optuna.load_study`` on cnnsearch's storage; see docs/python-api.md)."""
    import optuna

    from cnnsearch.records.storage import open_storage, resolve_storage

    return optuna.load_study(study_name=name, storage=open_storage(resolve_storage(storage)))


def confirm(name: str, *, top: int = 3, seeds: int = 3, epochs: int | None = None, train_limit: int | None = None,
            storage: str | None = None, build: Callable[[Any], Any] | None = None) -> dict[str, Any]:
    """Retrain the baseline and the ``top`` trials over ``seeds`` paired seeds; returns the summary (the CLI's --json).

    A study searched with your own ``build`` needs it again here (functions are not stored): each
    trial's model is ``build(optuna.trial.FixedTrial(trial.params))``, trained in this process; the
    baseline is the space's, as in the search. Without it, such a study is refused (ConfigError).
    """
    from cnnsearch.evidence import confirm as confirm_mod
    from cnnsearch.records.storage import resolve_storage

    kwargs = {k: v for k, v in (("epochs", epochs), ("train_limit", train_limit)) if v is not None}
    return confirm_mod.run(name, top=top, seeds=seeds, url=resolve_storage(storage), build=build, **kwargs)


def write_report(name: str, out: str | os.PathLike[str] | None = None, *, storage: str | None = None,
           models: bool = True) -> Path:
    """Write the study's HTML report (default ``reports/NAME/index.html``); returns its path."""
    from cnnsearch.records.storage import resolve_storage
    from cnnsearch.report import page

    # A model of your own build is drawn from its first two Conv2D layers, read with Keras (cnnsearch.model.own).
    return page.write(name, out, resolve_storage(storage), models=models)


def as_dataset(data: DataLike, validation_data: Any = None) -> data_mod.Dataset | None:
    """``data`` (see :data:`DataLike`) as a validated :class:`~cnnsearch.ground.data.Dataset`; None for None."""
    if data is None or isinstance(data, (str, os.PathLike)):
        if validation_data is not None:
            raise ConfigError("validation_data: expected it with data given as arrays or tf.data; with a path, pass"
                              " --val-data-like files through data_mod.load(path, val_data=...)")
        return None if data is None else data_mod.load(data)
    if isinstance(data, data_mod.Dataset):
        return data
    val = _xy(validation_data, "validation_data") if validation_data is not None else (None, None)
    if isinstance(data, dict):
        return data_mod.from_arrays(**{**data, **({"x_val": val[0], "y_val": val[1]} if val[0] is not None else {})})
    if isinstance(data, (tuple, list)) and len(data) == 2:
        (x_train, y_train), (x_test, y_test) = _xy(data[0], "data[0]"), _xy(data[1], "data[1]")
        return data_mod.from_arrays(x_train, y_train, x_test, y_test, x_val=val[0], y_val=val[1])
    raise ConfigError(f"data: expected a path, a dict of arrays, ((x_train, y_train), (x_test, y_test)) or (train,"
                      f" test) tf.data datasets; received {type(data).__name__}")


def _xy(part: Any, what: str) -> tuple[np.ndarray, np.ndarray]:
    """(images, labels) from a pair of arrays or a tf.data dataset of (image, label) pairs, batched or not."""
    if isinstance(part, (tuple, list)) and len(part) == 2:
        return np.asarray(part[0]), np.asarray(part[1])
    if hasattr(part, "as_numpy_iterator"):  # tf.data: read once into memory (the search trains on arrays)
        xs, ys = zip(*part.as_numpy_iterator())
        batched = np.ndim(ys[0]) == 1
        return (np.concatenate(xs), np.concatenate(ys)) if batched else (np.stack(xs), np.asarray(ys))
    raise ConfigError(f"{what}: expected (images, labels) arrays or a tf.data dataset of (image, label) pairs;"
                      f" received {type(part).__name__}")


def _data_path(ds: data_mod.Dataset, url: str) -> str:
    """Where arrays given from Python live for the study: an npz named by their content, beside the weights."""
    from cnnsearch.records.storage import artifact_dir

    if Path(ds.source).exists():
        return ds.source
    folder = artifact_dir(url)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"data-{ds.sha256[:16]}.npz"
    if not path.exists():
        arrays = {"x_train": ds.x_train, "y_train": ds.y_train, "x_test": ds.x_test, "y_test": ds.y_test}
        if ds.mnist:  # back to MNIST's own uint8 arrays, so its sha256 (and the published 99.15%) still applies
            arrays = {k: np.rint(v[..., 0] * 255).astype(np.uint8) if k[0] == "x" else v.astype(np.uint8)
                      for k, v in arrays.items()}
        if ds.x_val is not None:
            arrays.update(x_val=ds.x_val, y_val=ds.y_val)
        if ds.class_names:
            arrays["class_names"] = np.array(ds.class_names)
        with replacing(path) as tmp, open(tmp, "wb") as fh:
            np.savez(fh, **arrays)  # float32 in [0, 1]: read back unchanged (float images are taken as scaled)
    return str(path)


def check_builder(build: Callable[[Any], Any], space: str | os.PathLike[str], ds: data_mod.Dataset) -> None:
    """Call ``build`` once on a throwaway in-memory trial: it must return a keras.Model taking the data's images
    and ending in one unit per class. One ConfigError line naming the function otherwise; nothing is stored."""
    import optuna

    from cnnsearch.search import points
    from cnnsearch.search import space as space_mod

    name = getattr(build, "__qualname__", "build")
    trial = optuna.create_study().ask()
    points.suggest(trial, space_mod.load(space))
    try:
        model = build(trial)
    except Exception as exc:
        raise ConfigError(f"{name}(trial) raised {type(exc).__name__}: {exc}; expected it to return a keras.Model;"
                          " fix the function (it was called on a test trial, nothing was stored)") from exc
    want_in, want_out = (None, *ds.input_shape), (None, ds.n_classes)
    got_in, got_out = (tuple(getattr(model, k, ()) or ()) for k in ("input_shape", "output_shape"))
    if got_out != want_out or got_in != want_in:
        raise ConfigError(f"{name}(trial) returned a model of input {got_in or '?'} and output {got_out or '?'};"
                          f" expected input {want_in} (the data's images) and output {want_out} (one softmax unit per"
                          " class); fix the function (nothing was stored)")


__all__ = ["as_dataset", "check_builder", "confirm", "load_study", "run_study", "write_report"]
