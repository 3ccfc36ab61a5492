"""The space files that ship with cnnsearch: their names, paths and text; NAME-or-path resolution.

The files live once, in the repository's ``studies/`` folder; ``pyproject.toml``
maps that folder to the package ``cnnsearch.spaces``, so an installed wheel
carries them as ``cnnsearch/spaces/*.toml``. In a source checkout (editable
install or ``PYTHONPATH``) the checkout's ``studies/`` is read directly, so an
edited space file is seen without reinstalling. Imports nothing of cnnsearch
but its errors.
"""

from __future__ import annotations

import importlib.resources
from pathlib import Path

from cnnsearch.ground.errors import ConfigError

#: Suffix of a space file; ``--space seed`` and ``--space seed.toml`` both name ``seed``.
SUFFIX = ".toml"


def folder() -> Path:
    """Where the shipped space files are: the checkout's ``studies/``, else the installed package data."""
    root = Path(__file__).resolve().parents[2]  # the checkout: cnnsearch/search/shipped.py -> repository root
    if (root / "pyproject.toml").is_file() and (root / "studies").is_dir():
        return root / "studies"
    return Path(str(importlib.resources.files("cnnsearch") / "spaces"))


def names() -> list[str]:
    """Names of the shipped spaces (file stems), sorted."""
    d = folder()
    return sorted(p.stem for p in d.glob(f"*{SUFFIX}")) if d.is_dir() else []


def path(name: str) -> Path:
    """The file of shipped space ``name`` (with or without ``.toml``).

    Raises:
        ConfigError: no shipped space of that name (the line lists the shipped ones).
    """
    stem = name[: -len(SUFFIX)] if name.endswith(SUFFIX) else name
    p = folder() / f"{stem}{SUFFIX}"
    if "/" in stem or "\\" in stem or not p.is_file():
        raise ConfigError(f"space: expected one of the shipped spaces ({', '.join(names()) or 'none found'});"
                          f" received {name!r}; see 'cnnsearch space list'")
    return p


def text(name: str) -> str:
    """The exact text of shipped space ``name``."""
    return path(name).read_text()


def resolve(name_or_path: str | Path) -> Path:
    """A space argument as a file: an existing path wins, else a bare shipped name (``seed``, ``wide.toml``).

    Raises:
        ConfigError: neither an existing file nor a shipped name; the line names both ways to fix it.
    """
    p = Path(name_or_path)
    if p.is_file():
        return p
    arg = str(name_or_path)
    if "/" not in arg and "\\" not in arg:
        stem = arg[: -len(SUFFIX)] if arg.endswith(SUFFIX) else arg
        if stem in names():
            return path(stem)
    raise ConfigError(f"{arg}: expected a space file or the name of a shipped space ({', '.join(names())});"
                      f" received a path that does not exist; see 'cnnsearch space list', or"
                      f" 'cnnsearch space init my.toml' for a copy to edit")


def init(dest: str | Path, name: str = "seed") -> Path:
    """Write a commented copy of shipped space ``name`` to ``dest`` for editing; never overwrites.

    Raises:
        ConfigError: ``dest`` exists already, or ``name`` is not shipped.
    """
    src = path(name)
    dest = Path(dest)
    if dest.exists():
        raise ConfigError(f"{dest}: expected a new file; received an existing path (space init never overwrites);"
                          " pick another name or remove it first")
    header = (f"# A copy of cnnsearch's shipped space '{src.stem}', to edit. Keep the reference model a point of\n"
              f"# the space (trial 0 of every study is the reference). Check it and start a study with:\n"
              f"#   cnnsearch study create NAME --space {dest}\n"
              "# (every key is described in README's \"Space files\"; 'cnnsearch space show NAME' prints the\n"
              "# shipped ones).\n#\n")
    dest.parent.mkdir(parents=True, exist_ok=True)
    with open(dest, "x") as fh:  # "x": fail rather than overwrite, even against a race
        fh.write(header + src.read_text())
    return dest


__all__ = ["folder", "init", "names", "path", "resolve", "text"]
