"""IDX files (LeCun et al.'s MNIST distribution format): find them in a folder and read them.

Four files make a data set (:data:`IDX_STEMS`), raw or gzipped. No Keras here.
"""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np

from cnnsearch.ground.errors import DataError

#: IDX file stems by array, as distributed by LeCun et al.
IDX_STEMS = {
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}

# IDX magic: two zero bytes, a type code (0x08 = unsigned byte) and the number of dimensions.
_IDX_UBYTE = 0x08


def is_idx_folder(folder: Path) -> bool:
    """Does ``folder`` hold at least one of the four IDX files (then it is read as an IDX folder)?"""
    return any(find_idx(folder, stem, required=False) is not None for stem in IDX_STEMS.values())


def find_idx(folder: Path, stem: str, *, required: bool = True) -> Path | None:
    """The file of ``stem`` in ``folder`` (raw or .gz); None when absent and not ``required``, else DataError."""
    # Accept the canonical names and the common "-" -> "." variant (t10k-images.idx3-ubyte).
    candidates = [stem, stem.replace("-idx", ".idx")]
    for name in candidates:
        for suffix in ("", ".gz"):
            p = folder / f"{name}{suffix}"
            if p.is_file():
                return p
    if not required:
        return None
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
        raise DataError(f"{path}: cannot read IDX file ({first_line(exc)}); it may be truncated or not gzip") from exc
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


def read_idx_folder(folder: Path) -> dict[str, np.ndarray]:
    arrays = {key: read_idx(find_idx(folder, stem)) for key, stem in IDX_STEMS.items()}
    for key in ("x_train", "x_test"):
        if arrays[key].ndim != 3:
            raise DataError(f"{folder}: {IDX_STEMS[key]} holds labels (1 dimension), expected images (3 dimensions)")
    for key in ("y_train", "y_test"):
        if arrays[key].ndim != 1:
            raise DataError(f"{folder}: {IDX_STEMS[key]} holds images (3 dimensions), expected labels (1 dimension)")
    return arrays




def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (its type's name when it has none)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
