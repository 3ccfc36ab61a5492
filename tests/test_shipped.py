"""Spaces that ship with the package: the wheel's files, ``space list|show|init``, ``--space NAME``."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from click.testing import CliRunner

from cnnsearch.search import shipped
from cnnsearch.search import space as space_mod
from cnnsearch.cli import main

REPO = Path(__file__).resolve().parents[1]
STUDIES = sorted((REPO / "studies").glob("*.toml"))


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A wheel built from a copy of the sources (so the build cannot lean on anything else in the checkout)."""
    src = tmp_path_factory.mktemp("src")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    shutil.copytree(REPO / "cnnsearch", src / "cnnsearch", ignore=shutil.ignore_patterns("__pycache__"))
    (src / "studies").mkdir()
    for p in STUDIES:
        shutil.copy(p, src / "studies" / p.name)
    out = tmp_path_factory.mktemp("wheel")
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                        "--disable-pip-version-check", "-w", str(out), str(src)], capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr
    (whl,) = out.glob("cnnsearch-*.whl")
    return whl


def test_wheel_ships_every_space_file_once(wheel: Path) -> None:
    assert len(STUDIES) >= 2
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
        for p in STUDIES:
            assert z.read(f"cnnsearch/spaces/{p.name}") == p.read_bytes()
    shipped_files = [n for n in names if n.endswith(".toml")]
    assert sorted(shipped_files) == sorted(f"cnnsearch/spaces/{p.name}" for p in STUDIES)
    assert not any(n.startswith("studies/") or n.endswith(".db") for n in names)


def test_installed_wheel_lists_shows_and_inits(wheel: Path, tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", str(venv)], check=True,
                   timeout=120)
    py = venv / "bin" / "python"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    # --ignore-installed: the venv sees the system's (editable) cnnsearch; install beside it, touch nothing there.
    subprocess.run([sys.executable, "-m", "pip", "--python", str(py), "install", "--no-deps", "--no-index", "-q",
                    "--ignore-installed", "--disable-pip-version-check", str(wheel)], check=True, env=env,
                   timeout=300)
    work = tmp_path / "elsewhere"  # no checkout here: the spaces must come from the installed package
    work.mkdir()

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(py), "-m", "cnnsearch.cli", *args], cwd=work, env=env, capture_output=True,
                              text=True, timeout=120)

    where = subprocess.run([str(py), "-c", "import cnnsearch.search.shipped as s; print(s.folder())"], cwd=work, env=env,
                           capture_output=True, text=True)
    assert where.returncode == 0, where.stderr
    where = where.stdout.strip()
    assert where.startswith(str(venv)) and where.endswith("cnnsearch/spaces"), where
    r = cli("space", "list")
    assert r.returncode == 0, r.stderr
    listed = [line.split()[0] for line in r.stdout.splitlines()]
    assert listed == [p.stem for p in STUDIES]
    assert "dimensions" in r.stdout and "epochs on" in r.stdout
    r = cli("space", "show", "seed")
    assert r.returncode == 0 and r.stdout == (REPO / "studies" / "seed.toml").read_text()
    r = cli("space", "init", "mine.toml", "--from", "wide")
    assert r.returncode == 0, r.stderr
    assert (work / "mine.toml").read_text().endswith((REPO / "studies" / "wide.toml").read_text())
    r = cli("study", "create", "s", "--space", "seed", "--storage", "sqlite:///s.db")
    assert r.returncode == 0, r.stderr
    assert (work / "s.db").is_file()


def test_space_list_and_show_in_process() -> None:
    r = CliRunner().invoke(main, ["space", "list"])
    assert r.exit_code == 0, r.output
    rows = {line.split()[0]: line for line in r.stdout.splitlines()}
    assert set(rows) == {p.stem for p in STUDIES}
    assert " 7 dimensions  4 epochs on 12,000 images  Filters, kernels" in rows["seed"]
    r = CliRunner().invoke(main, ["space", "list", "--json"])
    doc = {d["name"]: d for d in __import__("json").loads(r.stdout)}
    assert doc["wide"]["epochs"] == 4 and "conv_layers" in doc["wide"]["searched"]
    r = CliRunner().invoke(main, ["space", "show", "wide"])
    assert r.exit_code == 0 and r.stdout == (REPO / "studies" / "wide.toml").read_text()
    r = CliRunner().invoke(main, ["space", "show", "nope"])
    assert r.exit_code == 2 and "seed" in r.stderr and "nope" in r.stderr


def test_space_init_copies_and_never_overwrites(tmp_path: Path) -> None:
    dest = tmp_path / "sub" / "my.toml"
    r = CliRunner().invoke(main, ["space", "init", str(dest)])
    assert r.exit_code == 0, r.output
    text = dest.read_text()
    assert text.startswith("# A copy of cnnsearch's shipped space 'seed'")
    assert text.endswith((REPO / "studies" / "seed.toml").read_text())
    assert space_mod.load(dest).searched == space_mod.load("seed").searched  # the copy is a valid space
    dest.write_text("# mine\n")
    r = CliRunner().invoke(main, ["space", "init", str(dest), "--from", "wide"])
    assert r.exit_code == 2 and "never overwrites" in r.stderr
    assert dest.read_text() == "# mine\n"


def test_space_name_wherever_a_path_is_and_a_path_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    url = f"sqlite:///{tmp_path / 'n.db'}"
    r = CliRunner().invoke(main, ["study", "create", "by-name", "--space", "wide", "--storage", url])
    assert r.exit_code == 0, r.output
    assert "conv_layers" in r.stdout
    # A file called "seed" in the working folder wins over the shipped space of that name.
    (tmp_path / "seed").write_text((REPO / "studies" / "seed.toml").read_text().replace(
        'conv1_kernel  = [3, 5]', 'conv1_kernel  = [3, 7]'))
    assert space_mod.load("seed").dims["conv1_kernel"].choices == (3, 7)
    assert space_mod.load("seed.toml").dims["conv1_kernel"].choices == (3, 5)
    r = CliRunner().invoke(main, ["study", "create", "x", "--space", "no-such-space", "--storage",
                                  f"sqlite:///{tmp_path / 'never.db'}"])
    assert r.exit_code == 2 and "shipped space" in r.stderr and "space list" in r.stderr
    assert not (tmp_path / "never.db").exists()
    assert shipped.resolve(REPO / "studies" / "seed.toml") == REPO / "studies" / "seed.toml"
