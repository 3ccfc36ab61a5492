"""What a confirmation keeps on its study: runs (with their test predictions), test labels, and families.

- A *run*: system attribute ``confirm:<Fidelity.key>:<config>:seed<s>``, a dict with the
  run's fields and ``predictions``, its predicted class per test image as base64 bytes
  (one byte an image: about 13 KB for MNIST's 10,000), enough to recompute any paired
  statistic later without retraining.
- ``confirm_labels``: the test labels the runs were scored on (same encoding).
- A *family*: ``confirmation:<Fidelity.key>:<id>``, the candidates one confirmation
  declared, its first seed, its declared maximum seeds and each look (seeds judged,
  level spent, verdicts given). The Holm family of a verdict is that declared set, so
  ``confirm --show`` and the report reproduce the run's verdicts whatever else is stored.

Study *system* attributes: in the same storage, but out of optuna-dashboard's user-attribute
table, where 10,000 predictions per run would bury everything else.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any

import numpy as np

from cnnsearch.model.arch import REFERENCE as REFERENCE_RUN
from cnnsearch.search import study as study_mod

#: Study system-attribute prefix of one confirmation run: confirm:<Fidelity.key>:<config>:seed<s>.
PREFIX = "confirm:"
#: Prefix of one confirmation's declared family and its looks: confirmation:<Fidelity.key>:<id>.
FAMILY_PREFIX = "confirmation:"
#: Where the test labels of every confirmation run of a study are kept (one copy).
LABELS_KEY = "confirm_labels"


@dataclass(frozen=True, order=True)
class Fidelity:
    """How long and on how much data a confirmation trains: runs at different fidelities never mix."""

    epochs: int  # full passes over the training subset
    train_limit: int = 0  # first N training images after the validation split; 0 = all

    @property
    def key(self) -> str:
        """Storage key part, e.g. ``e20-n0`` (the format of the first release, so old studies read on)."""
        return f"e{self.epochs}-n{self.train_limit}"

    @classmethod
    def of(cls, record: dict[str, Any]) -> "Fidelity":
        """The fidelity of a stored run or family, read from its fields (never parsed back out of a key)."""
        return cls(int(record["epochs"]), int(record["train_limit"]))

    @property
    def at_reference(self) -> bool:
        """True at the reference's fidelity, the only one where 99.15% is a fair comparison."""
        return self == REFERENCE_FIDELITY

    def describe(self) -> str:
        """``3 epochs on 12,000 training images`` / ``20 epochs on all training images``."""
        images = "all training images" if self.train_limit == 0 else f"{self.train_limit:,} training images"
        return f"{self.epochs} epoch{'s' if self.epochs != 1 else ''} on {images}"

    def to_dict(self) -> dict[str, int]:
        """JSON-ready: ``{"epochs": 20, "train_limit": 0}``."""
        return {"epochs": self.epochs, "train_limit": self.train_limit}


#: The reference's fidelity: its epochs (20) on all 54,000 training images.
REFERENCE_FIDELITY = Fidelity(REFERENCE_RUN.epochs, 0)


def put(study: Any, key: str, value: Any) -> None:
    """Store one confirmation value on ``study`` (a system attribute; see the module docstring)."""
    study_mod.set_system_attr(study, key, value)


def stored(study: Any) -> dict[str, Any]:
    """Everything confirmation stored on a study (runs, families and test labels)."""
    from cnnsearch.evidence.sound import sound  # a run record that cannot be read is skipped with one warning

    from cnnsearch.ground import provenance

    attrs = study_mod.system_attrs(study)
    # Issue 23: the published 99.15% is MNIST's only; on other data it is never mentioned.
    mnist = {"mnist": provenance.stored(study) is None or provenance.is_mnist(study)}
    return mnist | sound({k: v for k, v in attrs.items() if k.startswith((PREFIX, FAMILY_PREFIX)) or k == LABELS_KEY}, PREFIX)


def encode(pred: np.ndarray | None) -> str:
    """Class predictions as compact text (one byte per image, base64)."""
    if pred is None:
        return ""
    return base64.b64encode(np.asarray(pred, dtype=np.uint8).tobytes()).decode()


def decode(text: str) -> np.ndarray:
    """Inverse of :func:`encode`."""
    return np.frombuffer(base64.b64decode(text), dtype=np.uint8).astype(np.int64)


def run_key(fid: Fidelity, config: str, seed: int) -> str:
    """The attribute key of one run."""
    return f"{PREFIX}{fid.key}:{config}:seed{seed}"


def runs(attrs: dict[str, Any], fidelity: Fidelity | None = None) -> list[dict[str, Any]]:
    """Confirmation runs among ``attrs`` (see :func:`stored`), optionally of one fidelity."""
    out = [v for k, v in attrs.items() if k.startswith(PREFIX) and isinstance(v, dict)]
    return out if fidelity is None else [r for r in out if Fidelity.of(r) == fidelity]


def fidelities(attrs: dict[str, Any]) -> dict[Fidelity, int]:
    """Runs stored per fidelity."""
    out: dict[Fidelity, int] = {}
    for r in runs(attrs):
        out[Fidelity.of(r)] = out.get(Fidelity.of(r), 0) + 1
    return out


def families(attrs: dict[str, Any], fidelity: Fidelity | None = None) -> list[dict[str, Any]]:
    """Declared confirmations among ``attrs``, oldest first, optionally of one fidelity."""
    out = [v for k, v in attrs.items() if k.startswith(FAMILY_PREFIX) and isinstance(v, dict)]
    if fidelity is not None:
        out = [f for f in out if Fidelity.of(f) == fidelity]
    return sorted(out, key=lambda f: int(f["id"]))


def family_key(fid: Fidelity, ident: int) -> str:
    """The attribute key of one declared confirmation."""
    return f"{FAMILY_PREFIX}{fid.key}:{ident}"


def new_family(attrs: dict[str, Any], fid: Fidelity, candidates: list[str], *, first_seed: int, max_seeds: int,
               alpha: float) -> dict[str, Any]:
    """A fresh declared confirmation (not stored yet): its candidates, seeds and error budget."""
    from cnnsearch.ground.version import __version__

    ident = 1 + max((int(f["id"]) for f in families(attrs)), default=0)
    return {"id": ident, **fid.to_dict(), "candidates": list(candidates), "first_seed": first_seed,
            "max_seeds": max_seeds, "alpha": alpha, "spending": "O'Brien-Fleming (Lan-DeMets), union bound over looks",
            "looks": [], "version": __version__}
