"""Find, read, validate and scale MNIST (or any MNIST-shaped data set).

Resolution order for where the data come from:

1. an explicit path (the CLI's ``--data``),
2. the ``CNNSEARCH_DATA`` environment variable,
3. the Keras cache (``$KERAS_HOME/datasets/mnist.npz``, by default ``~/.keras/datasets``),
4. ``keras.datasets.mnist.load_data()``, which downloads (needs internet).

A path may be a Keras-layout ``.npz`` (keys ``x_train``, ``y_train``, ``x_test``,
``y_test``) or a folder holding the four IDX files, gzipped or raw. Input shape
and class count come from the data, never from constants. No optuna here.
"""

from __future__ import annotations

import gzip
import os
import struct
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cnnsearch.ground.errors import ConfigError, DataError

#: Environment variable naming the data file or folder (used by tests, CI, benchmarks).
DATA_ENV = "CNNSEARCH_DATA"

#: Fraction of the training set held out for validation: the last 10%, as Keras's
#: ``validation_split=0.1`` takes it (no shuffling), so results match the reference.
VALIDATION_FRACTION = 0.1

#: The four arrays of a Keras-layout npz.
NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")

#: IDX file stems by array, as distributed by LeCun et al.
IDX_STEMS = {
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}

# IDX magic: two zero bytes, a type code (0x08 = unsigned byte) and the number of dimensions.
_IDX_UBYTE = 0x08


@dataclass(frozen=True)
class RawData:
    """The four arrays as stored (uint8), with where they came from."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    source: str


@dataclass(frozen=True)
class Dataset:
    """Scaled arrays ready for Keras: images float32 in [0, 1] NHWC, labels int64."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    n_classes: int
    source: str

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
            tried.append(f"keras.datasets.mnist.load_data() ({type(exc).__name__}: {_first_line(exc)})")
        else:
            return raw
    else:
        tried.append("keras.datasets.mnist.load_data() (download disabled)")
    raise DataError(
        "no MNIST data found; tried: " + "; ".join(tried)
        + f". Fix: pass --data PATH (a Keras-layout mnist.npz or a folder of the four IDX files)"
        f" or set {DATA_ENV}=PATH"
    )


def load(path: str | os.PathLike[str] | None = None, *, download: bool = True) -> Dataset:
    """Find, read, validate and scale MNIST: see :func:`load_raw` and :func:`scale`."""
    return scale(load_raw(path, download=download))


def scale(raw: RawData) -> Dataset:
    """Turn uint8 images into float32 in [0, 1] with a channel axis; labels to int64."""
    def prep(x: np.ndarray) -> np.ndarray:
        x = x.astype(np.float32) / np.float32(255.0)
        return x[..., np.newaxis] if x.ndim == 3 else x

    n_classes = int(raw.y_train.max()) + 1 if raw.y_train.size else 0
    return Dataset(
        x_train=prep(raw.x_train),
        y_train=raw.y_train.astype(np.int64),
        x_test=prep(raw.x_test),
        y_test=raw.y_test.astype(np.int64),
        n_classes=n_classes,
        source=raw.source,
    )


def split(ds: Dataset, *, train_limit: int = 0, val_fraction: float = VALIDATION_FRACTION) -> Splits:
    """Hold out the last ``val_fraction`` of the training set for validation.

    Args:
        ds: The scaled data set.
        train_limit: Keep only the first N training images after the split
            (0 = all of them: 54,000 for MNIST). The validation set does not
            shrink, so accuracies stay comparable across fidelities. More
            than the data hold is refused (ConfigError), never cut silently.
        val_fraction: Share of the training set held out, from its end.
    """
    if train_limit < 0:
        raise DataError(f"train_limit must be >= 0 (0 = all); received {train_limit}")
    n = len(ds.x_train)
    n_val = int(round(n * val_fraction))
    cut = n - n_val
    if cut < 1 or n_val < 1:
        raise DataError(
            f"{ds.source}: {n} training images cannot be split {1 - val_fraction:.0%}/{val_fraction:.0%}"
            " into training and validation; use a data set with at least 10 training images"
        )
    if train_limit > cut:
        # Refused rather than cut silently: a study's fidelity (and every comparison made at it) names this number.
        raise ConfigError(
            f"train_limit {train_limit:,}: expected at most the {cut:,} training images that {ds.source} has after"
            f" holding out {n_val:,} for validation; received {train_limit:,}; use train_limit = 0 (all) or a"
            " smaller number"
        )
    stop = cut if train_limit == 0 else train_limit
    return Splits(
        x_train=ds.x_train[:stop],
        y_train=ds.y_train[:stop],
        x_val=ds.x_train[cut:],
        y_val=ds.y_train[cut:],
        x_test=ds.x_test,
        y_test=ds.y_test,
        n_classes=ds.n_classes,
        input_shape=ds.input_shape,
    )


def fingerprint(source: str | os.PathLike[str]) -> str:
    """SHA-256 (hex) of the data behind a :attr:`RawData.source`: the file's bytes, as ``sha256sum`` prints.

    A folder hashes its four IDX files (in :data:`IDX_STEMS` order, each file's
    digest in turn), so the same folder always gives the same digest. A Keras
    download is fingerprinted by the cache file it leaves.

    Raises:
        DataError: the source is neither a file nor a folder of IDX files.
    """
    import hashlib

    path = Path(source)
    if str(source).startswith("keras.datasets"):
        path = keras_cache_path()
    if path.is_dir():
        h = hashlib.sha256()
        for stem in IDX_STEMS.values():
            h.update(bytes.fromhex(fingerprint(_find_idx(path, stem))))
        return h.hexdigest()
    if not path.is_file():
        raise DataError(f"{source}: cannot fingerprint the data (no such file or folder)")
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def validate(raw: RawData) -> RawData:
    """Check that the four arrays fit together; return ``raw`` unchanged.

    Raises:
        DataError: naming the source and what is wrong.
    """
    src = raw.source
    for name in NPZ_KEYS:
        arr = getattr(raw, name)
        if arr.dtype != np.uint8:
            raise DataError(f"{src}: {name} must be uint8 (0-255 pixels / integer labels); received dtype {arr.dtype}")
    for xname in ("x_train", "x_test"):
        x = getattr(raw, xname)
        if x.ndim not in (3, 4) or (x.ndim == 4 and x.shape[-1] not in (1, 3)):
            raise DataError(
                f"{src}: {xname} must have shape (N, height, width) or (N, height, width, channels);"
                f" received {x.shape}"
            )
        if 0 in x.shape:
            raise DataError(f"{src}: {xname} is empty; received shape {x.shape}")
    for yname in ("y_train", "y_test"):
        y = getattr(raw, yname)
        if y.ndim != 1:
            raise DataError(f"{src}: {yname} must be one label per image, shape (N,); received {y.shape}")
    for part in ("train", "test"):
        nx, ny = len(getattr(raw, f"x_{part}")), len(getattr(raw, f"y_{part}"))
        if nx != ny:
            raise DataError(f"{src}: x_{part} has {nx} images but y_{part} has {ny} labels; they must match")
    if raw.x_train.shape[1:] != raw.x_test.shape[1:]:
        raise DataError(
            f"{src}: train images are {raw.x_train.shape[1:]} but test images are {raw.x_test.shape[1:]};"
            " they must be the same size"
        )
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
    bad = raw.y_test[raw.y_test >= n_classes]
    if bad.size:
        raise DataError(
            f"{src}: y_test holds label {int(bad[0])} but y_train has only {n_classes} classes (0..{n_classes - 1});"
            " every label must be within the class count"
        )
    return raw


def _read_path(path: Path, *, origin: str) -> RawData:
    if not path.exists():
        raise DataError(
            f"{path} (from {origin}): no such file or folder; pass a Keras-layout mnist.npz or a folder"
            " of the four IDX files"
        )
    if path.is_dir():
        try:
            return validate(_read_idx_folder(path))
        except OSError as exc:  # an unreadable folder (permissions): a clear line, not a traceback
            raise DataError(f"{path} (from {origin}): cannot read this IDX folder ({exc.strerror or exc}:"
                            f" {exc.filename or path}); check its permissions") from exc
    return validate(_read_npz(path))


def _read_npz(path: Path) -> RawData:
    try:
        loaded = np.load(path, allow_pickle=False)
        if not isinstance(loaded, np.lib.npyio.NpzFile):  # a lone .npy array (or a memory map)
            raise DataError(
                f"{path}: a single NumPy array of shape {getattr(loaded, 'shape', '?')} (.npy), not a Keras-layout"
                f" MNIST .npz; expected an .npz with the keys {', '.join(NPZ_KEYS)} (np.savez(path, x_train=...,"
                " y_train=..., x_test=..., y_test=...)) or a folder of the four IDX files"
            )
        with loaded as npz:
            missing = [k for k in NPZ_KEYS if k not in npz.files]
            if missing:
                raise DataError(
                    f"{path}: not a Keras-layout MNIST npz: missing {', '.join(missing)}"
                    f" (expected keys {', '.join(NPZ_KEYS)}; found {', '.join(npz.files) or 'none'})"
                )
            arrays = {k: np.asarray(npz[k]) for k in NPZ_KEYS}
    except DataError:
        raise
    except (zipfile.BadZipFile, EOFError, OSError, ValueError, zipfile.LargeZipFile, zlib.error) as exc:
        raise DataError(
            f"{path}: cannot read as an .npz file ({type(exc).__name__}: {_first_line(exc)});"
            " it is truncated or corrupted: download it again or pass a folder of IDX files"
        ) from exc
    return RawData(**arrays, source=str(path))


def _find_idx(folder: Path, stem: str) -> Path:
    # Accept the canonical names and the common "-" -> "." variant (t10k-images.idx3-ubyte).
    candidates = [stem, stem.replace("-idx", ".idx")]
    for name in candidates:
        for suffix in ("", ".gz"):
            p = folder / f"{name}{suffix}"
            if p.is_file():
                return p
    raise DataError(
        f"{folder}: no {stem} or {stem}.gz in this folder; an IDX folder needs all four files:"
        f" {', '.join(IDX_STEMS.values())} (raw or .gz)"
    )


def read_idx(path: Path) -> np.ndarray:
    """Read one IDX file (raw or gzipped) of unsigned bytes into an array.

    Raises:
        DataError: wrong magic number, unsupported type, or a size that does not
            match the header.
    """
    try:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rb") as fh:
            blob = fh.read()
    except (OSError, EOFError) as exc:
        raise DataError(f"{path}: cannot read IDX file ({_first_line(exc)}); it may be truncated or not gzip") from exc
    if len(blob) < 4:
        raise DataError(f"{path}: {len(blob)} bytes is too short for an IDX header (4-byte magic expected)")
    zero1, zero2, dtype_code, ndim = blob[0], blob[1], blob[2], blob[3]
    if zero1 != 0 or zero2 != 0 or dtype_code != _IDX_UBYTE or ndim not in (1, 3):
        magic = int.from_bytes(blob[:4], "big")
        raise DataError(
            f"{path}: wrong IDX magic number 0x{magic:08x}; expected 0x00000801 (labels) or 0x00000803 (images)"
        )
    header_len = 4 + 4 * ndim
    if len(blob) < header_len:
        raise DataError(f"{path}: header is truncated ({len(blob)} bytes, {header_len} expected)")
    dims = struct.unpack(f">{ndim}I", blob[4:header_len])
    expected = int(np.prod(dims))
    actual = len(blob) - header_len
    if actual != expected:
        raise DataError(
            f"{path}: header says {' x '.join(map(str, dims))} = {expected} bytes of data but the file holds {actual};"
            " the file is truncated or corrupted"
        )
    return np.frombuffer(blob, dtype=np.uint8, offset=header_len).reshape(dims)


def _read_idx_folder(folder: Path) -> RawData:
    arrays = {key: read_idx(_find_idx(folder, stem)) for key, stem in IDX_STEMS.items()}
    for key in ("x_train", "x_test"):
        if arrays[key].ndim != 3:
            raise DataError(f"{folder}: {IDX_STEMS[key]} holds labels (1 dimension), expected images (3 dimensions)")
    for key in ("y_train", "y_test"):
        if arrays[key].ndim != 1:
            raise DataError(f"{folder}: {IDX_STEMS[key]} holds images (3 dimensions), expected labels (1 dimension)")
    return RawData(**arrays, source=str(folder))


def _download() -> RawData:
    import contextlib
    import sys

    from cnnsearch.ground._tf import keras

    # Keras prints "Downloading data from ..." on stdout, which must stay clean for --json.
    with contextlib.redirect_stdout(sys.stderr):
        (x_train, y_train), (x_test, y_test) = keras().datasets.mnist.load_data()
    return validate(RawData(x_train, y_train, x_test, y_test, source="keras.datasets.mnist.load_data()"))


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
