"""The exceptions cnnsearch raises, and which of them stop a run.

Failed vs fatal (after keras-tuner's ``errors.py``, which separates
FailedTrialError from FatalError): :class:`TrialFailed` ends one trial and the
search goes on; every :class:`CnnsearchError` stops the command with one line.
The two have separate roots, so no ``except`` clause catches one as the other. Each message says what was expected, what was received,
and how to fix it.
"""

from __future__ import annotations

from typing import Iterable


class CnnsearchError(Exception):
    """Base class: a problem the user can fix, reported as one line."""

    #: Process exit status the CLI uses for this error (1: error, 2: invalid input).
    exit_code: int = 1


class ConfigError(CnnsearchError):
    """An invalid option, space file or architecture given by the user."""

    exit_code = 2


class ArchitectureError(ConfigError):
    """An :class:`~cnnsearch.model.arch.ArchSpec` that cannot be built (e.g. a vanishing feature map)."""


class DataError(CnnsearchError):
    """MNIST could not be found, read or validated."""


class StorageError(CnnsearchError):
    """An Optuna storage that cannot be reached, or a study that is missing or exists already."""


class TrialFailed(Exception):
    """One trial could not finish (NaN loss, unbuildable spec); the search continues.

    Attributes:
        reason: One line saying why, stored on the trial as ``fail_reason``.
        kind: ``"training"`` (counts towards ``max_consecutive_failures``) or
            ``"invalid_architecture"`` (does not), stored as ``failure_kind``.
    """

    def __init__(self, reason: str, *, kind: str = "training") -> None:
        super().__init__(reason)
        self.reason = reason
        self.kind = kind


def check_known_keys(given: Iterable[str], known: Iterable[str], what: str,
                     error: type[CnnsearchError] = ConfigError) -> None:
    """Raise ``error`` naming the keys of ``given`` not in ``known`` (``what``: e.g. "training setting(s)")."""
    known = sorted(set(known))
    unknown = sorted(set(given) - set(known))
    if unknown:
        raise error(f"unknown {what} {', '.join(unknown)}; known: {', '.join(known)}")


class Interrupted(KeyboardInterrupt):
    """Ctrl-C, SIGTERM or SIGHUP: stop the run, fail the running trial with the signal's name, exit 128 + signal.

    A KeyboardInterrupt, so code that cleans up on Ctrl-C cleans up on SIGTERM too.
    """

    def __init__(self, signum: int = 2, detail: str = "") -> None:
        import signal

        self.signum = signum
        self.detail = detail  # e.g. "the run's parent process died": why the signal came
        self.signame = signal.Signals(signum).name if signum in signal.Signals._value2member_map_ else str(signum)
        #: Process exit status: 128 + the signal number (130 Ctrl-C, 143 SIGTERM, 129 SIGHUP).
        self.exit_code = 128 + signum
        super().__init__(self.reason)

    @property
    def reason(self) -> str:
        """The fail reason recorded on an interrupted trial."""
        if self.detail:
            return f"interrupted ({self.signame}: {self.detail})"
        return "interrupted by Ctrl-C (SIGINT)" if self.signame == "SIGINT" else f"interrupted ({self.signame})"
