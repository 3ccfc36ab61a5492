from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from cnnsearch.model import im2col


def _keras_layer(layer_cls: str, x: np.ndarray, **kwargs) -> np.ndarray:  # type: ignore[no-untyped-def]
    from cnnsearch.ground._tf import keras

    K = keras()
    layer = getattr(K.layers, layer_cls)(**kwargs)
    return np.asarray(layer(x))


@pytest.mark.parametrize("k, stride, padding, cin, cout, size", [
    (3, 1, "valid", 1, 32, 28), (3, 1, "valid", 32, 64, 26), (5, 2, "valid", 3, 8, 13), (5, 2, "same", 3, 8, 13),
    (3, 2, "same", 4, 6, 12), (1, 1, "same", 5, 7, 9), (7, 3, "same", 2, 4, 11), (4, 1, "same", 2, 3, 10),
])
def test_conv2d_equals_keras(k: int, stride: int, padding: str, cin: int, cout: int, size: int) -> None:
    rng = np.random.default_rng(k * 100 + stride)
    x = rng.standard_normal((5, size, size, cin)).astype(np.float32)
    from cnnsearch.ground._tf import keras

    layer = keras().layers.Conv2D(cout, k, strides=stride, padding=padding, bias_initializer="random_normal")
    expected = np.asarray(layer(x))
    w, b = (np.asarray(v) for v in layer.get_weights())
    got = im2col.conv2d(x, w, b, stride, padding, budget=4096)  # tiny budget: one image per chunk
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("kind", ["max", "avg"])
@pytest.mark.parametrize("pool, stride, padding, size", [
    (2, None, "valid", 24), (3, None, "valid", 26), (2, 1, "valid", 7), (3, 2, "same", 10), (2, None, "same", 7),
    (3, None, "same", 8),
])
def test_pooling_equals_keras(kind: str, pool: int, stride: int | None, padding: str, size: int) -> None:
    rng = np.random.default_rng(pool)
    x = rng.standard_normal((4, size, size, 3)).astype(np.float32)
    cls = "MaxPooling2D" if kind == "max" else "AveragePooling2D"
    expected = _keras_layer(cls, x, pool_size=pool, strides=stride, padding=padding)
    fn = im2col.max_pool2d if kind == "max" else im2col.avg_pool2d
    got = fn(x, pool, stride, padding, budget=2048)
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_no_tensorflow_import() -> None:
    code = "import sys, cnnsearch.model.im2col; assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_extra_memory_stays_under_budget() -> None:
    # 3,000 images through the second baseline layer: unrolled whole, the patch matrix would be
    # 3,000 x 576 x 288 float32 = 1.99 GB. With a 64 MiB budget the extra peak must stay under
    # budget + 300 MB (input and output, held by the caller, are allocated and touched first).
    code = textwrap.dedent("""
        import numpy as np
        from cnnsearch.model import im2col

        def hwm():
            for line in open("/proc/self/status"):
                if line.startswith("VmHWM"):
                    return int(line.split()[1]) * 1024

        x = np.random.default_rng(0).random((3000, 26, 26, 32), dtype=np.float32)
        w = np.random.default_rng(1).random((3, 3, 32, 64), dtype=np.float32)
        out = np.ones((3000, 24, 24, 64), dtype=np.float32)
        open("/proc/self/clear_refs", "w").write("5")  # reset the peak to the current RSS
        before = hwm()
        im2col.conv2d(x, w, None, 1, "valid", budget=64 * 2**20, out=out)
        print((hwm() - before) / 2**20)
    """)
    extra_mb = float(subprocess.run([sys.executable, "-c", code], check=True, capture_output=True,
                                    text=True).stdout.strip())
    print(f"extra peak RSS: {extra_mb:.0f} MB")
    assert extra_mb < 64 + 300


@pytest.mark.mnist
def test_equals_trained_baseline_layers_on_all_test_images(mnist_path: Path) -> None:
    from cnnsearch.ground import data
    from cnnsearch.model.arch import ArchSpec
    from cnnsearch.model.train import TrainConfig, fit
    from cnnsearch.model import forward

    ds = data.load(mnist_path)
    result = fit(ArchSpec(), data.split(ds, train_limit=3000), TrainConfig(epochs=1, train_limit=3000))
    model = result.model
    w1, b1 = model.get_layer("conv1").get_weights()
    w2, b2 = model.get_layer("conv2").get_weights()
    worst = 0.0
    for i in range(0, len(ds.x_test), 2500):
        x = ds.x_test[i:i + 2500]
        from cnnsearch.ground._tf import keras

        probe = keras().Model(model.inputs, [model.get_layer("conv1").output, model.get_layer("conv2").output])
        k1, k2 = probe.predict(x, verbose=0)
        keras_maps = {"conv1": k1, "conv2": k2}
        a1 = im2col.relu(im2col.conv2d(x, w1, b1))
        a2 = im2col.relu(im2col.conv2d(a1, w2, b2))
        ours = forward.feature_maps(forward.conv_weights(model), ArchSpec(), x)
        np.testing.assert_array_equal(ours["conv2"], a2)
        worst = max(worst, float(np.abs(a1 - keras_maps["conv1"]).max()), float(np.abs(a2 - keras_maps["conv2"]).max()))
    assert worst < 1e-4, worst
