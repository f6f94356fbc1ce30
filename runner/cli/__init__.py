"""The command line: a thin Typer layer over `runner.service`."""
