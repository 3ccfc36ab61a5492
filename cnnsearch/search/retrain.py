"""The winner as a trained model: train any trial again at a fidelity of your choice, and keep what
confirmation trained (issue 23 item 8).

- :func:`train_trial`: ``study train NAME --trial N [--epochs E --train-limit L --seed S] --export FILE``.
- :func:`keep_confirmed`: the hook confirmation calls after each run: of each configuration, the weights
  of its best seed by *validation* accuracy (selection never looks at the test set) are kept, one
  ``.keras`` file per configuration and fidelity.
- :func:`export_from`: ``study best NAME --confirmed --export FILE`` (the CLI picks the configuration: the
  confirmed one with the highest mean test accuracy over its seeds, at the confirmation's fidelity).
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path
from typing import Any

from cnnsearch.ground.output import replacing, write_file
from cnnsearch.ground import data as data_mod
from cnnsearch.ground import provenance
from cnnsearch.ground.errors import ConfigError, StorageError
from cnnsearch.records.storage import artifact_dir, kept_weights
from cnnsearch.search import points
from cnnsearch.search import study as study_mod
from cnnsearch.search.kept import safe_name, sha256

#: Study user attribute: {"<fidelity key>:<config>": {trial, seed, val_accuracy, artifact_id, sha256}}.
CONFIRMED_KEY = "confirmed_weights"


def train_trial(name: str, trial: int, export: str | os.PathLike[str], *, epochs: int | None = None,
                train_limit: int | None = None, seed: int = 0, url: str | None = None,
                on_epoch: Any = None) -> dict[str, Any]:
    """Train trial ``trial`` of study ``name`` again (on the study's data and validation split) and save it.

    ``epochs`` / ``train_limit`` default to the study's; ``seed`` is the training seed. Returns the run's
    figures (val and test accuracy, epochs, seconds, the export path). Nothing stored on the study changes.
    """
    from cnnsearch.model.train import fit

    out = _export_path(export)
    h = study_mod.load(name, url)
    t = next((t for t in h.study.get_trials(deepcopy=False) if t.number == trial), None)
    if t is None or not t.params and not t.user_attrs.get("baseline"):
        raise ConfigError(f"--trial {trial}: expected a trial of study {name!r} (0..{len(h.study.trials) - 1}) with"
                          f" a point of its space; received {trial}")
    if h.study.user_attrs.get("builder"):
        raise ConfigError(f"study {name!r} was searched with your own build function: train its trials with it")
    spec, overrides = points.suggest(_Fixed(t.params), h.space)
    config = replace(h.training, seed=seed, **overrides,
                     **{k: v for k, v in (("epochs", epochs), ("train_limit", train_limit)) if v is not None})
    ds = provenance.load(h.study, None, remember=False)
    splits = data_mod.split(ds, train_limit=config.train_limit, val_fraction=provenance.val_fraction(h.study))
    r = fit(spec, splits, config, on_epoch=on_epoch)
    _save_atomically(r.model, out)
    return {"trial": trial, "epochs": r.epochs_run, "train_limit": config.train_limit, "seed": seed,
            "val_accuracy": r.val_accuracy, "test_accuracy": r.test_accuracy, "param_count": r.params,
            "seconds": round(r.seconds, 1), "exported": str(out)}


def keep_confirmed(study: Any, url: str, key: str, trial: int, seed: int, result: Any) -> None:
    """Keep ``result``'s weights if it is configuration ``key``'s best seed so far by validation accuracy."""
    kept = dict(study.user_attrs.get(CONFIRMED_KEY) or {})
    old = kept.get(key)
    if old is not None and old["val_accuracy"] >= result.val_accuracy:
        return
    folder = artifact_dir(url)
    folder.mkdir(parents=True, exist_ok=True)
    artifact_id = f"{safe_name(study.study_name)}-confirmed-{safe_name(key)}-seed{seed}.keras"
    with replacing(folder / artifact_id) as partial:
        result.model.save(partial)
        digest = sha256(partial)
    kept[key] = {"trial": trial, "seed": seed, "val_accuracy": result.val_accuracy, "artifact_id": artifact_id,
                 "sha256": digest}
    study.set_user_attr(CONFIRMED_KEY, kept)
    if old is not None and old["artifact_id"] != artifact_id:
        (folder / old["artifact_id"]).unlink(missing_ok=True)


def export_from(h: study_mod.Handle, key: str, export: str | os.PathLike[str]) -> dict[str, Any]:
    """Copy the kept weights of confirmed configuration ``key`` (``<fidelity>:<config>``) to ``export``."""
    out = _export_path(export)
    rec = (h.study.user_attrs.get(CONFIRMED_KEY) or {}).get(key)
    if rec is None:
        raise StorageError(f"study {h.name!r}: no weights kept for confirmed configuration {key} (confirmations run"
                           " before weights were kept have none); run cnnsearch study confirm again")
    source = kept_weights(h.url, rec, "confirmed")  # verified against its stored checksum
    if source is None:
        raise StorageError(f"study {h.name!r}: weights {rec['artifact_id']} missing from {artifact_dir(h.url)}")
    write_file(out, source.read_bytes(), flag="--export", what="the model")  # never over a device or link
    return {**rec, "configuration": key, "exported": str(out)}


def _export_path(export: str | os.PathLike[str]) -> Path:
    out = Path(export)
    if out.suffix != ".keras":
        raise ConfigError(f"--export: expected a path ending in .keras; received {str(out)!r}")
    return out


def _save_atomically(model: Any, out: Path) -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as folder:  # Keras writes a path; the bytes then go where --export says
        saved = Path(folder) / "model.keras"
        model.save(saved)
        write_file(out, saved.read_bytes(), flag="--export", what="the model")


class _Fixed:
    """A stored trial's params, answering the suggest_* calls of :func:`cnnsearch.search.points.suggest`."""

    def __init__(self, params: dict[str, Any]) -> None:
        self.params = params

    def _get(self, name: str, *args: Any, **kwargs: Any) -> Any:
        return self.params[name]

    suggest_categorical = suggest_int = suggest_float = _get


__all__ = ["CONFIRMED_KEY", "export_from", "keep_confirmed", "train_trial"]
