"""The `rtcfleet` command: one entry point for operators, CI jobs and the node images."""

from __future__ import annotations

import typer

app = typer.Typer(
    name="rtcfleet",
    help="Deploy and run a multi-region, highly available WebRTC platform.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


@app.callback()
def main() -> None:
    """Deploy and run a multi-region, highly available WebRTC platform."""


@app.command()
def version() -> None:
    """Print the rtcfleet version baked into this build."""
    from rtcfleet import __version__

    typer.echo(__version__)


def _register_commands() -> None:
    # Each command group lives beside the code it drives; importing it adds its commands.
    from rtcfleet.commands import register_all

    register_all(app)


_register_commands()
