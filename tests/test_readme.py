"""README truths: every ``cnnsearch ...`` command parses against the real CLI; its images exist; completion works."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.shell_completion import ShellComplete

from cnnsearch.search import space as space_mod
from cnnsearch.search import study as study_mod
from cnnsearch.cli import main

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text()
#: Shell syntax that ends the cnnsearch part of a line (pipes, redirections, chains).
_SHELL_END = {"|", "||", "&&", ";", "&", ">", ">>", "2>", "2>&1", "<"}


def readme_commands() -> tuple[list[str], list[str]]:
    """``cnnsearch`` lines of README's code blocks and inline code: (runnable commands, synopses with [...])."""
    runnable, synopses = [], []
    for block in re.findall(r"```[a-z]*\n(.*?)```", README, flags=re.S):
        for line in block.splitlines():
            line = line.strip()
            if line.startswith("cnnsearch "):
                runnable.append(line)
    for span in re.findall(r"`(cnnsearch [^`\n]+)`", README):
        if "..." in span:
            continue  # prose shorthand such as `cnnsearch study ...`
        (synopses if any(c in span for c in "[]<>|") else runnable).append(span)
    return runnable, synopses


def resolve(tokens: list[str]) -> tuple[click.Command, list[str], str]:
    """Walk the command groups: the leaf command, its arguments and its full name."""
    cmd: click.Command = main
    name = "cnnsearch"
    args = list(tokens)
    while isinstance(cmd, click.Group):
        assert args and not args[0].startswith("-"), f"{name}: no subcommand in {tokens}"
        sub = cmd.get_command(click.Context(cmd), args[0])
        assert sub is not None, f"{name} has no command {args[0]!r} (README: {' '.join(tokens)})"
        name, cmd, args = f"{name} {args[0]}", sub, args[1:]
    return cmd, args, name


def shell_words(line: str) -> list[str]:
    words = shlex.split(line, comments=True)
    assert words[0] == "cnnsearch"
    out = []
    for w in words[1:]:
        if w in _SHELL_END or w.startswith((">", "2>")):
            break
        out.append(w)
    return out


RUNNABLE, SYNOPSES = readme_commands()
_INIT_PATHS = {w[2] for w in map(shell_words, RUNNABLE) if w[:2] == ["space", "init"]}


def test_readme_has_commands() -> None:
    assert len(RUNNABLE) >= 8 and len(SYNOPSES) >= 1  # the rest are in docs/ (tests/test_docs.py)
    assert any(c.startswith("cnnsearch space ") for c in RUNNABLE)  # the shipped spaces are documented


@pytest.mark.parametrize("line", RUNNABLE)
def test_readme_command_parses(line: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO)  # as written on a fresh clone: relative paths are from the repository root
    cmd, args, name = resolve(shell_words(line))
    try:
        ctx = cmd.make_context(name, args)  # click's own parsing and type checks; nothing runs
    except click.ClickException as exc:
        pytest.fail(f"README command does not parse: {line!r}: {exc.format_message()}")
    space = ctx.params.get("space_path")
    # A space file README names must exist in the clone, be a shipped space's name, or be written
    # by an earlier README command (`space init PATH`).
    if space and space not in _INIT_PATHS:
        space_mod.load(space)


@pytest.mark.parametrize("span", SYNOPSES)
def test_readme_synopsis_names_real_options(span: str) -> None:
    words = span.replace("[", " ").replace("]", " ").split()
    head = [w for w in words[1:] if re.fullmatch(r"[a-z]+", w)]
    cmd, _, name = resolve(head[:2] if head[:1] in (["study"], ["space"]) else head[:1])
    known = {o for p in cmd.params for o in getattr(p, "opts", [])}
    for opt in (w for w in words if w.startswith("--")):
        assert opt.split("=")[0] in known, f"{name} has no option {opt} (README: {span})"


def test_readme_images_exist_and_are_tracked() -> None:
    images = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", README)
    assert images
    tracked = subprocess.run(["git", "ls-files", *images], cwd=REPO, capture_output=True, text=True).stdout.split()
    for img in images:
        assert (REPO / img).is_file() and (REPO / img).stat().st_size > 1000, img
        if (REPO / ".git").exists():  # reports/* is git-ignored: an image must be force-added to reach a clone
            assert img in tracked, f"{img} is not committed (git add -f {img})"


def test_broken_commands_would_be_caught() -> None:
    """The checks above can fail: an unknown option, a bad value and a missing command are refused."""
    for bad in (["study", "run", "demo", "--trails", "3"], ["study", "confirm", "d", "--top", "0"], ["stduy"]):
        with pytest.raises((click.ClickException, AssertionError)):
            cmd, args, name = resolve(bad)
            cmd.make_context(name, args)


# --- shell completion ------------------------------------------------------------------------------

def _completions(args: list[str], incomplete: str) -> list[str]:
    comp = ShellComplete(main, {}, "cnnsearch", "_CNNSEARCH_COMPLETE")
    return [item.value for item in comp.get_completions(args, incomplete)]


def test_completion_of_study_names_from_the_storage(tmp_path: Path, tiny_space: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"sqlite:///{tmp_path / 'c.db'}"
    for name in ("demo", "deep", "other"):
        study_mod.create(name, tiny_space, url)
    monkeypatch.setenv("CNNSEARCH_STORAGE", url)
    assert _completions(["study", "show"], "de") == ["deep", "demo"]
    assert _completions(["report"], "") == ["deep", "demo", "other"]
    # --storage given first on the line wins over the environment
    monkeypatch.setenv("CNNSEARCH_STORAGE", f"sqlite:///{tmp_path / 'absent.db'}")
    assert _completions(["study", "run", "--storage", url], "o") == ["other"]
    # a storage that does not exist completes nothing, and is not created
    assert _completions(["study", "best"], "") == []
    assert not (tmp_path / "absent.db").exists()
    assert _completions(["space", "show"], "w") == ["wide"]
    assert "seed" in _completions(["study", "create", "x", "--space"], "s")


def test_completion_through_the_environment_variable(tmp_path: Path, tiny_space: Path) -> None:
    """What the shell does: the script README tells users to eval, then a completion request."""
    url = f"sqlite:///{tmp_path / 'e.db'}"
    study_mod.create("env-study", tiny_space, url)
    code = "from cnnsearch.cli import main; main(prog_name='cnnsearch')"
    env = {**os.environ, "CNNSEARCH_STORAGE": url}
    for shell in ("bash", "zsh"):
        src = subprocess.run([sys.executable, "-c", code], env={**env, "_CNNSEARCH_COMPLETE": f"{shell}_source"},
                             capture_output=True, text=True, timeout=60)
        assert src.returncode == 0 and f"_CNNSEARCH_COMPLETE={shell}_complete" in src.stdout
        assert f"_CNNSEARCH_COMPLETE={shell}_source cnnsearch" in README
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                       env={**env, "_CNNSEARCH_COMPLETE": "bash_complete", "COMP_WORDS": "cnnsearch study show env",
                            "COMP_CWORD": "3"})
    assert r.returncode == 0 and r.stdout.split() == ["plain,env-study"], r.stdout + r.stderr
