"""Keras-layout .npz files: open one safely and read its arrays (no Keras here)."""

from __future__ import annotations

import zipfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from cnnsearch.ground.errors import DataError
from cnnsearch.ground.idx import first_line

#: The four arrays of a Keras-layout npz.
NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")
#: The optional validation arrays of an npz (both or neither).
VAL_KEYS = ("x_val", "y_val")


def open_npz(path: Path) -> Any:
    """``np.load`` of an .npz file (no pickles), or one DataError line saying why it cannot be read."""
    try:
        loaded = np.load(path, allow_pickle=False)
    except (zipfile.BadZipFile, EOFError, OSError, ValueError, zipfile.LargeZipFile, zlib.error) as exc:
        raise DataError(
            f"{path}: cannot read as an .npz file ({type(exc).__name__}: {first_line(exc)});"
            " it is truncated or corrupted: download it again or pass a folder of IDX files"
        ) from exc
    if not isinstance(loaded, np.lib.npyio.NpzFile):  # a lone .npy array (or a memory map)
        raise DataError(
            f"{path}: a single NumPy array of shape {getattr(loaded, 'shape', '?')} (.npy), not a Keras-layout"
            f" .npz; expected an .npz with the keys {', '.join(NPZ_KEYS)} (np.savez(path, x_train=...,"
            " y_train=..., x_test=..., y_test=...)) or a folder of the four IDX files"
        )
    return loaded


def read_npz(path: Path) -> dict[str, Any]:
    """The arrays of a Keras-layout npz (the four, plus x_val/y_val and class_names when present)."""
    with open_npz(path) as npz:
        missing = [k for k in NPZ_KEYS if k not in npz.files]
        if missing:
            raise DataError(
                f"{path}: not a Keras-layout npz: missing {', '.join(missing)}"
                f" (expected keys {', '.join(NPZ_KEYS)}; found {', '.join(npz.files) or 'none'})"
            )
        try:
            arrays = {k: np.asarray(npz[k]) for k in NPZ_KEYS + VAL_KEYS if k in npz.files}
            names = tuple(str(n) for n in npz["class_names"]) if "class_names" in npz.files else None
        except (zipfile.BadZipFile, EOFError, OSError, ValueError, zlib.error) as exc:
            raise DataError(
                f"{path}: cannot read as an .npz file ({type(exc).__name__}: {first_line(exc)});"
                " it is truncated or corrupted: download it again or pass a folder of IDX files"
            ) from exc
    return {**arrays, "source": str(path), "class_names": names}
