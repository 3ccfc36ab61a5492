"""The exceptions cnnsearch raises, and which of them stop a run.

Failed vs fatal (after keras-tuner's ``errors.py``): :class:`TrialFailed` ends one
trial and the search goes on; every other :class:`CnnsearchError` stops the
command with one line. Each message says what was expected, what was received,
and how to fix it.
"""

from __future__ import annotations


class CnnsearchError(Exception):
    """Base class: a problem the user can fix, reported as one line."""

    #: Process exit status the CLI uses for this error (1: error, 2: invalid input).
    exit_code: int = 1


class ConfigError(CnnsearchError):
    """An invalid option, space file or architecture given by the user."""

    exit_code = 2


class ArchitectureError(ConfigError):
    """An :class:`~cnnsearch.arch.ArchSpec` that cannot be built (e.g. a vanishing feature map)."""


class DataError(CnnsearchError):
    """MNIST could not be found, read or validated."""


class StorageError(CnnsearchError):
    """An Optuna storage that cannot be reached, or a study that is missing or exists already."""


class TrialFailed(CnnsearchError):
    """One trial could not finish (NaN loss, unbuildable spec); the search continues."""


class Interrupted(KeyboardInterrupt):
    """Ctrl-C, SIGTERM or SIGHUP: stop the run, fail the running trial with the signal's name, exit 128 + signal.

    A KeyboardInterrupt, so code that cleans up on Ctrl-C cleans up on SIGTERM too.
    """

    def __init__(self, signum: int = 2) -> None:
        import signal

        self.signum = signum
        self.signame = signal.Signals(signum).name if signum in signal.Signals._value2member_map_ else str(signum)
        #: Process exit status: 128 + the signal number (130 Ctrl-C, 143 SIGTERM, 129 SIGHUP).
        self.exit_code = 128 + signum
        super().__init__(self.reason)

    @property
    def reason(self) -> str:
        """The fail reason recorded on an interrupted trial."""
        return "interrupted by Ctrl-C (SIGINT)" if self.signame == "SIGINT" else f"interrupted ({self.signame})"
