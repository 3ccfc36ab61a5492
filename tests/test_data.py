from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner, Result

from cnnsearch.ground import data
from cnnsearch.cli import main
from cnnsearch.ground.errors import DataError
from conftest import make_tiny, write_idx


def _idx_folder(tmp_path: Path, arrays: dict[str, np.ndarray], *, gz: bool) -> Path:
    folder = tmp_path / ("idx_gz" if gz else "idx_raw")
    folder.mkdir()
    for key, stem in data.IDX_STEMS.items():
        write_idx(folder / stem, arrays[key], gz=gz)
    return folder


def test_npz_loads_scaled_with_channel_axis(tiny_npz: Path, tiny_arrays: dict[str, np.ndarray]) -> None:
    ds = data.load(tiny_npz)
    assert ds.x_train.dtype == np.float32 and ds.x_train.shape == (240, 12, 12, 1)
    assert 0.0 <= ds.x_train.min() and ds.x_train.max() == pytest.approx(1.0)
    assert ds.input_shape == (12, 12, 1)
    assert ds.n_classes == 3
    np.testing.assert_array_equal(ds.y_test, tiny_arrays["y_test"])
    np.testing.assert_allclose(ds.x_test[..., 0], tiny_arrays["x_test"] / 255.0, rtol=1e-6)


@pytest.mark.parametrize("gz", [False, True])
def test_idx_folder_loads_raw_and_gzipped(tmp_path: Path, tiny_arrays: dict[str, np.ndarray], gz: bool) -> None:
    ds = data.load(_idx_folder(tmp_path, tiny_arrays, gz=gz))
    np.testing.assert_array_equal(ds.y_train, tiny_arrays["y_train"])
    assert ds.x_test.shape == (60, 12, 12, 1)


def test_env_variable_is_used_when_no_path(monkeypatch: pytest.MonkeyPatch, tiny_npz: Path) -> None:
    monkeypatch.setenv(data.DATA_ENV, str(tiny_npz))
    assert data.load_raw().source == str(tiny_npz)


def test_explicit_path_beats_env(monkeypatch: pytest.MonkeyPatch, tiny_npz: Path, tmp_path: Path) -> None:
    monkeypatch.setenv(data.DATA_ENV, str(tmp_path / "nothing.npz"))
    assert data.load_raw(tiny_npz).source == str(tiny_npz)


def test_keras_cache_is_used(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                             tiny_arrays: dict[str, np.ndarray]) -> None:
    monkeypatch.delenv(data.DATA_ENV, raising=False)
    cache = data.keras_cache_path()
    cache.parent.mkdir(parents=True)
    np.savez(cache, **tiny_arrays)
    assert data.load_raw(download=False).source == str(cache)


def test_split_holds_out_a_stratified_tenth_and_limits_training(tiny_npz: Path) -> None:
    # Not MNIST: a seeded, stratified tenth (issue 23); MNIST's last tenth is tested in test_owndata.py.
    ds = data.load(tiny_npz)
    sp = data.split(ds, train_limit=50)
    assert len(sp.x_val) == 24 and len(sp.x_train) == 50 and sp.method == "stratified"
    assert np.abs(np.bincount(sp.y_val) - 0.1 * np.bincount(ds.y_train)).max() <= 1  # each class in proportion
    again = data.split(ds, train_limit=50)
    np.testing.assert_array_equal(sp.y_val, again.y_val)  # seeded: the same images every time
    assert len(data.split(ds).x_train) == 216


# --- bad input: one line naming the file and what is wrong -----------------------------------------

def _one_line(exc: DataError) -> str:
    text = str(exc)
    assert "\n" not in text
    return text


def test_missing_path(tmp_path: Path) -> None:
    with pytest.raises(DataError) as err:
        data.load_raw(tmp_path / "nope.npz")
    assert "nope.npz" in _one_line(err.value) and "no such file" in str(err.value)


def test_truncated_npz(tmp_path: Path, tiny_npz: Path) -> None:
    bad = tmp_path / "truncated.npz"
    bad.write_bytes(tiny_npz.read_bytes()[:500])
    with pytest.raises(DataError) as err:
        data.load_raw(bad)
    assert "truncated.npz" in _one_line(err.value) and "truncated or corrupted" in str(err.value)


def test_garbage_npz(tmp_path: Path) -> None:
    bad = tmp_path / "garbage.npz"
    bad.write_bytes(b"this is not a zip archive at all" * 10)
    with pytest.raises(DataError, match="garbage.npz: cannot read"):
        data.load_raw(bad)


def test_corrupted_member_npz(tmp_path: Path, tiny_npz: Path) -> None:
    blob = bytearray(tiny_npz.read_bytes())
    blob[200:260] = b"\xff" * 60  # inside the first stored array
    bad = tmp_path / "flipped.npz"
    bad.write_bytes(bytes(blob))
    with pytest.raises(DataError) as err:
        data.load_raw(bad)
    assert "flipped.npz" in _one_line(err.value)


def test_npz_missing_keys(tmp_path: Path, tiny_arrays: dict[str, np.ndarray]) -> None:
    bad = tmp_path / "partial.npz"
    np.savez(bad, x_train=tiny_arrays["x_train"], y_train=tiny_arrays["y_train"])
    with pytest.raises(DataError, match="missing x_test, y_test"):
        data.load_raw(bad)


def test_idx_wrong_magic(tmp_path: Path, tiny_arrays: dict[str, np.ndarray]) -> None:
    folder = _idx_folder(tmp_path, tiny_arrays, gz=False)
    write_idx(folder / data.IDX_STEMS["y_train"], tiny_arrays["y_train"], magic=0x12345678)
    with pytest.raises(DataError) as err:
        data.load_raw(folder)
    msg = _one_line(err.value)
    assert "train-labels-idx1-ubyte" in msg and "0x12345678" in msg and "0x00000801" in msg


def test_idx_truncated(tmp_path: Path, tiny_arrays: dict[str, np.ndarray]) -> None:
    folder = _idx_folder(tmp_path, tiny_arrays, gz=False)
    f = folder / data.IDX_STEMS["x_test"]
    f.write_bytes(f.read_bytes()[:-7])
    with pytest.raises(DataError, match="t10k-images-idx3-ubyte: header says .* truncated"):
        data.load_raw(folder)


def test_idx_folder_missing_file(tmp_path: Path, tiny_arrays: dict[str, np.ndarray]) -> None:
    folder = _idx_folder(tmp_path, tiny_arrays, gz=True)
    next(folder.glob("t10k-labels*")).unlink()
    with pytest.raises(DataError, match="no t10k-labels-idx1-ubyte"):
        data.load_raw(folder)


@pytest.mark.parametrize("mutate, message", [
    (lambda a: a.update(y_train=a["y_train"][:-5]), "x_train has 240 images but y_train has 235 labels"),
    (lambda a: a.update(x_test=np.zeros((60, 10, 10), np.uint8)), "must be the same size"),
    (lambda a: a.update(x_train=a["x_train"].astype(np.float32)), "float images must be scaled to [0, 1]"),
    (lambda a: a.update(y_test=np.full(60, 7, np.uint8)), "y_test holds label 7 but y_train has only 3 classes"),
    (lambda a: a.update(y_train=a["y_train"].reshape(-1, 1)), "one label per image"),
])
def test_inconsistent_arrays(tmp_path: Path, mutate, message: str) -> None:  # type: ignore[no-untyped-def]
    arrays = make_tiny()
    mutate(arrays)
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    with pytest.raises(DataError) as err:
        data.load_raw(path)
    assert message in _one_line(err.value) and "bad.npz" in str(err.value)


def test_nothing_found_lists_every_place(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(data.DATA_ENV, raising=False)

    def offline() -> data.RawData:
        raise OSError("URL fetch failure: [Errno -2] Name or service not known")

    monkeypatch.setattr(data, "_download", offline)
    with pytest.raises(DataError) as err:
        data.load_raw()
    msg = _one_line(err.value)
    for place in ("--data", data.DATA_ENV, "Keras cache", "load_data()", "Name or service not known",
                  "Fix: pass --data PATH"):
        assert place in msg


# --- issue 13, item 10: the loader's remaining gaps, each one line through the CLI (exit 1) -------------

def _baseline_cli(path: Path, *extra: str) -> Result:
    return CliRunner().invoke(main, ["baseline", "--data", str(path), "--epochs", "1", *extra])


def _assert_one_line(r: Result, *needles: str, code: int = 1) -> None:
    assert r.exit_code == code, r.output
    assert r.exception is None or isinstance(r.exception, SystemExit)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("cnnsearch: error:"), r.stderr
    for needle in needles:
        assert needle in lines[0]


def test_corrupt_deflate_stream_inside_a_valid_npz(tmp_path: Path, tiny_arrays: dict[str, np.ndarray]) -> None:
    import zipfile

    path = tmp_path / "deflated.npz"
    np.savez_compressed(path, **tiny_arrays)
    with zipfile.ZipFile(path) as z:  # the archive's directory stays valid; only the compressed bytes break
        info = z.getinfo("x_train.npy")
    blob = bytearray(path.read_bytes())
    start = info.header_offset + 30 + len(info.filename) + len(info.extra) + info.compress_size // 2
    blob[start:start + 64] = b"\xff" * 64
    path.write_bytes(bytes(blob))
    _assert_one_line(_baseline_cli(path), "deflated.npz", "corrupted")


def test_a_npy_file_is_named_and_explained(tmp_path: Path, tiny_arrays: dict[str, np.ndarray]) -> None:
    path = tmp_path / "images.npy"
    np.save(path, tiny_arrays["x_train"])
    _assert_one_line(_baseline_cli(path), "images.npy", ".npy", "x_train, y_train, x_test, y_test")


def test_unreadable_idx_folder(tmp_path: Path, tiny_arrays: dict[str, np.ndarray],
                               monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    folder = _idx_folder(tmp_path, tiny_arrays, gz=False)
    folder.chmod(0)
    try:
        if os.geteuid() == 0:
            # Root reads through any permission bits: raise what an ordinary user's stat gets (EACCES).
            real_is_file = Path.is_file

            def denied(self: Path) -> bool:
                if self.parent == folder:
                    raise PermissionError(13, "Permission denied", str(self))
                return real_is_file(self)

            monkeypatch.setattr(Path, "is_file", denied)
        _assert_one_line(_baseline_cli(folder), str(folder), "Permission denied", "permissions")
    finally:
        folder.chmod(0o755)


def test_stray_label_is_refused_not_a_43_class_model(tmp_path: Path) -> None:
    arrays = make_tiny()
    arrays["y_train"][7] = 42
    path = tmp_path / "stray.npz"
    np.savez(path, **arrays)
    _assert_one_line(_baseline_cli(path), "stray.npz", "43 classes", "39 of them never occur", "0..K-1")


def test_baseline_on_5x5_images_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "small.npz"
    np.savez(path, **make_tiny(side=5))
    _assert_one_line(_baseline_cli(path), "small.npz", "too small for the reference model")


def test_train_limit_beyond_the_data_is_refused(tiny_npz: Path) -> None:
    from cnnsearch.ground.errors import ConfigError

    ds = data.load(tiny_npz)
    assert len(data.split(ds, train_limit=216).x_train) == 216  # exactly all of them is fine
    with pytest.raises(ConfigError) as err:
        data.split(ds, train_limit=217)
    assert "train_limit 217" in _one_line(err.value) and "216 training images" in str(err.value)
    _assert_one_line(_baseline_cli(tiny_npz, "--train-limit", "5000"), "train_limit 5,000", "216", code=2)


def test_fingerprint_is_sha256sum_and_folder_stable(tmp_path: Path, tiny_npz: Path, tiny_arrays: dict) -> None:
    import hashlib

    from conftest import write_idx

    assert data.fingerprint(tiny_npz) == hashlib.sha256(tiny_npz.read_bytes()).hexdigest()
    folder = tmp_path / "idx"
    folder.mkdir()
    for key, stem in data.IDX_STEMS.items():
        write_idx(folder / stem, tiny_arrays[key])
    first = data.fingerprint(folder)
    assert first == data.fingerprint(str(folder)) and first != data.fingerprint(tiny_npz)
    write_idx(folder / data.IDX_STEMS["y_test"], tiny_arrays["y_test"][::-1].copy())
    assert data.fingerprint(folder) != first
    with pytest.raises(data.DataError):
        data.fingerprint(tmp_path / "missing.npz")
