"""Does a cheap search fidelity rank small CNNs as full fidelity (20 epochs, all 54,000 images) does?

    python tests/bench/fidelity_check.py [--data PATH] [--full A,B,C] [--json out.json]
    python tests/bench/fidelity_check.py --set tiny --full A,B,C,D,E   # studies/tiny.toml's check (issue 21)

Trains each candidate at the search fidelities (validation accuracy) and the
named ones at full fidelity (test accuracy), prints one line per run as it
goes, then the rank correlation (scipy.stats.spearmanr) per search fidelity.
A benchmark, not a test: about 10 minutes on a 2-core CPU with the defaults.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from typing import Any

from cnnsearch.ground import data as data_mod
from cnnsearch.model.arch import ArchSpec, summarize
from cnnsearch.model.train import TrainConfig, fit

# keras.io's MNIST convnet as close as ArchSpec says it (conv32-pool-conv64-pool, no hidden dense layer;
# dropout 0.25 after each pooling where keras.io puts 0.5 before the output), and variants of it.
KERAS_IO = ArchSpec(conv_filters=(32, 64), kernel_sizes=(3, 3), pool_every=1, dropout_conv=0.25, dense_units=0)
ADAM = {"optimizer": "adam", "learning_rate": 1e-3, "optimizer_args": {}}
CANDIDATES: dict[str, tuple[ArchSpec, dict[str, Any]]] = {
    "A keras.io-like": (KERAS_IO, {}),
    "B +batch_norm +adam": (replace(KERAS_IO, batch_norm=True), ADAM),
    "C +augment 0.1": (replace(KERAS_IO, augment=0.1), {}),
    "D conv8-16": (replace(KERAS_IO, conv_filters=(8, 16)), {}),
    "E gap + dense 64": (replace(KERAS_IO, head="gap", dense_units=64, dropout_dense=0.25), {}),
}
SEARCH_FIDELITIES = [(3, 12_000), (6, 18_000)]

# studies/tiny.toml (issue 21): under 8,000 parameters, in the hand-built style, with and without the parts whose
# value a short run may misjudge (schedules, regularizers that pay off late). Adam's learning rate is the peak.
_DEEP = ArchSpec(conv_filters=(8, 12, 12, 12, 12, 12, 12), kernel_sizes=(3,) * 7, pool_layers=(2,), transition=8,
                 batch_norm=True, head="gap", dense_units=0, dropout_conv=0.05)
_ONECYCLE = {"optimizer": "adam", "learning_rate": 1e-2, "optimizer_args": {}, "schedule": "onecycle",
             "schedule_args": {"pct_start": 0.3}}
TINY: dict[str, tuple[ArchSpec, dict[str, Any]]] = {
    "A deep7 gap +onecycle": (_DEEP, _ONECYCLE),
    "B deep7 gap, adam constant": (_DEEP, {**ADAM, "learning_rate": 3e-3}),
    "C deep7 gap +onecycle +rotation 7 +label smoothing": (replace(_DEEP, rotation=7.0),
                                                           {**_ONECYCLE, "label_smoothing": 0.1}),
    "D deep7 gap +step": (_DEEP, {**ADAM, "learning_rate": 1e-2, "schedule": "step",
                                  "schedule_args": {"every": 0.33, "factor": 0.1}}),
    "E conv8-16 pool-every gap, adadelta": (ArchSpec(conv_filters=(8, 16, 16), kernel_sizes=(3, 3, 3), pool_every=1,
                                                     head="gap", dense_units=0), {}),
}
TINY_FIDELITIES = [(6, 18_000), (8, 18_000)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=None)
    ap.add_argument("--full", default="B,C,A", help="candidate letters to train at full fidelity, in order")
    ap.add_argument("--json", default=None)
    ap.add_argument("--set", default="small", choices=["small", "tiny"], help="candidates of small.toml or tiny.toml")
    args = ap.parse_args()
    if args.set == "tiny":
        CANDIDATES.clear()
        CANDIDATES.update(TINY)
        SEARCH_FIDELITIES[:] = TINY_FIDELITIES
    ds = data_mod.load(args.data)
    rows: list[dict[str, Any]] = []

    def run(name: str, epochs: int, limit: int) -> None:
        spec, opt = CANDIDATES[name]
        s = summarize(spec)
        r = fit(spec, data_mod.split(ds, train_limit=limit), TrainConfig(epochs=epochs, train_limit=limit, **opt))
        rows.append({"name": name, "epochs": epochs, "train_limit": limit, "params": s.params, "flops": s.flops,
                     "val_accuracy": r.val_accuracy, "test_accuracy": r.test_accuracy, "seconds": round(r.seconds, 1),
                     "epoch_seconds": round(sum(r.epoch_seconds) / len(r.epoch_seconds), 2)})
        print(json.dumps(rows[-1]), flush=True)
        if args.json:
            with open(args.json, "w") as fh:
                json.dump(rows, fh, indent=1)

    t0 = time.perf_counter()
    for epochs, limit in SEARCH_FIDELITIES:
        for name in CANDIDATES:
            run(name, epochs, limit)
    wanted = [n for letter in args.full.split(",") for n in CANDIDATES if n.startswith(letter.strip() + " ")]
    for name in wanted:
        run(name, 20, 0)
    from scipy.stats import spearmanr

    full = {r["name"]: r["test_accuracy"] for r in rows if r["train_limit"] == 0}
    for epochs, limit in SEARCH_FIDELITIES:
        search = {r["name"]: r["val_accuracy"] for r in rows if (r["epochs"], r["train_limit"]) == (epochs, limit)}
        common = [n for n in full if n in search]
        if len(common) >= 3:
            rho = spearmanr([search[n] for n in common], [full[n] for n in common]).statistic
            print(f"{epochs} epochs x {limit} images vs full fidelity over {len(common)}: Spearman {rho:+.2f}")
    print(f"total {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
