"""Independent runs on both cores (issue 27): a pool of one-thread processes trains what a sequential loop would."""

from __future__ import annotations

import numpy as np
import pytest

from cnnsearch.ground import data as data_mod
from cnnsearch.ground.errors import ConfigError
from cnnsearch.model import pool
from cnnsearch.model.arch import ArchSpec
from cnnsearch.model.train import TrainConfig

SPEC = ArchSpec(conv_filters=(4, 8), kernel_sizes=(3, 3), dense_units=8)


def _splits(tiny_npz):  # type: ignore[no-untyped-def]
    return data_mod.split(data_mod.load(str(tiny_npz)))


def _jobs() -> list[pool.Job]:
    return [pool.Job(f"seed {s}", SPEC, TrainConfig(epochs=2, batch_size=32, seed=s)) for s in (0, 1, 2)]


def test_two_processes_train_the_same_runs_as_one_loop(tiny_npz) -> None:  # type: ignore[no-untyped-def]
    splits = _splits(tiny_npz)
    alone = {d.job.key: d for d in pool.run(_jobs(), splits, workers=1)}
    both = {d.job.key: d for d in pool.run(_jobs(), splits, workers=2, keep_weights=True)}
    assert set(both) == set(alone) == {"seed 0", "seed 1", "seed 2"}
    for key, d in both.items():
        assert d.result.model is None and d.weights is not None and len(d.weights) > 0
        # One thread against this process's threads: the same history to float rounding (documented 1e-4).
        np.testing.assert_allclose(d.result.history["loss"], alone[key].result.history["loss"], rtol=1e-4)
        assert d.result.test_predictions is not None
        assert (d.result.test_predictions == alone[key].result.test_predictions).mean() > 0.95
    # different seeds really are different runs (so the comparison above could fail)
    assert alone["seed 0"].result.history["loss"] != alone["seed 1"].result.history["loss"]


def test_closing_early_stops_the_children(tiny_npz) -> None:  # type: ignore[no-untyped-def]
    import multiprocessing

    gen = pool.run(_jobs(), _splits(tiny_npz), workers=2)
    first = next(gen)
    assert first.job.key.startswith("seed")
    gen.close()  # what an interrupt in the caller does
    assert [p for p in multiprocessing.active_children() if p.is_alive()] == []


def test_pool_size_follows_cores_runs_and_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(pool.POOL_ENV, raising=False)
    assert pool.pool_size(1, cores=2) == 1
    assert pool.pool_size(5, cores=1) == 1
    monkeypatch.setenv(pool.POOL_ENV, "1")
    assert pool.pool_size(5, cores=2) == 1
    for bad in ("two", "0", "-3"):
        monkeypatch.setenv(pool.POOL_ENV, bad)
        with pytest.raises(ConfigError, match=pool.POOL_ENV):
            pool.pool_size(5)
