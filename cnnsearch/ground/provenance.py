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
         download: bool = True) -> data_mod.Dataset:
    """Load the study's data (see :func:`resolve`), check its digest, and remember it on a first run.

    Raises:
        DataMismatch: the data differ from what the study was trained on.
        DataError: the data are missing or unreadable.
    """
    ds = data_mod.load(resolve(study, data_path), download=download)
    digest = data_mod.fingerprint(ds.source)
    rec = stored(study)
    if rec is not None and rec["sha256"] != digest:
        raise DataMismatch(f"study {study.study_name!r} was trained on {rec['path']} (sha256 {rec['sha256'][:12]});"
                        f" {ds.source} differs (sha256 {digest[:12]}); pass --data with the original file,"
                        " or create a new study for new data")
    if rec is None and remember:
        path = ds.source if not ds.source.startswith("keras.datasets") else str(data_mod.keras_cache_path())
        study.set_user_attr(DATA_KEY, {"path": str(Path(path).resolve()), "sha256": digest})
    return ds


__all__ = ["DATA_KEY", "DataMismatch", "load", "resolve", "stored"]
