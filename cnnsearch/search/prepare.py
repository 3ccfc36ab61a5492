"""Before a run trains: the study's data, split and checked against its space; a new study only when all is well.

``study run --space`` is all or nothing (issue 23): the space file, the data (readable, split at the
study's fidelity, big enough for the baseline and for some point of the space) and the storage are
checked before the study is created, so a failure leaves no half-made study behind.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from cnnsearch.ground import data as data_mod
from cnnsearch.ground import provenance
from cnnsearch.ground.errors import ArchitectureError, DataError
from cnnsearch.model.arch import summarize
from cnnsearch.model.train import TrainConfig
from cnnsearch.records.storage import open_storage, resolve_storage
from cnnsearch.search import points
from cnnsearch.search import space as space_mod
from cnnsearch.search import study as study_mod

#: Share of a space's points that cannot be built for the data's images above which the first run says so.
UNBUILDABLE_NOTE = 0.10


def check(sp: space_mod.Space, training: TrainConfig, ds: data_mod.Dataset,
          val_fraction: float | None = None) -> data_mod.Splits:
    """Split ``ds`` at the study's fidelity and check the space can train on it; returns the splits.

    Raises:
        DataError: the images are too small for the baseline, or for every point of the space.
        ConfigError: the fidelity (train_limit) asks for more images than the data hold.
    """
    splits = data_mod.split(ds, train_limit=training.train_limit, val_fraction=val_fraction)
    base = points.baseline_params(sp)
    if base is not None:
        try:
            summarize(points.spec_from_values(base, sp), splits.input_shape, splits.n_classes)
        except ArchitectureError as exc:
            what = "your [baseline] point" if isinstance(sp.baseline, dict) else "the reference model"
            raise DataError(f"{ds.source}: images of {splits.input_shape} are too small for {what}: {exc};"
                            ' pass larger images, or set [baseline] model = "none" or a point that fits') from exc
    if points.unbuildable_share(sp, splits.input_shape, splits.n_classes) >= 1.0:
        raise DataError(f"{ds.source}: images of {splits.input_shape}: expected a space with some point that can be"
                        " built for them; received one whose every point shrinks the image below one pixel; use"
                        " smaller kernels and pools, 'same' padding, or fewer conv layers")
    return splits


def study_splits(handle: study_mod.Handle, data_path: str | None = None, *, data: data_mod.Dataset | None = None,
                 val_data: str | None = None, val_fraction: float | None = None) -> tuple[data_mod.Splits, list[str]]:
    """The study's data (remembered at its first run), split and checked; plus warnings to show once.

    Warnings: the validation set's (too small, unbalanced), and at the first run the share
    of the space that cannot be built for these images when over :data:`UNBUILDABLE_NOTE`.
    """
    new = provenance.stored(handle.study) is None
    ds = provenance.load(handle.study, data_path, data=data, val_data=val_data, val_fraction=val_fraction,
                         remember=False)
    vf = val_fraction if new else provenance.val_fraction(handle.study)
    splits = check(handle.space, handle.training, ds, vf)
    notes = list(splits.warnings)
    if new:
        provenance.remember(handle.study, ds, val_data=val_data, val_fraction=val_fraction)
    first = not handle.study.get_trials(deepcopy=False, states=tuple(s for s in TrialState if s != TrialState.WAITING))
    if first:
        share = points.unbuildable_share(handle.space, splits.input_shape, splits.n_classes)
        if share > UNBUILDABLE_NOTE:
            notes.append(f"{share:.0%} of the space's points cannot be built for {splits.input_shape[0]}x"
                         f"{splits.input_shape[1]} images: they end as infeasible trials, untrained and not counted"
                         " toward --trials")
    return splits, notes


def ready(name: str, space_path: str | Path, url: str | None = None, *, data_path: str | None = None,
          data: data_mod.Dataset | None = None, val_data: str | None = None, val_fraction: float | None = None,
          metric: str | None = None) -> tuple[study_mod.Handle, bool]:
    """Study ``name``, created from ``space_path`` only after its space, data and storage check out.

    An existing study must have the same space (:func:`cnnsearch.search.study.ensure`); returns (handle, created).
    """
    sp = study_mod.with_metric(space_mod.load(space_path), metric)
    url = resolve_storage(url)
    storage = open_storage(url, create=True)  # an unreachable server or unwritable file: one line, no study
    if name in optuna.study.get_all_study_names(storage=storage):
        return study_mod.ensure(name, space_path, url)
    if data is None:
        data = data_mod.load(provenance.resolve(_NoStudy(), data_path), val_data=val_data)
    check(sp, sp.training, data, val_fraction)
    handle = study_mod.create(name, space_path, url, metric=metric)
    provenance.remember(handle.study, data, val_data=val_data, val_fraction=val_fraction)
    return handle, True


class _NoStudy:
    """A study with no data record yet, for :func:`cnnsearch.ground.provenance.resolve`."""

    user_attrs: dict[str, Any] = {}


__all__ = ["UNBUILDABLE_NOTE", "check", "ready", "study_splits"]
