"""Shared fixtures: tiny synthetic MNIST-shaped data (fast) and the real MNIST file (for a few tests)."""

from __future__ import annotations

import gzip
import os
import signal
import struct
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest

# `study run` defaults to --workers auto (2 processes on >= 2 cores). The suite checks the one-process
# run (its lines, progress, signals) unless a test passes --workers; the default itself has its own tests
# (test_reuse.py), which remove this variable.
os.environ["CNNSEARCH_WORKERS"] = "1"
# Likewise confirmation runs train in this process unless a test asks for the pool (tests/test_pool.py).
os.environ["CNNSEARCH_RUN_WORKERS"] = "1"

#: Tiny data: 12x12 images of 3 classes, a bright bar whose position is the class.
TINY_SIDE = 12
TINY_CLASSES = 3


def make_tiny(n_train: int = 240, n_test: int = 60, side: int = TINY_SIDE, seed: int = 0) -> dict[str, np.ndarray]:
    """A learnable toy data set in Keras layout: class k has a horizontal bar in band k, plus noise."""
    rng = np.random.default_rng(seed)

    def images(n: int) -> tuple[np.ndarray, np.ndarray]:
        y = rng.integers(0, TINY_CLASSES, size=n).astype(np.uint8)
        x = rng.integers(0, 60, size=(n, side, side)).astype(np.uint8)
        band = side // TINY_CLASSES
        for i, label in enumerate(y):
            row = label * band + band // 2
            x[i, row - 1:row + 1, 1:-1] = 255
        return x, y

    x_train, y_train = images(n_train)
    x_test, y_test = images(n_test)
    return {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test}


def write_idx(path: Path, arr: np.ndarray, *, magic: int | None = None, gz: bool = False) -> Path:
    """Write ``arr`` (uint8) as an IDX file, optionally with a forged magic number or gzipped."""
    magic = magic if magic is not None else (0x0800 | arr.ndim)
    blob = struct.pack(">I", magic) + struct.pack(f">{arr.ndim}I", *arr.shape) + arr.astype(np.uint8).tobytes()
    if gz:
        path = path.with_name(path.name + ".gz")
        path.write_bytes(gzip.compress(blob))
    else:
        path.write_bytes(blob)
    return path


# A shell starts a background job (`bash .ci/run &`: no job control) with SIGINT ignored, `nohup`
# ignores SIGHUP, and every process started from there inherits that. The tests that stop a real
# server or a real run with Ctrl-C (SIGINT) or a hang-up (SIGHUP) would then wait on a child that
# cannot hear it. Restored here, so the children start with both live however the suite was launched.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)
if signal.getsignal(signal.SIGHUP) is signal.SIG_IGN:
    signal.signal(signal.SIGHUP, signal.SIG_DFL)


#: Tests measured at >= 3 s in a full run (tests/bench/slow_tests.py writes the list from its JUnit XML).
SLOW_LIST = Path(__file__).with_name("slow.txt")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark the listed tests ``slow``: ``python3 -m pytest -m "not slow"`` is the edit-test loop."""
    if not SLOW_LIST.exists():
        return
    slow = {ln.strip() for ln in SLOW_LIST.read_text().splitlines() if ln.strip() and not ln.startswith("#")}
    for item in items:
        if item.nodeid in slow:
            item.add_marker(pytest.mark.slow)


@pytest.fixture
def tiny_arrays() -> dict[str, np.ndarray]:
    return make_tiny()


@pytest.fixture
def tiny_npz(tmp_path: Path, tiny_arrays: dict[str, np.ndarray]) -> Path:
    path = tmp_path / "tiny.npz"
    np.savez(path, **tiny_arrays)
    return path


@pytest.fixture
def mnist_path() -> Path:
    """The real MNIST file: $CNNSEARCH_DATA, or ../shared/data/mnist.npz beside the repo.

    Under CI (CI=true) a missing file fails the test rather than skipping it,
    so a green CI always means the real-data tests ran.
    """
    env = os.environ.get("CNNSEARCH_DATA")
    candidates = [Path(env)] if env else []
    candidates.append(Path(__file__).resolve().parents[1].parent / "shared" / "data" / "mnist.npz")
    for p in candidates:
        if p.is_file():
            return p
    if os.environ.get("CI"):
        pytest.fail(f"real MNIST not found (tried {', '.join(map(str, candidates))}); set CNNSEARCH_DATA")
    pytest.skip("real MNIST not found; set CNNSEARCH_DATA=path/to/mnist.npz")


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Keep tests from reading the user's Keras cache or study database."""
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras_home"))
    monkeypatch.setenv("CNNSEARCH_STORAGE", f"sqlite:///{tmp_path / 'studies.db'}")


#: A tiny space for study tests: 3 dimensions, 2 epochs on the tiny data.
TINY_SPACE = """
[study]
seed = 1
pruner = "none"
heartbeat_seconds = {heartbeat}
[training]
epochs = {epochs}
batch_size = 32
[space]
conv1_filters = [4, 8, 32]
conv2_filters = [8, 64]
conv1_kernel = [3, 13]
dropout_dense = {{ low = 0.0, high = 0.5, step = 0.25 }}
"""


@pytest.fixture
def tiny_space(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.toml"
    # Every point builds on the 12x12 images: an unbuildable one (a 13x13 kernel) would be an infeasible draw,
    # untrained and not counted (issue 23), which makes trial counts vary; tests of that write TINY_SPACE itself.
    path.write_text(TINY_SPACE.format(epochs=2, heartbeat=60).replace("[3, 13]", "[3, 5]"))
    return path


def _pg_bin() -> Path | None:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"))
    return found[-1].parent if found else None


@pytest.fixture(scope="session")
def postgres_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real PostgreSQL server (Debian's package) on a free loopback port, for the session.

    As root it runs as the ``postgres`` user in a temporary data directory.
    ``.ci/run`` installs the package; without it the tests fail under CI and skip elsewhere.
    """
    import shutil
    import socket
    import subprocess

    bin_dir = _pg_bin()
    if bin_dir is None:
        if os.environ.get("CI"):
            pytest.fail("PostgreSQL is not installed (apt-get install postgresql); .ci/run installs it")
        pytest.skip("PostgreSQL is not installed (apt-get install postgresql)")
    import tempfile

    # Not under pytest's tmp folder: that is private to root, and the server runs as 'postgres'.
    base = Path(tempfile.mkdtemp(prefix="cnnsearch-pg-"))
    base.chmod(0o755)
    data, sock = base / "data", base / "sock"
    sock.mkdir()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    prefix: list[str] = []
    if os.geteuid() == 0:
        shutil.chown(base, "postgres")
        shutil.chown(sock, "postgres")
        prefix = ["runuser", "-u", "postgres", "--"]
    subprocess.run([*prefix, str(bin_dir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8"],
                   check=True, capture_output=True)
    subprocess.run([*prefix, str(bin_dir / "pg_ctl"), "-D", str(data), "-w", "-l", str(base / "log"), "-o",
                    f"-p {port} -k {sock} -c listen_addresses=127.0.0.1 -c max_connections=200", "start"],
                   check=True, capture_output=True)
    subprocess.run([*prefix, str(bin_dir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "postgres",
                    "cnnsearch"], check=True, capture_output=True)
    yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/cnnsearch"
    subprocess.run([*prefix, str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "fast", "stop"], capture_output=True)
    shutil.rmtree(base, ignore_errors=True)


class SmallFs:
    """A real, tiny filesystem (tmpfs) mounted under the test's folder: fill it, or make it read-only."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def remount(self, options: str) -> None:
        import subprocess

        subprocess.run(["mount", "-o", f"remount,{options}", str(self.path)], check=True, capture_output=True)

    def fill(self) -> None:
        """Write until the disk is full (ENOSPC), leaving no byte free."""
        with open(self.path / "filler", "ab") as fh:
            try:
                while True:
                    fh.write(b"\0" * 65536)
                    fh.flush()
            except OSError:
                pass
        try:
            with open(self.path / "filler", "ab", buffering=0) as fh:
                while True:
                    fh.write(b"\0")
        except OSError:
            pass


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[SmallFs]:
    """A 16 MiB tmpfs, unmounted at the end. Needs root with mount rights (as in CI's container).

    Without them the test is skipped outside CI and fails under CI, like the PostgreSQL fixture.
    """
    import subprocess

    mnt = tmp_path / "smallfs"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(mnt)], capture_output=True, text=True)
    if r.returncode != 0:
        msg = f"cannot mount a small tmpfs ({r.stderr.strip()}); run as root with mount rights"
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)
    try:
        yield SmallFs(mnt)
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)
