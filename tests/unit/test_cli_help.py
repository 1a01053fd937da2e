"""Every command's --help reads right: a one-line summary and no printf residue (`%%`)."""

from __future__ import annotations

from collections.abc import Iterator

import click
from click.testing import CliRunner

from runner.cli import cli


def commands(group: click.Group, path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    """Every command path under `group` (the top-level group loads its commands lazily)."""
    yield path
    ctx = click.Context(group)
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        if isinstance(command, click.Group):
            yield from commands(command, (*path, name))
        elif command is not None:
            yield (*path, name)


def test_every_help_page_is_clean() -> None:
    paths = list(commands(cli))
    assert ("lab", "sim") in paths and ("schedule", "list") in paths
    for path in paths:
        result = CliRunner().invoke(cli, [*path, "--help"])
        assert result.exit_code == 0, (path, result.output)
        assert "%%" not in result.output, (path, result.output)
        summary = result.output.split("\n\n")[1].strip() if "\n\n" in result.output else ""
        assert summary, (path, result.output)
    sim_help = CliRunner().invoke(cli, ["lab", "sim", "--help"]).output
    assert "--fault slow=2% --fault refuse=5" in " ".join(sim_help.split())
