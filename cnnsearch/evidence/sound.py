"""Stored confirmation records that cannot be read: skipped, each named in one warning (issue 26 item 10).

A record is written by ``study confirm`` as one study system attribute; another
tool, an older version or a hand edit may leave one of the wrong shape. One
such record must not stop ``confirm --show`` or ``report``: it is left out of
every statistic (and left in the database), and a :class:`CorruptRecord`
warning names it and what is wrong. The CLI prints that warning as one line.
"""

from __future__ import annotations

import base64
import binascii
import math
import warnings
from typing import Any

#: Fields every run record needs, with the types the statistics read them as.
_FIELDS: dict[str, tuple[type, ...]] = {"config": (str,), "seed": (int,), "epochs": (int,), "train_limit": (int,),
                                        "test_accuracy": (int, float), "param_count": (int,), "predictions": (str,)}


class CorruptRecord(UserWarning):
    """A stored confirmation record skipped because it cannot be read."""


def problem(record: Any, n_labels: int | None = None) -> str:
    """What is wrong with one stored run record ('' when it is sound)."""
    if not isinstance(record, dict):
        return f"expected a record (a JSON object); received a {type(record).__name__}"
    for key, kinds in _FIELDS.items():
        value = record.get(key)
        if not isinstance(value, kinds) or isinstance(value, bool):
            return f"field {key}: expected {' or '.join(k.__name__ for k in kinds)}; received {value!r:.40}"
    if not (math.isfinite(record["test_accuracy"]) and 0 <= record["test_accuracy"] <= 1):
        return f"field test_accuracy: expected a number from 0 to 1; received {record['test_accuracy']!r}"
    try:
        n = len(base64.b64decode(record["predictions"], validate=True))
    except (binascii.Error, ValueError):
        return "field predictions: expected base64 text; received text that does not decode"
    if record["predictions"] and n_labels is not None and n != n_labels:
        return f"field predictions: expected {n_labels:,} predictions (one per test image); received {n:,}"
    return ""


def sound(attrs: dict[str, Any], prefix: str) -> dict[str, Any]:
    """``attrs`` without the run records (keys starting with ``prefix``) that cannot be read; warns for each."""
    labels = attrs.get("confirm_labels")
    n_labels = None
    if isinstance(labels, str):
        try:
            n_labels = len(base64.b64decode(labels, validate=True))
        except (binascii.Error, ValueError):
            warnings.warn("confirmation test labels: not base64 text; McNemar's test is left out", CorruptRecord)
            attrs = {k: v for k, v in attrs.items() if k != "confirm_labels"}
    out = {}
    for key, value in attrs.items():
        why = problem(value, n_labels) if key.startswith(prefix) else ""
        if why:
            trial = value.get("trial") if isinstance(value, dict) else None
            who = f"trial {trial}, " if isinstance(trial, int) else ""
            warnings.warn(f"skipped the stored confirmation run {key[len(prefix):]!r} ({who}{why}); it is left in"
                          " the database and out of every statistic", CorruptRecord)
            continue
        out[key] = value
    return out


__all__ = ["CorruptRecord", "problem", "sound"]
