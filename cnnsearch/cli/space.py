"""``cnnsearch space``: list, show and copy the search spaces that ship with cnnsearch."""

from __future__ import annotations

import click

from cnnsearch.cli import emit_json, space_names


@click.group()
def space() -> None:
    """The search spaces that ship with cnnsearch: list, show, copy one to edit."""


@space.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document on stdout.")
def space_list(as_json: bool) -> None:
    """Name, searched dimensions, fidelity and description of each shipped space."""
    from cnnsearch.search import space as space_mod

    rows = space_mod.shipped_spaces()
    if as_json:
        emit_json([r._asdict() for r in rows])
        return
    width = max((len(r.name) for r in rows), default=4)
    for r in rows:
        images = "all" if not r.train_limit else f"{r.train_limit:,}"
        click.echo(f"{r.name:<{width}}  {len(r.searched):>2} dimensions  {r.epochs} epochs on {images} images"
                   f"  {r.description}")
    click.echo("use one: cnnsearch study create NAME --space <name>; edit one: cnnsearch space init my.toml"
               " --from <name>", err=True)


@space.command("show")
@click.argument("name", shell_complete=lambda ctx, param, incomplete: space_names(incomplete))
def space_show(name: str) -> None:
    """Print the text of shipped space NAME (e.g. seed, wide)."""
    from cnnsearch.search import shipped

    click.echo(shipped.text(name), nl=False)


@space.command("init")
@click.argument("path", type=click.Path(dir_okay=False))
@click.option("--from", "from_name", default="seed", show_default=True, metavar="NAME",
              shell_complete=lambda ctx, param, incomplete: space_names(incomplete),
              help="Shipped space to copy.")
def space_init(path: str, from_name: str) -> None:
    """Write a commented copy of a shipped space to PATH, to edit (never overwrites)."""
    from cnnsearch.search import shipped

    dest = shipped.init(path, from_name)
    click.echo(f"wrote {dest} (a copy of {from_name}); edit it, then: cnnsearch study create NAME --space {dest}")
