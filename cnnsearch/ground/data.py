"""Find, read, validate and scale image data: MNIST, or any labelled images of one size.

Resolution order for where the data come from:

1. an explicit path (the CLI's ``--data``),
2. the ``CNNSEARCH_DATA`` environment variable,
3. the Keras cache (``$KERAS_HOME/datasets/mnist.npz``, by default ``~/.keras/datasets``),
4. ``keras.datasets.mnist.load_data()``, which downloads (needs internet).

A path may be a Keras-layout ``.npz`` (keys ``x_train``, ``y_train``, ``x_test``,
``y_test``; optionally ``x_val`` and ``y_val``, then used as the validation set), a
folder holding the four IDX files, gzipped or raw, or an image folder with one
subfolder per class (:mod:`cnnsearch.ground.folder`). Arrays from Python come in
through :func:`from_arrays`. Images are (N, H, W) grayscale or (N, H, W, C) with
C = 1 or 3; uint8 pixels are divided by 255, float pixels are taken as already
scaled and must lie in [0, 1]. Labels are integers 0..K-1. Input shape and class
count come from the data, never from constants. No optuna here.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cnnsearch.ground import folder as folder_mod
from cnnsearch.ground import holdout
from cnnsearch.ground.errors import ConfigError, DataError
from cnnsearch.ground.arrays import check_images, check_labels
from cnnsearch.ground.idx import IDX_STEMS, find_idx, first_line, is_idx_folder, read_idx, read_idx_folder
from cnnsearch.ground.npz import NPZ_KEYS, VAL_KEYS, open_npz, read_npz

#: Environment variable naming the data file or folder (used by tests, CI, benchmarks).
DATA_ENV = "CNNSEARCH_DATA"

#: Fraction of the training set held out for validation. MNIST: the last 10%, as Keras's
#: ``validation_split=0.1`` takes it (no shuffling), so results match the reference. Any other data: a
#: seeded, stratified 10% (:func:`cnnsearch.ground.holdout.stratified`), since a file's last tenth may be one class.
VALIDATION_FRACTION = 0.1

#: sha256 of MNIST's four arrays (:func:`content_sha256`), however stored (npz, IDX folder, Keras download,
#: arrays): the data on which the reference's published 99.15% applies.
MNIST_SHA256 = "869043a08a4d18821fa17546401bfbe66053b5e347a0a99c9ae9e6cbd1f08db0"


@dataclass(frozen=True)
class RawData:
    """The arrays as stored (uint8 or float images, integer labels), with where they came from."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    source: str
    x_val: np.ndarray | None = None  # a validation set of the data's own (npz keys x_val, y_val; a val/ folder)
    y_val: np.ndarray | None = None
    class_names: tuple[str, ...] | None = None  # label k's name (an image folder's subfolders), if known


@dataclass(frozen=True)
class Dataset:
    """Scaled arrays ready for Keras: images float32 in [0, 1] NHWC, labels int64."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    n_classes: int
    source: str
    x_val: np.ndarray | None = None  # the data's own validation set, if any (then split() uses it)
    y_val: np.ndarray | None = None
    class_names: tuple[str, ...] | None = None
    sha256: str = ""  # content_sha256 of the arrays as stored (before scaling)

    @property
    def mnist(self) -> bool:
        """Are these MNIST's arrays (by their sha256)? Only there does the published 99.15% apply."""
        return self.sha256 == MNIST_SHA256

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """(height, width, channels) of one image."""
        return tuple(int(d) for d in self.x_train.shape[1:])  # type: ignore[return-value]


@dataclass(frozen=True)
class Splits:
    """Training and validation arrays cut from a :class:`Dataset`, plus the test set."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    n_classes: int
    input_shape: tuple[int, int, int]
    method: str = "last"  # how validation was chosen: "last" (MNIST's last 10%), "stratified", or "given"
    warnings: tuple[str, ...] = ()  # why the validation set may not be trusted (holdout.warnings_for)
    class_names: tuple[str, ...] | None = None


def keras_cache_path() -> Path:
    """Where ``keras.datasets.mnist.load_data()`` caches its download."""
    home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    return Path(home) / "datasets" / "mnist.npz"


def load_raw(path: str | os.PathLike[str] | None = None, *, download: bool = True) -> RawData:
    """Find and read MNIST by the resolution order above, validated but unscaled.

    Args:
        path: An ``.npz`` file or an IDX folder; ``None`` falls through to the
            environment variable, the Keras cache and the download.
        download: Allow the last resort, ``keras.datasets.mnist.load_data()``.

    Raises:
        DataError: The named path is missing or unreadable, the arrays are
            inconsistent, or nothing was found anywhere.
    """
    if path is not None and str(path) != "":
        return _read_path(Path(path), origin="--data")
    env = os.environ.get(DATA_ENV)
    if env:
        return _read_path(Path(env), origin=DATA_ENV)
    tried = ["--data (not given)", f"${DATA_ENV} (not set)"]
    cache = keras_cache_path()
    if cache.is_file():
        return _read_path(cache, origin="Keras cache")
    tried.append(f"Keras cache {cache} (no file)")
    if download:
        try:
            raw = _download()
        except Exception as exc:  # any network or Keras failure means "not available here"
            tried.append(f"keras.datasets.mnist.load_data() ({type(exc).__name__}: {first_line(exc)})")
        else:
            return raw
    else:
        tried.append("keras.datasets.mnist.load_data() (download disabled)")
    raise DataError(
        "no MNIST data found; tried: " + "; ".join(tried)
        + f". Fix: pass --data PATH (a Keras-layout mnist.npz or a folder of the four IDX files)"
        f" or set {DATA_ENV}=PATH"
    )


def load(path: str | os.PathLike[str] | None = None, *, download: bool = True,
         val_data: str | os.PathLike[str] | None = None) -> Dataset:
    """Find, read, validate and scale the data: see :func:`load_raw` and :func:`scale`.

    ``val_data``: a second file or folder whose images are the validation set
    (an npz with ``x_val``/``y_val`` or ``x``/``y``, or a folder of class subfolders).
    """
    raw = load_raw(path, download=download)
    if val_data:
        raw = with_validation(raw, Path(val_data))
    return scale(raw)


def from_arrays(x_train: Any, y_train: Any, x_test: Any, y_test: Any, *, x_val: Any = None, y_val: Any = None,
                class_names: Any = None, source: str = "arrays") -> Dataset:
    """A :class:`Dataset` from NumPy-like arrays (the Python API's door), validated as a file would be."""
    arrays = {k: None if v is None else np.asarray(v) for k, v in
              dict(x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test, x_val=x_val, y_val=y_val).items()}
    names = tuple(str(n) for n in class_names) if class_names is not None else None
    return scale(validate(RawData(**arrays, source=source, class_names=names)))  # type: ignore[arg-type]


def with_validation(raw: RawData, path: Path) -> RawData:
    """``raw`` with its validation set read from ``path`` (``--val-data``)."""
    from dataclasses import replace

    if not path.exists():
        raise DataError(f"--val-data {path}: no such file or folder; pass an npz with x_val and y_val (or x and y)"
                        " or a folder of class subfolders")
    if path.is_dir():
        got = folder_mod.read_flat(path, raw.class_names)
        x, y = got["x"], got["y"]
    else:
        with open_npz(path) as npz:
            keys = VAL_KEYS if set(VAL_KEYS) <= set(npz.files) else ("x", "y")
            if not set(keys) <= set(npz.files):
                raise DataError(f"--val-data {path}: expected the keys x_val and y_val (or x and y); found"
                                f" {', '.join(npz.files) or 'none'}")
            x, y = (np.asarray(npz[k]) for k in keys)
    return validate(replace(raw, x_val=x, y_val=y, source=f"{raw.source} (validation: {path})"))


def content_sha256(raw: RawData) -> str:
    """sha256 over the four arrays (names, dtypes, shapes, bytes): the same for MNIST in any container."""
    h = hashlib.sha256()
    for name in NPZ_KEYS:
        arr = np.ascontiguousarray(getattr(raw, name))
        h.update(f"{name}:{arr.dtype.str}:{arr.shape};".encode())
        h.update(arr.data)
    return h.hexdigest()


def scale(raw: RawData) -> Dataset:
    """Images to float32 in [0, 1] with a channel axis (uint8 / 255; floats as given); labels to int64."""
    def prep(x: np.ndarray | None) -> np.ndarray | None:
        if x is None:
            return None
        x = x.astype(np.float32) / np.float32(255.0) if x.dtype == np.uint8 else x.astype(np.float32)
        return x[..., np.newaxis] if x.ndim == 3 else x

    n_classes = int(raw.y_train.max()) + 1 if raw.y_train.size else 0
    return Dataset(
        x_train=prep(raw.x_train),  # type: ignore[arg-type]
        y_train=raw.y_train.astype(np.int64),
        x_test=prep(raw.x_test),  # type: ignore[arg-type]
        y_test=raw.y_test.astype(np.int64),
        n_classes=n_classes,
        source=raw.source,
        x_val=prep(raw.x_val),
        y_val=None if raw.y_val is None else raw.y_val.astype(np.int64),
        class_names=raw.class_names,
        sha256=content_sha256(raw),
    )


def split(ds: Dataset, *, train_limit: int = 0, val_fraction: float | None = None,
          seed: int = holdout.SPLIT_SEED) -> Splits:
    """Choose the validation set and cut the training set to ``train_limit``.

    The validation set is, in this order: the data's own (``x_val``/``y_val``);
    for MNIST without ``val_fraction``, the last 10% of the training set (the
    reference's, for faithfulness); otherwise a seeded, stratified
    ``val_fraction`` (default :data:`VALIDATION_FRACTION`), so a label-sorted
    file still validates on every class.

    Args:
        ds: The scaled data set.
        train_limit: Keep only the first N training images after the split
            (0 = all of them: 54,000 for MNIST). The validation set does not
            shrink, so accuracies stay comparable across fidelities. More
            than the data hold is refused (ConfigError), never cut silently.
        val_fraction: Share of the training set held out (stratified; MNIST's last 10% when None).
        seed: The stratified draw's seed.
    """
    if train_limit < 0:
        raise DataError(f"train_limit must be >= 0 (0 = all); received {train_limit}")
    n = len(ds.x_train)
    if ds.x_val is not None and ds.y_val is not None:
        train_idx, x_val, y_val, method = np.arange(n), ds.x_val, ds.y_val, "given"
    elif val_fraction is None and ds.mnist:
        cut = n - int(round(n * VALIDATION_FRACTION))
        train_idx, x_val, y_val, method = np.arange(cut), ds.x_train[cut:], ds.y_train[cut:], "last"
    else:
        frac = VALIDATION_FRACTION if val_fraction is None else val_fraction
        if n < 10:
            raise DataError(f"{ds.source}: {n} training images cannot be split {1 - frac:.0%}/{frac:.0%} into"
                            " training and validation; use a data set with at least 10 training images")
        train_idx, val_idx = holdout.stratified(ds.y_train, frac, seed=seed, source=ds.source)
        x_val, y_val, method = ds.x_train[val_idx], ds.y_train[val_idx], "stratified"
    cut = len(train_idx)
    if cut < 1 or len(y_val) < 1:
        raise DataError(f"{ds.source}: {n} training images leave {cut} for training and {len(y_val)} for"
                        " validation; use a data set with at least 10 training images")
    if train_limit > cut:
        # Refused rather than cut silently: a study's fidelity (and every comparison made at it) names this number.
        raise ConfigError(
            f"train_limit {train_limit:,}: expected at most the {cut:,} training images that {ds.source} has after"
            f" holding out {len(y_val):,} for validation; received {train_limit:,}; use train_limit = 0 (all) or a"
            " smaller number"
        )
    keep = train_idx if train_limit == 0 else train_idx[:train_limit]
    y_train = ds.y_train[keep]
    return Splits(x_train=ds.x_train[keep], y_train=y_train, x_val=x_val, y_val=y_val, x_test=ds.x_test,
                  y_test=ds.y_test, n_classes=ds.n_classes, input_shape=ds.input_shape, method=method,
                  warnings=tuple(holdout.warnings_for(y_train, y_val, ds.n_classes)), class_names=ds.class_names)


def fingerprint(source: str | os.PathLike[str]) -> str:
    """SHA-256 (hex) of the data behind a :attr:`RawData.source`: the file's bytes, as ``sha256sum`` prints.

    An IDX folder hashes its four IDX files (in :data:`IDX_STEMS` order, each
    file's digest in turn); an image folder hashes each image's relative path
    and bytes, in sorted order; so the same folder always gives the same digest.
    A Keras download is fingerprinted by the cache file it leaves.

    Raises:
        DataError: the source is neither a file nor a folder of data.
    """
    path = Path(source)
    if str(source).startswith("keras.datasets"):
        path = keras_cache_path()
    if path.is_dir():
        h = hashlib.sha256()
        if is_idx_folder(path):
            for stem in IDX_STEMS.values():
                h.update(bytes.fromhex(fingerprint(find_idx(path, stem))))  # type: ignore[arg-type]
        else:
            for f in sorted(p for p in path.rglob("*") if p.suffix.lower() in folder_mod.IMAGE_SUFFIXES):
                h.update(str(f.relative_to(path)).encode() + b"\0" + bytes.fromhex(fingerprint(f)))
        return h.hexdigest()
    if not path.is_file():
        raise DataError(f"{source}: cannot fingerprint the data (no such file or folder)")
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def validate(raw: RawData) -> RawData:
    """Check that the arrays fit together; return ``raw`` unchanged.

    Raises:
        DataError: naming the source and what is wrong.
    """
    src = raw.source
    if (raw.x_val is None) != (raw.y_val is None):
        have, lack = ("x_val", "y_val") if raw.y_val is None else ("y_val", "x_val")
        raise DataError(f"{src}: has {have} but no {lack}; a validation set needs both (or neither: then it is"
                        " held out of the training set)")
    parts = ("train", "test") + (("val",) if raw.x_val is not None else ())
    for part in parts:
        check_images(src, f"x_{part}", getattr(raw, f"x_{part}"))
        check_labels(src, f"y_{part}", getattr(raw, f"y_{part}"))
        nx, ny = len(getattr(raw, f"x_{part}")), len(getattr(raw, f"y_{part}"))
        if nx != ny:
            raise DataError(f"{src}: x_{part} has {nx} images but y_{part} has {ny} labels; they must match")
        if part != "train" and getattr(raw, f"x_{part}").shape[1:] != raw.x_train.shape[1:]:
            raise DataError(
                f"{src}: train images are {raw.x_train.shape[1:]} but {part} images are"
                f" {getattr(raw, f'x_{part}').shape[1:]}; they must be the same size")
    n_classes = int(raw.y_train.max()) + 1
    missing = np.setdiff1d(np.arange(n_classes), raw.y_train)
    if missing.size:
        # A stray label (42 among 0..9) would silently train a 43-class model.
        shown = ", ".join(map(str, missing[:5].tolist())) + (", ..." if missing.size > 5 else "")
        raise DataError(
            f"{src}: y_train's labels run to {n_classes - 1}, so {n_classes} classes, but {missing.size} of them"
            f" never occur ({shown}); labels must be 0..K-1 with every class present in the training set:"
            " fix or drop the stray labels"
        )
    for part in parts[1:]:
        bad = getattr(raw, f"y_{part}")[getattr(raw, f"y_{part}") >= n_classes]
        if bad.size:
            raise DataError(
                f"{src}: y_{part} holds label {int(bad[0])} but y_train has only {n_classes} classes"
                f" (0..{n_classes - 1}); every label must be within the class count")
    if raw.class_names is not None and len(raw.class_names) != n_classes:
        raise DataError(f"{src}: {len(raw.class_names)} class names for {n_classes} classes; give one name per label")
    return raw


def _read_path(path: Path, *, origin: str) -> RawData:
    if not path.exists():
        raise DataError(
            f"{path} (from {origin}): no such file or folder; pass a Keras-layout .npz, a folder of the four IDX"
            " files, or a folder with one subfolder of images per class"
        )
    if path.is_dir():
        try:
            if is_idx_folder(path) or not folder_mod.is_image_folder(path):
                return validate(RawData(**read_idx_folder(path), source=str(path)))
            return validate(RawData(**folder_mod.read(path)))  # type: ignore[arg-type]
        except OSError as exc:  # an unreadable folder (permissions): a clear line, not a traceback
            raise DataError(f"{path} (from {origin}): cannot read this folder ({exc.strerror or exc}:"
                            f" {exc.filename or path}); check its permissions") from exc
    return validate(RawData(**read_npz(path)))


def _download() -> RawData:
    import contextlib
    import sys

    from cnnsearch.ground._tf import keras

    # Keras prints "Downloading data from ..." on stdout, which must stay clean for --json.
    with contextlib.redirect_stdout(sys.stderr):
        (x_train, y_train), (x_test, y_test) = keras().datasets.mnist.load_data()
    return validate(RawData(x_train, y_train, x_test, y_test, source="keras.datasets.mnist.load_data()"))


__all__ = ["Dataset", "MNIST_SHA256", "RawData", "Splits", "VALIDATION_FRACTION", "content_sha256", "fingerprint",
           "from_arrays", "keras_cache_path", "load", "load_raw", "read_idx", "scale", "split", "validate",
           "with_validation"]
