"""README and docs/ commands: each is checked against the real command line (or a script's --help), the
README's Python example runs on real MNIST, and no command names a path outside the repository."""

from __future__ import annotations

import functools
import re
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path

import click
import pytest

from test_readme import resolve, shell_words

REPO = Path(__file__).resolve().parents[1]
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
#: Lines of shell blocks that are not cnnsearch or a benchmark script: the set-up and the environment.
OTHER_COMMANDS = ("bash tests/setup.sh", "python3 -m pytest", "pip install", "python3 -m pip install", "export ",
                  "eval ")


def blocks(lang: str) -> list[tuple[str, str]]:
    """(file, text) of every fenced block in README and docs/ in this language."""
    out = []
    for path in DOCS:
        for found, text in re.findall(r"```([a-z]*)\n(.*?)```", path.read_text(), flags=re.S):
            if found == lang:
                out.append((path.relative_to(REPO).as_posix(), text))
    return out


def shell_lines() -> list[tuple[str, str]]:
    """(file, line) of every command in the shell blocks, and every inline `cnnsearch ...` span."""
    out = [(f, ln.strip()) for f, text in blocks("bash") for ln in text.splitlines()
           if ln.strip() and not ln.strip().startswith("#")]
    for path in DOCS:
        for span in re.findall(r"`(cnnsearch [^`\n]+)`", path.read_text()):
            if "..." not in span and not any(c in span for c in "[]<>|"):
                out.append((path.relative_to(REPO).as_posix(), span))
    return out


LINES = shell_lines()


def outside_paths(line: str) -> list[str]:
    """The words of a command line that name a path outside the repository (comments ignored)."""
    bad = []
    for word in shlex.split(line, comments=True):
        for part in re.split(r"[=,]", word):
            if (part.startswith(("/", "~")) or "../" in part or part == ".." or part.startswith("sqlite:////")
                    or part.startswith(("journal:///", "file:///"))):
                bad.append(part)
    return bad


def test_the_docs_have_commands() -> None:
    files = {f for f, _ in LINES}
    assert {"README.md", "docs/benchmarks.md", "docs/space-files.md", "docs/storage.md"} <= files
    assert len(LINES) >= 30


@pytest.mark.parametrize("where,line", LINES)
def test_no_command_names_a_path_outside_the_repository(where: str, line: str) -> None:
    assert outside_paths(line) == [], f"{where}: {line}"


def test_the_path_check_can_fail() -> None:
    assert outside_paths("cnnsearch study run d --data ../shared/data/mnist.npz") == ["../shared/data/mnist.npz"]
    assert outside_paths("export CNNSEARCH_STORAGE=sqlite:////tmp/x.db") == ["sqlite:////tmp/x.db"]
    assert outside_paths("cnnsearch report d --out=/tmp/r.html  # /in/a/comment") == ["/tmp/r.html"]
    assert outside_paths('cnnsearch study run d --data "$CNNSEARCH_DATA"') == []


@functools.cache
def script_help(script: str, sub: str) -> str:
    """A benchmark script's --help (of a subcommand when it has them)."""
    r = subprocess.run([sys.executable, script, *([sub] if sub else []), "--help"], cwd=REPO, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    return r.stdout


@pytest.mark.parametrize("where,line", LINES)
def test_every_command_parses_or_matches_its_help(where: str, line: str) -> None:
    words = shlex.split(line, comments=True)
    if words[0] == "cnnsearch":
        cmd, args, name = resolve(shell_words(line))
        try:
            cmd.make_context(name, args)  # click's own parsing: the options and values --help lists
        except click.ClickException as exc:
            pytest.fail(f"{where}: does not parse: {line!r}: {exc.format_message()}")
    elif words[0] in ("python", "python3") and words[1].startswith("tests/bench/"):
        assert (REPO / words[1]).is_file(), f"{where}: no {words[1]}"
        sub = words[2] if len(words) > 2 and not words[2].startswith("-") else ""
        text = script_help(words[1], sub)
        for opt in (w.split("=")[0] for w in words[2:] if w.startswith("--")):
            assert re.search(rf"(^|[\s,\[]){re.escape(opt)}\b", text), f"{where}: {words[1]} has no {opt}: {line}"
    else:
        assert line.startswith(OTHER_COMMANDS), f"{where}: a command the test does not know how to check: {line}"


@pytest.mark.parametrize("where,text", blocks("toml"))
def test_toml_examples_are_valid(where: str, text: str) -> None:
    tomllib.loads(text)


@pytest.mark.mnist
def test_readme_python_example_runs(mnist_path: Path, tmp_path: Path) -> None:
    """README's Python API example, as written, on real MNIST (found through $CNNSEARCH_DATA)."""
    (code,) = [text for where, text in blocks("python") if where == "README.md"]
    r = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=600,
                       env={**__import__("os").environ, "CNNSEARCH_DATA": str(mnist_path), "PYTHONPATH": str(REPO)})
    assert r.returncode == 0, r.stderr[-2000:]
    params, acc = r.stdout.split()[-2:]
    assert int(params) > 0 and 0.5 < float(acc) <= 1.0  # 1 epoch on 6,000 images learns
