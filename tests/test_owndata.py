"""Issue 23: your own data (RGB, float, image folders, x_val), validation you can trust, no 99.15% off MNIST,
the baseline as a choice, unbuildable points infeasible everywhere, all-or-nothing `study run --space`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from cnnsearch.cli import main
from cnnsearch.ground import data, holdout
from cnnsearch.ground.errors import ConfigError, DataError
from cnnsearch.search import points
from cnnsearch.search import space as space_mod
from conftest import TINY_SPACE, make_tiny


def _rgb(n: int = 200, side: int = 10, sort: bool = False, seed: int = 0) -> dict[str, np.ndarray]:
    """Colour images of 4 classes; ``sort``: the training labels in order (a label-sorted file)."""
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 255, (n, side, side, 3)).astype(np.uint8)
    y = rng.integers(0, 4, n).astype(np.uint8)
    if sort:
        y = np.sort(y)
    return {"x_train": x, "y_train": y, "x_test": x[:40], "y_test": y[:40]}


def _save(tmp_path: Path, name: str, **arrays: np.ndarray) -> Path:
    path = tmp_path / name
    np.savez(path, **arrays)
    return path


def _pngs(root: Path, classes: dict[str, int], side: int = 9, mode: str = "RGB", seed: int = 0) -> None:
    from PIL import Image

    rng = np.random.default_rng(seed)
    for name, n in classes.items():
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            shape = (side, side, 3) if mode == "RGB" else (side, side)
            Image.fromarray(rng.integers(0, 255, shape).astype(np.uint8), mode=mode).save(root / name / f"{i}.png")


# --- 1. data ---------------------------------------------------------------------------------------

def test_rgb_npz_takes_its_shape_from_the_data(tmp_path: Path) -> None:
    ds = data.load(_save(tmp_path, "rgb.npz", **_rgb()))
    assert ds.input_shape == (10, 10, 3) and ds.n_classes == 4 and not ds.mnist


def test_float_images_are_taken_as_scaled_and_refused_out_of_range(tmp_path: Path) -> None:
    a = _rgb()
    a["x_train"] = a["x_train"].astype(np.float32) / 255
    a["x_test"] = a["x_test"].astype(np.float32) / 255
    ds = data.load(_save(tmp_path, "f.npz", **a))
    np.testing.assert_allclose(ds.x_train, a["x_train"])  # not divided by 255 again
    a["x_test"] = a["x_test"] * 255
    with pytest.raises(DataError, match=r"x_test is float with pixels from 0 to 25\d; float images must be scaled"):
        data.load(_save(tmp_path, "g.npz", **a))


def test_image_folder_with_train_and_test(tmp_path: Path) -> None:
    _pngs(tmp_path / "imgs" / "train", {"cat": 12, "dog": 10, "owl": 11})
    _pngs(tmp_path / "imgs" / "test", {"cat": 3, "dog": 3, "owl": 2}, seed=1)
    ds = data.load(tmp_path / "imgs")
    assert ds.x_train.shape == (33, 9, 9, 3) and ds.class_names == ("cat", "dog", "owl")
    assert np.bincount(ds.y_train).tolist() == [12, 10, 11] and np.bincount(ds.y_test).tolist() == [3, 3, 2]
    assert 0.0 <= ds.x_train.min() and ds.x_train.max() <= 1.0
    assert data.fingerprint(tmp_path / "imgs") == data.fingerprint(tmp_path / "imgs")  # stable


def test_image_folder_of_class_folders_only_holds_out_a_test_set(tmp_path: Path) -> None:
    _pngs(tmp_path / "flat", {"a": 20, "b": 20}, mode="L")
    ds = data.load(tmp_path / "flat")
    assert ds.input_shape == (9, 9, 1) and len(ds.x_test) == 4 and sorted(set(ds.y_test.tolist())) == [0, 1]


@pytest.mark.parametrize("make, message", [
    (lambda root: _pngs(root, {"only": 5}), "at least 2 classes; received 1 (only)"),
    (lambda root: (_pngs(root, {"a": 5}), (root / "b").mkdir()), "class folder(s) b hold no images"),
    (lambda root: (_pngs(root, {"a": 5}), _pngs(root, {"b": 5}, side=7)), "expected every image of the same size"),
])
def test_bad_image_folders_are_one_line(tmp_path: Path, make, message: str) -> None:  # type: ignore[no-untyped-def]
    root = tmp_path / "bad"
    root.mkdir()
    make(root)
    with pytest.raises(DataError) as err:
        data.load(root)
    assert message in str(err.value) and "\n" not in str(err.value) and str(root) in str(err.value)


def test_x_val_is_the_validation_set_and_needs_y_val(tmp_path: Path) -> None:
    a = _rgb()
    sp = data.split(data.load(_save(tmp_path, "v.npz", **a, x_val=a["x_train"][:30], y_val=a["y_train"][:30])))
    assert sp.method == "given" and len(sp.x_val) == 30 and len(sp.x_train) == 200
    with pytest.raises(DataError, match="has x_val but no y_val; a validation set needs both"):
        data.load(_save(tmp_path, "w.npz", **a, x_val=a["x_train"][:30]))


def test_labels_must_be_0_to_k_minus_1(tmp_path: Path) -> None:
    a = _rgb()
    a["y_train"] = a["y_train"].astype(np.int64) - 1
    with pytest.raises(DataError, match="y_train must be integer labels 0..K-1"):
        data.load(_save(tmp_path, "neg.npz", **a))


def test_val_data_file(tmp_path: Path) -> None:
    a = _rgb()
    val = _save(tmp_path, "val.npz", x_val=a["x_test"], y_val=a["y_test"])
    sp = data.split(data.load(_save(tmp_path, "t.npz", **a), val_data=val))
    assert sp.method == "given" and len(sp.y_val) == 40


# --- 2. validation you can trust -----------------------------------------------------------------------

def test_label_sorted_file_never_validates_on_one_class(tmp_path: Path) -> None:
    ds = data.load(_save(tmp_path, "sorted.npz", **_rgb(sort=True)))
    sp = data.split(ds, train_limit=40)
    assert sp.method == "stratified" and set(sp.y_val.tolist()) == {0, 1, 2, 3}
    assert set(sp.y_train.tolist()) == {0, 1, 2, 3}  # the first 40 training images are not one class either
    # The old rule (the last 10%) would have validated on one class:
    assert len(set(ds.y_train[-20:].tolist())) == 1


def test_val_fraction_and_warnings(tmp_path: Path) -> None:
    ds = data.load(_save(tmp_path, "r.npz", **_rgb()))
    sp = data.split(ds, val_fraction=0.25)
    assert len(sp.y_val) == 50
    assert any("one image moves validation accuracy by 2.00 pp" in w for w in sp.warnings)
    lopsided = holdout.warnings_for(np.array([0, 1] * 50), np.array([0] * 9 + [1]), 2)
    assert any("class balance differs" in w for w in lopsided)
    assert holdout.warnings_for(np.array([0, 1] * 500), np.array([0, 1] * 1000), 2) == []


def test_mnist_is_recognised_by_its_sha256_and_keeps_its_last_tenth(mnist_path: Path) -> None:
    ds = data.load(mnist_path)
    assert ds.mnist and ds.sha256 == data.MNIST_SHA256
    sp = data.split(ds)
    assert sp.method == "last"
    np.testing.assert_array_equal(sp.y_val, ds.y_train[54000:])


# --- 4. the baseline is a choice; 5. unbuildable points -----------------------------------------------------

OWN = """
[training]
epochs = 1
batch_size = 32
[space]
conv1_filters = [4, 8]
conv2_filters = [8, 16]
{baseline}
"""


def test_space_without_the_reference_values_needs_another_baseline() -> None:
    with pytest.raises(ConfigError, match="reference's value 32"):
        space_mod.parse(OWN.format(baseline=""))
    assert points.baseline_params(space_mod.parse(OWN.format(baseline='[baseline]\nmodel = "none"'))) is None
    own = space_mod.parse(OWN.format(baseline="[baseline]\nconv1_filters = 4\nconv2_filters = 16"))
    assert points.baseline_params(own) == {"conv1_filters": 4, "conv2_filters": 16}
    with pytest.raises(ConfigError, match=r"baseline.conv1_filters: expected a value of the space's"):
        space_mod.parse(OWN.format(baseline="[baseline]\nconv1_filters = 5\nconv2_filters = 16"))


def test_unbuildable_share_for_small_images() -> None:
    sp = space_mod.parse(TINY_SPACE.format(epochs=1, heartbeat=60))
    assert points.unbuildable_share(sp, (28, 28, 1), 10) == 0.0
    assert 0.0 < points.unbuildable_share(sp, (12, 12, 1), 3) < 1.0  # the 13x13 kernel does not fit


def test_unbuildable_points_are_infeasible_not_failures(tmp_path: Path, tiny_npz: Path) -> None:
    """An unconstrained study on 12x12 images: 13x13 kernels cannot be built; they are infeasible, untrained, and
    not counted: --trials 3 gives 3 trained trials besides the baseline."""
    import optuna

    space = tmp_path / "s.toml"
    space.write_text(TINY_SPACE.format(epochs=1, heartbeat=60).replace("[4, 8, 32]", "[4, 32]")
                     .replace('pruner = "none"', 'pruner = "none"\nsampler = "random"'))
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    r = CliRunner().invoke(main, ["study", "run", "u", "--space", str(space), "--trials", "3", "--data",
                                  str(tiny_npz), "--storage", url, "--no-report", "--seed", "3"])
    assert r.exit_code == 0, r.output
    assert r.output.count("of the space's points cannot be built for 12x12 images") == 1  # said once, at the first run
    trials = optuna.load_study(study_name="u", storage=url).trials
    infeasible = [t for t in trials if t.user_attrs.get("infeasible")]
    trained = [t for t in trials if not t.user_attrs.get("infeasible") and not t.user_attrs.get("baseline")]
    assert len(trained) == 3 and all(t.state.name == "COMPLETE" for t in trained)
    assert all(t.params["conv1_kernel"] == 13 and t.constraints == {"buildable": 1.0} and t.user_attrs["seconds"] < 60
               and "history" not in str(t.system_attrs) for t in infeasible)
    assert not any(t.state.name == "FAIL" for t in trials)


# --- 6. all or nothing; 3. no 99.15% off MNIST ---------------------------------------------------------------

def test_study_run_space_leaves_no_study_on_bad_data(tmp_path: Path, tiny_space: Path) -> None:
    import optuna

    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    a = make_tiny()
    a["x_train"] = a["x_train"].astype(np.float32)  # 0-255 floats: refused
    bad = _save(tmp_path, "bad.npz", **a)
    for data_arg in (str(tmp_path / "missing.npz"), str(bad)):
        r = CliRunner().invoke(main, ["study", "run", "s", "--space", str(tiny_space), "--trials", "1", "--data",
                                      data_arg, "--storage", url, "--no-report", "--quiet"])
        assert r.exit_code in (1, 2) and "Traceback" not in r.output, r.output
        assert "s" not in optuna.study.get_all_study_names(storage=url)
    big = tmp_path / "big.toml"  # a fidelity the data cannot give: checked before the study exists too
    big.write_text(tiny_space.read_text().replace("[training]", "[training]\ntrain_limit = 100000"))
    good = _save(tmp_path, "good.npz", **make_tiny())
    r = CliRunner().invoke(main, ["study", "run", "s", "--space", str(big), "--trials", "1", "--data", str(good),
                                  "--storage", url, "--no-report", "--quiet"])
    assert r.exit_code == 2 and "train_limit 100,000: expected at most the 216 training images" in r.output, r.output
    assert optuna.study.get_all_study_names(storage=url) == []


def test_own_data_study_never_mentions_99_15(tmp_path: Path) -> None:
    import optuna

    from cnnsearch.report import page
    from cnnsearch.search import study as study_mod

    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    rgb = _save(tmp_path, "rgb.npz", **_rgb(n=120, side=12))
    space = tmp_path / "s.toml"
    space.write_text(OWN.format(baseline="").replace("[4, 8]", "[4, 32]").replace("[8, 16]", "[8, 64]"))
    r = CliRunner().invoke(main, ["study", "run", "rgb", "--space", str(space), "--trials", "1", "--data", str(rgb),
                                  "--storage", url, "--no-report", "--val-fraction", "0.2"])
    assert r.exit_code == 0, r.output
    assert "cnnsearch: warning: the validation set has 24 images" in r.output  # printed once
    assert r.output.count("the validation set has 24 images") == 1
    h = study_mod.load("rgb", url)
    note = study_mod.note_text(h.study, study_mod.settings_of(h.study))
    assert "99.15" not in note and "the reference architecture trained on your data" in note
    base = [t for t in optuna.load_study(study_name="rgb", storage=url).trials if t.user_attrs.get("baseline")][0]
    assert base.user_attrs["role"].startswith("baseline: the reference architecture trained on your data")
    html = page.build("rgb", url, models=True)
    assert "99.15" not in html and "reference 99" not in html


# --- 7. the Python API; 8. the winner as a trained model --------------------------------------------------------

def _bad_builder_raises(trial):  # type: ignore[no-untyped-def]
    raise ValueError("no such layer")


def _bad_builder_output(trial):  # type: ignore[no-untyped-def]
    import keras

    return keras.Sequential([keras.Input((10, 10, 3)), keras.layers.Flatten(), keras.layers.Dense(7)])


@pytest.mark.parametrize("build, message", [
    (_bad_builder_raises, "_bad_builder_raises(trial) raised ValueError: no such layer; expected it to return a"),
    (_bad_builder_output, "_bad_builder_output(trial) returned a model of input (None, 10, 10, 3) and output"
                          " (None, 7); expected input (None, 10, 10, 3) (the data's images) and output (None, 4)"),
])
def test_a_bad_builder_is_one_line_and_stores_nothing(tmp_path: Path, build, message: str) -> None:  # type: ignore
    import optuna

    import cnnsearch

    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    space = tmp_path / "s.toml"
    space.write_text(OWN.format(baseline='[baseline]\nmodel = "none"'))
    with pytest.raises(ConfigError) as err:
        cnnsearch.run_study("b", data=_rgb(), space=space, trials=1, build=build, storage=url)
    assert message in str(err.value) and "\n" not in str(err.value)
    assert optuna.study.get_all_study_names(storage=url) == []


def test_python_api_arrays_builder_metric_and_callbacks(tmp_path: Path) -> None:
    """Arrays in, a builder of one's own, ranked by val_loss, with a Keras callback that sees every epoch."""
    import keras

    import cnnsearch

    seen: list[int] = []

    class Count(keras.callbacks.Callback):
        def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:  # type: ignore[type-arg]
            seen.append(epoch)

    def build(trial):  # type: ignore[no-untyped-def]
        return keras.Sequential([keras.Input((10, 10, 3)), keras.layers.Conv2D(trial.params["conv1_filters"], 3),
                                 keras.layers.Flatten(), keras.layers.Dense(4, activation="softmax")])

    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    space = tmp_path / "s.toml"
    space.write_text(OWN.format(baseline='[baseline]\nmodel = "none"'))
    study = cnnsearch.run_study("api", data=_rgb(), space=space, trials=2, build=build, metric="val_loss",
                                callbacks=[Count()], storage=url)
    done = [t for t in study.trials if t.state.name == "COMPLETE"]
    assert len(done) == 2 and study.direction.name == "MINIMIZE" and len(seen) == 2
    assert study.best_trial.value == min(t.user_attrs["val_loss"] for t in done)
    assert study.user_attrs["data"]["mnist"] is False and not study.user_attrs["data"]["path"].endswith("arrays")
    with pytest.raises(ConfigError, match="no baseline"):  # [baseline] model = "none": nothing to judge against
        cnnsearch.confirm("api", storage=url, build=build)


def test_confirm_a_builders_study_from_python(tmp_path: Path) -> None:
    """Issue 23 item 7: a study searched with build(trial) is confirmed by replaying build on each trial's choices."""
    import keras

    import cnnsearch

    calls: list[int] = []

    def build(trial):  # type: ignore[no-untyped-def]
        width = trial.suggest_int("width", 2, 6)
        calls.append(width if trial.params["conv1_filters"] in (4, 8) else -1)  # the space's point is there too
        return keras.Sequential([keras.Input((10, 10, 3)), keras.layers.Conv2D(width, 3), keras.layers.Flatten(),
                                 keras.layers.Dense(4, activation="softmax")])

    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    space = tmp_path / "s.toml"
    space.write_text(OWN.format(baseline="[baseline]\nconv1_filters = 4\nconv2_filters = 16"))
    study = cnnsearch.run_study("own", data=_rgb(), space=space, trials=2, build=build, storage=url)
    widths = {f"trial{t.number}": t.params["width"] for t in study.trials
              if t.state.name == "COMPLETE" and not t.user_attrs.get("baseline")}
    r = CliRunner().invoke(main, ["study", "confirm", "own", "--top", "1", "--seeds", "1", "--epochs", "1",
                                  "--storage", url])
    assert r.exit_code == 2 and "searched with your own build function" in r.output and "cnnsearch.confirm(" in r.output
    assert "Traceback" not in r.output and len(r.output.strip().splitlines()) == 1, r.output
    calls.clear()
    summary = cnnsearch.confirm("own", top=1, seeds=2, epochs=1, train_limit=0, storage=url, build=build)
    rows = {c["config"]: c for c in summary["configs"]}
    (key,) = [k for k in rows if k != "baseline"]
    assert key in widths and rows[key]["seeds"] == 2 and rows["baseline"]["seeds"] == 2
    assert calls == [widths[key]] * 2  # the winner's own choice, replayed for each seed: no new suggestion
    w = widths[key]
    assert rows[key]["param_count"] == (3 * 3 * 3 * w + w) + (8 * 8 * w * 4 + 4)  # the builder's model, not a spec
    assert rows["baseline"]["param_count"] != rows[key]["param_count"]
    with pytest.raises(ConfigError, match="searched with your own build function"):
        cnnsearch.confirm("own", top=1, seeds=2, epochs=1, storage=url)
    again = cnnsearch.confirm("own", top=1, seeds=2, epochs=1, train_limit=0, storage=url, build=build)
    assert calls == [w] * 2 and again["configs"][1]["test_accuracies"] == rows[key]["test_accuracies"]  # stored
    page = cnnsearch.write_report("own", tmp_path / "r.html", storage=url).read_text()
    assert f"{key}" in page and "99.15%" not in page  # its confirmation in the report; not MNIST: no 99.15%
    # The builder's kept model, read with Keras: its first conv layer's w filters drawn, its confusion matrix too.
    assert "first-layer filters" in page and "best: confusion matrix" in page
    assert "model figures are left out" not in page


def test_a_builders_model_is_drawn_from_its_first_conv_layers(tmp_path: Path) -> None:
    """The report reads a model of your own with Keras: first two Conv2D kernels, their maps, its probabilities."""
    import keras

    from cnnsearch.ground.errors import CnnsearchError
    from cnnsearch.model import own

    model = keras.Sequential([keras.Input((10, 10, 3)), keras.layers.Conv2D(5, 3, activation="relu"),
                              keras.layers.Conv2D(7, 3), keras.layers.Conv2D(2, 3), keras.layers.Flatten(),
                              keras.layers.Dense(4, activation="softmax")])
    path = tmp_path / "m.keras"
    model.save(path)
    x = np.random.default_rng(0).random((12, 10, 10, 3)).astype(np.float32)
    weights, arrays = own.figure_arrays(path, x, [1, 3], 9)
    assert weights["conv1"][0].shape == (3, 3, 3, 5) and weights["conv2"][0].shape == (3, 3, 5, 7)
    assert arrays["maps1"].shape == (2, 8, 8, 5) and arrays["maps_last"].shape == (2, 6, 6, 7)
    assert arrays["maps1"].min() >= 0.0  # after the layer's own ReLU
    np.testing.assert_allclose(arrays["proba"], model.predict(x[:9], verbose=0), rtol=1e-5, atol=1e-6)
    dense = keras.Sequential([keras.Input((10, 10, 3)), keras.layers.Flatten(), keras.layers.Dense(4)])
    dense.save(tmp_path / "d.keras")
    with pytest.raises(CnnsearchError, match="d.keras: this model of your own build has no top-level Conv2D"):
        own.figure_arrays(tmp_path / "d.keras", x, [1], 9)
    (tmp_path / "bad.keras").write_bytes(b"not a zip")
    with pytest.raises(CnnsearchError, match="bad.keras: Keras cannot load this model of your own build"):
        own.figure_arrays(tmp_path / "bad.keras", x, [1], 9)


def test_train_any_trial_and_export_the_confirmed_winner(tmp_path: Path, tiny_npz: Path, tiny_space: Path) -> None:
    import keras

    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    run = CliRunner().invoke(main, ["study", "run", "w", "--space", str(tiny_space), "--trials", "1", "--data",
                                    str(tiny_npz), "--storage", url, "--no-report", "--quiet", "--seed", "1"])
    assert run.exit_code == 0, run.output
    out = tmp_path / "t1.keras"
    r = CliRunner().invoke(main, ["study", "train", "w", "--trial", "1", "--epochs", "1", "--export", str(out),
                                  "--storage", url])
    assert r.exit_code == 0 and "exported the trained model" in r.output, r.output
    assert keras.models.load_model(out).output_shape == (None, 3)
    r = CliRunner().invoke(main, ["study", "best", "w", "--confirmed", "--storage", url])
    assert r.exit_code == 1 and "no confirmation yet" in r.output
    r = CliRunner().invoke(main, ["study", "confirm", "w", "--top", "1", "--seeds", "2", "--epochs", "1",
                                  "--train-limit", "0", "--storage", url])
    assert r.exit_code == 0, r.output
    won = tmp_path / "won.keras"
    r = CliRunner().invoke(main, ["study", "best", "w", "--confirmed", "--export", str(won), "--storage", url])
    assert r.exit_code == 0 and "confirmed winner" in r.output, r.output
    assert keras.models.load_model(won).output_shape == (None, 3)


def test_example_script_runs_at_tiny_scale(tmp_path: Path) -> None:
    """examples/own_data.py, as docs/python-api.md shows it, run by the suite (issue 23's done-when)."""
    import os
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(root), "MPLBACKEND": "Agg"}
    env.pop("CNNSEARCH_ARTIFACTS", None)
    r = subprocess.run([sys.executable, str(root / "examples" / "own_data.py"), "--tiny", "--storage",
                        f"sqlite:///{tmp_path / 'ex.db'}", "--out", str(tmp_path)], capture_output=True, text=True,
                       timeout=800, cwd=tmp_path, env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "own-model study: best trial" in r.stdout and (tmp_path / "rgb-space.html").is_file()
    assert "own-model confirmed: [('baseline'" in r.stdout  # a builder's study, confirmed from Python
    assert "99.15" not in (tmp_path / "rgb-space.html").read_text()
    assert "python examples/own_data.py" in (root / "docs" / "python-api.md").read_text()


# --- 9. colour filters ------------------------------------------------------------------------------------------

def test_rgb_filters_are_drawn_in_colour_and_one_channel_is_named() -> None:
    from cnnsearch.model import viz

    rng = np.random.default_rng(0)
    weights = {"conv1": [rng.normal(size=(3, 3, 3, 8))], "conv2": [rng.normal(size=(3, 3, 8, 16))]}
    rgb = viz.filters(weights, "conv1")
    assert rgb.shape == (8, 3, 3, 3) and rgb.min() == 0.0 and rgb.max() == 1.0
    np.testing.assert_allclose(rgb.reshape(8, -1).max(axis=1), 1.0)  # each filter scaled over its own channels
    assert viz.channel_words(weights, "conv1") == "in colour (RGB)"
    assert viz.filters(weights, "conv2").shape == (16, 3, 3) and viz.channel_words(weights, "conv2") == "input channel 0"
    viz.draw_grid(rgb, 1, 8)  # draws without error
    gray = {"conv1": [rng.normal(size=(3, 3, 1, 4))]}
    assert viz.filters(gray, "conv1").shape == (4, 3, 3)
