"""`python -m runner` runs the CLI."""

from runner.cli import main

main()
