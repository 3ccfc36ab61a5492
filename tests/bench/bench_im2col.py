"""Benchmark: the second baseline conv layer over the 10,000 MNIST test images, three ways.

1. cnnsearch.model.im2col.conv2d (chunked, 256 MiB budget),
2. Keras Conv2D (TensorFlow, oneDNN),
3. a naive loop over output pixels (on a subset; per-image time extrapolated).

Each runs in its own process so its peak RSS is its own; the figure reported is the
peak *extra* memory over the input and output arrays the caller holds (the input,
10,000 x 26 x 26 x 32 float32, is 865 MB; the output 1.47 GB).
Run: python tests/bench/bench_im2col.py [--data PATH] [--images N]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import textwrap
import time

_WORKER = textwrap.dedent("""
    import json, sys, time
    import numpy as np

    def hwm():
        for line in open("/proc/self/status"):
            if line.startswith("VmHWM"):
                return int(line.split()[1]) * 1024

    mode, n, data = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    from cnnsearch.ground import data as data_mod
    from cnnsearch.model import im2col
    x_test = data_mod.load(data).x_test[:n]
    rng = np.random.default_rng(0)
    w1 = (rng.standard_normal((3, 3, 1, 32)) * 0.3).astype(np.float32); b1 = np.zeros(32, np.float32)
    w2 = (rng.standard_normal((3, 3, 32, 64)) * 0.1).astype(np.float32); b2 = np.zeros(64, np.float32)
    x = im2col.relu(im2col.conv2d(x_test, w1, b1))           # the second layer's input (N, 26, 26, 32)
    if mode == "keras":
        from cnnsearch.ground._tf import keras
        K = keras()
        layer = K.layers.Conv2D(64, 3); layer.build(x.shape); layer.set_weights([w2, b2])
        layer(x[:8])                                          # warm-up: graph and oneDNN kernels
    out = np.ones((len(x), 24, 24, 64), np.float32)           # the caller holds the result
    del x_test
    open("/proc/self/clear_refs", "w").write("5")
    before = hwm()
    t = time.perf_counter()
    if mode == "im2col":
        im2col.conv2d(x, w2, b2, budget=256 * 2**20, out=out)
    elif mode == "keras":
        for i in range(0, len(x), 1000):                      # Keras's usual batched inference
            out[i:i + 1000] = np.asarray(layer(x[i:i + 1000]))
    else:
        wm = w2.reshape(-1, 64)
        for i in range(len(x)):
            for r in range(24):
                for c in range(24):
                    out[i, r, c] = x[i, r:r + 3, c:c + 3, :].reshape(-1) @ wm + b2
    seconds = time.perf_counter() - t
    print(json.dumps({"mode": mode, "images": n, "seconds": seconds, "extra_peak_mb": (hwm() - before) / 2**20}))
""")


def run(mode: str, n: int, data: str) -> dict:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    res = subprocess.run([sys.executable, "-c", _WORKER, mode, str(n), data], capture_output=True, text=True, env=env,
                         check=True)
    return json.loads(res.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default=os.environ.get("CNNSEARCH_DATA", "../shared/data/mnist.npz"))
    p.add_argument("--images", type=int, default=10_000)
    p.add_argument("--naive-images", type=int, default=20)
    a = p.parse_args()
    rows = [run("im2col", a.images, a.data), run("keras", a.images, a.data), run("naive", a.naive_images, a.data)]
    print(f"second baseline layer (24x24x64 outputs, 3x3x32 kernels), {a.images:,} test images")
    print(f"{'method':<10} {'images':>7} {'seconds':>9} {'s / 10k images':>15} {'extra peak MB':>14}")
    for r in rows:
        per10k = r["seconds"] / r["images"] * 10_000
        print(f"{r['mode']:<10} {r['images']:>7,} {r['seconds']:>9.2f} {per10k:>15.1f} {r['extra_peak_mb']:>14.0f}")
    print(f"unrolled whole, the patch matrix would be {a.images * 576 * 288 * 4 / 2**30:.1f} GiB")


if __name__ == "__main__":
    t0 = time.time()
    main()
    print(f"(benchmark took {time.time() - t0:.0f} s)")
