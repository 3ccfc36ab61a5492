from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner
from optuna.trial import FixedTrial

from cnnsearch.search import points
from cnnsearch.search import space
from cnnsearch.model.arch import ArchSpec
from cnnsearch.cli import main
from cnnsearch.ground.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = sorted((ROOT / "studies").glob("*.toml"))


def test_shipped_spaces_exist() -> None:
    assert {p.name for p in SHIPPED} >= {"seed.toml", "wide.toml"}


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_shipped_space_holds_the_reference(path: Path) -> None:
    sp = space.load(path)
    spec, overrides = points.suggest(FixedTrial(points.baseline_params(sp)), sp)
    assert spec == ArchSpec()
    assert overrides.get("learning_rate", 1.0) == 1.0 and overrides.get("batch_size", 128) == 128


def test_seed_space_searches_the_four_questions() -> None:
    sp = space.load(ROOT / "studies" / "seed.toml")
    assert set(sp.searched) == {"conv1_filters", "conv2_filters", "conv1_kernel", "conv2_kernel", "pool_size",
                                "dropout_conv", "dropout_dense"}
    assert sp.training.optimizer == "adadelta" and sp.training.learning_rate == 1.0


def test_wide_space_dimensions_and_conditional_layers() -> None:
    sp = space.load(ROOT / "studies" / "wide.toml")
    assert {"conv_layers", "pool", "stride", "padding", "dense_units", "learning_rate", "batch_size"} <= set(sp.searched)
    params = {**points.baseline_params(sp), "conv_layers": 3, "conv3_filters": 16, "conv3_kernel": 5, "pool": "avg",
              "padding": "same", "learning_rate": 0.5, "batch_size": 64}
    spec, overrides = points.suggest(FixedTrial(params), sp)
    assert spec.conv_filters == (32, 64, 16) and spec.kernel_sizes == (3, 3, 5)
    assert spec.pool == "avg" and spec.padding == "same"
    assert overrides == {"learning_rate": 0.5, "batch_size": 64}
    # conv4_* are not asked when there are 3 layers: FixedTrial would raise if they were.
    one = {**points.baseline_params(sp), "conv_layers": 1}
    spec1, _ = points.suggest(FixedTrial({k: v for k, v in one.items() if not k.startswith("conv2")}), sp)
    assert spec1.conv_filters == (32,)


GOOD = """
[training]
epochs = 2
[space]
conv1_filters = [16, 32]
"""


@pytest.mark.parametrize("text, key, received", [
    ("[search]\nx = 1\n" + GOOD, "search", "[search]"),
    ("[study]\nsampler = 'bayes'\n" + GOOD, "study.sampler", "'bayes'"),
    ("[study]\ncolour = 'red'\n" + GOOD, "study.colour", "'colour'"),
    (GOOD + "conv9_filters = [1]\n", "space.conv9_filters", "'conv9_filters'"),
    (GOOD + "conv2_filters = ['many']\n", "space.conv2_filters", "'many'"),
    (GOOD + "dropout_conv = { low = 0.5, high = 0.1 }\n", "space.dropout_conv", "low=0.5, high=0.1"),
    (GOOD + "learning_rate = { low = 0.0, high = 2.0, log = true }\n", "space.learning_rate", "0.0"),
    (GOOD + "dropout_dense = { low = 0.0, high = 0.7, step = -0.1 }\n", "space.dropout_dense.step", "-0.1"),
    (GOOD + "dropout_dense = { low = 0.0, high = 0.7, step = 0 }\n", "space.dropout_dense.step", "0"),
    (GOOD + "conv2_kernel = []\n", "space.conv2_kernel", "[]"),
    (GOOD + "padding = ['valid', 'full']\n", "space.padding", "'full'"),
    (GOOD + "pool_size = { low = 2, high = 4, lo = 1 }\n", "space.pool_size.lo", "'lo'"),
    (GOOD + "conv2_filters = [16, 128]\n", "space.conv2_filters", "holding the reference's value 64"),
    ("[study]\nobjectives = ['accuracy', 'params']\n" + GOOD, "study.pruner", "'median'"),
    ("[training]\nepochs = 'four'\n[space]\nconv1_filters = [32]\n", "training.epochs", "'four'"),
])
def test_bad_space_names_file_key_expected_received(tmp_path: Path, text: str, key: str, received: str) -> None:
    f = tmp_path / "bad.toml"
    f.write_text(text)
    with pytest.raises(ConfigError) as err:
        space.load(f)
    msg = str(err.value)
    assert "\n" not in msg and str(f) in msg and key in msg and "expected" in msg and received in msg


def test_space_excluding_the_reference_depth_is_rejected(tmp_path: Path) -> None:
    f = tmp_path / "deep_only.toml"
    f.write_text("[space]\nconv_layers = [4]\nconv1_kernel = [9]\n")
    with pytest.raises(ConfigError, match="space.conv_layers: expected a space holding the reference's 2"):
        space.load(f)


def test_every_point_invalid_is_rejected() -> None:
    # Any file holding the reference builds on 28x28, so this guard bites on smaller inputs.
    sp = space.parse("[space]\nconv1_kernel = [3, 5]\n", source="small.toml")
    with pytest.raises(ConfigError, match=r"small.toml: space\.conv1_kernel: expected at least one buildable"):
        points.check_some_point_builds(sp, input_shape=(4, 4, 1))


def test_cli_create_with_bad_space_exits_2_and_writes_nothing(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(GOOD + "conv2_kernel = []\n")
    db = tmp_path / "never.db"
    r = CliRunner().invoke(main, ["study", "create", "x", "--space", str(bad), "--storage", f"sqlite:///{db}"])
    assert r.exit_code == 2
    assert len(r.stderr.strip().splitlines()) == 1 and "conv2_kernel" in r.stderr
    assert not db.exists()


def test_grid_space_expands_steps() -> None:
    sp = space.parse("[study]\nsampler = 'grid'\n[space]\nconv1_filters = [16, 32]\n"
                     "dropout_dense = { low = 0.0, high = 0.5, step = 0.25 }\n", source="g")
    assert points.grid_space(sp) == {"conv1_filters": [16, 32], "dropout_dense": [0.0, 0.25, 0.5]}


HOSTILE = {
    "not_utf8": (b"[space]\nconv1_filters = [16, 32]\n# caf\xe9\n", "not UTF-8"),
    "string_learning_rate": (b"[training]\noptimizer = { name = 'adadelta', learning_rate = '1.0' }\n"
                             b"[space]\nconv1_filters = [16, 32]\n", "training.optimizer.learning_rate"),
    "inf_bound": (b"[space]\nlearning_rate = { low = 0.1, high = inf }\n", "space.learning_rate.high"),
    "nan_bound": (b"[space]\nlearning_rate = { low = nan, high = 2.0 }\n", "space.learning_rate.low"),
    "optimizer_arg_text": (b"[training]\noptimizer = { name = 'adam', learning_rate = 0.001, beta_1 = 'high' }\n"
                           b"[space]\nconv1_filters = [16, 32]\n", "training.optimizer.beta_1"),
    "optimizer_arg_nan": (b"[training]\noptimizer = { name = 'sgd', learning_rate = 0.1, momentum = nan }\n"
                          b"[space]\nconv1_filters = [16, 32]\n", "training.optimizer.momentum"),
    "huge_int_range": (b"[space]\nconv1_filters = { low = 1, high = 100000000000000 }\n", "space.conv1_filters"),
    "seed_2_32": (b"[study]\nseed = 4294967295\n[space]\nconv1_filters = [16, 32]\n", "study.seed"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_space_file_one_line_exit_2_nothing_written(tmp_path: Path, case: str) -> None:
    blob, key = HOSTILE[case]
    f = tmp_path / "bad.toml"
    f.write_bytes(blob)
    db = tmp_path / "never.db"
    r = CliRunner().invoke(main, ["study", "create", "x", "--space", str(f), "--storage", f"sqlite:///{db}"])
    assert r.exit_code == 2, r.output
    assert len(r.stderr.strip().splitlines()) == 1 and key in r.stderr and str(f) in r.stderr
    assert r.exception is None or isinstance(r.exception, SystemExit)
    assert not db.exists()


def test_seed_bound_accepts_the_largest_valid_seed() -> None:
    sp = space.parse(f"[study]\nseed = {space.MAX_SEED}\n[space]\nconv1_filters = [16, 32]\n", source="s")
    assert sp.study["seed"] == 2**31 - 1
