"""cnnsearch: choose a CNN's filters, kernels, pools and dropout by evidence, not instinct."""

from cnnsearch.model.arch import ArchSpec, build_model, summarize
from cnnsearch.ground.data import Dataset, Splits, load, split
from cnnsearch.ground.errors import (
    ArchitectureError,
    CnnsearchError,
    ConfigError,
    DataError,
    StorageError,
    TrialFailed,
)
from cnnsearch.model.train import TrainConfig, TrainResult, fit
from cnnsearch.ground.version import __version__

__all__ = [
    "ArchSpec", "ArchitectureError", "CnnsearchError", "ConfigError", "DataError", "Dataset", "Splits",
    "StorageError", "TrainConfig", "TrainResult", "TrialFailed", "build_model", "fit", "load", "split", "summarize",
]
