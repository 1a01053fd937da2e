"""Every command's --help reads right: a one-line summary and no printf residue (`%%`)."""

from __future__ import annotations

from click.testing import CliRunner

from runner.cli import cli
from tests.support.commands import command_paths


def test_every_help_page_is_clean() -> None:
    paths = list(command_paths(cli))
    assert ("lab", "sim") in paths and ("schedule", "list") in paths
    for path in paths:
        result = CliRunner().invoke(cli, [*path, "--help"])
        assert result.exit_code == 0, (path, result.output)
        assert "%%" not in result.output, (path, result.output)
        summary = result.output.split("\n\n")[1].strip() if "\n\n" in result.output else ""
        assert summary, (path, result.output)
    sim_help = CliRunner().invoke(cli, ["lab", "sim", "--help"]).output
    assert "--fault slow=2% --fault refuse=5" in " ".join(sim_help.split())
