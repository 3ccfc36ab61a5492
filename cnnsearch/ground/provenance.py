"""Which data a study was trained on: remembered at its first run, checked at every later one.

The first ``study run`` (or ``confirm``) stores the data's absolute path and
SHA-256 on the study (user attribute ``data``). Later ``run``, ``confirm`` and
``report`` read from that path when no ``--data`` is given; an explicit
``--data`` wins, but a file whose digest differs is refused, so a study never
mixes trials trained on different data. A moved copy (same digest) is fine.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from cnnsearch.ground import data as data_mod
from cnnsearch.ground.errors import DataError

#: Study user attribute holding {"path", "sha256"} of the data the study was trained on.
DATA_KEY = "data"


class DataMismatch(DataError):
    """The data differ from what the study was trained on (refused, never worked around)."""


def stored(study: Any) -> dict[str, str] | None:
    """The data record of an Optuna study, if its first run has stored one."""
    rec = study.user_attrs.get(DATA_KEY)
    return rec if isinstance(rec, dict) and rec.get("sha256") else None


def resolve(study: Any, data_path: str | os.PathLike[str] | None) -> str | None:
    """The path to read: ``data_path`` if given, else the stored path if it still exists, else None
    (then :func:`cnnsearch.ground.data.load` falls back to ``$CNNSEARCH_DATA`` and the Keras cache)."""
    if data_path:
        return str(data_path)
    rec = stored(study)
    if rec and Path(rec["path"]).exists():
        return rec["path"]
    return None


def load(study: Any, data_path: str | os.PathLike[str] | None = None, *, remember: bool = True,
         download: bool = True, data: data_mod.Dataset | None = None, val_data: str | None = None,
         val_fraction: float | None = None) -> data_mod.Dataset:
    """Load the study's data (see :func:`resolve`), check its digest, and remember it on a first run.

    ``data``: arrays already loaded (the Python API; remembered by their content's sha256).
    ``val_data`` / ``val_fraction``: how validation is chosen (``--val-data``, ``--val-fraction``),
    remembered with the data: a later run reuses them, and a different choice is refused, since the
    study's trials would then be ranked on different validation images.

    Raises:
        DataMismatch: the data, or the validation choice, differ from what the study was trained on.
        DataError: the data are missing or unreadable.
    """
    rec = stored(study)
    val_path = val_data or ((rec or {}).get("val_data") or {}).get("path")
    if data is None:
        data = data_mod.load(resolve(study, data_path), download=download, val_data=val_path)
        digest = data_mod.fingerprint(_path_of(data.source))
    else:
        digest = data.sha256
    if rec is not None and rec["sha256"] != digest:
        raise DataMismatch(f"study {study.study_name!r} was trained on {rec['path']} (sha256 {rec['sha256'][:12]});"
                           f" {data.source} differs (sha256 {digest[:12]}); pass --data with the original file,"
                           " or create a new study for new data")
    if rec is not None and val_fraction is not None and rec.get("val_fraction") != val_fraction:
        raise DataMismatch(f"--val-fraction {val_fraction}: study {study.study_name!r} validates on"
                           f" {_val_words(rec)}; drop --val-fraction, or create a new study")
    if rec is not None and val_data and (rec.get("val_data") or {}).get("sha256") != data_mod.fingerprint(val_data):
        raise DataMismatch(f"--val-data {val_data}: study {study.study_name!r} validates on {_val_words(rec)};"
                           " pass that, or create a new study")
    if rec is None and remember:
        study.set_user_attr(DATA_KEY, _record(data, digest, val_path, val_fraction))
    return data


def remember(study: Any, ds: data_mod.Dataset, *, val_data: str | None = None,
             val_fraction: float | None = None) -> None:
    """Store the data record of ``ds`` on a study that has none yet (see :func:`load`)."""
    if stored(study) is None:
        digest = ds.sha256 if not _is_path(ds.source) else data_mod.fingerprint(_path_of(ds.source))
        study.set_user_attr(DATA_KEY, _record(ds, digest, val_data, val_fraction))


def _path_of(source: str) -> str:
    return source.split(" (validation: ")[0]


def _is_path(source: str) -> bool:
    return source.startswith("keras.datasets") or Path(_path_of(source)).exists()


def val_fraction(study: Any) -> float | None:
    """The ``--val-fraction`` remembered with the study's data (None: the default for its data)."""
    return (stored(study) or {}).get("val_fraction")


def is_mnist(study: Any) -> bool:
    """Was the study trained on MNIST (by the arrays' sha256)? Studies from before this record: yes (MNIST only)."""
    rec = stored(study)
    return True if rec is None or "mnist" not in rec else bool(rec["mnist"])


def _record(ds: data_mod.Dataset, digest: str, val_path: str | None, fraction: float | None) -> dict[str, Any]:
    if ds.source.startswith("keras.datasets"):
        path = str(data_mod.keras_cache_path().resolve())
    elif Path(_path_of(ds.source)).exists():
        path = str(Path(_path_of(ds.source)).resolve())
    else:
        path = ds.source  # arrays from Python: nothing to read back
    rec: dict[str, Any] = {"path": path, "sha256": digest, "mnist": ds.mnist, "val_fraction": fraction}
    if val_path:
        rec["val_data"] = {"path": str(Path(val_path).resolve()), "sha256": data_mod.fingerprint(val_path)}
    if ds.class_names:
        rec["class_names"] = list(ds.class_names)
    return rec


def _val_words(rec: dict[str, Any]) -> str:
    if rec.get("val_data"):
        return f"--val-data {rec['val_data']['path']}"
    return f"--val-fraction {rec['val_fraction']}" if rec.get("val_fraction") is not None else "the default split"


__all__ = ["DATA_KEY", "DataMismatch", "is_mnist", "load", "remember", "resolve", "stored", "val_fraction"]
