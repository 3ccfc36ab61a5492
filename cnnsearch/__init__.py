"""cnnsearch: choose a CNN's filters, kernels, pools and dropout by evidence, not instinct."""

from cnnsearch.arch import ArchSpec, build_model, summarize
from cnnsearch.data import Dataset, Splits, load, split
from cnnsearch.errors import (
    ArchitectureError,
    CnnsearchError,
    ConfigError,
    DataError,
    StorageError,
    TrialFailed,
)
from cnnsearch.train import TrainConfig, TrainResult, fit

__all__ = [
    "ArchSpec", "ArchitectureError", "CnnsearchError", "ConfigError", "DataError", "Dataset", "Splits",
    "StorageError", "TrainConfig", "TrainResult", "TrialFailed", "build_model", "fit", "load", "split", "summarize",
]
__version__ = "0.1.0"
