"""cnnsearch: choose a CNN's filters, kernels, pools and dropout by evidence, not instinct.

The public Python API (docs/python-api.md): :func:`run_study`: search a space (or your own ``build(trial)``)
on your data, :func:`confirm` the winners over seeds, :func:`write_report`; :func:`load_study`
is ``optuna.load_study`` on cnnsearch's storage. Lower-level pieces: :func:`load` / :func:`from_arrays`
and :func:`split` for data, :class:`ArchSpec` and :func:`fit` for one model.
"""

from cnnsearch.api import as_dataset, check_builder, confirm, load_study, run_study, write_report
from cnnsearch.ground.data import Dataset, Splits, from_arrays, load, split
from cnnsearch.ground.errors import (
    ArchitectureError,
    CnnsearchError,
    ConfigError,
    DataError,
    StorageError,
    TrialFailed,
)
from cnnsearch.ground.version import __version__
from cnnsearch.model.arch import ArchSpec, build_model, summarize
from cnnsearch.model.train import TrainConfig, TrainResult, fit

__all__ = [
    "ArchSpec", "ArchitectureError", "CnnsearchError", "ConfigError", "DataError", "Dataset", "Splits",
    "StorageError", "TrainConfig", "TrainResult", "TrialFailed", "__version__", "as_dataset", "build_model",
    "check_builder", "confirm", "fit", "from_arrays", "load", "load_study", "run_study", "split",
    "summarize", "write_report",
]
