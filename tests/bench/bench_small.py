"""Issue 27 item 2: how fast small models train here, against the reference, at 1 and 2 threads, and levers.

    python tests/bench/bench_small.py [--data PATH] [--images 6016] [--reps 3] [--json reports/bench/small_models.json]

Models: the reference (1,199,882 parameters), the example's 93,370-parameter winner (#228: conv 16 > 64 > 96,
same padding, batch norm, pooling after every conv, dense 32, shifts 5%, Adam), and a 7,562-parameter model of
the kind studies/tiny.toml searches (docs/frontier.md's example: seven 3x3 convs 8-12 wide, a 1x1 transition
after the one pooling, batch norm, GAP, rotation up to 7 degrees).

For each model and lever, at 1 and at 2 TensorFlow threads (one child process per thread count: TensorFlow fixes
its threads at start-up), alternating the variants within each repetition: the seconds of one training epoch of
``--images`` images at batch 128 (the second epoch, after tracing; validation cut to 256 images so the epoch is
training), images per second, and GFLOP/s (3 x the forward FLOPs per image, the usual forward + backward
estimate) against the CPU's FP32 peak. Levers: ``steps_per_execution`` 1, 8 (the default) and 32; the frontier
model without its augmentation and without batch norm (what each costs). The medians and the ratios to the
default are printed and written as JSON. A benchmark, not a test: run it on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "bench"))
DEFAULT_DATA = os.environ.get("CNNSEARCH_DATA", str(ROOT.parent / "shared" / "data" / "mnist.npz"))


def models() -> dict[str, Any]:
    """The three models, as cnnsearch specs and the training settings they use."""
    from cnnsearch.model.arch import ArchSpec
    from cnnsearch.model.train import TrainConfig

    adam = TrainConfig(optimizer="adam", learning_rate=0.00183, optimizer_args={})
    return {
        "reference": (ArchSpec(), TrainConfig()),
        "example winner": (ArchSpec(conv_filters=(16, 64, 96), kernel_sizes=(3, 3, 3), padding="same", pool_every=1,
                                    dropout_conv=0.1, dense_units=32, dropout_dense=0.0, batch_norm=True,
                                    augment=0.05), adam),
        "frontier 8k": (ArchSpec(conv_filters=(8, 12, 12, 12, 12, 12, 12), kernel_sizes=(3,) * 7, pool_layers=(2,),
                                 transition=8, batch_norm=True, head="gap", dense_units=0, rotation=7.0,
                                 dropout_conv=0.0), replace(adam, learning_rate=0.01)),
    }


def variants() -> list[tuple[str, str, dict[str, Any], dict[str, Any]]]:
    """(model, lever, spec changes, training changes): the default first, then each lever."""
    out = []
    for name in models():
        for spe in (8, 1, 32):
            out.append((name, f"steps_per_execution {spe}", {}, {"steps_per_execution": spe}))
    out.append(("frontier 8k", "no augmentation", {"rotation": 0.0}, {}))
    out.append(("frontier 8k", "no augmentation, no batch norm", {"rotation": 0.0, "batch_norm": False}, {}))
    return out


def child(threads: int, data: str, images: int, reps: int) -> dict[str, list[float]]:
    """In a fresh process at ``threads`` threads: every variant's epoch seconds, ``reps`` alternating rounds."""
    from cnnsearch.ground import data as data_mod
    from cnnsearch.model.train import configure_threads, fit

    configure_threads(intra_op=threads, inter_op=1)
    sp = data_mod.split(data_mod.load(data, download=False), train_limit=images)
    sp = replace(sp, x_val=sp.x_val[:256], y_val=sp.y_val[:256])
    specs = models()
    seconds: dict[str, list[float]] = {}
    for _ in range(reps):
        for name, lever, arch, train in variants():
            spec, config = specs[name]
            r = fit(replace(spec, **arch), sp, replace(config, epochs=2, train_limit=images, **train))
            seconds.setdefault(f"{name} | {lever}", []).append(r.epoch_seconds[-1])
    return seconds


def run(data: str, images: int, reps: int) -> dict[str, Any]:
    """Both thread counts, each in its own process; the figures as one JSON-ready dict."""
    from cnnsearch.model.arch import summarize
    from run_all import cpu_peak_gflops

    peak, how = cpu_peak_gflops()
    flops = {}
    for name, lever, arch, _ in variants():
        flops[f"{name} | {lever}"] = summarize(replace(models()[name][0], **arch)).flops
    rows: dict[str, Any] = {}
    for threads in (1, 2):
        out = subprocess.run([sys.executable, __file__, "--child", str(threads), "--data", data, "--images",
                              str(images), "--reps", str(reps)], capture_output=True, text=True, check=True)
        seconds = json.loads(out.stdout.strip().splitlines()[-1])
        for key, values in seconds.items():
            s = statistics.median(values)
            rows[f"{key} | {threads} thread{'s' * (threads > 1)}"] = {
                "epoch_seconds": values, "median_s": s, "images_per_s": images / s,
                "gflops": 3 * flops[key] * images / s / 1e9, "forward_flops": flops[key]}
    for key, row in rows.items():
        model, _lever, threads = key.split(" | ")
        default = rows[f"{model} | steps_per_execution 8 | {threads}"]["median_s"]
        row["time_vs_default"] = row["median_s"] / default
        row["share_of_peak"] = row["gflops"] / peak
    return {"what": __doc__.splitlines()[0], "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "command": " ".join(["python", "tests/bench/bench_small.py", *sys.argv[1:]]), "images": images,
            "reps": reps, "peak_gflops": peak, "peak_how": how, "machine": _machine(), "rows": rows}


def _machine() -> dict[str, Any]:
    from bench_report import machine

    return machine()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=DEFAULT_DATA)
    ap.add_argument("--images", type=int, default=6016, help="training images per epoch (47 batches of 128)")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--json", default=None, help="also write the figures to this file")
    ap.add_argument("--child", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.data, args.images, args.reps)))
        return
    res = run(args.data, args.images, args.reps)
    print(f"{'model | lever | threads':<66} {'s/epoch':>8} {'img/s':>7} {'GFLOP/s':>8} {'peak':>6} {'vs spe 8':>8}")
    for key, r in res["rows"].items():
        print(f"{key:<66} {r['median_s']:8.2f} {r['images_per_s']:7.0f} {r['gflops']:8.1f}"
              f" {r['share_of_peak']:6.1%} {r['time_vs_default']:8.2f}")
    print(f"peak {res['peak_gflops']:.0f} GFLOP/s: {res['peak_how']}; load {os.getloadavg()}")
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=1))
        print("wrote", args.json)


if __name__ == "__main__":
    main()
