"""Your own data, your own model, from Python: a search, its confirmation and its report.

Run it as it is (a few minutes on a laptop CPU) or at test scale, as the suite does:

    python examples/own_data.py --storage sqlite:///my.db             # 12 trials of 3 epochs
    python examples/own_data.py --storage sqlite:////tmp/t.db --tiny  # 2 trials of 1 epoch (the suite)

The data are made up here (32x32 colour images of 4 classes: a coloured bar whose position is the
class) so the example needs no download; pass your own arrays, a tf.data dataset, or a path instead.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np

import cnnsearch

# A space of your own: trial 0 is the reference architecture trained on your data ([baseline] model =
# "reference" is the default); a space need not hold the reference's values with another baseline.
SPACE = """
[study]
seed = 0
pruner = "median"
[training]
epochs = {epochs}
batch_size = 32
[space]
conv1_filters = [8, 16, 32]
conv2_filters = [16, 64]
conv1_kernel = [3, 5]
dropout_dense = {{ low = 0.0, high = 0.5, step = 0.25 }}
"""


def make_data(n_train: int, n_test: int, side: int = 32, seed: int = 0) -> dict[str, np.ndarray]:
    """Colour images, (N, 32, 32, 3) uint8: class k is a bar in band k, in a colour of its own."""
    rng = np.random.default_rng(seed)
    colours = np.array([[255, 40, 40], [40, 255, 40], [40, 40, 255], [255, 255, 40]], np.uint8)

    def images(n: int) -> tuple[np.ndarray, np.ndarray]:
        y = rng.integers(0, 4, size=n)
        x = rng.integers(0, 80, size=(n, side, side, 3)).astype(np.uint8)
        for i, k in enumerate(y):
            row = k * side // 4 + side // 8
            x[i, row - 2:row + 2, 2:-2] = colours[k]
        return x, y

    (x_train, y_train), (x_test, y_test) = images(n_train), images(n_test)
    return {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test,
            "class_names": ["top", "upper", "lower", "bottom"]}


def build(trial):  # type: ignore[no-untyped-def]
    """Your own model, KerasTuner-style: the space's point is in trial.params; suggest more if you like."""
    import keras

    width = trial.suggest_categorical("dense_width", [32, 64])
    return keras.Sequential([
        keras.Input((32, 32, 3)),
        keras.layers.Conv2D(trial.params["conv1_filters"], trial.params["conv1_kernel"], activation="relu"),
        keras.layers.MaxPooling2D(2),
        keras.layers.Conv2D(trial.params["conv2_filters"], 3, activation="relu"),
        keras.layers.GlobalAveragePooling2D(),
        keras.layers.Dense(width, activation="relu"),
        keras.layers.Dropout(trial.params["dropout_dense"]),
        keras.layers.Dense(4, activation="softmax"),
    ])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--storage", default=None, help="Optuna storage URL (default: $CNNSEARCH_STORAGE, ...)")
    ap.add_argument("--tiny", action="store_true", help="test scale: 2 trials of 1 epoch on 160 images")
    ap.add_argument("--out", default=None, help="folder for the reports (default: a temporary folder)")
    args = ap.parse_args()
    trials, epochs, n = (2, 1, 160) if args.tiny else (12, 3, 2000)
    out = Path(args.out or tempfile.mkdtemp(prefix="cnnsearch-example-"))
    space = out / "space.toml"
    space.write_text(SPACE.format(epochs=epochs))
    arrays = make_data(n, n // 4)

    # 1. The space's own model family on your arrays; validation: a seeded, stratified 10% by default.
    study = cnnsearch.run_study("rgb-space", data=arrays, space=space, trials=trials, storage=args.storage)
    print("space study: best trial", study.best_trial.number, "values", study.best_trial.values)
    summary = cnnsearch.confirm("rgb-space", top=1, seeds=2, epochs=epochs, train_limit=0, storage=args.storage)
    print("confirmed at", summary["fidelity"])
    print("report:", cnnsearch.write_report("rgb-space", out / "rgb-space.html", storage=args.storage))

    # 2. Your own build(trial), ranked by validation loss, with an extra Keras callback; tf.data works too.
    import keras
    import tensorflow as tf

    train = tf.data.Dataset.from_tensor_slices((arrays["x_train"], arrays["y_train"])).batch(64)
    test = tf.data.Dataset.from_tensor_slices((arrays["x_test"], arrays["y_test"])).batch(64)
    study = cnnsearch.run_study("rgb-own-model", data=(train, test), space=space, trials=trials, build=build,
                             metric="val_loss", callbacks=[keras.callbacks.TerminateOnNaN()], storage=args.storage)
    print("own-model study: best trial", study.best_trial.number, "val_loss", study.best_trial.value)
    # Confirmed with the same build: each top trial's choices replayed (optuna's FixedTrial), over paired seeds.
    summary = cnnsearch.confirm("rgb-own-model", build=build, top=1, seeds=2, epochs=epochs, train_limit=0,
                                storage=args.storage)
    print("own-model confirmed:", [(c["config"], c["mean_test_accuracy"]) for c in summary["configs"]])
    print("report:", cnnsearch.write_report("rgb-own-model", out / "rgb-own-model.html", storage=args.storage))

    # 3. It is an ordinary Optuna study: optuna.load_study works on cnnsearch's storage.
    same = cnnsearch.load_study("rgb-own-model", storage=args.storage)
    print("trials:", len(same.trials), "user attributes of the best:", sorted(same.best_trial.user_attrs)[:4])


if __name__ == "__main__":
    main()
