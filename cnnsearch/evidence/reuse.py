"""Confirmation runs reused across the studies of one storage (issue 21 item 3).

A confirmation run's result depends on four things only: the spec, the
training settings (epochs, train_limit, optimizer, schedule, ... and the seed:
``TrainConfig`` holds it), and the data (sha256 of the split arrays). Two
studies that retrain the reference with the same four get the same run, so the
second copies the first's record instead of spending ~12 minutes per seed on
it again, as a search's in-study baseline already does
(:func:`cnnsearch.search.objective.find_reusable_baseline`). A copied record
says where it came from (``reused_from``: study and attribute key) and keeps
the donor's measured seconds; records stored before this module carry no
identity and are never matched.

:mod:`cnnsearch.evidence.confirm` calls it in two places, in its training loop
(see :class:`Pool`): ``pool.find`` before training a run, ``pool.identify`` on
every record it stores.
"""

from __future__ import annotations

import json
from typing import Any

from cnnsearch.ground import data as data_mod
from cnnsearch.model.arch import ArchSpec
from cnnsearch.model.train import TrainConfig
from cnnsearch.search import study as study_mod

#: Record field holding what a run depends on (spec, training settings with the seed, data digest).
IDENTITY = "identity"
#: Record field of a reused run: {"study": donor study, "key": its attribute key}.
REUSED_FROM = "reused_from"
#: Only the measured results are copied; the rest of a record (config key, trial, params) is the study's own.
RESULT_FIELDS = ("param_count", "test_accuracy", "test_loss", "val_accuracy", "seconds", "predictions")


def identity(spec: ArchSpec, config: TrainConfig, data_sha256: str) -> dict[str, Any]:
    """What a run's result depends on, in the JSON form it is stored (and compared) in."""
    return json.loads(json.dumps({"spec": spec.to_dict(), "training": config.to_dict(), "data_sha256": data_sha256},
                                 sort_keys=True))


def _norm(ident: dict[str, Any]) -> str:
    return json.dumps(ident, sort_keys=True)


class Pool:
    """The finished, identified confirmation runs of every *other* study in ``handle``'s storage.

    Usage in ``confirm.run`` (the only two calls)::

        pool = reuse.Pool(h, splits)                      # once, after the data are split
        ...
        record = pool.find(c.spec, config, base)          # before fit: a copied record, or None
        if record is None:
            ... fit, build the record as today ...
        pool.identify(record, c.spec, config)             # before _store: so later studies can find it

    ``base`` is the record's own part (config key, trial, seed, fidelity, params).
    """

    def __init__(self, handle: study_mod.Handle, splits: data_mod.Splits, prefix: str = "confirm:") -> None:
        from cnnsearch.search.objective import splits_sha256

        self.data_sha256 = splits_sha256(splits)
        self.runs: dict[str, tuple[str, str, dict[str, Any]]] = {}  # identity -> (study, key, record)
        import optuna

        from cnnsearch.records.storage import open_storage

        storage = open_storage(handle.url)
        for name in optuna.study.get_all_study_names(storage):
            if name == handle.name:
                continue
            other = optuna.load_study(study_name=name, storage=storage)
            for key, rec in study_mod.system_attrs(other).items():
                if key.startswith(prefix) and isinstance(rec, dict) and isinstance(rec.get(IDENTITY), dict) \
                        and REUSED_FROM not in rec:  # the original, not a copy of a copy
                    self.runs.setdefault(_norm(rec[IDENTITY]), (name, key, rec))

    def find(self, spec: ArchSpec, config: TrainConfig, base: dict[str, Any]) -> dict[str, Any] | None:
        """A copy of another study's identical finished run, completed with ``base``; None when there is none."""
        hit = self.runs.get(_norm(identity(spec, config, self.data_sha256)))
        if hit is None:
            return None
        study, key, rec = hit
        return {**base, **{f: rec[f] for f in RESULT_FIELDS if f in rec}, REUSED_FROM: {"study": study, "key": key}}

    def identify(self, record: dict[str, Any], spec: ArchSpec, config: TrainConfig) -> dict[str, Any]:
        """Add the run's identity to ``record`` (in place, and returned)."""
        record[IDENTITY] = identity(spec, config, self.data_sha256)
        return record


def reused(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Which runs among ``records`` (a confirmation's stored runs) were reused, and from where: for the note."""
    return [{"config": r["config"], "seed": r["seed"], **r[REUSED_FROM]} for r in records if r.get(REUSED_FROM)]
